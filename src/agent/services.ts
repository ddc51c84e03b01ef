/**
 * The agent's service half: it follows Services and EndpointSlices and keeps three things
 * true on its node —
 *
 *   1. the service proxy's rules (src/proxy: nftables maps, or iptables as the baseline),
 *      synced once per burst of changes, incrementally, and fully now and then (drift repair);
 *   2. LoadBalancer addresses announced on the underlay: for each LoadBalancer service one
 *      node with a ready endpoint is elected (the same answer on every node: the lowest hash of
 *      service and node name), adds the address to its underlay interface and sends a
 *      gratuitous ARP, so the router's cache follows a take-over at once; the others remove it;
 *   3. health-check node ports for externalTrafficPolicy Local: HTTP 200 with the number of
 *      local endpoints while there is one, 503 when there is none, so an outside balancer sends
 *      traffic only to nodes that keep the client's address and can serve it.
 */
import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { Logger } from 'pino';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { type Datastore, type EndpointSlice, type Service, createInformer } from '../datastore/index.ts';
import { describe } from '../errors/index.ts';
import { run } from '../kernel/index.ts';
import { IptablesProxyDataplane, ProxyDataplane, Translator } from '../proxy/index.ts';

export type ProxyMode = 'nftables' | 'iptables';

export interface ServiceAgentOptions {
  nodeName: string;
  nodeIP: string;
  clusterCIDR: string;
  iface: string;
  mode: ProxyMode;
  /** Full resync period: drift repair of the proxy's table (ms). */
  fullSyncMs: number;
}

const SERVICE_NAME = 'kubernetes.io/service-name';

/** Pure: which node announces a LoadBalancer address (rendezvous hashing over ready nodes). */
export function electAnnouncer(serviceKey: string, candidates: string[]): string | undefined {
  let best: string | undefined;
  let bestHash = '';
  for (const n of candidates) {
    const h = createHash('sha256').update(`${serviceKey}\0${n}`).digest('hex');
    if (best === undefined || h < bestHash) {
      best = n;
      bestHash = h;
    }
  }
  return best;
}

function readyNodes(slices: EndpointSlice[]): string[] {
  const out = new Set<string>();
  for (const s of slices) for (const e of s.endpoints ?? []) if (e.conditions?.ready !== false && e.nodeName) out.add(e.nodeName);
  return [...out];
}

/** Pure: the LoadBalancer addresses this node must hold. */
export function addressesToAnnounce(node: string, services: Service[], slices: EndpointSlice[]): Set<string> {
  const mine = new Set<string>();
  for (const svc of services) {
    if (svc.spec?.type !== 'LoadBalancer') continue;
    const key = `${svc.metadata.namespace ?? 'default'}/${svc.metadata.name}`;
    const own = slices.filter((s) => s.metadata.namespace === svc.metadata.namespace && s.metadata.labels?.[SERVICE_NAME] === svc.metadata.name);
    if (electAnnouncer(key, readyNodes(own)) !== node) continue;
    for (const ing of svc.status?.loadBalancer?.ingress ?? []) if (ing.ip) mine.add(ing.ip);
  }
  return mine;
}

/** Pure: local ready endpoints per health-check node port (externalTrafficPolicy Local services). */
export function healthCheckPorts(node: string, services: Service[], slices: EndpointSlice[]): Map<number, { service: string; local: number }> {
  const out = new Map<number, { service: string; local: number }>();
  for (const svc of services) {
    const port = svc.spec?.healthCheckNodePort;
    if (!port || svc.spec?.externalTrafficPolicy !== 'Local') continue;
    const own = slices.filter((s) => s.metadata.namespace === svc.metadata.namespace && s.metadata.labels?.[SERVICE_NAME] === svc.metadata.name);
    const local = own.flatMap((s) => s.endpoints ?? []).filter((e) => e.nodeName === node && e.conditions?.ready !== false).length;
    out.set(port, { service: `${svc.metadata.namespace ?? 'default'}/${svc.metadata.name}`, local });
  }
  return out;
}

export async function startServiceAgent(ds: Datastore, o: ServiceAgentOptions, log: Logger, registry: Registry, signal: AbortSignal): Promise<{ healthy(): boolean }> {
  const m = {
    syncs: new Counter({ name: 'podnet_proxy_syncs_total', help: 'Service proxy syncs', labelNames: ['mode', 'result'], registers: [registry] }),
    seconds: new Histogram({ name: 'podnet_proxy_sync_duration_seconds', help: 'Duration of a service proxy sync', labelNames: ['mode'], buckets: [0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10], registers: [registry] }),
    services: new Gauge({ name: 'podnet_proxy_services', help: 'Service ports programmed', registers: [registry] }),
    announced: new Gauge({ name: 'podnet_lb_addresses_announced', help: 'LoadBalancer addresses this node announces', registers: [registry] }),
  };
  const services = createInformer(ds, 'Service');
  const slices = createInformer(ds, 'EndpointSlice');
  const proxy = o.mode === 'iptables' ? new IptablesProxyDataplane() : new ProxyDataplane({ fullSyncIntervalMs: o.fullSyncMs });
  let ok = true;
  let timer: NodeJS.Timeout | undefined;
  let running = false;
  let again = false;
  const announced = new Set<string>();
  const hcServers = new Map<number, { server: Server; state: { service: string; local: number } }>();

  const syncAnnouncements = async (svcs: Service[], eps: EndpointSlice[]): Promise<void> => {
    const want = addressesToAnnounce(o.nodeName, svcs, eps);
    for (const ip of want) {
      if (announced.has(ip)) continue;
      await run('ip', ['addr', 'replace', `${ip}/32`, 'dev', o.iface]);
      // A gratuitous ARP so the router (and peers) learn the new owner at once. Not awaited:
      // arping lingers for its deadline (a second), and the sync loop (the proxy's rules for
      // every other service, the health checks) must not wait on it, once per new address.
      void run('arping', ['-U', '-c', '1', '-w', '1', '-I', o.iface, ip]).catch((err) => log.warn({ ip, err: describe(err) }, 'gratuitous ARP failed'));
      announced.add(ip);
      log.info({ ip }, 'announcing LoadBalancer address');
    }
    for (const ip of [...announced]) {
      if (want.has(ip)) continue;
      await run('ip', ['addr', 'del', `${ip}/32`, 'dev', o.iface]).catch(() => undefined);
      announced.delete(ip);
      log.info({ ip }, 'no longer announcing LoadBalancer address');
    }
    m.announced.set(announced.size);
  };

  const syncHealthChecks = async (svcs: Service[], eps: EndpointSlice[]): Promise<void> => {
    const want = healthCheckPorts(o.nodeName, svcs, eps);
    for (const [port, state] of want) {
      const have = hcServers.get(port);
      if (have) {
        have.state = state;
        continue;
      }
      const entry = { server: createServer(), state };
      entry.server.on('request', (_req, res) => {
        const s = entry.state;
        res.writeHead(s.local > 0 ? 200 : 503, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ service: { namespace: s.service.split('/')[0], name: s.service.split('/')[1] }, localEndpoints: s.local }) + '\n');
      });
      await new Promise<void>((resolve) => {
        entry.server.once('error', (err) => {
          log.error({ port, err: describe(err) }, 'health-check node port unavailable');
          resolve();
        });
        entry.server.listen(port, '0.0.0.0', () => resolve());
      });
      hcServers.set(port, entry);
    }
    for (const [port, entry] of hcServers) {
      if (want.has(port)) continue;
      entry.server.close();
      hcServers.delete(port);
    }
  };

  // Remembers each service's model by object identity: a change re-translates that service only.
  const translator = new Translator(o.nodeName, [o.nodeIP], o.clusterCIDR);
  const sync = async (): Promise<void> => {
    running = true;
    const end = m.seconds.startTimer({ mode: o.mode });
    try {
      const svcs = services.list();
      const eps = slices.list();
      const model = translator.translate(svcs, eps);
      const r = await proxy.sync(model.services, model.endpoints, model.node);
      ok = r.ok;
      m.syncs.inc({ mode: o.mode, result: r.ok ? 'ok' : 'error' });
      m.services.set(model.services.size);
      for (const p of r.problems) log.warn({ code: p.code }, p.message);
      const kind = 'mode' in r ? r.mode : 'full';
      if (r.changedServices > 0 || kind === 'full') log.info({ mode: kind, services: r.services, changed: r.changedServices, ms: Math.round(r.timings.totalMs) }, 'service proxy synced');
      await syncAnnouncements(svcs, eps);
      await syncHealthChecks(svcs, eps);
    } catch (err) {
      ok = false;
      m.syncs.inc({ mode: o.mode, result: 'error' });
      log.error({ err: describe(err) }, 'service proxy sync failed');
    } finally {
      end();
      running = false;
      if (again) {
        again = false;
        queue();
      }
    }
  };
  // Changes arrive in bursts (a Service and its slices): one sync per burst.
  function queue(): void {
    if (running) {
      again = true;
      return;
    }
    clearTimeout(timer);
    timer = setTimeout(() => void sync(), 10);
  }
  for (const inf of [services, slices] as const) inf.addEventHandler({ onAdd: queue, onUpdate: queue, onDelete: queue });
  await Promise.all([services.start(signal), slices.start(signal)]);
  await sync();
  const periodic = setInterval(queue, Math.min(o.fullSyncMs, 30_000));
  signal.addEventListener(
    'abort',
    () => {
      clearInterval(periodic);
      clearTimeout(timer);
      for (const e of hcServers.values()) e.server.close();
      if (proxy instanceof ProxyDataplane) proxy.close();
    },
    { once: true },
  );
  return { healthy: () => ok };
}
