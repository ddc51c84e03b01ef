/**
 * What every podnet daemon shares (agent, controller, lab kubelet, dns): one AbortController
 * for the whole process, SIGINT/SIGTERM wired to it, structured JSON logs (pino), Prometheus
 * metrics (prom-client) and a health endpoint on one small HTTP server.
 *
 * Start-up order is the caller's, step by step; `shutdown` runs the registered closers in
 * reverse order, so what started last stops first.
 */
import { createServer, type Server } from 'node:http';
import { pino, type Logger } from 'pino';
import { Registry, collectDefaultMetrics } from 'prom-client';
import { describe } from '../errors/index.ts';

export interface Daemon {
  name: string;
  log: Logger;
  signal: AbortSignal;
  registry: Registry;
  /** Registers work to undo at shutdown (run in reverse order). */
  onShutdown(fn: () => Promise<void> | void): void;
  /** Health: each named check must return true for /healthz to say ok. */
  addHealthCheck(name: string, check: () => boolean): void;
  /** Serves /metrics and /healthz on host:port. */
  serve(host: string, port: number): Promise<Server>;
  /** Runs until the signal aborts, then shuts down; exits the process with the right code. */
  runUntilStopped(): Promise<void>;
  abort(reason?: string): void;
}

export function createDaemon(name: string, fields: Record<string, unknown> = {}): Daemon {
  const ac = new AbortController();
  const log = pino({ name, base: { pid: process.pid, ...fields }, timestamp: pino.stdTimeFunctions.isoTime });
  const registry = new Registry();
  registry.setDefaultLabels({ daemon: name });
  collectDefaultMetrics({ register: registry });
  const closers: Array<() => Promise<void> | void> = [];
  const checks = new Map<string, () => boolean>();
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      log.info({ signal: sig }, 'stopping');
      ac.abort(sig);
    });
  }
  const d: Daemon = {
    name,
    log,
    signal: ac.signal,
    registry,
    onShutdown: (fn) => void closers.push(fn),
    addHealthCheck: (n, c) => void checks.set(n, c),
    abort: (reason) => ac.abort(reason),
    async serve(host, port) {
      const server = createServer((req, res) => {
        if (req.url === '/metrics') {
          registry
            .metrics()
            .then((text) => {
              res.writeHead(200, { 'content-type': registry.contentType });
              res.end(text);
            })
            .catch((err) => {
              res.writeHead(500);
              res.end(describe(err));
            });
          return;
        }
        if (req.url === '/healthz' || req.url === '/readyz') {
          const failing = [...checks].filter(([, c]) => !c()).map(([n]) => n);
          res.writeHead(failing.length === 0 ? 200 : 503, { 'content-type': 'text/plain' });
          res.end(failing.length === 0 ? 'ok\n' : `failing: ${failing.join(', ')}\n`);
          return;
        }
        res.writeHead(404);
        res.end();
      });
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => resolve());
      });
      closers.push(() => new Promise<void>((r) => server.close(() => r())));
      log.info({ host, port }, 'serving /metrics and /healthz');
      return server;
    },
    async runUntilStopped() {
      if (!ac.signal.aborted) await new Promise((r) => ac.signal.addEventListener('abort', r, { once: true }));
      for (const fn of closers.reverse()) {
        try {
          await fn();
        } catch (err) {
          log.error({ err: describe(err) }, 'shutdown step failed');
        }
      }
      log.info('stopped');
    },
  };
  return d;
}

/** Runs `fn` every `ms` until the signal aborts; errors are logged, never thrown. */
export function every(ms: number, signal: AbortSignal, log: Logger, what: string, fn: () => Promise<unknown>): void {
  let running = false;
  const timer = setInterval(() => {
    if (running) return;
    running = true;
    fn()
      .catch((err) => log.error({ err: describe(err) }, `${what} failed`))
      .finally(() => (running = false));
  }, ms);
  signal.addEventListener('abort', () => clearInterval(timer), { once: true });
}
