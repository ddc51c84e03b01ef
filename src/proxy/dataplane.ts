/**
 * The executors: the only code of the proxy that runs commands.
 *
 * ProxyDataplane (nftables) keeps two things between syncs:
 *   - the change tracker: what the last successful sync was made from;
 *   - the mirror (NftTableMirror): the plan of every service port written, hence the
 *     chains, affinity sets and map elements the table holds.
 * A partial sync plans only the service ports the tracker reports changed and writes only
 * their difference from the mirror, in one `nft -f -` transaction (nothing at all when
 * nothing changed). A full sync — on the first
 * sync, after any failure (`needFullSync`), when the node's context changes, and
 * periodically (an hour by default) — rewrites every chain and map of the table and deletes
 * the stale chains and sets it finds in `nft list chains` / `list sets` by their name
 * pattern: whatever drifted (a hand-edited chain, an element someone deleted) is repaired
 * there.
 *
 * Failures are returned as values, never thrown: the caller is a loop that will call again.
 * UDP conntrack cleanup runs after a successful write (see conntrack.ts), never on the
 * first sync of a process (the table it finds is from the previous run, still in force).
 *
 * The agent runs inside the node's namespace, so commands run without a namespace option;
 * tests pass `netns` (a path) and every command goes through nsenter.
 */
import { describe as describeError } from '../errors/index.ts';
import { CommandError, NftSession, type Runner, run as defaultRun } from '../kernel/index.ts';
import { planConntrackCleanup } from './conntrack.ts';
import { type IptablesPlan, iptablesJumps, parseSaveChains, planIptables } from './iptables.ts';
import { IPT_PREFIX } from './names.ts';
import { type NftCounts, type NftPlanOptions, NftTableMirror, type NftTransaction, type ServicePlan, planService, tableName } from './nftables.ts';
import { type ServiceChange, ServiceChangeTracker, type ServicePortState } from './tracker.ts';
import { type EndpointsMap, type NodeContext, type ProxyProblem, type ServicePortMap, nftFamily } from './types.ts';

export interface ProxyDataplaneOptions {
  /** Run every command in this network namespace (a path such as /var/run/netns/x); tests only. */
  netns?: string;
  /** The process runner (FakeNft's runner in unit tests). */
  runner?: Runner;
  /** Time between full syncs; default one hour. */
  fullSyncIntervalMs?: number;
  /** The clock (tests move it). */
  now?: () => number;
  /** Delete stale UDP conntrack entries after a sync (default true). */
  conntrack?: boolean;
  /** How policy chains pick an endpoint (nftables only; see NftPlanOptions). */
  dispatch?: 'rules' | 'vmap';
  /**
   * Send partial syncs to a long-running `nft -i` (NftSession) instead of a new `nft -f -`
   * each: at 10,000 services a one-endpoint change takes ~10 ms instead of ~30. Default: on
   * unless a `runner` is given (unit tests drive a fake nft through the runner). Transactions
   * over 1 MB always go to `nft -f -`.
   */
  session?: boolean;
}

const SESSION_MAX_BYTES = 1 << 20;

export interface SyncTimings {
  /** Change tracking, planning and rendering. */
  planMs: number;
  /** Reading the table (full syncs) and running the transaction. */
  applyMs: number;
  conntrackMs: number;
  totalMs: number;
}

export interface SyncResult {
  mode: 'full' | 'partial';
  /** Whether a transaction ran (a partial sync that finds nothing to do runs none). */
  applied: boolean;
  /** False when the write failed: the next sync is a full one. */
  ok: boolean;
  /** Service ports and endpoints in the model. */
  services: number;
  endpoints: number;
  /** Service ports added, changed or removed since the last successful sync. */
  changedServices: number;
  counts: NftCounts;
  conntrack: { commands: number; failed: number };
  problems: ProxyProblem[];
  timings: SyncTimings;
}

const HOUR = 3_600_000;
const MISSING = /No such file or directory/;
const NO_FLOWS = /0 flow entries have been deleted/;

function zeroCounts(): NftCounts {
  return { chainsWritten: 0, chainsDeleted: 0, rulesWritten: 0, elementsAdded: 0, elementsDeleted: 0, setsAdded: 0, setsDeleted: 0, lines: 0 };
}

/**
 * Chain and set names in an `nft list table` / `nft list chains` / `nft list sets` answer;
 * with `table` (`ip podnet-proxy`), only those inside that table's blocks.
 */
export function parseTableNames(listing: string, table?: string): { chains: string[]; sets: string[] } {
  const chains: string[] = [];
  const sets: string[] = [];
  let inside = table === undefined;
  for (const line of listing.split('\n')) {
    const t = /^table (\S+ \S+) \{/.exec(line);
    if (t) {
      inside = table === undefined || t[1] === table;
      continue;
    }
    if (!inside) continue;
    const m = /^\s*(chain|set|map) (\S+) \{/.exec(line);
    if (!m) continue;
    if (m[1] === 'chain') chains.push(m[2]!);
    else sets.push(m[2]!);
  }
  return { chains, sets };
}

function isMissingProgram(err: unknown): boolean {
  if (!(err instanceof CommandError)) return false;
  const cause = err.cause as { code?: unknown } | undefined;
  return cause?.code === 'ENOENT' || err.exitCode === 127;
}

/** Runs conntrack deletions; "0 flow entries" is success. Returns how many failed. */
async function runConntrack(run: (file: string, args: readonly string[]) => Promise<unknown>, commands: readonly string[][], problems: ProxyProblem[]): Promise<number> {
  let failed = 0;
  for (let i = 0; i < commands.length; i++) {
    const args = commands[i]!;
    try {
      await run('conntrack', args);
    } catch (err) {
      if (err instanceof CommandError && NO_FLOWS.test(err.stderr)) continue;
      if (isMissingProgram(err)) {
        problems.push({ code: 'PODNET_CONNTRACK_MISSING', message: 'conntrack is not installed (install conntrack): stale UDP flows to removed endpoints are not cleared' });
        return failed + commands.length - i;
      }
      failed++;
      problems.push({ code: 'PODNET_CONNTRACK_FAILED', message: `conntrack ${args.join(' ')}: ${describeError(err)}` });
    }
  }
  return failed;
}

/**
 * What both executors do after a successful write: delete the stale UDP flows of the changed
 * service ports (`clean` is false on a process's first sync: the table it found was still in
 * force), then record the snapshot as applied.
 */
async function afterWrite(
  run: (file: string, args: readonly string[]) => Promise<unknown>,
  clean: boolean,
  tracker: ServiceChangeTracker,
  changes: readonly ServiceChange[],
  snapshot: ReadonlyMap<string, ServicePortState>,
  problems: ProxyProblem[],
): Promise<{ commands: number; failed: number }> {
  let conntrack = { commands: 0, failed: 0 };
  if (clean) {
    const cmds = planConntrackCleanup(changes);
    conntrack = { commands: cmds.length, failed: await runConntrack(run, cmds, problems) };
  }
  tracker.commit(snapshot);
  return conntrack;
}

export class ProxyDataplane {
  private readonly netns: string | undefined;
  private readonly runner: Runner;
  private readonly interval: number;
  private readonly now: () => number;
  private readonly cleanConntrack: boolean;
  private readonly planOpts: NftPlanOptions;
  private readonly tracker = new ServiceChangeTracker();
  private readonly session: NftSession | undefined;
  private mirror: NftTableMirror | undefined;
  private needFull = true;
  private lastFull = -Infinity;
  private nodeKey = '';
  private family: 4 | 6 = 4;
  private started = false;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(opts: ProxyDataplaneOptions = {}) {
    this.netns = opts.netns;
    this.runner = opts.runner ?? defaultRun;
    this.interval = opts.fullSyncIntervalMs ?? HOUR;
    this.now = opts.now ?? (() => performance.now());
    this.cleanConntrack = opts.conntrack ?? true;
    this.planOpts = opts.dispatch ? { dispatch: opts.dispatch } : {};
    if (opts.session ?? opts.runner === undefined) this.session = new NftSession(this.netns !== undefined ? { netns: this.netns } : {});
  }

  /** The PID of the nft session's process while one runs (benchmarks read its CPU time). */
  get sessionPid(): number | undefined {
    return this.session?.pid;
  }

  /** Ends the nft session's process, if any (the agent calls it on shutdown). */
  close(): void {
    this.session?.close();
  }

  /** Whether the next sync will be a full one. */
  get needFullSync(): boolean {
    return this.needFull;
  }

  /** Makes the next sync a full one (drift repair on demand). */
  requestFullSync(): void {
    this.needFull = true;
  }

  private run(file: string, args: readonly string[], input?: string) {
    const opts: { netns?: string; input?: string } = {};
    if (this.netns !== undefined) opts.netns = this.netns;
    if (input !== undefined) opts.input = input;
    return this.runner(file, args, opts);
  }

  /**
   * Brings the table to the model: a full or partial transaction (see the module comment).
   * Calls are queued: a sync never overlaps another (their change tracking would).
   */
  sync(services: ServicePortMap, endpoints: EndpointsMap, node: NodeContext): Promise<SyncResult> {
    const next = this.queue.then(() => this.syncNow(services, endpoints, node));
    this.queue = next.catch(() => undefined);
    return next;
  }

  private async syncNow(services: ServicePortMap, endpoints: EndpointsMap, node: NodeContext): Promise<SyncResult> {
    const t0 = this.now();
    const problems: ProxyProblem[] = [];
    const nodeKey = JSON.stringify([node.name, node.clusterCIDR, node.family, node.ips]);
    const full = this.needFull || nodeKey !== this.nodeKey || t0 - this.lastFull >= this.interval || this.mirror === undefined;
    if (this.family !== node.family && this.mirror !== undefined) {
      problems.push({ code: 'PODNET_PROXY_FAMILY', message: `the proxy switched from IPv${this.family} to IPv${node.family}; the old table stays until removed` });
    }
    this.family = node.family;

    const snapshot = ServiceChangeTracker.snapshot(services, endpoints);
    const changes: ServiceChange[] = this.tracker.changes(snapshot);
    // Plans: every service port on a full sync, only the changed ones otherwise.
    const plans = new Map<string, ServicePlan | undefined>();
    if (full) for (const [key, s] of snapshot) plans.set(key, planService(s.service, s.endpoints, node, this.planOpts));
    else for (const ch of changes) plans.set(ch.key, ch.current ? planService(ch.current.service, ch.current.endpoints, node, this.planOpts) : undefined);
    let epCount = 0;
    for (const s of snapshot.values()) epCount += s.endpoints.length;
    const base = {
      mode: full ? ('full' as const) : ('partial' as const),
      services: snapshot.size,
      endpoints: epCount,
      changedServices: changes.length,
    };
    const t1 = this.now();

    let existing: { chains: string[]; sets: string[] } | undefined;
    if (full) {
      try {
        // Names only: `list chains` / `list sets` / `list maps` (terse) rather than `list
        // table`, which would also dump every rule and element (at 2,000 services × 25
        // endpoints: 0.3 s against 17 s).
        const family = nftFamily(node.family);
        const listing = await this.run('nft', ['-t', 'list', 'chains', family, ';', 'list', 'sets', family, ';', 'list', 'maps', family]);
        existing = parseTableNames(listing.stdout, tableName(node.family));
      } catch (err) {
        if (err instanceof CommandError && MISSING.test(err.stderr)) existing = { chains: [], sets: [] };
        else {
          this.needFull = true;
          problems.push({ code: 'PODNET_PROXY_READ_FAILED', message: `reading table ${tableName(node.family)}: ${describeError(err)}` });
          const now = this.now();
          return { ...base, applied: false, ok: false, counts: zeroCounts(), conntrack: { commands: 0, failed: 0 }, problems, timings: { planMs: t1 - t0, applyMs: now - t1, conntrackMs: 0, totalMs: now - t0 } };
        }
      }
    }
    const t2 = this.now();
    const mirror = full ? new NftTableMirror(node.family, node.clusterCIDR) : this.mirror!;
    const rendered: NftTransaction = full ? mirror.full(plans as Map<string, ServicePlan>, existing!) : mirror.partial(plans);
    for (const c of rendered.conflicts) problems.push({ code: 'PODNET_PROXY_CONFLICT', message: c });
    const t3 = this.now();
    let applied = false;
    if (rendered.script !== '') {
      try {
        if (!full && this.session && rendered.script.length <= SESSION_MAX_BYTES) await this.session.run(rendered.script);
        else await this.run('nft', ['-f', '-'], rendered.script);
        applied = true;
      } catch (err) {
        this.needFull = true;
        problems.push({ code: 'PODNET_PROXY_APPLY_FAILED', message: `nft -f (${full ? 'full' : 'partial'} sync, ${rendered.counts.lines} lines): ${describeError(err)}` });
        const now = this.now();
        return {
          ...base,
          applied: false,
          ok: false,
          counts: rendered.counts,
          conntrack: { commands: 0, failed: 0 },
          problems,
          timings: { planMs: t1 - t0 + (t3 - t2), applyMs: now - t3 + (t2 - t1), conntrackMs: 0, totalMs: now - t0 },
        };
      }
    }
    const t4 = this.now();
    rendered.commit();
    this.mirror = mirror;
    this.needFull = false;
    this.nodeKey = nodeKey;
    if (full) {
      this.lastFull = t0;
      this.session?.warm(nftFamily(node.family));
    }
    const conntrack = await afterWrite((f, a) => this.run(f, a), this.cleanConntrack && this.started, this.tracker, changes, snapshot, problems);
    this.started = true;
    const t5 = this.now();
    return {
      ...base,
      applied,
      ok: true,
      counts: rendered.counts,
      conntrack,
      problems,
      timings: { planMs: t1 - t0 + (t3 - t2), applyMs: t4 - t3 + (t2 - t1), conntrackMs: t5 - t4, totalMs: t5 - t0 },
    };
  }

  /** Deletes the proxy's table; the next sync is a full one. */
  remove(): Promise<ProxyProblem[]> {
    const next = this.queue.then(() => this.removeNow());
    this.queue = next.catch(() => undefined);
    return next;
  }

  private async removeNow(): Promise<ProxyProblem[]> {
    this.session?.close();
    const problems = await removeProxyTable({ ...(this.netns !== undefined ? { netns: this.netns } : {}), runner: this.runner, family: this.family });
    this.mirror = undefined;
    this.tracker.reset();
    this.needFull = true;
    this.started = false;
    return problems;
  }
}

/** Deletes `ip podnet-proxy` (or `ip6`) and nothing else; a missing table is fine. */
export async function removeProxyTable(opts: { netns?: string; runner?: Runner; family?: 4 | 6 } = {}): Promise<ProxyProblem[]> {
  const runner = opts.runner ?? defaultRun;
  try {
    await runner('nft', ['delete', 'table', ...tableName(opts.family ?? 4).split(' ')], opts.netns !== undefined ? { netns: opts.netns } : {});
    return [];
  } catch (err) {
    if (err instanceof CommandError && MISSING.test(err.stderr)) return [];
    return [{ code: 'PODNET_PROXY_REMOVE_FAILED', message: `nft delete table ${tableName(opts.family ?? 4)}: ${describeError(err)}` }];
  }
}

// ---------------------------------------------------------------------------------------
// iptables mode

export interface IptablesSyncResult {
  ok: boolean;
  services: number;
  endpoints: number;
  changedServices: number;
  counts: IptablesPlan['counts'] & { lines: number; jumpsAdded: number };
  conntrack: { commands: number; failed: number };
  problems: ProxyProblem[];
  timings: SyncTimings;
}

/**
 * The iptables executor: every sync is a full one (one `iptables-restore --noflush` of the
 * PODNET- chains), as kube-proxy's iptables mode was before partial syncs. The jumps from
 * the built-in chains are checked with `-C` and inserted with `-I` when missing.
 */
export class IptablesProxyDataplane {
  private readonly netns: string | undefined;
  private readonly runner: Runner;
  private readonly now: () => number;
  private readonly cleanConntrack: boolean;
  private readonly tracker = new ServiceChangeTracker();
  private started = false;
  private family: 4 | 6 = 4;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(opts: Omit<ProxyDataplaneOptions, 'fullSyncIntervalMs' | 'dispatch'> = {}) {
    this.netns = opts.netns;
    this.runner = opts.runner ?? defaultRun;
    this.now = opts.now ?? (() => performance.now());
    this.cleanConntrack = opts.conntrack ?? true;
  }

  private run(file: string, args: readonly string[], input?: string) {
    const opts: { netns?: string; input?: string } = {};
    if (this.netns !== undefined) opts.netns = this.netns;
    if (input !== undefined) opts.input = input;
    return this.runner(file, args, opts);
  }

  private tool(name: 'iptables' | 'iptables-save' | 'iptables-restore'): string {
    return this.family === 6 ? name.replace(/^ip/, 'ip6') : name;
  }

  private async chains(table: 'nat' | 'filter'): Promise<string[]> {
    return parseSaveChains((await this.run(this.tool('iptables-save'), ['-t', table])).stdout);
  }

  /** One full restore of the PODNET- chains; calls are queued, never overlapping. */
  sync(services: ServicePortMap, endpoints: EndpointsMap, node: NodeContext): Promise<IptablesSyncResult> {
    const next = this.queue.then(() => this.syncNow(services, endpoints, node));
    this.queue = next.catch(() => undefined);
    return next;
  }

  private async syncNow(services: ServicePortMap, endpoints: EndpointsMap, node: NodeContext): Promise<IptablesSyncResult> {
    const t0 = this.now();
    this.family = node.family;
    const problems: ProxyProblem[] = [];
    const snapshot = ServiceChangeTracker.snapshot(services, endpoints);
    const changes = this.tracker.changes(snapshot);
    let epCount = 0;
    for (const s of snapshot.values()) epCount += s.endpoints.length;
    const base = { services: snapshot.size, endpoints: epCount, changedServices: changes.length };
    const fail = (what: string, err: unknown, t1: number, plan?: IptablesPlan): IptablesSyncResult => {
      problems.push({ code: 'PODNET_PROXY_APPLY_FAILED', message: `${what}: ${describeError(err)}` });
      const now = this.now();
      return {
        ...base,
        ok: false,
        counts: { ...(plan?.counts ?? { chains: 0, rules: 0, staleChains: 0 }), lines: 0, jumpsAdded: 0 },
        conntrack: { commands: 0, failed: 0 },
        problems,
        timings: { planMs: t1 - t0, applyMs: now - t1, conntrackMs: 0, totalMs: now - t0 },
      };
    };
    let existing: { nat: string[]; filter: string[] };
    try {
      existing = { nat: await this.chains('nat'), filter: await this.chains('filter') };
    } catch (err) {
      return fail(this.tool('iptables-save'), err, this.now());
    }
    const tp = this.now();
    const plan = planIptables(services, endpoints, node, existing);
    const t1 = this.now();
    try {
      await this.run(this.tool('iptables-restore'), ['-w', '--noflush'], plan.restore);
    } catch (err) {
      return fail(`${this.tool('iptables-restore')} --noflush`, err, t1, plan);
    }
    let jumpsAdded = 0;
    for (const j of plan.jumps) {
      try {
        await this.run(this.tool('iptables'), ['-w', '-t', j.table, '-C', j.chain, ...j.rule]);
      } catch {
        try {
          await this.run(this.tool('iptables'), ['-w', '-t', j.table, '-I', j.chain, ...j.rule]);
          jumpsAdded++;
        } catch (err) {
          return fail(`${this.tool('iptables')} -t ${j.table} -I ${j.chain}`, err, t1, plan);
        }
      }
    }
    const t2 = this.now();
    const conntrack = await afterWrite((f, a) => this.run(f, a), this.cleanConntrack && this.started, this.tracker, changes, snapshot, problems);
    this.started = true;
    const t3 = this.now();
    return {
      ...base,
      ok: true,
      counts: { ...plan.counts, lines: plan.restore.split('\n').length - 1, jumpsAdded },
      conntrack,
      problems,
      timings: { planMs: t1 - tp, applyMs: t2 - t1 + (tp - t0), conntrackMs: t3 - t2, totalMs: t3 - t0 },
    };
  }

  /** Removes the jumps and every PODNET- chain of the nat and filter tables. */
  remove(): Promise<ProxyProblem[]> {
    const next = this.queue.then(() => this.removeNow());
    this.queue = next.catch(() => undefined);
    return next;
  }

  private async removeNow(): Promise<ProxyProblem[]> {
    const problems: ProxyProblem[] = [];
    try {
      for (const j of iptablesJumps()) {
        for (let i = 0; i < 10; i++) {
          try {
            await this.run(this.tool('iptables'), ['-w', '-t', j.table, '-D', j.chain, ...j.rule]);
          } catch {
            break;
          }
        }
      }
      const lines: string[] = [];
      for (const table of ['nat', 'filter'] as const) {
        const ours = (await this.chains(table)).filter((c) => c.startsWith(IPT_PREFIX));
        if (!ours.length) continue;
        lines.push(`*${table}`, ...ours.map((c) => `:${c} - [0:0]`), ...ours.map((c) => `-X ${c}`), 'COMMIT');
      }
      if (lines.length) await this.run(this.tool('iptables-restore'), ['-w', '--noflush'], lines.join('\n') + '\n');
    } catch (err) {
      problems.push({ code: 'PODNET_PROXY_REMOVE_FAILED', message: `removing the iptables rules: ${describeError(err)}` });
    }
    this.tracker.reset();
    this.started = false;
    return problems;
  }
}
