/** Processes: liveness by PID, and running a CNI plugin the way a runtime does. */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';

/**
 * True while a process with this PID runs (signal 0 checks without sending anything). A
 * zombie does not count: it has exited and only waits for its parent (often an init that
 * reaps lazily) to collect its status, so waiting for it to go away only wastes time.
 */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return !/^\d+ \(.*\) [ZX] /s.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch (err) {
    // Gone meanwhile; or no /proc, and then signal 0 is all we know.
    return (err as NodeJS.ErrnoException).code !== 'ENOENT' || existsSync('/proc/self/stat') === false;
  }
}

export interface PluginRun {
  code: number;
  stdout: string;
  stderr: string;
  /** stdout parsed as JSON, when it is. */
  json: any;
}

/**
 * Starts `plugin` inside the named network namespace with `env` (CNI_* variables) and
 * `stdin` (the config), and collects what it prints.
 */
export function runPluginIn(netnsName: string, plugin: string, env: Record<string, string>, stdin: string): Promise<PluginRun> {
  return new Promise((resolve) => {
    const child = spawn('ip', ['netns', 'exec', netnsName, plugin], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) => {
      let json: unknown;
      try {
        json = stdout.trim() ? JSON.parse(stdout) : undefined;
      } catch {
        json = undefined;
      }
      resolve({ code: code ?? -1, stdout, stderr, json });
    });
    // A plugin that exits before reading its config closes the pipe: its exit code tells why.
    child.stdin.on('error', () => undefined);
    child.stdin.end(stdin);
  });
}
