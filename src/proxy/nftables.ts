/**
 * The nftables planner (the default mode). Everything lives in the proxy's own table,
 * `ip podnet-proxy` (or `ip6 podnet-proxy`); no other table is ever named.
 *
 *   nat-prerouting  (nat, prerouting, dstnat)  ─┐
 *   nat-output      (nat, output, -100)        ─┴─ jump services
 *       services:  ip daddr . meta l4proto . th dport vmap @service-ips
 *                  fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports
 *   service-ips / service-nodeports  → goto svc-… | local-… | ext-…
 *       svc-…  / local-…   one endpoint at random, through a shared endpoint map:
 *                            meta mark set meta mark or 0x2000
 *                            meta l4proto tcp dnat ip addr . port to numgen random mod N offset S·65536 map @endpoints-tcp-B
 *                          (with ClientIP affinity instead: [ip saddr @aff-… goto ep-…], then
 *                           numgen random mod N == 0 goto ep-1; …; goto ep-N)
 *       ext-…              masquerade outside sources (policy Cluster) or short-circuit pods and
 *                          the node to svc-… (policy Local), then goto svc-… / local-…
 *       ep-… (affinity only)  hairpin / remote masquerade marks, update @aff-…, dnat to ip:port
 *   nat-postrouting (nat, postrouting, srcnat) ─ jump masquerading:
 *       service-marked packets → masquerade-check: hairpin (ip saddr . ip daddr @hairpin-endpoints)
 *       or an outside source sent to a remote endpoint (ip daddr != @local-endpoints) → mark;
 *       marked packets → masquerade
 *   filter-input / filter-forward (-110), filter-output (-90, after nat-output)
 *       ct state new jump endpoints-check:
 *                  ip daddr . meta l4proto . th dport vmap @no-endpoint-services
 *                  fib daddr type local … vmap @no-endpoint-nodeports
 *       → goto reject-chain (tcp reset / icmp port unreachable) or drop
 *
 * Why endpoint maps rather than a chain per endpoint (kube-proxy's layout): the kernel's cost
 * of a transaction grows with the square of the number of chains (nft lists every chain
 * before any change, and the kernel's chain dump restarts from the head for each message),
 * so 10,000 services × 25 endpoints as 260,000 chains took 24 s to load and 4 s for any
 * one-service change. With one chain per service port the table has 26 times fewer chains.
 * Each dispatch chain gets a slot S (a number the mirror hands out and keeps while the chain
 * lives); its N endpoints are the elements S·65536 … S·65536+N−1 of map `endpoints-PROTO-(S mod 256)`.
 * The maps are bucketed because the kernel walks every element of a map each time a rule
 * binds it: one map for all would make loading quadratic (measured: 150 s), one map per
 * service makes each name lookup walk all sets (7 s); 256 buckets load in about 2 s.
 *
 * The filter checks run after DNAT, so their map entries only ever match packets that are
 * *still* addressed to a service: they mean "nothing to DNAT to" — REJECT when the service
 * has no usable endpoint (the client fails at once), DROP when a Local policy finds none on
 * this node.
 *
 * Pure: `planService` turns one service port into chains, sets and map elements (endpoints
 * as a list, not yet as slots); `renderFull` turns all plans into a full `nft -f -`
 * transaction, and `NftTableMirror` (what the table holds, slots included) turns the changed
 * service ports into a partial one.
 */
import { formatPrefix, parseSubnet } from '../netaddr/index.ts';
import { layoutService } from './layout.ts';
import { AFFINITY_SET_PATTERN, SERVICE_CHAIN_PATTERN, affinitySet, endpointChain, serviceChain } from './names.ts';
import { type EndpointInfo, MASQ_MARK, type NodeContext, PROXY_TABLE, SERVICE_MARK, type ServiceInfo, hostPort, nftFamily } from './types.ts';

export const NAT_PREROUTING = 'nat-prerouting';
export const NAT_OUTPUT = 'nat-output';
export const NAT_POSTROUTING = 'nat-postrouting';
export const FILTER_INPUT = 'filter-input';
export const FILTER_FORWARD = 'filter-forward';
export const FILTER_OUTPUT = 'filter-output';
export const SERVICES_CHAIN = 'services';
export const MARK_MASQ_CHAIN = 'mark-for-masquerade';
export const MASQUERADING_CHAIN = 'masquerading';
export const REJECT_CHAIN = 'reject-chain';
export const ENDPOINTS_CHECK_CHAIN = 'endpoints-check';
export const MASQUERADE_CHECK_CHAIN = 'masquerade-check';

export const SERVICE_IPS = 'service-ips';
export const SERVICE_NODEPORTS = 'service-nodeports';
export const NO_ENDPOINT_SERVICES = 'no-endpoint-services';
export const NO_ENDPOINT_NODEPORTS = 'no-endpoint-nodeports';
/** Local endpoints as `ip . ip`: a packet from an endpoint to itself is a hairpin. */
export const HAIRPIN_SET = 'hairpin-endpoints';
/** Addresses of this node's endpoints: an outside source sent elsewhere is masqueraded. */
export const LOCAL_ENDPOINTS_SET = 'local-endpoints';
/** The four verdict maps and the two plain sets whose elements service plans claim. */
export type MapName =
  | typeof SERVICE_IPS
  | typeof SERVICE_NODEPORTS
  | typeof NO_ENDPOINT_SERVICES
  | typeof NO_ENDPOINT_NODEPORTS
  | typeof HAIRPIN_SET
  | typeof LOCAL_ENDPOINTS_SET;
export const MAP_NAMES: readonly MapName[] = [SERVICE_IPS, SERVICE_NODEPORTS, NO_ENDPOINT_SERVICES, NO_ENDPOINT_NODEPORTS, HAIRPIN_SET, LOCAL_ENDPOINTS_SET];
const PLAIN_SETS: ReadonlySet<MapName> = new Set([HAIRPIN_SET, LOCAL_ENDPOINTS_SET]);

/**
 * Endpoint maps: `endpoints-tcp-0` … `endpoints-sctp-255`, declared when a slot of theirs is
 * in use. One set per protocol: a map's value type names the port's protocol, and nft 1.0.6
 * refuses a shared `th dport` map once it reads it back from the kernel (a partial sync).
 */
export const ENDPOINT_MAP_PREFIX = 'endpoints-';
export const ENDPOINT_MAP_BUCKETS = 256;
export const ENDPOINT_MAP_PATTERN = /^endpoints-(tcp|udp|sctp)-\d+$/;
/** A slot's keys are slot·65536 + index, so 65,536 slots of 65,536 endpoints fit 32 bits. */
export const SLOT_SPAN = 65536;
export const MAX_SLOTS = 65536;

export function endpointMap(proto: string, slot: number): string {
  return `${ENDPOINT_MAP_PREFIX}${proto}-${slot % ENDPOINT_MAP_BUCKETS}`;
}

/** A chain's last rule: DNAT to one of `targets` at random, through an endpoint map. */
export interface Dispatch {
  /** tcp, udp or sctp. */
  readonly proto: string;
  /** `ip . port` for each endpoint, in the order of their map keys. */
  readonly targets: readonly string[];
}

export interface ChainPlan {
  readonly name: string;
  readonly rules: readonly string[];
  /** Rendered after `rules`, once the mirror has given the chain its slot. */
  readonly dispatch?: Dispatch;
}

export interface SetPlan {
  readonly name: string;
  readonly timeoutSeconds: number;
}

export interface ElementPlan {
  readonly map: MapName;
  /** `10.96.0.10 . tcp . 80`, or `tcp . 30080` in the NodePort maps; `10.244.1.5 . 10.244.1.5` in the hairpin set. */
  readonly key: string;
  /** `goto svc-…`, `goto reject-chain`, `drop`; '' in the plain sets. */
  readonly value: string;
}

/** One service port's share of the table. */
export interface ServicePlan {
  readonly key: string;
  readonly chains: readonly ChainPlan[];
  readonly sets: readonly SetPlan[];
  readonly elements: readonly ElementPlan[];
}

export function tableName(family: 4 | 6): string {
  return `${nftFamily(family)} ${PROXY_TABLE}`;
}

const MARK = `0x${MASQ_MARK.toString(16)}`;
const SVC_MARK = `0x${SERVICE_MARK.toString(16)}`;

export interface NftPlanOptions {
  /**
   * How the policy chain of a ClientIP-affinity service (the one kind that keeps a chain per
   * endpoint, for its affinity sets) picks one of N endpoints:
   *   'rules' (default)  numgen random mod N == 0 goto ep-1; numgen random mod N-1 == 0 goto ep-2; …; goto ep-N
   *                      (uniform, as iptables' statistic cascade)
   *   'vmap'             numgen random mod N vmap { 0 : goto ep-1, … } (kube-proxy's form)
   * Each vmap is an anonymous set, and the kernel's cost of adding anonymous sets grows with
   * the number already in the table (measured: 5000 services, 3.9 s of a 6.4 s full sync
   * against 1.2 s with rules), so rules are the default.
   */
  dispatch?: 'rules' | 'vmap';
}

/** `10.244.1.5 . 8080` (an endpoint map value). */
function mapTarget(ep: EndpointInfo): string {
  return `${ep.ip} . ${ep.port}`;
}

/** Pure: the chains, affinity sets and map elements of one service port. */
export function planService(svc: ServiceInfo, eps: readonly EndpointInfo[], node: NodeContext, opts: NftPlanOptions = {}): ServicePlan {
  const L = layoutService(svc, eps);
  const ipf = nftFamily(node.family);
  const cidr = formatPrefix(parseSubnet(node.clusterCIDR));
  const proto = svc.protocol.toLowerCase();
  const svcChain = serviceChain('svc', svc);
  const localChain = serviceChain('local', svc);
  const extChain = serviceChain('ext', svc);
  const affinity = svc.sessionAffinity === 'ClientIP';
  const chains: ChainPlan[] = [];
  const sets: SetPlan[] = [];
  const epChain = new Map<EndpointInfo, string>();
  const epSet = new Map<EndpointInfo, string>();

  // Without affinity, endpoints need no chains of their own: the policy chain DNATs through
  // an endpoint map and postrouting decides on masquerade from the set of local endpoints.
  const viaMap = !affinity;
  const elements: ElementPlan[] = [];
  if (viaMap) {
    for (const ep of L.endpoints) {
      if (!ep.isLocal) continue;
      elements.push({ map: HAIRPIN_SET, key: `${ep.ip} . ${ep.ip}`, value: '' });
      elements.push({ map: LOCAL_ENDPOINTS_SET, key: ep.ip, value: '' });
    }
  } else {
    for (const ep of L.endpoints) {
      const name = endpointChain(svc, ep);
      epChain.set(ep, name);
      const rules = [`${ipf} saddr ${ep.ip} jump ${MARK_MASQ_CHAIN}`];
      if (!ep.isLocal) rules.push(`${ipf} saddr != ${cidr} jump ${MARK_MASQ_CHAIN}`);
      const set = affinitySet(svc, ep);
      epSet.set(ep, set);
      sets.push({ name: set, timeoutSeconds: svc.affinityTimeoutSeconds });
      rules.push(`update @${set} { ${ipf} saddr }`);
      rules.push(`meta l4proto ${proto} dnat to ${hostPort(ep.ip, ep.port)}`);
      chains.push({ name, rules });
    }
  }

  const policyChain = (name: string, list: readonly EndpointInfo[]): ChainPlan => {
    if (viaMap) return { name, rules: [`meta mark set meta mark or ${SVC_MARK}`], dispatch: { proto, targets: list.map(mapTarget) } };
    const rules: string[] = [];
    for (const ep of list) rules.push(`${ipf} saddr @${epSet.get(ep)} goto ${epChain.get(ep)}`);
    if (list.length === 1) rules.push(`goto ${epChain.get(list[0]!)}`);
    else if (opts.dispatch === 'vmap') rules.push(`numgen random mod ${list.length} vmap { ${list.map((ep, i) => `${i} : goto ${epChain.get(ep)}`).join(', ')} }`);
    else {
      list.forEach((ep, i) => {
        const left = list.length - i;
        rules.push(left > 1 ? `numgen random mod ${left} == 0 goto ${epChain.get(ep)}` : `goto ${epChain.get(ep)}`);
      });
    }
    return { name, rules };
  };
  if (L.usesCluster) chains.unshift(policyChain(svcChain, L.cluster));
  if (L.usesLocal) chains.splice(L.usesCluster ? 1 : 0, 0, policyChain(localChain, L.local));

  const internalValue =
    L.internal.verdict === 'endpoints' ? `goto ${L.internal.set === 'local' ? localChain : svcChain}` : L.internal.verdict === 'reject' ? `goto ${REJECT_CHAIN}` : 'drop';
  for (const ip of svc.clusterIPs) {
    const key = `${ip} . ${proto} . ${svc.port}`;
    elements.push({ map: L.internal.verdict === 'endpoints' ? SERVICE_IPS : NO_ENDPOINT_SERVICES, key, value: internalValue });
  }
  const ext = L.external;
  if (ext) {
    const extKeys: ElementPlan[] = [];
    for (const ip of [...svc.externalIPs, ...svc.loadBalancerIPs]) extKeys.push({ map: SERVICE_IPS, key: `${ip} . ${proto} . ${svc.port}`, value: '' });
    if (svc.nodePort !== undefined) extKeys.push({ map: SERVICE_NODEPORTS, key: `${proto} . ${svc.nodePort}`, value: '' });
    const noEp = (m: MapName): MapName => (m === SERVICE_IPS ? NO_ENDPOINT_SERVICES : NO_ENDPOINT_NODEPORTS);
    if (ext.verdict === 'reject') {
      for (const e of extKeys) elements.push({ map: noEp(e.map), key: e.key, value: `goto ${REJECT_CHAIN}` });
    } else {
      const rules =
        ext.policy === 'Cluster'
          ? [`${ipf} saddr != ${cidr} jump ${MARK_MASQ_CHAIN}`, `goto ${svcChain}`]
          : [
              `${ipf} saddr ${cidr} goto ${svcChain}`,
              `fib saddr type local jump ${MARK_MASQ_CHAIN}`,
              `fib saddr type local goto ${svcChain}`,
              ...(ext.verdict === 'endpoints' ? [`goto ${localChain}`] : []),
            ];
      chains.splice(Number(L.usesCluster) + Number(L.usesLocal), 0, { name: extChain, rules });
      for (const e of extKeys) {
        elements.push({ map: e.map, key: e.key, value: `goto ${extChain}` });
        if (ext.verdict === 'drop') elements.push({ map: noEp(e.map), key: e.key, value: 'drop' });
      }
    }
  }
  return { key: svc.key, chains, sets, elements };
}

interface BaseChain {
  name: string;
  spec?: string;
  rules: string[];
}

/** The fixed part of the table: base chains, helper chains, the verdict maps and the endpoint sets. */
export function baseObjects(
  family: 4 | 6,
  clusterCIDR: string,
): { chains: BaseChain[]; maps: Array<{ name: MapName; type: string }>; sets: Array<{ name: MapName; type: string }> } {
  const ipf = nftFamily(family);
  const addrType = family === 4 ? 'ipv4_addr' : 'ipv6_addr';
  const loopback = family === 4 ? '127.0.0.0/8' : '::1';
  const cidr = formatPrefix(parseSubnet(clusterCIDR));
  const check = [`ct state new jump ${ENDPOINTS_CHECK_CHAIN}`];
  return {
    chains: [
      { name: NAT_PREROUTING, spec: 'type nat hook prerouting priority dstnat; policy accept;', rules: [`jump ${SERVICES_CHAIN}`] },
      { name: NAT_OUTPUT, spec: 'type nat hook output priority -100; policy accept;', rules: [`jump ${SERVICES_CHAIN}`] },
      { name: NAT_POSTROUTING, spec: 'type nat hook postrouting priority srcnat; policy accept;', rules: [`jump ${MASQUERADING_CHAIN}`] },
      { name: FILTER_INPUT, spec: 'type filter hook input priority -110; policy accept;', rules: check },
      { name: FILTER_FORWARD, spec: 'type filter hook forward priority -110; policy accept;', rules: check },
      // After nat-output (-100): a packet the node sends to a service is already DNATed here.
      { name: FILTER_OUTPUT, spec: 'type filter hook output priority -90; policy accept;', rules: check },
      {
        name: SERVICES_CHAIN,
        rules: [
          `${ipf} daddr . meta l4proto . th dport vmap @${SERVICE_IPS}`,
          `fib daddr type local ${ipf} daddr != ${loopback} meta l4proto . th dport vmap @${SERVICE_NODEPORTS}`,
        ],
      },
      { name: MARK_MASQ_CHAIN, rules: [`meta mark set meta mark or ${MARK}`] },
      // Service-marked packets are DNATed by now: decide with the endpoint known, then clear the bit.
      {
        name: MASQUERADE_CHECK_CHAIN,
        rules: [
          `meta mark set meta mark xor ${SVC_MARK}`,
          `${ipf} saddr . ${ipf} daddr @${HAIRPIN_SET} jump ${MARK_MASQ_CHAIN}`,
          `${ipf} saddr != ${cidr} ${ipf} daddr != @${LOCAL_ENDPOINTS_SET} jump ${MARK_MASQ_CHAIN}`,
        ],
      },
      {
        name: MASQUERADING_CHAIN,
        rules: [
          `meta mark & ${SVC_MARK} == ${SVC_MARK} jump ${MASQUERADE_CHECK_CHAIN}`,
          `meta mark & ${MARK} == 0 return`,
          `meta mark set meta mark xor ${MARK}`,
          'masquerade fully-random',
        ],
      },
      { name: REJECT_CHAIN, rules: ['meta l4proto tcp reject with tcp reset', 'reject'] },
      {
        name: ENDPOINTS_CHECK_CHAIN,
        rules: [
          `${ipf} daddr . meta l4proto . th dport vmap @${NO_ENDPOINT_SERVICES}`,
          `fib daddr type local ${ipf} daddr != ${loopback} meta l4proto . th dport vmap @${NO_ENDPOINT_NODEPORTS}`,
        ],
      },
    ],
    maps: [
      { name: SERVICE_IPS, type: `${addrType} . inet_proto . inet_service : verdict` },
      { name: SERVICE_NODEPORTS, type: 'inet_proto . inet_service : verdict' },
      { name: NO_ENDPOINT_SERVICES, type: `${addrType} . inet_proto . inet_service : verdict` },
      { name: NO_ENDPOINT_NODEPORTS, type: 'inet_proto . inet_service : verdict' },
    ],
    sets: [
      { name: HAIRPIN_SET, type: `${addrType} . ${addrType}` },
      { name: LOCAL_ENDPOINTS_SET, type: addrType },
    ],
  };
}

/** The declaration of an endpoint map: a 32-bit key (numgen's type) to address . port. */
export function endpointMapType(family: 4 | 6, proto: string): string {
  return `typeof numgen random mod ${SLOT_SPAN} : ${nftFamily(family)} daddr . ${proto} dport`;
}

// ---------------------------------------------------------------------------------------
// Transactions

export interface DesiredTable {
  readonly chains: Map<string, ChainPlan>;
  readonly sets: Map<string, SetPlan>;
  readonly elements: Map<MapName, Map<string, string>>;
  /** Map keys claimed by two service ports (the first, in key order, wins). */
  readonly conflicts: string[];
}

function byKey(a: { key: string }, b: { key: string }): number {
  return a.key < b.key ? -1 : a.key > b.key ? 1 : 0;
}

function conflictText(map: string, key: string, owners: readonly string[]): string {
  return `${map} ${key}: claimed by ${owners.join(' and ')}; ${owners.slice(1).join(', ')} ${owners.length > 2 ? 'lose' : 'loses'} it`;
}

function isPlainSetId(id: string): boolean {
  return PLAIN_SETS.has(id.slice(0, id.indexOf(' ')) as MapName);
}

/** Joins service plans into the desired table (plans are visited in key order). */
export function collectDesired(plans: Iterable<ServicePlan>): DesiredTable {
  const chains = new Map<string, ChainPlan>();
  const sets = new Map<string, SetPlan>();
  const elements = new Map<MapName, Map<string, string>>(MAP_NAMES.map((m) => [m, new Map<string, string>()]));
  const owners = new Map<string, string[]>();
  const sorted = [...plans].sort(byKey);
  for (const p of sorted) {
    for (const c of p.chains) chains.set(c.name, c);
    for (const s of p.sets) sets.set(s.name, s);
    for (const e of p.elements) {
      const id = `${e.map} ${e.key}`;
      const o = owners.get(id);
      if (o) {
        if (!o.includes(p.key)) o.push(p.key);
        continue;
      }
      owners.set(id, [p.key]);
      elements.get(e.map)!.set(e.key, e.value);
    }
  }
  const conflicts: string[] = [];
  for (const [id, o] of owners) {
    // Two services sharing a local endpoint share its set elements: no conflict.
    if (o.length < 2 || isPlainSetId(id)) continue;
    const sp = id.indexOf(' ');
    conflicts.push(conflictText(id.slice(0, sp), id.slice(sp + 1), o));
  }
  return { chains, sets, elements, conflicts };
}

export interface NftCounts {
  /** Service chains written (new, or flushed and refilled). */
  chainsWritten: number;
  chainsDeleted: number;
  rulesWritten: number;
  /** Map and set elements, endpoint map elements included. */
  elementsAdded: number;
  elementsDeleted: number;
  setsAdded: number;
  setsDeleted: number;
  /** Lines in the transaction. */
  lines: number;
}

function zeroCounts(): NftCounts {
  return { chainsWritten: 0, chainsDeleted: 0, rulesWritten: 0, elementsAdded: 0, elementsDeleted: 0, setsAdded: 0, setsDeleted: 0, lines: 0 };
}

const chainTexts = new WeakMap<ChainPlan, string>();
/** A chain's rules as one text (cached: unchanged plans are compared many times). The
 *  dispatch rule depends on the protocol and the number of endpoints, not on which they are. */
function chainText(c: ChainPlan): string {
  let t = chainTexts.get(c);
  if (t === undefined) {
    t = c.rules.join('\n');
    if (c.dispatch) t += `\n#dispatch ${c.dispatch.proto} ${c.dispatch.targets.length}`;
    chainTexts.set(c, t);
  }
  return t;
}

/**
 * Which dispatch chain holds which slot. Freed slots are reused lowest first, so a table's
 * slots stay dense and its endpoint maps few.
 */
export class SlotTable {
  private readonly bySlot: Map<string, number>;
  private free: number[];
  private next: number;

  constructor(from?: SlotTable) {
    this.bySlot = new Map(from?.bySlot ?? []);
    this.free = [...(from?.free ?? [])];
    this.next = from?.next ?? 0;
  }

  get(chain: string): number | undefined {
    return this.bySlot.get(chain);
  }

  take(chain: string): number {
    const had = this.bySlot.get(chain);
    if (had !== undefined) return had;
    let slot: number;
    if (this.free.length > 0) {
      let i = 0;
      for (let j = 1; j < this.free.length; j++) if (this.free[j]! < this.free[i]!) i = j;
      slot = this.free[i]!;
      this.free.splice(i, 1);
    } else {
      if (this.next >= MAX_SLOTS) throw new RangeError(`more than ${MAX_SLOTS} service chains with endpoints`);
      slot = this.next++;
    }
    this.bySlot.set(chain, slot);
    return slot;
  }

  release(chain: string): void {
    const slot = this.bySlot.get(chain);
    if (slot === undefined) return;
    this.bySlot.delete(chain);
    this.free.push(slot);
  }

  get size(): number {
    return this.bySlot.size;
  }
}

/** Emits transaction lines; the order of the phases is what the kernel needs (see below). */
class Writer {
  readonly lines: string[] = [];
  readonly counts = zeroCounts();
  readonly t: string;
  readonly family: 4 | 6;

  constructor(family: 4 | 6) {
    this.family = family;
    this.t = tableName(family);
  }

  line(text: string): void {
    this.lines.push(text);
  }

  addSet(s: SetPlan): void {
    this.lines.push(`add set ${this.t} ${s.name} { type ${this.family === 4 ? 'ipv4_addr' : 'ipv6_addr'} ; flags dynamic,timeout ; timeout ${s.timeoutSeconds}s ; }`);
    this.counts.setsAdded++;
  }

  /** `name` is `endpoints-PROTO-BUCKET`. */
  addEndpointMap(name: string): void {
    const proto = name.split('-')[1]!;
    this.lines.push(`add map ${this.t} ${name} { ${endpointMapType(this.family, proto)} ; }`);
  }

  /** The chain's rules, and its dispatch rule when it has one (then `slot` is its slot). */
  addRules(c: ChainPlan, slot?: number): void {
    for (const r of c.rules) this.lines.push(`add rule ${this.t} ${c.name} ${r}`);
    let n = c.rules.length;
    if (c.dispatch) {
      if (slot === undefined) throw new Error(`chain ${c.name} has no slot`);
      const ipf = nftFamily(this.family);
      const d = c.dispatch;
      this.lines.push(`add rule ${this.t} ${c.name} meta l4proto ${d.proto} dnat ${ipf} addr . port to numgen random mod ${d.targets.length} offset ${slot * SLOT_SPAN} map @${endpointMap(d.proto, slot)}`);
      n++;
    }
    this.counts.rulesWritten += n;
    this.counts.chainsWritten++;
  }

  addElement(m: string, k: string, v: string): void {
    this.lines.push(v === '' ? `add element ${this.t} ${m} { ${k} }` : `add element ${this.t} ${m} { ${k} : ${v} }`);
    this.counts.elementsAdded++;
  }

  deleteElement(m: string, k: string): void {
    this.lines.push(`delete element ${this.t} ${m} { ${k} }`);
    this.counts.elementsDeleted++;
  }

  /** Endpoint map elements of one slot, one line per map. */
  addTargets(proto: string, slot: number, items: ReadonlyArray<readonly [number, string]>): void {
    if (items.length === 0) return;
    const base = slot * SLOT_SPAN;
    this.lines.push(`add element ${this.t} ${endpointMap(proto, slot)} { ${items.map(([i, v]) => `${base + i} : ${v}`).join(', ')} }`);
    this.counts.elementsAdded += items.length;
  }

  deleteTargets(proto: string, slot: number, indexes: readonly number[]): void {
    if (indexes.length === 0) return;
    const base = slot * SLOT_SPAN;
    this.lines.push(`delete element ${this.t} ${endpointMap(proto, slot)} { ${indexes.map((i) => base + i).join(', ')} }`);
    this.counts.elementsDeleted += indexes.length;
  }

  done(): { script: string; counts: NftCounts } {
    this.counts.lines = this.lines.length;
    return { script: this.lines.length ? this.lines.join('\n') + '\n' : '', counts: this.counts };
  }
}

/** The endpoint maps the slots of `chains` fall in. */
function bucketsOf(slots: SlotTable, chains: Iterable<ChainPlan>): Set<string> {
  const out = new Set<string>();
  for (const c of chains) {
    const s = c.dispatch ? slots.get(c.name) : undefined;
    if (s !== undefined) out.add(endpointMap(c.dispatch!.proto, s));
  }
  return out;
}

/**
 * Pure: the full transaction. Base objects are (re)declared and refilled, every map and set
 * is flushed and refilled, every service chain in `existing` or `desired` is flushed and the
 * desired ones refilled; chains, sets and endpoint maps in `existing` that match the proxy's
 * name patterns but are no longer desired are deleted (after everything that referred to
 * them is gone). `slots` (empty) receives the slot of every dispatch chain.
 */
export function renderFull(
  family: 4 | 6,
  clusterCIDR: string,
  desired: DesiredTable,
  existing: { chains: readonly string[]; sets: readonly string[] },
  slots: SlotTable = new SlotTable(),
): { script: string; counts: NftCounts } {
  const w = new Writer(family);
  const t = w.t;
  const base = baseObjects(family, clusterCIDR);
  for (const c of desired.chains.values()) if (c.dispatch) slots.take(c.name);
  const buckets = [...bucketsOf(slots, desired.chains.values())].sort();
  w.line(`add table ${t}`);
  for (const c of base.chains) w.line(c.spec ? `add chain ${t} ${c.name} { ${c.spec} }` : `add chain ${t} ${c.name}`);
  for (const m of base.maps) w.line(`add map ${t} ${m.name} { type ${m.type} ; }`);
  for (const s of base.sets) w.line(`add set ${t} ${s.name} { type ${s.type} ; }`);
  for (const b of buckets) w.addEndpointMap(b);
  for (const c of base.chains) w.line(`flush chain ${t} ${c.name}`);
  for (const m of base.maps) w.line(`flush map ${t} ${m.name}`);
  for (const s of base.sets) w.line(`flush set ${t} ${s.name}`);
  const oldChains = existing.chains.filter((n) => SERVICE_CHAIN_PATTERN.test(n));
  const oldSets = existing.sets.filter((n) => AFFINITY_SET_PATTERN.test(n));
  const oldMaps = existing.sets.filter((n) => ENDPOINT_MAP_PATTERN.test(n));
  for (const name of oldMaps) w.line(`flush map ${t} ${name}`);
  for (const name of desired.chains.keys()) w.line(`add chain ${t} ${name}`);
  for (const name of oldChains) w.line(`flush chain ${t} ${name}`);
  for (const s of desired.sets.values()) w.addSet(s);
  for (const c of base.chains) for (const r of c.rules) w.line(`add rule ${t} ${c.name} ${r}`);
  for (const c of desired.chains.values()) w.addRules(c, c.dispatch ? slots.get(c.name) : undefined);
  for (const c of desired.chains.values()) if (c.dispatch) w.addTargets(c.dispatch.proto, slots.get(c.name)!, c.dispatch.targets.map((v, i) => [i, v] as const));
  for (const [m, elems] of desired.elements) for (const [k, v] of elems) w.addElement(m, k, v);
  for (const name of oldChains) {
    if (desired.chains.has(name)) continue;
    w.line(`delete chain ${t} ${name}`);
    w.counts.chainsDeleted++;
  }
  for (const name of oldSets) {
    if (desired.sets.has(name)) continue;
    w.line(`delete set ${t} ${name}`);
    w.counts.setsDeleted++;
  }
  const inUse = new Set(buckets);
  for (const name of oldMaps) {
    if (inUse.has(name)) continue;
    w.line(`delete map ${t} ${name}`);
    w.counts.setsDeleted++;
  }
  return w.done();
}

export interface NftTransaction {
  /** '' when there is nothing to write. */
  readonly script: string;
  readonly counts: NftCounts;
  /** Map keys claimed by more than one service port (among those this transaction touched). */
  readonly conflicts: string[];
  /** Records the transaction as applied: call only after `nft -f` succeeded. */
  commit(): void;
}

/**
 * The mirror of the proxy's table: the plan of every service port written so far, the value
 * written for every map key, the slot of every dispatch chain and the endpoint maps declared,
 * and the pure logic that turns a change into the smallest transaction. A partial sync
 * touches only the changed service ports: their chains (added, flushed and refilled when
 * their rules differ, deleted when gone), their endpoint map elements (only the keys whose
 * endpoint changed), their affinity sets, and the map keys they claim or claimed — when two
 * ports claim one key the one first in key order holds it, and the next in line takes over
 * when it lets go.
 *
 * Nothing here runs commands: a transaction's `commit` updates the mirror once the caller
 * has applied it. After a failed transaction the mirror is no longer trusted and the caller
 * does a full sync, which rebuilds it.
 */
export class NftTableMirror {
  readonly family: 4 | 6;
  readonly clusterCIDR: string;
  private plans = new Map<string, ServicePlan>();
  /** Map key id (`map key`) → service port → value, for every committed plan. */
  private claims = new Map<string, Map<string, string>>();
  /** Map key id → the value in the table. */
  private written = new Map<string, string>();
  private slots = new SlotTable();
  /** Endpoint maps declared in the table. */
  private buckets = new Set<string>();

  constructor(family: 4 | 6, clusterCIDR: string) {
    this.family = family;
    this.clusterCIDR = clusterCIDR;
  }

  /** Service ports in the mirror. */
  get size(): number {
    return this.plans.size;
  }

  plan(key: string): ServicePlan | undefined {
    return this.plans.get(key);
  }

  /** The slot of a dispatch chain (tests, debugging). */
  slotOf(chain: string): number | undefined {
    return this.slots.get(chain);
  }

  /** The full transaction for `plans` over a table holding `existing` names. */
  full(plans: ReadonlyMap<string, ServicePlan>, existing: { chains: readonly string[]; sets: readonly string[] }): NftTransaction {
    const desired = collectDesired(plans.values());
    const slots = new SlotTable();
    const { script, counts } = renderFull(this.family, this.clusterCIDR, desired, existing, slots);
    return {
      script,
      counts,
      conflicts: desired.conflicts,
      commit: () => {
        this.plans = new Map(plans);
        this.claims = new Map();
        for (const p of plans.values()) for (const e of p.elements) this.claim(`${e.map} ${e.key}`, p.key, e.value);
        this.written = new Map();
        for (const [m, elems] of desired.elements) for (const [k, v] of elems) this.written.set(`${m} ${k}`, v);
        this.slots = slots;
        this.buckets = bucketsOf(slots, desired.chains.values());
      },
    };
  }

  private claim(id: string, owner: string, value: string): void {
    let c = this.claims.get(id);
    if (!c) this.claims.set(id, (c = new Map()));
    c.set(owner, value);
  }

  /** The transaction for `changes`: service port → its new plan, or undefined when removed. */
  partial(changes: ReadonlyMap<string, ServicePlan | undefined>): NftTransaction {
    const w = new Writer(this.family);
    const t = w.t;
    const slots = new SlotTable(this.slots);
    const buckets = new Set(this.buckets);
    const newBuckets: string[] = [];
    const newChains: Array<{ c: ChainPlan; slot: number | undefined }> = [];
    const rewritten: Array<{ c: ChainPlan; slot: number | undefined }> = [];
    const stale: string[] = [];
    const newSets: SetPlan[] = [];
    const staleSets: string[] = [];
    const touched = new Set<string>();
    /** Endpoint map edits: proto, slot → indexes to delete / [index, target] to add. */
    const targetDeletes: Array<[string, number, number[]]> = [];
    const targetAdds: Array<[string, number, Array<[number, string]>]> = [];
    const slotFor = (c: ChainPlan): number | undefined => {
      if (!c.dispatch) return undefined;
      const s = slots.take(c.name);
      const b = endpointMap(c.dispatch.proto, s);
      if (!buckets.has(b)) {
        buckets.add(b);
        newBuckets.push(b);
      }
      return s;
    };
    /** The endpoint map edits that turn `before` into `after` (either may be absent). */
    const diffTargets = (name: string, before: Dispatch | undefined, after: Dispatch | undefined, slot: number | undefined): void => {
      const was = before?.targets ?? [];
      const now = after?.targets ?? [];
      const oldSlot = this.slots.get(name);
      const del: number[] = [];
      const add: Array<[number, string]> = [];
      for (let i = 0; i < Math.max(was.length, now.length); i++) {
        if (was[i] === now[i]) continue;
        if (was[i] !== undefined) del.push(i);
        if (now[i] !== undefined) add.push([i, now[i]!]);
      }
      if (oldSlot !== undefined && del.length) targetDeletes.push([before!.proto, oldSlot, del]);
      if (slot !== undefined && add.length) targetAdds.push([after!.proto, slot, add]);
      if (!after) slots.release(name);
    };
    for (const [key, after] of changes) {
      const before = this.plans.get(key);
      const old = new Map((before?.chains ?? []).map((c) => [c.name, c]));
      for (const c of after?.chains ?? []) {
        const had = old.get(c.name);
        const slot = slotFor(c);
        if (!had) newChains.push({ c, slot });
        else if (chainText(had) !== chainText(c)) rewritten.push({ c, slot });
        if (had?.dispatch || c.dispatch) diffTargets(c.name, had?.dispatch, c.dispatch, slot);
        old.delete(c.name);
      }
      for (const [name, c] of old) {
        stale.push(name);
        if (c.dispatch) diffTargets(name, c.dispatch, undefined, undefined);
      }
      const oldSets = new Set((before?.sets ?? []).map((s) => s.name));
      for (const s of after?.sets ?? []) if (!oldSets.delete(s.name)) newSets.push(s);
      staleSets.push(...oldSets);
      for (const e of before?.elements ?? []) touched.add(`${e.map} ${e.key}`);
      for (const e of after?.elements ?? []) touched.add(`${e.map} ${e.key}`);
    }
    // Each touched map key: who claims it after the change, and what the table must hold.
    const deletes: Array<[string, string]> = [];
    const adds: Array<[string, string, string]> = [];
    const conflicts: string[] = [];
    const nextClaims = new Map<string, Map<string, string>>();
    for (const id of touched) {
      const claim = new Map(this.claims.get(id) ?? []);
      for (const key of changes.keys()) claim.delete(key);
      nextClaims.set(id, claim);
    }
    for (const [key, after] of changes) for (const e of after?.elements ?? []) nextClaims.get(`${e.map} ${e.key}`)!.set(key, e.value);
    const nextWritten = new Map<string, string | undefined>();
    for (const [id, claim] of nextClaims) {
      let owner: string | undefined;
      for (const k of claim.keys()) if (owner === undefined || k < owner) owner = k;
      const want = owner === undefined ? undefined : claim.get(owner);
      const have = this.written.get(id);
      nextWritten.set(id, want);
      if (claim.size > 1 && !isPlainSetId(id)) {
        const sp = id.indexOf(' ');
        conflicts.push(conflictText(id.slice(0, sp), id.slice(sp + 1), [...claim.keys()].sort()));
      }
      if (want === have) continue;
      const sp = id.indexOf(' ');
      if (have !== undefined) deletes.push([id.slice(0, sp), id.slice(sp + 1)]);
      if (want !== undefined) adds.push([id.slice(0, sp), id.slice(sp + 1), want]);
    }
    // The order the kernel needs: chains and maps exist before anything refers to them;
    // references (rules, map elements) go before the chains and sets they name are deleted;
    // an endpoint key is deleted before it is added again with another endpoint.
    for (const { c } of newChains) w.line(`add chain ${t} ${c.name}`);
    for (const { c } of rewritten) w.line(`flush chain ${t} ${c.name}`);
    for (const name of stale) w.line(`flush chain ${t} ${name}`);
    for (const [m, k] of deletes) w.deleteElement(m, k);
    for (const [proto, slot, idx] of targetDeletes) w.deleteTargets(proto, slot, idx);
    for (const s of newSets) w.addSet(s);
    for (const b of newBuckets) w.addEndpointMap(b);
    for (const { c, slot } of newChains) w.addRules(c, slot);
    for (const { c, slot } of rewritten) w.addRules(c, slot);
    for (const [proto, slot, items] of targetAdds) w.addTargets(proto, slot, items);
    for (const [m, k, v] of adds) w.addElement(m, k, v);
    for (const name of stale) w.line(`delete chain ${t} ${name}`);
    for (const name of staleSets) w.line(`delete set ${t} ${name}`);
    w.counts.chainsDeleted = stale.length;
    w.counts.setsDeleted = staleSets.length;
    const { script, counts } = w.done();
    return {
      script,
      counts,
      conflicts,
      commit: () => {
        for (const [key, after] of changes) {
          if (after) this.plans.set(key, after);
          else this.plans.delete(key);
        }
        for (const [id, claim] of nextClaims) {
          if (claim.size) this.claims.set(id, claim);
          else this.claims.delete(id);
        }
        for (const [id, v] of nextWritten) {
          if (v === undefined) this.written.delete(id);
          else this.written.set(id, v);
        }
        this.slots = slots;
        this.buckets = buckets;
      },
    };
  }
}

/** Pure convenience: the full transaction for a fresh table, from a whole model. */
export function planNftables(
  services: ReadonlyMap<string, ServiceInfo>,
  endpoints: ReadonlyMap<string, readonly EndpointInfo[]>,
  node: NodeContext,
  opts: NftPlanOptions = {},
): { script: string; counts: NftCounts; desired: DesiredTable } {
  const plans = [...services.values()].map((s) => planService(s, endpoints.get(s.key) ?? [], node, opts));
  const desired = collectDesired(plans);
  return { ...renderFull(node.family, node.clusterCIDR, desired, { chains: [], sets: [] }), desired };
}

/** The transaction that removes the proxy's table (and nothing else). */
export function planTableRemoval(family: 4 | 6): string {
  return `delete table ${tableName(family)}\n`;
}
