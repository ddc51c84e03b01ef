/**
 * The executor: the only code of the data plane that runs commands. One apply is
 *
 *   read     a handful of `-j` queries in parallel (underlay, podnet routes, VXLAN devices,
 *            neighbours, FDB, podnet's nft table: the masquerade and VXLAN notrack chains)
 *   plan     planNode: planDataplane and the VXLAN notrack chains (pure)
 *   diff     diffDataplane (pure)
 *   write    at most one `ip -force -batch -`, one `ethtool`, one `bridge -force -batch -`
 *            and one `nft -f -`, and only those that have lines
 *
 * so the periodic resync that repairs drift (a route someone deleted, an FDB entry lost with
 * a flapping link) costs a few reads and writes nothing when nothing changed. Batches run
 * with -force: one failing line (a peer the kernel refuses) must not keep the others out.
 * When a batch fails, the state is read again and the result counts only what really
 * changed; the failures are returned as values, never thrown, because the caller is a loop
 * that will simply try again at the next resync.
 *
 * The VXLAN device's TX checksum offload is set once per device per process (and again when
 * the device is made anew), following `vxlanTxChecksum` as decided for this kernel (vxlan.ts):
 * off means one `ethtool -K … tx off`; on means nothing for a device made now (the kernel's
 * default) and, for a device found at start-up, one `ethtool -k` read that turns offload back
 * on if an earlier run with `off` left it off.
 *
 * Problems of the plan (a peer behind a router, a bad lease record) are facts that stay true
 * from one resync to the next: `newErrors` holds only those the previous apply did not
 * report, so the daemon logs each once until it changes. Failed commands are always new.
 *
 * The agent runs inside the node's network namespace, so commands run without a namespace
 * option; tests pass `netns` (a path) and every command goes through nsenter.
 */
import { release } from 'node:os';
import { describe as describeError } from '../errors/index.ts';
import { CommandError, type Runner, run as defaultRun } from '../kernel/index.ts';
import { parsePrefix } from '../netaddr/index.ts';
import { type Changes, type Counts, type DeviceAction, type DiffOptions, type MasqAction, type NotrackAction, PODNET_RT_PROTO, diffDataplane } from './diff.ts';
import { EGRESS_CHAIN, EGRESS_TABLE, chainBody } from './masq.ts';
import { planDataplane } from './plan.ts';
import { checkSpec } from './spec.ts';
import { parseFdb, parseNeighs, parseRoutes, parseUnderlay, parseVxlanLinks } from './state.ts';
import type { Backend, DataplaneError, DataplaneSpec, DesiredState, KernelState, TxChecksumDecision, TxChecksumMode, Underlay } from './types.ts';
import { NOTRACK_CHAINS, decideTxChecksum, planVxlanNotrack, vxlanDeviceName } from './vxlan.ts';

export interface DataplaneOptions {
  /** Run every command in this network namespace (a path such as /var/run/netns/x); tests only. */
  netns?: string;
  /** The process runner (a recording fake in unit tests). */
  runner?: Runner;
  /** The route protocol number podnet's routes carry. */
  proto?: number;
  /** The ethtool program (tests point it at a missing one). */
  ethtool?: string;
  /** TX checksum offload on the VXLAN device (default auto: off only on kernels with the bug). */
  vxlanTxChecksum?: TxChecksumMode;
  /** The kernel release `auto` decides by (default: this kernel's, os.release()). */
  kernelRelease?: string;
}

export interface ApplyResult {
  backend: Backend;
  /** The MTU pods should use; write it into the subnet file and the conflist. */
  podMTU: number | undefined;
  device: DeviceAction;
  deletedDevices: string[];
  routes: Counts;
  neighs: Counts;
  fdb: Counts;
  masq: MasqAction;
  /** The VXLAN notrack chains (vxlan.ts). */
  notrack: NotrackAction;
  /** Unreachable or invalid peers, failed commands: what to count. */
  errors: DataplaneError[];
  /** The errors the previous apply did not report (a lasting plan problem once): what to log. */
  newErrors: DataplaneError[];
  /** Commands run to read state, and to change it. */
  reads: number;
  writes: number;
  /** Whether anything in the kernel changed. */
  changed: boolean;
}

const NO_SUCH_DEVICE = /does not exist|Cannot find device|No such device/;

function isMissingProgram(err: unknown): boolean {
  if (!(err instanceof CommandError)) return false;
  const cause = err.cause as { code?: unknown } | undefined;
  return cause?.code === 'ENOENT' || err.exitCode === 127 || /failed to execute .*No such file/.test(err.stderr);
}

/** The failed lines of a `-force -batch` run, paired with the kernel's reason. */
export function batchFailures(tool: string, lines: readonly string[], stderr: string): string[] {
  const out: string[] = [];
  let reason = '';
  for (const raw of stderr.split('\n')) {
    const l = raw.trim();
    if (!l) continue;
    const m = /^Command failed -:(\d+)$/.exec(l);
    if (m) {
      out.push(`"${lines[Number(m[1]) - 1] ?? `line ${m[1]}`}": ${reason || 'failed'}`);
      reason = '';
    } else {
      reason = reason ? `${reason}; ${l}` : l;
    }
  }
  if (reason) out.push(reason);
  return out.length ? out : [`${tool} -batch failed`];
}

/**
 * The chains of an `nft list table` answer, by name, each as its own lines from `chain NAME {`
 * to its closing brace (what masqMatches and notrackMatches compare, through chainBody).
 * Braces are counted outside quoted strings, so sets and comments in other chains of the
 * table cannot derail it.
 */
export function tableChains(listing: string): Map<string, string> {
  const chains = new Map<string, string>();
  let depth = 0;
  let name: string | undefined;
  let lines: string[] = [];
  for (const line of listing.split('\n')) {
    const start = depth === 1 ? /^\s*chain\s+"?([^"\s]+)"?\s*\{\s*$/.exec(line) : null;
    if (start) {
      name = start[1]!;
      lines = [];
    }
    if (name !== undefined) lines.push(line);
    const bare = line.replace(/"(?:[^"\\]|\\.)*"/g, '');
    for (const ch of bare) {
      if (ch === '{') depth++;
      else if (ch === '}') depth--;
    }
    if (name !== undefined && depth <= 1) {
      chains.set(name, lines.join('\n') + '\n');
      name = undefined;
    }
  }
  return chains;
}

/**
 * Pure: the whole desired data plane of a node: planDataplane's plan, with the VXLAN notrack
 * chains planned from its device and FDB entries (planVxlanNotrack).
 */
export function planNode(spec: DataplaneSpec, underlay: Underlay | undefined): DesiredState {
  const desired = planDataplane(spec, underlay);
  return { ...desired, notrack: planVxlanNotrack(desired.device, desired.fdb) };
}

/** The masquerade and notrack chains out of an `nft list table inet podnet` answer. */
function agentChains(table: string | undefined): Pick<KernelState, 'masq' | 'notrack'> {
  const chains = table === undefined ? new Map<string, string>() : tableChains(table);
  const notrack: Record<string, string> = {};
  for (const name of NOTRACK_CHAINS) {
    const c = chains.get(name);
    if (c !== undefined) notrack[name] = c;
  }
  return { masq: chains.get(EGRESS_CHAIN), notrack };
}

function sub(a: Counts, b: Counts): Counts {
  return { added: Math.max(0, a.added - b.added), changed: Math.max(0, a.changed - b.changed), removed: Math.max(0, a.removed - b.removed) };
}

export class Dataplane {
  private readonly netns: string | undefined;
  private readonly runner: Runner;
  private readonly proto: number;
  private readonly ethtool: string;
  /**
   * The masquerade and notrack scripts last written and the chains nft listed right after
   * (accepted as matching even if this nft version prints them differently from the plan).
   */
  private nftMemo: { masq: string | undefined; notrack: string | undefined; listed: Pick<KernelState, 'masq' | 'notrack'> } | undefined;
  /** VXLAN devices whose TX checksum offload this process has set as decided. */
  private readonly txDone = new Set<string>();
  /** The plan's problems the previous apply reported, as keys. */
  private reported = new Set<string>();
  /** TX checksum offload of the VXLAN device, as decided for this kernel. */
  readonly txChecksum: TxChecksumDecision;

  constructor(opts: DataplaneOptions = {}) {
    this.netns = opts.netns;
    this.runner = opts.runner ?? defaultRun;
    this.proto = opts.proto ?? PODNET_RT_PROTO;
    this.ethtool = opts.ethtool ?? 'ethtool';
    this.txChecksum = decideTxChecksum(opts.vxlanTxChecksum ?? 'auto', opts.kernelRelease ?? release());
  }

  private run(file: string, args: readonly string[], input?: string) {
    const opts: { netns?: string; input?: string } = {};
    if (this.netns !== undefined) opts.netns = this.netns;
    if (input !== undefined) opts.input = input;
    return this.runner(file, args, opts);
  }

  /** Like run, but a missing device/chain is an empty answer. */
  private async query(file: string, args: readonly string[]): Promise<string | undefined> {
    try {
      return (await this.run(file, args)).stdout;
    } catch (err) {
      if (err instanceof CommandError) return undefined;
      throw err;
    }
  }

  /**
   * Reads the kernel's side of the data plane: six queries, run side by side. podnet's nft
   * table is read whole (one `nft list table`, not one `nft list chain` per chain): it holds
   * only the agent's few chains (the service proxy has a table of its own).
   */
  async read(spec: Pick<DataplaneSpec, 'underlayIface' | 'vni' | 'clusterCIDR' | 'backend'>): Promise<KernelState & { reads: number }> {
    const family = parsePrefix(spec.clusterCIDR, false).ip.family === 6 ? '-6' : '-4';
    const dev = vxlanDeviceName(spec.vni ?? 1);
    const wantsVxlan = spec.backend === 'vxlan';
    const underlayP = this.run('ip', ['-j', 'addr', 'show', 'dev', spec.underlayIface]).then(
      (r) => parseUnderlay(r.stdout),
      (err: unknown) => {
        if (err instanceof CommandError && NO_SUCH_DEVICE.test(err.stderr)) return undefined;
        throw err;
      },
    );
    const [underlay, routes, links, neighs, fdb, table] = await Promise.all([
      underlayP,
      this.run('ip', ['-j', family, 'route', 'show', 'table', 'main', 'proto', String(this.proto)]).then((r) => parseRoutes(r.stdout)),
      this.run('ip', ['-d', '-j', 'addr', 'show', 'type', 'vxlan']).then((r) => parseVxlanLinks(r.stdout)),
      wantsVxlan ? this.query('ip', ['-j', 'neigh', 'show', 'dev', dev]) : Promise.resolve(undefined),
      wantsVxlan ? this.query('bridge', ['-j', 'fdb', 'show', 'dev', dev]) : Promise.resolve(undefined),
      this.query('nft', ['list', 'table', 'inet', EGRESS_TABLE]),
    ]);
    return {
      underlay,
      routes,
      devices: links,
      neighs: neighs === undefined ? [] : parseNeighs(neighs, dev),
      fdb: fdb === undefined ? [] : parseFdb(fdb, dev),
      ...agentChains(table),
      reads: wantsVxlan ? 6 : 4,
    };
  }

  /** Plans, diffs and applies; throws only SpecError (the node's own settings are invalid). */
  async apply(spec: DataplaneSpec): Promise<ApplyResult> {
    checkSpec(spec);
    let state: KernelState & { reads: number };
    try {
      state = await this.read(spec);
    } catch (err) {
      const empty = { added: 0, changed: 0, removed: 0 };
      const failed: DataplaneError = { code: 'PODNET_READ_FAILED', message: `reading the data plane failed, nothing was changed: ${describeError(err)}` };
      return {
        backend: spec.backend,
        podMTU: undefined,
        device: 'none',
        deletedDevices: [],
        routes: empty,
        neighs: { ...empty },
        fdb: { ...empty },
        masq: 'unchanged',
        notrack: 'unchanged',
        errors: [failed],
        newErrors: [failed],
        reads: 6,
        writes: 0,
        changed: false,
      };
    }
    const desired = planNode(spec, state.underlay);
    const changes = this.diff(desired, state);
    const errors = [...desired.errors];
    let reads = state.reads;
    let writes = 0;
    let failed = false;

    if (changes.ip.length) {
      writes++;
      try {
        await this.run('ip', ['-force', '-batch', '-'], changes.ip.join('\n') + '\n');
      } catch (err) {
        failed = true;
        errors.push(this.batchError('ip', changes.ip, err));
      }
    }
    if (changes.freshDevice) this.txDone.delete(changes.freshDevice);
    const dev = desired.device?.name;
    if (dev !== undefined && !this.txDone.has(dev)) {
      const t = await this.setTxChecksum(dev, changes.freshDevice === dev);
      reads += t.reads;
      writes += t.writes;
      if (t.error) errors.push(t.error);
    }
    if (changes.bridge.length) {
      writes++;
      try {
        await this.run('bridge', ['-force', '-batch', '-'], changes.bridge.join('\n') + '\n');
      } catch (err) {
        failed = true;
        errors.push(this.batchError('bridge', changes.bridge, err));
      }
    }
    let { masq, notrack } = changes;
    if (changes.nft !== undefined) {
      writes++;
      try {
        await this.run('nft', ['-f', '-'], changes.nft);
        if (desired.masq || desired.notrack) {
          reads++;
          const listed = agentChains(await this.query('nft', ['list', 'table', 'inet', EGRESS_TABLE]));
          this.nftMemo = { masq: desired.masq?.script, notrack: desired.notrack?.script, listed };
        } else {
          this.nftMemo = undefined;
        }
      } catch (err) {
        masq = 'unchanged';
        notrack = 'unchanged';
        errors.push({ code: 'PODNET_APPLY_FAILED', message: `nft: ${describeError(err)}` });
      }
    }

    let { routes, neighs, fdb, device } = changes;
    if (failed) {
      // Count only what really changed: what is still to do after the batch is not done.
      try {
        const after = await this.read(spec);
        reads += after.reads;
        const left = this.diff(planNode(spec, after.underlay), after);
        routes = sub(routes, left.routes);
        neighs = sub(neighs, left.neighs);
        fdb = sub(fdb, left.fdb);
        if (left.device === 'created' || left.device === 'recreated') device = 'unchanged';
      } catch {
        // The errors already say the batch failed.
      }
    }
    const total = (c: Counts) => c.added + c.changed + c.removed;
    // A plan problem is new when the previous apply did not report it in the same words.
    const key = (e: DataplaneError) => `${e.code}\u0000${e.peer ?? ''}\u0000${e.message}`;
    const planned = new Set(desired.errors.map(key));
    const newErrors = errors.filter((e) => !planned.has(key(e)) || !this.reported.has(key(e)));
    this.reported = planned;
    return {
      backend: spec.backend,
      podMTU: desired.podMTU,
      device,
      deletedDevices: changes.deletedDevices,
      routes,
      neighs,
      fdb,
      masq,
      notrack,
      errors,
      newErrors,
      reads,
      writes,
      changed:
        total(routes) + total(neighs) + total(fdb) > 0 ||
        (device !== 'unchanged' && device !== 'none') ||
        changes.deletedDevices.length > 0 ||
        masq === 'write' ||
        masq === 'remove' ||
        notrack === 'write' ||
        notrack === 'remove',
    };
  }

  /**
   * Sets the device's TX checksum offload as decided (see the header); `fresh`: the device was
   * made by this apply, so it has the kernel's default. Done once per device per process.
   */
  private async setTxChecksum(dev: string, fresh: boolean): Promise<{ reads: number; writes: number; error?: DataplaneError }> {
    const want = this.txChecksum.offload;
    let reads = 0;
    let writes = 0;
    try {
      if (want && !fresh) {
        reads++;
        const features = (await this.run(this.ethtool, ['-k', dev])).stdout;
        if (/^tx-checksumming: off/m.test(features)) {
          writes++;
          await this.run(this.ethtool, ['-K', dev, 'tx', 'on']);
        }
      } else if (!want) {
        writes++;
        await this.run(this.ethtool, ['-K', dev, 'tx', 'off']);
      }
      this.txDone.add(dev);
      return { reads, writes };
    } catch (err) {
      if (isMissingProgram(err) && want) {
        // Without ethtool nothing here can have turned offload off: the default stands.
        this.txDone.add(dev);
        return { reads, writes };
      }
      const error: DataplaneError = isMissingProgram(err)
        ? {
            code: 'PODNET_ETHTOOL_MISSING',
            message: `ethtool is not installed (install the ethtool package): TX checksum offload stays on for ${dev}, which should be off (${this.txChecksum.reason})`,
          }
        : { code: 'PODNET_APPLY_FAILED', message: `turning TX checksum offload ${want ? 'on' : 'off'} on ${dev}: ${describeError(err)}` };
      return { reads, writes, error };
    }
  }

  private diff(desired: DesiredState, state: KernelState): Changes {
    const memo = this.nftMemo;
    const opts: DiffOptions = { proto: this.proto };
    if (memo && desired.masq && memo.masq === desired.masq.script && memo.listed.masq !== undefined) opts.masqListing = memo.listed.masq;
    // Only a listing that has every planned chain: an empty one (the read after the write
    // failed) must not make missing chains look right.
    const listedAll = memo !== undefined && desired.notrack !== undefined && Object.keys(desired.notrack.chains).every((name) => memo.listed.notrack[name] !== undefined);
    if (memo && desired.notrack && memo.notrack === desired.notrack.script && listedAll) opts.notrackListing = memo.listed.notrack;
    return diffDataplane(desired, state, opts);
  }

  private batchError(tool: string, lines: readonly string[], err: unknown): DataplaneError {
    const stderr = err instanceof CommandError ? err.stderr : describeError(err);
    const fails = batchFailures(tool, lines, stderr);
    return { code: 'PODNET_APPLY_FAILED', message: `${tool} -batch: ${fails.length} of ${lines.length} commands failed: ${fails.join(' | ')}` };
  }

  /**
   * Removes everything podnet's data plane made: its VXLAN devices (with their neighbour and
   * FDB entries), its routes, its masquerade and VXLAN notrack chains (and the `inet podnet`
   * table when nothing else is left in it). Safe to repeat.
   */
  async teardown(): Promise<DataplaneError[]> {
    const errors: DataplaneError[] = [];
    const attempt = async (what: string, f: () => Promise<unknown>) => {
      try {
        await f();
      } catch (err) {
        errors.push({ code: 'PODNET_TEARDOWN_FAILED', message: `${what}: ${describeError(err)}` });
      }
    };
    await attempt('VXLAN devices', async () => {
      const links = parseVxlanLinks((await this.run('ip', ['-d', '-j', 'addr', 'show', 'type', 'vxlan'])).stdout);
      if (links.length) await this.run('ip', ['-force', '-batch', '-'], links.map((l) => `link del dev ${l.name}`).join('\n') + '\n');
    });
    for (const fam of ['-4', '-6']) {
      await attempt(`routes (${fam})`, () => this.run('ip', [fam, 'route', 'flush', 'table', 'main', 'proto', String(this.proto)]));
    }
    await attempt('masquerade and notrack chains', async () => {
      const listing = await this.query('nft', ['list', 'table', 'inet', EGRESS_TABLE]);
      if (listing === undefined) return;
      const chains = tableChains(listing);
      const ours = [EGRESS_CHAIN, ...NOTRACK_CHAINS].filter((name) => chains.has(name));
      if (ours.length) await this.run('nft', ['-f', '-'], ours.map((name) => `delete chain inet ${EGRESS_TABLE} ${name}\n`).join(''));
      const table = await this.query('nft', ['list', 'table', 'inet', EGRESS_TABLE]);
      if (table !== undefined && chainBody(table).length === 0) await this.run('nft', ['delete', 'table', 'inet', EGRESS_TABLE]);
    });
    this.nftMemo = undefined;
    this.txDone.clear();
    this.reported.clear();
    return errors;
  }
}

/** One apply with a fresh executor (no memory of earlier applies). */
export function applyDataplane(spec: DataplaneSpec, opts: DataplaneOptions = {}): Promise<ApplyResult> {
  return new Dataplane(opts).apply(spec);
}

