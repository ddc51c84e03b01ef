/**
 * The lab's daemons (etcd, the controller, each node's agent and kubelet): started inside a
 * namespace, detached from the CLI that started them, with their output in a log file, and
 * remembered by PID so that `lab down` ends exactly the processes the lab started.
 */
import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { isAlive } from '../kernel/index.ts';
import { LabError } from './plan.ts';

export interface Daemon {
  role: string;
  netns: string;
  pid: number;
  log: string;
  /** What was started (inside `netns`), and where: enough to start it again the same way. */
  argv?: string[];
  cwd?: string;
}

/**
 * Starts `argv` inside `netns`. nsenter (not `ip netns exec`) because the latter also gives the
 * command a mount namespace of its own: namespaces the daemon then adds (a kubelet's pod
 * sandboxes) would be invisible to the rest of the host. nsenter execs the command, so the
 * PID is the daemon's.
 */
export function startDaemon(role: string, netns: string, argv: string[], log: string, cwd?: string): Daemon {
  const fd = openSync(log, 'a');
  try {
    const child = spawn('nsenter', [`--net=/var/run/netns/${netns}`, '--', ...argv], { detached: true, stdio: ['ignore', fd, fd], cwd });
    if (child.pid === undefined) throw new LabError('PODNET_LAB_START_FAILED', `could not start ${role} (${argv[0]})`);
    child.unref();
    return { role, netns, pid: child.pid, log, argv, ...(cwd !== undefined ? { cwd } : {}) };
  } finally {
    closeSync(fd);
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** SIGTERM, a grace period, then SIGKILL for what is still there. */
export async function stopPids(pids: number[], graceMs = 3000): Promise<void> {
  const live = pids.filter(isAlive);
  for (const pid of live) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      // Gone meanwhile.
    }
  }
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline && live.some(isAlive)) await sleep(50);
  for (const pid of live.filter(isAlive)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Gone meanwhile.
    }
  }
}

/** Polls `check` until it returns true or `timeoutMs` passes. */
export async function waitFor(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 15000, hint = ''): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new LabError('PODNET_LAB_TIMEOUT', `${what} did not come up within ${timeoutMs / 1000}s${hint ? `: ${hint}` : ''}`);
    await sleep(50);
  }
}
