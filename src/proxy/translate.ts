/**
 * Services and EndpointSlices (datastore objects, Kubernetes shapes) → the proxy's model.
 *
 * Mirrors what kube-proxy's ServicePortMap / EndpointsMap keep:
 *   - ExternalName and headless services have no virtual IP and are left out;
 *   - each service port becomes one ServiceInfo with the cluster IPs, external IPs and
 *     load-balancer IPs of the model's family;
 *   - an EndpointSlice belongs to the service named by its `kubernetes.io/service-name` label;
 *     a slice port serves the service port with the same name and protocol, and gives the
 *     endpoints' target port;
 *   - an endpoint is its first address (as in Kubernetes); a missing `ready` counts as ready,
 *     a missing `serving` as `ready`, a missing `terminating` as false;
 *   - an endpoint listed in two slices is kept once.
 *
 * Bad data (an address that does not parse, two ports of one name) is left out and reported
 * in `problems`: one broken object must not take all services down.
 */
import { type IP, compareIP, formatIP, parseIP, parseSubnet } from '../netaddr/index.ts';
import type { EndpointSlice, Service } from '../datastore/types.ts';
import {
  DEFAULT_AFFINITY_TIMEOUT,
  type EndpointInfo,
  type L4Protocol,
  type NodeContext,
  type ProxyModel,
  type ServiceInfo,
} from './types.ts';

export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';

export interface TranslateInput {
  services: readonly Service[];
  endpointSlices: readonly EndpointSlice[];
  /** The node the rules are for: its endpoints are `isLocal`. */
  nodeName: string;
  nodeIPs: readonly string[];
  /** The pod network, e.g. 10.244.0.0/16; its family is the model's family. */
  clusterCIDR: string;
}

function ipOf(text: string | undefined, family: 4 | 6): IP | undefined {
  if (!text) return undefined;
  try {
    const ip = parseIP(text);
    return ip.family === family ? ip : undefined;
  } catch {
    return undefined;
  }
}

function isAddress(text: string): boolean {
  try {
    parseIP(text);
    return true;
  } catch {
    return false;
  }
}

/** The addresses of `family` among `texts`, deduplicated; bad ones reported. */
function addressesOf(texts: readonly (string | undefined)[], family: 4 | 6, what: string, problems: string[]): string[] {
  const out: string[] = [];
  for (const t of texts) {
    if (!t) continue;
    if (!isAddress(t)) {
      problems.push(`${what}: "${t}" is not an IP address`);
      continue;
    }
    const ip = ipOf(t, family);
    // Canonical text (fd00::a, never FD00:0::A): the rules, the names and the tracer compare strings.
    if (ip && !out.includes(formatIP(ip))) out.push(formatIP(ip));
  }
  return out;
}

export function servicePortKey(namespace: string, name: string, portName: string): string {
  return portName ? `${namespace}/${name}:${portName}` : `${namespace}/${name}`;
}

/** The ServiceInfo records of one Service (one per port), or none. */
export function serviceInfos(svc: Service, family: 4 | 6, problems: string[] = []): ServiceInfo[] {
  const spec = svc.spec;
  const namespace = svc.metadata.namespace ?? 'default';
  const name = svc.metadata.name;
  if (!spec || spec.type === 'ExternalName') return [];
  const ips = spec.clusterIPs?.length ? spec.clusterIPs : spec.clusterIP ? [spec.clusterIP] : [];
  if (ips.length === 0 || ips.includes('None')) return [];
  const what = `service ${namespace}/${name}`;
  const clusterIPs = addressesOf(ips, family, what, problems);
  if (clusterIPs.length === 0) return [];
  const externalIPs = addressesOf(spec.externalIPs ?? [], family, `${what} externalIPs`, problems);
  const loadBalancerIPs =
    spec.type === 'LoadBalancer' ? addressesOf((svc.status?.loadBalancer?.ingress ?? []).map((i) => i.ip), family, `${what} load balancer`, problems) : [];
  const affinity = spec.sessionAffinity === 'ClientIP' ? 'ClientIP' : 'None';
  const timeout = spec.sessionAffinityConfig?.clientIP?.timeoutSeconds;
  const etp = spec.externalTrafficPolicy === 'Local' ? 'Local' : 'Cluster';
  const out: ServiceInfo[] = [];
  const seen = new Set<string>();
  for (const p of spec.ports ?? []) {
    const portName = p.name ?? '';
    const protocol: L4Protocol = p.protocol ?? 'TCP';
    if (!Number.isInteger(p.port) || p.port < 1 || p.port > 65535) {
      problems.push(`${what}: port ${String(p.port)} is out of range`);
      continue;
    }
    const key = servicePortKey(namespace, name, portName);
    if (seen.has(key)) {
      problems.push(`${what}: two ports named "${portName}"; the second is ignored`);
      continue;
    }
    seen.add(key);
    const nodePort =
      (spec.type === 'NodePort' || spec.type === 'LoadBalancer') && p.nodePort !== undefined && p.nodePort > 0 && p.nodePort <= 65535 ? p.nodePort : undefined;
    const info: ServiceInfo = {
      key,
      namespace,
      name,
      portName,
      protocol,
      port: p.port,
      clusterIPs,
      ...(nodePort !== undefined ? { nodePort } : {}),
      externalIPs,
      loadBalancerIPs,
      sessionAffinity: affinity,
      affinityTimeoutSeconds: timeout !== undefined && timeout > 0 ? timeout : DEFAULT_AFFINITY_TIMEOUT,
      externalTrafficPolicy: etp,
      internalTrafficPolicy: spec.internalTrafficPolicy === 'Local' ? 'Local' : 'Cluster',
      ...(spec.type === 'LoadBalancer' && etp === 'Local' && spec.healthCheckNodePort ? { healthCheckNodePort: spec.healthCheckNodePort } : {}),
    };
    out.push(info);
  }
  return out;
}

export function compareEndpoints(a: EndpointInfo, b: EndpointInfo): number {
  const c = compareIP(parseIP(a.ip), parseIP(b.ip));
  return c !== 0 ? c : a.port - b.port;
}

/**
 * The endpoints of each service port among `slices` (already filtered to one service).
 * Returns key → endpoints.
 */
export function endpointInfos(
  services: readonly ServiceInfo[],
  slices: readonly EndpointSlice[],
  nodeName: string,
  family: 4 | 6,
  problems: string[] = [],
): Map<string, EndpointInfo[]> {
  const out = new Map<string, EndpointInfo[]>();
  for (const svc of services) {
    const eps: EndpointInfo[] = [];
    const sortKey = new Map<EndpointInfo, bigint>();
    const seen = new Set<string>();
    for (const slice of slices) {
      if (slice.addressType !== (family === 4 ? 'IPv4' : 'IPv6')) continue;
      const sp = (slice.ports ?? []).find((p) => (p.name ?? '') === svc.portName && (p.protocol ?? 'TCP') === svc.protocol);
      if (!sp || sp.port === undefined) continue;
      for (const e of slice.endpoints ?? []) {
        const addr = e.addresses?.[0];
        if (!addr) continue;
        const parsed = ipOf(addr, family);
        if (!parsed) {
          problems.push(`endpointslice ${slice.metadata.namespace ?? 'default'}/${slice.metadata.name}: "${addr}" is not an IPv${family} address`);
          continue;
        }
        const ip = formatIP(parsed);
        const id = `${ip}|${sp.port}`;
        if (seen.has(id)) continue;
        seen.add(id);
        const ready = e.conditions?.ready ?? true;
        const ep: EndpointInfo = {
          ip,
          port: sp.port,
          ready,
          serving: e.conditions?.serving ?? ready,
          terminating: e.conditions?.terminating ?? false,
          ...(e.nodeName !== undefined ? { nodeName: e.nodeName } : {}),
          isLocal: e.nodeName !== undefined && e.nodeName === nodeName,
          ...(e.zone !== undefined ? { zone: e.zone } : {}),
        };
        eps.push(ep);
        sortKey.set(ep, parsed.value);
      }
    }
    // By address, then port (the addresses are parsed once, not in the comparator).
    eps.sort((a, b) => {
      const x = sortKey.get(a)!;
      const y = sortKey.get(b)!;
      return x < y ? -1 : x > y ? 1 : a.port - b.port;
    });
    out.set(svc.key, eps);
  }
  return out;
}

/** The node's context; throws AddressError on a bad cluster CIDR. */
export function nodeContext(nodeName: string, nodeIPs: readonly string[], clusterCIDR: string): NodeContext {
  const cidr = parseSubnet(clusterCIDR);
  return { name: nodeName, ips: nodeIPs.filter((ip) => ipOf(ip, cidr.ip.family) !== undefined), clusterCIDR, family: cidr.ip.family };
}

/** Datastore objects → the proxy's model for one node (in the family of the cluster CIDR). */
export function translate(input: TranslateInput): ProxyModel {
  return new Translator(input.nodeName, input.nodeIPs, input.clusterCIDR).translate(input.services, input.endpointSlices);
}

interface CachedService {
  readonly slices: readonly EndpointSlice[];
  readonly infos: readonly ServiceInfo[];
  readonly endpoints: ReadonlyMap<string, EndpointInfo[]>;
  readonly problems: readonly string[];
}

/**
 * `translate` for a long-lived caller (the agent): it remembers each service's result by the
 * identity of the Service object and of its EndpointSlice objects, and reuses it while they
 * are the same objects. Informers replace an object when it changes and keep it when it does
 * not, so after one change only that service is translated again, and the unchanged ones keep
 * their ServiceInfo and endpoint arrays, which lets the change tracker skip them by identity
 * (at 10,000 services × 25 endpoints: 458 ms to translate everything, a few ms this way).
 * Objects must not be modified in place (informer objects never are).
 */
export class Translator {
  readonly node: NodeContext;
  private cache = new WeakMap<Service, CachedService>();
  /** The service each slice belongs to (`namespace/name`), or '' without the label. */
  private sliceOwner = new WeakMap<EndpointSlice, string>();
  /** The last input and its order by name: an unchanged list (the same objects) is not sorted again. */
  private lastInput: readonly Service[] = [];
  private lastSorted: ReadonlyArray<readonly [string, Service]> = [];

  constructor(nodeName: string, nodeIPs: readonly string[], clusterCIDR: string) {
    this.node = nodeContext(nodeName, nodeIPs, clusterCIDR);
  }

  translate(serviceObjects: readonly Service[], endpointSlices: readonly EndpointSlice[]): ProxyModel {
    const node = this.node;
    const problems: string[] = [];
    const byService = new Map<string, EndpointSlice[]>();
    for (const s of endpointSlices) {
      let k = this.sliceOwner.get(s);
      if (k === undefined) {
        const svcName = s.metadata.labels?.[SERVICE_NAME_LABEL];
        k = svcName ? `${s.metadata.namespace ?? 'default'}/${svcName}` : '';
        this.sliceOwner.set(s, k);
      }
      if (k === '') continue;
      const list = byService.get(k);
      if (list) list.push(s);
      else byService.set(k, [s]);
    }
    const services = new Map<string, ServiceInfo>();
    const endpoints = new Map<string, EndpointInfo[]>();
    let sorted = this.lastSorted;
    const same = serviceObjects.length === this.lastInput.length && serviceObjects.every((s, i) => s === this.lastInput[i]);
    if (!same) {
      const nameOf = (s: Service) => `${s.metadata.namespace ?? 'default'}/${s.metadata.name}`;
      sorted = serviceObjects.map((s) => [nameOf(s), s] as const).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
      this.lastInput = serviceObjects.slice();
      this.lastSorted = sorted;
    }
    for (const [name, svc] of sorted) {
      const slices = byService.get(name) ?? [];
      let c = this.cache.get(svc);
      if (!c || c.slices.length !== slices.length || c.slices.some((x, i) => x !== slices[i])) {
        const own: string[] = [];
        const infos = serviceInfos(svc, node.family, own);
        const eps = infos.length ? endpointInfos(infos, slices, node.name, node.family, own) : new Map<string, EndpointInfo[]>();
        c = { slices, infos, endpoints: eps, problems: own };
        this.cache.set(svc, c);
      }
      problems.push(...c.problems);
      for (const info of c.infos) {
        services.set(info.key, info);
        endpoints.set(info.key, c.endpoints.get(info.key) ?? []);
      }
    }
    return { services, endpoints, node, problems };
  }
}
