/**
 * The child process of `npm run bench -- proxy` (bench/proxy.ts): one proxy mode's syncs,
 * run inside a network namespace the parent made (`ip netns exec NS node bench/proxy-worker.ts
 * SPEC`), so the commands it runs (nft, iptables-restore, …) act on that namespace only and
 * its peak RSS (process.resourceUsage().maxRSS) is this mode's alone.
 *
 * SPEC (JSON, argv[2]): the mode, how many services and endpoints each, the endpoints'
 * addresses (generated, or a fixed list of real servers for the latency test), and how many
 * one-changed-service syncs to time after the full sync. It generates Service and
 * EndpointSlice objects, translates them with the agent's `Translator` and drives ProxyDataplane or
 * IptablesProxyDataplane through a runner that times every command (and, with `profile`,
 * wraps it in /usr/bin/time for its user/system CPU and peak RSS). Every step is printed as
 * one JSON line on stdout as soon as it ends, so a parent that kills a run at its time cap
 * still knows what finished.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { EndpointSlice, Service } from '../src/datastore/types.ts';
import { CommandError, type RunOptions, type RunResult, type Runner } from '../src/kernel/index.ts';
import { IptablesProxyDataplane, ProxyDataplane, Translator } from '../src/proxy/index.ts';

export interface WorkerSpec {
  mode: 'nftables' | 'iptables';
  /** iptables mode: the host's `iptables-restore` (whatever backend it is), or the legacy binaries. */
  iptables?: 'default' | 'legacy';
  services: number;
  endpointsPerService: number;
  /** Every service's endpoints are these addresses (latency test); generated when absent. */
  endpointIPs?: string[];
  /** This node's name; endpoints on it are local. */
  nodeName: string;
  nodeIP: string;
  clusterCIDR: string;
  /** One-changed-service syncs timed after the full sync. */
  changes: number;
  /** Then one more full sync over the existing table (restart, periodic resync). */
  resync: boolean;
  /** Wrap commands in /usr/bin/time (user/sys CPU and peak RSS of nft / iptables-restore). */
  profile: boolean;
  /** Per-command time limit. */
  commandTimeoutMs: number;
  /** Where /usr/bin/time writes (the parent's, removed by it even when it kills this process). */
  tmpDir?: string;
}

/** One command the dataplane ran. */
export interface CommandStat {
  cmd: string;
  ms: number;
  inputBytes: number;
  outputBytes: number;
  /** From /usr/bin/time when profiling. */
  userS?: number;
  sysS?: number;
  maxRssKB?: number;
}

export interface SyncStat {
  label: string;
  mode: string;
  /** Translating every object again before this sync (what the agent does on every change). */
  translateMs: number;
  /** This process's CPU time (user + system) during the sync: planning, rendering, I/O. */
  cpuMs: number;
  totalMs: number;
  planMs: number;
  applyMs: number;
  lines: number;
  commands: CommandStat[];
  rssMB: number;
}

export type WorkerLine =
  | { event: 'generated'; services: number; endpoints: number; generateMs: number; translateMs: number; rssMB: number }
  | { event: 'sync'; sync: SyncStat }
  | { event: 'done'; maxRssKB: number; rssMB: number; cpuMs: number }
  | { event: 'error'; message: string };

const SERVICE_NS = 'bench';

function emit(line: WorkerLine): void {
  process.stdout.write(JSON.stringify(line) + '\n');
}

function ipText(n: number): string {
  return `${(n >>> 24) & 255}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

/** Service i (1-based): svc-00001 …, cluster IP 10.96.0.0 + i, port 80 → 8080. */
export function clusterIP(i: number): string {
  return ipText(((10 << 24) | (96 << 16)) + i);
}

export function serviceName(i: number): string {
  return `svc-${String(i).padStart(5, '0')}`;
}

/**
 * Generated endpoint e (0-based over all services): 64 nodes, node k's pods in 10.(128+k).0.0/16
 * (cluster CIDR 10.128.0.0/10); this node is node0, so 1 in 64 endpoints is local.
 */
function generatedEndpoint(e: number): { ip: string; node: string } {
  const k = e % 64;
  const m = Math.floor(e / 64) + 2;
  return { ip: ipText(((10 << 24) | ((128 + k) << 16)) + m), node: `node${k}` };
}

export function makeCluster(spec: WorkerSpec): { services: Service[]; slices: EndpointSlice[] } {
  const services: Service[] = [];
  const slices: EndpointSlice[] = [];
  for (let i = 1; i <= spec.services; i++) {
    const name = serviceName(i);
    services.push({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name, namespace: SERVICE_NS },
      spec: { type: 'ClusterIP', clusterIP: clusterIP(i), clusterIPs: [clusterIP(i)], ports: [{ name: 'http', port: 80, protocol: 'TCP', targetPort: 8080 }] },
    });
    const endpoints = [];
    for (let j = 0; j < spec.endpointsPerService; j++) {
      const ep = spec.endpointIPs
        ? { ip: spec.endpointIPs[j % spec.endpointIPs.length]!, node: spec.nodeName }
        : generatedEndpoint((i - 1) * spec.endpointsPerService + j);
      endpoints.push({ addresses: [ep.ip], nodeName: ep.node, conditions: { ready: true, serving: true, terminating: false } });
    }
    slices.push({
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: { name: `${name}-abcde`, namespace: SERVICE_NS, labels: { 'kubernetes.io/service-name': name } },
      addressType: 'IPv4',
      ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
      endpoints,
    });
  }
  return { services, slices };
}

/**
 * A runner without the default one's 64 MB output limit and 60 s timeout (iptables-save of
 * 10,000 × 25 services is larger than that), recording each command.
 */
function timedRunner(spec: WorkerSpec, log: CommandStat[]): Runner {
  const dir = spec.tmpDir ?? mkdtempSync(join(tmpdir(), 'podnet-bench-proxy-'));
  if (!spec.tmpDir) process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  let n = 0;
  return (file: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> => {
    const timeFile = join(dir, `t${n++}`);
    const prog = spec.iptables === 'legacy' ? file.replace(/^(ip6?tables)(-save|-restore)?$/, '$1-legacy$2') : file;
    const argv = spec.profile ? ['/usr/bin/time', '-f', '%e %U %S %M', '-o', timeFile, prog, ...args] : [prog, ...args];
    const input = opts.input ?? '';
    return new Promise((resolve, reject) => {
      const t0 = performance.now();
      const child = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      let outBytes = 0;
      child.stdout.on('data', (d: Buffer) => {
        out.push(d);
        outBytes += d.length;
      });
      child.stderr.on('data', (d: Buffer) => err.push(d));
      const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? spec.commandTimeoutMs);
      child.on('error', (e) => {
        clearTimeout(timer);
        reject(new CommandError([file, ...args], null, e.message, e));
      });
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        const stat: CommandStat = { cmd: `${prog} ${args.join(' ')}`, ms: performance.now() - t0, inputBytes: Buffer.byteLength(input), outputBytes: outBytes };
        if (spec.profile) {
          try {
            const [, u, s, m] = readFileSync(timeFile, 'utf8').trim().split('\n').pop()!.split(' ').map(Number);
            Object.assign(stat, { userS: u, sysS: s, maxRssKB: m });
          } catch {
            // Killed before /usr/bin/time wrote.
          }
        }
        log.push(stat);
        const stderr = Buffer.concat(err).toString('utf8');
        if (code === 0) resolve({ stdout: Buffer.concat(out).toString('utf8'), stderr });
        else reject(new CommandError([file, ...args], code, stderr || `killed by ${signal}`));
      });
      child.stdin.on('error', () => undefined);
      child.stdin.end(input);
    });
  };
}

const rssMB = (): number => process.memoryUsage().rss / 1048576;

async function main(): Promise<void> {
  const spec = JSON.parse(process.argv[2] ?? '{}') as WorkerSpec;
  const t0 = performance.now();
  const cluster = makeCluster(spec);
  const t1 = performance.now();
  const input = { nodeName: spec.nodeName, nodeIPs: [spec.nodeIP], clusterCIDR: spec.clusterCIDR };
  // The agent's incremental translator: after a change only the changed service is translated again.
  const translator = new Translator(input.nodeName, input.nodeIPs, input.clusterCIDR);
  let m = translator.translate(cluster.services, cluster.slices);
  const t2 = performance.now();
  if (m.problems.length) throw new Error(`translate: ${m.problems.slice(0, 3).join('; ')}`);
  let eps = 0;
  for (const list of m.endpoints.values()) eps += list.length;
  emit({ event: 'generated', services: m.services.size, endpoints: eps, generateMs: t1 - t0, translateMs: t2 - t1, rssMB: rssMB() });

  const log: CommandStat[] = [];
  const runner = timedRunner(spec, log);
  // nftables: partial syncs go to the agent's long-running `nft -i` session, as in the agent.
  const dp = spec.mode === 'nftables' ? new ProxyDataplane({ runner, conntrack: false, session: true }) : new IptablesProxyDataplane({ runner, conntrack: false });
  /** utime + stime of a process in seconds (clock ticks of 10 ms), or undefined. */
  const cpuOf = (pid: number | undefined): { u: number; s: number } | undefined => {
    if (pid === undefined) return undefined;
    try {
      const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
      return { u: Number(f[11]) / 100, s: Number(f[12]) / 100 };
    } catch {
      return undefined;
    }
  };

  let translateMs = t2 - t1;
  const sync = async (label: string): Promise<void> => {
    log.length = 0;
    const cpu0 = process.cpuUsage();
    const sessionPid = dp instanceof ProxyDataplane ? dp.sessionPid : undefined;
    const s0 = cpuOf(sessionPid);
    const t0 = performance.now();
    const r = await dp.sync(m.services, m.endpoints, m.node);
    const cpu = process.cpuUsage(cpu0);
    // A transaction that went to the session shows up as no command in the runner's log.
    const ran = 'applied' in r ? r.applied : true;
    if (ran && dp instanceof ProxyDataplane && !log.some((c) => / -f -$/.test(c.cmd)) && dp.sessionPid !== undefined) {
      const before = dp.sessionPid === sessionPid ? s0 : { u: 0, s: 0 };
      const after = cpuOf(dp.sessionPid);
      log.push({
        cmd: 'nft -i (session)',
        ms: performance.now() - t0,
        inputBytes: 0,
        outputBytes: 0,
        ...(before && after ? { userS: after.u - before.u, sysS: after.s - before.s } : {}),
      });
    }
    if (!r.ok) throw new Error(`${label}: ${r.problems.map((p) => p.message.slice(0, 400)).join('; ')}`);
    const lines = 'lines' in r.counts ? r.counts.lines : 0;
    emit({
      event: 'sync',
      sync: {
        label,
        mode: 'mode' in r ? r.mode : 'full',
        translateMs,
        cpuMs: (cpu.user + cpu.system) / 1000,
        totalMs: r.timings.totalMs,
        planMs: r.timings.planMs,
        applyMs: r.timings.applyMs,
        lines,
        commands: [...log],
        rssMB: rssMB(),
      },
    });
  };

  await sync('full');
  // One changed service: endpoint 0 of a service in the middle gets a new address (a pod
  // replaced), each time a different service; everything is translated again, as the agent does.
  for (let c = 0; c < spec.changes; c++) {
    const i = Math.floor(spec.services / 2) + c;
    const slice = cluster.slices[i - 1]!;
    // A new object, as an informer delivers an updated slice (objects are never changed in place).
    cluster.slices[i - 1] = {
      ...slice,
      endpoints: [{ ...slice.endpoints[0]!, addresses: [spec.endpointIPs ? spec.endpointIPs[(c + 1) % spec.endpointIPs.length]! : ipText(((10 << 24) | (191 << 16)) + 1000 + c)] }, ...slice.endpoints.slice(1)],
    };
    const t = performance.now();
    m = translator.translate(cluster.services, cluster.slices);
    translateMs = performance.now() - t;
    await sync(`change ${c + 1}`);
  }
  if (spec.resync) {
    translateMs = 0;
    if (dp instanceof ProxyDataplane) dp.requestFullSync();
    await sync('resync');
  }
  const cpu = process.cpuUsage();
  if (dp instanceof ProxyDataplane) dp.close();
  emit({ event: 'done', maxRssKB: process.resourceUsage().maxRSS, rssMB: rssMB(), cpuMs: (cpu.user + cpu.system) / 1000 });
}

// Run only as a program (bench/proxy.ts imports makeCluster and the types).
if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main().catch((err: unknown) => {
    emit({ event: 'error', message: err instanceof Error ? err.message : String(err) });
    process.exitCode = 1;
  });
}
