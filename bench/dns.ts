/**
 * `npm run bench -- dns`: how many queries a second one `podnet dns` answers, how fast, and
 * what 10,000 services cost it in memory, measured with dnsperf (Debian) the way CoreDNS's
 * published figures were (coredns/deployment, kubernetes/Scaling_CoreDNS.md: one instance on
 * 2 vCPUs, internal names, 33,669 QPS at 2.608 ms average latency).
 *
 * Set-up, as close to a cluster as one machine allows and all of it on this host:
 *   - etcd (Debian etcd-server) in a temp dir, reached over a UNIX socket only (test/support/etcd.ts);
 *   - `podnet dns` as a child process (dist/podnet.mjs; src/cli/main.ts when the bundle predates
 *     the dns command), fed from that etcd by its informers, listening on 127.0.0.1;
 *   - a fake upstream nameserver on 127.0.0.1 that answers every A question with 192.0.2.1
 *     (TTL 300): forwarded names never leave this machine;
 *   - dnsperf sending to 127.0.0.1 and nothing else.
 * dnsperf and the server share the machine's CPUs (the server is one Node thread).
 *
 * Measured:
 *   - memory: the child's RSS with no services, then with 10,000 services (9,000 with a cluster
 *     IP, 1,000 headless) and their 10,000 EndpointSlices (2 and 3 endpoints), loaded into etcd
 *     after it started, so they arrive through the watch; and how long until the last one is
 *     answered;
 *   - three query mixes, each warmed up (2 s), then run flat out (dnsperf's default of 100
 *     queries outstanding) and at a fixed 10,000 QPS, with every reply's latency (dnsperf -v)
 *     turned into percentiles:
 *       internal    svc-K.bench.svc.cluster.local A, K random over the 10,000 services
 *       nxdomain    half of those, half names in the zone that do not exist
 *       searchpath  what a pod's resolver sends with ndots:5 and the search list
 *                   bench.svc.cluster.local svc.cluster.local cluster.local: half lookups of a
 *                   service (first try hits), half of external names (three NXDOMAINs in the
 *                   zone, then the name itself, forwarded once and then served from the cache)
 *
 * Options: --quick (short runs, nothing written), --no-write (do not touch BENCHMARKS.md),
 * --services N (default 10000), --wait-quiet S (first wait up to S seconds for the machine to
 * be < 25% busy with other work).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import * as packet from 'dns-packet';
import type { DecodedPacket, Packet } from 'dns-packet';
import { EtcdDatastore, createInformer, type AnyObject } from '../src/datastore/index.ts';
import { RecordStore } from '../src/dns/store.ts';
import { FrameReader, frame } from '../src/dns/wire.ts';
import { SERVICE_NAME_LABEL } from '../src/dns/translate.ts';
import { ETCD_BIN, startEtcd, type TestEtcd } from '../test/support/etcd.ts';
import { ROOT } from '../test/support/netns.ts';
import { seededRandom } from '../src/proxy/index.ts';
import { CLI, backgroundBusy, cpuJiffies, machine, table, waitQuiet, writeSection } from './common.ts';

const cpus = availableParallelism();

const LOOPBACK = '127.0.0.1';
const NS = 'bench';
const DNSPERF = '/usr/bin/dnsperf';
/** coredns/deployment kubernetes/Scaling_CoreDNS.md, default settings, internal queries. */
const COREDNS = { qps: 33669, avgMs: 2.608 };
/** Its memory formula: MB = (Pods + Services) × 0.000858 + 49.1 (30 MB of it a full cache). */
const COREDNS_MB_PER_OBJECT = 0.000858;

interface Plan {
  services: number;
  warmupS: number;
  flatOutS: number;
  fixedS: number;
  fixedQps: number;
  write: boolean;
}

// ---------------------------------------------------------------------------------------------
// Small helpers

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))] ?? NaN;
}

const fmtMs = (s: number): string => (Number.isFinite(s) ? (s * 1000).toFixed(2) : '-');
const fmtInt = (n: number): string => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '-');
const mb = (bytes: number): string => (bytes / 1048576).toFixed(1);

function rssBytes(pid: number): { rss: number; hwm: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
}

async function metrics(port: number): Promise<string> {
  const res = await fetch(`http://${LOOPBACK}:${port}/metrics`);
  return res.text();
}

function metricValue(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  let found = false;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name + '{') && !line.startsWith(name + ' ')) continue;
    if (!Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) continue;
    sum += Number(line.slice(line.lastIndexOf(' ') + 1));
    found = true;
  }
  return found ? sum : NaN;
}

/** A port free on 127.0.0.1 for TCP and UDP. */
async function freePort(): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, LOOPBACK, () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => resolve(p));
      });
    });
    const ok = await new Promise<boolean>((resolve) => {
      const u = createSocket('udp4');
      u.once('error', () => resolve(false));
      u.bind(port, LOOPBACK, () => u.close(() => resolve(true)));
    });
    if (ok) return port;
  }
}

function udpAsk(port: number, name: string): Promise<DecodedPacket & { rcode: string }> {
  return new Promise((resolve, reject) => {
    const sock = createSocket('udp4');
    const timer = setTimeout(() => {
      sock.close();
      reject(new Error(`no answer for ${name}`));
    }, 1000);
    sock.on('message', (m) => {
      clearTimeout(timer);
      sock.close();
      resolve(packet.decode(m) as DecodedPacket & { rcode: string });
    });
    sock.send(packet.encode({ type: 'query', id: 1, flags: packet.RECURSION_DESIRED, questions: [{ name, type: 'A' }] }), port, LOOPBACK);
  });
}

// ---------------------------------------------------------------------------------------------
// The fake upstream: every A question gets 192.0.2.1 (TTL 300), anything else NODATA.

interface FakeUpstream {
  port: number;
  asked: () => number;
  close(): Promise<void>;
}

function fakeAnswer(q: DecodedPacket): Buffer {
  const question = q.questions?.[0];
  const p: Packet = { type: 'response', id: q.id, flags: packet.RECURSION_AVAILABLE | packet.RECURSION_DESIRED, questions: question ? [question] : [] };
  if (question?.type === 'A') p.answers = [{ name: question.name, type: 'A', ttl: 300, data: '192.0.2.1' }];
  else p.authorities = [{ name: 'example.com', type: 'SOA', ttl: 300, data: { mname: 'ns.example.com', rname: 'h.example.com', serial: 1, refresh: 1, retry: 1, expire: 1, minimum: 300 } }];
  return packet.encode(p);
}

async function fakeUpstream(port: number): Promise<FakeUpstream> {
  let asked = 0;
  const udp: UdpSocket = createSocket('udp4');
  await new Promise<void>((r) => udp.bind(port, LOOPBACK, () => r()));
  udp.on('message', (m, rinfo) => {
    asked++;
    udp.send(fakeAnswer(packet.decode(m)), rinfo.port, rinfo.address);
  });
  const tcp: Server = createServer((sock) => {
    const reader = new FrameReader();
    sock.on('data', (c) => {
      for (const m of reader.push(c)) {
        asked++;
        sock.write(frame(fakeAnswer(packet.decode(m))));
      }
    });
    sock.on('error', () => undefined);
  });
  await new Promise<void>((r) => tcp.listen(port, LOOPBACK, () => r()));
  return {
    port,
    asked: () => asked,
    close: async () => {
      await new Promise<void>((r) => udp.close(() => r()));
      await new Promise<void>((r) => tcp.close(() => r()));
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The cluster: N services with their slices.

function clusterObjects(n: number): AnyObject[] {
  const out: AnyObject[] = [];
  for (let i = 0; i < n; i++) {
    const name = `svc-${i}`;
    const headless = i % 10 === 9;
    const ip = `10.100.${(i + 1) >> 8}.${(i + 1) & 255}`;
    out.push({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { namespace: NS, name },
      spec: headless
        ? { clusterIP: 'None', ports: [{ name: 'http', port: 80, protocol: 'TCP' }], selector: { app: name } }
        : { type: 'ClusterIP', clusterIP: ip, clusterIPs: [ip], ports: [{ name: 'http', port: 80, protocol: 'TCP' }], selector: { app: name } },
    });
    const endpoints = Array.from({ length: headless ? 3 : 2 }, (_, j) => {
      const k = i * 3 + j;
      return {
        addresses: [`10.244.${(k >> 8) & 255}.${k & 255}`],
        conditions: { ready: true },
        ...(headless ? { hostname: `${name}-${j}` } : {}),
        targetRef: { kind: 'Pod', namespace: NS, name: `${name}-${j}` },
      };
    });
    out.push({
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: { namespace: NS, name: `${name}-abcde`, labels: { [SERVICE_NAME_LABEL]: name } },
      addressType: 'IPv4',
      endpoints,
      ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
    });
  }
  return out;
}

async function load(ds: EtcdDatastore, objects: AnyObject[], concurrency = 64): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < objects.length) await ds.create(objects[next++] as AnyObject);
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
}

/**
 * Where the memory goes, measured in this process with forced GCs (which the daemon cannot
 * be asked for): the informers' object caches for Services and EndpointSlices, then the DNS
 * index built from those same objects.
 */
async function heapFootprint(endpoint: string): Promise<{ informers: number; index: number }> {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const heap = (): number => {
    gc();
    gc();
    return process.memoryUsage().heapUsed;
  };
  const ds = new EtcdDatastore({ endpoints: endpoint });
  try {
    await ds.list('Namespace'); // The client's own start-up allocations, before the baseline.
    const h0 = heap();
    const services = createInformer(ds, 'Service');
    const slices = createInformer(ds, 'EndpointSlice');
    await Promise.all([services.start(), slices.start()]);
    // start() resolves with the first list; the watches then take their own snapshot (the
    // mirror they diff against), which is part of what an informer costs: let that happen.
    await sleep(2000);
    const h1 = heap();
    const store = RecordStore.from({ services: services.list(), endpointSlices: slices.list() });
    const h2 = heap();
    if (store.counts().services === 0) throw new Error('no services in the index');
    await Promise.all([services.stop(), slices.stop()]);
    return { informers: h1 - h0, index: h2 - h1 };
  } finally {
    await ds.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Query files

interface Mix {
  key: string;
  label: string;
  file: string;
}

function writeMixes(dir: string, services: number): Mix[] {
  const lines = 100_000;
  // Seeded, so every run sends the same queries.
  const r = seededRandom(20261122);
  const svc = (): string => `svc-${Math.floor(r() * services)}.${NS}.svc.cluster.local A`;
  const internal: string[] = [];
  const nx: string[] = [];
  const search: string[] = [];
  for (let i = 0; i < lines; i++) internal.push(svc());
  for (let i = 0; i < lines; i++) nx.push(r() < 0.5 ? svc() : `nosvc-${Math.floor(r() * services)}.${NS}.svc.cluster.local A`);
  while (search.length < lines) {
    if (r() < 0.5) {
      search.push(svc());
    } else {
      const host = `host-${Math.floor(r() * 1000)}.example.com`;
      search.push(`${host}.${NS}.svc.cluster.local A`, `${host}.svc.cluster.local A`, `${host}.cluster.local A`, `${host} A`);
    }
  }
  const mixes: Array<[string, string, string[]]> = [
    ['internal', 'internal: service A lookups', internal],
    ['nxdomain', 'nxdomain: half services, half missing names in the zone', nx],
    ['searchpath', 'searchpath: a pod with ndots:5, half services, half external names', search],
  ];
  return mixes.map(([key, label, qs]) => {
    const file = join(dir, `${key}.txt`);
    writeFileSync(file, qs.join('\n') + '\n');
    return { key, label, file };
  });
}

// ---------------------------------------------------------------------------------------------
// dnsperf

interface CpuShare {
  /** Seconds of CPU over the run, each a share of one CPU (1 = one CPU all the time). */
  server: number;
  dnsperf: number;
  /** This process, reading dnsperf's per-reply lines. */
  bench: number;
  /** The whole machine (busy over all CPUs), of which the rest is other work. */
  machine: number;
}

interface PerfResult {
  sent: number;
  completed: number;
  lost: number;
  qps: number;
  avg: number;
  rcodes: Record<string, number>;
  /** Sorted reply latencies, seconds. */
  latencies: Float64Array;
  cpu: CpuShare;
}

const CLK_TCK = 100;

/** utime + stime of a process, seconds (/proc/PID/stat fields 14 and 15). */
function cpuSeconds(pid: number | 'self', children = false): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // Fields from the third on: utime is field 14 (index 11 here), cutime 16 (index 13).
  const at = children ? 13 : 11;
  return (Number(f[at]) + Number(f[at + 1])) / CLK_TCK;
}

/**
 * Runs dnsperf and gathers its summary and every reply's latency. `-v` prints a line per reply
 * (a million or more a run); they go to a file and are read once dnsperf is done, because a
 * reader running alongside would share the CPUs with the server and dnsperf (reading them
 * from a pipe as they came took a quarter of a CPU).
 */
function dnsperf(port: number, file: string, seconds: number, serverPid: number, out: string, maxQps?: number): Promise<PerfResult> {
  return new Promise((resolve, reject) => {
    const args = ['-s', LOOPBACK, '-p', String(port), '-d', file, '-l', String(seconds), '-v', ...(maxQps ? ['-Q', String(maxQps)] : [])];
    const m0 = cpuJiffies();
    const s0 = cpuSeconds(serverPid);
    const c0 = cpuSeconds('self', true);
    const b0 = process.cpuUsage();
    const t0 = performance.now();
    const fd = openSync(out, 'w');
    const child = spawn(DNSPERF, args, { stdio: ['ignore', fd, 'pipe'] });
    closeSync(fd);
    let stderr = '';
    child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => {
      const wall = (performance.now() - t0) / 1000;
      const m1 = cpuJiffies();
      const b1 = process.cpuUsage(b0);
      const cpu: CpuShare = {
        server: (cpuSeconds(serverPid) - s0) / wall,
        dnsperf: (cpuSeconds('self', true) - c0) / wall,
        bench: (b1.user + b1.system) / 1e6 / wall,
        machine: ((m1.busy - m0.busy) / Math.max(1, m1.total - m0.total)) * cpus,
      };
      const raw = readFileSync(out, 'latin1');
      rmSync(out, { force: true });
      let lat = new Float64Array(1 << 20);
      let n = 0;
      const summary: string[] = [];
      let start = 0;
      for (let nl = raw.indexOf('\n'); nl >= 0; nl = raw.indexOf('\n', start)) {
        if (raw.charCodeAt(start) === 62 && raw.charCodeAt(start + 1) === 32) {
          // "> NOERROR svc-1.bench.svc.cluster.local A 0.000123": the latency is the last field.
          const v = Number(raw.slice(raw.lastIndexOf(' ', nl) + 1, nl));
          if (Number.isFinite(v)) {
            if (n === lat.length) {
              const grown = new Float64Array(lat.length * 2);
              grown.set(lat);
              lat = grown;
            }
            lat[n++] = v;
          }
        } else {
          summary.push(raw.slice(start, nl));
        }
        start = nl + 1;
      }
      const text = summary.join('\n');
      const num = (re: RegExp): number => Number(re.exec(text)?.[1] ?? NaN);
      if (code !== 0) {
        reject(new Error(`dnsperf exited ${code}: ${stderr.slice(-500)}${text.slice(-500)}`));
        return;
      }
      const rcodes: Record<string, number> = {};
      const rc = /Response codes:\s+(.+)/.exec(text)?.[1] ?? '';
      for (const m of rc.matchAll(/([A-Z]+) (\d+)/g)) rcodes[m[1] as string] = Number(m[2]);
      resolve({
        sent: num(/Queries sent:\s+(\d+)/),
        completed: num(/Queries completed:\s+(\d+)/),
        lost: num(/Queries lost:\s+(\d+)/),
        qps: num(/Queries per second:\s+([\d.]+)/),
        avg: num(/Average Latency \(s\):\s+([\d.]+)/),
        rcodes,
        latencies: lat.slice(0, n).sort(),
        cpu,
      });
    });
  });
}

// ---------------------------------------------------------------------------------------------

/** The newest modification time of any file under `dir`. */
function newest(dir: string): number {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) t = Math.max(t, statSync(join(e.parentPath, e.name)).mtimeMs);
  }
  return t;
}

/** The bundle when it is newer than every source file, else the sources (Node 24 runs them as they are). */
function which(): { cli: string; label: string } {
  if (existsSync(CLI) && statSync(CLI).mtimeMs >= newest(join(ROOT, 'src'))) return { cli: CLI, label: 'dist/podnet.mjs' };
  return { cli: join(ROOT, 'src', 'cli', 'main.ts'), label: 'src/cli/main.ts (dist/podnet.mjs is older than the sources; `node scripts/build.ts` refreshes it)' };
}

export async function run(args: string[]): Promise<void> {
  // Refuse what is not an option of ours before starting anything (a typo must not start a 2-minute run).
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--services' || a === '--wait-quiet') i++;
    else if (a !== '--quick' && a !== '--no-write') {
      console.error(`bench dns: unknown option ${a} (options: --quick, --no-write, --services N, --wait-quiet S)`);
      process.exit(2);
    }
  }
  const quick = args.includes('--quick');
  const sIdx = args.indexOf('--services');
  const plan: Plan = {
    services: sIdx >= 0 ? Number(args[sIdx + 1]) : 10_000,
    warmupS: quick ? 1 : 2,
    flatOutS: quick ? 3 : 15,
    fixedS: quick ? 2 : 10,
    fixedQps: 10_000,
    write: !quick && !args.includes('--no-write'),
  };
  if (!Number.isInteger(plan.services) || plan.services < 1) throw new Error('--services needs a positive count');
  const qIdx = args.indexOf('--wait-quiet');
  const quietS = qIdx >= 0 ? Number(args[qIdx + 1]) : 0;
  for (const [bin, pkg] of [
    [DNSPERF, 'dnsperf'],
    [ETCD_BIN, 'etcd-server'],
  ]) {
    if (!existsSync(bin as string)) throw new Error(`${bin} is missing: apt-get install ${pkg} (scripts/setup.sh does)`);
  }
  const { cli, label: cliLabel } = which();
  const log = (m: string): void => console.error(`bench dns: ${m}`);
  const before = quietS > 0 ? await waitQuiet(quietS * 1000, 0.25, log) : await backgroundBusy();
  log(`machine ${(before.share * 100).toFixed(0)}% busy with other work before the run (load ${before.load})`);
  const started = performance.now();
  const dir = mkdtempSync(join(tmpdir(), 'podnet-bench-dns-'));
  let etcd: TestEtcd | undefined;
  let ds: EtcdDatastore | undefined;
  let upstream: FakeUpstream | undefined;
  let child: ChildProcess | undefined;
  let childExit: Promise<void> | undefined;
  const progress = (text: string): void => console.error(`bench dns: ${text} (${((performance.now() - started) / 1000).toFixed(0)} s)`);
  const onSignal = (): void => {
    if (child?.pid && child.exitCode === null) child.kill('SIGKILL');
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    etcd = await startEtcd();
    ds = new EtcdDatastore({ endpoints: etcd.endpoint });
    const dnsPort = await freePort();
    const metricsPort = await freePort();
    upstream = await fakeUpstream(await freePort());
    const argv = [
      cli, 'dns',
      '--etcd', etcd.endpoint,
      '--listen', `${LOOPBACK}:${dnsPort}`,
      '--metrics-address', `${LOOPBACK}:${metricsPort}`,
      '--upstream', `${LOOPBACK}:${upstream.port}`,
    ];
    const logFile = join(dir, 'dns.log');
    const fd = openSync(logFile, 'w');
    child = spawn(process.execPath, argv, { stdio: ['ignore', fd, fd] });
    closeSync(fd);
    const c = child;
    childExit = new Promise((r) => c.once('exit', () => r()));
    const pid = c.pid as number;
    const healthy = async (): Promise<void> => {
      for (let i = 0; i < 200; i++) {
        if (c.exitCode !== null) throw new Error(`podnet dns exited (${c.exitCode}):\n${readFileSync(logFile, 'utf8').slice(-2000)}`);
        try {
          if ((await fetch(`http://${LOOPBACK}:${metricsPort}/healthz`)).status === 200) return;
        } catch {
          // Not listening yet.
        }
        await sleep(50);
      }
      throw new Error('podnet dns did not become healthy in 10 s');
    };
    await healthy();
    await sleep(1000);
    const idle = rssBytes(pid);
    progress(`podnet dns up (${cliLabel}), RSS ${mb(idle.rss)} MB with no services; loading ${plan.services} services and their slices into etcd`);

    const objects = clusterObjects(plan.services);
    const t0 = performance.now();
    await load(ds, objects);
    const loadedMs = performance.now() - t0;
    await ds.close(); // Its keepalives are not part of the measurement.
    ds = undefined;
    const last = `svc-${plan.services - 1}.${NS}.svc.cluster.local`;
    for (;;) {
      const text = await metrics(metricsPort);
      if (metricValue(text, 'podnet_dns_records', { kind: 'endpointslices' }) >= plan.services) {
        const r = await udpAsk(dnsPort, last).catch(() => undefined);
        if (r?.rcode === 'NOERROR' && (r.answers?.length ?? 0) > 0) break;
      }
      if (performance.now() - t0 > 120_000) throw new Error('the services did not all arrive in 2 minutes');
      await sleep(20);
    }
    const answeredMs = performance.now() - t0;
    await sleep(2000);
    const loaded = rssBytes(pid);
    progress(`${objects.length} objects written in ${(loadedMs / 1000).toFixed(1)} s, all answered after ${(answeredMs / 1000).toFixed(1)} s; RSS ${mb(loaded.rss)} MB`);

    const mixes = writeMixes(dir, plan.services);
    const results: Array<{ mix: Mix; flat: PerfResult; fixed: PerfResult }> = [];
    for (const mix of mixes) {
      const replies = join(dir, 'dnsperf.out');
      await dnsperf(dnsPort, mix.file, plan.warmupS, pid, replies);
      const flat = await dnsperf(dnsPort, mix.file, plan.flatOutS, pid, replies);
      progress(`${mix.key}: ${fmtInt(flat.qps)} QPS flat out, avg ${fmtMs(flat.avg)} ms`);
      const fixed = await dnsperf(dnsPort, mix.file, plan.fixedS, pid, replies, plan.fixedQps);
      progress(`${mix.key}: at ${fmtInt(plan.fixedQps)} QPS p50 ${fmtMs(percentile(fixed.latencies, 0.5))} ms, p99 ${fmtMs(percentile(fixed.latencies, 0.99))} ms`);
      results.push({ mix, flat, fixed });
    }
    const after = rssBytes(pid);
    const m = await metrics(metricsPort);
    const cacheHits = metricValue(m, 'podnet_dns_cache_hits_total');
    const cacheMisses = metricValue(m, 'podnet_dns_cache_misses_total');
    const replyHits = metricValue(m, 'podnet_dns_reply_cache_hits_total');
    const replyMisses = metricValue(m, 'podnet_dns_reply_cache_misses_total');
    const footprint = await heapFootprint(etcd.endpoint);
    progress(`heap: informers ${mb(footprint.informers)} MB, DNS index ${mb(footprint.index)} MB for ${plan.services} services`);
    const seconds = (performance.now() - started) / 1000;

    // ------------------------------------------------------------------------------------------
    // Report
    const meta = machine();
    const perfRows = results.map(({ mix, flat, fixed }) => [
      mix.label,
      fmtInt(flat.qps),
      fmtMs(flat.avg),
      fmtMs(percentile(flat.latencies, 0.5)),
      fmtMs(percentile(flat.latencies, 0.99)),
      `${flat.lost}`,
      fmtMs(percentile(fixed.latencies, 0.5)),
      fmtMs(percentile(fixed.latencies, 0.9)),
      fmtMs(percentile(fixed.latencies, 0.99)),
      fmtMs(percentile(fixed.latencies, 0.999)),
      Object.entries(flat.rcodes).map(([k, v]) => `${k} ${((100 * v) / Math.max(1, flat.completed)).toFixed(0)}%`).join(', '),
    ]);
    const perf = table(
      ['mix', 'QPS flat out', 'avg ms', 'p50 ms', 'p99 ms', 'lost', `p50 ms @${plan.fixedQps / 1000}k`, `p90 ms @${plan.fixedQps / 1000}k`, `p99 ms @${plan.fixedQps / 1000}k`, `p99.9 ms @${plan.fixedQps / 1000}k`, 'rcodes'],
      perfRows,
      ['l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'l'],
    );
    const internal = results[0]?.flat;
    const pct = (share: number): string => `${Math.round(share * 100)}%`;
    const cpuRows = results.map(({ mix, flat }) => {
      const c = flat.cpu;
      return [mix.key, pct(c.server), pct(c.dnsperf), pct(c.bench), pct(Math.max(0, c.machine - c.server - c.dnsperf - c.bench)), `${pct(c.machine)} of ${cpus * 100}%`];
    });
    const cpu = table(['flat-out run', 'podnet dns', 'dnsperf', 'bench process', 'other work', 'machine busy'], cpuRows, ['l', 'r', 'r', 'r', 'r', 'r']);
    // The goal (issue 5): more QPS than CoreDNS's published 33,669 and a p99 below its latency.
    // CoreDNS publishes only an average (2.608 ms), so our p99 is held to that average: stricter.
    const p99 = internal ? percentile(internal.latencies, 0.99) * 1000 : NaN;
    const qpsMet = (internal?.qps ?? 0) > COREDNS.qps;
    const p99Met = p99 < COREDNS.avgMs;
    const verdict = qpsMet && p99Met
      ? `**Goal met**: ${fmtInt(internal?.qps ?? NaN)} QPS > ${fmtInt(COREDNS.qps)}, and p99 ${p99.toFixed(2)} ms < ${COREDNS.avgMs} ms.`
      : `**Goal not met**: ${qpsMet ? '' : `${fmtInt(internal?.qps ?? NaN)} QPS is not above ${fmtInt(COREDNS.qps)}`}${!qpsMet && !p99Met ? '; ' : ''}${p99Met ? '' : `p99 ${p99.toFixed(2)} ms is not below ${COREDNS.avgMs} ms`}.`;
    const goal = `${verdict} The goal: on this 2-CPU machine, with dnsperf (the tool CoreDNS was measured with) sharing the CPUs, more queries a second than CoreDNS's published ${fmtInt(COREDNS.qps)} for internal names, with a p99 latency below CoreDNS's. CoreDNS publishes only an average latency (${COREDNS.avgMs} ms), so our 99th percentile (internal mix, flat out) is compared with that average, which is stricter than comparing averages (ours: ${fmtMs(internal?.avg ?? NaN)} ms). The machine was ${(before.share * 100).toFixed(0)}% busy with other work before the run; the CPU table below shows what else ran during it.`;
    const anchor = table(
      ['server', 'QPS', 'avg latency ms', 'where'],
      [
        ['CoreDNS (default settings), internal names', fmtInt(COREDNS.qps), COREDNS.avgMs.toFixed(3), 'GCE n1-standard-2 (2 vCPUs, both pegged), dnsperf on other nodes'],
        ['podnet dns, internal mix', fmtInt(internal?.qps ?? NaN), fmtMs(internal?.avg ?? NaN), `this machine, one Node thread, dnsperf on the same 2 CPUs`],
        ['ratio podnet / CoreDNS', internal ? `${(internal.qps / COREDNS.qps).toFixed(2)}×` : '-', internal ? `${(internal.avg * 1000 / COREDNS.avgMs).toFixed(2)}×` : '-', ''],
      ],
      ['l', 'r', 'r', 'l'],
    );
    const perTen = ((loaded.rss - idle.rss) * 10_000) / plan.services;
    const per10k = (bytes: number): string => mb((bytes * 10_000) / plan.services);
    const mem = table(
      ['podnet dns process', 'RSS MB'],
      [
        ['no services (after start-up)', mb(idle.rss)],
        [`${fmtInt(plan.services)} services + ${fmtInt(plan.services)} EndpointSlices`, mb(loaded.rss)],
        ['difference, per 10,000 services', per10k(loaded.rss - idle.rss)],
        ['after the query runs (forward cache filled)', mb(after.rss)],
        ['peak (VmHWM)', mb(after.hwm)],
      ],
      ['l', 'r'],
    );
    const heap = table(
      ['V8 heap after GC, per 10,000 services (with their slices)', 'MB'],
      [
        ['informers (Service + EndpointSlice objects: the informer cache and the watch mirror)', per10k(footprint.informers)],
        ['DNS index (RecordStore: slim records and lookup maps)', per10k(footprint.index)],
        ['CoreDNS, by its formula ((Pods + Services) × 0.000858 MB) for 10,000 services', (COREDNS_MB_PER_OBJECT * 10_000).toFixed(1)],
      ],
      ['l', 'r'],
    );
    const text = [
      `podnet dns: ${fmtInt(plan.services)} services, ${cliLabel}`,
      `load: ${objects.length} objects into etcd in ${(loadedMs / 1000).toFixed(1)} s; the last service answered ${(answeredMs / 1000).toFixed(1)} s after the first write`,
      '',
      perf.text,
      '',
      anchor.text,
      '',
      goal.replace(/\*\*/g, ''),
      '',
      cpu.text,
      '',
      mem.text,
      '',
      heap.text,
      '',
      `forward cache: ${fmtInt(cacheHits)} hits, ${fmtInt(cacheMisses)} misses; the fake upstream was asked ${upstream.asked()} times`,
      `reply cache: ${fmtInt(replyHits)} hits, ${fmtInt(replyMisses)} misses`,
      `run time ${seconds.toFixed(0)} s`,
    ].join('\n');
    console.log(text);

    if (plan.write) {
      const md = `## dns

Queries per second and latency of one \`podnet dns\` (dnsperf, Debian), and its memory per 10,000 services. Run with \`npm run bench -- dns\`; dnsperf and etcd come from Debian (scripts/setup.sh installs them); no root needed.

- Date: ${meta.date}
- Machine: ${meta.line}; before the run the machine was ${(before.share * 100).toFixed(0)}% busy with other work (load average ${before.load})
- Run time: ${seconds.toFixed(0)} s
- Server: \`podnet dns\` run as ${cliLabel}, a child process fed by its informers from a real etcd (temp dir, UNIX socket), listening on 127.0.0.1; upstream: a fake nameserver on 127.0.0.1 answering every A question with 192.0.2.1 (TTL 300). dnsperf targets 127.0.0.1 only. dnsperf and the server share the machine's CPUs; the server is one Node thread. Zone answers come from its reply cache (encoded replies reused until the cluster changes) after the first query for each name: ${fmtInt(replyHits)} hits, ${fmtInt(replyMisses)} misses over the whole run.
- Cluster: ${fmtInt(plan.services)} services in one namespace (90% with a cluster IP and 2 endpoints, 10% headless with 3), one EndpointSlice each; written to etcd after the server started (${fmtInt(objects.length)} objects in ${(loadedMs / 1000).toFixed(1)} s, 64 writes in flight), so they reach it through the watch: the last service was answered ${(answeredMs / 1000).toFixed(1)} s after the first write.
- Method: per mix, ${plan.warmupS} s of warm-up, then ${plan.flatOutS} s flat out (dnsperf's default of 100 queries outstanding; "avg" is dnsperf's, percentiles are over every reply's latency from \`dnsperf -v\`), then ${plan.fixedS} s at a fixed ${fmtInt(plan.fixedQps)} QPS (dnsperf paces by sending bursts, up to 100 queries outstanding, so the tail at that rate is mostly queueing behind a burst in one event loop; with 10 outstanding the p99 drops several-fold). Mixes: *internal*, \`svc-K.bench.svc.cluster.local A\` over all services; *nxdomain*, half of those and half names in the zone that do not exist; *searchpath*, what a pod's resolver sends with ndots:5 (\`bench.svc.cluster.local svc.cluster.local cluster.local\`): half service lookups (first try hits), half external names (three NXDOMAINs in the zone, then the name, forwarded once and then answered from the cache; ${fmtInt(cacheHits)} cache hits, ${fmtInt(cacheMisses)} misses).
- Anchor: CoreDNS's published figures (coredns/deployment, kubernetes/Scaling_CoreDNS.md): one instance with default settings on a GCE n1-standard-2 (2 vCPUs, both pegged), dnsperf from other nodes, internal names: ${fmtInt(COREDNS.qps)} QPS at ${COREDNS.avgMs} ms average; memory (Pods + Services) × 0.000858 MB + 49.1 MB.

### Throughput and latency

${perf.md}

### Against CoreDNS

${anchor.md}

${goal}

### CPU during the flat-out runs

Shares of one CPU (100% = one CPU all the time), from /proc: the server, dnsperf (which writes a line per reply to a file, read after the run), this benchmark process, and the rest of the machine's busy time (other work, kernel threads). Flat out, the server and dnsperf each keep about one CPU busy: on this machine a second server thread (SO_REUSEPORT workers) would only take CPU from dnsperf, and dnsperf sends from one socket, so the kernel would hand all its queries to one worker anyway.

${cpu.md}

### Memory

${mem.md}

The RSS difference includes garbage not yet collected and the young generation growing under load; the heap breakdown below is measured in the benchmark process itself, with forced GCs, on the same etcd contents:

${heap.md}
`;
      writeSection('dns', md);
      progress('wrote the "## dns" section of BENCHMARKS.md');
    }
  } finally {
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const killer = setTimeout(() => child?.kill('SIGKILL'), 5000);
      await childExit;
      clearTimeout(killer);
    }
    await ds?.close().catch(() => undefined);
    await etcd?.stop().catch(() => undefined);
    await upstream?.close().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
