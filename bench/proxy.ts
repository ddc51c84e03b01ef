/**
 * `npm run bench -- proxy`: how long the service proxy takes to program 1,000 and 10,000
 * services × 25 endpoints, in nftables mode (ProxyDataplane) and iptables mode
 * (IptablesProxyDataplane) side by side, and what a service's first connection costs as the
 * number of services grows.
 *
 * Everything runs in network namespaces made for the run (pnt-<pid>-benchproxy-*), never in
 * the root namespace, and all of them are removed in `finally`.
 *
 * 1. Rule sync. For each mode and size, a fresh namespace and one child process
 *    (bench/proxy-worker.ts, started with `ip netns exec`): it generates the Service and
 *    EndpointSlice objects (ClusterIP, one TCP port, 25 ready endpoints on 64 nodes, 1 in 64
 *    local), translates them with the agent's incremental Translator, and times
 *      - the full sync into an empty namespace,
 *      - syncs after one endpoint of one service changed (a partial sync in nftables mode,
 *        a full one in iptables mode, which has no other kind),
 *      - nftables: one more full sync over the existing table (a restart or the hourly resync).
 *    Each mode's figures come from its own process: peak RSS is that process's maxRSS, and
 *    every nft / iptables-restore it runs is wrapped in /usr/bin/time (wall, user and system
 *    CPU, peak RSS of the tool itself). iptables mode runs twice: with the host's
 *    `iptables-restore` (the default, the nf_tables backend on this Debian) and with the
 *    legacy binaries (the same planner and executor, the names mapped in the worker's runner).
 *    A run over its time cap is killed (worker and tools), and reported as "> N s".
 * 2. First-connection latency. A node namespace (where the rules live) with a bridge and two
 *    server pods (a TCP server each on :8080) and a client pod routed through the node;
 *    N services (N = 1,000 and 10,000) whose two endpoints are the two servers, so every
 *    service answers. From the client, connect() — the TCP handshake through the DNAT — to the
 *    first service, the last service and, as a floor, straight to a server pod, interleaved,
 *    after a warm-up; medians. nftables looks a service up in a map; iptables walks one rule
 *    per service (PODNET-SERVICES, in key order, so service 1 is first and service N last).
 *
 * Options: --quick (1,000 services only, fewer connections, nothing written), --no-write.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { run as exec } from '../src/kernel/index.ts';
import { type Netns, ROOT, TestBed, isRoot, sweepLeftovers } from '../test/support/netns.ts';
import { backgroundBusy, machine, median, namespacesWith, rootSnapshot, sh, table, writeSection } from './common.ts';
import { type CommandStat, type SyncStat, type WorkerLine, type WorkerSpec, clusterIP } from './proxy-worker.ts';

const WORKER = join(ROOT, 'bench', 'proxy-worker.ts');
const NODE = process.execPath;

type ModeKey = 'nftables' | 'iptables' | 'iptables-legacy';
const MODES: Record<ModeKey, { label: string; spec: Pick<WorkerSpec, 'mode' | 'iptables'> }> = {
  nftables: { label: 'nftables', spec: { mode: 'nftables' } },
  iptables: { label: 'iptables (host default)', spec: { mode: 'iptables', iptables: 'default' } },
  'iptables-legacy': { label: 'iptables (legacy)', spec: { mode: 'iptables', iptables: 'legacy' } },
};

interface SyncCase {
  mode: ModeKey;
  services: number;
  changes: number;
  resync: boolean;
  capS: number;
}

interface LatencyCase {
  mode: ModeKey;
  services: number;
  capS: number;
}

const EPS = 25;
const SMALL = 1000;
const LARGE = 10000;

/** The order keeps the whole run near 10 minutes: the iptables runs are capped. */
function plan(quick: boolean): { sync: SyncCase[]; latency: LatencyCase[]; skippedLatency: Array<{ mode: ModeKey; services: number; why: string }>; rounds: number; warmup: number } {
  const sync: SyncCase[] = [
    { mode: 'nftables', services: SMALL, changes: 5, resync: true, capS: 120 },
    { mode: 'iptables-legacy', services: SMALL, changes: 2, resync: false, capS: 90 },
    { mode: 'iptables', services: SMALL, changes: 0, resync: false, capS: quick ? 30 : 150 },
  ];
  if (!quick) {
    sync.push(
      { mode: 'nftables', services: LARGE, changes: 7, resync: true, capS: 300 },
      { mode: 'iptables-legacy', services: LARGE, changes: 0, resync: false, capS: 120 },
      { mode: 'iptables', services: LARGE, changes: 0, resync: false, capS: 45 },
    );
  }
  const latency: LatencyCase[] = [
    { mode: 'nftables', services: SMALL, capS: 60 },
    { mode: 'iptables-legacy', services: SMALL, capS: 60 },
    { mode: 'iptables', services: SMALL, capS: 60 },
  ];
  const skippedLatency: Array<{ mode: ModeKey; services: number; why: string }> = [];
  if (!quick) {
    latency.push({ mode: 'nftables', services: LARGE, capS: 120 }, { mode: 'iptables-legacy', services: LARGE, capS: 90 });
    skippedLatency.push({
      mode: 'iptables',
      services: LARGE,
      why: 'not run: with the host default (nf_tables backend) iptables-restore of 10,000 services × 2 endpoints took 181 s (113 s CPU) when this benchmark was written, beyond the run budget; the rule walk per packet is the same linear PODNET-SERVICES chain as the legacy row',
    });
  }
  return { sync, latency, skippedLatency, rounds: quick ? 30 : 200, warmup: quick ? 3 : 10 };
}

// ---------------------------------------------------------------------------------------
// Running a worker

interface WorkerRun {
  generated?: Extract<WorkerLine, { event: 'generated' }>;
  syncs: SyncStat[];
  done?: Extract<WorkerLine, { event: 'done' }>;
  error?: string;
  /** How long the failing step had run. */
  errorStepS?: number;
  /** Killed at the cap: the step that was running, how long it had run, the tools' peak RSS so far. */
  timedOut?: { step: string; stepS: number; capS: number; tools: Array<{ name: string; hwmKB: number }> };
  wallS: number;
}

const children = new Set<ChildProcess>();

function track(c: ChildProcess): ChildProcess {
  children.add(c);
  c.on('close', () => children.delete(c));
  return c;
}

async function nsPids(ns: Netns): Promise<number[]> {
  const { stdout } = await exec('ip', ['netns', 'pids', ns.name]).catch(() => ({ stdout: '' }));
  return stdout.split(/\s+/).filter((p) => /^\d+$/.test(p)).map(Number);
}

function procStatus(pid: number): { name: string; hwmKB: number } | undefined {
  try {
    const st = readFileSync(`/proc/${pid}/status`, 'utf8');
    return { name: /^Name:\s*(\S+)/m.exec(st)?.[1] ?? '?', hwmKB: Number(/^VmHWM:\s*(\d+)/m.exec(st)?.[1] ?? 0) };
  } catch {
    return undefined;
  }
}

function steps(spec: WorkerSpec): string[] {
  return ['full', ...Array.from({ length: spec.changes }, (_, i) => `change ${i + 1}`), ...(spec.resync ? ['resync'] : [])];
}

function runWorker(ns: Netns, spec: WorkerSpec, capS: number, say: (m: string) => void): Promise<WorkerRun> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const out: WorkerRun = { syncs: [], wallS: 0 };
    let lastEvent = t0;
    let lastEventBefore = t0;
    let stderr = '';
    const child = track(spawn('ip', ['netns', 'exec', ns.name, NODE, WORKER, JSON.stringify(spec)], { stdio: ['ignore', 'pipe', 'pipe'] }));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr = (stderr + d).slice(-4000)));
    createInterface({ input: child.stdout! }).on('line', (line) => {
      let ev: WorkerLine;
      try {
        ev = JSON.parse(line) as WorkerLine;
      } catch {
        return;
      }
      lastEvent = performance.now();
      if (ev.event === 'generated') out.generated = ev;
      else if (ev.event === 'sync') {
        out.syncs.push(ev.sync);
        say(`  ${ev.sync.label}: ${(ev.sync.totalMs / 1000).toFixed(2)} s (${ev.sync.mode}, ${ev.sync.lines} lines)`);
      } else if (ev.event === 'done') out.done = ev;
      else if (ev.event === 'error') {
        out.error = ev.message;
        out.errorStepS = (performance.now() - lastEventBefore) / 1000;
      }
      if (ev.event !== 'error') lastEventBefore = lastEvent;
    });
    const timer = setTimeout(() => {
      void (async () => {
        const tools: Array<{ name: string; hwmKB: number }> = [];
        const pids = await nsPids(ns);
        for (const pid of pids) {
          const st = procStatus(pid);
          if (st && st.name !== 'node' && st.name !== 'MainThread' && st.name !== 'time') tools.push({ name: st.name, hwmKB: st.hwmKB });
        }
        out.timedOut = { step: steps(spec)[out.syncs.length] ?? '?', stepS: (performance.now() - lastEvent) / 1000, capS, tools };
        child.kill('SIGKILL');
        for (const pid of pids) {
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            // Gone already.
          }
        }
      })();
    }, capS * 1000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      out.wallS = (performance.now() - t0) / 1000;
      if (!out.timedOut && !out.done && !out.error) out.error = `worker exited ${code}: ${stderr.trim().split('\n').slice(-3).join(' | ')}`;
      resolve(out);
    });
  });
}

/** Kills whatever still runs in a namespace and deletes it (TestBed.cleanup tries again harmlessly). */
async function dropNs(ns: Netns): Promise<void> {
  for (const pid of await nsPids(ns)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Gone already.
    }
  }
  await exec('ip', ['netns', 'del', ns.name]).catch(() => undefined);
}

// ---------------------------------------------------------------------------------------
// The latency set-up

const SERVER = `
const net = require('node:net');
net.createServer((s) => { s.on('error', () => {}); s.destroy(); }).listen(8080, '0.0.0.0', () => process.stdout.write('ready\\n'));
`;

/** connect() times in µs per target, interleaved (order rotated every round), after a warm-up; -1 = failed. */
const CLIENT = `
const net = require('node:net');
const [targetsJson, rounds, warmup] = process.argv.slice(1);
const targets = JSON.parse(targetsJson);
function once(t) {
  return new Promise((res) => {
    const t0 = process.hrtime.bigint();
    const s = net.connect({ host: t.ip, port: t.port });
    const timer = setTimeout(() => { s.destroy(); res(-1); }, 3000);
    s.on('connect', () => { const us = Number(process.hrtime.bigint() - t0) / 1000; clearTimeout(timer); s.destroy(); res(us); });
    s.on('error', () => { clearTimeout(timer); res(-1); });
  });
}
(async () => {
  const out = Object.fromEntries(targets.map((t) => [t.name, []]));
  const total = +rounds + +warmup;
  for (let r = 0; r < total; r++) {
    for (let i = 0; i < targets.length; i++) {
      const t = targets[(i + r) % targets.length];
      const us = await once(t);
      if (r >= +warmup) out[t.name].push(us);
    }
  }
  process.stdout.write(JSON.stringify(out) + '\\n');
})();
`;

const SERVERS = ['10.244.1.2', '10.244.1.3'];

async function batch(ns: Netns, lines: string[]): Promise<void> {
  await exec('ip', ['-n', ns.name, '-batch', '-'], { input: lines.join('\n') + '\n' });
}

async function latencyBed(bed: TestBed, label: string): Promise<{ node: Netns; client: Netns; all: Netns[] }> {
  const node = await bed.netns(`${label}-node`);
  const s1 = await bed.netns(`${label}-s1`);
  const s2 = await bed.netns(`${label}-s2`);
  const client = await bed.netns(`${label}-cl`);
  await batch(node, [
    'link add cni0 type bridge',
    'addr add 10.244.1.1/24 dev cni0',
    'link set cni0 up',
    `link add vs1 type veth peer name eth0 netns ${s1.name}`,
    'link set vs1 master cni0 up',
    `link add vs2 type veth peer name eth0 netns ${s2.name}`,
    'link set vs2 master cni0 up',
    `link add vc0 type veth peer name eth0 netns ${client.name}`,
    'addr add 10.244.2.1/24 dev vc0',
    'link set vc0 up',
  ]);
  await node.exec('sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
  for (const [ns, ip, gw] of [
    [s1, `${SERVERS[0]}/24`, '10.244.1.1'],
    [s2, `${SERVERS[1]}/24`, '10.244.1.1'],
    [client, '10.244.2.2/24', '10.244.2.1'],
  ] as const) {
    await batch(ns, ['link set eth0 up', `addr add ${ip} dev eth0`, `route add default via ${gw}`]);
  }
  for (const s of [s1, s2]) {
    const child = track(bed.track(spawn('ip', ['netns', 'exec', s.name, NODE, '-e', SERVER], { stdio: ['ignore', 'pipe', 'pipe'] })));
    await new Promise<void>((resolve, reject) => {
      let buf = '';
      const timer = setTimeout(() => reject(new Error(`server in ${s.name} not ready`)), 15_000);
      child.stdout!.on('data', (d) => {
        buf += d;
        if (buf.includes('ready')) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.on('exit', (code) => reject(new Error(`server in ${s.name} exited ${code}`)));
    });
  }
  return { node, client, all: [client, s2, s1, node] };
}

interface LatencyResult {
  c: LatencyCase;
  sync?: WorkerRun;
  /** µs per target (failures removed) and failures. */
  us?: Record<string, number[]>;
  failed?: Record<string, number>;
  error?: string;
}

// ---------------------------------------------------------------------------------------
// Figures

const f1 = (x: number): string => (Number.isFinite(x) ? x.toFixed(1) : '–');
const f2 = (x: number): string => (Number.isFinite(x) ? x.toFixed(2) : '–');
const f0 = (x: number): string => (Number.isFinite(x) ? (Math.round(x) === 0 ? '0' : x.toFixed(0)) : '–');
const thousands = (n: number): string => n.toLocaleString('en-US');

function toolOf(s: SyncStat): CommandStat | undefined {
  // The transaction: nft -f -, iptables-restore.
  return s.commands.find((c) => / -f -$/.test(c.cmd) || /restore/.test(c.cmd) || c.cmd === 'nft -i (session)');
}

function toolCpuS(s: SyncStat): number {
  let t = 0;
  for (const c of s.commands) t += (c.userS ?? 0) + (c.sysS ?? 0);
  return t;
}

function maxToolRssMB(r: WorkerRun): number {
  let m = 0;
  for (const s of r.syncs) for (const c of s.commands) m = Math.max(m, (c.maxRssKB ?? 0) / 1024);
  for (const t of r.timedOut?.tools ?? []) m = Math.max(m, t.hwmKB / 1024);
  return m;
}

/** A failed step, short: "failed after 54 s: iptables-restore: line 1266104 failed". */
function failure(r: WorkerRun): string | undefined {
  if (!r.error) return undefined;
  const last = r.error.split(': ').slice(-2).join(': ');
  return `failed${r.errorStepS !== undefined ? ` after ${f0(r.errorStepS)} s` : ''}: ${last}`;
}

function pct(xs: number[], p: number): number {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}

interface SyncResult {
  c: SyncCase;
  r: WorkerRun;
}

function report(
  syncs: SyncResult[],
  lat: LatencyResult[],
  skippedLatency: Array<{ mode: ModeKey; services: number; why: string }>,
  meta: { date: string; line: string },
  busy: { share: number; load: string },
  seconds: number,
  versions: { nft: string; iptables: string; legacy: string },
  rounds: number,
  clean: string,
): { md: string; text: string } {
  const byMode = (m: ModeKey, n: number) => syncs.find((s) => s.c.mode === m && s.c.services === n);
  const full = (s: SyncResult | undefined) => s?.r.syncs.find((x) => x.label === 'full');
  const changes = (s: SyncResult | undefined) => s?.r.syncs.filter((x) => x.label.startsWith('change')) ?? [];
  const resync = (s: SyncResult | undefined) => s?.r.syncs.find((x) => x.label === 'resync');
  const capped = (s: SyncResult, step: string): string | undefined => (s.r.timedOut && s.r.timedOut.step === step ? `> ${f0(s.r.timedOut.stepS)} s (killed at the ${s.r.timedOut.capS} s cap)` : undefined);
  const scale = (n: number) => `${thousands(n)} × ${EPS}`;

  // Full sync.
  const fullRows: string[][] = [];
  for (const s of syncs) {
    const f = full(s);
    const t = f && toolOf(f);
    const cap = capped(s, 'full');
    fullRows.push([
      MODES[s.c.mode].label,
      scale(s.c.services),
      f ? thousands(f.lines) : '–',
      f ? f2(f.totalMs / 1000) : (cap ?? failure(s.r) ?? '–'),
      f ? f2(f.planMs / 1000) : '–',
      f ? f2(f.applyMs / 1000) : '–',
      f ? f2(f.cpuMs / 1000) : '–',
      f && t ? `${f2(t.userS ?? NaN)} + ${f2(t.sysS ?? NaN)}` : '–',
      s.r.done ? f0(s.r.done.maxRssKB / 1024) : '–',
      maxToolRssMB(s.r) > 0 ? `${f0(maxToolRssMB(s.r))}${s.r.timedOut && !f ? ' (so far)' : ''}` : '–',
    ]);
  }
  const fullT = table(
    ['mode', 'services × endpoints', 'lines', 'wall s', 'plan s', 'apply s', 'proxy CPU s', 'tool CPU s (user + sys)', 'proxy peak RSS MB', 'tool peak RSS MB'],
    fullRows,
    ['l', 'l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r'],
  );

  // One changed service.
  const chRows: string[][] = [];
  for (const s of syncs) {
    const ch = changes(s);
    if (!ch.length) {
      if (s.c.changes > 0 || s.c.mode !== 'nftables') {
        const cap = capped(s, 'change 1');
        chRows.push([
          MODES[s.c.mode].label,
          scale(s.c.services),
          '0',
          cap ?? (s.c.mode !== 'nftables' ? 'not re-run: every iptables sync is a full one (≥ the full sync above)' : (failure(s.r) ?? '–')),
          '–',
          '–',
          '–',
          '–',
          '–',
        ]);
      }
      continue;
    }
    const tot = ch.map((x) => x.totalMs);
    chRows.push([
      MODES[s.c.mode].label,
      scale(s.c.services),
      `${ch.length}${ch[0]!.mode === 'partial' ? ' partial' : ' full'}`,
      `${f1(median(tot))} (${f1(Math.min(...tot))}–${f1(Math.max(...tot))})`,
      f1(median(ch.map((x) => x.planMs))),
      f1(median(ch.map((x) => x.applyMs))),
      `${f1(median(ch.map((x) => (toolOf(x)?.userS ?? NaN) * 1000)))} + ${f1(median(ch.map((x) => (toolOf(x)?.sysS ?? NaN) * 1000)))}`,
      String(median(ch.map((x) => x.lines))),
      f1(median(ch.map((x) => x.translateMs))),
    ]);
  }
  const chT = table(
    ['mode', 'services × endpoints', 'syncs', 'wall ms median (min–max)', 'plan ms', 'apply ms', 'tool CPU ms (user + sys)', 'lines', 'translate ms (all objects)'],
    chRows,
    ['l', 'l', 'l', 'r', 'r', 'r', 'r', 'r', 'r'],
  );

  // Resync (nftables).
  const reRows: string[][] = [];
  for (const s of syncs) {
    if (!s.c.resync) continue;
    const r = resync(s);
    const list = r?.commands.find((c) => / list /.test(c.cmd));
    const t = r && toolOf(r);
    reRows.push([
      MODES[s.c.mode].label,
      scale(s.c.services),
      r ? f2(r.totalMs / 1000) : (capped(s, 'resync') ?? failure(s.r) ?? '–'),
      list ? f0(list.ms) : '–',
      r && t ? f2(t.ms / 1000) : '–',
      r && t ? `${f2(t.userS ?? NaN)} + ${f2(t.sysS ?? NaN)}` : '–',
      r && t ? f0((t.maxRssKB ?? NaN) / 1024) : '–',
    ]);
  }
  const reT = table(['mode', 'services × endpoints', 'wall s', 'reading names ms', 'nft -f s', 'nft CPU s (user + sys)', 'nft peak RSS MB'], reRows, ['l', 'l', 'r', 'r', 'r', 'r', 'r']);

  // Ratios (same run).
  const ratioRows: string[][] = [];
  for (const n of [SMALL, LARGE]) {
    const nf = full(byMode('nftables', n));
    if (!nf) continue;
    for (const m of ['iptables', 'iptables-legacy'] as const) {
      const s = byMode(m, n);
      if (!s) continue;
      const f = full(s);
      const ch = changes(byMode('nftables', n));
      const ipCh = changes(s);
      const other = f ? f.totalMs : s.r.timedOut?.step === 'full' ? s.r.timedOut.stepS * 1000 : NaN;
      const gt = !f && s.r.timedOut ? '> ' : '';
      const oneNft = ch.length ? median(ch.map((x) => x.totalMs)) : NaN;
      const oneIpt = ipCh.length ? median(ipCh.map((x) => x.totalMs)) : f ? f.totalMs : other;
      if (!Number.isFinite(other)) {
        ratioRows.push([`${MODES[m].label} / nftables`, scale(n), failure(s.r) ?? '–', '–']);
        continue;
      }
      ratioRows.push([
        `${MODES[m].label} / nftables`,
        scale(n),
        `${gt}${f1(other / nf.totalMs)}×`,
        `${gt}${f0(oneIpt / oneNft)}×${ipCh.length ? '' : ' (its full sync)'}`,
      ]);
    }
  }
  const ratioT = table(['comparison', 'services × endpoints', 'full sync wall', 'one changed service wall'], ratioRows, ['l', 'l', 'r', 'r']);

  // Latency.
  const latRows: string[][] = [];
  for (const l of lat) {
    const us = l.us;
    const syncS = l.sync?.syncs[0] ? f2(l.sync.syncs[0].totalMs / 1000) : '–';
    if (!us) {
      latRows.push([MODES[l.c.mode].label, thousands(l.c.services), syncS, l.error ?? '–', '–', '–', '–', '–', '–']);
      continue;
    }
    const first = us['first']!;
    const last = us['last']!;
    const direct = us['direct']!;
    const fails = Object.values(l.failed ?? {}).reduce((a, b) => a + b, 0);
    latRows.push([
      MODES[l.c.mode].label,
      thousands(l.c.services),
      syncS,
      `${f0(median(direct))}`,
      `${f0(median(first))} (${f0(pct(first, 90))})`,
      `${f0(median(last))} (${f0(pct(last, 90))})`,
      `${f0(median(last) - median(first))}`,
      f2(median(last) / median(first)),
      String(fails),
    ]);
  }
  for (const s of skippedLatency) latRows.push([MODES[s.mode].label, thousands(s.services), '–', s.why, '', '', '', '', '']);
  const latT = table(
    ['mode', 'services', 'sync s', 'direct to pod µs', 'service #1 µs median (p90)', `service #N µs median (p90)`, '#N − #1 µs', '#N / #1', 'failed'],
    latRows,
    ['l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r'],
  );

  // Goals.
  const nf10 = byMode('nftables', LARGE);
  const full10 = full(nf10);
  const ch10 = changes(nf10);
  const one10 = ch10.length ? median(ch10.map((x) => x.totalMs)) : NaN;
  const nfLat = lat.filter((l) => l.c.mode === 'nftables' && l.us);
  const flat = (l: LatencyResult) => median(l.us!['last']!) - median(l.us!['first']!);
  const nfLatSmall = nfLat.find((l) => l.c.services === SMALL);
  const nfLatLarge = nfLat.find((l) => l.c.services === LARGE);
  // Flat: within one run, service #N costs what #1 costs (both sizes), and what a service adds
  // over connecting to the pod directly (measured interleaved, so machine load falls on both)
  // does not grow from 1,000 to 10,000 services. Absolute µs across the two runs are not
  // compared: they move with the machine's load.
  const extra = (l: LatencyResult) => median(l.us!['first']!) - median(l.us!['direct']!);
  const flatOk =
    nfLatLarge && nfLatSmall
      ? [nfLatSmall, nfLatLarge].every((l) => Math.abs(flat(l)) < 0.25 * median(l.us!['first']!)) &&
        Math.abs(extra(nfLatLarge) - extra(nfLatSmall)) < 0.25 * median(nfLatSmall.us!['first']!)
      : undefined;
  const mark = (ok: boolean | undefined) => (ok === undefined ? '? (not measured)' : ok ? '✓ met' : '✗ missed');
  const t10 = full10 && toolOf(full10);
  const c10tool = ch10.length ? median(ch10.map((x) => ((toolOf(x)?.userS ?? 0) + (toolOf(x)?.sysS ?? 0)) * 1000)) : NaN;
  const goals = [
    `- 10,000 services × 25 endpoints fully synced in under 5 s (nftables): ${mark(full10 ? full10.totalMs < 5000 : undefined)} — ${full10 ? `${f1(full10.totalMs / 1000)} s wall (plan ${f1(full10.planMs / 1000)} s, nft ${f1(full10.applyMs / 1000)} s; nft itself used ${f1((t10?.userS ?? NaN) + (t10?.sysS ?? NaN))} s of CPU and ${f1((t10?.maxRssKB ?? NaN) / 1048576)} GB)` : 'not measured'}.`,
    `- One changed service applied in under 50 ms: ${mark(ch10.length ? one10 < 50 : undefined)} — ${ch10.length ? `${f0(one10)} ms at 10,000 × 25 (median of ${ch10.length}; nft's own CPU ${f0(c10tool)} ms for a ${median(ch10.map((x) => x.lines))}-line transaction), ${f0(median(changes(byMode('nftables', SMALL)).map((x) => x.totalMs)))} ms at 1,000 × 25` : 'not measured'}.`,
    `- First-connection latency flat in the number of services (nftables): ${mark(flatOk)} — ${nfLatSmall && nfLatLarge ? `service #1 / #N: ${f0(median(nfLatSmall.us!['first']!))} / ${f0(median(nfLatSmall.us!['last']!))} µs at 1,000, ${f0(median(nfLatLarge.us!['first']!))} / ${f0(median(nfLatLarge.us!['last']!))} µs at 10,000; over a direct connection to the pod: ${f0(extra(nfLatSmall))} µs at 1,000 and ${f0(extra(nfLatLarge))} µs at 10,000 (criterion: #N within 25% of #1, and the service's extra cost grows by less than 25% of #1)` : 'not measured'}.`,
  ].join('\n');

  const method = [
    `Rule sync: for each mode and size a fresh namespace and one worker process (bench/proxy-worker.ts under \`ip netns exec\`) that generates the objects (ClusterIP services, one TCP port 80 → 8080, ${EPS} ready endpoints each spread over 64 nodes, 1 in 64 local; cluster CIDR 10.128.0.0/10), translates them with the agent's \`Translator\`, and drives ProxyDataplane / IptablesProxyDataplane with a runner that times each command and wraps it in /usr/bin/time (user/system CPU in 10 ms steps and peak RSS of nft or iptables-restore; conntrack cleanup off, TCP only).`,
    `"One changed service": endpoint 0 of a service in the middle gets a new address (a replaced pod), a different service each time; the slice object is replaced (as an informer does) and the objects translated again with the agent's Translator, which re-translates only services whose objects were replaced ("translate ms", shown separately, not in the sync time). nftables makes a partial transaction of it and sends it to the proxy's long-running \`nft -i\` session, as the agent does (its nft's CPU read from /proc in 10 ms ticks); iptables mode has only full syncs. "Resync": one more full sync over the existing table (a restart, or the hourly full sync).`,
    `Wall = the sync call (plan = change tracking, planning, rendering; apply = running the tools, including reading names/iptables-save); proxy CPU = the worker's CPU during the sync; proxy peak RSS = the worker's maxRSS (objects, model, plans, script text). Runs over their cap are killed with their tools and shown as "> N s", with the tool's peak RSS up to then.`,
    `iptables rows: "host default" is \`iptables-restore\` as installed (${versions.iptables}); "legacy" the same planner and executor with iptables-legacy-restore/-save (${versions.legacy}).`,
    `Latency: per mode and size, a node namespace holding the rules, a bridge with two server pods (a TCP server on :8080 each) and a client pod routed through the node (10.244.2.2 → 10.244.2.1); ${'N'} ClusterIP services 10.96.0.1… with the two servers as endpoints (so all of them answer). The client times connect() (SYN → SYN-ACK through the DNAT, Node's \`net.connect\` to the \`connect\` event) to service #1 (${clusterIP(1)}), service #N and straight to a server pod, interleaved with the order rotated, ${rounds} each after a warm-up; median and p90. iptables puts one PODNET-SERVICES rule per service in key order, so #1 is its first rule and #N its last.`,
  ];

  const intro = `Service proxy: rule sync time and memory at 1,000 and 10,000 services × ${EPS} endpoints (nftables, iptables), and first-connection latency against the number of services. Run with \`npm run bench -- proxy\` (root; about 10 min).`;
  const anchor = `Anchor: kube-proxy's nftables mode took 13 min 15 s for one sync of 5,006 services with 250,011 endpoints (about 50 each) on an m6i.8xlarge (32 vCPU, 128 GiB, kernel 6.1.144), and 2 min 13 s on another run (kubernetes/kubernetes#135639).`;
  const machineLine = `${meta.line}; ${versions.nft}; before the run the machine was ${(busy.share * 100).toFixed(0)}% busy with other work (load average ${busy.load})`;

  const findings = findingsText(syncs, lat);

  const md = [
    '## proxy',
    '',
    intro,
    '',
    `- Date: ${meta.date}`,
    `- Machine: ${machineLine}`,
    `- Run time: ${seconds.toFixed(0)} s`,
    `- Method: ${method.join(' ')}`,
    `- ${anchor}`,
    '',
    '### Goals',
    '',
    goals,
    '',
    '### Full sync (empty namespace)',
    '',
    fullT.md,
    '',
    '### One changed service',
    '',
    chT.md,
    '',
    '### Full sync over the existing table (nftables: restart, hourly resync)',
    '',
    reT.md,
    '',
    '### Ratios (same run)',
    '',
    ratioT.md,
    '',
    `### First-connection latency (connect() µs, ${rounds} per target)`,
    '',
    latT.md,
    '',
    '### Where the time goes',
    '',
    findings,
    '',
    `After the run: ${clean}.`,
    '',
  ].join('\n');
  const text = [
    `proxy: ${meta.date}; ${machineLine}; ${seconds.toFixed(0)} s`,
    '',
    goals,
    '',
    'Full sync:',
    fullT.text,
    '',
    'One changed service:',
    chT.text,
    '',
    'Resync:',
    reT.text,
    '',
    'Ratios:',
    ratioT.text,
    '',
    'Latency:',
    latT.text,
    '',
    findings,
    '',
    clean,
  ].join('\n');
  return { md, text };
}

function findingsText(syncs: SyncResult[], lat: LatencyResult[]): string {
  const nf = (n: number) => syncs.find((s) => s.c.mode === 'nftables' && s.c.services === n);
  const ch = (n: number) => nf(n)?.r.syncs.filter((x) => x.label.startsWith('change')) ?? [];
  const c1 = ch(SMALL);
  const c10 = ch(LARGE);
  const sys = (xs: SyncStat[]) => median(xs.map((x) => (toolOf(x)?.sysS ?? NaN) * 1000));
  const usr = (xs: SyncStat[]) => median(xs.map((x) => (toolOf(x)?.userS ?? NaN) * 1000));
  const rss = (xs: SyncStat[]) => median(xs.map((x) => (toolOf(x)?.maxRssKB ?? NaN) / 1024));
  const full10 = nf(LARGE)?.r.syncs.find((x) => x.label === 'full');
  const t10 = full10 && toolOf(full10);
  const ipt1 = syncs.find((s) => s.c.mode === 'iptables' && s.c.services === SMALL);
  const iptFull = ipt1?.r.syncs.find((x) => x.label === 'full');
  const iptTool = iptFull && toolOf(iptFull);
  const leg1 = syncs.find((s) => s.c.mode === 'iptables-legacy' && s.c.services === SMALL)?.r.syncs.find((x) => x.label === 'full');
  const legTool = leg1 && toolOf(leg1);
  const out: string[] = [];
  const chainsAt = (n: number) => nf(n)?.r.syncs.find((x) => x.label === 'full')?.lines;
  out.push(
    `- **Layout (nftables)**: one chain per service port and endpoint set; the endpoints are elements of 256 bucketed maps per protocol (\`dnat ip addr . port to numgen random mod N offset S·65536 map @endpoints-tcp-B\`), and the masquerade decisions that kube-proxy makes in one chain per endpoint (hairpin, an outside source sent to a remote endpoint) are made once in postrouting from two sets of local endpoints. 10,000 × 25 is ${chainsAt(LARGE) !== undefined ? `${thousands(chainsAt(LARGE)!)} lines and ` : ''}about 10,000 chains instead of 260,000, which matters because nft 1.0.6 lists every chain before any \`add rule\` or element command and the kernel's chain dump restarts from the list head for each netlink message (its cost grows with the square of the chain count).`,
  );
  out.push(
    `- **One changed service (nftables)**: a replaced pod is ${c10.length ? median(c10.map((x) => x.lines)) : median(c1.map((x) => x.lines))} lines (delete the endpoint's map key, add it with the new address), sent as one line to the proxy's long-running \`nft -i\` (NftSession; full syncs still run \`nft -f -\`); its nft used ${f0(usr(c1))} ms user + ${f0(sys(c1))} ms system CPU at 1,000 × 25 and ${f0(usr(c10))} + ${f0(sys(c10))} ms at 10,000 × 25 (10 ms clock ticks). A new \`nft -f -\` per change took 25–36 ms at 10,000 × 25 when this was measured (previous run: 45 ms apply): each new nft fills its cache with every chain and set before an element command, and closing its netlink socket took up to 18 ms more; the session keeps both and refreshes its cache only when the ruleset's generation moved. In the proxy process: planning ${f1(median(c10.map((x) => x.planMs)))} ms (the change tracker's fingerprints are cached by object identity, so only the changed service is fingerprinted) and translating ${f1(median(c10.map((x) => x.translateMs)))} ms (the agent's Translator re-translates only services whose Service or EndpointSlice object was replaced; a from-scratch translate of 10,000 × 25 takes about 0.45 s).`,
  );
  if (full10 && t10) {
    const scriptMB = t10.inputBytes / 1048576;
    const peakMB = (nf(LARGE)?.r.done?.maxRssKB ?? NaN) / 1024;
    const listS = (nf(LARGE)?.r.syncs.find((x) => x.label === 'resync')?.commands.find((c) => / list /.test(c.cmd))?.ms ?? NaN) / 1000;
    out.push(
      `- **Full sync (nftables, 10,000 × 25)**: ${thousands(full10.lines)} lines (${f0(scriptMB)} MB), ${f1(full10.planMs / 1000)} s planning and rendering in the proxy process (${f1(full10.cpuMs / 1000)} s CPU), ${f1(full10.applyMs / 1000)} s in nft, which used ${f1(t10.userS ?? NaN)} s user (parsing and evaluating) + ${f1(t10.sysS ?? NaN)} s system (the kernel building the table) and ${f1((t10.maxRssKB ?? NaN) / 1048576)} GB of memory; the rest of the wall time is waiting for a CPU. The proxy process peaks at ${f0(peakMB)} MB (the objects, the model, every plan and the script text; ${f0(full10.rssMB)} MB right after the full sync). A full sync over the existing table (table above) costs more: reading the names takes ${f1(listS)} s, and the transaction flushes every chain and endpoint map too.`,
    );
  }
  {
    const host = iptFull && iptTool
      ? `the host's iptables-restore (nf_tables backend) needed ${f0((iptTool.userS ?? NaN) + (iptTool.sysS ?? NaN))} s of CPU (${f0(iptTool.userS ?? NaN)} s of it in user space) for 1,000 × 25`
      : ipt1?.r.timedOut
        ? `the host's iptables-restore (nf_tables backend) did not finish 1,000 × 25 within its ${ipt1.r.timedOut.capS} s cap`
        : undefined;
    const legacy = legTool ? `the legacy one needed ${f1((legTool.userS ?? NaN) + (legTool.sysS ?? NaN))} s of CPU` : undefined;
    const leg10 = syncs.find((x) => x.c.mode === 'iptables-legacy' && x.c.services === LARGE)?.r;
    const leg10Text = leg10?.error
      ? `At 10,000 × 25 the legacy restore ${failure(leg10)}: legacy iptables replaces a table as one blob, and the kernel refuses this one at COMMIT (traced while writing this benchmark: setsockopt IPT_SO_SET_REPLACE of 564 MB → ENOMEM; x_tables caps a table at 512 MB)`
      : leg10?.timedOut
        ? `At 10,000 × 25 the legacy restore did not finish within ${leg10.timedOut.capS} s`
        : undefined;
    if (host || legacy) {
      out.push(
        `- **iptables**: ${[host, legacy].filter(Boolean).join('; ')}. Both grow faster than the rule count (measured on this machine while writing this benchmark: nf_tables backend 200 × 25 in 1.3 s user CPU, 400 × 25 in 7.5 s, 1,000 × 25 in 96 s, 10,000 × 2 in 113 s).${leg10Text ? ` ${leg10Text}.` : ''} Every iptables sync is a full one, and it first reads the whole table back with iptables-save.`,
      );
    }
  }
  const nfL = lat.filter((l) => l.c.mode === 'nftables' && l.us);
  const legL = lat.filter((l) => l.c.mode === 'iptables-legacy' && l.us);
  if (nfL.length && legL.length) {
    const d = (l: LatencyResult) => median(l.us!['last']!) - median(l.us!['first']!);
    out.push(
      `- **Latency**: the nftables path is one verdict-map lookup whatever the number of services (#N − #1: ${nfL.map((l) => `${f0(d(l))} µs at ${thousands(l.c.services)}`).join(', ')}); iptables walks PODNET-SERVICES rule by rule for the first packet of each connection (legacy #N − #1: ${legL.map((l) => `${f0(d(l))} µs at ${thousands(l.c.services)}`).join(', ')}). A connection to no service at all — the "direct to pod" column — walks the whole list too in iptables mode (${legL.map((l) => `${f0(median(l.us!['direct']!))} µs at ${thousands(l.c.services)}`).join(', ')}, against ${nfL.map((l) => `${f0(median(l.us!['direct']!))} µs`).join(' and ')} with nftables): every new connection routed through the node pays it. Later packets of a connection follow conntrack in both modes.`,
    );
  }
  out.push(
    `- **Changed in src/proxy since the run before this one** (2026-11-22 19:42 UTC, same machine): the table had kube-proxy's layout, one chain per endpoint, 260,000 chains at 10,000 × 25; a full sync took 23.6 s (nft 21.2 s, 3.7 GB) and one changed service 3.9 s (nft's own CPU 3.7 s for a 32-line transaction), 119 ms at 1,000 × 25. Only ClientIP-affinity services keep per-endpoint chains now (their affinity sets are per endpoint). The agent re-translated and re-fingerprinted every object on each change then (458 ms and 96 ms at 10,000 × 25).`,
  );
  return out.join('\n');
}

// ---------------------------------------------------------------------------------------

function rootState(): string {
  let ipt = '';
  try {
    ipt = readFileSync('/proc/net/ip_tables_names', 'utf8');
  } catch {
    ipt = '(none)';
  }
  // iptables-save (host default) reads the nf_tables ruleset; the legacy tables are read from
  // /proc/net/ip_tables_names, which does not instantiate any (iptables-legacy-save would).
  const save = sh('iptables-save', []).split('\n').filter((l) => !l.startsWith('#')).join('\n');
  return `${rootSnapshot()}\niptables-save:\n${save}\nlegacy tables: ${ipt.trim()}`;
}

function versionLines(): { nft: string; iptables: string; legacy: string } {
  return { nft: sh('nft', ['--version']), iptables: sh('iptables-restore', ['--version']), legacy: sh('iptables-legacy-restore', ['--version']) };
}

export async function run(args: string[]): Promise<void> {
  const quick = args.includes('--quick');
  const write = !quick && !args.includes('--no-write');
  const unknown = args.filter((a) => a !== '--quick' && a !== '--no-write');
  if (unknown.length > 0) {
    console.error(`bench proxy: unknown option ${unknown.join(' ')} (options: --quick, --no-write)`);
    process.exit(2);
  }
  if (!isRoot()) {
    console.error('bench proxy: needs root (it creates network namespaces)');
    process.exit(1);
  }
  const started = performance.now();
  const say = (m: string) => console.error(`bench proxy: ${m} (${((performance.now() - started) / 1000).toFixed(0)} s)`);
  await sweepLeftovers();
  const before = rootState();
  const busy = await backgroundBusy(2000);
  const versions = versionLines();
  const p = plan(quick);
  const bed = new TestBed('benchproxy');
  let interrupted = false;
  const onSignal = (sig: NodeJS.Signals): void => {
    interrupted = true;
    console.error(`bench proxy: ${sig}, cleaning up`);
    for (const c of children) c.kill('SIGKILL');
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const syncResults: SyncResult[] = [];
  const latResults: LatencyResult[] = [];
  let out: { md: string; text: string } | undefined;
  try {
    for (const c of p.sync) {
      if (interrupted) throw new Error('interrupted');
      const tag = `${c.mode === 'nftables' ? 'nft' : c.mode === 'iptables' ? 'ipt' : 'leg'}-${c.services / 1000}k`;
      const ns = await bed.netns(tag);
      say(`sync ${MODES[c.mode].label}, ${thousands(c.services)} × ${EPS} (cap ${c.capS} s) in ${ns.name}`);
      const spec: WorkerSpec = {
        ...MODES[c.mode].spec,
        services: c.services,
        endpointsPerService: EPS,
        nodeName: 'node0',
        nodeIP: '192.168.1.11',
        clusterCIDR: '10.128.0.0/10',
        changes: c.changes,
        resync: c.resync,
        profile: true,
        commandTimeoutMs: c.capS * 1000 + 60_000,
        tmpDir: mkdtempSync(join(bed.dir, `${tag}-`)),
      };
      const r = await runWorker(ns, spec, c.capS, say);
      if (r.timedOut) say(`  killed at the cap during ${r.timedOut.step} (${r.timedOut.stepS.toFixed(0)} s into it)`);
      if (r.error) say(`  error: ${r.error}`);
      syncResults.push({ c, r });
      await dropNs(ns);
    }
    for (const c of p.latency) {
      if (interrupted) throw new Error('interrupted');
      const tag = `l${c.mode === 'nftables' ? 'nft' : c.mode === 'iptables' ? 'ipt' : 'leg'}${c.services / 1000}k`;
      say(`latency ${MODES[c.mode].label}, ${thousands(c.services)} services`);
      const res: LatencyResult = { c };
      const lb = await latencyBed(bed, tag);
      try {
        const spec: WorkerSpec = {
          ...MODES[c.mode].spec,
          services: c.services,
          endpointsPerService: SERVERS.length,
          endpointIPs: SERVERS,
          nodeName: 'node1',
          nodeIP: '192.168.1.11',
          clusterCIDR: '10.244.0.0/16',
          changes: 0,
          resync: false,
          profile: false,
          commandTimeoutMs: c.capS * 1000,
        };
        res.sync = await runWorker(lb.node, spec, c.capS, say);
        if (res.sync.syncs.length === 0) {
          res.error = res.sync.timedOut ? `sync > ${res.sync.timedOut.stepS.toFixed(0)} s (killed at the cap)` : `sync failed: ${res.sync.error}`;
        } else {
          const targets = [
            { name: 'first', ip: clusterIP(1), port: 80 },
            { name: 'last', ip: clusterIP(c.services), port: 80 },
            { name: 'direct', ip: SERVERS[0], port: 8080 },
          ];
          const { stdout } = await lb.client.exec(NODE, ['-e', CLIENT, JSON.stringify(targets), String(p.rounds), String(p.warmup)], { timeoutMs: 300_000 });
          const raw = JSON.parse(stdout) as Record<string, number[]>;
          res.us = {};
          res.failed = {};
          for (const [k, v] of Object.entries(raw)) {
            res.us[k] = v.filter((x) => x >= 0);
            res.failed[k] = v.length - res.us[k].length;
          }
          say(`  #1 ${median(res.us['first']!).toFixed(0)} µs, #N ${median(res.us['last']!).toFixed(0)} µs, direct ${median(res.us['direct']!).toFixed(0)} µs`);
        }
      } catch (err) {
        res.error = err instanceof Error ? err.message : String(err);
        say(`  error: ${res.error}`);
      } finally {
        for (const ns of lb.all) await dropNs(ns);
      }
      latResults.push(res);
    }
  } finally {
    for (const c of children) c.kill('SIGKILL');
    await bed.cleanup();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }

  // Nothing left behind: namespaces, processes, the root namespace's rules.
  for (let i = 0; i < 50 && children.size > 0; i++) await new Promise((r) => setTimeout(r, 100));
  const problems: string[] = [];
  const left = namespacesWith(bed.id);
  if (left.length) problems.push(`${left.length} namespace(s) ${bed.id}* left`);
  if (children.size) problems.push(`${children.size} child process(es) still running`);
  const after = rootState();
  if (after !== before) problems.push(`root namespace changed:\n--- before\n${before}\n--- after\n${after}`);
  const clean = problems.length
    ? `NOT CLEAN: ${problems.join('; ')}`
    : `clean: no ${bed.id}-* namespaces left, no worker, tool or server process alive, the root namespace's links, \`nft list tables\`, \`iptables-save\` and legacy iptables tables unchanged`;
  if (problems.length) console.error(`bench proxy: ${clean}`);

  const seconds = (performance.now() - started) / 1000;
  out = report(syncResults, latResults, p.skippedLatency, machine(), busy, seconds, versions, p.rounds, clean);
  console.log(out.text);
  if (write) {
    writeSection('proxy', out.md);
    console.error('bench proxy: wrote the "## proxy" section of BENCHMARKS.md');
  }
  if (problems.length) process.exitCode = 1;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await run(process.argv.slice(2));
