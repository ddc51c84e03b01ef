/**
 * What the controller decides, as pure functions over plain objects (the reconcilers in
 * controller.ts only read informers and write the answers): how many pods a Deployment is
 * missing or has too many of, and which node a new pod goes to.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Node, Pod } from '../datastore/index.ts';

export interface DeploymentLike {
  apiVersion?: string;
  kind?: string;
  metadata: { name: string; namespace?: string; uid?: string; deletionTimestamp?: string };
  spec?: {
    replicas?: number;
    selector?: { matchLabels?: Record<string, string> };
    template?: { metadata?: { labels?: Record<string, string>; annotations?: Record<string, string> }; spec?: Pod['spec'] };
  };
}

export const TEMPLATE_HASH = 'pod-template-hash';

/** A short stable hash of the pod template: pods of an older template are replaced. */
export function templateHash(d: DeploymentLike): string {
  return createHash('sha256').update(JSON.stringify(d.spec?.template ?? {})).digest('hex').slice(0, 10);
}

function isReady(p: Pod): boolean {
  return p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
}

export interface DeploymentPlan {
  create: Pod[];
  remove: Pod[];
}

/**
 * Pods to create and to remove so that `replicas` live pods of the current template exist.
 * Pods of an older template are removed once enough current ones are ready (a rolling
 * replacement with surge), and extra pods go unscheduled first, then not-ready, then newest.
 */
export function planDeployment(d: DeploymentLike, owned: Pod[]): DeploymentPlan {
  const want = d.metadata.deletionTimestamp ? 0 : (d.spec?.replicas ?? 1);
  const hash = templateHash(d);
  const live = owned.filter((p) => !p.metadata.deletionTimestamp && p.status?.phase !== 'Failed' && p.status?.phase !== 'Succeeded');
  const dead = owned.filter((p) => !p.metadata.deletionTimestamp && (p.status?.phase === 'Failed' || p.status?.phase === 'Succeeded'));
  const current = live.filter((p) => p.metadata.labels?.[TEMPLATE_HASH] === hash);
  const old = live.filter((p) => p.metadata.labels?.[TEMPLATE_HASH] !== hash);
  const create: Pod[] = [];
  for (let i = current.length; i < want; i++) create.push(podFromTemplate(d, hash));
  const rank = (p: Pod): number => (p.spec?.nodeName ? 0 : 2) + (isReady(p) ? 0 : 1);
  const byRemovalOrder = (a: Pod, b: Pod): number => rank(b) - rank(a) || String(b.metadata.creationTimestamp ?? '').localeCompare(String(a.metadata.creationTimestamp ?? ''));
  const remove = [...dead, ...[...current].sort(byRemovalOrder).slice(0, Math.max(0, current.length - want))];
  const readyCurrent = current.filter(isReady).length;
  // Old pods go as current ones become ready, so the Deployment never drops below `want` ready.
  const oldSorted = [...old].sort(byRemovalOrder);
  const canRemoveOld = want === 0 ? old.length : Math.max(0, readyCurrent + old.length - want);
  remove.push(...oldSorted.slice(0, Math.min(old.length, canRemoveOld)));
  return { create, remove };
}

export function podFromTemplate(d: DeploymentLike, hash: string): Pod {
  const suffix = randomBytes(3).toString('hex').slice(0, 5);
  const tmpl = d.spec?.template ?? {};
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: `${d.metadata.name}-${hash.slice(0, 5)}-${suffix}`,
      namespace: d.metadata.namespace ?? 'default',
      labels: { ...(tmpl.metadata?.labels ?? {}), [TEMPLATE_HASH]: hash },
      ...(tmpl.metadata?.annotations ? { annotations: { ...tmpl.metadata.annotations } } : {}),
      ownerReferences: [{ apiVersion: 'apps/v1', kind: 'Deployment', name: d.metadata.name, uid: d.metadata.uid ?? '', controller: true }],
    },
    spec: structuredClone(tmpl.spec ?? { containers: [] }),
  };
}

export function nodeReady(n: Node): boolean {
  return n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
}

/** The least-loaded ready, schedulable node that matches the pod's nodeSelector (ties by name). */
export function pickNode(pod: Pod, nodes: Node[], pods: Pod[]): string | undefined {
  const load = new Map<string, number>();
  for (const p of pods) if (p.spec?.nodeName && !p.metadata.deletionTimestamp) load.set(p.spec.nodeName, (load.get(p.spec.nodeName) ?? 0) + 1);
  const sel = pod.spec?.nodeSelector ?? {};
  const fits = nodes.filter(
    (n) =>
      nodeReady(n) &&
      !n.metadata.deletionTimestamp &&
      !n.spec?.unschedulable &&
      Object.entries(sel).every(([k, v]) => n.metadata.labels?.[k] === v || (k === 'kubernetes.io/hostname' && n.metadata.name === v)),
  );
  fits.sort((a, b) => (load.get(a.metadata.name) ?? 0) - (load.get(b.metadata.name) ?? 0) || a.metadata.name.localeCompare(b.metadata.name, 'en', { numeric: true }));
  return fits[0]?.metadata.name;
}
