/**
 * `podnet dns` as a daemon: the datastore, informers into the record index, the DNS server,
 * and /metrics + /healthz, in that order, under one AbortController (createDaemon).
 *
 * Like CoreDNS, it starts serving once the informers have their first lists, or after 5 s
 * regardless (then zone names are SERVFAIL until they have: never a false NXDOMAIN); health
 * says "not ok" until they are synced. Upstreams are --upstream, else the nameservers of
 * this process's own /etc/resolv.conf; one that is this server itself is dropped, so the
 * daemon never forwards to itself in a loop.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Counter, Gauge, Histogram } from 'prom-client';
import { createDaemon } from '../daemon/index.ts';
import { EtcdDatastore } from '../datastore/index.ts';
import { describe } from '../errors/index.ts';
import { formatUpstream, readResolvConf, RESOLV_CONF, type Upstream } from './resolvconf.ts';
import { TalliedHistogram, QueryTally } from './metrics.ts';
import { startDnsServer } from './server.ts';
import type { PodsMode } from './types.ts';
import { watchCluster } from './watch.ts';

export interface DnsDaemonOptions {
  etcd: string;
  host: string;
  port: number;
  zone: string;
  ttl: number;
  pods: PodsMode;
  /** None given: the nameservers of `resolvConf`. */
  upstreams?: Upstream[];
  resolvConf?: string;
  cacheSize?: number;
  metricsHost: string;
  metricsPort: number;
  /**
   * On SIGTERM, keep answering this long before closing (CoreDNS's `health { lameduck }`):
   * health fails at once, and clients keep getting answers while the proxies drop this
   * replica from the Service. Default 0.
   */
  lameduckMs?: number;
}

/** How long to wait for the first lists before serving anyway. */
const SYNC_WAIT_MS = 5000;

/** Query types worth a label of their own; the rest are "other" (bounded label values). */
const TYPES = new Set(['A', 'AAAA', 'SRV', 'PTR', 'TXT', 'CNAME', 'SOA', 'NS', 'MX', 'ANY', 'none']);
const typeLabel = (t: string): string => (TYPES.has(t) ? t : t === 'UNKNOWN_65' ? 'HTTPS' : 'other');

/** Latency buckets from 100 µs to 8 s, doubling (CoreDNS uses the same kind of spread). */
const BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096, 8.192];

/**
 * Upstreams other than this server itself: the listen address and port, or, when listening on
 * every address, loopback at that port (nothing else can hold it then).
 */
export function withoutSelf(upstreams: readonly Upstream[], host: string, port: number): Upstream[] {
  const wildcard = host === '0.0.0.0' || host === '::';
  const loopback = (ip: string): boolean => ip === '::1' || ip.startsWith('127.');
  return upstreams.filter((u) => !(u.port === port && (u.host === host || (wildcard && loopback(u.host)))));
}

export async function runDns(opts: DnsDaemonOptions): Promise<void> {
  const d = createDaemon('dns', { zone: opts.zone });
  const ds = new EtcdDatastore({ endpoints: opts.etcd });
  d.onShutdown(() => ds.close());

  const registers = [d.registry];
  const tally = new QueryTally();
  new Counter({
    name: 'podnet_dns_queries_total',
    help: 'DNS queries answered, by transport, query type, response code and source (cluster, cache, forward, invalid)',
    labelNames: ['proto', 'type', 'rcode', 'source'],
    registers,
    collect() {
      tally.flush((labels, n) => this.inc(labels, n));
    },
  });
  const duration = new TalliedHistogram({ name: 'podnet_dns_query_duration_seconds', help: 'Time from a query read to its reply encoded, by source', labelName: 'source', buckets: BUCKETS, registers });
  const truncated = new Counter({ name: 'podnet_dns_truncated_total', help: 'Replies sent with TC set (too large for the UDP size)', labelNames: ['proto'], registers });
  const cacheHits = new Counter({ name: 'podnet_dns_cache_hits_total', help: 'Forwarded names answered from the cache', registers });
  const cacheMisses = new Counter({ name: 'podnet_dns_cache_misses_total', help: 'Forwarded names the cache did not have', registers });
  const forwards = new Counter({ name: 'podnet_dns_forward_requests_total', help: 'Exchanges with upstream nameservers, by upstream, transport and result', labelNames: ['upstream', 'transport', 'result'], registers });
  const forwardDuration = new Histogram({ name: 'podnet_dns_forward_duration_seconds', help: 'Time of upstream exchanges', labelNames: ['upstream'], buckets: BUCKETS, registers });

  await d.serve(opts.metricsHost, opts.metricsPort);

  const watch = watchCluster(ds, { pods: opts.pods !== 'disabled', onError: (err) => d.log.error({ err: describe(err) }, 'informer') });
  d.addHealthCheck('informers-synced', () => watch.synced());
  d.onShutdown(() => watch.stop());
  const started = watch.start(d.signal);
  await Promise.race([started, sleep(SYNC_WAIT_MS, undefined, { signal: d.signal }).catch(() => undefined)]);
  if (d.signal.aborted) return d.runUntilStopped();
  if (!watch.synced()) {
    d.log.warn({ waitedMs: SYNC_WAIT_MS }, 'serving before the informers synced: cluster names are SERVFAIL until they do');
    void started.then(() => d.log.info(watch.store.counts(), 'informers synced'));
  }

  const configured = opts.upstreams ?? readResolvConf(opts.resolvConf ?? RESOLV_CONF);
  const upstreams = withoutSelf(configured, opts.host, opts.port);
  if (upstreams.length < configured.length) d.log.warn({ dropped: configured.filter((u) => !upstreams.includes(u)).map(formatUpstream) }, 'upstream is this server itself: dropped');
  if (upstreams.length === 0) d.log.warn('no upstream nameservers: names outside the cluster domain are SERVFAIL');

  const server = await startDnsServer({
    source: watch.store,
    zone: opts.zone,
    ttl: opts.ttl,
    pods: opts.pods,
    host: opts.host,
    port: opts.port,
    upstreams,
    ...(opts.cacheSize !== undefined ? { cacheSize: opts.cacheSize } : {}),
    onQuery: (proto, qtype, rcode, source, seconds, cut) => {
      tally.add(proto, typeLabel(qtype), rcode, source);
      duration.observe(source, seconds);
      if (cut) truncated.inc({ proto });
      if (source === 'cache') cacheHits.inc();
      else if (source === 'forward') cacheMisses.inc();
    },
    onForward: (e) => {
      forwards.inc({ upstream: e.upstream, transport: e.transport, result: e.result });
      forwardDuration.observe({ upstream: e.upstream }, e.seconds);
    },
    onError: (err) => d.log.warn({ err: describe(err) }, 'dns socket'),
  });
  d.onShutdown(() => server.close());
  const lameduckMs = opts.lameduckMs ?? 0;
  if (lameduckMs > 0) {
    // Registered after the server's closer, so it runs before it.
    let stopping = false;
    d.addHealthCheck('not-stopping', () => !stopping);
    d.onShutdown(async () => {
      stopping = true;
      d.log.info({ ms: lameduckMs }, 'lame duck: still answering before closing');
      await sleep(lameduckMs);
    });
  }
  const replies = server.handler.replies;
  let counted = { hits: 0, misses: 0 };
  const replyCount = (which: 'hits' | 'misses'): number => {
    const now = replies?.[which] ?? 0;
    const n = now - counted[which];
    counted = { ...counted, [which]: now };
    return n;
  };
  new Counter({ name: 'podnet_dns_reply_cache_hits_total', help: 'Zone queries answered from the reply cache (encoded replies)', registers, collect() { this.inc(replyCount('hits')); } });
  new Counter({ name: 'podnet_dns_reply_cache_misses_total', help: 'Plain queries the reply cache did not have (a name first asked since the last change, names outside the zone)', registers, collect() { this.inc(replyCount('misses')); } });
  new Gauge({ name: 'podnet_dns_reply_cache_entries', help: 'Replies in the reply cache (dropped whenever the cluster changes)', registers, collect() { this.set(replies?.size ?? 0); } });
  new Gauge({ name: 'podnet_dns_cache_entries', help: 'Answers in the forward cache', registers, collect() { this.set(server.forwarder.cache?.size ?? 0); } });
  new Gauge({
    name: 'podnet_dns_records',
    help: 'Objects in the DNS index, by kind',
    labelNames: ['kind'],
    registers,
    collect() {
      const c = watch.store.counts();
      this.set({ kind: 'services' }, c.services);
      this.set({ kind: 'endpointslices' }, c.endpointSlices);
      this.set({ kind: 'endpoint_addresses' }, c.endpointAddresses);
      this.set({ kind: 'pods' }, c.pods);
    },
  });

  d.log.info(
    { listen: `${opts.host}:${server.port}`, zone: opts.zone, ttl: opts.ttl, pods: opts.pods, upstreams: upstreams.map(formatUpstream), records: watch.store.counts() },
    'dns serving',
  );
  await d.runUntilStopped();
}
