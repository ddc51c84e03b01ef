/**
 * A parser for the nftables rule language — exactly the forms the proxy's planner writes,
 * and nothing more. The fake nft uses it to refuse a rule it would not understand (so a
 * planner typo fails a unit test, not a node), and the packet tracer walks its output.
 *
 * A rule is a list of expressions evaluated left to right: matches (a false one ends the
 * rule), statements (mark, set update) and at most one final verdict or NAT action.
 */
import { type Prefix, formatIP, parseIP, parsePrefix } from '../netaddr/index.ts';

export type AddrField = 'saddr' | 'daddr';
export type KeyPart = 'saddr' | 'daddr' | 'l4proto' | 'dport';

export type NftVerdict = { kind: 'accept' | 'drop' | 'return' } | { kind: 'jump' | 'goto'; chain: string };

export type NftExpr =
  | { t: 'addr'; field: AddrField; neg: boolean; prefix: Prefix }
  | { t: 'inSet'; field: AddrField; neg: boolean; set: string }
  | { t: 'fibLocal'; field: AddrField }
  | { t: 'l4proto'; proto: string }
  | { t: 'ctNew' }
  | { t: 'markTest'; mask: number; value: number; neg: boolean }
  | { t: 'vmap'; key: KeyPart[]; map: string }
  | { t: 'inSetConcat'; key: KeyPart[]; set: string }
  | { t: 'numgen'; mod: number; branches: Map<number, NftVerdict> }
  | { t: 'numgenMatch'; mod: number; value: number }
  | { t: 'markSet'; op: 'or' | 'xor'; value: number }
  | { t: 'update'; set: string; field: AddrField }
  | { t: 'dnat'; ip: string; port: number }
  /** `dnat ip addr . port to numgen random mod N offset B map @m`: element B+random(N) of m. */
  | { t: 'dnatMap'; mod: number; offset: number; map: string }
  | { t: 'masquerade' }
  | { t: 'reject'; tcpReset: boolean }
  | { t: 'verdict'; v: NftVerdict }
  | { t: 'counter' };

export interface NftRule {
  readonly text: string;
  readonly exprs: readonly NftExpr[];
}

export class NftSyntaxError extends Error {
  override readonly name = 'NftSyntaxError';
}

const PROTOS = new Set(['tcp', 'udp', 'sctp', 'icmp', 'icmpv6']);

export function tokenize(text: string): string[] {
  return text.match(/[{}]|,|[^\s{},]+/g) ?? [];
}

function num(text: string | undefined, what: string): number {
  if (text === undefined || !/^(0x[0-9a-fA-F]+|[0-9]+)$/.test(text)) throw new NftSyntaxError(`expected a number for ${what}, got "${text ?? ''}"`);
  return Number(text);
}

/** `verdict` tokens at `i` (accept | drop | return | jump X | goto X). */
export function parseVerdict(toks: readonly string[], i: number): { v: NftVerdict; next: number } | undefined {
  const t = toks[i];
  if (t === 'accept' || t === 'drop' || t === 'return') return { v: { kind: t }, next: i + 1 };
  if (t === 'jump' || t === 'goto') {
    const chain = toks[i + 1];
    if (!chain || !/^[A-Za-z_.][A-Za-z0-9/_.-]*$/.test(chain)) throw new NftSyntaxError(`${t} needs a chain name`);
    return { v: { kind: t, chain }, next: i + 2 };
  }
  return undefined;
}

/** Parses the verdict text of a verdict-map element (`goto svc-…`, `drop`). */
export function parseVerdictText(text: string): NftVerdict {
  const toks = tokenize(text);
  const r = parseVerdict(toks, 0);
  if (!r || r.next !== toks.length) throw new NftSyntaxError(`not a verdict: "${text}"`);
  return r.v;
}

function parseAddrValue(text: string): Prefix {
  try {
    if (text.includes('/')) return parsePrefix(text, true).prefix;
    const ip = parseIP(text);
    return { ip, bits: ip.family === 4 ? 32 : 128 };
  } catch {
    throw new NftSyntaxError(`not an address or prefix: "${text}"`);
  }
}

function parseKeyPart(toks: readonly string[], i: number): { part: KeyPart; next: number } {
  const a = toks[i];
  const b = toks[i + 1];
  if ((a === 'ip' || a === 'ip6') && (b === 'saddr' || b === 'daddr')) return { part: b, next: i + 2 };
  if (a === 'meta' && b === 'l4proto') return { part: 'l4proto', next: i + 2 };
  if (a === 'th' && b === 'dport') return { part: 'dport', next: i + 2 };
  throw new NftSyntaxError(`unknown key "${a ?? ''} ${b ?? ''}"`);
}

function parseConcatVmap(toks: readonly string[], i: number): { expr: NftExpr; next: number } {
  const key: KeyPart[] = [];
  let j = i;
  for (;;) {
    const k = parseKeyPart(toks, j);
    key.push(k.part);
    j = k.next;
    if (toks[j] === '.') {
      j++;
      continue;
    }
    break;
  }
  if (toks[j]?.startsWith('@')) return { expr: { t: 'inSetConcat', key, set: toks[j]!.slice(1) }, next: j + 1 };
  if (toks[j] !== 'vmap') throw new NftSyntaxError('a concatenation must be looked up with vmap or in @set');
  const map = toks[j + 1];
  if (!map?.startsWith('@')) throw new NftSyntaxError('vmap needs @map');
  return { expr: { t: 'vmap', key, map: map.slice(1) }, next: j + 2 };
}

export function parseRule(text: string): NftRule {
  const toks = tokenize(text);
  const exprs: NftExpr[] = [];
  let i = 0;
  while (i < toks.length) {
    const t = toks[i]!;
    const verdict = parseVerdict(toks, i);
    if (verdict) {
      exprs.push({ t: 'verdict', v: verdict.v });
      i = verdict.next;
      continue;
    }
    switch (t) {
      case 'ip':
      case 'ip6': {
        const field = toks[i + 1];
        if (field !== 'saddr' && field !== 'daddr') throw new NftSyntaxError(`${t} ${field ?? ''}: only saddr and daddr`);
        if (toks[i + 2] === '.') {
          const r = parseConcatVmap(toks, i);
          exprs.push(r.expr);
          i = r.next;
          break;
        }
        const neg = toks[i + 2] === '!=';
        const value = toks[neg ? i + 3 : i + 2];
        if (value === undefined) throw new NftSyntaxError(`${t} ${field} needs a value`);
        if (value.startsWith('@')) exprs.push({ t: 'inSet', field, neg, set: value.slice(1) });
        else {
          const prefix = parseAddrValue(value);
          if ((prefix.ip.family === 4) !== (t === 'ip')) throw new NftSyntaxError(`${t} ${field} ${value}: wrong family`);
          exprs.push({ t: 'addr', field, neg, prefix });
        }
        i = neg ? i + 4 : i + 3;
        break;
      }
      case 'meta': {
        const what = toks[i + 1];
        if (what === 'l4proto') {
          if (toks[i + 2] === '.') {
            const r = parseConcatVmap(toks, i);
            exprs.push(r.expr);
            i = r.next;
          } else {
            const proto = toks[i + 2];
            if (!proto || !PROTOS.has(proto)) throw new NftSyntaxError(`meta l4proto: unknown protocol "${proto ?? ''}"`);
            exprs.push({ t: 'l4proto', proto });
            i += 3;
          }
        } else if (what === 'mark') {
          if (toks[i + 2] === 'set') {
            if (toks[i + 3] !== 'meta' || toks[i + 4] !== 'mark') throw new NftSyntaxError('meta mark set: only "meta mark or|xor V"');
            const op = toks[i + 5];
            const o = op === 'or' || op === '|' ? 'or' : op === 'xor' || op === '^' ? 'xor' : undefined;
            if (!o) throw new NftSyntaxError(`meta mark set: unknown operator "${op ?? ''}"`);
            exprs.push({ t: 'markSet', op: o, value: num(toks[i + 6], 'mark') });
            i += 7;
          } else if (toks[i + 2] === '&') {
            const mask = num(toks[i + 3], 'mask');
            const cmp = toks[i + 4];
            if (cmp !== '==' && cmp !== '!=') throw new NftSyntaxError('meta mark & M: expected == or !=');
            exprs.push({ t: 'markTest', mask, value: num(toks[i + 5], 'mark value'), neg: cmp === '!=' });
            i += 6;
          } else throw new NftSyntaxError('meta mark: expected "set" or "&"');
        } else throw new NftSyntaxError(`meta ${what ?? ''}: unsupported`);
        break;
      }
      case 'th': {
        const r = parseConcatVmap(toks, i);
        exprs.push(r.expr);
        i = r.next;
        break;
      }
      case 'fib': {
        const field = toks[i + 1];
        if ((field !== 'saddr' && field !== 'daddr') || toks[i + 2] !== 'type' || toks[i + 3] !== 'local') {
          throw new NftSyntaxError('fib: only "fib saddr|daddr type local"');
        }
        exprs.push({ t: 'fibLocal', field });
        i += 4;
        break;
      }
      case 'ct':
        if (toks[i + 1] !== 'state' || toks[i + 2] !== 'new') throw new NftSyntaxError('ct: only "ct state new"');
        exprs.push({ t: 'ctNew' });
        i += 3;
        break;
      case 'numgen': {
        if (toks[i + 1] !== 'random' || toks[i + 2] !== 'mod') throw new NftSyntaxError('numgen: only "numgen random mod N"');
        const mod = num(toks[i + 3], 'numgen mod');
        if (toks[i + 4] !== 'vmap') {
          // A match: `numgen random mod N == V` (nft lists it as `numgen random mod N V`).
          const eq = toks[i + 4] === '==';
          const value = num(toks[eq ? i + 5 : i + 4], 'numgen value');
          if (value >= mod) throw new NftSyntaxError(`numgen random mod ${mod} never equals ${value}`);
          exprs.push({ t: 'numgenMatch', mod, value });
          i += eq ? 6 : 5;
          break;
        }
        if (toks[i + 4] !== 'vmap' || toks[i + 5] !== '{') throw new NftSyntaxError('numgen: expected "vmap {"');
        const branches = new Map<number, NftVerdict>();
        let j = i + 6;
        while (toks[j] !== '}') {
          if (j >= toks.length) throw new NftSyntaxError('numgen vmap: missing }');
          const k = num(toks[j], 'numgen key');
          if (toks[j + 1] !== ':') throw new NftSyntaxError('numgen vmap: expected ":"');
          const v = parseVerdict(toks, j + 2);
          if (!v) throw new NftSyntaxError('numgen vmap: expected a verdict');
          if (k >= mod || branches.has(k)) throw new NftSyntaxError(`numgen vmap: bad key ${k}`);
          branches.set(k, v.v);
          j = v.next;
          if (toks[j] === ',') j++;
        }
        if (branches.size !== mod) throw new NftSyntaxError(`numgen mod ${mod} with ${branches.size} branches`);
        exprs.push({ t: 'numgen', mod, branches });
        i = j + 1;
        break;
      }
      case 'update': {
        const set = toks[i + 1];
        if (!set?.startsWith('@') || toks[i + 2] !== '{' || (toks[i + 3] !== 'ip' && toks[i + 3] !== 'ip6') || toks[i + 5] !== '}') {
          throw new NftSyntaxError('update: only "update @set { ip saddr }"');
        }
        const field = toks[i + 4];
        if (field !== 'saddr' && field !== 'daddr') throw new NftSyntaxError('update: saddr or daddr');
        exprs.push({ t: 'update', set: set.slice(1), field });
        i += 6;
        break;
      }
      case 'dnat': {
        if ((toks[i + 1] === 'ip' || toks[i + 1] === 'ip6') && toks[i + 2] === 'addr') {
          // dnat ip addr . port to numgen random mod N offset B map @m
          const want = ['.', 'port', 'to', 'numgen', 'random', 'mod'];
          want.forEach((w, k) => {
            if (toks[i + 3 + k] !== w) throw new NftSyntaxError(`dnat ${toks[i + 1]} addr: expected "${w}", got "${toks[i + 3 + k] ?? ''}"`);
          });
          const mod = num(toks[i + 9], 'numgen mod');
          if (mod < 1) throw new NftSyntaxError('numgen mod 0');
          if (toks[i + 10] !== 'offset') throw new NftSyntaxError('dnat … numgen: expected "offset"');
          const offset = num(toks[i + 11], 'numgen offset');
          if (offset + mod - 1 > 0xffffffff) throw new NftSyntaxError('numgen offset out of range');
          const map = toks[i + 13];
          if (toks[i + 12] !== 'map' || !map?.startsWith('@')) throw new NftSyntaxError('dnat … numgen: expected "map @name"');
          exprs.push({ t: 'dnatMap', mod, offset, map: map.slice(1) });
          i += 14;
          break;
        }
        if (toks[i + 1] !== 'to') throw new NftSyntaxError('dnat: expected "to"');
        const target = toks[i + 2] ?? '';
        const m = /^\[([0-9a-fA-F:.]+)\]:(\d+)$/.exec(target) ?? /^([0-9.]+):(\d+)$/.exec(target);
        if (!m) throw new NftSyntaxError(`dnat to: expected ip:port, got "${target}"`);
        let ip: string;
        try {
          ip = formatIP(parseIP(m[1]!));
        } catch {
          throw new NftSyntaxError(`dnat to: bad address "${m[1]}"`);
        }
        exprs.push({ t: 'dnat', ip, port: num(m[2], 'port') });
        i += 3;
        break;
      }
      case 'masquerade':
        exprs.push({ t: 'masquerade' });
        i++;
        while (toks[i] === 'fully-random' || toks[i] === 'random' || toks[i] === 'persistent') i++;
        break;
      case 'reject':
        if (toks[i + 1] === 'with') {
          if (toks[i + 2] !== 'tcp' || toks[i + 3] !== 'reset') throw new NftSyntaxError('reject with: only "tcp reset"');
          exprs.push({ t: 'reject', tcpReset: true });
          i += 4;
        } else {
          exprs.push({ t: 'reject', tcpReset: false });
          i++;
        }
        break;
      case 'counter':
        exprs.push({ t: 'counter' });
        i++;
        break;
      default:
        throw new NftSyntaxError(`unknown expression "${t}" in "${text}"`);
    }
  }
  const last = exprs.findIndex((e) => e.t === 'verdict' || e.t === 'dnat' || e.t === 'dnatMap' || e.t === 'masquerade' || e.t === 'reject');
  if (last >= 0 && last !== exprs.length - 1) throw new NftSyntaxError(`nothing may follow a verdict: "${text}"`);
  return { text, exprs };
}

/** The chains and sets a rule refers to (for reference counting). */
export function ruleRefs(rule: NftRule): { chains: string[]; sets: string[] } {
  const chains: string[] = [];
  const sets: string[] = [];
  const verdict = (v: NftVerdict) => {
    if (v.kind === 'jump' || v.kind === 'goto') chains.push(v.chain);
  };
  for (const e of rule.exprs) {
    if (e.t === 'verdict') verdict(e.v);
    else if (e.t === 'numgen') for (const v of e.branches.values()) verdict(v);
    else if (e.t === 'vmap' || e.t === 'dnatMap') sets.push(e.map);
    else if (e.t === 'inSetConcat') sets.push(e.set);
    else if (e.t === 'inSet' || e.t === 'update') sets.push(e.set);
  }
  return { chains, sets };
}
