/**
 * Which endpoints each kind of traffic may reach, decided once per service port and shared
 * by the nftables and the iptables planner, so both modes behave alike.
 *
 * Endpoint sets (kube-proxy's CategorizeEndpoints):
 *   cluster   the ready endpoints; when none is ready, the serving terminating ones (so a
 *             rolling update that leaves only terminating pods keeps answering)
 *   local     the same choice among this node's endpoints
 *
 * Internal traffic (to a cluster IP):
 *   internalTrafficPolicy Cluster → cluster set;  Local → local set
 *   set empty → REJECT when the service has no usable endpoint anywhere, else DROP
 *   (policy Local and nothing on this node: the service exists but is not here).
 *
 * External traffic (to the NodePort, an external IP, a load-balancer IP):
 *   externalTrafficPolicy Cluster → cluster set, sources outside the cluster masqueraded
 *   externalTrafficPolicy Local   → local set, client address kept; pods and the node itself
 *                                   are short-circuited to the cluster set (the node's own
 *                                   traffic masqueraded); no local endpoint → DROP for the rest
 *   no usable endpoint anywhere → REJECT
 *
 * Masquerade (the reply must come back through this node's conntrack):
 *   - hairpin: a pod that reaches itself through the service (source = chosen endpoint);
 *   - external traffic with policy Cluster whose source is outside the cluster CIDR;
 *   - a source outside the cluster CIDR (the node itself, or a host routing to a cluster IP)
 *     sent to a *remote* endpoint: that endpoint would answer straight to the source, past
 *     this node's un-DNAT. A local endpoint answers through this node anyway.
 *   Never pod to pod otherwise.
 */
import type { EndpointInfo, ServiceInfo } from './types.ts';

export type Verdict = 'endpoints' | 'reject' | 'drop';

export interface ServiceLayout {
  readonly cluster: readonly EndpointInfo[];
  readonly local: readonly EndpointInfo[];
  /** What traffic to the cluster IPs meets, and which set when `endpoints`. */
  readonly internal: { verdict: Verdict; set: 'cluster' | 'local' };
  /** Undefined when the service has no NodePort, external IP or load-balancer IP. */
  readonly external: { verdict: Verdict; policy: 'Cluster' | 'Local' } | undefined;
  /** Whether the cluster-wide and the node-local policy chains are used at all. */
  readonly usesCluster: boolean;
  readonly usesLocal: boolean;
  /** Every endpoint some chain jumps to, sorted. */
  readonly endpoints: readonly EndpointInfo[];
}

/** The usable endpoints among `eps`: ready ones, else serving terminating ones. */
export function usable(eps: readonly EndpointInfo[]): EndpointInfo[] {
  const ready = eps.filter((e) => e.ready);
  if (ready.length > 0) return ready;
  return eps.filter((e) => e.serving && e.terminating);
}

export function hasExternal(svc: ServiceInfo): boolean {
  return svc.nodePort !== undefined || svc.externalIPs.length > 0 || svc.loadBalancerIPs.length > 0;
}

export function layoutService(svc: ServiceInfo, eps: readonly EndpointInfo[]): ServiceLayout {
  const cluster = usable(eps);
  const local = usable(eps.filter((e) => e.isLocal));
  const none = cluster.length === 0;
  const internalSet = svc.internalTrafficPolicy === 'Local' ? 'local' : 'cluster';
  const internalEps = internalSet === 'local' ? local : cluster;
  const internal = { verdict: (none ? 'reject' : internalEps.length === 0 ? 'drop' : 'endpoints') as Verdict, set: internalSet as 'cluster' | 'local' };
  let external: ServiceLayout['external'];
  if (hasExternal(svc)) {
    const policy = svc.externalTrafficPolicy;
    external = { verdict: none ? 'reject' : policy === 'Local' && local.length === 0 ? 'drop' : 'endpoints', policy };
  }
  const usesCluster =
    !none && ((internal.verdict === 'endpoints' && internal.set === 'cluster') || (external !== undefined && external.verdict !== 'reject'));
  const usesLocal =
    local.length > 0 && ((internal.verdict === 'endpoints' && internal.set === 'local') || (external?.verdict === 'endpoints' && external.policy === 'Local'));
  const used = new Set<EndpointInfo>([...(usesCluster ? cluster : []), ...(usesLocal ? local : [])]);
  const endpoints = eps.filter((e) => used.has(e));
  return { cluster, local, internal, external, usesCluster, usesLocal, endpoints };
}
