/**
 * The service environment variables the kubelet gives a pod's containers (Kubernetes docs,
 * "Discovering services"): for every service of the pod's namespace that existed when the pod
 * started and has a cluster IP,
 *
 *   {SVC}_SERVICE_HOST, {SVC}_SERVICE_PORT, {SVC}_SERVICE_PORT_{PORTNAME}
 *   {SVC}_PORT=tcp://IP:PORT and {SVC}_PORT_{PORT}_{PROTO}[_PROTO|_PORT|_ADDR]  (Docker links)
 *
 * where SVC is the service name upper-cased with '-' turned into '_'. `enableServiceLinks:
 * false` keeps only the `kubernetes` service's variables, as the kubelet does.
 */
import type { Service } from '../datastore/index.ts';

function envName(name: string): string {
  return name.toUpperCase().replaceAll('-', '_');
}

/** Pure: the variables for one service (none for headless or ExternalName services). */
export function serviceEnv(svc: Service): Record<string, string> {
  const ip = svc.spec?.clusterIP;
  if (!ip || ip === 'None' || svc.spec?.type === 'ExternalName') return {};
  const ports = svc.spec?.ports ?? [];
  if (ports.length === 0) return {};
  const n = envName(svc.metadata.name);
  const out: Record<string, string> = {};
  const first = ports[0]!;
  out[`${n}_SERVICE_HOST`] = ip;
  out[`${n}_SERVICE_PORT`] = String(first.port);
  for (const p of ports) if (p.name) out[`${n}_SERVICE_PORT_${envName(p.name)}`] = String(p.port);
  const url = (p: { port: number; protocol?: string }): string => `${(p.protocol ?? 'TCP').toLowerCase()}://${ip}:${p.port}`;
  out[`${n}_PORT`] = url(first);
  for (const p of ports) {
    const proto = p.protocol ?? 'TCP';
    const prefix = `${n}_PORT_${p.port}_${proto}`;
    out[prefix] = url(p);
    out[`${prefix}_PROTO`] = proto.toLowerCase();
    out[`${prefix}_PORT`] = String(p.port);
    out[`${prefix}_ADDR`] = ip;
  }
  return out;
}

/**
 * Pure: the variables for a pod, from the services that existed before it (creation time
 * strictly earlier, as a pod cannot see services made after it started).
 */
export function podServiceEnv(pod: { metadata: { namespace?: string; creationTimestamp?: string }; spec?: { enableServiceLinks?: boolean } }, services: Service[]): Record<string, string> {
  const ns = pod.metadata.namespace ?? 'default';
  const links = pod.spec?.enableServiceLinks !== false;
  const started = pod.metadata.creationTimestamp ? Date.parse(pod.metadata.creationTimestamp) : Infinity;
  const out: Record<string, string> = {};
  const visible = services
    .filter((s) => {
      const created = s.metadata.creationTimestamp ? Date.parse(s.metadata.creationTimestamp) : 0;
      if (created > started) return false;
      if (s.metadata.namespace === 'default' && s.metadata.name === 'kubernetes') return true;
      return links && (s.metadata.namespace ?? 'default') === ns;
    })
    // Services of the pod's own namespace win over a same-named one elsewhere.
    .sort((a, b) => Number((a.metadata.namespace ?? 'default') === ns) - Number((b.metadata.namespace ?? 'default') === ns));
  for (const s of visible) Object.assign(out, serviceEnv(s));
  return out;
}
