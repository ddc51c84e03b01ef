/**
 * `podnet lab get`: kubectl-style tables, or `-o json` as a Kubernetes `List`.
 */
import type { AnyObject, Datastore } from '../datastore/index.ts';
import { LabError } from './plan.ts';

export const RESOURCES: Record<string, { kind: string; namespaced: boolean }> = {
  nodes: { kind: 'Node', namespaced: false },
  node: { kind: 'Node', namespaced: false },
  no: { kind: 'Node', namespaced: false },
  pods: { kind: 'Pod', namespaced: true },
  pod: { kind: 'Pod', namespaced: true },
  po: { kind: 'Pod', namespaced: true },
  services: { kind: 'Service', namespaced: true },
  service: { kind: 'Service', namespaced: true },
  svc: { kind: 'Service', namespaced: true },
  endpointslices: { kind: 'EndpointSlice', namespaced: true },
  endpointslice: { kind: 'EndpointSlice', namespaced: true },
  networkpolicies: { kind: 'NetworkPolicy', namespaced: true },
  networkpolicy: { kind: 'NetworkPolicy', namespaced: true },
  netpol: { kind: 'NetworkPolicy', namespaced: true },
  deployments: { kind: 'Deployment', namespaced: true },
  deployment: { kind: 'Deployment', namespaced: true },
  deploy: { kind: 'Deployment', namespaced: true },
  namespaces: { kind: 'Namespace', namespaced: false },
  namespace: { kind: 'Namespace', namespaced: false },
  ns: { kind: 'Namespace', namespaced: false },
};

function age(ts: string | undefined): string {
  if (!ts) return '<unknown>';
  const s = Math.max(0, Math.round((Date.now() - Date.parse(ts)) / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.round(s / 60)}m`;
  return `${Math.round(s / 3600)}h`;
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]! + 3))).join('').trimEnd()).join('\n');
}

const cond = (o: any, type: string): boolean => o.status?.conditions?.some((c: any) => c.type === type && c.status === 'True') ?? false;

function rowsFor(kind: string, items: any[], wide: boolean, allNs: boolean): string[][] {
  const nsCol = (o: any): string[] => (allNs ? [o.metadata.namespace ?? ''] : []);
  const nsHead = allNs ? ['NAMESPACE'] : [];
  switch (kind) {
    case 'Node':
      return [
        ['NAME', 'STATUS', 'AGE', 'INTERNAL-IP', 'POD-CIDR'],
        ...items.map((n) => [n.metadata.name, cond(n, 'Ready') ? 'Ready' : 'NotReady', age(n.metadata.creationTimestamp), n.status?.addresses?.find((a: any) => a.type === 'InternalIP')?.address ?? '', n.spec?.podCIDR ?? '<none>']),
      ];
    case 'Pod': {
      const head = [...nsHead, 'NAME', 'READY', 'STATUS', 'RESTARTS', 'AGE', ...(wide ? ['IP', 'NODE'] : [])];
      return [
        head,
        ...items.map((p) => {
          const cs = p.status?.containerStatuses ?? [];
          const readyN = cs.filter((c: any) => c.ready).length;
          const waiting = cs.find((c: any) => c.state?.waiting?.reason && c.state.waiting.reason !== 'ContainerCreating')?.state.waiting.reason;
          const status = p.metadata.deletionTimestamp ? 'Terminating' : waiting ?? p.status?.phase ?? 'Pending';
          const restarts = cs.reduce((s: number, c: any) => s + (c.restartCount ?? 0), 0);
          return [...nsCol(p), p.metadata.name, `${readyN}/${p.spec?.containers?.length ?? 0}`, status, String(restarts), age(p.metadata.creationTimestamp), ...(wide ? [p.status?.podIP ?? '<none>', p.spec?.nodeName ?? '<none>'] : [])];
        }),
      ];
    }
    case 'Service':
      return [
        [...nsHead, 'NAME', 'TYPE', 'CLUSTER-IP', 'EXTERNAL-IP', 'PORT(S)', 'AGE'],
        ...items.map((s) => [
          ...nsCol(s),
          s.metadata.name,
          s.spec?.type ?? 'ClusterIP',
          s.spec?.clusterIP ?? (s.spec?.type === 'ExternalName' ? '<none>' : '<pending>'),
          s.spec?.type === 'ExternalName' ? s.spec.externalName : (s.status?.loadBalancer?.ingress ?? []).map((i: any) => i.ip).join(',') || (s.spec?.type === 'LoadBalancer' ? '<pending>' : '<none>'),
          (s.spec?.ports ?? []).map((p: any) => `${p.port}${p.nodePort ? `:${p.nodePort}` : ''}/${p.protocol ?? 'TCP'}`).join(',') || '<none>',
          age(s.metadata.creationTimestamp),
        ]),
      ];
    case 'EndpointSlice':
      return [
        [...nsHead, 'NAME', 'ADDRESSTYPE', 'PORTS', 'ENDPOINTS', 'AGE'],
        ...items.map((e) => [
          ...nsCol(e),
          e.metadata.name,
          e.addressType ?? 'IPv4',
          (e.ports ?? []).map((p: any) => p.port).join(',') || '<unset>',
          (e.endpoints ?? []).flatMap((x: any) => x.addresses).join(',') || '<unset>',
          age(e.metadata.creationTimestamp),
        ]),
      ];
    case 'NetworkPolicy':
      return [[...nsHead, 'NAME', 'POD-SELECTOR', 'AGE'], ...items.map((n) => [...nsCol(n), n.metadata.name, Object.entries(n.spec?.podSelector?.matchLabels ?? {}).map(([k, v]) => `${k}=${v}`).join(',') || '<none>', age(n.metadata.creationTimestamp)])];
    case 'Deployment':
      return [
        [...nsHead, 'NAME', 'READY', 'AGE'],
        ...items.map((d) => [...nsCol(d), d.metadata.name, `${d.status?.readyReplicas ?? 0}/${d.spec?.replicas ?? 1}`, age(d.metadata.creationTimestamp)]),
      ];
    default:
      return [['NAME', 'AGE'], ...items.map((o) => [o.metadata.name, age(o.metadata.creationTimestamp)])];
  }
}

export async function getResources(ds: Datastore, what: string, opts: { namespace?: string; all?: boolean; output?: string }): Promise<string> {
  const res = RESOURCES[what];
  if (!res) throw new LabError('PODNET_UNKNOWN_RESOURCE', `unknown resource "${what}": use nodes, pods, services, endpointslices, networkpolicies, deployments or namespaces`);
  if (opts.output !== undefined && opts.output !== 'json' && opts.output !== 'wide') throw new LabError('PODNET_BAD_OUTPUT', `-o must be json or wide, not "${opts.output}"`);
  const listOpts = res.namespaced && !opts.all ? { namespace: opts.namespace ?? 'default' } : {};
  const list = await ds.list(res.kind as AnyObject['kind'], listOpts);
  const items = [...list.items].sort((a, b) => `${a.metadata.namespace ?? ''}/${a.metadata.name}`.localeCompare(`${b.metadata.namespace ?? ''}/${b.metadata.name}`, 'en', { numeric: true }));
  if (opts.output === 'json') {
    return JSON.stringify({ apiVersion: 'v1', kind: 'List', metadata: { resourceVersion: list.revision }, items }, null, 2);
  }
  if (items.length === 0) return res.namespaced && !opts.all ? `No resources found in ${opts.namespace ?? 'default'} namespace.` : 'No resources found.';
  return table(rowsFor(res.kind, items, opts.output === 'wide', Boolean(opts.all) && res.namespaced));
}
