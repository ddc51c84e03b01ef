/**
 * The iptables side of the test kit: a fake `iptables-restore` / `iptables-save` / `iptables`
 * holding the nat and filter tables in memory (with --noflush semantics: declared chains are
 * emptied, others kept; -X deletes), and a packet tracer over them with the same outcomes as
 * the nftables tracer, so one table of packet-flow cases checks both modes.
 *
 * The rule parser knows the matches and targets the iptables planner writes; anything else
 * is an error, so a planner typo fails a unit test.
 */
import { type IP, type Prefix, contains, formatIP, parseIP, parsePrefix } from '../netaddr/index.ts';
import { CommandError, type RunOptions, type RunResult, type Runner } from '../kernel/index.ts';
import type { FakeCall } from './fake-nft.ts';
import { type TraceOptions, type TraceOutcome, type TracePacket, isLocalAddress, walkHooks } from './tracer.ts';
import { hostPort } from './types.ts';

export type IptTableName = 'nat' | 'filter';

export interface IptRule {
  text: string;
  args: string[];
}

export interface IptTables {
  nat: Map<string, IptRule[]>;
  filter: Map<string, IptRule[]>;
}

const BUILTIN: Record<IptTableName, string[]> = {
  nat: ['PREROUTING', 'INPUT', 'OUTPUT', 'POSTROUTING'],
  filter: ['INPUT', 'FORWARD', 'OUTPUT'],
};

export function emptyIptables(): IptTables {
  return {
    nat: new Map(BUILTIN.nat.map((c) => [c, []])),
    filter: new Map(BUILTIN.filter.map((c) => [c, []])),
  };
}

/** Splits a restore line into arguments, honouring double quotes. */
export function splitArgs(line: string): string[] {
  const out: string[] = [];
  const re = /"((?:[^"\\]|\\.)*)"|(\S+)/g;
  for (let m = re.exec(line); m; m = re.exec(line)) out.push(m[1] !== undefined ? m[1].replace(/\\(.)/g, '$1') : m[2]!);
  return out;
}

export class IptError extends Error {
  override readonly name = 'IptError';
}

/** Applies restore input to `tables` (--noflush); atomic per call. Returns the new tables. */
export function applyRestore(tables: IptTables, input: string): IptTables {
  const work: IptTables = {
    nat: new Map([...tables.nat].map(([c, r]) => [c, [...r]])),
    filter: new Map([...tables.filter].map(([c, r]) => [c, [...r]])),
  };
  let cur: Map<string, IptRule[]> | undefined;
  let pending: Array<() => void> = [];
  input.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    const fail = (msg: string): never => {
      throw new IptError(`line ${i + 1}: ${msg}: ${line}`);
    };
    if (!line || line.startsWith('#')) return;
    if (line.startsWith('*')) {
      const name = line.slice(1) as IptTableName;
      if (name !== 'nat' && name !== 'filter') fail('unknown table');
      cur = work[name];
      pending = [];
      return;
    }
    if (!cur) fail('no table');
    const table = cur!;
    if (line === 'COMMIT') {
      for (const p of pending) p();
      cur = undefined;
      return;
    }
    if (line.startsWith(':')) {
      const name = line.slice(1).split(/\s+/)[0]!;
      if (BUILTIN.nat.includes(name) || BUILTIN.filter.includes(name)) fail('declaring a built-in chain would reset it');
      table.set(name, []);
      return;
    }
    const args = splitArgs(line);
    if (args[0] === '-A') {
      const chain = args[1]!;
      if (!table.has(chain)) fail(`no chain ${chain}`);
      const rule = { text: args.slice(2).join(' '), args: args.slice(2) };
      const target = targetOf(rule.args);
      if (target && !TARGETS.has(target) && !table.has(target)) fail(`no chain ${target}`);
      table.get(chain)!.push(rule);
      parseIptRule(rule.args);
      return;
    }
    if (args[0] === '-X') {
      const chain = args[1]!;
      pending.push(() => {
        if (!table.has(chain)) fail(`no chain ${chain}`);
        for (const [c, rules] of table) if (c !== chain && rules.some((r) => targetOf(r.args) === chain)) fail(`chain ${chain} is still referenced from ${c}`);
        table.delete(chain);
      });
      return;
    }
    fail('unsupported line');
  });
  if (cur) throw new IptError('missing COMMIT');
  return work;
}

const TARGETS = new Set(['ACCEPT', 'DROP', 'RETURN', 'REJECT', 'DNAT', 'MARK', 'MASQUERADE']);

function targetOf(args: readonly string[]): string | undefined {
  const i = args.findIndex((a) => a === '-j' || a === '-g');
  return i >= 0 ? args[i + 1] : undefined;
}

type Match =
  | { t: 'addr'; field: 'saddr' | 'daddr'; neg: boolean; prefix: Prefix }
  | { t: 'proto'; proto: string }
  | { t: 'dport'; port: number }
  | { t: 'addrtype'; field: 'saddr' | 'daddr' }
  | { t: 'statistic'; p: number }
  | { t: 'recentCheck'; name: string }
  | { t: 'recentSet'; name: string }
  | { t: 'mark'; neg: boolean; value: number; mask: number }
  | { t: 'ctNew' };

type Target =
  | { t: 'chain'; chain: string; goto: boolean }
  | { t: 'ACCEPT' | 'DROP' | 'RETURN' | 'MASQUERADE' }
  | { t: 'REJECT'; with?: string }
  | { t: 'DNAT'; ip: string; port: number }
  | { t: 'MARK'; op: 'or' | 'xor'; value: number };

export interface ParsedIptRule {
  matches: Match[];
  target: Target | undefined;
}

function prefixOf(text: string): Prefix {
  if (text.includes('/')) return parsePrefix(text, true).prefix;
  const ip = parseIP(text);
  return { ip, bits: ip.family === 4 ? 32 : 128 };
}

export function parseIptRule(args: readonly string[]): ParsedIptRule {
  const matches: Match[] = [];
  let target: Target | undefined;
  let neg = false;
  let i = 0;
  const need = (what: string): string => {
    const v = args[++i];
    if (v === undefined) throw new IptError(`${what} needs a value`);
    return v;
  };
  for (; i < args.length; i++) {
    const a = args[i]!;
    if (a === '!') {
      neg = true;
      continue;
    }
    switch (a) {
      case '-s':
      case '-d':
        matches.push({ t: 'addr', field: a === '-s' ? 'saddr' : 'daddr', neg, prefix: prefixOf(need(a)) });
        break;
      case '-p':
        matches.push({ t: 'proto', proto: need(a) });
        break;
      case '-m': {
        const mod = need(a);
        if (!['tcp', 'udp', 'sctp', 'comment', 'addrtype', 'statistic', 'recent', 'mark', 'conntrack'].includes(mod)) throw new IptError(`unknown match -m ${mod}`);
        break;
      }
      case '--comment':
        need(a);
        break;
      case '--dport':
        matches.push({ t: 'dport', port: Number(need(a)) });
        break;
      case '--dst-type':
      case '--src-type':
        if (need(a) !== 'LOCAL') throw new IptError('addrtype: only LOCAL');
        matches.push({ t: 'addrtype', field: a === '--src-type' ? 'saddr' : 'daddr' });
        break;
      case '--mode':
        if (need(a) !== 'random') throw new IptError('statistic: only random');
        break;
      case '--probability':
        matches.push({ t: 'statistic', p: Number(need(a)) });
        break;
      case '--name': {
        const name = need(a);
        const op = args[i + 1];
        if (op === '--rcheck') matches.push({ t: 'recentCheck', name });
        else if (op === '--set') matches.push({ t: 'recentSet', name });
        else throw new IptError('recent: --rcheck or --set');
        i++;
        break;
      }
      case '--seconds':
      case '--mask':
        need(a);
        break;
      case '--reap':
      case '--rsource':
        break;
      case '--mark': {
        const [v, m] = need(a).split('/');
        matches.push({ t: 'mark', neg, value: Number(v), mask: m === undefined ? 0xffffffff : Number(m) });
        break;
      }
      case '--ctstate':
        if (need(a) !== 'NEW') throw new IptError('conntrack: only NEW');
        matches.push({ t: 'ctNew' });
        break;
      case '-j':
      case '-g': {
        const name = need(a);
        if (name === 'ACCEPT' || name === 'DROP' || name === 'RETURN' || name === 'MASQUERADE') target = { t: name };
        else if (name === 'REJECT') target = { t: 'REJECT' };
        else if (name === 'DNAT') target = { t: 'DNAT', ip: '', port: 0 };
        else if (name === 'MARK') target = { t: 'MARK', op: 'or', value: 0 };
        else target = { t: 'chain', chain: name, goto: a === '-g' };
        break;
      }
      case '--reject-with':
        if (target?.t !== 'REJECT') throw new IptError('--reject-with without REJECT');
        target.with = need(a);
        break;
      case '--to-destination': {
        if (target?.t !== 'DNAT') throw new IptError('--to-destination without DNAT');
        const v = need(a);
        const m = /^\[([0-9a-fA-F:.]+)\]:(\d+)$/.exec(v) ?? /^([0-9.]+):(\d+)$/.exec(v);
        if (!m) throw new IptError(`bad --to-destination ${v}`);
        target.ip = formatIP(parseIP(m[1]!));
        target.port = Number(m[2]);
        break;
      }
      case '--or-mark':
      case '--xor-mark':
        if (target?.t !== 'MARK') throw new IptError(`${a} without MARK`);
        target.op = a === '--or-mark' ? 'or' : 'xor';
        target.value = Number(need(a));
        break;
      case '--random-fully':
        break;
      default:
        throw new IptError(`unknown option ${a}`);
    }
    neg = false;
  }
  return { matches, target };
}

// ---------------------------------------------------------------------------------------
// Tracer

interface State {
  saddr: IP;
  daddr: IP;
  dport: number;
  proto: string;
  mark: number;
  dnat?: string;
  masquerade: boolean;
  matched: string[];
  recent: Map<string, Set<string>>;
}

type End = 'return' | 'accept' | 'drop' | 'reject' | 'nat';

const HOOKS: Record<string, Array<[IptTableName, string]>> = {
  prerouting: [['nat', 'PREROUTING']],
  input: [['filter', 'INPUT']],
  forward: [['filter', 'FORWARD']],
  output: [
    ['nat', 'OUTPUT'],
    ['filter', 'OUTPUT'],
  ],
  postrouting: [['nat', 'POSTROUTING']],
};

export class IptablesTracer {
  private readonly tables: IptTables;
  private readonly opts: TraceOptions;
  private readonly local: IP[];
  private readonly parsed = new Map<IptRule, ParsedIptRule>();
  readonly recent = new Map<string, Set<string>>();

  constructor(tables: IptTables, opts: TraceOptions) {
    this.tables = tables;
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
      recent: new Map([...this.recent].map(([k, v]) => [k, new Set(v)])),
    };
    const out: TraceOutcome[] = [];
    const finish = (s: State, verdict: TraceOutcome['verdict']) => {
      out.push({ verdict, ...(s.dnat ? { dnat: s.dnat } : {}), masquerade: verdict === 'accept' && s.masquerade, matched: s.matched });
      if (this.opts.random) for (const [k, v] of s.recent) this.recent.set(k, v);
    };
    walkHooks(pkt.fromLocalNode ?? false, start, (ip) => this.isLocal(ip), (h, st) => this.hook(h, st), finish);
    return out;
  }

  private hook(hook: string, st: State): Array<{ state: State; end?: 'drop' | 'reject' }> {
    let states: Array<{ state: State; end?: 'drop' | 'reject'; natted?: boolean }> = [{ state: st }];
    for (const [table, chain] of HOOKS[hook]!) {
      const next: typeof states = [];
      for (const x of states) {
        if (x.end || (table === 'nat' && x.natted)) {
          next.push(x);
          continue;
        }
        for (const r of this.runChain(table, chain, x.state, 0)) {
          if (r.end === 'drop' || r.end === 'reject') next.push({ state: r.state, end: r.end });
          else next.push({ state: r.state, natted: x.natted || r.end === 'nat' });
        }
      }
      states = next;
    }
    return states.map((s) => (s.end ? { state: s.state, end: s.end } : { state: s.state }));
  }

  private runChain(table: IptTableName, chain: string, st: State, depth: number): Array<{ state: State; end: End }> {
    if (depth > 64) throw new Error(`trace: chain depth over 64 at ${chain}`);
    const rules = this.tables[table].get(chain);
    if (!rules) throw new Error(`trace: no chain ${table}/${chain}`);
    return this.runFrom(table, chain, rules, 0, st, depth);
  }

  private runFrom(table: IptTableName, chain: string, rules: readonly IptRule[], idx: number, st: State, depth: number): Array<{ state: State; end: End }> {
    if (idx >= rules.length) return [{ state: st, end: 'return' }];
    const rule = rules[idx]!;
    let p = this.parsed.get(rule);
    if (!p) {
      p = parseIptRule(rule.args);
      this.parsed.set(rule, p);
    }
    const out: Array<{ state: State; end: End }> = [];
    const cont = (s: State) => out.push(...this.runFrom(table, chain, rules, idx + 1, s, depth));
    // Matches, forking at random statistics.
    let states: Array<{ state: State; ok: boolean }> = [{ state: st, ok: true }];
    for (const m of p.matches) {
      const next: typeof states = [];
      for (const x of states) {
        if (!x.ok) {
          next.push(x);
          continue;
        }
        if (m.t === 'statistic') {
          if (this.opts.random) next.push({ state: x.state, ok: this.opts.random() < m.p });
          else next.push({ state: x.state, ok: true }, { state: x.state, ok: false });
          continue;
        }
        if (m.t === 'recentSet') {
          const s = { ...x.state, matched: [...x.state.matched], recent: new Map(x.state.recent) };
          const set = new Set(s.recent.get(m.name) ?? []);
          set.add(formatIP(s.saddr));
          s.recent.set(m.name, set);
          next.push({ state: s, ok: true });
          continue;
        }
        next.push({ state: x.state, ok: this.match(m, x.state) });
      }
      states = next;
    }
    for (const x of states) {
      if (!x.ok) {
        cont(st);
        continue;
      }
      const s = { ...x.state, matched: [...x.state.matched, `${table}/${chain}: ${rule.text}`] };
      const t = p.target;
      if (!t) cont(s);
      else if (t.t === 'chain') {
        if (t.goto) out.push(...this.runChain(table, t.chain, s, depth + 1));
        else for (const r of this.runChain(table, t.chain, s, depth + 1)) (r.end === 'return' ? cont(r.state) : out.push(r));
      } else if (t.t === 'MARK') {
        s.mark = t.op === 'or' ? s.mark | t.value : s.mark ^ t.value;
        cont(s);
      } else if (t.t === 'RETURN') out.push({ state: s, end: 'return' });
      else if (t.t === 'ACCEPT') out.push({ state: s, end: 'accept' });
      else if (t.t === 'DROP') out.push({ state: s, end: 'drop' });
      else if (t.t === 'REJECT') out.push({ state: s, end: 'reject' });
      else if (t.t === 'DNAT') {
        s.daddr = parseIP(t.ip);
        s.dport = t.port;
        s.dnat = hostPort(t.ip, t.port);
        out.push({ state: s, end: 'nat' });
      } else {
        s.masquerade = true;
        out.push({ state: s, end: 'nat' });
      }
    }
    return out;
  }

  private match(m: Match, s: State): boolean {
    switch (m.t) {
      case 'addr':
        return contains(m.prefix, m.field === 'saddr' ? s.saddr : s.daddr) !== m.neg;
      case 'proto':
        return s.proto === m.proto;
      case 'dport':
        return s.dport === m.port;
      case 'addrtype':
        return this.isLocal(m.field === 'saddr' ? s.saddr : s.daddr);
      case 'recentCheck':
        return s.recent.get(m.name)?.has(formatIP(s.saddr)) ?? false;
      case 'mark':
        return ((s.mark & m.mask) === (m.value & m.mask)) !== m.neg;
      case 'ctNew':
        return true;
      default:
        return true;
    }
  }
}

// ---------------------------------------------------------------------------------------
// Fake tools

/** A fake iptables / iptables-restore / iptables-save (and ip6 twins) for executor tests. */
export class FakeIptables {
  tables: IptTables = emptyIptables();
  readonly calls: FakeCall[] = [];
  failNext: string | undefined;

  save(table: IptTableName): string {
    const out = [`*${table}`];
    for (const c of this.tables[table].keys()) out.push(`:${c} ${BUILTIN[table].includes(c) ? 'ACCEPT' : '-'} [0:0]`);
    for (const [c, rules] of this.tables[table]) for (const r of rules) out.push(`-A ${c} ${r.text}`);
    out.push('COMMIT', '');
    return out.join('\n');
  }

  readonly runner: Runner = async (file: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> => {
    this.calls.push({ file, args: [...args], ...(opts.input !== undefined ? { input: opts.input } : {}) });
    const fail = (msg: string, code = 1): never => {
      throw new CommandError([file, ...args], code, `${msg}\n`);
    };
    const tool = file.replace(/^ip6/, 'ip');
    try {
      if (tool === 'iptables-restore') {
        if (!args.includes('--noflush')) fail('the proxy must restore with --noflush');
        if (this.failNext !== undefined) {
          const m = this.failNext;
          this.failNext = undefined;
          fail(m);
        }
        this.tables = applyRestore(this.tables, opts.input ?? '');
        return { stdout: '', stderr: '' };
      }
      if (tool === 'iptables-save') {
        const t = args[args.indexOf('-t') + 1] as IptTableName;
        return { stdout: this.save(t), stderr: '' };
      }
      if (tool === 'iptables') {
        const a = args.filter((x) => x !== '-w');
        const table = a[0] === '-t' ? (a[1] as IptTableName) : 'filter';
        const rest = a[0] === '-t' ? a.slice(2) : a;
        const [op, chain, ...rule] = rest;
        const rules = this.tables[table].get(chain ?? '');
        if (!rules) fail(`iptables: No chain/target/match by that name.`);
        const text = rule.join(' ');
        if (op === '-C') return rules!.some((r) => r.text === text) ? { stdout: '', stderr: '' } : fail('iptables: Bad rule (does a matching rule exist in that chain?).');
        if (op === '-I') {
          rules!.unshift({ text, args: rule });
          return { stdout: '', stderr: '' };
        }
        if (op === '-D') {
          const i = rules!.findIndex((r) => r.text === text);
          if (i < 0) fail('iptables: Bad rule (does a matching rule exist in that chain?).');
          rules!.splice(i, 1);
          return { stdout: '', stderr: '' };
        }
        if (op === '-F' || op === '-X') {
          if (BUILTIN[table].includes(chain!)) fail('the proxy must not flush or delete built-in chains');
          if (op === '-F') rules!.length = 0;
          else this.tables[table].delete(chain!);
          return { stdout: '', stderr: '' };
        }
      }
    } catch (err) {
      if (err instanceof CommandError) throw err;
      fail((err as Error).message);
    }
    return fail(`fake: unsupported ${file} ${args.join(' ')}`, 2);
  };
}
