/**
 * API objects → slim records: what a Service, an EndpointSlice or a Pod contributes to DNS,
 * and nothing else, so the index holds a few strings per object rather than whole objects.
 * Pure functions; an object that contributes nothing (a slice of no service, a pod without
 * an address) translates to undefined.
 */
import type { EndpointSlice, Pod, Service } from '../datastore/index.ts';
import { canonicalIP, canonicalName, dashedIP, isEncodableName } from './names.ts';
import type { EndpointAddress, PodRecord, PortProtocol, PortRecord, ServiceRecord, SliceRecord } from './types.ts';

/** The label every EndpointSlice carries to name its service. */
export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';
/** The pre-publishNotReadyAddresses way to ask for unready endpoints in DNS (the spec's _ready_). */
export const TOLERATE_UNREADY_ANNOTATION = 'service.alpha.kubernetes.io/tolerate-unready-endpoints';

function protocol(p: string | undefined): PortProtocol {
  const lower = (p ?? 'TCP').toLowerCase();
  return lower === 'udp' || lower === 'sctp' ? lower : 'tcp';
}

function namedPorts(ports: ReadonlyArray<{ name?: string; protocol?: string; port?: number }> | undefined): PortRecord[] {
  const out: PortRecord[] = [];
  for (const p of ports ?? []) {
    if (!p.name || p.port === undefined || !Number.isInteger(p.port)) continue;
    const name = p.name.toLowerCase();
    if (!isEncodableName(`_${name}`)) continue;
    out.push({ name, protocol: protocol(p.protocol), port: p.port });
  }
  return out;
}

function uniqueIPs(texts: ReadonlyArray<string | undefined>): string[] {
  const out: string[] = [];
  for (const t of texts) {
    const ip = t === undefined ? undefined : canonicalIP(t);
    if (ip !== undefined && !out.includes(ip)) out.push(ip);
  }
  return out;
}

export function serviceRecord(svc: Service): ServiceRecord | undefined {
  const { name, namespace = 'default', annotations } = svc.metadata;
  if (!name) return undefined;
  const spec = svc.spec ?? {};
  const base = {
    namespace: namespace.toLowerCase(),
    name: name.toLowerCase(),
    ports: namedPorts(spec.ports),
    publishNotReady: spec.publishNotReadyAddresses === true || annotations?.[TOLERATE_UNREADY_ANNOTATION] === 'true',
  };
  if (spec.type === 'ExternalName') {
    const target = canonicalName(spec.externalName ?? '');
    // A target that cannot be put on the wire (or none at all) leaves a name with no records.
    return { ...base, kind: 'ExternalName', ips: [], ...(target && isEncodableName(target) ? { externalName: target } : {}) };
  }
  if (spec.clusterIP === 'None') return { ...base, kind: 'Headless', ips: [] };
  // clusterIPs holds clusterIP first; a service whose IP is not allocated yet has neither.
  return { ...base, kind: 'ClusterIP', ips: uniqueIPs([...(spec.clusterIPs ?? []), spec.clusterIP]) };
}

export function sliceRecord(slice: EndpointSlice): SliceRecord | undefined {
  const service = slice.metadata.labels?.[SERVICE_NAME_LABEL];
  if (!service || (slice.addressType !== 'IPv4' && slice.addressType !== 'IPv6')) return undefined;
  const addresses: EndpointAddress[] = [];
  for (const ep of slice.endpoints ?? []) {
    // Kubernetes: a ready condition that is not set means ready.
    const ready = ep.conditions?.ready !== false;
    const hostname = ep.hostname?.toLowerCase();
    for (const ip of uniqueIPs(ep.addresses ?? [])) {
      const host = hostname && isEncodableName(hostname) && !hostname.includes('.') ? hostname : dashedIP(ip);
      addresses.push({ host, ip, ready });
    }
  }
  return {
    namespace: (slice.metadata.namespace ?? 'default').toLowerCase(),
    name: slice.metadata.name.toLowerCase(),
    service: service.toLowerCase(),
    addresses,
    ports: namedPorts(slice.ports),
  };
}

/**
 * A pod's DNS record, or undefined for pods that must not have one: host-network pods (their
 * address is the node's), pods that are finished or being deleted (their address may already
 * belong to another pod), and pods without an address yet.
 */
export function podRecord(pod: Pod): PodRecord | undefined {
  if (pod.spec?.hostNetwork || pod.metadata.deletionTimestamp) return undefined;
  const phase = pod.status?.phase;
  if (phase === 'Succeeded' || phase === 'Failed') return undefined;
  const ips = uniqueIPs([...(pod.status?.podIPs ?? []).map((p) => p.ip), pod.status?.podIP]);
  if (ips.length === 0) return undefined;
  return { namespace: (pod.metadata.namespace ?? 'default').toLowerCase(), name: pod.metadata.name.toLowerCase(), ips };
}
