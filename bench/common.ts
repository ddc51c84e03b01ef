/**
 * Helpers shared by the lab-driven benchmarks (bench/dataplane.ts, bench/lab.ts): the machine
 * line, tables, statistics, replacing one "## NAME" section of BENCHMARKS.md, running the
 * podnet CLI, and the checks that a run left the host as it found it.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { availableParallelism, release } from 'node:os';
import { join } from 'node:path';
import { ROOT } from '../test/support/netns.ts';

export const BENCHMARKS_MD = join(ROOT, 'BENCHMARKS.md');
export const CLI = join(ROOT, 'dist', 'podnet.mjs');

export function sh(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return '?';
  }
}

export function machine(): { date: string; line: string } {
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  const model = /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1]?.trim() ?? 'unknown CPU';
  const nproc = sh('nproc', []);
  return {
    date: sh('date', ['-u']),
    line: `${nproc !== '?' ? nproc : availableParallelism()} CPUs (nproc), ${model}, Linux ${release()}, Node ${process.version}`,
  };
}

export function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

export function table(head: string[], rows: string[][], align: Array<'l' | 'r'>): { md: string; text: string } {
  const md = [
    `| ${head.join(' | ')} |`,
    `|${align.map((a) => (a === 'r' ? '---:' : ':---')).join('|')}|`,
    ...rows.map((r) => `| ${r.join(' | ')} |`),
  ].join('\n');
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string => cells.map((c, i) => (align[i] === 'r' ? c.padStart(widths[i] ?? 0) : c.padEnd(widths[i] ?? 0))).join('  ');
  const text = [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
  return { md, text };
}

const HEADER = `# Benchmarks

Measured figures for podnet, one \`## NAME\` section per benchmark. Run one with
\`npm run bench -- NAME\` (as root: it runs scripts/setup.sh first, which installs and builds what
is missing), or \`node scripts/bench.ts NAME\` with Node 24 (node_modules/.bin) first on PATH;
\`node scripts/bench.ts\` lists the benchmarks. A run prints its figures and replaces only its own
section below. Figures depend on the machine and on what else it is doing: compare ratios taken in
the same run rather than absolute numbers across machines.

`;

/** Replaces the "## NAME" section (up to the next "## " heading) or appends it; other sections stay as they are. */
export function updateSection(existing: string | undefined, name: string, section: string): string {
  if (existing === undefined || existing.trim() === '') return HEADER + section;
  const lines = existing.split('\n');
  const esc = name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const start = lines.findIndex((l) => new RegExp(`^## ${esc}\\s*$`).test(l));
  const body = section.replace(/\n+$/, '').split('\n');
  if (start < 0) return existing.replace(/\n*$/, '\n\n') + section.replace(/\n*$/, '\n');
  let end = lines.findIndex((l, i) => i > start && l.startsWith('## '));
  if (end < 0) end = lines.length;
  const after = lines.slice(end);
  return [...lines.slice(0, start), ...body, ...(after.length > 0 ? ['', ...after] : [''])].join('\n');
}

/** Writes `section` (starting with "## NAME") into BENCHMARKS.md, re-reading the file just before. */
export function writeSection(name: string, section: string): void {
  const existing = existsSync(BENCHMARKS_MD) ? readFileSync(BENCHMARKS_MD, 'utf8') : undefined;
  writeFileSync(BENCHMARKS_MD, updateSection(existing, name, section));
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs `podnet ARGS` (dist/podnet.mjs under this Node) and times it from spawn to exit. */
export function podnet(args: string[], opts: { timeoutMs?: number; input?: string; detached?: boolean } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['pipe', 'pipe', 'pipe'], detached: opts.detached ?? false });
    let stdout = '';
    let stderr = '';
    let ms = NaN;
    const timer = opts.timeoutMs
      ? setTimeout(() => {
          stderr += `\n(killed after ${opts.timeoutMs} ms)`;
          child.kill('SIGKILL');
        }, opts.timeoutMs)
      : undefined;
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('exit', () => (ms = performance.now() - t0));
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? (signal ? 128 : -1), stdout, stderr, ms });
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(opts.input ?? '');
  });
}

/** `podnet ARGS`, throwing with its output when it fails. */
export async function podnetOk(args: string[], opts: { timeoutMs?: number; input?: string } = {}): Promise<CliResult> {
  const r = await podnet(args, opts);
  if (r.code !== 0) throw new Error(`podnet ${args.join(' ')} failed (exit ${r.code}): ${(r.stderr.trim() || r.stdout.trim()).slice(-2000)}`);
  return r;
}

/** Which podnet was measured: the commit, whether the tree had changes, when dist was built. */
export function buildInfo(): string {
  const head = sh('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD']);
  const dirty = sh('git', ['-C', ROOT, 'status', '--porcelain', '--untracked-files=no']) !== '';
  let built = '?';
  try {
    built = statSync(CLI).mtime.toISOString().replace(/\.\d+Z$/, 'Z');
  } catch {
    // Not built.
  }
  return `podnet ${head}${dirty ? ' with uncommitted changes' : ''}, dist/podnet.mjs built ${built}`;
}

/** Fails unless dist/podnet.mjs and the plugins are built. */
export function requireBuild(): void {
  if (!existsSync(CLI) || !existsSync(join(ROOT, 'dist', 'cni-bin', 'podnet-bridge'))) {
    throw new Error('podnet is not built: run `node scripts/build.ts` (or `npm run bench -- NAME`, which builds)');
  }
}

/** What a run must leave unchanged in the root namespace: its links and its nftables tables. */
export function rootSnapshot(): string {
  const links = sh('ip', ['-br', 'link'])
    .split('\n')
    .map((l) => l.trim().split(/\s+/).slice(0, 1).concat(l.trim().split(/\s+/).slice(2)).join(' ')) // name + MAC/flags, not the state column
    .join('\n');
  return `links:\n${links}\nnft tables:\n${sh('nft', ['list', 'tables'])}`;
}

/** Namespaces whose name starts with `prefix`. */
export function namespacesWith(prefix: string): string[] {
  try {
    return readdirSync('/var/run/netns').filter((n) => n.startsWith(prefix));
  } catch {
    return [];
  }
}

/** A process by PID and start time (so a reused PID is not mistaken for it). */
export interface Proc {
  pid: number;
  start: string;
}

function startTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

/** Alive: the same process (PID and start time) and not a zombie waiting to be reaped. */
export function procAlive(p: Proc): boolean {
  if (startTime(p.pid) !== p.start) return false;
  try {
    const stat = readFileSync(`/proc/${p.pid}/stat`, 'utf8');
    return !/^[ZX]/.test(stat.slice(stat.lastIndexOf(')') + 2));
  } catch {
    return false;
  }
}

/**
 * Every process of a lab now: the daemons in its state file and whatever runs inside its
 * namespaces (pods' containers). Taken before `lab down`, checked after.
 */
export function labProcesses(lab: string): Proc[] {
  const pids = new Set<number>();
  try {
    const st = JSON.parse(readFileSync(`/run/podnet-lab/${lab}/state.json`, 'utf8')) as { daemons?: Array<{ pid: number }> };
    for (const d of st.daemons ?? []) pids.add(d.pid);
  } catch {
    // No state.
  }
  // What `ip netns pids` tells, for all the lab's namespaces in one pass over /proc.
  const inodes = new Set<number>();
  for (const ns of namespacesWith(`pnl.${lab}.`)) {
    try {
      inodes.add(statSync(`/var/run/netns/${ns}`).ino);
    } catch {
      // Gone meanwhile.
    }
  }
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      if (inodes.has(statSync(`/proc/${e}/ns/net`).ino)) pids.add(Number(e));
    } catch {
      // Gone, or a kernel thread.
    }
  }
  const out: Proc[] = [];
  for (const pid of pids) {
    const start = startTime(pid);
    if (start !== undefined) out.push({ pid, start });
  }
  return out;
}

/**
 * After a run: the labs' namespaces and state are gone, none of the processes they had (taken
 * with labProcesses before `lab down`) lives, and the root namespace is as it was.
 */
export async function checkClean(labs: string[], procs: Proc[], extraPrefixes: string[], before: string): Promise<{ ok: boolean; text: string }> {
  const problems: string[] = [];
  // Killed processes take a moment to go (a namespace's last process tears it down on exit).
  const t0 = performance.now();
  const lingering = procs.filter(procAlive).length;
  for (let i = 0; i < 50 && procs.some(procAlive); i++) await new Promise((r) => setTimeout(r, 100));
  const waited = performance.now() - t0;
  for (const lab of labs) {
    const ns = namespacesWith(`pnl.${lab}.`);
    if (ns.length > 0) problems.push(`lab ${lab}: ${ns.length} namespace(s) left (${ns.slice(0, 3).join(', ')}…)`);
    if (existsSync(`/run/podnet-lab/${lab}`)) problems.push(`lab ${lab}: state directory left`);
  }
  const alive = procs.filter(procAlive);
  if (alive.length > 0) problems.push(`${alive.length} lab process(es) still alive: ${alive.map((p) => p.pid).join(' ')}`);
  for (const p of extraPrefixes) {
    const ns = namespacesWith(p);
    if (ns.length > 0) problems.push(`${ns.length} namespace(s) ${p}* left`);
  }
  const after = rootSnapshot();
  if (after !== before) problems.push(`root namespace changed:\n--- before\n${before}\n--- after\n${after}`);
  return problems.length === 0
    ? {
        ok: true,
        text:
          `clean: no pnl.{${labs.join(',')}}.* namespaces or state left, none of the ${procs.length} lab processes alive` +
          `${lingering > 0 ? ` (${lingering} were still exiting when the check began, gone within ${waited.toFixed(0)} ms)` : ''}, root links and nft tables unchanged`,
      }
    : { ok: false, text: `NOT CLEAN: ${problems.join('; ')}` };
}

/** /proc/stat: busy and total jiffies over all CPUs. */
export function cpuJiffies(): { busy: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
  const xs = line.trim().split(/\s+/).slice(1).map(Number);
  const total = xs.slice(0, 8).reduce((a, b) => a + b, 0);
  const idle = (xs[3] ?? 0) + (xs[4] ?? 0);
  return { busy: total - idle, total };
}

/** How busy the machine is with other work: CPU share over `ms`, and the load average. */
export async function backgroundBusy(ms = 2000): Promise<{ share: number; load: string }> {
  const a = cpuJiffies();
  await new Promise((r) => setTimeout(r, ms));
  const b = cpuJiffies();
  return { share: (b.busy - a.busy) / Math.max(1, b.total - a.total), load: readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ') };
}

/**
 * Waits (up to `maxMs`) until the machine is quiet: less than `share` of its CPU busy over a
 * 3 s sample. Resolves to the last sample and how long it waited.
 */
export async function waitQuiet(maxMs: number, share = 0.25, log: (m: string) => void = () => undefined): Promise<{ share: number; load: string; waitedMs: number }> {
  const t0 = performance.now();
  for (;;) {
    const b = await backgroundBusy(3000);
    const waitedMs = performance.now() - t0;
    if (b.share < share || waitedMs >= maxMs) return { ...b, waitedMs };
    log(`machine ${(b.share * 100).toFixed(0)}% busy with other work; waiting for < ${(share * 100).toFixed(0)}%`);
  }
}
