/**
 * A real etcd (Debian `etcd-server`, /usr/bin/etcd) for tests, reachable over a UNIX socket
 * only: no TCP port is opened, so parallel test files never collide and nothing listens on
 * the host's network.
 *
 * etcd is started with its cwd in a fresh temp dir and relative unix URLs; it then creates
 * the socket files `etcd:1` (clients) and `peer:2` (raft peers) in that dir, and clients
 * connect to `unix://<tmp>/etcd:1`. The data dir lives in the same temp dir, so `restart()`
 * brings back the same cluster (same revisions, same leases) and `stop()` removes it all.
 * The process is stopped by its PID, never by name.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { noop } from 'cockatiel';
import { Etcd3 } from 'etcd3';

export const ETCD_BIN = '/usr/bin/etcd';

export function haveEtcd(): boolean {
  return existsSync(ETCD_BIN);
}

export interface TestEtcd {
  /** The client endpoint, `unix:///tmp/…/etcd:1`. */
  readonly endpoint: string;
  readonly dir: string;
  /** The PID of the running etcd (undefined while it is down). */
  readonly pid: number | undefined;
  /** Kills etcd (keeping its data); `up()` starts it again. */
  down(): Promise<void>;
  up(): Promise<void>;
  /** down(), then up(); `whileDown` runs in between. */
  restart(whileDown?: () => Promise<void>): Promise<void>;
  /** Kills etcd and removes its temp dir. Safe to call twice. */
  stop(): Promise<void>;
}

export interface StartOptions {
  /** How long to wait for etcd to answer (ms). */
  readyTimeoutMs?: number;
}

export async function startEtcd(opts: StartOptions = {}): Promise<TestEtcd> {
  const dir = mkdtempSync(join(tmpdir(), 'podnet-etcd-'));
  const endpoint = `unix://${dir}/etcd:1`;
  const readyTimeoutMs = opts.readyTimeoutMs ?? 15_000;
  let child: ChildProcess | undefined;
  let log = '';
  let stopped = false;

  const args = [
    '--name', 't',
    '--data-dir', join(dir, 'data'),
    '--listen-client-urls', 'unix://etcd:1',
    '--advertise-client-urls', 'unix://etcd:1',
    '--listen-peer-urls', 'unix://peer:2',
    '--initial-advertise-peer-urls', 'unix://peer:2',
    '--initial-cluster', 't=unix://peer:2',
    '--log-level', 'warn',
  ];

  async function up(): Promise<void> {
    if (stopped) throw new Error('test etcd was stopped');
    if (child) return;
    // A socket file left by a killed etcd would make the new one fail to bind.
    for (const f of ['etcd:1', 'peer:2']) rmSync(join(dir, f), { force: true });
    log = '';
    const proc = spawn(ETCD_BIN, args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    child = proc;
    const keep = (b: Buffer): void => {
      log = (log + b.toString()).slice(-8000);
    };
    proc.stdout?.on('data', keep);
    proc.stderr?.on('data', keep);
    let exited = false;
    proc.once('exit', () => {
      exited = true;
      if (child === proc) child = undefined;
    });
    const client = new Etcd3({
      hosts: endpoint,
      dialTimeout: 1000,
      // The socket appears only once etcd listens: retry connecting fast, not with grpc's
      // default 1 s .. 120 s backoff.
      grpcOptions: { 'grpc.initial_reconnect_backoff_ms': 20, 'grpc.max_reconnect_backoff_ms': 200 },
      // No circuit breaker: etcd3's default one blocks every call for 5 s after three failures.
      faultHandling: { host: () => noop, global: noop },
    });
    const deadline = Date.now() + readyTimeoutMs;
    try {
      for (;;) {
        if (exited) throw new Error(`etcd exited during start-up:\n${log}`);
        try {
          await client.get('podnet-test-readiness').options({ deadline: Date.now() + 500 }).string();
          return;
        } catch (err) {
          if (Date.now() > deadline) {
            throw new Error(`etcd at ${endpoint} not ready after ${readyTimeoutMs} ms: ${String(err)}\n${log}`);
          }
          await sleep(50);
        }
      }
    } catch (err) {
      await down();
      throw err;
    } finally {
      client.close();
    }
  }

  async function down(): Promise<void> {
    const proc = child;
    if (!proc || proc.pid === undefined) return;
    const gone = new Promise<void>((resolve) => {
      if (proc.exitCode !== null || proc.signalCode !== null) resolve();
      else proc.once('exit', () => resolve());
    });
    proc.kill('SIGKILL');
    await gone;
    child = undefined;
  }

  const etcd: TestEtcd = {
    endpoint,
    dir,
    get pid() {
      return child?.pid;
    },
    down,
    up,
    async restart(whileDown) {
      await down();
      if (whileDown) await whileDown();
      await up();
    },
    async stop() {
      try {
        await down();
      } finally {
        stopped = true;
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
  try {
    await up();
  } catch (err) {
    stopped = true;
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return etcd;
}
