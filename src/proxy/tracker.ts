/**
 * Change tracking, kept apart from rule generation as in kube-proxy: the tracker remembers,
 * per service port, what the last *successful* sync was made from, and compares a new
 * snapshot with it. The proxier re-plans only the ports whose record or endpoints changed,
 * and the conntrack cleanup planner reads the {previous, current} pairs.
 *
 * A record's identity is a canonical text of the ServiceInfo and its endpoints (fields in a
 * fixed order, endpoints sorted by the translator), so equal content compares equal however
 * the objects were built.
 */
import type { EndpointInfo, EndpointsMap, ServiceInfo, ServicePortMap } from './types.ts';

export interface ServicePortState {
  readonly service: ServiceInfo;
  readonly endpoints: readonly EndpointInfo[];
  readonly fingerprint: string;
}

export interface ServiceChange {
  readonly key: string;
  /** As of the last committed sync; undefined for a new service port. */
  readonly previous: ServicePortState | undefined;
  /** Undefined for a removed service port. */
  readonly current: ServicePortState | undefined;
}

function endpointText(e: EndpointInfo): string {
  return [e.ip, e.port, e.ready ? 1 : 0, e.serving ? 1 : 0, e.terminating ? 1 : 0, e.nodeName ?? '', e.isLocal ? 1 : 0, e.zone ?? ''].join(',');
}

export function fingerprint(svc: ServiceInfo, eps: readonly EndpointInfo[]): string {
  return JSON.stringify([
    svc.key,
    svc.namespace,
    svc.name,
    svc.portName,
    svc.protocol,
    svc.port,
    svc.clusterIPs,
    svc.nodePort ?? 0,
    svc.externalIPs,
    svc.loadBalancerIPs,
    svc.sessionAffinity,
    svc.affinityTimeoutSeconds,
    svc.externalTrafficPolicy,
    svc.internalTrafficPolicy,
    svc.healthCheckNodePort ?? 0,
    eps.map(endpointText),
  ]);
}

/**
 * Fingerprints by object identity: a caller that keeps unchanged ServiceInfo objects and
 * endpoint arrays (the agent's Translator does) pays for the changed ones only. Model
 * objects are never modified after they are made.
 */
const fingerprints = new WeakMap<ServiceInfo, { eps: readonly EndpointInfo[]; fp: string }>();
function cachedFingerprint(svc: ServiceInfo, eps: readonly EndpointInfo[]): string {
  const c = fingerprints.get(svc);
  if (c && c.eps === eps) return c.fp;
  const fp = fingerprint(svc, eps);
  fingerprints.set(svc, { eps, fp });
  return fp;
}

export class ServiceChangeTracker {
  private applied = new Map<string, ServicePortState>();

  /** The state as of the last commit. */
  get committed(): ReadonlyMap<string, ServicePortState> {
    return this.applied;
  }

  /** The snapshot as states, keyed like the services. */
  static snapshot(services: ServicePortMap, endpoints: EndpointsMap): Map<string, ServicePortState> {
    const out = new Map<string, ServicePortState>();
    for (const [key, service] of services) {
      const eps = endpoints.get(key) ?? [];
      out.set(key, { service, endpoints: eps, fingerprint: cachedFingerprint(service, eps) });
    }
    return out;
  }

  /** The service ports that differ from the last commit (added, changed or removed). */
  changes(current: ReadonlyMap<string, ServicePortState>): ServiceChange[] {
    const out: ServiceChange[] = [];
    for (const [key, cur] of current) {
      const prev = this.applied.get(key);
      if (!prev || prev.fingerprint !== cur.fingerprint) out.push({ key, previous: prev, current: cur });
    }
    for (const [key, prev] of this.applied) {
      if (!current.has(key)) out.push({ key, previous: prev, current: undefined });
    }
    return out;
  }

  /** Records a snapshot as applied. */
  commit(current: ReadonlyMap<string, ServicePortState>): void {
    this.applied = new Map(current);
  }

  /** Forgets everything (the next `changes` reports every service port as new). */
  reset(): void {
    this.applied = new Map();
  }
}
