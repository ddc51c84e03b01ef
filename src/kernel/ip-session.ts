/**
 * ip(8) batches without a process start each: a few long-running `ip -j -batch -` processes,
 * each running batches one after the other, for a process that makes many of them (podnet
 * cni-server). Starting ip(8) costs a fork of the calling Node process and the dynamic
 * loading of ip's libraries, a few ms of CPU per call, which is most of what a warm CNI call
 * costs. More than one process, because some batches wait long in the kernel (deleting a veth
 * waits for an RCU grace period, ~15 ms) and concurrent calls should not queue behind them:
 * a burst starts up to `size` processes, and up to `keep` of them stay for the next calls.
 *
 * A batch behaves as if it had its own `ip -j -batch -` process: its lines run in order; the
 * first line that fails stops it (ip exits, as without -force; the next batch starts a new
 * process) and the error says `Command failed -:N` with N counted from the batch's own first
 * line. After the batch's lines the session sends `link show dev lo`, whose one-line output
 * (lo exists in every namespace) marks the end of the batch on stdout; batches therefore must
 * not show lo themselves.
 *
 * Whoever wants this for the node-side batches of the plugins installs a session with
 * useIpSession(); startIpBatch() then runs on it, and otherwise in a process of its own.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { CommandError, type RunResult, type StartedCommand, start } from './exec.ts';

const ARGV = ['ip', '-j', '-batch', '-'] as const;

interface Pending {
  lines: number;
  stdout: string;
  stderr: string;
  resolve: (r: RunResult) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

interface Proc {
  child: ChildProcess;
  /** Lines this process has been given so far (for renumbering its errors per batch). */
  base: number;
  /** stdout not yet split into lines. */
  partial: string;
  current: Pending | undefined;
}

/** True for the output line of the end marker, `link show dev lo` under -j. */
function isMarker(line: string): boolean {
  if (!line.startsWith('[{')) return false;
  try {
    const v = JSON.parse(line) as Array<{ ifname?: unknown; link_type?: unknown; addr_info?: unknown }>;
    return v.length === 1 && v[0]?.ifname === 'lo' && v[0]?.link_type === 'loopback' && v[0]?.addr_info === undefined;
  } catch {
    return false;
  }
}

export class IpSession {
  /** Processes waiting for a batch. */
  private idle: Proc[] = [];
  /** Processes alive, idle or busy. */
  private readonly live = new Set<Proc>();
  /** Batches waiting for a process, when all `size` are busy. */
  private waiting: Array<() => void> = [];
  private running = new Set<Promise<unknown>>();
  private closed = false;
  private readonly size: number;
  private readonly keep: number;
  private readonly timeoutMs: number;

  constructor(opts: { size?: number; keep?: number; timeoutMs?: number } = {}) {
    this.size = opts.size ?? 16;
    this.keep = Math.min(opts.keep ?? 4, this.size);
    this.timeoutMs = opts.timeoutMs ?? 60_000;
  }

  /** Runs one batch on an idle process (started if need be); settles as `ip -j -batch -` would. */
  run(lines: readonly string[]): Promise<RunResult> {
    if (this.closed) return Promise.reject(new Error('the ip session is closed'));
    if (lines.some((l) => /\n/.test(l) || /(^|\s)lo(\s|$)/.test(l))) {
      return Promise.reject(new Error('an ip session batch line must be one line and must not name lo (the end marker)'));
    }
    if (lines.length === 0) return Promise.resolve({ stdout: '', stderr: '' });
    const call = this.acquire().then((p) => this.runOn(p, lines));
    const tracked = call.catch(() => undefined).finally(() => this.running.delete(tracked));
    this.running.add(tracked);
    return call;
  }

  /** Waits for the batches in progress, then ends the processes; later run() calls fail. */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.running]);
    await Promise.all(
      [...this.live].map(async (p) => {
        const exited = new Promise((resolve) => p.child.once('close', resolve));
        p.child.stdin?.end();
        const timer = setTimeout(() => p.child.kill('SIGKILL'), 5_000);
        await exited;
        clearTimeout(timer);
      }),
    );
  }

  private async acquire(): Promise<Proc> {
    for (;;) {
      const p = this.idle.pop();
      if (p && this.live.has(p)) return p;
      if (p) continue; // Died while idle.
      if (this.live.size < this.size) return this.spawn();
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    }
  }

  private release(p: Proc): void {
    const next = this.waiting.shift();
    if (this.live.has(p)) {
      // A waiting batch takes it; otherwise it stays if few others do, or ends.
      if (next || this.idle.length < this.keep) this.idle.push(p);
      else p.child.stdin?.end();
    }
    next?.();
  }

  private runOn(p: Proc, lines: readonly string[]): Promise<RunResult> {
    const done = new Promise<RunResult>((resolve, reject) => {
      const timer = setTimeout(() => p.child.kill('SIGKILL'), this.timeoutMs);
      p.current = { lines: lines.length, stdout: '', stderr: '', resolve, reject, timer };
      p.child.stdin?.write(`${lines.join('\n')}\nlink show dev lo\n`);
    });
    return done.finally(() => this.release(p));
  }

  private spawn(): Proc {
    const [cmd, ...args] = ARGV;
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const p: Proc = { child, base: 0, partial: '', current: undefined };
    this.live.add(p);
    child.stdin?.on('error', () => undefined); // ip gone: 'close' below reports it.
    child.stderr?.setEncoding('utf8').on('data', (d: string) => {
      if (p.current) p.current.stderr += d;
    });
    child.stdout?.setEncoding('utf8').on('data', (d: string) => {
      p.partial += d;
      let nl: number;
      while ((nl = p.partial.indexOf('\n')) >= 0) {
        const line = p.partial.slice(0, nl);
        p.partial = p.partial.slice(nl + 1);
        const cur = p.current;
        if (!cur) continue;
        if (!isMarker(line)) {
          cur.stdout += `${line}\n`;
          continue;
        }
        p.base += cur.lines + 1;
        p.current = undefined;
        clearTimeout(cur.timer);
        cur.resolve({ stdout: cur.stdout, stderr: cur.stderr });
      }
    });
    const gone = (code: number | null, why: string): void => {
      if (this.live.delete(p)) this.waiting.shift()?.(); // Room for another process.
      const cur = p.current;
      p.current = undefined;
      if (!cur) return;
      clearTimeout(cur.timer);
      // Line numbers as a process of its own would have counted them.
      const stderr = cur.stderr.replace(/Command failed -:(\d+)/g, (_, n: string) => `Command failed -:${Number(n) - p.base}`);
      cur.reject(new CommandError([...ARGV], code, stderr || why));
    };
    child.on('error', (err) => gone(null, err.message));
    child.on('close', (code, signal) => gone(code, signal ? `killed by ${signal}` : `exit ${code}`));
    return p;
  }
}

let shared: IpSession | undefined;

/**
 * Makes startIpBatch() run on `session` until the returned function is called. For a process
 * that serves many calls (podnet cni-server); one-shot plugin processes never install one.
 */
export function useIpSession(session: IpSession): () => void {
  shared = session;
  return () => {
    if (shared === session) shared = undefined;
  };
}

/**
 * Starts an `ip -j -batch -` in this process's network namespace for lines given later: on
 * the installed session if there is one, else in a process of its own started right away (so
 * that its start-up overlaps whatever the caller does before finish()).
 */
export function startIpBatch(): StartedCommand {
  const session = shared;
  if (session) return { finish: (input) => session.run(input.split('\n').filter((l) => l !== '')) };
  return start('ip', ['-j', '-batch', '-']);
}
