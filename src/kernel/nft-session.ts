/**
 * nft(8) transactions without a process start each: one long-running `nft -i` that takes one
 * transaction per input line. Measured with 10,000 services in the table, a two-line change
 * (one endpoint map key replaced) costs ~30 ms as `nft -f -` and ~10 ms here: every new nft
 * process fills its cache from the kernel (for an element command: every table, chain and
 * set), and closing its netlink socket can take another 10–20 ms; the session keeps both, and
 * nft only refreshes its cache when the ruleset's generation moved.
 *
 * A transaction stays one transaction: nft takes a whole input line as one batch, so the
 * session joins the script's commands with ` ; ` (they must not contain comments or
 * newlines of their own), and the kernel applies all or nothing, as with `nft -f -`.
 *
 * The end of a transaction: nft -i prints nothing on success, and errors on stderr. After
 * each transaction the session sends a line that cannot parse, `podnet-end-N`; nft answers it
 * with a syntax error that echoes the line, without asking the kernel anything. Whatever
 * stderr holds before that answer belongs to the transaction: an `Error:` there is its
 * failure. A process that dies or does not answer within the timeout is killed; the next
 * transaction starts a new one.
 *
 * Meant for the service proxy's small partial syncs; big ones (full syncs, tens of MB) go to
 * `nft -f -` as before.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { CommandError, type RunResult, assertPath } from './exec.ts';

interface Pending {
  marker: string;
  resolve: (r: RunResult) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

export interface NftSessionOptions {
  /** Run nft inside this network namespace (a path), through nsenter. */
  netns?: string;
  /** Per transaction; default 30 s. */
  timeoutMs?: number;
}

/** One line of commands: the script's lines joined with ` ; ` (the caller's script has no comments). */
export function joinTransaction(script: string): string {
  const lines = script.split('\n').map((l) => l.trim()).filter((l) => l !== '');
  for (const l of lines) if (l.startsWith('#')) throw new Error('nft session: comments cannot be joined into one line');
  return lines.join(' ; ');
}

/**
 * Splits what nft printed on stderr at the answer to `marker`: the text before it (the
 * transaction's own messages), and the rest after the answer, or undefined while the answer
 * is not complete yet.
 */
export function splitAtMarker(stderr: string, marker: string): { before: string; rest: string } | undefined {
  // The answer: `Error: syntax error, …` / the echoed marker line / a line of carets.
  const at = stderr.indexOf(`\n${marker}\n`);
  if (at < 0) return undefined;
  const caretEnd = stderr.indexOf('\n', at + marker.length + 2);
  if (caretEnd < 0) return undefined;
  const errorStart = stderr.lastIndexOf('Error:', at);
  const before = errorStart < 0 ? '' : stderr.slice(0, errorStart);
  return { before, rest: stderr.slice(caretEnd + 1) };
}

export class NftSession {
  private child: ChildProcess | undefined;
  private stderr = '';
  private pending: Pending | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private seq = 0;
  private readonly argv: readonly string[];
  private readonly timeoutMs: number;

  constructor(opts: NftSessionOptions = {}) {
    if (opts.netns !== undefined) assertPath(opts.netns, 'network namespace path');
    this.argv = opts.netns !== undefined ? ['nsenter', `--net=${opts.netns}`, '--', 'nft', '-i'] : ['nft', '-i'];
    this.timeoutMs = opts.timeoutMs ?? 30_000;
  }

  /** Applies one transaction (the text `nft -f -` would take); rejects with CommandError on failure. */
  run(script: string): Promise<RunResult> {
    let line: string;
    try {
      line = joinTransaction(script);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.queued(line);
  }

  /**
   * Starts nft if it is not running and has it read the ruleset's chains once, in the
   * background, so that the next transaction does not pay for the process start and a cold
   * cache (the proxy calls it after a full sync). Errors are ignored: run() reports its own.
   */
  warm(family: 'ip' | 'ip6'): void {
    void this.queued(`list chains ${family}`).catch(() => undefined);
  }

  /** Ends the nft process (it exits when its input ends); a later run() starts a new one. */
  close(): void {
    const child = this.child;
    this.child = undefined;
    child?.stdin?.end();
  }

  /** The nft process's PID while one runs (tests). */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  private spawnChild(): ChildProcess {
    const [cmd, ...args] = this.argv as [string, ...string[]];
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    this.stderr = '';
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', () => undefined);
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (d: string) => {
      if (this.child !== child) return;
      this.stderr += d;
      this.check();
    });
    child.stdin!.on('error', () => undefined);
    const gone = (why: string) => {
      if (this.child !== child) return;
      this.child = undefined;
      const p = this.pending;
      this.pending = undefined;
      if (p) {
        clearTimeout(p.timer);
        p.reject(new CommandError([...this.argv], child.exitCode, `${this.stderr}${why}`));
      }
    };
    child.on('error', (err) => gone(`nft -i: ${err.message}`));
    child.on('exit', (code, signal) => gone(`nft -i exited (${signal ?? code})`));
    // The session must not keep the agent (or a test) alive on its own.
    child.unref();
    for (const s of [child.stdin, child.stdout, child.stderr] as const) (s as unknown as { unref?: () => void } | null)?.unref?.();
    return child;
  }

  private check(): void {
    const p = this.pending;
    if (!p) return;
    const cut = splitAtMarker(this.stderr, p.marker);
    if (!cut) return;
    this.pending = undefined;
    clearTimeout(p.timer);
    this.stderr = cut.rest;
    if (/(^|\n)Error:/.test(cut.before)) p.reject(new CommandError([...this.argv], 1, cut.before));
    else p.resolve({ stdout: '', stderr: cut.before });
  }

  private queued(line: string): Promise<RunResult> {
    const next = this.queue.then(() => this.send(line));
    this.queue = next.catch(() => undefined);
    return next;
  }

  private send(line: string): Promise<RunResult> {
    if (line === '') return Promise.resolve({ stdout: '', stderr: '' });
    if (!this.child) this.child = this.spawnChild();
    const child = this.child;
    const marker = `podnet-end-${++this.seq}`;
    return new Promise<RunResult>((resolve, reject) => {
      const timer = setTimeout(() => {
        if (this.pending?.marker !== marker) return;
        this.pending = undefined;
        if (this.child === child) this.child = undefined;
        child.kill('SIGKILL');
        reject(new CommandError([...this.argv], null, `${this.stderr}no answer within ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      this.pending = { marker, resolve, reject, timer };
      child.stdin!.write(`${line}\n${marker}\n`);
    });
  }
}
