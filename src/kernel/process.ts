/** Processes: liveness by PID, and running a CNI plugin the way a runtime does. */
import { spawn } from 'node:child_process';

/** True while a process with this PID exists (signal 0 checks without sending anything). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
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
