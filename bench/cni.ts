/**
 * `npm run bench -- cni`: how long a pod's network takes to set up and tear down with podnet's
 * CNI plugins, against the reference plugins (/usr/lib/cni bridge + host-local).
 *
 * Variants, all with the same bridge config (cniVersion 1.0.0, isGateway true, ipMasq false),
 * each with its own bridge, subnet and IPAM data directory:
 *   ref    reference bridge + host-local (Go)
 *   thick  the installed podnet-bridge (the native shim) forwarding to a warm `podnet
 *          cni-server` started in the node namespace before anything is timed
 *   sea    the same shim with no server answering: it execs podnet-bridge.sea, the
 *          single-executable application (IPAM runs in-process); a node without the server
 *   plain  the same bundles as plain scripts under `node` 24 (what `build.ts --plain` writes)
 *   sea+hl podnet-bridge.sea executing the reference host-local as its IPAM plugin
 *
 * Everything happens in a node network namespace made for the run (pnt-<pid>-benchcni-node),
 * never in the root namespace. A worker process is started inside it with `ip netns exec`
 * and times each plugin process from spawn to exit; this process creates and deletes the pod
 * namespaces it asks for (before and after the timed calls) and removes everything in
 * `finally`, also on failure or Ctrl-C.
 *
 * Measured: 200 sequential ADD+DEL per variant, each pod in a fresh namespace, with the
 * variants' order rotated every iteration so machine noise falls on all of them; 20
 * concurrent ADDs then 20 concurrent DELs (wall time, 5 rounds per variant, rotated); and
 * process start-up (`node -e 0` with Node 20 and 24, VERSION of each plugin build).
 *
 * Options: --quick (few runs, nothing written), --no-write (do not touch BENCHMARKS.md).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg, release } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { run as exec } from '../src/kernel/index.ts';
import { CNI_BIN, REF_BIN, ROOT, TestBed, isRoot } from '../test/support/netns.ts';
import { table, updateSection } from './common.ts';

const THIS_FILE = fileURLToPath(import.meta.url);
const NODE24 = join(ROOT, 'node_modules', '.bin', 'node');
const NODE20 = '/usr/bin/node';
const NETNS_DIR = '/var/run/netns';
const BENCHMARKS_MD = join(ROOT, 'BENCHMARKS.md');

interface Counts {
  seq: number;
  warmup: number;
  conc: number;
  concRounds: number;
  startup: number;
}

const FULL: Counts = { seq: 200, warmup: 3, conc: 20, concRounds: 5, startup: 30 };
const QUICK: Counts = { seq: 10, warmup: 1, conc: 20, concRounds: 1, startup: 5 };

interface Variant {
  key: string;
  label: string;
  plugin: string;
  cniPath: string;
  conf: Record<string, unknown>;
  /** Extra environment for the plugin (the shim's PODNET_CNI_SOCKET). */
  env?: Record<string, string>;
}

interface StartupProbe {
  key: string;
  label: string;
  file: string;
  args: string[];
  env: Record<string, string>;
  input: string;
}

interface Plan {
  id: string;
  counts: Counts;
  path: string;
  variants: Variant[];
  probes: StartupProbe[];
  /** `podnet cni-server` for the thick variant: the worker runs it in the node namespace. */
  server: { argv: string[]; socket: string };
}

interface Samples {
  add: number[];
  del: number[];
}

interface WorkerResult {
  startup: Record<string, number[]>;
  seq: Record<string, Samples>;
  conc: Record<string, Samples>;
}

type ToParent =
  | { op: 'mk' | 'rm'; seq: number; names: string[] }
  | { op: 'progress'; text: string }
  | { op: 'result'; result: WorkerResult }
  | { op: 'error'; message: string };

type ToWorker = { op: 'plan'; plan: Plan } | { op: 'ack'; seq: number; error?: string };

// ---------------------------------------------------------------------------------------------
// Statistics and formatting

function percentile(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))] ?? NaN;
}

const ms = (x: number): string => (Number.isFinite(x) ? x.toFixed(1) : '-');
const ratio = (ours: number, ref: number): string => (Number.isFinite(ours) && ref > 0 ? `${(ours / ref).toFixed(2)}×` : '-');

// ---------------------------------------------------------------------------------------------
// The worker: runs inside the node namespace and only times processes.

interface Timed {
  code: number;
  stdout: string;
  stderr: string;
  ms: number;
  end: number;
}

/** Starts `file`, feeds `input`, and times it from spawn to exit (not to the end of its output). */
function timed(file: string, args: string[], env: Record<string, string>, input: string): Promise<Timed> {
  return new Promise((resolve, reject) => {
    let stdout = '';
    let stderr = '';
    let code = -1;
    let end = NaN;
    const t0 = performance.now();
    const child = spawn(file, args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
    child.on('exit', (c, signal) => {
      end = performance.now();
      code = c ?? (signal ? 128 : -1);
    });
    child.on('error', reject);
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('close', () => resolve({ code, stdout, stderr, ms: end - t0, end }));
    child.stdin.on('error', () => undefined); // A plugin that does not read stdin.
    child.stdin.end(input);
  });
}

async function worker(): Promise<void> {
  const send = (m: ToParent): void => void process.send?.(m);
  let server: ChildProcess | undefined;
  let nextSeq = 0;
  const pending = new Map<number, { resolve: () => void; reject: (e: Error) => void }>();
  const planReady = new Promise<Plan>((resolve) => {
    process.on('message', (m: ToWorker) => {
      if (m.op === 'plan') {
        resolve(m.plan);
      } else if (m.op === 'ack') {
        const p = pending.get(m.seq);
        pending.delete(m.seq);
        if (m.error) p?.reject(new Error(m.error));
        else p?.resolve();
      }
    });
  });
  process.on('disconnect', () => process.exit(1)); // The parent is gone: stop.
  const ask = (op: 'mk' | 'rm', names: string[]): Promise<void> =>
    new Promise((resolve, reject) => {
      const seq = nextSeq++;
      pending.set(seq, { resolve, reject });
      send({ op, seq, names });
    });

  try {
    const plan = await planReady;
    const { id, counts, path, variants, probes } = plan;
    // The thick variant's server, warm before anything is timed.
    server = await startServer(plan.server.argv, path);
    send({ op: 'progress', text: `podnet cni-server listening on ${plan.server.socket} (pid ${server.pid})` });
    const envFor = (v: Variant, command: string, containerId: string, netns: string): Record<string, string> => ({
      PATH: path,
      CNI_COMMAND: command,
      CNI_CONTAINERID: containerId,
      CNI_NETNS: `${NETNS_DIR}/${netns}`,
      CNI_IFNAME: 'eth0',
      CNI_PATH: v.cniPath,
      ...v.env,
    });
    const fail = (what: string, r: Timed): never => {
      throw new Error(`${what} failed (exit ${r.code}): ${r.stdout.trim()} ${r.stderr.trim()}`.trim());
    };
    const add = async (v: Variant, cid: string, netns: string): Promise<{ t: Timed; result: unknown }> => {
      const t = await timed(v.plugin, [], envFor(v, 'ADD', cid, netns), JSON.stringify(v.conf));
      if (t.code !== 0) fail(`${v.label} ADD ${cid}`, t);
      const result = JSON.parse(t.stdout) as { ips?: Array<{ address?: string }> };
      if (!result.ips?.[0]?.address) fail(`${v.label} ADD ${cid} (no address in result)`, t);
      return { t, result };
    };
    const del = async (v: Variant, cid: string, netns: string, prevResult: unknown): Promise<Timed> => {
      const t = await timed(v.plugin, [], envFor(v, 'DEL', cid, netns), JSON.stringify({ ...v.conf, prevResult }));
      if (t.code !== 0) fail(`${v.label} DEL ${cid}`, t);
      return t;
    };
    const rotate = <T>(xs: T[], i: number): T[] => xs.map((_, k) => xs[(k + i) % xs.length] as T);

    const result: WorkerResult = { startup: {}, seq: {}, conc: {} };

    // Start-up: each probe once per round, in rotated order; two untimed rounds first.
    for (const p of probes) result.startup[p.key] = [];
    for (let r = -2; r < counts.startup; r++) {
      for (const p of rotate(probes, r + 2)) {
        const t = await timed(p.file, p.args, p.env, p.input);
        if (t.code !== 0) fail(`start-up probe ${p.label}`, t);
        if (r >= 0) result.startup[p.key]?.push(t.ms);
      }
    }
    send({ op: 'progress', text: `start-up: ${counts.startup} rounds done` });

    // Sequential ADD then DEL, one fresh pod namespace per call pair; untimed warm-up first
    // (it also creates each variant's bridge).
    for (const v of variants) result.seq[v.key] = { add: [], del: [] };
    for (let i = -counts.warmup; i < counts.seq; i++) {
      const tag = i < 0 ? `w${-i}` : `s${i}`;
      const order = rotate(variants, i + counts.warmup);
      const names = order.map((v) => `${id}-${tag}-${v.key.replace(/\W/g, '')}`);
      await ask('mk', names);
      for (const [k, v] of order.entries()) {
        const netns = names[k] as string;
        const cid = `bench-${v.key.replace(/\W/g, '')}-${tag}`;
        const a = await add(v, cid, netns);
        const d = await del(v, cid, netns, a.result);
        if (i >= 0) {
          result.seq[v.key]?.add.push(a.t.ms);
          result.seq[v.key]?.del.push(d.ms);
        }
      }
      await ask('rm', names);
      if (i >= 0 && (i + 1) % 50 === 0) send({ op: 'progress', text: `sequential: ${i + 1}/${counts.seq}` });
    }

    // Concurrent: all ADDs of a round started at once, then all DELs; wall time until the last exits.
    for (const v of variants) result.conc[v.key] = { add: [], del: [] };
    for (let r = 0; r < counts.concRounds; r++) {
      for (const v of rotate(variants, r)) {
        const key = v.key.replace(/\W/g, '');
        const pods = Array.from({ length: counts.conc }, (_, k) => ({ netns: `${id}-c${r}-${key}-${k}`, cid: `bench-${key}-c${r}-${k}` }));
        await ask('mk', pods.map((p) => p.netns));
        let t0 = performance.now();
        const adds = await Promise.all(pods.map((p) => add(v, p.cid, p.netns)));
        result.conc[v.key]?.add.push(Math.max(...adds.map((a) => a.t.end)) - t0);
        t0 = performance.now();
        const dels = await Promise.all(pods.map((p, k) => del(v, p.cid, p.netns, adds[k]?.result)));
        result.conc[v.key]?.del.push(Math.max(...dels.map((d) => d.end)) - t0);
        await ask('rm', pods.map((p) => p.netns));
      }
      send({ op: 'progress', text: `concurrent: round ${r + 1}/${counts.concRounds}` });
    }
    send({ op: 'result', result });
  } catch (err) {
    send({ op: 'error', message: err instanceof Error ? err.message : String(err) });
  } finally {
    if (server) await stopServer(server);
    process.disconnect?.();
  }
}

/** Starts `podnet cni-server` here (the node namespace) and waits for its start-up line. */
function startServer(argv: string[], path: string): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const [file, ...args] = argv as [string, ...string[]];
    const child = spawn(file, args, { env: { PATH: path }, stdio: ['ignore', 'ignore', 'pipe'] });
    let log = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`podnet cni-server did not start within 10 s: ${log}`));
    }, 10_000);
    child.on('error', reject);
    child.on('exit', (code) => reject(new Error(`podnet cni-server exited (${code}): ${log}`)));
    child.stderr?.setEncoding('utf8').on('data', (d: string) => {
      log += d;
      if (log.includes('"msg":"cni-server listening"')) {
        clearTimeout(timer);
        resolve(child);
      }
    });
  });
}

/** SIGTERM, then SIGKILL after 10 s. */
async function stopServer(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.on('exit', r));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

// ---------------------------------------------------------------------------------------------
// The parent: builds, makes the namespaces, drives the worker, reports.

function newestUnder(dir: string): number {
  let newest = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    newest = Math.max(newest, e.isDirectory() ? newestUnder(p) : statSync(p).mtimeMs);
  }
  return newest;
}

/** Makes sure dist/cni-bin holds current builds: shims, and single executables (not `--plain` scripts). */
function ensureSeaBuild(): void {
  const bin = join(CNI_BIN, 'podnet-bridge.sea');
  const shim = join(CNI_BIN, 'podnet-bridge');
  const stale =
    !existsSync(bin) ||
    !existsSync(shim) ||
    statSync(bin).size < 1_000_000 ||
    Math.max(newestUnder(join(ROOT, 'src')), newestUnder(join(ROOT, 'native')), statSync(join(ROOT, 'scripts', 'build.ts')).mtimeMs) >
      Math.min(statSync(bin).mtimeMs, statSync(shim).mtimeMs);
  if (!stale) return;
  console.error('bench cni: building the single-executable plugins (node scripts/build.ts)');
  execFileSync(NODE24, [join(ROOT, 'scripts', 'build.ts')], { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] });
  if (statSync(bin).size < 1_000_000) throw new Error(`${bin} is not a single-executable application after the build`);
}

/** The plain variant: the wrappers `build.ts --plain` writes, over the bundles the SEA build made. */
function writePlainBundles(dir: string): void {
  mkdirSync(dir, { recursive: true });
  for (const name of ['podnet-bridge', 'podnet-ipam']) {
    const js = join(ROOT, 'dist', 'sea', `${name}.cjs`);
    if (!existsSync(js)) throw new Error(`${js} is missing; run node scripts/build.ts`);
    const out = join(dir, name);
    writeFileSync(out, `#!/usr/bin/env node\nawait import(${JSON.stringify(js)});\n`);
    chmodSync(out, 0o755);
  }
}

function sh(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return '?';
  }
}

function machine(loadAtStart: number): { date: string; line: string } {
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  const model = /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1]?.trim() ?? 'unknown CPU';
  const nproc = sh('nproc', []);
  return {
    date: sh('date', ['-u']),
    line: `${nproc !== '?' ? nproc : availableParallelism()} CPUs (nproc), ${model}, Linux ${release()}, Node ${process.version} (bench, podnet plugins), ${NODE20} ${sh(NODE20, ['--version'])}; load average (1 min) ${loadAtStart.toFixed(1)} at the start, ${(loadavg()[0] ?? 0).toFixed(1)} at the end (other work on the machine slows every variant, process-heavy ones most)`,
  };
}

/** Deletes namespaces of earlier benchmark runs whose process is gone (a killed run). */
async function sweepOwnLeftovers(): Promise<void> {
  let names: string[] = [];
  try {
    names = readdirSync(NETNS_DIR);
  } catch {
    return;
  }
  const dead = names.filter((n) => {
    const m = /^pnt-(\d+)-benchcni-/.exec(n);
    if (!m) return false;
    try {
      process.kill(Number(m[1]), 0);
      return false;
    } catch {
      return true;
    }
  });
  if (dead.length > 0) await exec('ip', ['-force', '-batch', '-'], { input: dead.map((n) => `netns del ${n}\n`).join('') }).catch(() => undefined);
}

function makeVariants(dir: string, plainDir: string, socket: string): Variant[] {
  const conf = (key: string, n: number, type: string, ipamType: string): Record<string, unknown> => ({
    cniVersion: '1.0.0',
    name: `bench-${key}`,
    type,
    bridge: `pnbr${key}`,
    isGateway: true,
    ipMasq: false,
    ipam: { type: ipamType, ranges: [[{ subnet: `10.213.${n}.0/24` }]], dataDir: join(dir, `ipam-${key}`) },
  });
  const shim = join(CNI_BIN, 'podnet-bridge');
  const cniPath = `${CNI_BIN}:${REF_BIN}`;
  return [
    { key: 'ref', label: 'reference bridge + host-local', plugin: join(REF_BIN, 'bridge'), cniPath: REF_BIN, conf: conf('ref', 1, 'bridge', 'host-local') },
    {
      key: 'thick',
      label: 'shim + warm podnet cni-server',
      plugin: shim,
      cniPath,
      conf: conf('thick', 5, 'podnet-bridge', 'podnet-ipam'),
      env: { PODNET_CNI_SOCKET: socket },
    },
    {
      key: 'sea',
      label: 'no server: shim → podnet-bridge.sea (SEA)',
      plugin: shim,
      cniPath,
      conf: conf('sea', 2, 'podnet-bridge', 'podnet-ipam'),
      // Nothing listens here, whatever else runs on the machine: the shim falls back at once.
      env: { PODNET_CNI_SOCKET: join(dir, 'no-server.sock') },
    },
    { key: 'plain', label: 'podnet-bridge + podnet-ipam (plain, node 24)', plugin: join(plainDir, 'podnet-bridge'), cniPath: `${plainDir}:${REF_BIN}`, conf: conf('plain', 3, 'podnet-bridge', 'podnet-ipam') },
    { key: 'sea+hl', label: 'podnet-bridge.sea + host-local (exec)', plugin: join(CNI_BIN, 'podnet-bridge.sea'), cniPath, conf: conf('hl', 4, 'podnet-bridge', 'host-local') },
  ];
}

function makeProbes(path: string, plainDir: string, socket: string, dir: string): StartupProbe[] {
  const version = { PATH: path, CNI_COMMAND: 'VERSION' };
  const input = '{"cniVersion":"1.0.0"}';
  const shim = join(CNI_BIN, 'podnet-bridge');
  return [
    { key: 'node20', label: `node -e 0 (${NODE20}, ${sh(NODE20, ['--version'])})`, file: NODE20, args: ['-e', '0'], env: { PATH: path }, input: '' },
    { key: 'node24', label: `node -e 0 (node_modules/.bin/node, ${process.version})`, file: NODE24, args: ['-e', '0'], env: { PATH: path }, input: '' },
    { key: 'thick', label: 'podnet-bridge shim → warm cni-server, VERSION', file: shim, args: [], env: { ...version, PODNET_CNI_SOCKET: socket }, input },
    { key: 'shim-sea', label: 'podnet-bridge shim, no server → SEA, VERSION', file: shim, args: [], env: { ...version, PODNET_CNI_SOCKET: join(dir, 'no-server.sock') }, input },
    { key: 'sea', label: 'podnet-bridge.sea (SEA) alone, VERSION', file: join(CNI_BIN, 'podnet-bridge.sea'), args: [], env: version, input },
    { key: 'plain', label: 'podnet-bridge plain bundle (node 24), VERSION', file: join(plainDir, 'podnet-bridge'), args: [], env: version, input },
    { key: 'ref', label: 'reference bridge, VERSION', file: join(REF_BIN, 'bridge'), args: [], env: version, input },
  ];
}

function report(plan: Plan, res: WorkerResult, meta: { date: string; line: string }, seconds: number): { text: string; md: string } {
  const { counts, variants, probes } = plan;
  const refSeq = res.seq.ref ?? { add: [], del: [] };
  const refConc = res.conc.ref ?? { add: [], del: [] };
  const seqRows = variants.map((v) => {
    const s = res.seq[v.key] ?? { add: [], del: [] };
    return [
      `${v.key}: ${v.label}`,
      ms(percentile(s.add, 0.5)),
      ms(percentile(s.add, 0.95)),
      ms(percentile(s.del, 0.5)),
      ms(percentile(s.del, 0.95)),
      ratio(percentile(s.add, 0.5), percentile(refSeq.add, 0.5)),
      ratio(percentile(s.add, 0.95), percentile(refSeq.add, 0.95)),
      ratio(percentile(s.del, 0.5), percentile(refSeq.del, 0.5)),
      ratio(percentile(s.del, 0.95), percentile(refSeq.del, 0.95)),
    ];
  });
  const seq = table(
    ['variant', 'ADD p50', 'ADD p95', 'DEL p50', 'DEL p95', 'ADD p50 ratio', 'ADD p95 ratio', 'DEL p50 ratio', 'DEL p95 ratio'],
    seqRows,
    ['l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r'],
  );
  const concRows = variants.map((v) => {
    const c = res.conc[v.key] ?? { add: [], del: [] };
    return [
      `${v.key}: ${v.label}`,
      ms(percentile(c.add, 0.5)),
      `${ms(Math.min(...c.add))}–${ms(Math.max(...c.add))}`,
      ms(percentile(c.del, 0.5)),
      `${ms(Math.min(...c.del))}–${ms(Math.max(...c.del))}`,
      ratio(percentile(c.add, 0.5), percentile(refConc.add, 0.5)),
      ratio(percentile(c.del, 0.5), percentile(refConc.del, 0.5)),
    ];
  });
  const conc = table(
    ['variant', `${counts.conc} ADD wall`, 'range', `${counts.conc} DEL wall`, 'range', 'ADD ratio', 'DEL ratio'],
    concRows,
    ['l', 'r', 'r', 'r', 'r', 'r', 'r'],
  );
  const refStart = percentile(res.startup.ref ?? [], 0.5);
  const startRows = probes.map((p) => {
    const xs = res.startup[p.key] ?? [];
    return [p.label, ms(percentile(xs, 0.5)), ms(percentile(xs, 0.95)), ratio(percentile(xs, 0.5), refStart)];
  });
  const start = table(['process', 'p50', 'p95', 'ratio to reference bridge'], startRows, ['l', 'r', 'r', 'r']);

  const method =
    `Inside a node network namespace made for the run, each plugin process is timed from spawn to exit ` +
    `(pod namespaces are created before and deleted after the timed calls). Every variant uses the same bridge ` +
    `config (cniVersion 1.0.0, isGateway true, ipMasq false) with its own bridge, /24 and IPAM data directory. ` +
    `Sequential: ${counts.seq} ADD then DEL per variant, each pod in a fresh namespace, after ${counts.warmup} untimed ` +
    `warm-up pairs; the variants take turns, order rotated every iteration. Concurrent: ${counts.conc} ADDs started at ` +
    `once, wall time until the last exits, then the ${counts.conc} DELs likewise; ${counts.concRounds} rounds per variant, ` +
    `rotated. Start-up: p50/p95 of ${counts.startup} runs each, rotated. Ratios are ours / reference (ref row).`;
  const p50 = (key: string, op: 'add' | 'del'): number => percentile(res.seq[key]?.[op] ?? [], 0.5);
  const design =
    `Design: the installed podnet-bridge and podnet-ipam are one small native shim (native/cni-shim.c) that ` +
    `forwards each call over a unix socket to a warm \`podnet cni-server\` in the node namespace, which runs the ` +
    `same dispatch() as the standalone build; when no server answers, or the server runs in another network ` +
    `namespace, the shim execs the Node single-executable build next to it (podnet-bridge.sea), so a node with ` +
    `only the installed files works as before (the "thick plugin" of Multus and Cilium). A warm ADD starts one ` +
    `process besides the shim (ip(8) in the pod's namespace; the node-side ip(8) batches run on processes the server ` +
    `keeps), where the reference starts two Go programs (bridge, host-local). In this run ADD p50 is ` +
    `${ms(p50('thick', 'add'))} ms through the server against ${ms(p50('ref', 'add'))} ms for the reference ` +
    `(${ratio(p50('thick', 'add'), p50('ref', 'add'))}), DEL p50 ${ms(p50('thick', 'del'))} ms against ` +
    `${ms(p50('ref', 'del'))} ms (${ratio(p50('thick', 'del'), p50('ref', 'del'))}); without the server the shim ` +
    `costs what the SEA costs: ADD p50 ${ms(p50('sea', 'add'))} ms, DEL p50 ${ms(p50('sea', 'del'))} ms.`;
  const md = [
    '## cni',
    '',
    'CNI ADD/DEL latency: podnet-bridge and podnet-ipam against the reference plugins (containernetworking-plugins ' +
      'bridge and host-local from /usr/lib/cni). Run with `npm run bench -- cni` (root).',
    '',
    design,
    '',
    `- Date: ${meta.date}`,
    `- Machine: ${meta.line}`,
    `- Run time: ${seconds.toFixed(0)} s`,
    `- Method: ${method}`,
    '',
    `### Sequential ADD / DEL (ms per plugin process, ${counts.seq} each)`,
    '',
    seq.md,
    '',
    `### ${counts.conc} concurrent ADDs, then ${counts.conc} concurrent DELs (ms wall, median and range of ${counts.concRounds} rounds)`,
    '',
    conc.md,
    '',
    `### Start-up (ms, ${counts.startup} runs each)`,
    '',
    start.md,
    '',
  ].join('\n');
  const text = [
    `cni benchmark — ${meta.date}`,
    meta.line,
    '',
    design,
    '',
    `Sequential ADD/DEL, ms per plugin process (${counts.seq} each); ratios = ours / ref`,
    seq.text,
    '',
    `${counts.conc} concurrent ADDs then DELs, ms wall (median and range of ${counts.concRounds} rounds)`,
    conc.text,
    '',
    `Start-up, ms (${counts.startup} runs each)`,
    start.text,
    '',
    `run time ${seconds.toFixed(0)} s`,
  ].join('\n');
  return { text, md };
}

export async function run(args: string[]): Promise<void> {
  const quick = args.includes('--quick');
  const write = !quick && !args.includes('--no-write');
  const unknown = args.filter((a) => a !== '--quick' && a !== '--no-write');
  if (unknown.length > 0) {
    console.error(`bench cni: unknown option ${unknown.join(' ')} (options: --quick, --no-write)`);
    process.exit(2);
  }
  if (!isRoot()) {
    console.error('bench cni: needs root (it creates network namespaces)');
    process.exit(1);
  }
  const started = performance.now();
  const loadAtStart = loadavg()[0] ?? 0;
  ensureSeaBuild();
  await sweepOwnLeftovers();

  const bed = new TestBed('benchcni');
  const live = new Set<string>();
  let child: ChildProcess | undefined;
  let interrupted = false;
  const onSignal = (sig: NodeJS.Signals): void => {
    interrupted = true;
    console.error(`bench cni: ${sig}, cleaning up`);
    child?.kill('SIGKILL');
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    const plainDir = join(bed.dir, 'plain');
    writePlainBundles(plainDir);
    const node = await bed.netns('node');
    // Node 24 first on PATH: the plain wrappers start with `#!/usr/bin/env node`.
    const path = `${join(ROOT, 'node_modules', '.bin')}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`;
    const socket = join(bed.dir, 'cni.sock');
    const plan: Plan = {
      id: bed.id,
      counts: quick ? QUICK : FULL,
      path,
      variants: makeVariants(bed.dir, plainDir, socket),
      probes: makeProbes(path, plainDir, socket, bed.dir),
      server: { argv: [NODE24, join(ROOT, 'dist', 'podnet.mjs'), 'cni-server', '--socket', socket], socket },
    };
    console.error(`bench cni: node namespace ${node.name}; ${plan.variants.map((v) => v.key).join(', ')}${quick ? ' (quick)' : ''}`);

    const result = await new Promise<WorkerResult>((resolve, reject) => {
      const c = spawn('ip', ['netns', 'exec', node.name, process.execPath, THIS_FILE, '--worker'], {
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
        env: { PATH: process.env.PATH ?? path },
      });
      child = c;
      let done = false;
      c.on('error', reject);
      c.on('exit', (code, signal) => {
        if (!done) reject(new Error(interrupted ? 'interrupted' : `benchmark worker exited (${signal ?? code}) without a result`));
      });
      c.on('message', (m: ToParent) => {
        switch (m.op) {
          case 'mk':
          case 'rm': {
            const input = m.names.map((n) => `netns ${m.op === 'mk' ? 'add' : 'del'} ${n}\n`).join('');
            if (m.op === 'mk') for (const n of m.names) live.add(n);
            exec('ip', ['-batch', '-'], { input }).then(
              () => {
                if (m.op === 'rm') for (const n of m.names) live.delete(n);
                c.send({ op: 'ack', seq: m.seq } satisfies ToWorker);
              },
              (err: Error) => c.send({ op: 'ack', seq: m.seq, error: err.message } satisfies ToWorker),
            );
            break;
          }
          case 'progress':
            console.error(`bench cni: ${m.text} (${((performance.now() - started) / 1000).toFixed(0)} s)`);
            break;
          case 'result':
            done = true;
            resolve(m.result);
            break;
          case 'error':
            done = true;
            reject(new Error(m.message));
            break;
        }
      });
      c.send({ op: 'plan', plan } satisfies ToWorker);
    });

    const seconds = (performance.now() - started) / 1000;
    const meta = machine(loadAtStart);
    const out = report(plan, result, meta, seconds);
    console.log(out.text);
    if (write) {
      const existing = existsSync(BENCHMARKS_MD) ? readFileSync(BENCHMARKS_MD, 'utf8') : undefined;
      writeFileSync(BENCHMARKS_MD, updateSection(existing, 'cni', out.md));
      console.error(`bench cni: wrote the "## cni" section of ${BENCHMARKS_MD}`);
    }
  } finally {
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    if (live.size > 0) {
      await exec('ip', ['-force', '-batch', '-'], { input: [...live].map((n) => `netns del ${n}\n`).join('') }).catch(() => undefined);
    }
    await bed.cleanup();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

if (process.argv[1] === THIS_FILE && process.argv.includes('--worker')) await worker();
