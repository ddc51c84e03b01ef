/**
 * The service proxy's model: slim records that keep only what the rules need, as kube-proxy
 * keeps a ServicePortMap and an EndpointsMap rather than whole API objects. One record per
 * service *port* (a Service with ports http and https is two records), keyed like kube-proxy's
 * ServicePortName: `namespace/name:portName` (`namespace/name` for a single unnamed port).
 *
 * Everything here is plain data so that the translator, the change tracker, the planners and
 * the tracers can all be tested without a kernel; one model is one address family (the
 * family of the cluster CIDR), as nftables keeps `ip` and `ip6` tables apart.
 */
import { PodnetError } from '../errors/index.ts';

export type L4Protocol = 'TCP' | 'UDP' | 'SCTP';
export type TrafficPolicy = 'Cluster' | 'Local';

export interface ServiceInfo {
  /** `namespace/name:portName`, or `namespace/name` when the port has no name. */
  readonly key: string;
  readonly namespace: string;
  readonly name: string;
  /** The service port's name ('' when unnamed). */
  readonly portName: string;
  readonly protocol: L4Protocol;
  /** The service port (on the cluster IPs, external IPs and load-balancer IPs). */
  readonly port: number;
  /** The cluster IPs of the model's family (usually one). */
  readonly clusterIPs: readonly string[];
  /** Set for NodePort and LoadBalancer services. */
  readonly nodePort?: number;
  readonly externalIPs: readonly string[];
  /** `status.loadBalancer.ingress[].ip` of LoadBalancer services. */
  readonly loadBalancerIPs: readonly string[];
  readonly sessionAffinity: 'None' | 'ClientIP';
  /** ClientIP affinity timeout (default 10800 s, as Kubernetes). */
  readonly affinityTimeoutSeconds: number;
  readonly externalTrafficPolicy: TrafficPolicy;
  readonly internalTrafficPolicy: TrafficPolicy;
  /** For LoadBalancer services with externalTrafficPolicy Local (served by the agent, not the rules). */
  readonly healthCheckNodePort?: number;
}

export interface EndpointInfo {
  readonly ip: string;
  /** The target port (from the EndpointSlice port of the same name and protocol). */
  readonly port: number;
  /** Ready: may take new connections. A missing condition counts as ready, as in Kubernetes. */
  readonly ready: boolean;
  /** Serving: ready apart from terminating (defaults to `ready`). */
  readonly serving: boolean;
  readonly terminating: boolean;
  readonly nodeName?: string;
  /** On the node the rules are planned for. */
  readonly isLocal: boolean;
  readonly zone?: string;
}

/** Service ports by key. */
export type ServicePortMap = ReadonlyMap<string, ServiceInfo>;
/** Endpoints by service-port key, sorted by address and port. */
export type EndpointsMap = ReadonlyMap<string, readonly EndpointInfo[]>;

/** The node the rules are planned for. */
export interface NodeContext {
  readonly name: string;
  /** The node's own addresses (for the tracer's `fib … type local` and for NodePorts). */
  readonly ips: readonly string[];
  /** The pod network: sources inside it are pods, anything else is "outside". */
  readonly clusterCIDR: string;
  readonly family: 4 | 6;
}

export interface ProxyModel {
  services: ServicePortMap;
  endpoints: EndpointsMap;
  node: NodeContext;
  /** What the translator left out, and why (a bad address, a duplicate port name). */
  problems: string[];
}

/** A problem reported by a sync, as a value: the caller is a loop that will try again. */
export interface ProxyProblem {
  code: string;
  message: string;
}

export class ProxyError extends PodnetError {
  override readonly name = 'ProxyError';
}

/** The firewall mark bit that asks postrouting to masquerade (kube-proxy's 0x4000). */
export const MASQ_MARK = 0x4000;

/**
 * The mark bit a service chain sets before it DNATs through an endpoint map (nftables mode):
 * it asks postrouting to decide on masquerade once the endpoint is known (hairpin, or an
 * outside source sent to a remote endpoint), and is cleared there.
 */
export const SERVICE_MARK = 0x2000;

/** The table the proxy owns, in the `ip` (IPv4) or `ip6` family. */
export const PROXY_TABLE = 'podnet-proxy';

/** Kubernetes' default ClientIP affinity timeout. */
export const DEFAULT_AFFINITY_TIMEOUT = 10800;

export function nftFamily(family: 4 | 6): 'ip' | 'ip6' {
  return family === 4 ? 'ip' : 'ip6';
}

/** `ip:port`, with brackets for IPv6. */
export function hostPort(ip: string, port: number): string {
  return ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`;
}
