/**
 * Driving `podnet lab` from tests the way a user does: every step is the real CLI
 * (dist/podnet.mjs) run as a child process, and what the test asserts is what the CLI
 * prints, what `lab get -o json` says, and what the lab's namespaces show.
 *
 * A `Lab` remembers its name; `down()` is safe to call any number of times (the test's
 * `after` always calls it). `leftovers()` says what a lab left behind after `down`.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './netns.ts';

export { ROOT, isRoot } from './netns.ts';

export const CLI = join(ROOT, 'dist', 'podnet.mjs');
export const STATE_ROOT = '/run/podnet-lab';

export interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `podnet ARGS…`; resolves with the exit code and output (never rejects on a non-zero exit). */
export function podnet(args: string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<Result> {
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [CLI, ...args], { timeout: opts.timeoutMs ?? 120_000, maxBuffer: 16 << 20, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) + (err && typeof err.code !== 'number' ? `\n[${err.message}]` : '') });
    });
    child.stdin?.end(opts.input ?? '');
  });
}

export class CliError extends Error {}

function check(args: string[], r: Result): Result {
  if (r.code !== 0) throw new CliError(`podnet ${args.join(' ')} exited ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `fn` until it returns a truthy value; throws with `what` (and the last value) on timeout. */
export async function eventually<T>(what: string, fn: () => Promise<T> | T, timeoutMs = 10_000, intervalMs = 250): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      last = await fn();
      if (last) return last as T;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs / 1000}s (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
    await sleep(intervalMs);
  }
}

/** Runs `fn` over `items`, at most `n` at a time. */
export async function pool<T, R>(items: T[], n: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(n, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i] as T);
      }
    }),
  );
  return out;
}

export interface PodInfo {
  name: string;
  namespace: string;
  uid: string;
  node: string;
  ip: string;
  ready: boolean;
  phase: string;
}

export interface NodeInfo {
  name: string;
  ready: boolean;
  ip: string;
  podCIDR: string;
}

export interface DaemonRecord {
  role: string;
  netns: string;
  pid: number;
  log: string;
  argv?: string[];
}

/** A lab named `name`, driven through the CLI. */
export class Lab {
  readonly name: string;

  constructor(name: string) {
    this.name = name;
  }

  get dir(): string {
    return join(STATE_ROOT, this.name);
  }

  /** `podnet lab SUB --name NAME REST…` (the name goes before any `--`). */
  run(sub: string, rest: string[] = [], opts: { input?: string; timeoutMs?: number } = {}): Promise<Result> {
    return podnet(['lab', sub, '--name', this.name, ...rest], opts);
  }

  /** Like run(), but a non-zero exit throws with the output. */
  async must(sub: string, rest: string[] = [], opts: { input?: string; timeoutMs?: number } = {}): Promise<Result> {
    return check(['lab', sub, '--name', this.name, ...rest], await this.run(sub, rest, opts));
  }

  async up(opts: { nodes?: number; backend?: 'vxlan' | 'host-gw'; topology?: 'flat' | 'routed' } = {}): Promise<Result> {
    const args: string[] = [];
    if (opts.nodes !== undefined) args.push('--nodes', String(opts.nodes));
    if (opts.backend) args.push('--backend', opts.backend);
    if (opts.topology) args.push('--topology', opts.topology);
    return this.must('up', args);
  }

  down(): Promise<Result> {
    return this.run('down');
  }

  apply(yaml: string, wait = 60): Promise<Result> {
    return this.run('apply', ['-f', '-', '--wait', String(wait)], { input: yaml, timeoutMs: (wait + 30) * 1000 });
  }

  delete(yaml: string): Promise<Result> {
    return this.run('delete', ['-f', '-'], { input: yaml });
  }

  /** `lab exec TARGET -- CMD…`: TARGET is a pod name, `node/NODE` or `ext`. */
  exec(target: string, cmd: string[], opts: { namespace?: string; timeoutMs?: number } = {}): Promise<Result> {
    const ns = opts.namespace ? ['-n', opts.namespace] : [];
    return this.run('exec', [...ns, target, '--', ...cmd], opts.timeoutMs ? { timeoutMs: opts.timeoutMs } : {});
  }

  /** Starts `lab exec TARGET -- CMD…` in the background; its output is collected. */
  spawnExec(target: string, cmd: string[]): { child: ChildProcess; output: () => string; done: Promise<number> } {
    const child = spawn(process.execPath, [CLI, 'lab', 'exec', '--name', this.name, target, '--', ...cmd], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout!.on('data', (d) => (out += d));
    child.stderr!.on('data', (d) => (out += d));
    const done = new Promise<number>((resolve) => child.on('close', (code) => resolve(code ?? 1)));
    return { child, output: () => out, done };
  }

  async getJson(resource: string, opts: { namespace?: string; all?: boolean } = {}): Promise<any[]> {
    const args = [resource, '-o', 'json'];
    if (opts.all) args.push('-A');
    else if (opts.namespace) args.push('-n', opts.namespace);
    const r = await this.must('get', args);
    return (JSON.parse(r.stdout) as { items: any[] }).items;
  }

  async pods(opts: { namespace?: string; all?: boolean } = {}): Promise<PodInfo[]> {
    return (await this.getJson('pods', opts)).map((p) => ({
      name: p.metadata.name,
      namespace: p.metadata.namespace,
      uid: p.metadata.uid,
      node: p.spec?.nodeName ?? '',
      ip: p.status?.podIP ?? '',
      ready: p.status?.conditions?.some((c: any) => c.type === 'Ready' && c.status === 'True') ?? false,
      phase: p.status?.phase ?? 'Pending',
    }));
  }

  async pod(name: string): Promise<PodInfo> {
    const p = (await this.pods()).find((x) => x.name === name);
    if (!p) throw new Error(`pod ${name} not in \`lab get pods\``);
    return p;
  }

  /** Several pods by name, in that order (each must exist). */
  async podsNamed<const N extends readonly string[]>(...names: N): Promise<{ [K in keyof N]: PodInfo }> {
    const pods = await this.pods();
    return names.map((n) => {
      const p = pods.find((x) => x.name === n);
      if (!p) throw new Error(`pod ${n} not in \`lab get pods\``);
      return p;
    }) as { [K in keyof N]: PodInfo };
  }

  async nodes(): Promise<NodeInfo[]> {
    return (await this.getJson('nodes')).map((n) => ({
      name: n.metadata.name,
      ready: n.status?.conditions?.some((c: any) => c.type === 'Ready' && c.status === 'True') ?? false,
      ip: n.status?.addresses?.find((a: any) => a.type === 'InternalIP')?.address ?? '',
      podCIDR: n.spec?.podCIDR ?? '',
    }));
  }

  /** The lab's state file (daemons and their PIDs). */
  state(): { daemons: DaemonRecord[] } {
    return JSON.parse(readFileSync(join(this.dir, 'state.json'), 'utf8'));
  }

  daemon(role: string): DaemonRecord {
    const d = this.state().daemons.find((x) => x.role === role);
    if (!d) throw new Error(`no daemon ${role} in ${this.dir}/state.json`);
    return d;
  }

  log(file: string): string {
    const p = join(this.dir, 'logs', file);
    return existsSync(p) ? readFileSync(p, 'utf8') : '';
  }

  /** The pod's sandbox namespace (as the lab runtime names it). */
  podNetns(uid: string): string {
    return `pnl.${this.name}.p.${uid.slice(0, 13)}`;
  }

  namespaces(): string[] {
    return existsSync('/var/run/netns') ? readdirSync('/var/run/netns').filter((n) => n.startsWith(`pnl.${this.name}.`)) : [];
  }

  /** Every PID the lab has now: its daemons and whatever runs in its namespaces. */
  async pids(): Promise<number[]> {
    const out = new Set<number>();
    try {
      for (const d of this.state().daemons) out.add(d.pid);
    } catch {
      // No state file.
    }
    for (const ns of this.namespaces()) {
      const r = await new Promise<string>((resolve) => execFile('ip', ['netns', 'pids', ns], (_e, stdout) => resolve(String(stdout ?? ''))));
      for (const p of r.split(/\s+/).filter(Boolean)) out.add(Number(p));
    }
    return [...out];
  }

  /** What the lab left behind (empty when `down` cleaned up): namespaces, files, processes. */
  leftovers(pidsBefore: number[]): string[] {
    const problems: string[] = [];
    const ns = this.namespaces();
    if (ns.length > 0) problems.push(`namespaces: ${ns.join(', ')}`);
    if (existsSync(this.dir)) problems.push(`state directory ${this.dir}`);
    const etc = existsSync('/etc/netns') ? readdirSync('/etc/netns').filter((n) => n.startsWith(`pnl.${this.name}.`)) : [];
    if (etc.length > 0) problems.push(`/etc/netns entries: ${etc.join(', ')}`);
    const alive = pidsBefore.filter(isLive);
    if (alive.length > 0) problems.push(`processes still running: ${alive.map(describePid).join('; ')}`);
    // Anything else that names the lab on its command line.
    const marks = [`${this.dir}/`, `pnl.${this.name}.`];
    for (const p of readdirSync('/proc').filter((x) => /^\d+$/.test(x))) {
      const pid = Number(p);
      if (pid === process.pid || !isLive(pid)) continue;
      let cmd = '';
      try {
        cmd = readFileSync(`/proc/${p}/cmdline`, 'utf8').replaceAll('\0', ' ');
      } catch {
        continue;
      }
      if (marks.some((m) => cmd.includes(m)) || new RegExp(`--lab ${this.name}( |$)`).test(cmd)) problems.push(`process ${describePid(pid)}`);
    }
    return problems;
  }
}

/** Alive and not a zombie. */
export function isLive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^\d+ \(.*\) [ZX] /s.test(stat);
  } catch {
    return false;
  }
}

function describePid(pid: number): string {
  try {
    return `${pid} (${readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ').trim().slice(0, 120)})`;
  } catch {
    return String(pid);
  }
}

/** A pod pinned to a node: the built-in echo server (ready once it answers) or a client that sleeps. */
export function podYaml(name: string, node: string, kind: 'echo' | 'client', extra: { command?: string[] } = {}): string {
  if (kind === 'echo') {
    return `apiVersion: v1
kind: Pod
metadata:
  name: ${name}
  labels: {app: echo}
spec:
  nodeName: ${node}
  containers:
  - name: echo
    image: podnet/echo
    ports: [{containerPort: 8080}]
    readinessProbe: {httpGet: {port: 8080, path: /}, periodSeconds: 1}
`;
  }
  return `apiVersion: v1
kind: Pod
metadata:
  name: ${name}
spec:
  nodeName: ${node}
  containers:
  - name: main
    image: busybox
    command: ${JSON.stringify(extra.command ?? ['sleep', 'infinity'])}
`;
}

export const docs = (...parts: string[]): string => parts.join('---\n');

export interface Http {
  code: number;
  body: any;
  raw: string;
}

/** `curl` from a pod, a node or the external host; the body is parsed as JSON when it is. */
export async function curl(lab: Lab, from: string, url: string, timeoutS = 3): Promise<Http> {
  const r = await lab.exec(from, ['curl', '-sS', '-m', String(timeoutS), '-w', '\n%{http_code}', url], { timeoutMs: (timeoutS + 15) * 1000 });
  const lines = r.stdout.trimEnd().split('\n');
  const code = Number(lines.pop() ?? 0);
  const raw = lines.join('\n');
  let body: any = raw;
  try {
    body = JSON.parse(raw);
  } catch {
    // Not JSON.
  }
  return { code: r.code === 0 ? code : 0, body, raw: raw + (r.code === 0 ? '' : ` [exit ${r.code}: ${r.stderr.trim()}]`) };
}
