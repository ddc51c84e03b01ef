/**
 * The slim records DNS answers are made from, and the small interface the resolver reads
 * them through.
 *
 * Like CoreDNS's kubernetes plugin, the resolver never sees an API object: Services,
 * EndpointSlices and Pods are translated (translate.ts) into records that keep only what
 * an answer needs, and indexed by the names and addresses queries ask for (store.ts). The
 * informer machinery (watch.ts) feeds the index; the unit tests fill it from plain objects.
 * All names and addresses here are canonical: lower-case names, RFC 5952 addresses.
 */

export type ServiceKind = 'ClusterIP' | 'Headless' | 'ExternalName';

export type PortProtocol = 'tcp' | 'udp' | 'sctp';

/** A named port (unnamed ports have no SRV record, so they are not kept). */
export interface PortRecord {
  name: string;
  protocol: PortProtocol;
  port: number;
}

export interface ServiceRecord {
  namespace: string;
  name: string;
  kind: ServiceKind;
  /** The cluster IPs (ClusterIP kind; empty until one is allocated). */
  ips: readonly string[];
  /** ExternalName kind: the target, lower-case, no trailing dot. */
  externalName?: string;
  ports: readonly PortRecord[];
  /** publishNotReadyAddresses (or the legacy tolerate-unready-endpoints annotation). */
  publishNotReady: boolean;
}

/** One address of one endpoint. An endpoint with two addresses becomes two of these. */
export interface EndpointAddress {
  /** The endpoint's hostname, or the dashed address when it has none (what CoreDNS does). */
  host: string;
  ip: string;
  ready: boolean;
}

/** An EndpointSlice, slimmed: the service it belongs to, its addresses and named ports. */
export interface SliceRecord {
  namespace: string;
  name: string;
  service: string;
  addresses: readonly EndpointAddress[];
  ports: readonly PortRecord[];
}

export interface PodRecord {
  namespace: string;
  name: string;
  ips: readonly string[];
}

/** What the resolver reads; RecordStore (store.ts) is the one implementation. */
export interface RecordSource {
  /** True once the first lists of every kind are in (before that, zone answers are SERVFAIL). */
  synced(): boolean;
  /** Seconds since the epoch of the last change: the SOA serial. */
  serial(): number;
  /** Counts changes: any answer may differ once it moves (the server's reply cache keys on it). */
  readonly generation: number;
  service(namespace: string, name: string): ServiceRecord | undefined;
  /** The service whose cluster IP is `ip`. */
  serviceByIP(ip: string): ServiceRecord | undefined;
  /** Every address of the service's endpoints, over all its slices, without duplicates. */
  endpoints(namespace: string, service: string): readonly EndpointAddress[];
  /** The named ports of the service's slices (the target ports, which headless SRV records carry). */
  endpointPorts(namespace: string, service: string): readonly PortRecord[];
  /** Endpoints with address `ip`, with the service they belong to. */
  endpointsByIP(ip: string): ReadonlyArray<{ service: ServiceRecord; address: EndpointAddress }>;
  /** Pods with address `ip` (usually one). */
  podsByIP(ip: string): readonly PodRecord[];
  hasServices(namespace: string): boolean;
  hasPods(namespace: string): boolean;
}

/**
 * Pod records (`1-2-3-4.ns.pod.<zone>`): `verified` answers only for an existing pod with that
 * address in that namespace (CoreDNS `pods verified`); `insecure` answers for any address
 * (CoreDNS `pods insecure`, what the spec's deprecated section describes); `disabled` has none.
 */
export type PodsMode = 'verified' | 'insecure' | 'disabled';

export interface ResolverOptions {
  /** The cluster domain, e.g. `cluster.local` (any case, trailing dot optional). */
  zone: string;
  /** TTL of every record served from the cluster, seconds. */
  ttl: number;
  pods: PodsMode;
}

export const DNS_SCHEMA_VERSION = '1.1.0';
export const DEFAULT_ZONE = 'cluster.local';
export const DEFAULT_TTL = 5;
