/**
 * podnet dns: cluster DNS after the Kubernetes DNS-based service discovery specification
 * (schema 1.1.0), served from the datastore through informers, forwarding other names.
 *
 *   translate.ts  API objects → slim records          store.ts   the index (RecordStore)
 *   resolve.ts    the zone, pure: question → sections  watch.ts   informers → index
 *   server.ts     UDP + TCP, EDNS0, truncation          forward.ts upstreams, cache.ts
 *   replies.ts    encoded zone replies, reused until the store changes
 *   daemon.ts     `podnet dns` (createDaemon, metrics)  cli.ts     its flags
 *   metrics.ts    per-query counters without per-query garbage
 *
 * See docs/dns.md.
 */
export type { EndpointAddress, PodRecord, PodsMode, PortProtocol, PortRecord, RecordSource, ResolverOptions, ServiceKind, ServiceRecord, SliceRecord } from './types.ts';
export { DEFAULT_TTL, DEFAULT_ZONE, DNS_SCHEMA_VERSION } from './types.ts';
export { SERVICE_NAME_LABEL, TOLERATE_UNREADY_ANNOTATION, podRecord, serviceRecord, sliceRecord } from './translate.ts';
export { RecordStore } from './store.ts';
export type { StoreContents, StoreCounts } from './store.ts';
export { Resolver } from './resolve.ts';
export type { Outcome, Question, Rcode, Resolution } from './resolve.ts';
export { watchCluster } from './watch.ts';
export type { ClusterWatch, ClusterWatchOptions } from './watch.ts';
export { DnsHandler, startDnsServer } from './server.ts';
export type { AnswerSource, DnsServer, DnsServerOptions, HandlerOptions, QueryReporter, Transport } from './server.ts';
export { Forwarder, UPSTREAM_UDP_SIZE } from './forward.ts';
export type { ForwardEvent, ForwardResult, Forwarded, ForwarderOptions } from './forward.ts';
export { AnswerCache, cacheKey, cacheTtl } from './cache.ts';
export { ReplyCache, scanQuery } from './replies.ts';
export type { ReplyCacheOptions, ReplyMeta, ReplyTransport } from './replies.ts';
export type { AnswerCacheOptions, CachedMessage } from './cache.ts';
export { RESOLV_CONF, formatUpstream, parseResolvConf, parseUpstream, readResolvConf } from './resolvconf.ts';
export type { Upstream } from './resolvconf.ts';
export { canonicalIP, dashedIP, parseReverseName, reverseName, undashIP } from './names.ts';
export { formatRR } from './format.ts';
export { runDns, withoutSelf } from './daemon.ts';
export { QueryTally, TalliedHistogram } from './metrics.ts';
export type { QueryLabels, TalliedHistogramOptions } from './metrics.ts';
export type { DnsDaemonOptions } from './daemon.ts';
export { DNS_USAGE, dnsCommand, parseListen } from './cli.ts';
