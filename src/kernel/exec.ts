/**
 * The one place podnet starts processes. Every command is an argument array handed to
 * execFile (never a shell), and every name that reaches one is checked first, so a pod
 * name or a config field can never become an option or a second command.
 */
import { execFile, spawn, type ExecFileException } from 'node:child_process';
import { PodnetError } from '../errors/index.ts';

export class CommandError extends PodnetError {
  override readonly name = 'CommandError';
  readonly command: readonly string[];
  readonly exitCode: number | null;
  readonly stderr: string;

  constructor(command: readonly string[], exitCode: number | null, stderr: string, cause?: unknown) {
    const text = stderr.trim().split('\n').slice(-3).join('; ') || `exit ${exitCode}`;
    super('PODNET_COMMAND_FAILED', `${command.join(' ')}: ${text}`, { cause });
    this.command = command;
    this.exitCode = exitCode;
    this.stderr = stderr;
  }
}

export interface RunOptions {
  /** Bytes for the command's standard input (for `ip -batch -` and `nft -f -`). */
  input?: string;
  /** Run inside the network namespace at this path (a bind mount or /proc/PID/ns/net). */
  netns?: string;
  signal?: AbortSignal;
  timeoutMs?: number;
}

export interface RunResult {
  stdout: string;
  stderr: string;
}

/** The external program runner; tests may substitute a recording fake. */
export type Runner = (file: string, args: readonly string[], opts?: RunOptions) => Promise<RunResult>;

export const run: Runner = (file, args, opts = {}) => {
  let argv = [file, ...args];
  if (opts.netns !== undefined) {
    assertPath(opts.netns, 'network namespace path');
    argv = ['nsenter', `--net=${opts.netns}`, '--', ...argv];
  }
  const [cmd, ...rest] = argv as [string, ...string[]];
  return new Promise((resolve, reject) => {
    const child = execFile(
      cmd,
      rest,
      { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, signal: opts.signal, timeout: opts.timeoutMs ?? 60_000 },
      (err: ExecFileException | null, stdout: string, stderr: string) => {
        if (err) {
          const exit = typeof err.code === 'number' ? err.code : null;
          reject(new CommandError(argv, exit, stderr || err.message, err));
        } else {
          resolve({ stdout, stderr });
        }
      },
    );
    // A command that exits before reading its input (a failed `ip route get`, a batch that
    // stops at its first error) closes the pipe: that EPIPE must not become an uncaught
    // exception; the exit status above already tells the story.
    child.stdin?.on('error', () => undefined);
    if (opts.input) child.stdin?.end(opts.input);
    else child.stdin?.end();
  });
};

/** A command started before its input is known; see start(). */
export interface StartedCommand {
  /** Sends the input, closes stdin and waits, settling as run() does. Call it exactly once. */
  finish(input: string): Promise<RunResult>;
}

/**
 * Starts a command now and gives it its input later: the process starts up (a few ms for
 * ip(8), mostly the dynamic loader) while the caller is busy with something else, as
 * `ip -batch -` waits for its lines. Every started command must be finished, with '' when
 * there turned out to be nothing to do, or it waits for input until its timeout.
 */
export function start(file: string, args: readonly string[], opts: { netns?: string; timeoutMs?: number } = {}): StartedCommand {
  let argv = [file, ...args];
  if (opts.netns !== undefined) {
    assertPath(opts.netns, 'network namespace path');
    argv = ['nsenter', `--net=${opts.netns}`, '--', ...argv];
  }
  const [cmd, ...rest] = argv as [string, ...string[]];
  const child = spawn(cmd, rest, { stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  // A command that fails before reading its input closes the pipe: its exit status says why.
  child.stdin?.on('error', () => undefined);
  const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
  const done = new Promise<RunResult>((resolve, reject) => {
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(new CommandError(argv, null, err.message, err));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve({ stdout, stderr });
      else reject(new CommandError(argv, code, stderr || `killed by ${signal}`));
    });
  });
  // Settled here too, so a command whose finish() is never awaited is no unhandled rejection.
  done.catch(() => undefined);
  return {
    finish(input) {
      child.stdin?.end(input);
      return done;
    },
  };
}

/** Kernel interface names: 1–15 bytes, none of / : whitespace, and not "." or "..". */
export function isValidIfName(name: string): boolean {
  return (
    typeof name === 'string' &&
    name.length > 0 &&
    Buffer.byteLength(name) <= 15 &&
    name !== '.' &&
    name !== '..' &&
    !/[/:\s]/.test(name) &&
    // A leading '-' would read as an option to ip(8).
    !name.startsWith('-')
  );
}

export function assertIfName(name: string, what = 'interface name'): void {
  if (!isValidIfName(name)) {
    throw new PodnetError('PODNET_BAD_NAME', `invalid ${what} "${name}": 1-15 characters, none of / : or spaces`);
  }
}

/** An absolute path without NUL bytes or newlines (those would break a batch line). */
export function assertPath(path: string, what = 'path'): void {
  if (typeof path !== 'string' || !path.startsWith('/') || /[\0\n\r]/.test(path)) {
    throw new PodnetError('PODNET_BAD_PATH', `invalid ${what} "${path}": it must be an absolute path`);
  }
}
