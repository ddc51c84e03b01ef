/**
 * `npm run bench -- dataplane`: TCP throughput (iperf3) between lab pods, side by side with
 * the same paths built by hand from bare kernel parts in namespaces this run makes.
 *
 * Pod paths (two labs of 2 nodes, started with the real CLI and torn down with `lab down`):
 *   same     pod → pod on one node (host-gw lab, node1): veth → cni0 → veth
 *   hostgw   pod on node2 → pod on node1, host-gw backend: veth → cni0 → node2 routes → eth0 →
 *            switch bridge → eth0 → node1 → cni0 → veth
 *   vxlan    the same across the VXLAN backend (podnet.1 devices, pod MTU 1450)
 *
 * Raw baselines, same structure, everything set up by hand with `ip` (pnt-<pid>-benchdp-*):
 *   bridge   a "node" namespace with a bridge and two pod namespaces on veth pairs
 *   routed   switch namespace (bridge) ← veth → two node namespaces (ip_forward, a bridge
 *            each with one pod namespace behind it), one static route per node to the other
 *            node's pod subnet via its underlay address: what host-gw programs
 *   vxlan    the routed structure with a VXLAN device per node (VNI 1, port 4789, nolearning,
 *            static route onlink + permanent neighbour + FDB entry, MTU 1450): what the VXLAN
 *            backend programs, with the kernel's default offloads
 *   vxlan-txoff  the same with TX checksum offload turned off on the VXLAN devices
 *            (`ethtool -K … tx off`, what `--vxlan-tx-checksum off` does); the vxlan pod path
 *            is judged against whichever of the two the lab's agents actually set up (read
 *            from the lab's podnet.1 with ethtool), and both are reported
 *
 * Like for like (built once the labs are up): the bridge, routed and VXLAN baselines again,
 * each node namespace loaded with a copy of the matching lab node's whole nft ruleset (`nft -s
 * list ruleset`: podnet's egress masquerade, on vxlan nodes its notrack chains for the outer
 * packets, and the service proxy's tables; the baselines use the lab's node addresses, so the
 * notrack rules match their outer packets too). Any nat chain makes the kernel track every
 * packet the node forwards (and br_netfilter hands bridged frames to the same hooks), which
 * the bare baselines never do; these rows show how much of a pod path's gap that is. podnet
 * cannot drop the tracking for pod → pod traffic: a reply from a service endpoint to a client
 * pod looks like any pod → pod packet, and on the client's node it must be tracked to be
 * de-NATed (see docs/agent.md). It does drop it for the VXLAN outer packets; one more VXLAN
 * baseline has the lab's rulesets without the notrack chains (the outer packets tracked, as
 * before they existed), so the rows show what they win back.
 *
 * Each test is `iperf3 -c … -t T -J` (client in the "remote" pod, server in the pod on node1),
 * with 1 and 4 parallel streams; every pod path runs right next to its baseline(s) and the
 * order is rotated (and reversed every other repetition) so that the machine's noise falls on
 * both. Figures are the receiver's Gbit/s; medians over the repetitions.
 *
 * Options: --quick (1 repetition, 2 s tests, nothing written), --no-write, --reps N, --time S,
 * --wait-quiet S (first wait up to S seconds for the machine to be < 25% busy with other work).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { release } from 'node:os';
import { performance } from 'node:perf_hooks';
import { run as exec } from '../src/kernel/index.ts';
import { NOTRACK_CHAINS, hasNatChecksumBug } from '../src/agent/vxlan.ts';
import { TestBed, isRoot, sweepLeftovers } from '../test/support/netns.ts';
import { type Proc, backgroundBusy, buildInfo, waitQuiet, checkClean, labProcesses, machine, median, podnet, podnetOk, requireBuild, rootSnapshot, table, writeSection } from './common.ts';

const LAB_HG = 'bdp-hostgw';
const LAB_VX = 'bdp-vxlan';

interface Path {
  key: string;
  label: string;
  /** Runs one iperf3 client; resolves to its JSON. */
  client: (args: string[]) => Promise<string>;
}

interface Sample {
  gbps: number;
  retrans: number;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------
// Raw baselines

async function batch(ns: string, lines: string[]): Promise<void> {
  await exec('ip', ['-n', ns, '-batch', '-'], { input: lines.join('\n') + '\n' });
}

async function sysctl(ns: string, key: string, value: string): Promise<void> {
  await exec('ip', ['netns', 'exec', ns, 'sysctl', '-q', '-w', `${key}=${value}`]);
}

/** A pod namespace behind `node`'s bridge `cni0`: veth pair, address, default route. */
async function plugPod(node: string, pod: string, hostIf: string, addr: string, gw: string, mtu: number): Promise<void> {
  await batch(node, [`link add ${hostIf} mtu ${mtu} type veth peer name eth0 mtu ${mtu} netns ${pod}`, `link set ${hostIf} master cni0 up`]);
  await batch(pod, ['link set lo up', 'link set eth0 up', `addr add ${addr} dev eth0`, `route add default via ${gw}`]);
}

interface Baseline {
  client: string;
  server: string;
  ip: string;
}

/** Loads an nft ruleset (a lab node's, `nft -s list ruleset`) into a namespace of this run. */
async function loadRuleset(ns: string, ruleset: string): Promise<void> {
  await exec('ip', ['netns', 'exec', ns, 'nft', '-f', '-'], { input: ruleset });
}

/** Deletes podnet's VXLAN notrack chains from a namespace (loaded with a lab node's ruleset). */
async function dropNotrack(ns: string, ruleset: string): Promise<void> {
  const present = NOTRACK_CHAINS.filter((name) => ruleset.includes(`chain ${name} {`));
  if (present.length) await exec('ip', ['netns', 'exec', ns, 'nft', '-f', '-'], { input: present.map((name) => `delete chain inet podnet ${name}\n`).join('') });
}

/**
 * Bridge baseline: node namespace with bridge cni0 (10.244.1.1/24), pods .2 (server) and .3
 * (client); `ruleset`: loaded into the node namespace (like for like).
 */
async function makeBridge(bed: TestBed, tag: string, ruleset?: string): Promise<Baseline> {
  const node = await bed.netns(`${tag}-node`);
  const p1 = await bed.netns(`${tag}-p1`);
  const p2 = await bed.netns(`${tag}-p2`);
  await batch(node.name, ['link add cni0 type bridge', 'addr add 10.244.1.1/24 dev cni0', 'link set cni0 up']);
  await plugPod(node.name, p1.name, 'vethp1', '10.244.1.2/24', '10.244.1.1', 1500);
  await plugPod(node.name, p2.name, 'vethp2', '10.244.1.3/24', '10.244.1.1', 1500);
  if (ruleset !== undefined) await loadRuleset(node.name, ruleset);
  return { server: p1.name, client: p2.name, ip: '10.244.1.2' };
}

/**
 * Two-node baselines: switch namespace (bridge seg1), node namespaces n1 (192.168.1.11) and n2
 * (192.168.1.12) each with bridge cni0 (10.244.i.1/24) and one pod (10.244.i.2); the server pod
 * is behind n1, the client behind n2. `mode` picks how the nodes reach each other's pods.
 */
async function makeTwoNode(bed: TestBed, tag: string, mode: 'routed' | 'vxlan' | 'vxlan-txoff', rulesets?: [string, string], tracked = false): Promise<Baseline> {
  const sw = await bed.netns(`${tag}-sw`);
  await batch(sw.name, ['link add seg1 type bridge', 'link set seg1 up']);
  const mtu = mode === 'routed' ? 1500 : 1450;
  const macs = ['02:bd:00:00:00:01', '02:bd:00:00:00:02'];
  const nodes: string[] = [];
  const pods: string[] = [];
  for (const i of [1, 2]) {
    const n = await bed.netns(`${tag}-n${i}`);
    const p = await bed.netns(`${tag}-p${i}`);
    nodes.push(n.name);
    pods.push(p.name);
    await batch(sw.name, [`link add p-n${i} type veth peer name eth0 netns ${n.name}`, `link set p-n${i} master seg1 up`]);
    await batch(n.name, ['link set eth0 up', `addr add 192.168.1.${10 + i}/24 dev eth0`, `link add cni0 mtu ${mtu} type bridge`, `addr add 10.244.${i}.1/24 dev cni0`, 'link set cni0 up']);
    await sysctl(n.name, 'net.ipv4.ip_forward', '1');
    await plugPod(n.name, p.name, `vethp${i}`, `10.244.${i}.2/24`, `10.244.${i}.1`, mtu);
  }
  for (const i of [1, 2]) {
    const j = 3 - i;
    const n = nodes[i - 1] as string;
    if (mode === 'routed') {
      await batch(n, [`route add 10.244.${j}.0/24 via 192.168.1.${10 + j} dev eth0`]);
    } else {
      await batch(n, [
        `link add vx0 address ${macs[i - 1]} mtu 1450 type vxlan id 1 local 192.168.1.${10 + i} dev eth0 dstport 4789 nolearning`,
        `addr add 10.244.${i}.0/32 dev vx0`,
        'link set vx0 up',
        `route add 10.244.${j}.0/24 via 10.244.${j}.0 dev vx0 onlink`,
        `neigh add 10.244.${j}.0 lladdr ${macs[j - 1]} dev vx0 nud permanent`,
      ]);
      await exec('bridge', ['-n', n, 'fdb', 'append', macs[j - 1] as string, 'dev', 'vx0', 'dst', `192.168.1.${10 + j}`, 'self', 'permanent']);
      if (mode === 'vxlan-txoff') await exec('ip', ['netns', 'exec', n, 'ethtool', '-K', 'vx0', 'tx', 'off']);
    }
    if (rulesets) await loadRuleset(n, rulesets[i - 1] as string);
    if (rulesets && tracked) await dropNotrack(n, rulesets[i - 1] as string);
  }
  return { server: pods[0] as string, client: pods[1] as string, ip: '10.244.1.2' };
}

// ---------------------------------------------------------------------------------------------
// iperf3

function parseIperf(json: string): Sample {
  const r = JSON.parse(json) as { error?: string; end?: { sum_received?: { bits_per_second?: number }; sum_sent?: { retransmits?: number } } };
  if (r.error) throw new Error(`iperf3: ${r.error}`);
  const bps = r.end?.sum_received?.bits_per_second;
  if (typeof bps !== 'number') throw new Error('iperf3: no sum_received in its JSON');
  return { gbps: bps / 1e9, retrans: r.end?.sum_sent?.retransmits ?? 0 };
}

function nsClient(ns: string, args: string[]): Promise<string> {
  // iperf3 -J reports its own errors as JSON on stdout (exit 1): keep stdout whatever the exit.
  return new Promise((resolve, reject) => {
    const c = spawn('ip', ['netns', 'exec', ns, 'iperf3', ...args], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let out = '';
    let err = '';
    const timer = setTimeout(() => c.kill('SIGKILL'), 60_000);
    c.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    c.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    c.on('error', reject);
    c.on('close', (code) => {
      clearTimeout(timer);
      if (out.trim().startsWith('{')) resolve(out);
      else reject(new Error(`iperf3 in ${ns} failed (exit ${code}): ${err.trim()}`));
    });
  });
}

async function labClient(lab: string, pod: string, args: string[]): Promise<string> {
  const r = await podnet(['lab', 'exec', '--name', lab, pod, '--', 'iperf3', ...args], { timeoutMs: 60_000, detached: true });
  if (r.stdout.trim().startsWith('{')) return r.stdout;
  throw new Error(`lab exec ${pod} iperf3 (lab ${lab}) failed (exit ${r.code}): ${r.stderr.trim()}`);
}

/** Waits until something listens on TCP 5201 in the namespace (`check` runs `ss` there). */
async function waitListening(what: string, check: () => Promise<string>): Promise<void> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const out = await check().catch(() => '');
    if (/:5201\b/.test(out)) return;
    if (Date.now() > deadline) throw new Error(`${what}: iperf3 -s not listening after 15 s`);
    await sleep(100);
  }
}

// ---------------------------------------------------------------------------------------------
// The labs

function manifest(): string {
  const pod = (name: string, node: string, command: string[]): string =>
    [
      'apiVersion: v1',
      'kind: Pod',
      `metadata: {name: ${name}, labels: {app: bench-dataplane}}`,
      'spec:',
      `  nodeName: ${node}`,
      '  containers:',
      `  - name: main`,
      `    command: ${JSON.stringify(command)}`,
    ].join('\n');
  // No readiness probe on the server: a probe's connection every second would land on iperf3
  // in the middle of a test.
  return [pod('iperf-server', 'node1', ['iperf3', '-s']), pod('client-same', 'node1', ['sleep', 'infinity']), pod('client-remote', 'node2', ['sleep', 'infinity'])].join('\n---\n') + '\n';
}

async function podIPs(lab: string): Promise<Map<string, string>> {
  const r = await podnetOk(['lab', 'get', 'pods', '-o', 'json', '--name', lab]);
  const list = JSON.parse(r.stdout) as { items: Array<{ metadata: { name: string }; status?: { podIP?: string } }> };
  return new Map(list.items.map((p) => [p.metadata.name, p.status?.podIP ?? '']));
}

async function startLab(lab: string, backend: 'host-gw' | 'vxlan', log: (m: string) => void): Promise<{ server: string }> {
  const up = await podnetOk(['lab', 'up', '--nodes', '2', '--backend', backend, '--name', lab], { timeoutMs: 120_000 });
  log(`lab ${lab} (${backend}, 2 nodes) up in ${(up.ms / 1000).toFixed(1)} s`);
  await podnetOk(['lab', 'apply', '-f', '-', '--name', lab], { input: manifest(), timeoutMs: 120_000 });
  const ips = await podIPs(lab);
  const server = ips.get('iperf-server');
  if (!server) throw new Error(`lab ${lab}: iperf-server has no IP`);
  await waitListening(`lab ${lab}`, async () => (await podnet(['lab', 'exec', '--name', lab, 'iperf-server', '--', 'ss', '-Hltn'])).stdout);
  return { server };
}

/** A lab node's nft ruleset without counters, ready for `nft -f`. */
async function labRuleset(lab: string, node: string): Promise<string> {
  return (await podnetOk(['lab', 'exec', '--name', lab, `node/${node}`, '--', 'nft', '-s', 'list', 'ruleset'])).stdout;
}

interface TxFacts {
  /** tx-checksumming of podnet.1 on node1 and node2, as ethtool reports it. */
  offload: [string, string];
  /** The agent's --vxlan-tx-checksum mode, from its metric (undefined: not exported). */
  mode: string | undefined;
}

/** How the vxlan lab's agents set up TX checksum offload on podnet.1. */
async function labTxChecksum(lab: string): Promise<TxFacts> {
  const state = async (node: string): Promise<string> => {
    const out = (await podnetOk(['lab', 'exec', '--name', lab, `node/${node}`, '--', 'ethtool', '-k', 'podnet.1'])).stdout;
    return /^tx-checksumming: (on|off)/m.exec(out)?.[1] ?? '?';
  };
  const metrics = await podnet(['lab', 'exec', '--name', lab, 'node/node1', '--', 'curl', '-s', '--max-time', '5', 'http://127.0.0.1:9402/metrics']);
  const mode = /^podnet_agent_vxlan_tx_checksum_offload\{[^}]*mode="([a-z]+)"/m.exec(metrics.stdout)?.[1];
  return { offload: [await state('node1'), await state('node2')], mode };
}

// ---------------------------------------------------------------------------------------------

export async function run(args: string[]): Promise<void> {
  const quick = args.includes('--quick');
  const write = !quick && !args.includes('--no-write');
  let reps = quick ? 1 : 5;
  let secs = quick ? 2 : 3;
  let quietS = 0;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === '--quick' || a === '--no-write') continue;
    if ((a === '--reps' || a === '--time' || a === '--wait-quiet') && args[i + 1] !== undefined && Number(args[i + 1]) > 0) {
      if (a === '--reps') reps = Math.floor(Number(args[++i]));
      else if (a === '--time') secs = Math.floor(Number(args[++i]));
      else quietS = Number(args[++i]);
      continue;
    }
    console.error(`bench dataplane: unknown option ${a} (options: --quick, --no-write, --reps N, --time S, --wait-quiet S)`);
    process.exit(2);
  }
  if (!isRoot()) {
    console.error('bench dataplane: needs root (it creates network namespaces and labs)');
    process.exit(1);
  }
  requireBuild();
  const build = buildInfo();
  const started = performance.now();
  const elapsed = (): string => `${((performance.now() - started) / 1000).toFixed(0)} s`;
  const log = (m: string): void => console.error(`bench dataplane: ${m} (${elapsed()})`);
  await sweepLeftovers();
  const before = rootSnapshot();
  const busy = quietS > 0 ? await waitQuiet(quietS * 1000, 0.25, log) : { ...(await backgroundBusy()), waitedMs: 0 };
  const measuredFrom = performance.now();
  log(`machine ${(busy.share * 100).toFixed(0)}% busy with other work before the run (load ${busy.load})`);

  const bed = new TestBed('benchdp');
  const servers: ChildProcess[] = [];
  const labsUp: string[] = [];
  let procs: Proc[] = [];
  let interrupted = false;
  const onSignal = (sig: NodeJS.Signals): void => {
    interrupted = true;
    console.error(`bench dataplane: ${sig}, cleaning up after the current test`);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  let cleanText = '';
  let md = '';
  let text = '';
  try {
    const serve = async (b: Baseline): Promise<void> => {
      // Detached, as the lab kubelet starts a container: a session (so a scheduler autogroup)
      // of its own, or the pod's server would get a larger CPU share than this one when the
      // machine is busy.
      const s = spawn('ip', ['netns', 'exec', b.server, 'iperf3', '-s'], { stdio: 'ignore', detached: true });
      servers.push(bed.track(s));
      await waitListening(b.server, async () => (await exec('ip', ['netns', 'exec', b.server, 'ss', '-Hltn'])).stdout);
    };
    // Raw baselines first (cheap), then the labs, then the like-for-like copies of the labs' rules.
    const base = {
      bridge: await makeBridge(bed, 'br'),
      routed: await makeTwoNode(bed, 'rt', 'routed'),
      vxlan: await makeTwoNode(bed, 'vx', 'vxlan'),
      vxlanTxoff: await makeTwoNode(bed, 'vt', 'vxlan-txoff'),
    };
    for (const b of Object.values(base)) await serve(b);
    log('baselines built: bridge, routed, vxlan, vxlan-txoff');

    labsUp.push(LAB_HG);
    const hg = await startLab(LAB_HG, 'host-gw', log);
    labsUp.push(LAB_VX);
    const vx = await startLab(LAB_VX, 'vxlan', log);
    log('lab pods running, iperf3 servers listening');

    const tx = await labTxChecksum(LAB_VX);
    if (tx.offload[0] !== tx.offload[1] || !['on', 'off'].includes(tx.offload[0])) throw new Error(`lab ${LAB_VX}: podnet.1 TX checksum offload is ${tx.offload.join('/')} on node1/node2`);
    const txOn = tx.offload[0] === 'on';
    const asAgent = txOn ? 'raw-vxlan' : 'raw-vxlan-txoff';
    const other = txOn ? 'raw-vxlan-txoff' : 'raw-vxlan';
    log(`vxlan lab: --vxlan-tx-checksum ${tx.mode ?? '?'}, TX checksum offload ${tx.offload[0]} on podnet.1`);
    const [hg1, hg2, vx1, vx2] = await Promise.all([labRuleset(LAB_HG, 'node1'), labRuleset(LAB_HG, 'node2'), labRuleset(LAB_VX, 'node1'), labRuleset(LAB_VX, 'node2')]);
    // The vxlan nodes' notrack rules name the nodes' addresses; the baselines use the same
    // ones (node i is 192.168.1.(10+i)), or the copied rules would not match their packets.
    for (const [i, rules] of [vx1, vx2].entries()) {
      const me = `192.168.1.${11 + i}`;
      const peer = `192\\.168\\.1\\.${12 - i}`;
      if (!new RegExp(`ip daddr ${me.replaceAll('.', '\\.')} udp dport 4789 ip saddr (${peer}|\\{[^}]*\\b${peer}\\b[^}]*\\}) notrack`).test(rules)) {
        throw new Error(`lab ${LAB_VX}: node${i + 1}'s ruleset has no notrack rule for the outer packets to ${me} from its peer:\n${rules}`);
      }
    }
    const ct = {
      bridge: await makeBridge(bed, 'brc', hg1),
      routed: await makeTwoNode(bed, 'rtc', 'routed', [hg1, hg2]),
      vxlan: await makeTwoNode(bed, 'vxc', txOn ? 'vxlan' : 'vxlan-txoff', [vx1, vx2]),
      vxlanTracked: await makeTwoNode(bed, 'vxt', txOn ? 'vxlan' : 'vxlan-txoff', [vx1, vx2], true),
    };
    for (const b of Object.values(ct)) await serve(b);
    const tables = [...hg1.matchAll(/^table (\S+ \S+)/gm)].map((m) => m[1]).join(', ');
    log(`like-for-like baselines built with the lab nodes' nft rulesets (${tables})`);

    const paths: Record<string, Path> = {
      same: { key: 'same', label: 'pod → pod, same node (host-gw lab)', client: (a) => labClient(LAB_HG, 'client-same', ['-c', hg.server, ...a]) },
      bridge: { key: 'bridge', label: 'raw: bare bridge, 2 namespaces on veth pairs', client: (a) => nsClient(base.bridge.client, ['-c', base.bridge.ip, ...a]) },
      hostgw: { key: 'hostgw', label: 'pod → pod, cross-node, host-gw', client: (a) => labClient(LAB_HG, 'client-remote', ['-c', hg.server, ...a]) },
      routed: { key: 'routed', label: 'raw: bare routed path (bridge → node → switch → node → bridge)', client: (a) => nsClient(base.routed.client, ['-c', base.routed.ip, ...a]) },
      vxlan: { key: 'vxlan', label: 'pod → pod, cross-node, vxlan', client: (a) => labClient(LAB_VX, 'client-remote', ['-c', vx.server, ...a]) },
      'raw-vxlan': { key: 'raw-vxlan', label: `raw: bare VXLAN pair, static FDB, default offloads${txOn ? ' (as the agent set it up)' : ''}`, client: (a) => nsClient(base.vxlan.client, ['-c', base.vxlan.ip, ...a]) },
      'raw-vxlan-txoff': { key: 'raw-vxlan-txoff', label: `raw: bare VXLAN pair, TX checksum offload off${txOn ? '' : ' (as the agent set it up)'}`, client: (a) => nsClient(base.vxlanTxoff.client, ['-c', base.vxlanTxoff.ip, ...a]) },
      'bridge-ct': { key: 'bridge-ct', label: "like for like: bare bridge + the lab node's nft ruleset (conntrack on)", client: (a) => nsClient(ct.bridge.client, ['-c', ct.bridge.ip, ...a]) },
      'routed-ct': { key: 'routed-ct', label: "like for like: bare routed path + the lab nodes' nft rulesets", client: (a) => nsClient(ct.routed.client, ['-c', ct.routed.ip, ...a]) },
      'raw-vxlan-ct': { key: 'raw-vxlan-ct', label: `like for like: bare VXLAN pair (TX checksum offload ${tx.offload[0]}, as the agent) + the lab nodes' nft rulesets (outer packets not tracked)`, client: (a) => nsClient(ct.vxlan.client, ['-c', ct.vxlan.ip, ...a]) },
      'raw-vxlan-ct-tracked': {
        key: 'raw-vxlan-ct-tracked',
        label: "the same without podnet's notrack chains: outer packets tracked too (as before they existed)",
        client: (a) => nsClient(ct.vxlanTracked.client, ['-c', ct.vxlanTracked.ip, ...a]),
      },
    };
    const groups: string[][] = [
      ['same', 'bridge', 'bridge-ct'],
      ['hostgw', 'routed', 'routed-ct'],
      ['vxlan', 'raw-vxlan', 'raw-vxlan-txoff', 'raw-vxlan-ct', 'raw-vxlan-ct-tracked'],
    ];
    const streamsList = [1, 4];
    const samples = new Map<string, Sample[]>();
    const keyOf = (p: string, s: number): string => `${p}/${s}`;
    const units = groups.flatMap((g) => streamsList.map((s) => ({ g, s })));
    const total = reps * units.reduce((n, u) => n + u.g.length, 0);
    let done = 0;
    for (let r = 0; r < reps; r++) {
      const order = units.map((_, k) => units[(k + r * 2) % units.length]!);
      for (const u of order) {
        const members = r % 2 === 1 ? [...u.g].reverse() : u.g;
        for (const p of members) {
          if (interrupted) throw new Error('interrupted');
          const path = paths[p]!;
          const iperfArgs = ['-t', String(secs), '-J', ...(u.s > 1 ? ['-P', String(u.s)] : [])];
          let sample: Sample | undefined;
          for (let attempt = 1; !sample; attempt++) {
            try {
              sample = parseIperf(await path.client(iperfArgs));
            } catch (err) {
              if (attempt >= 3) throw err;
              log(`${p} -P ${u.s}: ${err instanceof Error ? err.message : String(err)}; again`);
              await sleep(1000);
            }
          }
          const k = keyOf(p, u.s);
          samples.set(k, [...(samples.get(k) ?? []), sample]);
          done++;
          log(`${done}/${total} rep ${r + 1} ${p.padEnd(15)} ${u.s} stream(s): ${sample.gbps.toFixed(2)} Gbit/s, ${sample.retrans} retransmits`);
        }
      }
    }

    // Report.
    const g = (k: string): number[] => (samples.get(k) ?? []).map((x) => x.gbps);
    const fmt = (x: number): string => (Number.isFinite(x) ? x.toFixed(2) : '-');
    const cell = (k: string): string => {
      const xs = g(k);
      return xs.length > 1 ? `${fmt(median(xs))} (${fmt(Math.min(...xs))}–${fmt(Math.max(...xs))})` : fmt(median(xs));
    };
    const retr = (k: string): string => String(Math.round(median((samples.get(k) ?? []).map((x) => x.retrans))));
    const order = ['same', 'bridge', 'bridge-ct', 'hostgw', 'routed', 'routed-ct', 'vxlan', asAgent, other, 'raw-vxlan-ct', 'raw-vxlan-ct-tracked'];
    const thru = table(
      ['path', '1 stream Gbit/s', 'retr.', '4 streams Gbit/s', 'retr.'],
      order.map((p) => [`${p}: ${paths[p]!.label}`, cell(keyOf(p, 1)), retr(keyOf(p, 1)), cell(keyOf(p, 4)), retr(keyOf(p, 4))]),
      ['l', 'r', 'r', 'r', 'r'],
    );
    /**
     * The median of the per-repetition ratios (the two ran back to back, so slow drifts in the
     * machine's load cancel) and their range.
     */
    const perRep = (a: string, b: string, s: number): number[] => {
      const xs = g(keyOf(a, s));
      const ys = g(keyOf(b, s));
      return xs.map((x, i) => x / (ys[i] ?? NaN)).filter(Number.isFinite);
    };
    const ratio = (a: string, b: string, s: number, goal: boolean): string => {
      const per = perRep(a, b, s);
      const pm = median(per);
      const mark = goal && pm < 0.95 ? ' ✗' : '';
      return per.length > 1 ? `${pm.toFixed(2)}${mark} (${Math.min(...per).toFixed(2)}–${Math.max(...per).toFixed(2)}; ${(median(g(keyOf(a, s))) / median(g(keyOf(b, s)))).toFixed(2)})` : `${pm.toFixed(2)}${mark}`;
    };
    const txWord = `TX checksum offload ${tx.offload[0]}`;
    const pairs: Array<[string, string, string, boolean]> = [
      ['same', 'bridge', '**goal** same-node pod → pod / bare bridge', true],
      ['hostgw', 'routed', '**goal** host-gw pod → pod / bare routed path', true],
      ['vxlan', asAgent, `**goal** vxlan pod → pod / bare VXLAN as the agent set it up (${txWord})`, true],
      ['vxlan', other, `vxlan pod → pod / bare VXLAN with TX checksum offload ${txOn ? 'off' : 'on'} (the other setting)`, false],
      ['same', 'bridge-ct', 'like for like: same-node pod → pod / bare bridge + lab ruleset', false],
      ['hostgw', 'routed-ct', 'like for like: host-gw pod → pod / bare routed + lab rulesets', false],
      ['vxlan', 'raw-vxlan-ct', 'like for like: vxlan pod → pod / bare VXLAN (as the agent) + lab rulesets', false],
      ['bridge-ct', 'bridge', 'cost of the rulesets (conntrack) alone: bare bridge + ruleset / bare bridge', false],
      ['routed-ct', 'routed', 'cost of the rulesets (conntrack) alone: routed', false],
      ['raw-vxlan-ct', asAgent, 'cost of the rulesets (conntrack) alone: VXLAN (outer packets not tracked)', false],
      ['raw-vxlan-ct-tracked', asAgent, 'cost of the rulesets alone, VXLAN with the outer packets tracked too (without the notrack chains)', false],
      ['raw-vxlan-ct', 'raw-vxlan-ct-tracked', 'what the notrack chains win: bare VXLAN + lab rulesets / the same with the outer packets tracked', false],
      ['raw-vxlan-txoff', 'raw-vxlan', 'cost of TX checksum offload off alone: bare VXLAN tx off / default', false],
    ];
    const ratios = table(
      ['comparison', '1 stream', '4 streams'],
      pairs.map(([a, b, l, goal]) => [l, ratio(a, b, 1, goal), ratio(a, b, 4, goal)]),
      ['l', 'r', 'r'],
    );
    // The verdicts, in words: a goal is met when both stream counts reach 0.95.
    const med = (a: string, b: string, s: number): number => median(perRep(a, b, s));
    const verdict = (pod: string, raw: string, like: string, name: string): string => {
      const r1 = med(pod, raw, 1);
      const r4 = med(pod, raw, 4);
      const l1 = med(pod, like, 1);
      const l4 = med(pod, like, 4);
      const met = r1 >= 0.95 && r4 >= 0.95;
      const likeMet = l1 >= 0.95 && l4 >= 0.95;
      const head = `- **${name}: goal ${met ? 'met' : 'not met'}** (${r1.toFixed(2)} / ${r4.toFixed(2)} of the bare path, 1 / 4 streams)`;
      if (met) return `${head}.`;
      return `${head}; like for like, with the lab's nft rules loaded on the bare path (conntrack on), ${l1.toFixed(2)} / ${l4.toFixed(2)}${likeMet ? ': the gap is what the nodes\' nft rules cost (connection tracking), not the pod path itself' : ''}.`;
    };
    const bug = hasNatChecksumBug(release());
    const goals = [
      verdict('same', 'bridge', 'bridge-ct', 'same-node'),
      verdict('hostgw', 'routed', 'routed-ct', 'host-gw'),
      verdict('vxlan', asAgent, 'raw-vxlan-ct', `vxlan (--vxlan-tx-checksum ${tx.mode ?? '?'}: ${txWord})`),
      `- VXLAN TX checksum offload: the lab's agents ran with \`--vxlan-tx-checksum ${tx.mode ?? '?'}\`, and this kernel (${release()}) ${bug === false ? 'has the fix of the NAT checksum bug (ea64d8d6c675), so `auto` leaves offload on' : bug ? 'predates the fix of the NAT checksum bug, so `auto` turns offload off' : 'has an unreadable version'}; podnet.1 had tx-checksumming ${tx.offload[0]} on both nodes, and the vxlan goal is judged against the bare VXLAN pair set up the same way. Turning offload off costs the bare pair ${med('raw-vxlan-txoff', 'raw-vxlan', 1).toFixed(2)} / ${med('raw-vxlan-txoff', 'raw-vxlan', 4).toFixed(2)} of its throughput (it also turns off TSO/GSO on the device).`,
      `- Connection tracking: any nat chain (podnet's egress masquerade, the service proxy's) makes the kernel track every forwarded packet, bridged ones too (br_netfilter); on the bare paths the lab's rulesets alone cost ${med('bridge-ct', 'bridge', 1).toFixed(2)} / ${med('bridge-ct', 'bridge', 4).toFixed(2)} (bridge), ${med('routed-ct', 'routed', 1).toFixed(2)} / ${med('routed-ct', 'routed', 4).toFixed(2)} (routed), ${med('raw-vxlan-ct', asAgent, 1).toFixed(2)} / ${med('raw-vxlan-ct', asAgent, 4).toFixed(2)} (VXLAN). podnet keeps it for pod traffic: a reply from a service endpoint to a client pod is an ordinary-looking pod → pod packet that must be tracked on the client's node to be de-NATed, so no \`notrack\` rule can single out pod → pod traffic safely (docs/agent.md).`,
      `- VXLAN outer packets: podnet's raw-priority notrack chains keep the encapsulated node → node UDP packets (port 4789, between the nodes' addresses) out of conntrack, so only the inner packet is tracked. Without them (the lab's rulesets minus those chains) the rulesets cost the bare VXLAN pair ${med('raw-vxlan-ct-tracked', asAgent, 1).toFixed(2)} / ${med('raw-vxlan-ct-tracked', asAgent, 4).toFixed(2)}; with them ${med('raw-vxlan-ct', asAgent, 1).toFixed(2)} / ${med('raw-vxlan-ct', asAgent, 4).toFixed(2)} (with / without, run back to back: ${med('raw-vxlan-ct', 'raw-vxlan-ct-tracked', 1).toFixed(2)} / ${med('raw-vxlan-ct', 'raw-vxlan-ct-tracked', 4).toFixed(2)}, 1 / 4 streams).`,
    ];
    const meta = machine();
    const seconds = (performance.now() - measuredFrom) / 1000;
    const method =
      `iperf3 ${secs} s TCP tests (\`iperf3 -c SERVER -t ${secs} -J\`, and \`-P 4\`), client in the pod on node2 ` +
      `(same-node: on node1), server (\`iperf3 -s\`, a pod's container in the labs) in the pod on node1; ` +
      `figure = receiver's Gbit/s. Pod paths: two labs started with \`podnet lab up --nodes 2 --backend host-gw|vxlan\` ` +
      `(pods made through the real CNI path by the lab kubelet; clients run with \`podnet lab exec\`; agents with their default flags). Raw baselines, ` +
      `made by hand with ip(8) in namespaces of this run: bridge = node namespace with a bridge and two pod namespaces on ` +
      `veth pairs; routed = switch namespace with a bridge, two node namespaces on veth pairs (ip_forward on), each with ` +
      `a bridge and a pod namespace behind it, one static route per node to the other's pod /24 via its underlay address ` +
      `(what host-gw programs); vxlan = the same structure with a VXLAN device per node (VNI 1, dstport 4789, ` +
      `nolearning, route onlink + permanent neighbour + static FDB entry, MTU 1450 on the devices and pods, as the ` +
      `agent programs it), once with the kernel's default offloads and once with \`ethtool -K vx0 tx off\`; the one set up ` +
      `like the lab's podnet.1 (read with ethtool) is the vxlan goal's baseline. Like for like: the same baselines built again after ` +
      `the labs are up, each node namespace loaded with the matching lab node's \`nft -s list ruleset\` (${tables}; the vxlan nodes' ` +
      `include podnet's notrack chains for the outer packets, which match the baseline's packets as the baselines use the lab's node addresses), ` +
      `and the VXLAN one once more without those chains (outer packets tracked). ` +
      `Every iperf3 client and server runs in a session of its own (so in its own scheduler autogroup), ` +
      `as the lab kubelet starts a container, so that neither side gets a larger CPU share when the machine is busy. ` +
      `${reps} repetition(s); in each, every pod path runs right next to its baselines, and the order ` +
      `is rotated every repetition and reversed every other one, so noise falls on both. Figures: median (min–max). ` +
      `Ratios: median of the per-repetition ratios (the two ran back to back), in brackets their range and the ratio of the ` +
      `two medians; goal ≥ 0.95 for the rows marked goal (✗ = missed).`;
    md = [
      '## dataplane',
      '',
      'TCP throughput of the pod data plane (iperf3) against the same paths built from bare kernel parts. ' +
        'Run with `npm run bench -- dataplane` (root; about 7 min).',
      '',
      `- Date: ${meta.date}`,
      `- Machine: ${meta.line}; before the run the machine was ${(busy.share * 100).toFixed(0)}% busy with other work (load average ${busy.load}); iperf3 ${(await exec('iperf3', ['--version']).catch(() => ({ stdout: '?' }))).stdout.split('\n')[0]?.replace(/^iperf /, '') ?? '?'}`,
      `- Build: ${build}`,
      `- Run time: ${seconds.toFixed(0)} s${busy.waitedMs > 0 ? ` (after waiting ${(busy.waitedMs / 1000).toFixed(0)} s for the machine to be quieter)` : ''}`,
      `- Method: ${method}`,
      '',
      '### Goals (each pod path within 5% of its bare path)',
      '',
      ...goals,
      '',
      `### Throughput (Gbit/s, median (min–max) of ${reps}; retr. = median TCP retransmits)`,
      '',
      thru.md,
      '',
      '### Ratios: median of per-repetition ratios (range; ratio of medians)',
      '',
      ratios.md,
      '',
    ].join('\n');
    text = [`dataplane benchmark — ${meta.date}`, meta.line, '', ...goals, '', `Throughput, Gbit/s (median (min–max) of ${reps})`, thru.text, '', 'Ratios', ratios.text, '', `run time ${seconds.toFixed(0)} s`].join('\n');
  } finally {
    for (const lab of labsUp) {
      procs = procs.concat(labProcesses(lab));
      const r = await podnet(['lab', 'down', '--name', lab], { timeoutMs: 120_000 });
      if (r.code !== 0) console.error(`bench dataplane: lab down --name ${lab} failed: ${r.stderr.trim()}`);
    }
    for (const s of servers) if (s.exitCode === null && s.signalCode === null) s.kill('SIGKILL');
    await bed.cleanup();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    const clean = await checkClean(labsUp, procs, [`${bed.id}-`], before);
    cleanText = clean.text;
    console.error(`bench dataplane: ${clean.text}`);
  }
  console.log(text);
  if (write) {
    writeSection('dataplane', md + `\nAfter the run: ${cleanText}.\n`);
    console.error('bench dataplane: wrote the "## dataplane" section of BENCHMARKS.md');
  }
}
