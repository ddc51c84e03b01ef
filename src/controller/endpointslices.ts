/**
 * EndpointSlices as a pure planner: what Kubernetes' EndpointSlice controller writes for a
 * Service with a selector, from the Pods it selects.
 *
 * Design notes
 *
 * - An endpoint is a Pod with an IPv4 podIP that is not finished (Succeeded/Failed). Its
 *   conditions follow Kubernetes: `serving` = the Pod is Ready, `terminating` = it has a
 *   deletionTimestamp, `ready` = serving and not terminating, or always true with
 *   publishNotReadyAddresses. Terminating pods stay in the slice, so proxies can drain them.
 * - Ports are resolved per Pod: a numeric targetPort as is, a named one through that Pod's
 *   container ports (same protocol). Pods that resolve differently (or not at all) have a
 *   different port list, and a slice has one port list, so they go into different slices.
 * - Churn is kept low, as in the upstream reconciler: an endpoint stays in the slice it is in
 *   (its content updated in place), new endpoints fill slices already being written, then
 *   slices with room, then new slices of at most 100 (a slice that would be deleted is
 *   rewritten instead); a slice left empty is deleted; a slice whose content is unchanged is
 *   not written at all. A Service without endpoints keeps one
 *   empty "placeholder" slice, so "no endpoints" and "not yet reconciled" look different.
 * - Names are `<service>-<hash>`, the hash of namespace, Service, its uid and a counter:
 *   deterministic, so a create that races with a stale cache fails as ALREADY_EXISTS instead
 *   of producing a twin.
 * - Only slices labelled managed-by podnet-controller are touched: a Service without a
 *   selector keeps the slices its user writes.
 */
import { createHash } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import { compileSelector } from '../datastore/index.ts';
import type { Endpoint, EndpointPort, EndpointSlice, OwnerReference, Pod, Protocol, Service, ServicePort } from '../datastore/index.ts';
import { isHeadless, serviceType } from './alloc.ts';

export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';
export const MANAGED_BY_LABEL = 'endpointslice.kubernetes.io/managed-by';
export const MANAGED_BY = 'podnet-controller';
export const HEADLESS_LABEL = 'service.kubernetes.io/headless';
export const ZONE_LABEL = 'topology.kubernetes.io/zone';
export const MAX_ENDPOINTS_PER_SLICE = 100;

/** True for the slices this controller writes. */
export function isManagedSlice(s: EndpointSlice): boolean {
  return s.metadata.labels?.[MANAGED_BY_LABEL] === MANAGED_BY && !!s.metadata.labels?.[SERVICE_NAME_LABEL];
}

/** Services whose endpoints the controller computes: a non-empty selector and not ExternalName. */
export function selectsPods(svc: Service): boolean {
  return serviceType(svc) !== 'ExternalName' && Object.keys(svc.spec?.selector ?? {}).length > 0;
}

export function podReady(p: Pod): boolean {
  return p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
}

/** The Pod's IPv4 address, if it has one. */
export function podIPv4(p: Pod): string | undefined {
  const ips = [p.status?.podIP, ...(p.status?.podIPs ?? []).map((x) => x.ip)];
  return ips.find((ip): ip is string => !!ip && /^\d+\.\d+\.\d+\.\d+$/.test(ip));
}

/** The port a ServicePort reaches on this Pod, or undefined if the Pod has no such named port. */
export function targetPortOf(sp: ServicePort, pod: Pod): number | undefined {
  const tp = sp.targetPort;
  if (tp === undefined || tp === 0 || tp === '') return sp.port;
  if (typeof tp === 'number') return tp;
  if (/^[0-9]+$/.test(tp)) return Number(tp);
  const proto = sp.protocol ?? 'TCP';
  for (const c of pod.spec?.containers ?? []) {
    for (const cp of c.ports ?? []) if (cp.name === tp && (cp.protocol ?? 'TCP') === proto) return cp.containerPort;
  }
  return undefined;
}

/** The slice ports for this Pod: the Service's ports in order, those the Pod cannot serve left out. */
export function endpointPorts(svc: Service, pod: Pod): EndpointPort[] {
  const out: EndpointPort[] = [];
  for (const sp of svc.spec?.ports ?? []) {
    const port = targetPortOf(sp, pod);
    if (port === undefined) continue;
    const ep: EndpointPort = { name: sp.name ?? '', protocol: (sp.protocol ?? 'TCP') as Protocol, port };
    if (sp.appProtocol) ep.appProtocol = sp.appProtocol;
    out.push(ep);
  }
  return out;
}

/** One Pod as an endpoint of the Service. */
export function podEndpoint(svc: Service, pod: Pod, address: string, zone?: string): Endpoint {
  const serving = podReady(pod);
  const terminating = !!pod.metadata.deletionTimestamp;
  const ready = svc.spec?.publishNotReadyAddresses === true || (serving && !terminating);
  const ep: Endpoint = {
    addresses: [address],
    conditions: { ready, serving, terminating },
    targetRef: { kind: 'Pod', namespace: pod.metadata.namespace ?? 'default', name: pod.metadata.name, ...(pod.metadata.uid ? { uid: pod.metadata.uid } : {}) },
  };
  if (pod.spec?.nodeName) ep.nodeName = pod.spec.nodeName;
  if (zone) ep.zone = zone;
  // For headless DNS: <hostname>.<service>.<ns>.svc names the pod (StatefulSet style).
  if (pod.spec?.hostname && pod.spec.subdomain === svc.metadata.name) ep.hostname = pod.spec.hostname;
  return ep;
}

/** Whether Kubernetes would publish this Pod at all (running or starting, with an address). */
function inEndpoints(p: Pod): boolean {
  return p.status?.phase !== 'Succeeded' && p.status?.phase !== 'Failed' && podIPv4(p) !== undefined;
}

/** The Service's endpoints, grouped by their port lists (key → ports and endpoints by pod name). */
export function desiredEndpoints(svc: Service, pods: readonly Pod[], zones: ReadonlyMap<string, string> = new Map()): Map<string, { ports: EndpointPort[]; endpoints: Map<string, Endpoint> }> {
  const groups = new Map<string, { ports: EndpointPort[]; endpoints: Map<string, Endpoint> }>();
  if (!selectsPods(svc)) return groups;
  const ns = svc.metadata.namespace ?? 'default';
  const selects = compileSelector({ matchLabels: svc.spec?.selector ?? {} });
  const sorted = pods.filter((p) => (p.metadata.namespace ?? 'default') === ns && selects(p.metadata.labels) && inEndpoints(p));
  sorted.sort((a, b) => a.metadata.name.localeCompare(b.metadata.name, 'en', { numeric: true }));
  for (const p of sorted) {
    const ports = endpointPorts(svc, p);
    const key = portsKey(ports);
    let g = groups.get(key);
    if (!g) groups.set(key, (g = { ports, endpoints: new Map() }));
    g.endpoints.set(p.metadata.name, podEndpoint(svc, p, podIPv4(p) as string, p.spec?.nodeName ? zones.get(p.spec.nodeName) : undefined));
  }
  return groups;
}

/** Port lists that differ only in order are one group. */
export function portsKey(ports: readonly EndpointPort[]): string {
  return JSON.stringify(ports.map((p) => [p.name ?? '', p.protocol ?? 'TCP', p.port ?? 0, p.appProtocol ?? '']).sort());
}

/** The deterministic name of a Service's n-th slice. */
export function sliceName(svc: Service, n: number): string {
  const h = createHash('sha256').update(`${svc.metadata.namespace ?? 'default'}/${svc.metadata.name}/${svc.metadata.uid ?? ''}/${n}`).digest('hex');
  return `${svc.metadata.name}-${h.slice(0, 8)}`;
}

function sliceLabels(svc: Service): Record<string, string> {
  const labels: Record<string, string> = { ...(svc.metadata.labels ?? {}) };
  delete labels[HEADLESS_LABEL];
  labels[SERVICE_NAME_LABEL] = svc.metadata.name;
  labels[MANAGED_BY_LABEL] = MANAGED_BY;
  if (isHeadless(svc)) labels[HEADLESS_LABEL] = '';
  return labels;
}

function ownerRefs(svc: Service): OwnerReference[] {
  return [{ apiVersion: 'v1', kind: 'Service', name: svc.metadata.name, uid: svc.metadata.uid ?? '', controller: true, blockOwnerDeletion: true }];
}

function endpointKey(e: Endpoint): string {
  return e.targetRef?.name ?? e.addresses[0] ?? '';
}

export interface SliceInput {
  service: Service;
  /** Pods (of any namespace: the Service's own are picked). */
  pods: readonly Pod[];
  /** The managed slices that carry this Service's name label, in its namespace. */
  slices: readonly EndpointSlice[];
  /** Names of every slice in the namespace (new names avoid them). */
  usedNames?: ReadonlySet<string>;
  /** Node name → zone, from the nodes' topology.kubernetes.io/zone label. */
  zones?: ReadonlyMap<string, string>;
  maxEndpointsPerSlice?: number;
}

export interface SlicePlan {
  create: EndpointSlice[];
  update: EndpointSlice[];
  delete: EndpointSlice[];
}

/** Slices to create, update (whole objects, with the stored resourceVersion) and delete. */
export function planEndpointSlices(input: SliceInput): SlicePlan {
  const { service: svc } = input;
  const max = input.maxEndpointsPerSlice ?? MAX_ENDPOINTS_PER_SLICE;
  const plan: SlicePlan = { create: [], update: [], delete: [] };
  if (!selectsPods(svc)) return { ...plan, delete: [...input.slices] };

  const ns = svc.metadata.namespace ?? 'default';
  const labels = sliceLabels(svc);
  const owners = ownerRefs(svc);
  const groups = desiredEndpoints(svc, input.pods, input.zones);

  // Slices of an earlier Service of the same name, or of another address type, go.
  const current: EndpointSlice[] = [];
  for (const s of [...input.slices].sort((a, b) => a.metadata.name.localeCompare(b.metadata.name))) {
    const owner = s.metadata.ownerReferences?.find((o) => o.kind === 'Service' && o.controller);
    if (s.addressType !== 'IPv4' || (owner && svc.metadata.uid && owner.uid !== svc.metadata.uid)) plan.delete.push(s);
    else current.push(s);
  }

  interface Draft {
    base?: EndpointSlice;
    ports: EndpointPort[];
    endpoints: Endpoint[];
    key: string;
  }
  const drafts: Draft[] = [];
  const placed = new Set<string>();
  // Keep every endpoint where it is, with fresh content; drop what is no longer wanted.
  for (const s of current) {
    const key = portsKey(s.ports ?? []);
    const g = groups.get(key);
    const endpoints: Endpoint[] = [];
    for (const e of s.endpoints ?? []) {
      const k = endpointKey(e);
      const want = g?.endpoints.get(k);
      if (want && !placed.has(`${key}|${k}`)) {
        endpoints.push(want);
        placed.add(`${key}|${k}`);
      }
    }
    drafts.push({ base: s, ports: g?.ports ?? s.ports ?? [], endpoints, key });
  }
  // New endpoints: into slices already being written, then slices with room, then new ones.
  const changed = (d: Draft): boolean => !d.base || !sameContent(d.base, d, labels, owners);
  for (const [key, g] of groups) {
    const fresh = [...g.endpoints].filter(([k]) => !placed.has(`${key}|${k}`)).map(([, e]) => e);
    const mine = drafts.filter((d) => d.key === key);
    const order = [...mine.filter(changed), ...mine.filter((d) => !changed(d))];
    for (const d of order) {
      while (fresh.length > 0 && d.endpoints.length < max) d.endpoints.push(fresh.shift() as Endpoint);
    }
    while (fresh.length > 0) drafts.push({ ports: g.ports, endpoints: fresh.splice(0, max), key });
  }

  // A Service without endpoints keeps exactly one empty slice (Kubernetes' placeholder).
  const total = drafts.reduce((n, d) => n + d.endpoints.length, 0);
  let keepEmpty: Draft | undefined;
  if (total === 0) {
    keepEmpty = drafts.find((d) => d.base && d.key === portsKey([])) ?? drafts.find((d) => d.base);
    if (keepEmpty) keepEmpty.ports = [];
    else drafts.push((keepEmpty = { ports: [], endpoints: [], key: portsKey([]) }));
  }

  const used = new Set([...(input.usedNames ?? []), ...input.slices.map((s) => s.metadata.name)]);
  let n = 0;
  const newName = (): string => {
    for (; ; n++) {
      const name = sliceName(svc, n);
      if (!used.has(name)) {
        used.add(name);
        return name;
      }
    }
  };
  // A slice about to be deleted is rewritten to hold a new one instead (one write, not two).
  const doomed = drafts.filter((d) => d.base && d.endpoints.length === 0 && d !== keepEmpty);
  for (const d of drafts) {
    if (!d.base && doomed.length > 0) d.base = doomed.shift()?.base;
  }
  for (const d of doomed) plan.delete.push(d.base as EndpointSlice);
  for (const d of drafts) {
    if (d.endpoints.length === 0 && d !== keepEmpty) continue;
    if (!d.base) {
      plan.create.push({
        apiVersion: 'discovery.k8s.io/v1',
        kind: 'EndpointSlice',
        metadata: { name: newName(), namespace: ns, labels: { ...labels }, ownerReferences: structuredClone(owners) },
        addressType: 'IPv4',
        endpoints: d.endpoints,
        ports: d.ports,
      });
    } else if (changed(d)) {
      plan.update.push({
        ...d.base,
        metadata: { ...d.base.metadata, labels: { ...labels }, ownerReferences: structuredClone(owners) },
        addressType: 'IPv4',
        endpoints: d.endpoints,
        ports: d.ports,
      });
    }
  }
  return plan;
}

function sameContent(s: EndpointSlice, d: { ports: EndpointPort[]; endpoints: Endpoint[] }, labels: Record<string, string>, owners: OwnerReference[]): boolean {
  return (
    isDeepStrictEqual(s.metadata.labels ?? {}, labels) &&
    isDeepStrictEqual(s.metadata.ownerReferences ?? [], owners) &&
    isDeepStrictEqual(s.ports ?? [], d.ports) &&
    isDeepStrictEqual(s.endpoints ?? [], d.endpoints)
  );
}
