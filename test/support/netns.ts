/**
 * Network namespaces for tests. Every namespace a test makes is named
 * `pnt-<pid>-<label>`, so a later run can tell its own leftovers from a crashed run's (the
 * pid is dead) and sweep them at start, and `cleanup()` removes everything in `finally`.
 * Nothing here touches the root namespace: commands run with `ip netns exec`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type PluginRun, type RunResult, isAlive, run, runPluginIn } from '../../src/kernel/index.ts';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const CNI_BIN = join(ROOT, 'dist', 'cni-bin');
export const REF_BIN = '/usr/lib/cni';
export const PREFIX = 'pnt-';

export function isRoot(): boolean {
  return process.getuid?.() === 0;
}

/** Deletes test namespaces whose creating process is gone (a crashed or killed run). */
export async function sweepLeftovers(): Promise<void> {
  let names: string[] = [];
  try {
    names = readdirSync('/var/run/netns');
  } catch {
    return;
  }
  for (const name of names) {
    const m = /^pnt-(\d+)-/.exec(name);
    if (!m || isAlive(Number(m[1]))) continue;
    await killNamespacePids(name);
    await run('ip', ['netns', 'del', name]).catch(() => undefined);
  }
}

async function killNamespacePids(name: string): Promise<void> {
  const { stdout } = await run('ip', ['netns', 'pids', name]).catch(() => ({ stdout: '' }));
  for (const pid of stdout.split(/\s+/).filter(Boolean)) {
    try {
      process.kill(Number(pid), 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
}

export class Netns {
  readonly name: string;
  readonly path: string;

  constructor(name: string) {
    this.name = name;
    this.path = `/var/run/netns/${name}`;
  }

  /** Runs a command inside this namespace. */
  exec(cmd: string, args: readonly string[] = [], opts: { input?: string; env?: Record<string, string>; timeoutMs?: number } = {}): Promise<RunResult> {
    const envArgs = opts.env ? ['env', ...Object.entries(opts.env).map(([k, v]) => `${k}=${v}`)] : [];
    return run('ip', ['netns', 'exec', this.name, ...envArgs, cmd, ...args], { input: opts.input ?? '', timeoutMs: opts.timeoutMs ?? 30_000 });
  }

  spawn(cmd: string, args: readonly string[] = []): ChildProcess {
    return spawn('ip', ['netns', 'exec', this.name, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  }
}

/** A test's namespaces and temporary directories, removed by `cleanup()`. */
export class TestBed {
  readonly id: string;
  readonly dir: string;
  private readonly namespaces: Netns[] = [];
  private readonly children: ChildProcess[] = [];

  constructor(label: string) {
    this.id = `${PREFIX}${process.pid}-${label}`;
    this.dir = mkdtempSync(join(tmpdir(), `${this.id}-`));
  }

  async netns(label: string): Promise<Netns> {
    const ns = new Netns(`${this.id}-${label}`);
    await run('ip', ['netns', 'add', ns.name]);
    this.namespaces.push(ns);
    await ns.exec('ip', ['link', 'set', 'lo', 'up']);
    return ns;
  }

  track(child: ChildProcess): ChildProcess {
    this.children.push(child);
    return child;
  }

  async cleanup(): Promise<void> {
    for (const c of this.children) if (c.exitCode === null) c.kill('SIGKILL');
    for (const ns of this.namespaces.reverse()) {
      await killNamespacePids(ns.name);
      await run('ip', ['netns', 'del', ns.name]).catch(() => undefined);
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export interface CniCall {
  command: string;
  containerId?: string;
  netns?: string;
  ifName?: string;
  path?: string;
  args?: string;
  /** Extra or overriding environment. */
  env?: Record<string, string>;
}

export type CniOutcome = PluginRun;

/** Runs a CNI plugin inside `node` exactly as a runtime does: env in, config on stdin. */
export function runPlugin(node: Netns, plugin: string, call: CniCall, stdin: string | object): Promise<CniOutcome> {
  const env: Record<string, string> = { CNI_COMMAND: call.command, PATH: process.env.PATH ?? '/usr/bin:/bin:/usr/sbin:/sbin' };
  if (call.containerId !== undefined) env.CNI_CONTAINERID = call.containerId;
  if (call.netns !== undefined) env.CNI_NETNS = call.netns;
  if (call.ifName !== undefined) env.CNI_IFNAME = call.ifName;
  env.CNI_PATH = call.path ?? `${CNI_BIN}:${REF_BIN}`;
  if (call.args !== undefined) env.CNI_ARGS = call.args;
  Object.assign(env, call.env ?? {});
  return runPluginIn(node.name, plugin, env, typeof stdin === 'string' ? stdin : JSON.stringify(stdin));
}

/** Sends a line over TCP from one namespace to an address served in another; returns what arrived. */
export async function tcpExchange(from: Netns, to: Netns, ip: string, port: number, message = 'hello'): Promise<string> {
  const server = spawn('ip', ['netns', 'exec', to.name, 'timeout', '10', 'nc', '-l', String(port)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let got = '';
  server.stdout.on('data', (d) => (got += d));
  const done = new Promise<void>((r) => server.on('close', () => r()));
  const target = ip.includes(':') ? `[${ip}]` : ip;
  void target;
  // The listener needs a moment to bind; the client retries rather than sleeping blindly.
  let sent = false;
  for (let i = 0; i < 50 && !sent; i++) {
    try {
      await from.exec('nc', ['-N', '-w', '2', ip, String(port)], { input: message + '\n', timeoutMs: 5000 });
      sent = true;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  await Promise.race([done, new Promise((r) => setTimeout(r, 3000))]);
  if (server.exitCode === null) server.kill('SIGKILL');
  return got.trim();
}

/** Links in a namespace, by name. */
export async function links(ns: Netns): Promise<string[]> {
  const { stdout } = await ns.exec('ip', ['-j', 'link', 'show']);
  return (JSON.parse(stdout) as Array<{ ifname: string }>).map((l) => l.ifname);
}

/** Lease files of a network in a host-local style data directory. */
export function leases(dataDir: string, network: string): string[] {
  const dir = join(dataDir, network);
  if (!existsSync(dir)) return [];
  return readdirSync(dir).filter((n) => /^[0-9a-f.:]+$/.test(n) && (n.includes('.') || n.includes(':')));
}
