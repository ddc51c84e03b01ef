/**
 * The nftables planner (the default mode). Everything lives in the proxy's own table,
 * `ip podnet-proxy` (or `ip6 podnet-proxy`); no other table is ever named.
 *
 *   nat-prerouting  (nat, prerouting, dstnat)  ─┐
 *   nat-output      (nat, output, -100)        ─┴─ jump services
 *       services:  ip daddr . meta l4proto . th dport vmap @service-ips
 *                  fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports
 *   service-ips / service-nodeports  → goto svc-… | local-… | ext-…
 *       svc-…  / local-…   [ip saddr @aff-… goto ep-…], then one endpoint at random:
 *                          numgen random mod N == 0 goto ep-1; … mod N-1 …; goto ep-N
 *                          (or, with dispatch 'vmap', numgen random mod N vmap { 0 : goto ep-…, … })
 *       ext-…              masquerade outside sources (policy Cluster) or short-circuit pods and
 *                          the node to svc-… (policy Local), then goto svc-… / local-…
 *       ep-…               hairpin / remote masquerade marks, [update @aff-…], dnat to ip:port
 *   nat-postrouting (nat, postrouting, srcnat) ─ jump masquerading: marked packets → masquerade
 *   filter-input / filter-forward (-110), filter-output (-90, after nat-output)
 *       ct state new jump endpoints-check:
 *                  ip daddr . meta l4proto . th dport vmap @no-endpoint-services
 *                  fib daddr type local … vmap @no-endpoint-nodeports
 *       → goto reject-chain (tcp reset / icmp port unreachable) or drop
 *
 * The filter checks run after DNAT, so their map entries only ever match packets that are
 * *still* addressed to a service: they mean "nothing to DNAT to" — REJECT when the service
 * has no usable endpoint (the client fails at once), DROP when a Local policy finds none on
 * this node.
 *
 * Pure: `planService` turns one service port into chains, sets and map elements;
 * `renderFull` turns all plans into a full `nft -f -` transaction, and `NftTableMirror`
 * (what the table holds) turns the changed service ports into a partial one.
 */
import { formatPrefix, parseSubnet } from '../netaddr/index.ts';
import { layoutService } from './layout.ts';
import { AFFINITY_SET_PATTERN, SERVICE_CHAIN_PATTERN, affinitySet, endpointChain, serviceChain } from './names.ts';
import { type EndpointInfo, MASQ_MARK, type NodeContext, PROXY_TABLE, type ServiceInfo, hostPort, nftFamily } from './types.ts';

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

export const SERVICE_IPS = 'service-ips';
export const SERVICE_NODEPORTS = 'service-nodeports';
export const NO_ENDPOINT_SERVICES = 'no-endpoint-services';
export const NO_ENDPOINT_NODEPORTS = 'no-endpoint-nodeports';
export type MapName = typeof SERVICE_IPS | typeof SERVICE_NODEPORTS | typeof NO_ENDPOINT_SERVICES | typeof NO_ENDPOINT_NODEPORTS;
export const MAP_NAMES: readonly MapName[] = [SERVICE_IPS, SERVICE_NODEPORTS, NO_ENDPOINT_SERVICES, NO_ENDPOINT_NODEPORTS];

export interface ChainPlan {
  readonly name: string;
  readonly rules: readonly string[];
}

export interface SetPlan {
  readonly name: string;
  readonly timeoutSeconds: number;
}

export interface ElementPlan {
  readonly map: MapName;
  /** `10.96.0.10 . tcp . 80`, or `tcp . 30080` in the NodePort maps. */
  readonly key: string;
  /** `goto svc-…`, `goto reject-chain`, `drop`. */
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

export interface NftPlanOptions {
  /**
   * How a policy chain picks one of N endpoints:
   *   'rules' (default)  numgen random mod N == 0 goto ep-1; numgen random mod N-1 == 0 goto ep-2; …; goto ep-N
   *                      (uniform, as iptables' statistic cascade)
   *   'vmap'             numgen random mod N vmap { 0 : goto ep-1, … } (kube-proxy's form)
   * Each vmap is an anonymous set, and the kernel's cost of adding anonymous sets grows with
   * the number already in the table (measured: 5000 services, 3.9 s of a 6.4 s full sync
   * against 1.2 s with rules), so rules are the default.
   */
  dispatch?: 'rules' | 'vmap';
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

  for (const ep of L.endpoints) {
    const name = endpointChain(svc, ep);
    epChain.set(ep, name);
    const rules = [`${ipf} saddr ${ep.ip} jump ${MARK_MASQ_CHAIN}`];
    if (!ep.isLocal) rules.push(`${ipf} saddr != ${cidr} jump ${MARK_MASQ_CHAIN}`);
    if (affinity) {
      const set = affinitySet(svc, ep);
      epSet.set(ep, set);
      sets.push({ name: set, timeoutSeconds: svc.affinityTimeoutSeconds });
      rules.push(`update @${set} { ${ipf} saddr }`);
    }
    rules.push(`meta l4proto ${proto} dnat to ${hostPort(ep.ip, ep.port)}`);
    chains.push({ name, rules });
  }

  const policyRules = (list: readonly EndpointInfo[]): string[] => {
    const rules: string[] = [];
    if (affinity) for (const ep of list) rules.push(`${ipf} saddr @${epSet.get(ep)} goto ${epChain.get(ep)}`);
    if (list.length === 1) rules.push(`goto ${epChain.get(list[0]!)}`);
    else if (opts.dispatch === 'vmap') rules.push(`numgen random mod ${list.length} vmap { ${list.map((ep, i) => `${i} : goto ${epChain.get(ep)}`).join(', ')} }`);
    else {
      list.forEach((ep, i) => {
        const left = list.length - i;
        rules.push(left > 1 ? `numgen random mod ${left} == 0 goto ${epChain.get(ep)}` : `goto ${epChain.get(ep)}`);
      });
    }
    return rules;
  };
  if (L.usesCluster) chains.unshift({ name: svcChain, rules: policyRules(L.cluster) });
  if (L.usesLocal) chains.splice(L.usesCluster ? 1 : 0, 0, { name: localChain, rules: policyRules(L.local) });

  const elements: ElementPlan[] = [];
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

/** The fixed part of the table: base chains, helper chains and the four verdict maps. */
export function baseObjects(family: 4 | 6): { chains: BaseChain[]; maps: Array<{ name: MapName; type: string }> } {
  const ipf = nftFamily(family);
  const addrType = family === 4 ? 'ipv4_addr' : 'ipv6_addr';
  const loopback = family === 4 ? '127.0.0.0/8' : '::1';
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
      { name: MASQUERADING_CHAIN, rules: [`meta mark & ${MARK} == 0 return`, `meta mark set meta mark xor ${MARK}`, 'masquerade fully-random'] },
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
  };
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
    if (o.length < 2) continue;
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
/** A chain's rules as one text (cached: unchanged plans are compared many times). */
function chainText(c: ChainPlan): string {
  let t = chainTexts.get(c);
  if (t === undefined) {
    t = c.rules.join('\n');
    chainTexts.set(c, t);
  }
  return t;
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

  addRules(c: ChainPlan): void {
    for (const r of c.rules) this.lines.push(`add rule ${this.t} ${c.name} ${r}`);
    this.counts.rulesWritten += c.rules.length;
    this.counts.chainsWritten++;
  }

  addElement(m: string, k: string, v: string): void {
    this.lines.push(`add element ${this.t} ${m} { ${k} : ${v} }`);
    this.counts.elementsAdded++;
  }

  deleteElement(m: string, k: string): void {
    this.lines.push(`delete element ${this.t} ${m} { ${k} }`);
    this.counts.elementsDeleted++;
  }

  done(): { script: string; counts: NftCounts } {
    this.counts.lines = this.lines.length;
    return { script: this.lines.length ? this.lines.join('\n') + '\n' : '', counts: this.counts };
  }
}

/**
 * Pure: the full transaction. Base objects are (re)declared and refilled, every map is
 * flushed and refilled, every service chain in `existing` or `desired` is flushed and the
 * desired ones refilled; chains and sets in `existing` that match the proxy's name patterns
 * but are no longer desired are deleted (after everything that referred to them is gone).
 */
export function renderFull(family: 4 | 6, desired: DesiredTable, existing: { chains: readonly string[]; sets: readonly string[] }): { script: string; counts: NftCounts } {
  const w = new Writer(family);
  const t = w.t;
  const base = baseObjects(family);
  w.line(`add table ${t}`);
  for (const c of base.chains) w.line(c.spec ? `add chain ${t} ${c.name} { ${c.spec} }` : `add chain ${t} ${c.name}`);
  for (const m of base.maps) w.line(`add map ${t} ${m.name} { type ${m.type} ; }`);
  for (const c of base.chains) w.line(`flush chain ${t} ${c.name}`);
  for (const m of base.maps) w.line(`flush map ${t} ${m.name}`);
  const oldChains = existing.chains.filter((n) => SERVICE_CHAIN_PATTERN.test(n));
  const oldSets = existing.sets.filter((n) => AFFINITY_SET_PATTERN.test(n));
  for (const name of desired.chains.keys()) w.line(`add chain ${t} ${name}`);
  for (const name of oldChains) w.line(`flush chain ${t} ${name}`);
  for (const s of desired.sets.values()) w.addSet(s);
  for (const c of base.chains) for (const r of c.rules) w.line(`add rule ${t} ${c.name} ${r}`);
  for (const c of desired.chains.values()) w.addRules(c);
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
 * The mirror of the proxy's table: the plan of every service port written so far and the
 * value written for every map key, and the pure logic that turns a change into the smallest
 * transaction. A partial sync touches only the changed service ports: their chains (added,
 * flushed and refilled when their rules differ, deleted when gone), their affinity sets,
 * and the map keys they claim or claimed — when two ports claim one key the one first in key
 * order holds it, and the next in line takes over when it lets go.
 *
 * Nothing here runs commands: a transaction's `commit` updates the mirror once the caller
 * has applied it. After a failed transaction the mirror is no longer trusted and the caller
 * does a full sync, which rebuilds it.
 */
export class NftTableMirror {
  readonly family: 4 | 6;
  private plans = new Map<string, ServicePlan>();
  /** Map key id (`map key`) → service port → value, for every committed plan. */
  private claims = new Map<string, Map<string, string>>();
  /** Map key id → the value in the table. */
  private written = new Map<string, string>();

  constructor(family: 4 | 6) {
    this.family = family;
  }

  /** Service ports in the mirror. */
  get size(): number {
    return this.plans.size;
  }

  plan(key: string): ServicePlan | undefined {
    return this.plans.get(key);
  }

  /** The full transaction for `plans` over a table holding `existing` names. */
  full(plans: ReadonlyMap<string, ServicePlan>, existing: { chains: readonly string[]; sets: readonly string[] }): NftTransaction {
    const desired = collectDesired(plans.values());
    const { script, counts } = renderFull(this.family, desired, existing);
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
    const newChains: ChainPlan[] = [];
    const rewritten: ChainPlan[] = [];
    const stale: string[] = [];
    const newSets: SetPlan[] = [];
    const staleSets: string[] = [];
    const touched = new Set<string>();
    for (const [key, after] of changes) {
      const before = this.plans.get(key);
      const old = new Map((before?.chains ?? []).map((c) => [c.name, c]));
      for (const c of after?.chains ?? []) {
        const had = old.get(c.name);
        if (!had) newChains.push(c);
        else if (chainText(had) !== chainText(c)) rewritten.push(c);
        old.delete(c.name);
      }
      stale.push(...old.keys());
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
      if (claim.size > 1) {
        const sp = id.indexOf(' ');
        conflicts.push(conflictText(id.slice(0, sp), id.slice(sp + 1), [...claim.keys()].sort()));
      }
      if (want === have) continue;
      const sp = id.indexOf(' ');
      if (have !== undefined) deletes.push([id.slice(0, sp), id.slice(sp + 1)]);
      if (want !== undefined) adds.push([id.slice(0, sp), id.slice(sp + 1), want]);
    }
    // The order the kernel needs: chains exist before anything jumps to them; references
    // (rules, map elements) go before the chains and sets they name are deleted.
    for (const c of newChains) w.line(`add chain ${t} ${c.name}`);
    for (const c of rewritten) w.line(`flush chain ${t} ${c.name}`);
    for (const name of stale) w.line(`flush chain ${t} ${name}`);
    for (const [m, k] of deletes) w.deleteElement(m, k);
    for (const s of newSets) w.addSet(s);
    for (const c of newChains) w.addRules(c);
    for (const c of rewritten) w.addRules(c);
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
  return { ...renderFull(node.family, desired, { chains: [], sets: [] }), desired };
}

/** The transaction that removes the proxy's table (and nothing else). */
export function planTableRemoval(family: 4 | 6): string {
  return `delete table ${tableName(family)}\n`;
}
