/**
 * `npm run bench -- lab`: how long the lab takes to come up, to run 500 pods and to go away,
 * all through the real CLI (`node dist/podnet.mjs lab …`), timed from spawn to exit:
 *
 *   - `lab up --nodes 3` and `lab up --nodes 20` (the command returns once every node is
 *     Ready), each followed by `lab down`; alternated, 3 and 2 runs;
 *   - on a last 3-node lab: `lab apply` of one Deployment with replicas 500 (`sleep infinity`);
 *     apply returns once all 500 pods are Ready, so its wall time is "apply → all Ready";
 *   - `lab down` of that lab with its 500 pods.
 *
 * While the 500 pods start, the benchmark also records where the time goes:
 *   - a timeline from a watch on the lab's etcd (this process): when each pod object appeared
 *     (controller), got its node (scheduler pass), got its IP (kubelet: sandbox, CNI ADD and
 *     container done) and turned Ready;
 *   - a system-wide CPU profile (`perf record -e cpu-clock`, when perf is installed), whose
 *     samples are attributed by process tree to the lab's daemons and what they started
 *     (e.g. "kubelet → ip → podnet-bridge → podnet-bridge.sea"), everything else on the
 *     machine counted apart;
 *   - each lab daemon's own CPU and its reaped children's CPU from /proc.
 *
 * Options: --quick (1 run each, 100 pods, nothing written), --no-write, --pods N, --no-profile,
 * --wait-quiet S (first wait up to S seconds for the machine to be < 25% busy with other work).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { EtcdDatastore, createInformer } from '../src/datastore/index.ts';
import { isRoot } from '../test/support/netns.ts';
import { type Proc, backgroundBusy, buildInfo, waitQuiet, checkClean, cpuJiffies, labProcesses, namespacesWith, procAlive, machine, median, podnet, podnetOk, requireBuild, rootSnapshot, sh, table, writeSection } from './common.ts';

const LAB3 = 'bench-lab3';
const LAB20 = 'bench-lab20';
const PERF_HZ = 199;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const s1 = (ms: number): string => (Number.isFinite(ms) ? (ms / 1000).toFixed(1) : '-');
const s2 = (ms: number): string => (Number.isFinite(ms) ? (ms / 1000).toFixed(2) : '-');

function deployment(replicas: number): string {
  return [
    'apiVersion: apps/v1',
    'kind: Deployment',
    'metadata: {name: bench-sleep}',
    'spec:',
    `  replicas: ${replicas}`,
    '  selector: {matchLabels: {app: bench-sleep}}',
    '  template:',
    '    metadata: {labels: {app: bench-sleep}}',
    '    spec:',
    '      containers:',
    '      - name: sleep',
    '        command: ["sleep", "infinity"]',
    '',
  ].join('\n');
}

interface LabStateFile {
  etcdSocket: string;
  daemons: Array<{ role: string; pid: number; log: string }>;
}

function readLabState(lab: string): LabStateFile {
  return JSON.parse(readFileSync(`/run/podnet-lab/${lab}/state.json`, 'utf8')) as LabStateFile;
}

/** A process's own and its reaped children's CPU, in seconds. */
function procCpu(pid: number): { self: number; children: number } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const hz = 100;
    return { self: (Number(f[11]) + Number(f[12])) / hz, children: (Number(f[13]) + Number(f[14])) / hz };
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// The timeline of the pods, from a watch on the lab's etcd

interface PodTimes {
  created?: number;
  bound?: number;
  ip?: number;
  ready?: number;
  node?: string;
}

class Timeline {
  readonly pods = new Map<string, PodTimes>();
  private ds: EtcdDatastore | undefined;
  private abort = new AbortController();
  t0 = performance.now();

  async start(etcdSocket: string): Promise<void> {
    this.ds = new EtcdDatastore({ endpoints: `unix://${etcdSocket}` });
    const inf = createInformer(this.ds, 'Pod');
    const see = (p: { metadata: { uid?: string; labels?: Record<string, string> }; spec?: { nodeName?: string }; status?: { podIP?: string; conditions?: Array<{ type: string; status: string }> } }): void => {
      if (p.metadata.labels?.app !== 'bench-sleep') return; // Only the Deployment's pods (not the lab's own).
      const now = performance.now() - this.t0;
      const uid = p.metadata.uid ?? '';
      let t = this.pods.get(uid);
      if (!t) this.pods.set(uid, (t = { created: now }));
      if (p.spec?.nodeName && t.bound === undefined) {
        t.bound = now;
        t.node = p.spec.nodeName;
      }
      if (p.status?.podIP && t.ip === undefined) t.ip = now;
      if (t.ready === undefined && p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True')) t.ready = now;
    };
    inf.addEventHandler({ onAdd: (p) => see(p as never), onUpdate: (_o, p) => see(p as never) });
    await inf.start(this.abort.signal);
  }

  async stop(): Promise<void> {
    const ds = this.ds;
    this.ds = undefined;
    this.abort.abort();
    await ds?.close().catch(() => undefined);
  }
}

function quantile(xs: number[], q: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))] as number;
}

// ---------------------------------------------------------------------------------------------
// The CPU profile: perf samples attributed along the process tree

interface Profile {
  hz: number;
  samples: number;
  byLabel: Map<string, number>;
  /** Processes started (exec) per label. */
  execs: Map<string, number>;
}

function startPerf(file: string): ChildProcess | undefined {
  if (sh('sh', ['-c', 'command -v perf']) === '?') return undefined;
  return spawn('perf', ['record', '-e', 'cpu-clock', '-F', String(PERF_HZ), '-a', '-q', '-o', file], { stdio: ['ignore', 'ignore', 'pipe'] });
}

async function stopPerf(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  const done = new Promise((r) => p.on('close', r));
  p.kill('SIGINT');
  const t = setTimeout(() => p.kill('SIGKILL'), 20_000);
  await done;
  clearTimeout(t);
}

const KERNEL_THREAD = /^(kworker|ksoftirqd|rcu_|kdamond|migration|kthreadd|irq\/|jbd2|kcompactd|khugepaged|kswapd|cpuhp|kauditd|oom_reaper|writeback|kblockd|watchdog)/;

async function analysePerf(file: string, roots: Map<number, string>): Promise<Profile> {
  const label = new Map<number, string>(roots);
  const byLabel = new Map<string, number>();
  const execs = new Map<string, number>();
  let samples = 0;
  const child = spawn('perf', ['script', '-i', file, '--show-task-events', '-F', 'comm,pid,tid,event'], { stdio: ['ignore', 'pipe', 'ignore'] });
  const rl = createInterface({ input: child.stdout });
  const add = (m: Map<string, number>, k: string): void => void m.set(k, (m.get(k) ?? 0) + 1);
  for await (const line of rl) {
    const m = /^\s*(.*?)\s+(-?\d+)\/(-?\d+)\s+(.*)$/.exec(line);
    if (!m) continue;
    const comm = m[1] as string;
    const pid = Number(m[2]);
    const rest = (m[4] as string).replace(/^[\d.]+:\s*/, '');
    if (rest.startsWith('PERF_RECORD_FORK')) {
      const f = /PERF_RECORD_FORK\((\d+):(\d+)\):\((\d+):(\d+)\)/.exec(rest);
      if (f && f[1] !== f[3] && !roots.has(Number(f[1]))) {
        const parent = label.get(Number(f[3]));
        if (parent !== undefined) label.set(Number(f[1]), parent);
      }
    } else if (rest.startsWith('PERF_RECORD_COMM exec:')) {
      const e = /PERF_RECORD_COMM exec: (.*):(\d+)\/(\d+)/.exec(rest);
      const p = e ? Number(e[2]) : NaN;
      const parent = label.get(p);
      if (e && parent !== undefined && !roots.has(p)) {
        const l = `${parent} → ${e[1]}`;
        label.set(p, l);
        add(execs, l);
      }
    } else if (rest.startsWith('cpu-clock')) {
      samples++;
      let l = label.get(pid);
      if (l === undefined) {
        if (pid === 0) l = 'idle';
        else if (KERNEL_THREAD.test(comm)) l = 'kernel threads';
        else if (comm === 'perf') l = 'perf';
        else l = 'everything else on the machine (not this lab)';
      }
      add(byLabel, l);
    }
  }
  await new Promise((r) => child.on('close', r));
  return { hz: PERF_HZ, samples, byLabel, execs };
}

// ---------------------------------------------------------------------------------------------

interface Run {
  what: string;
  ms: number;
}

export async function run(args: string[]): Promise<void> {
  const quick = args.includes('--quick');
  const write = !quick && !args.includes('--no-write');
  const profile = !args.includes('--no-profile');
  let pods = quick ? 100 : 500;
  let quietS = 0;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === '--quick' || a === '--no-write' || a === '--no-profile') continue;
    if (a === '--pods' && Number(args[i + 1]) > 0) {
      pods = Math.floor(Number(args[++i]));
      continue;
    }
    if (a === '--wait-quiet' && Number(args[i + 1]) > 0) {
      quietS = Number(args[++i]);
      continue;
    }
    console.error(`bench lab: unknown option ${a} (options: --quick, --no-write, --pods N, --no-profile, --wait-quiet S)`);
    process.exit(2);
  }
  if (!isRoot()) {
    console.error('bench lab: needs root (the lab makes network namespaces)');
    process.exit(1);
  }
  requireBuild();
  const build = buildInfo();
  const started = performance.now();
  const log = (m: string): void => console.error(`bench lab: ${m} (${((performance.now() - started) / 1000).toFixed(0)} s)`);
  const before = rootSnapshot();
  const { share: busyBefore, load: loadBefore, waitedMs } = quietS > 0 ? await waitQuiet(quietS * 1000, 0.25, log) : { ...(await backgroundBusy()), waitedMs: 0 };
  const measuredFrom = performance.now();
  log(`machine busy ${(busyBefore * 100).toFixed(0)}% before the run (load ${loadBefore})`);

  const tmp = mkdtempSync(join(tmpdir(), 'podnet-bench-lab-'));
  const runs: Run[] = [];
  const labs = new Set<string>();
  let procs: Proc[] = [];
  let perf: ChildProcess | undefined;
  let timeline: Timeline | undefined;
  let interrupted = false;
  const onSignal = (sig: NodeJS.Signals): void => {
    interrupted = true;
    console.error(`bench lab: ${sig}, cleaning up after the current step`);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const check = (): void => {
    if (interrupted) throw new Error('interrupted');
  };

  const up = async (lab: string, nodes: number): Promise<number> => {
    check();
    labs.add(lab);
    const r = await podnetOk(['lab', 'up', '--nodes', String(nodes), '--backend', 'vxlan', '--name', lab], { timeoutMs: 180_000 });
    runs.push({ what: `up${nodes}`, ms: r.ms });
    log(`lab up --nodes ${nodes}: ${s2(r.ms)} s`);
    return r.ms;
  };
  const down = async (lab: string, what: string): Promise<number> => {
    procs = procs.concat(labProcesses(lab));
    const r = await podnetOk(['lab', 'down', '--name', lab], { timeoutMs: 180_000 });
    runs.push({ what, ms: r.ms });
    log(`lab down (${what}): ${s2(r.ms)} s — ${r.stdout.trim()}`);
    labs.delete(lab);
    return r.ms;
  };

  let md = '';
  let text = '';
  let cleanText = '';
  try {
    // Up and down, alternating sizes so that drift in the machine's load hits both.
    const sizes = quick ? [3, 20] : [3, 20, 3, 20];
    for (const n of sizes) {
      const lab = n === 3 ? LAB3 : LAB20;
      await up(lab, n);
      await down(lab, `down${n}`);
    }
    // The lab for the pods: its up time is one more 3-node sample.
    await up(LAB3, 3);
    const state = readLabState(LAB3);
    const daemons = state.daemons;
    await sleep(1000); // Let the daemons' start-up settle (first heartbeats, informer syncs).

    // 500 pods.
    timeline = new Timeline();
    await timeline.start(state.etcdSocket);
    const perfFile = join(tmp, 'perf.data');
    perf = profile ? startPerf(perfFile) : undefined;
    if (perf) await sleep(500); // perf's own start-up, before the clock starts.
    const cpu0 = cpuJiffies();
    const dcpu0 = new Map(daemons.map((d) => [d.pid, procCpu(d.pid)]));
    timeline.t0 = performance.now();
    check();
    const applyP = podnet(['lab', 'apply', '-f', '-', '--wait', '300', '--name', LAB3], { input: deployment(pods), timeoutMs: 330_000 });
    // The apply CLI's PID, for the profile: the newest child of this process running podnet.
    await sleep(50);
    const applyPid = Number(sh('pgrep', ['-n', '-P', String(process.pid), '-f', 'podnet.mjs lab apply']));
    let applyCpu: { self: number; children: number } | undefined;
    const applyCpuTimer = setInterval(() => {
      const c = Number.isFinite(applyPid) ? procCpu(applyPid) : undefined;
      if (c) applyCpu = c;
    }, 200);
    const apply = await applyP;
    clearInterval(applyCpuTimer);
    const applyMs = apply.ms;
    const cpu1 = cpuJiffies();
    const dcpu1 = new Map(daemons.map((d) => [d.pid, procCpu(d.pid)]));
    if (perf) await stopPerf(perf);
    await timeline.stop();
    if (apply.code !== 0) throw new Error(`lab apply failed (exit ${apply.code}): ${apply.stderr.trim().slice(-2000)}`);
    log(`lab apply of ${pods} pods → all Ready: ${s2(applyMs)} s`);

    // Confirm with the CLI: every pod Running and Ready.
    const got = JSON.parse((await podnetOk(['lab', 'get', 'pods', '-o', 'json', '--name', LAB3])).stdout) as { items: Array<{ status?: { phase?: string; conditions?: Array<{ type: string; status: string }> } }> };
    const readyCount = got.items.filter((p) => p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True')).length;
    if (readyCount !== pods) throw new Error(`expected ${pods} Ready pods, lab get pods shows ${readyCount}`);

    // Kubelet logs: errors during the run.
    const logDir = `/run/podnet-lab/${LAB3}/logs`;
    let logErrors = 0;
    let logStarted = 0;
    const errorKinds = new Map<string, number>();
    for (const f of readdirSync(logDir).filter((x) => x.startsWith('kubelet-'))) {
      for (const l of readFileSync(join(logDir, f), 'utf8').split('\n')) {
        if (l.includes('pod started')) logStarted++;
        let rec: { level?: number | string; msg?: string; error?: unknown; err?: unknown } | undefined;
        try {
          rec = JSON.parse(l);
        } catch {
          continue;
        }
        if (!rec || !(Number(rec.level) >= 50 || rec.level === 'error')) continue;
        logErrors++;
        const detail = String(rec.error ?? rec.err ?? '').replace(/[0-9a-f]{8}-[0-9a-f-]{27,}/g, 'UID').replace(/\d+/g, 'N').slice(0, 160);
        const k = `${rec.msg ?? '?'}${detail ? `: ${detail}` : ''}`;
        errorKinds.set(k, (errorKinds.get(k) ?? 0) + 1);
      }
    }
    const errorSummary = [...errorKinds.entries()].sort((a, b) => b[1] - a[1]).slice(0, 5).map(([k, n]) => `${n}× "${k}"`).join('; ');

    let prof: Profile | undefined;
    if (perf) {
      const roots = new Map<number, string>();
      for (const d of daemons) roots.set(d.pid, d.role.split('/')[0] as string);
      if (Number.isFinite(applyPid)) roots.set(applyPid, 'lab apply (CLI, polls pods every 100 ms)');
      roots.set(process.pid, 'this benchmark (watch)');
      log('analysing the CPU profile');
      prof = await analysePerf(perfFile, roots);
    }

    // The 500 pods' lab goes down with its pods, profiled as well: the CPU (perf) and a
    // timeline of what is left (daemons, pods' processes, namespaces), sampled every 100 ms.
    let downProf: Profile | undefined;
    const downProcs = labProcesses(LAB3);
    procs = procs.concat(downProcs);
    const daemonSet = new Set(daemons.map((d) => d.pid));
    let liveDaemons = downProcs.filter((p) => daemonSet.has(p.pid));
    let livePods = downProcs.filter((p) => !daemonSet.has(p.pid));
    const ns0 = namespacesWith(`pnl.${LAB3}.`).length;
    const downFile = join(tmp, 'perf-down.data');
    perf = profile ? startPerf(downFile) : undefined;
    if (perf) await sleep(500);
    let downPid = NaN;
    const marks: { daemonsGone?: number; podsGone?: number; firstNsGone?: number; allNsGone?: number } = {};
    const t0down = performance.now();
    const sampler = setInterval(() => {
      const t = performance.now() - t0down;
      if (!Number.isFinite(downPid) && t < 2000) downPid = Number(sh('pgrep', ['-n', '-P', String(process.pid), '-f', 'podnet.mjs lab down']));
      liveDaemons = liveDaemons.filter(procAlive);
      livePods = livePods.filter(procAlive);
      const ns = namespacesWith(`pnl.${LAB3}.`).length;
      if (liveDaemons.length === 0) marks.daemonsGone ??= t;
      if (livePods.length === 0) marks.podsGone ??= t;
      if (ns < ns0) marks.firstNsGone ??= t;
      if (ns === 0) marks.allNsGone ??= t;
    }, 100);
    const downRun = await podnetOk(['lab', 'down', '--name', LAB3], { timeoutMs: 180_000 });
    clearInterval(sampler);
    runs.push({ what: `down3+${pods}`, ms: downRun.ms });
    labs.delete(LAB3);
    log(`lab down (${pods} pods): ${s2(downRun.ms)} s — ${downRun.stdout.trim()}`);
    if (perf) {
      await stopPerf(perf);
      const roots = new Map<number, string>();
      for (const d of daemons) roots.set(d.pid, d.role.split('/')[0] as string);
      if (Number.isFinite(downPid)) roots.set(downPid, 'lab down (CLI)');
      roots.set(process.pid, 'this benchmark');
      downProf = await analysePerf(downFile, roots);
    }
    const downTimeline =
      `\`lab down\` with ${pods} pods, sampled every 100 ms from spawn: the ${daemons.length} daemons were gone at ` +
      `${s2(marks.daemonsGone ?? NaN)} s, the pods' ${downProcs.length - daemons.length} processes at ${s2(marks.podsGone ?? NaN)} s, ` +
      `the first of ${ns0} namespaces at ${s2(marks.firstNsGone ?? NaN)} s and the last at ${s2(marks.allNsGone ?? NaN)} s; ` +
      `the command exited at ${s2(downRun.ms)} s.`;

    // ----- Report
    const med = (w: string): number => median(runs.filter((r) => r.what === w).map((r) => r.ms));
    const all = (w: string): string => runs.filter((r) => r.what === w).map((r) => s2(r.ms)).join(', ');
    const goal = (ok: boolean): string => (ok ? 'met' : 'MISSED');
    const sumRows = [
      ['lab up --nodes 3 (until all nodes Ready)', s2(med('up3')), all('up3'), `< 5 s: ${goal(med('up3') < 5000)}`],
      ['lab down (3 nodes, no pods)', s2(med('down3')), all('down3'), ''],
      ['lab up --nodes 20 (until all nodes Ready)', s2(med('up20')), all('up20'), ''],
      ['lab down (20 nodes, no pods)', s2(med('down20')), all('down20'), ''],
      [`lab apply: Deployment of ${pods} × sleep infinity on 3 nodes → all Ready`, s2(applyMs), s2(applyMs), pods === 500 ? `< 60 s: ${goal(applyMs < 60_000)}` : ''],
      [`lab down (3 nodes, ${pods} pods)`, s2(med(`down3+${pods}`)), all(`down3+${pods}`), ''],
    ];
    const summary = table(['what', 'median s', 'runs (s)', 'goal'], sumRows, ['l', 'r', 'r', 'l']);

    // Timeline.
    const ts = [...timeline.pods.values()];
    const stage = (k: 'created' | 'bound' | 'ip' | 'ready'): number[] => ts.map((t) => t[k]).filter((x): x is number => x !== undefined);
    const tlRows = (
      [
        ['created', 'pod object created (controller)'],
        ['bound', 'bound to a node (controller scheduling pass)'],
        ['ip', 'IP reported (kubelet: netns, CNI ADD, container started, status written)'],
        ['ready', 'Ready reported (kubelet, second status write)'],
      ] as const
    ).map(([k, l]) => {
      const xs = stage(k);
      return [l, String(xs.length), s2(quantile(xs, 0.01)), s2(quantile(xs, 0.5)), s2(quantile(xs, 0.9)), s2(Math.max(...xs))];
    });
    const tl = table(['stage (s after apply started)', 'pods', 'first', 'median', '90%', 'last'], tlRows, ['l', 'r', 'r', 'r', 'r', 'r']);
    const lat = (a: 'created' | 'bound' | 'ip', b: 'bound' | 'ip' | 'ready'): number[] => ts.filter((t) => t[a] !== undefined && t[b] !== undefined).map((t) => (t[b] as number) - (t[a] as number));
    const latRows = (
      [
        ['created', 'bound', 'created → bound'],
        ['bound', 'ip', 'bound → IP (kubelet work incl. waiting for CPU)'],
        ['ip', 'ready', 'IP → Ready'],
      ] as const
    ).map(([a, b, l]) => {
      const xs = lat(a, b);
      return [l, s2(quantile(xs, 0.5)), s2(quantile(xs, 0.9)), s2(Math.max(...xs))];
    });
    const latT = table(['per pod', 'median s', '90% s', 'max s'], latRows, ['l', 'r', 'r', 'r']);
    const perNode = new Map<string, number>();
    for (const t of ts) if (t.node) perNode.set(t.node, (perNode.get(t.node) ?? 0) + 1);
    const lastCreated = Math.max(...stage('created'));
    const lastBound = Math.max(...stage('bound'));
    const lastIP = Math.max(...stage('ip'));
    const lastReady = Math.max(...stage('ready'));

    // CPU.
    const cpuBusy = (cpu1.busy - cpu0.busy) / 100; // USER_HZ
    const cpuTotal = (cpu1.total - cpu0.total) / 100;
    const dRows: string[][] = [];
    const byRole = new Map<string, { self: number; children: number; n: number }>();
    for (const d of daemons) {
      const a = dcpu0.get(d.pid);
      const b = dcpu1.get(d.pid);
      if (!a || !b) continue;
      const role = d.role.split('/')[0] as string;
      const x = byRole.get(role) ?? { self: 0, children: 0, n: 0 };
      x.self += b.self - a.self;
      x.children += b.children - a.children;
      x.n++;
      byRole.set(role, x);
    }
    for (const [role, x] of [...byRole.entries()].sort((a, b) => b[1].self + b[1].children - (a[1].self + a[1].children))) {
      dRows.push([`${role}${x.n > 1 ? ` (${x.n})` : ''}`, x.self.toFixed(1), x.children.toFixed(1)]);
    }
    if (applyCpu) dRows.push(['lab apply CLI', applyCpu.self.toFixed(1), applyCpu.children.toFixed(1)]);
    const dT = table(['process', 'own CPU s', 'reaped children CPU s'], dRows, ['l', 'r', 'r']);

    let profMd = '';
    let profText = '';
    let profSummary = '';
    if (prof) {
      const secs = (n: number): number => n / prof.hz;
      const totalS = secs(prof.samples);
      const rows = [...prof.byLabel.entries()].sort((a, b) => b[1] - a[1]);
      const shown = rows.filter(([, n]) => secs(n) >= 0.1 || n / prof.samples >= 0.005);
      const rest = rows.filter((r) => !shown.includes(r)).reduce((a, [, n]) => a + n, 0);
      const pRows = shown.map(([l, n]) => {
        const ex = prof.execs.get(l);
        return [l, secs(n).toFixed(1), `${((100 * n) / prof.samples).toFixed(1)}%`, ex ? String(ex) : '', l === 'idle' || l.startsWith('everything') || l === 'kernel threads' || l === 'perf' ? '' : ((secs(n) * 1000) / pods).toFixed(1)];
      });
      if (rest > 0) pRows.push(['(smaller items)', secs(rest).toFixed(1), `${((100 * rest) / prof.samples).toFixed(1)}%`, '', '']);
      const pT = table(['process (by process tree; → = started, exec chain)', 'CPU s', 'share', 'processes', `ms per pod`], pRows, ['l', 'r', 'r', 'r', 'r']);
      profMd = pT.md;
      profText = pT.text;
      // Grouped: what each kind of work costs.
      const group = (f: (l: string) => boolean): number => secs(rows.filter(([l]) => f(l)).reduce((a, [, n]) => a + n, 0));
      const cni = group((l) => /podnet-bridge|podnet-ipam/.test(l));
      const agentJs = group((l) => l === 'agent');
      const agentKids = group((l) => l.startsWith('agent →'));
      const ipOnly = group((l) => /^kubelet → ip$/.test(l));
      const kubeletJs = group((l) => l === 'kubelet');
      const etcd = group((l) => l === 'etcd');
      const ctrl = group((l) => l === 'controller');
      const applyCli = group((l) => l.startsWith('lab apply'));
      const other = group((l) => l.startsWith('everything'));
      const idle = group((l) => l === 'idle');
      profSummary =
        `Of ${totalS.toFixed(0)} CPU-seconds (${(totalS / (applyMs / 1000)).toFixed(1)} CPUs × ${s1(applyMs)} s, ${PERF_HZ} Hz samples): ` +
        `CNI plugin processes ${cni.toFixed(1)} s (${((cni * 1000) / pods).toFixed(0)} ms/pod), ` +
        `agents (with the warm CNI server, when there is one) ${agentJs.toFixed(1)} s and the processes they start ${agentKids.toFixed(1)} s, ` +
        `\`ip\` processes the kubelet runs (netns add, link set lo up, netns exec for plugins and containers) ${ipOnly.toFixed(1)} s, ` +
        `kubelet JavaScript ${kubeletJs.toFixed(1)} s, etcd ${etcd.toFixed(1)} s, controller ${ctrl.toFixed(1)} s, ` +
        `the apply CLI ${applyCli.toFixed(1)} s, idle ${idle.toFixed(1)} s, other work on the machine ${other.toFixed(1)} s.`;
    }

    let downMd = '';
    let downText = '';
    if (downProf) {
      const secs = (n: number): number => n / downProf.hz;
      const rows = [...downProf.byLabel.entries()].sort((a, b) => b[1] - a[1]);
      const shown = rows.filter(([, n]) => n / downProf.samples >= 0.01);
      const rest = rows.filter((r) => !shown.includes(r)).reduce((a, [, n]) => a + n, 0);
      const dRows2 = shown.map(([l, n]) => [l, secs(n).toFixed(1), `${((100 * n) / downProf.samples).toFixed(1)}%`, String(downProf.execs.get(l) ?? '')]);
      if (rest > 0) dRows2.push(['(smaller items)', secs(rest).toFixed(1), `${((100 * rest) / downProf.samples).toFixed(1)}%`, '']);
      const t = table(['process (by process tree)', 'CPU s', 'share', 'processes'], dRows2, ['l', 'r', 'r', 'r']);
      const wall = med(`down3+${pods}`) / 1000;
      const intro = `CPU profile of \`lab down\` with ${pods} pods (${s1(wall * 1000)} s wall, ${secs(downProf.samples).toFixed(0)} CPU-s sampled incl. perf's start and stop):`;
      downMd = [downTimeline, '', intro, '', t.md, ''].join('\n');
      downText = [downTimeline, '', intro, t.text, ''].join('\n');
    } else {
      downMd = downTimeline + '\n';
      downText = downTimeline + '\n';
    }

    const meta = machine();
    const seconds = (performance.now() - measuredFrom) / 1000;
    const timelineSummary =
      `All ${pods} pod objects existed ${s2(lastCreated)} s after apply started and all were bound by ${s2(lastBound)} s ` +
      `(${[...perNode.entries()].sort().map(([n, c]) => `${n} ${c}`).join(', ')}); the last IP was reported at ${s2(lastIP)} s and the ` +
      `last Ready at ${s2(lastReady)} s; apply returned at ${s2(applyMs)} s. ` +
      `Machine CPU during apply: ${((100 * cpuBusy) / Math.max(1, cpuTotal)).toFixed(0)}% busy (${cpuBusy.toFixed(0)} of ${cpuTotal.toFixed(0)} CPU-s). ` +
      `Kubelet logs: ${logStarted} "pod started", ${logErrors} error lines${logErrors > 0 ? ` (${errorSummary})` : ''}.`;
    const method =
      `Every figure is the wall time of the real CLI (\`node dist/podnet.mjs lab …\`) from spawn to exit; \`lab up\` returns once ` +
      `all nodes are Ready (VXLAN backend, flat topology), \`lab apply\` once all pods of the Deployment are Ready. Ups and downs ` +
      `alternate between 3 and 20 nodes; the 500 pods run on a last 3-node lab started the same way (its up time is one of ` +
      `the 3-node samples), one Deployment with replicas ${pods} of \`sleep infinity\`. During the apply the benchmark watches ` +
      `the lab's etcd for the pods' timeline, reads /proc for CPU, and ${prof ? `records a system-wide \`perf record -e cpu-clock -F ${PERF_HZ}\` profile whose samples are attributed along the process tree (fork/exec events) to the lab's daemons and what they started` : 'takes no perf profile'}.`;
    md = [
      '## lab',
      '',
      'How long the lab takes to come up, to run 500 pods and to go away. Run with `npm run bench -- lab` (root; about 3 min).',
      '',
      `- Date: ${meta.date}`,
      `- Machine: ${meta.line}; before the run the machine was ${(busyBefore * 100).toFixed(0)}% busy with other work (load average ${loadBefore})`,
      `- Build: ${build}`,
      `- Run time: ${seconds.toFixed(0)} s${waitedMs > 0 ? ` (after waiting ${(waitedMs / 1000).toFixed(0)} s for the machine to be quieter)` : ''}`,
      `- Method: ${method}`,
      '',
      '### Times',
      '',
      summary.md,
      '',
      `### Where the ${pods} pods' time goes`,
      '',
      timelineSummary,
      '',
      tl.md,
      '',
      latT.md,
      '',
      ...(prof ? ['CPU profile of the apply (perf):', '', profSummary, '', profMd, ''] : []),
      'CPU of the lab daemons during the apply (/proc; "reaped children" is what the processes they started and waited for used):',
      '',
      dT.md,
      '',
      ...(downMd ? [downMd] : []),
    ].join('\n');
    text = [
      `lab benchmark — ${meta.date}`,
      meta.line,
      '',
      summary.text,
      '',
      timelineSummary,
      '',
      tl.text,
      '',
      latT.text,
      '',
      ...(prof ? [profSummary, '', profText, ''] : []),
      dT.text,
      '',
      downText,
      `run time ${seconds.toFixed(0)} s`,
    ].join('\n');
  } finally {
    if (perf) await stopPerf(perf);
    await timeline?.stop();
    for (const lab of labs) {
      procs = procs.concat(labProcesses(lab));
      const r = await podnet(['lab', 'down', '--name', lab], { timeoutMs: 180_000 });
      if (r.code !== 0) console.error(`bench lab: lab down --name ${lab} failed: ${r.stderr.trim()}`);
    }
    rmSync(tmp, { recursive: true, force: true });
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    const clean = await checkClean([LAB3, LAB20], procs, [], before);
    cleanText = clean.text;
    console.error(`bench lab: ${clean.text}`);
  }
  console.log(text);
  if (write) {
    writeSection('lab', md + `\nAfter the run: ${cleanText}.\n`);
    console.error('bench lab: wrote the "## lab" section of BENCHMARKS.md');
  }
}
