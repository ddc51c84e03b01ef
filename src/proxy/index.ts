/**
 * The service proxy: Services and EndpointSlices → a slim model (translate) → change tracking
 * → pure planners (nftables by default, iptables for old kernels and as the benchmark
 * baseline) → thin executors that apply one transaction per sync in the proxy's own table.
 * A fake nft, a fake iptables and packet tracers for both let the rules be tested as tables
 * of packet flows without a kernel. See docs/proxy.md.
 *
 * For the agent:
 *
 *   const proxy = new ProxyDataplane();
 *   const m = translate({ services, endpointSlices, nodeName, nodeIPs, clusterCIDR });
 *   const r = await proxy.sync(m.services, m.endpoints, m.node);   // on every change + a timer
 *   …
 *   await proxy.remove();                                           // on teardown
 */
export type {
  EndpointInfo,
  EndpointsMap,
  L4Protocol,
  NodeContext,
  ProxyModel,
  ProxyProblem,
  ServiceInfo,
  ServicePortMap,
  TrafficPolicy,
} from './types.ts';
export { DEFAULT_AFFINITY_TIMEOUT, MASQ_MARK, PROXY_TABLE, ProxyError, SERVICE_MARK, hostPort, nftFamily } from './types.ts';
export { SERVICE_NAME_LABEL, compareEndpoints, endpointInfos, nodeContext, serviceInfos, servicePortKey, translate, Translator } from './translate.ts';
export type { TranslateInput } from './translate.ts';
export { hasExternal, layoutService, usable } from './layout.ts';
export type { ServiceLayout, Verdict } from './layout.ts';
export { ServiceChangeTracker, fingerprint } from './tracker.ts';
export type { ServiceChange, ServicePortState } from './tracker.ts';
export {
  AFFINITY_SET_PATTERN,
  IPT_PREFIX,
  IPT_SERVICE_CHAIN_PATTERN,
  SERVICE_CHAIN_PATTERN,
  affinitySet,
  endpointChain,
  hashName,
  iptEndpointChain,
  iptServiceChain,
  serviceChain,
} from './names.ts';
export {
  ENDPOINTS_CHECK_CHAIN,
  ENDPOINT_MAP_PATTERN,
  FILTER_FORWARD,
  HAIRPIN_SET,
  LOCAL_ENDPOINTS_SET,
  MASQUERADE_CHECK_CHAIN,
  SlotTable,
  endpointMap,
  FILTER_INPUT,
  FILTER_OUTPUT,
  MAP_NAMES,
  MARK_MASQ_CHAIN,
  MASQUERADING_CHAIN,
  NAT_OUTPUT,
  NftTableMirror,
  NAT_POSTROUTING,
  NAT_PREROUTING,
  NO_ENDPOINT_NODEPORTS,
  NO_ENDPOINT_SERVICES,
  REJECT_CHAIN,
  SERVICES_CHAIN,
  SERVICE_IPS,
  SERVICE_NODEPORTS,
  baseObjects,
  collectDesired,
  planNftables,
  planService,
  planTableRemoval,
  renderFull,
  tableName,
} from './nftables.ts';
export type { ChainPlan, DesiredTable, Dispatch, ElementPlan, MapName, NftCounts, NftPlanOptions, NftTransaction, ServicePlan, SetPlan } from './nftables.ts';
export { IPT_EP_CHECK, IPT_MARK_MASQ, IPT_NODEPORTS, IPT_POSTROUTING, IPT_SERVICES, iptablesJumps, parseSaveChains, planIptables } from './iptables.ts';
export type { IptJump, IptTable, IptablesPlan } from './iptables.ts';
export { planConntrackCleanup } from './conntrack.ts';
export { IptablesProxyDataplane, ProxyDataplane, parseTableNames, removeProxyTable } from './dataplane.ts';
export type { IptablesSyncResult, ProxyDataplaneOptions, SyncResult, SyncTimings } from './dataplane.ts';
export { NftTracer, seededRandom, summarize, traceNft } from './tracer.ts';
export type { TraceOptions, TraceOutcome, TracePacket, TraceSummary } from './tracer.ts';
export { FakeNft, FakeNftError } from './fake-nft.ts';
export type { FakeCall, NftChainState, NftSetState, NftTableState } from './fake-nft.ts';
export { NftSyntaxError, parseRule } from './nft-rules.ts';
export type { NftExpr, NftRule, NftVerdict } from './nft-rules.ts';
export { FakeIptables, IptablesTracer, applyRestore, emptyIptables } from './iptables-tracer.ts';
export type { IptTables } from './iptables-tracer.ts';
