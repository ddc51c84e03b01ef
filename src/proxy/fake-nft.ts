/**
 * A fake `nft` for unit tests (kube-proxy tests against knftables' fake the same way). It
 * keeps tables in memory and applies `nft -f -` transactions with the kernel's rules that
 * matter to the proxy:
 *
 *   - a transaction is atomic: one bad line and nothing changes (the error names the line);
 *   - `add` of an existing table/chain/set is a no-op; `add element` of an existing key with
 *     another value fails (EEXIST), `delete element` of a missing one fails (ENOENT);
 *   - a rule may only jump to existing chains and look up existing sets; a chain or set that
 *     a rule or a map element still refers to cannot be deleted (EBUSY);
 *   - every rule must parse with the proxy's rule parser (so the tracer can walk it).
 *
 *   - a verdict map's values must be verdicts naming existing chains; a data map's (the
 *     endpoint maps, `typeof numgen … : ip daddr . tcp dport`) must be `address . port`.
 *
 * It also answers `nft [-t] list table`, `nft list tables`, `nft [-t] list chains|sets|maps FAMILY`
 * (several joined with `;`) and `nft delete table`, records every call, and can be told to
 * fail the next transaction. `conntrack` calls are recorded
 * and answered like a conntrack that found nothing to delete.
 */
import { CommandError, type RunOptions, type RunResult, type Runner } from '../kernel/index.ts';
import { type NftRule, parseRule, parseVerdictText, ruleRefs } from './nft-rules.ts';

export interface NftBaseSpec {
  type: string;
  hook: string;
  priority: number;
  policy: 'accept' | 'drop';
}

export interface NftChainState {
  base?: NftBaseSpec;
  rules: NftRule[];
}

export interface NftSetState {
  isMap: boolean;
  /** The declaration after `type ` (or the whole `typeof …` declaration). */
  type: string;
  flags: string[];
  timeoutSeconds?: number;
  /** key → value ('' in a set); keys are normalised to single spaces. */
  elements: Map<string, string>;
}

export interface NftTableState {
  family: string;
  name: string;
  chains: Map<string, NftChainState>;
  sets: Map<string, NftSetState>;
}

export class FakeNftError extends Error {
  override readonly name = 'FakeNftError';
}

const PRIORITIES: Record<string, number> = { raw: -300, mangle: -150, dstnat: -100, filter: 0, security: 50, srcnat: 100 };

export function parsePriority(text: string): number {
  const m = /^\s*([a-z]+|-?\d+)\s*(?:([+-])\s*(\d+))?\s*$/.exec(text);
  if (!m) throw new FakeNftError(`bad priority "${text}"`);
  const base = /^-?\d+$/.test(m[1]!) ? Number(m[1]) : PRIORITIES[m[1]!];
  if (base === undefined) throw new FakeNftError(`unknown priority "${m[1]}"`);
  return base + (m[2] ? (m[2] === '+' ? 1 : -1) * Number(m[3]) : 0);
}

function isVerdictMap(s: NftSetState): boolean {
  return s.isMap && s.type.endsWith(': verdict');
}

function cloneTable(t: NftTableState): NftTableState {
  return {
    family: t.family,
    name: t.name,
    chains: new Map([...t.chains].map(([n, c]) => [n, { ...(c.base ? { base: { ...c.base } } : {}), rules: [...c.rules] }])),
    sets: new Map([...t.sets].map(([n, s]) => [n, { ...s, flags: [...s.flags], elements: new Map(s.elements) }])),
  };
}

function normKey(k: string): string {
  return k.trim().replace(/\s+/g, ' ');
}

/** `{ a : b, c : d }` → [['a', 'b'], ['c', 'd']] (value '' in sets). */
function parseElements(body: string, isMap: boolean): Array<[string, string]> {
  const m = /^\{(.*)\}$/.exec(body.trim());
  if (!m) throw new FakeNftError(`expected { elements }, got "${body}"`);
  const out: Array<[string, string]> = [];
  for (const part of m[1]!.split(',')) {
    if (!part.trim()) continue;
    if (isMap) {
      const i = part.indexOf(' : ');
      if (i < 0) out.push([normKey(part), '']);
      else out.push([normKey(part.slice(0, i)), normKey(part.slice(i + 3))]);
    } else out.push([normKey(part), '']);
  }
  return out;
}

class Tx {
  readonly tables: Map<string, NftTableState>;

  constructor(tables: Map<string, NftTableState>) {
    this.tables = tables;
  }

  table(family: string | undefined, name: string | undefined): NftTableState {
    const t = this.tables.get(`${family} ${name}`);
    if (!t) throw new FakeNftError(`No such file or directory: table ${family} ${name}`);
    return t;
  }

  /** How often chains and sets are referred to by rules and map elements. */
  refs(t: NftTableState): { chains: Map<string, number>; sets: Map<string, number> } {
    const chains = new Map<string, number>();
    const sets = new Map<string, number>();
    const inc = (m: Map<string, number>, k: string) => m.set(k, (m.get(k) ?? 0) + 1);
    for (const c of t.chains.values()) {
      for (const r of c.rules) {
        const x = ruleRefs(r);
        for (const n of x.chains) inc(chains, n);
        for (const n of x.sets) inc(sets, n);
      }
    }
    for (const s of t.sets.values()) {
      if (!isVerdictMap(s)) continue;
      for (const v of s.elements.values()) {
        const verdict = parseVerdictText(v);
        if (verdict.kind === 'jump' || verdict.kind === 'goto') inc(chains, verdict.chain);
      }
    }
    return { chains, sets };
  }

  apply(line: string): void {
    const toks = line.trim().split(/\s+/);
    const [verb, obj, family, table, name] = toks;
    if (obj === 'table') {
      const key = `${family} ${table}`;
      if (verb === 'add') {
        if (!this.tables.has(key)) this.tables.set(key, { family: family!, name: table!, chains: new Map(), sets: new Map() });
      } else if (verb === 'delete') {
        if (!this.tables.delete(key)) throw new FakeNftError(`No such file or directory: table ${key}`);
      } else if (verb === 'flush') {
        const t = this.table(family, table);
        for (const c of t.chains.values()) c.rules = [];
        for (const s of t.sets.values()) s.elements.clear();
      } else throw new FakeNftError(`unsupported: ${line}`);
      return;
    }
    const t = this.table(family, table);
    if (!name) throw new FakeNftError(`missing name: ${line}`);
    const rest = line.trim().split(/\s+/).slice(5).join(' ');
    switch (`${verb} ${obj}`) {
      case 'add chain': {
        if (!/^[A-Za-z_.][A-Za-z0-9/_.-]*$/.test(name)) throw new FakeNftError(`bad chain name "${name}"`);
        let base: NftBaseSpec | undefined;
        if (rest) {
          const m = /^\{\s*type (\w+) hook (\w+) priority ([^;]+);\s*(?:policy (accept|drop);)?\s*\}$/.exec(rest);
          if (!m) throw new FakeNftError(`bad chain spec: ${rest}`);
          base = { type: m[1]!, hook: m[2]!, priority: parsePriority(m[3]!), policy: (m[4] as 'accept' | 'drop' | undefined) ?? 'accept' };
        }
        const had = t.chains.get(name);
        if (!had) t.chains.set(name, { ...(base ? { base } : {}), rules: [] });
        else if (base && (!had.base || had.base.hook !== base.hook || had.base.type !== base.type)) throw new FakeNftError(`File exists: chain ${name} with another hook`);
        return;
      }
      case 'flush chain':
        this.chain(t, name).rules = [];
        return;
      case 'delete chain': {
        this.chain(t, name);
        const held = t.chains.get(name)!;
        t.chains.delete(name);
        const used = this.refs(t).chains.get(name) ?? 0;
        if (used > 0) {
          t.chains.set(name, held);
          throw new FakeNftError(`Device or resource busy: chain ${name} is still referenced ${used} time(s)`);
        }
        return;
      }
      case 'add rule': {
        const chain = this.chain(t, name);
        let rule: NftRule;
        try {
          rule = parseRule(rest);
        } catch (err) {
          throw new FakeNftError(`syntax error: ${(err as Error).message}`);
        }
        const r = ruleRefs(rule);
        for (const c of r.chains) {
          const target = t.chains.get(c);
          if (!target) throw new FakeNftError(`No such file or directory: chain ${c}`);
          if (target.base) throw new FakeNftError(`cannot jump to base chain ${c}`);
        }
        for (const s of r.sets) if (!t.sets.has(s)) throw new FakeNftError(`No such file or directory: set ${s}`);
        chain.rules.push(rule);
        return;
      }
      case 'add map':
      case 'add set': {
        if (t.sets.has(name)) {
          if (t.sets.get(name)!.isMap !== (obj === 'map')) throw new FakeNftError(`File exists: ${name}`);
          return;
        }
        const body = /^\{(.*)\}$/.exec(rest)?.[1];
        if (body === undefined) throw new FakeNftError(`bad ${obj} spec: ${rest}`);
        const fields = body.split(';').map((f) => f.trim()).filter(Boolean);
        const typeField = fields.find((f) => f.startsWith('type ') || f.startsWith('typeof '));
        const type = typeField?.startsWith('typeof ') ? typeField : typeField?.slice(5).trim();
        if (!type) throw new FakeNftError(`${obj} ${name}: missing type`);
        if ((obj === 'map') !== type.includes(' : ')) throw new FakeNftError(`${obj} ${name}: type "${type}"`);
        const flags = fields.find((f) => f.startsWith('flags '))?.slice(6).split(',').map((f) => f.trim()) ?? [];
        const timeout = fields.find((f) => f.startsWith('timeout '))?.slice(8).trim();
        const set: NftSetState = { isMap: obj === 'map', type, flags, elements: new Map() };
        if (timeout !== undefined) {
          const m = /^(\d+)s$/.exec(timeout);
          if (!m) throw new FakeNftError(`bad timeout "${timeout}"`);
          set.timeoutSeconds = Number(m[1]);
        }
        t.sets.set(name, set);
        return;
      }
      case 'flush map':
      case 'flush set':
        this.set(t, name).elements.clear();
        return;
      case 'delete map':
      case 'delete set': {
        this.set(t, name);
        const used = this.refs(t).sets.get(name) ?? 0;
        if (used > 0) throw new FakeNftError(`Device or resource busy: set ${name} is still referenced`);
        t.sets.delete(name);
        return;
      }
      case 'add element': {
        const s = this.set(t, name);
        for (const [k, v] of parseElements(rest, s.isMap)) {
          if (s.isMap && !isVerdictMap(s)) {
            if (!/^[0-9]+$/.test(k) || !/^[0-9a-fA-F.:]+ \. [0-9]+$/.test(v)) throw new FakeNftError(`bad element ${k} : ${v} for ${name}`);
          } else if (s.isMap) {
            const verdict = parseVerdictText(v);
            if ((verdict.kind === 'jump' || verdict.kind === 'goto') && !t.chains.has(verdict.chain)) {
              throw new FakeNftError(`No such file or directory: chain ${verdict.chain}`);
            }
          }
          const had = s.elements.get(k);
          if (had !== undefined && had !== v) throw new FakeNftError(`File exists: element ${k} in ${name}`);
          s.elements.set(k, v);
        }
        return;
      }
      case 'delete element': {
        const s = this.set(t, name);
        for (const [k] of parseElements(rest, false)) {
          if (!s.elements.delete(k)) throw new FakeNftError(`No such file or directory: element ${k} in ${name}`);
        }
        return;
      }
      default:
        throw new FakeNftError(`unsupported: ${line}`);
    }
  }

  chain(t: NftTableState, name: string): NftChainState {
    const c = t.chains.get(name);
    if (!c) throw new FakeNftError(`No such file or directory: chain ${name}`);
    return c;
  }

  set(t: NftTableState, name: string): NftSetState {
    const s = t.sets.get(name);
    if (!s) throw new FakeNftError(`No such file or directory: set ${name}`);
    return s;
  }
}

export interface FakeCall {
  file: string;
  args: readonly string[];
  input?: string;
  netns?: string;
}

export class FakeNft {
  tables = new Map<string, NftTableState>();
  readonly calls: FakeCall[] = [];
  /** When set, the next `nft -f -` fails with this message and changes nothing. */
  failNext: string | undefined;

  /** Applies a transaction; throws FakeNftError and changes nothing on any bad line. */
  apply(script: string): void {
    if (this.failNext !== undefined) {
      const msg = this.failNext;
      this.failNext = undefined;
      throw new FakeNftError(msg);
    }
    const work = new Map([...this.tables].map(([k, t]) => [k, cloneTable(t)]));
    const tx = new Tx(work);
    const lines = script.split('\n');
    lines.forEach((raw, i) => {
      const line = raw.trim();
      if (!line || line.startsWith('#')) return;
      try {
        tx.apply(line);
      } catch (err) {
        throw new FakeNftError(`-:${i + 1}: ${(err as Error).message}\n${line}`);
      }
    });
    this.tables = work;
  }

  table(family: string, name: string): NftTableState | undefined {
    return this.tables.get(`${family} ${name}`);
  }

  /** `nft list table` text (the kernel's layout, enough for name parsing). */
  listTable(family: string, name: string, terse = false): string {
    const t = this.table(family, name);
    if (!t) throw new FakeNftError(`No such file or directory: table ${family} ${name}`);
    const out = [`table ${family} ${name} {`];
    for (const [n, s] of t.sets) {
      out.push(`\t${s.isMap ? 'map' : 'set'} ${n} {`, s.type.startsWith('typeof ') ? `\t\t${s.type}` : `\t\ttype ${s.type}`);
      if (s.flags.length) out.push(`\t\tflags ${s.flags.join(',')}`);
      if (s.timeoutSeconds !== undefined) out.push(`\t\ttimeout ${s.timeoutSeconds}s`);
      if (!terse && s.elements.size) out.push(`\t\telements = { ${[...s.elements].map(([k, v]) => (s.isMap ? `${k} : ${v}` : k)).join(',\n\t\t\t     ')} }`);
      out.push('\t}', '');
    }
    for (const [n, c] of t.chains) {
      out.push(`\tchain ${n} {`);
      if (c.base) out.push(`\t\ttype ${c.base.type} hook ${c.base.hook} priority ${c.base.priority}; policy ${c.base.policy};`);
      for (const r of c.rules) out.push(`\t\t${r.text}`);
      out.push('\t}', '');
    }
    if (out[out.length - 1] === '') out.pop();
    out.push('}', '');
    return out.join('\n');
  }

  /** `nft list chains|sets|maps [FAMILY]` (terse): names and declarations, no rules or elements. */
  listDeclarations(what: 'chains' | 'sets' | 'maps', family?: string): string {
    const out: string[] = [];
    for (const t of this.tables.values()) {
      if (family !== undefined && t.family !== family) continue;
      out.push(`table ${t.family} ${t.name} {`);
      if (what === 'chains') {
        for (const [n, c] of t.chains) {
          out.push(`\tchain ${n} {`);
          if (c.base) out.push(`\t\ttype ${c.base.type} hook ${c.base.hook} priority ${c.base.priority}; policy ${c.base.policy};`);
          out.push('\t}');
        }
      } else {
        for (const [n, s] of t.sets) {
          if (s.isMap !== (what === 'maps')) continue;
          out.push(`\t${s.isMap ? 'map' : 'set'} ${n} {`, s.type.startsWith('typeof ') ? `\t\t${s.type}` : `\t\ttype ${s.type}`);
          if (s.flags.length) out.push(`\t\tflags ${s.flags.join(',')}`);
          if (s.timeoutSeconds !== undefined) out.push(`\t\ttimeout ${s.timeoutSeconds}s`);
          out.push('\t}');
        }
      }
      out.push('}');
    }
    return out.length ? out.join('\n') + '\n' : '';
  }

  /** A Runner answering nft (and conntrack) like the real tools. */
  readonly runner: Runner = async (file: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> => {
    this.calls.push({ file, args: [...args], ...(opts.input !== undefined ? { input: opts.input } : {}), ...(opts.netns !== undefined ? { netns: opts.netns } : {}) });
    const fail = (msg: string, code = 1): never => {
      throw new CommandError([file, ...args], code, `Error: ${msg}\n`);
    };
    if (file === 'conntrack') {
      return fail('0 flow entries have been deleted.');
    }
    if (file !== 'nft') return fail(`fake: unknown program ${file}`, 127);
    const a = args.filter((x) => x !== '-t');
    const terse = args.includes('-t');
    try {
      if (a[0] === '-f' && a[1] === '-') {
        this.apply(opts.input ?? '');
        return { stdout: '', stderr: '' };
      }
      if (a[0] === 'list' && a[1] === 'table' && a.length === 4) return { stdout: this.listTable(a[2]!, a[3]!, terse), stderr: '' };
      if (a[0] === 'list' && (a[1] === 'chains' || a[1] === 'sets' || a[1] === 'maps')) {
        // `list chains FAMILY ; list sets FAMILY`: declarations only, per table.
        const cmds: string[][] = [[]];
        for (const x of a) if (x === ';') cmds.push([]);
        else cmds[cmds.length - 1]!.push(x);
        let out = '';
        for (const c of cmds) {
          if (c[0] !== 'list' || (c[1] !== 'chains' && c[1] !== 'sets' && c[1] !== 'maps') || c.length > 3) return fail(`fake: unsupported nft ${args.join(' ')}`);
          out += this.listDeclarations(c[1], c[2]);
        }
        return { stdout: out, stderr: '' };
      }
      if (a[0] === 'list' && a[1] === 'tables') return { stdout: [...this.tables.values()].map((t) => `table ${t.family} ${t.name}\n`).join(''), stderr: '' };
      if (a[0] === 'delete' && a[1] === 'table' && a.length === 4) {
        this.apply(`delete table ${a[2]} ${a[3]}`);
        return { stdout: '', stderr: '' };
      }
    } catch (err) {
      return fail((err as Error).message);
    }
    return fail(`fake: unsupported nft ${args.join(' ')}`);
  };
}
