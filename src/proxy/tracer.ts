/**
 * A packet tracer over the proxy's nftables table, after kube-proxy's: it walks the hooks a
 * packet meets, in priority order, through every jump, goto and verdict map, and reports
 * where the packet goes — DNAT target, masquerade or not, drop, reject or accept — with the
 * rules it matched on the way.
 *
 * Random endpoint choice (`numgen random`) is explored: every branch becomes one outcome, so
 * a test sees the whole candidate set. Given `random`, the tracer instead follows one branch
 * (deterministic with a seeded generator), and affinity sets remember the clients that
 * `update` adds, across traces of one Tracer, as the kernel's dynamic sets do.
 *
 * The path of a packet:
 *   from elsewhere   prerouting → (input if the address is now local, else forward) → postrouting
 *   from the node    output → postrouting (→ input if local)
 * NAT chains see only the first packet of a connection, and once a chain has NATed a packet
 * in one hook, later NAT chains of that hook are skipped (as nf_nat does). The tracer traces
 * first packets.
 */
import { type IP, compareIP, contains, formatIP, parseIP } from '../netaddr/index.ts';
import type { NftSetState, NftTableState } from './fake-nft.ts';
import type { NftExpr, NftRule, NftVerdict } from './nft-rules.ts';
import { hostPort } from './types.ts';

export interface TracePacket {
  src: string;
  dst: string;
  /** tcp, udp or sctp (any case). */
  proto: string;
  dport: number;
  /** Sent by the node itself (output hook) rather than arriving from a pod or the network. */
  fromLocalNode?: boolean;
}

export interface TraceOptions {
  /** The node's own addresses (`fib … type local`, `addrtype LOCAL`, input vs forward). */
  localAddresses: readonly string[];
  /** Follow one branch at random choices, picked with this generator (0 ≤ x < 1). */
  random?: () => number;
}

export interface TraceOutcome {
  verdict: 'accept' | 'drop' | 'reject';
  /** ip:port after DNAT, if any. */
  dnat?: string;
  masquerade: boolean;
  /** `chain: rule` for every rule that matched, in order. */
  matched: string[];
}

export interface TraceSummary {
  /** The DNAT targets (sorted), or ACCEPT / DROP / REJECT, joined by ", ". */
  output: string;
  /** true/false when all outcomes agree, else the outputs that are masqueraded. */
  masq: boolean | string[];
}

/** A small seeded generator (mulberry32), for deterministic random choices. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function outputOf(o: TraceOutcome): string {
  if (o.verdict !== 'accept') return o.verdict.toUpperCase();
  return o.dnat ?? 'ACCEPT';
}

function compareOutputs(a: string, b: string): number {
  const pa = /^\[?([0-9a-f.:]+?)\]?:(\d+)$/.exec(a);
  const pb = /^\[?([0-9a-f.:]+?)\]?:(\d+)$/.exec(b);
  if (pa && pb) {
    const c = compareIP(parseIP(pa[1]!), parseIP(pb[1]!));
    return c !== 0 ? c : Number(pa[2]) - Number(pb[2]);
  }
  if (pa) return -1;
  if (pb) return 1;
  return a < b ? -1 : a > b ? 1 : 0;
}

export function summarize(outcomes: readonly TraceOutcome[]): TraceSummary {
  const outputs = [...new Set(outcomes.map(outputOf))].sort(compareOutputs);
  const masqed = [...new Set(outcomes.filter((o) => o.masquerade).map(outputOf))].sort(compareOutputs);
  const clean = new Set(outcomes.filter((o) => !o.masquerade).map(outputOf));
  let masq: boolean | string[];
  if (masqed.length === 0) masq = false;
  else if (clean.size === 0) masq = true;
  else masq = masqed;
  return { output: outputs.join(', '), masq };
}

// ---------------------------------------------------------------------------------------

/** Loopback, or one of the node's own addresses (`fib … type local`, input vs forward). */
export function isLocalAddress(local: readonly IP[], ip: IP): boolean {
  if (ip.family === 4 && contains({ ip: { family: 4, value: 0x7f000000n }, bits: 8 }, ip)) return true;
  if (ip.family === 6 && ip.value === 1n) return true;
  return local.some((l) => compareIP(l, ip) === 0);
}

/** A packet state after one hook: it goes on, or the hook dropped or rejected it. */
export interface HookStep<S> {
  state: S;
  end?: 'drop' | 'reject';
}

/**
 * The path of a first packet through the hooks, shared by the nftables and the iptables
 * tracer (each runs its own rules in `hook`):
 *   from elsewhere   prerouting → (input if the address is now local, else forward → postrouting)
 *   from the node    output → postrouting (→ input if local)
 * `finish` gets every outcome: dropped or rejected where a hook ended it, else accepted.
 */
export function walkHooks<S extends { daddr: IP }>(
  fromLocalNode: boolean,
  start: S,
  isLocal: (ip: IP) => boolean,
  hook: (name: string, state: S) => Array<HookStep<S>>,
  finish: (state: S, verdict: TraceOutcome['verdict']) => void,
): void {
  for (const s of hook(fromLocalNode ? 'output' : 'prerouting', start)) {
    if (s.end) {
      finish(s.state, s.end);
      continue;
    }
    const local = isLocal(s.state.daddr);
    const next = fromLocalNode ? ['postrouting', ...(local ? ['input'] : [])] : local ? ['input'] : ['forward', 'postrouting'];
    let states: Array<HookStep<S>> = [{ state: s.state }];
    for (const h of next) {
      const after: Array<HookStep<S>> = [];
      for (const x of states) after.push(...(x.end ? [x] : hook(h, x.state)));
      states = after;
    }
    for (const x of states) finish(x.state, x.end ?? 'accept');
  }
}

interface State {
  saddr: IP;
  daddr: IP;
  dport: number;
  proto: string;
  mark: number;
  dnat?: string;
  masquerade: boolean;
  matched: string[];
  /** Dynamic set contents seen by this branch. */
  sets: Map<string, Set<string>>;
}

type Action = 'next' | 'return' | 'accept' | 'drop' | 'reject' | 'nat' | { jump: string } | { goto: string };
type ChainEnd = 'return' | 'accept' | 'drop' | 'reject' | 'nat';

function clone(s: State): State {
  return { ...s, matched: [...s.matched] };
}

const MAX_DEPTH = 64;

export class NftTracer {
  private readonly local: IP[];
  /** Dynamic sets (affinity) as updated by traces in `random` mode. */
  readonly dynamicSets = new Map<string, Set<string>>();

  private readonly table: NftTableState;
  private readonly opts: TraceOptions;

  constructor(table: NftTableState, opts: TraceOptions) {
    this.table = table;
    this.opts = opts;
    this.local = opts.localAddresses.map((a) => parseIP(a));
  }

  private isLocal(ip: IP): boolean {
    return isLocalAddress(this.local, ip);
  }

  trace(pkt: TracePacket): TraceOutcome[] {
    const start: State = {
      saddr: parseIP(pkt.src),
      daddr: parseIP(pkt.dst),
      dport: pkt.dport,
      proto: pkt.proto.toLowerCase(),
      mark: 0,
      masquerade: false,
      matched: [],
      sets: new Map([...this.dynamicSets].map(([k, v]) => [k, new Set(v)])),
    };
    const results: TraceOutcome[] = [];
    const finish = (s: State, verdict: TraceOutcome['verdict']) => {
      results.push({ verdict, ...(s.dnat ? { dnat: s.dnat } : {}), masquerade: verdict === 'accept' && s.masquerade, matched: s.matched });
      if (this.opts.random) for (const [k, v] of s.sets) this.dynamicSets.set(k, v);
    };
    walkHooks(pkt.fromLocalNode ?? false, start, (ip) => isLocalAddress(this.local, ip), (h, st) => this.hook(h, st), finish);
    return results;
  }

  /** Runs the base chains of one hook in priority order. */
  private hook(hook: string, st: State): Array<{ state: State; end?: 'drop' | 'reject' }> {
    const chains = [...this.table.chains].filter(([, c]) => c.base?.hook === hook).sort(([, a], [, b]) => a.base!.priority - b.base!.priority);
    let states: Array<{ state: State; end?: 'drop' | 'reject'; natted?: boolean }> = [{ state: st }];
    for (const [name, chain] of chains) {
      const next: typeof states = [];
      for (const x of states) {
        if (x.end || (chain.base!.type === 'nat' && x.natted)) {
          next.push(x);
          continue;
        }
        for (const r of this.runChain(name, x.state, 0)) {
          if (r.end === 'drop' || r.end === 'reject') next.push({ state: r.state, end: r.end });
          else if (r.end === 'return' && chain.base!.policy === 'drop') next.push({ state: r.state, end: 'drop' });
          else next.push({ state: r.state, natted: x.natted || r.end === 'nat' });
        }
      }
      states = next;
    }
    return states.map((s) => (s.end ? { state: s.state, end: s.end } : { state: s.state }));
  }

  private runChain(name: string, st: State, depth: number): Array<{ state: State; end: ChainEnd }> {
    if (depth > MAX_DEPTH) throw new Error(`trace: chain depth over ${MAX_DEPTH} at ${name}`);
    const chain = this.table.chains.get(name);
    if (!chain) throw new Error(`trace: no chain ${name}`);
    return this.runFrom(name, chain.rules, 0, st, depth);
  }

  private runFrom(name: string, rules: readonly NftRule[], idx: number, st: State, depth: number): Array<{ state: State; end: ChainEnd }> {
    if (idx >= rules.length) return [{ state: st, end: 'return' }];
    const out: Array<{ state: State; end: ChainEnd }> = [];
    for (const { state, action } of this.evalRule(name, rules[idx]!, st)) {
      if (action === 'next') out.push(...this.runFrom(name, rules, idx + 1, state, depth));
      else if (typeof action === 'object' && 'jump' in action) {
        for (const r of this.runChain(action.jump, state, depth + 1)) {
          if (r.end === 'return') out.push(...this.runFrom(name, rules, idx + 1, r.state, depth));
          else out.push(r);
        }
      } else if (typeof action === 'object') out.push(...this.runChain(action.goto, state, depth + 1));
      else out.push({ state, end: action });
    }
    return out;
  }

  private setHas(name: string, st: State, key: string): boolean {
    const dyn = st.sets.get(name);
    if (dyn?.has(key)) return true;
    const s: NftSetState | undefined = this.table.sets.get(name);
    if (!s) throw new Error(`trace: no set ${name}`);
    return s.elements.has(key);
  }

  private verdictAction(v: NftVerdict): Action {
    if (v.kind === 'jump') return { jump: v.chain };
    if (v.kind === 'goto') return { goto: v.chain };
    return v.kind;
  }

  private evalRule(chain: string, rule: NftRule, st0: State): Array<{ state: State; action: Action }> {
    const out: Array<{ state: State; action: Action }> = [];
    const step = (i: number, st: State): void => {
      const record = (s: State) => s.matched.push(`${chain}: ${rule.text}`);
      if (i >= rule.exprs.length) {
        record(st);
        out.push({ state: st, action: 'next' });
        return;
      }
      const e: NftExpr = rule.exprs[i]!;
      const fail = (): void => {
        out.push({ state: st0, action: 'next' });
      };
      const field = (f: 'saddr' | 'daddr') => (f === 'saddr' ? st.saddr : st.daddr);
      switch (e.t) {
        case 'addr':
          return contains(e.prefix, field(e.field)) !== e.neg ? step(i + 1, st) : fail();
        case 'inSet':
          return this.setHas(e.set, st, formatIP(field(e.field))) !== e.neg ? step(i + 1, st) : fail();
        case 'fibLocal':
          return this.isLocal(field(e.field)) ? step(i + 1, st) : fail();
        case 'l4proto':
          return st.proto === e.proto ? step(i + 1, st) : fail();
        case 'ctNew':
        case 'counter':
          return step(i + 1, st);
        case 'markTest':
          return ((st.mark & e.mask) === e.value) !== e.neg ? step(i + 1, st) : fail();
        case 'vmap': {
          const key = e.key
            .map((k) => (k === 'saddr' ? formatIP(st.saddr) : k === 'daddr' ? formatIP(st.daddr) : k === 'l4proto' ? st.proto : String(st.dport)))
            .join(' . ');
          const map = this.table.sets.get(e.map);
          if (!map) throw new Error(`trace: no map ${e.map}`);
          const v = map.elements.get(key);
          if (v === undefined) return fail();
          const s = clone(st);
          record(s);
          out.push({ state: s, action: this.verdictAction(parseVerdictCached(v)) });
          return;
        }
        case 'inSetConcat': {
          const key = e.key
            .map((k) => (k === 'saddr' ? formatIP(st.saddr) : k === 'daddr' ? formatIP(st.daddr) : k === 'l4proto' ? st.proto : String(st.dport)))
            .join(' . ');
          return this.setHas(e.set, st, key) ? step(i + 1, st) : fail();
        }
        case 'dnatMap': {
          // Explored like numgen: one outcome per endpoint the map holds for this rule.
          const map = this.table.sets.get(e.map);
          if (!map) throw new Error(`trace: no map ${e.map}`);
          const picks = this.opts.random ? [Math.floor(this.opts.random() * e.mod)] : [...Array(e.mod).keys()];
          for (const k of picks) {
            const v = map.elements.get(String(e.offset + k));
            // A key the map lacks: the lookup fails, so the rule does not match (no DNAT).
            if (v === undefined) {
              out.push({ state: clone(st0), action: 'next' });
              continue;
            }
            const [ip, port] = v.split(' . ') as [string, string];
            const s = clone(st);
            s.daddr = parseIP(ip);
            s.dport = Number(port);
            s.dnat = hostPort(formatIP(s.daddr), s.dport);
            record(s);
            out.push({ state: s, action: 'nat' });
          }
          return;
        }
        case 'numgen': {
          const keys = this.opts.random ? [Math.floor(this.opts.random() * e.mod)] : [...e.branches.keys()].sort((a, b) => a - b);
          for (const k of keys) {
            const s = clone(st);
            record(s);
            out.push({ state: s, action: this.verdictAction(e.branches.get(k)!) });
          }
          return;
        }
        case 'numgenMatch': {
          // Explored: the rule matches on one branch and not on the other.
          if (this.opts.random) return Math.floor(this.opts.random() * e.mod) === e.value ? step(i + 1, st) : fail();
          step(i + 1, clone(st));
          fail();
          return;
        }
        case 'markSet': {
          const s = clone(st);
          s.mark = e.op === 'or' ? s.mark | e.value : s.mark ^ e.value;
          return step(i + 1, s);
        }
        case 'update': {
          const s = clone(st);
          s.sets = new Map(s.sets);
          const set = new Set(s.sets.get(e.set) ?? []);
          set.add(formatIP(field(e.field)));
          s.sets.set(e.set, set);
          return step(i + 1, s);
        }
        case 'dnat': {
          const s = clone(st);
          s.daddr = parseIP(e.ip);
          s.dport = e.port;
          s.dnat = hostPort(e.ip, e.port);
          record(s);
          out.push({ state: s, action: 'nat' });
          return;
        }
        case 'masquerade': {
          const s = clone(st);
          s.masquerade = true;
          record(s);
          out.push({ state: s, action: 'nat' });
          return;
        }
        case 'reject':
          // `reject with tcp reset` on a non-TCP packet is skipped by the kernel (the rule
          // is only valid after a tcp match); the planner always guards it with one.
          record(st);
          out.push({ state: st, action: 'reject' });
          return;
        case 'verdict': {
          const s = clone(st);
          record(s);
          out.push({ state: s, action: this.verdictAction(e.v) });
          return;
        }
      }
    };
    step(0, clone(st0));
    return out;
  }
}

const verdictCache = new Map<string, NftVerdict>();
function parseVerdictCached(text: string): NftVerdict {
  let v = verdictCache.get(text);
  if (!v) {
    const m = /^(jump|goto) (\S+)$/.exec(text);
    v = m ? { kind: m[1] as 'jump' | 'goto', chain: m[2]! } : { kind: text as 'accept' | 'drop' | 'return' };
    if (verdictCache.size < 100_000) verdictCache.set(text, v);
  }
  return v;
}

/** One-shot: every outcome of one packet through `table`. */
export function traceNft(table: NftTableState, pkt: TracePacket, opts: TraceOptions): TraceOutcome[] {
  return new NftTracer(table, opts).trace(pkt);
}
