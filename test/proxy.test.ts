/**
 * The service proxy on a real kernel, in namespaces the test makes:
 *
 *   node   ul0 192.168.1.11/24, a veth with nobody behind it; default route via 192.168.1.1
 *          (a permanent neighbour entry: a black hole, so a packet the proxy does not handle
 *          times out instead of failing fast by accident),
 *          bridge cni0 10.244.1.1/24, forwarding on
 *   p1 10.244.1.2, p2 10.244.1.3   each runs a TCP server (8080) and a UDP server (5353) that
 *                                   answer "<name> <client address>"
 *   p3 10.244.1.4                   the client
 *
 * The executor runs with `netns` (nsenter into the node), once in nftables mode and once in
 * iptables mode, and the same checks run in both. The root namespace's `nft list tables` is
 * compared at the end, and everything is removed in `finally` (TestBed.cleanup).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { NftSession, type Runner, run } from '../src/kernel/index.ts';
import type { EndpointSlice, Service } from '../src/datastore/types.ts';
import {
  FakeNft,
  IptablesProxyDataplane,
  ProxyDataplane,
  parseTableNames,
  translate,
} from '../src/proxy/index.ts';
import { fixtureCluster, fixtureModel } from '../src/proxy/fixtures.ts';
import { type Netns, TestBed, isRoot, sweepLeftovers } from './support/netns.ts';

const skip = isRoot() ? false : 'needs root for network namespaces';
const NODE = process.execPath;

const SERVER = `
const net = require('node:net'), dgram = require('node:dgram');
const name = process.argv[1];
let up = 0;
const ready = () => { if (++up === 2) process.stdout.write('ready\\n'); };
net.createServer((s) => s.end(name + ' ' + String(s.remoteAddress).replace(/^::ffff:/, '') + '\\n')).listen(8080, '0.0.0.0', ready);
const u = dgram.createSocket('udp4');
u.on('message', (m, r) => u.send(name + ' ' + r.address, r.port, r.address));
u.bind(5353, '0.0.0.0', ready);
`;

/** Runs `count` tries and prints one JSON line: [{ok: answer} | {err: code}, ms]. */
const CLIENT = `
const net = require('node:net'), dgram = require('node:dgram');
const [mode, ip, port, count, sport] = process.argv.slice(1);
function tcp() {
  return new Promise((res) => {
    const t0 = Date.now();
    const s = net.connect({ host: ip, port: +port });
    let data = '';
    s.setTimeout(3000, () => { s.destroy(); res({ err: 'TIMEOUT', ms: Date.now() - t0 }); });
    s.on('data', (d) => (data += d));
    s.on('end', () => res({ ok: data.trim(), ms: Date.now() - t0 }));
    s.on('error', (e) => res({ err: e.code, ms: Date.now() - t0 }));
  });
}
function udp() {
  return new Promise((res) => {
    const t0 = Date.now();
    const s = dgram.createSocket({ type: 'udp4', reuseAddr: true });
    let timer;
    const done = (r) => { clearTimeout(timer); try { s.close(); } catch {} res(r); };
    timer = setTimeout(() => done({ err: 'TIMEOUT', ms: Date.now() - t0 }), 1500);
    s.on('message', (m) => done({ ok: m.toString().trim(), ms: Date.now() - t0 }));
    s.on('error', (e) => done({ err: e.code, ms: Date.now() - t0 }));
    s.bind(sport ? +sport : 0, () => s.connect(+port, ip, () => s.send('q')));
  });
}
(async () => {
  const out = [];
  for (let i = 0; i < +count; i++) out.push(await (mode === 'udp' ? udp() : tcp()));
  process.stdout.write(JSON.stringify(out) + '\\n');
})();
`;

interface Try {
  ok?: string;
  err?: string;
  ms: number;
}

async function tries(from: Netns, mode: 'tcp' | 'udp', ip: string, port: number, count: number, sport?: number): Promise<Try[]> {
  const { stdout } = await from.exec(NODE, ['-e', CLIENT, mode, ip, String(port), String(count), ...(sport ? [String(sport)] : [])], { timeoutMs: 60_000 });
  return JSON.parse(stdout) as Try[];
}

const names = (ts: Try[]) => [...new Set(ts.map((t) => t.ok?.split(' ')[0] ?? t.err ?? '?'))].sort();

function cluster(withP2: boolean): { services: Service[]; slices: EndpointSlice[] } {
  const eps = [
    { addresses: ['10.244.1.2'], nodeName: 'node1', conditions: { ready: true } },
    ...(withP2 ? [{ addresses: ['10.244.1.3'], nodeName: 'node1', conditions: { ready: true } }] : []),
  ];
  return {
    services: [
      {
        apiVersion: 'v1',
        kind: 'Service',
        metadata: { name: 'web', namespace: 'default' },
        spec: {
          type: 'NodePort',
          clusterIP: '10.96.0.10',
          ports: [
            { name: 'http', port: 80, protocol: 'TCP', nodePort: 30080 },
            { name: 'dns', port: 53, protocol: 'UDP', nodePort: 30053 },
          ],
        },
      },
      {
        apiVersion: 'v1',
        kind: 'Service',
        metadata: { name: 'empty', namespace: 'default' },
        spec: {
          type: 'ClusterIP',
          clusterIP: '10.96.0.99',
          ports: [
            { name: 'http', port: 80 },
            { name: 'dns', port: 53, protocol: 'UDP' },
          ],
        },
      },
    ],
    slices: [
      {
        apiVersion: 'discovery.k8s.io/v1',
        kind: 'EndpointSlice',
        metadata: { name: 'web-1', namespace: 'default', labels: { 'kubernetes.io/service-name': 'web' } },
        addressType: 'IPv4',
        ports: [
          { name: 'http', port: 8080, protocol: 'TCP' },
          { name: 'dns', port: 5353, protocol: 'UDP' },
        ],
        endpoints: eps,
      },
    ],
  };
}

function model(withP2: boolean) {
  const c = cluster(withP2);
  return translate({ services: c.services, endpointSlices: c.slices, nodeName: 'node1', nodeIPs: ['192.168.1.11'], clusterCIDR: '10.244.0.0/16' });
}

async function batch(ns: Netns, lines: string[]): Promise<void> {
  await run('ip', ['-n', ns.name, '-batch', '-'], { input: lines.join('\n') + '\n' });
}

interface Bed {
  bed: TestBed;
  node: Netns;
  p1: Netns;
  p2: Netns;
  p3: Netns;
}

async function makeBed(label: string): Promise<Bed> {
  const bed = new TestBed(label);
  const node = await bed.netns('node');
  // The underlay: a veth pair with nobody behind it, and a permanent neighbour for the
  // gateway, so unhandled packets vanish (no ARP failure, no ICMP).
  await batch(node, [
    'link add ul0 type veth peer name ul1',
    'addr add 192.168.1.11/24 dev ul0',
    'link set ul1 up',
    'link set ul0 up',
    'neigh add 192.168.1.1 lladdr 02:00:00:00:00:01 dev ul0 nud permanent',
    'route add default via 192.168.1.1',
    'link add cni0 type bridge',
    'addr add 10.244.1.1/24 dev cni0',
    'link set cni0 up',
  ]);
  await node.exec('sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
  const pods: Netns[] = [];
  for (const i of [1, 2, 3]) {
    const pod = await bed.netns(`p${i}`);
    // hairpin on, as podnet-bridge does with the agent's conflist (hairpinMode): with
    // br_netfilter active, a packet DNATed back to its sender is bridged out of the port
    // it came in on.
    await batch(node, [`link add vp${i} type veth peer name eth0 netns ${pod.name}`, `link set vp${i} master cni0 up`, `link set dev vp${i} type bridge_slave hairpin on`]);
    await batch(pod, ['link set eth0 up', `addr add 10.244.1.${i + 1}/24 dev eth0`, 'route add default via 10.244.1.1']);
    pods.push(pod);
  }
  const [p1, p2, p3] = pods as [Netns, Netns, Netns];
  for (const [pod, name] of [
    [p1, 'p1'],
    [p2, 'p2'],
  ] as const) {
    const child = bed.track(spawn('ip', ['netns', 'exec', pod.name, NODE, '-e', SERVER, name], { stdio: ['ignore', 'pipe', 'pipe'] }));
    await new Promise<void>((resolve, reject) => {
      let out = '';
      child.stdout!.on('data', (d) => {
        out += d;
        if (out.includes('ready')) resolve();
      });
      child.on('exit', (code) => reject(new Error(`server ${name} exited ${code}`)));
      setTimeout(() => reject(new Error(`server ${name} not ready`)), 10_000);
    });
  }
  return { bed, node, p1, p2, p3 };
}

interface Proxy {
  sync(m: ReturnType<typeof model>): Promise<{ ok: boolean; problems: unknown[]; conntrack: { commands: number; failed: number } }>;
  remove(): Promise<unknown[]>;
  /** Ends helper processes (the nft session) even when the test failed before remove(). */
  close(): void;
}

const MODES: Array<[string, (node: Netns) => Proxy]> = [
  [
    'nftables',
    (node) => {
      const dp = new ProxyDataplane({ netns: node.path });
      return { sync: (m) => dp.sync(m.services, m.endpoints, m.node), remove: () => dp.remove(), close: () => dp.close() };
    },
  ],
  [
    'iptables',
    (node) => {
      const dp = new IptablesProxyDataplane({ netns: node.path });
      return { sync: (m) => dp.sync(m.services, m.endpoints, m.node), remove: () => dp.remove(), close: () => undefined };
    },
  ],
];

describe('service proxy in namespaces', { skip, concurrency: false }, () => {
  let rootTables = '';
  before(async () => {
    await sweepLeftovers();
    rootTables = (await run('nft', ['list', 'tables'])).stdout;
  });
  after(async () => {
    if (skip) return;
    assert.equal((await run('nft', ['list', 'tables'])).stdout, rootTables, 'the root namespace nft tables are unchanged');
  });

  for (const [mode, makeProxy] of MODES) {
    test(`${mode}: ClusterIP, NodePort, reject, hairpin, re-sync without an endpoint, UDP conntrack cleanup`, async () => {
      const b = await makeBed(`px${mode.slice(0, 3)}`);
      let proxy: Proxy | undefined;
      try {
        const { node, p1, p3 } = b;
        proxy = makeProxy(node);
        const first = await proxy.sync(model(true));
        assert.equal(first.ok, true, JSON.stringify(first.problems));

        // Both endpoints answer, and see the client's own address (no masquerade pod to pod).
        const tcp = await tries(p3, 'tcp', '10.96.0.10', 80, 30);
        assert.deepEqual(names(tcp), ['p1', 'p2'], JSON.stringify(tcp));
        assert.ok(tcp.every((t) => t.ok?.endsWith(' 10.244.1.4')), JSON.stringify(tcp));
        const udp = await tries(p3, 'udp', '10.96.0.10', 53, 30);
        assert.deepEqual(names(udp), ['p1', 'p2'], JSON.stringify(udp));

        // No endpoints: refused at once, not a timeout.
        const [refused] = await tries(p3, 'tcp', '10.96.0.99', 80, 1);
        assert.equal(refused!.err, 'ECONNREFUSED', JSON.stringify(refused));
        assert.ok(refused!.ms < 1000, `refused after ${refused!.ms} ms`);
        // The same from the node itself (output hook), and for UDP (ICMP port unreachable).
        const [fromNode] = await tries(node, 'tcp', '10.96.0.99', 80, 1);
        assert.equal(fromNode!.err, 'ECONNREFUSED', JSON.stringify(fromNode));
        assert.ok(fromNode!.ms < 1000);
        const [udpRefused] = await tries(p3, 'udp', '10.96.0.99', 53, 1);
        assert.equal(udpRefused!.err, 'ECONNREFUSED', JSON.stringify(udpRefused));
        // A port the service does not have is not the proxy's: the black hole times out.
        const [ignored] = await tries(p3, 'tcp', '10.96.0.99', 81, 1);
        assert.equal(ignored!.err, 'TIMEOUT');

        // Hairpin: p1 reaching itself through the service is masqueraded (it sees the bridge).
        const hair = await tries(p1, 'tcp', '10.96.0.10', 80, 30);
        assert.deepEqual(names(hair), ['p1', 'p2'], JSON.stringify(hair));
        for (const t of hair) assert.equal(t.ok, t.ok!.startsWith('p1') ? 'p1 10.244.1.1' : 'p2 10.244.1.2');

        // The node itself: the ClusterIP (local endpoints, source kept) and its NodePort
        // (policy Cluster from outside the pod network: masqueraded).
        const own = await tries(node, 'tcp', '10.96.0.10', 80, 10);
        assert.ok(own.every((t) => /^p[12] 192\.168\.1\.11$/.test(t.ok ?? '')), JSON.stringify(own));
        const np = await tries(node, 'tcp', '192.168.1.11', 30080, 10);
        assert.ok(np.every((t) => /^p[12] 10\.244\.1\.1$/.test(t.ok ?? '')), JSON.stringify(np));

        // Long-lived UDP flows from fixed source ports, pinned in conntrack before the change.
        const ports = Array.from({ length: 12 }, (_, i) => 41000 + i);
        const pinned = await Promise.all(ports.map((p) => tries(p3, 'udp', '10.96.0.10', 53, 1, p)));
        const pinnedNames = pinned.map((t) => t[0]!.ok?.split(' ')[0]);
        assert.ok(pinnedNames.every((n) => n === 'p1' || n === 'p2'), JSON.stringify(pinned));

        // p2's endpoint goes away (its servers keep running): nothing reaches it any more.
        const second = await proxy.sync(model(false));
        assert.equal(second.ok, true, JSON.stringify(second.problems));
        assert.ok(second.conntrack.commands >= 1 && second.conntrack.failed === 0, JSON.stringify(second.conntrack));
        assert.deepEqual(names(await tries(p3, 'tcp', '10.96.0.10', 80, 20)), ['p1']);
        assert.deepEqual(names(await tries(p3, 'udp', '10.96.0.10', 53, 10)), ['p1']);
        const after = await Promise.all(ports.map((p) => tries(p3, 'udp', '10.96.0.10', 53, 1, p)));
        assert.deepEqual(
          after.map((t) => t[0]!.ok?.split(' ')[0]),
          ports.map(() => 'p1'),
          `flows pinned to ${JSON.stringify(pinnedNames)} must all move to p1 after the conntrack cleanup`,
        );

        assert.deepEqual(await proxy.remove(), []);
        assert.equal((await node.exec('nft', ['list', 'ruleset'])).stdout.includes('podnet'), false);
        // Without the proxy the service address is a black hole again.
        const [gone] = await tries(p3, 'tcp', '10.96.0.99', 80, 1);
        assert.equal(gone!.err, 'TIMEOUT');
      } finally {
        proxy?.close();
        await b.bed.cleanup();
      }
    });
  }

  test('nft session: one line is one atomic transaction; a failing one changes nothing and says why; a dead nft is replaced', async () => {
    const bed = new TestBed('pxs');
    const node = await bed.netns('node');
    const session = new NftSession({ netns: node.path });
    try {
      await session.run('add table ip podnet-sess\nadd chain ip podnet-sess a\nadd set ip podnet-sess s { type ipv4_addr ; }\n');
      await session.run('add element ip podnet-sess s { 10.0.0.1 }\n');
      // The second command fails (no such chain): the first must not be applied either.
      await assert.rejects(session.run('add element ip podnet-sess s { 10.0.0.2 }\nadd rule ip podnet-sess nosuch accept\n'), (err: Error) => {
        assert.match(err.message, /No such file or directory/);
        return true;
      });
      const listed = (await node.exec('nft', ['list', 'set', 'ip', 'podnet-sess', 's'])).stdout;
      assert.match(listed, /10\.0\.0\.1/);
      assert.doesNotMatch(listed, /10\.0\.0\.2/);
      // After a failure the session goes on; after its nft is killed, a new one takes over.
      await session.run('add element ip podnet-sess s { 10.0.0.3 }\n');
      const pid = session.pid!;
      process.kill(pid, 'SIGKILL');
      await new Promise((r) => setTimeout(r, 100));
      await session.run('add element ip podnet-sess s { 10.0.0.4 }\n');
      assert.notEqual(session.pid, pid);
      assert.match((await node.exec('nft', ['list', 'set', 'ip', 'podnet-sess', 's'])).stdout, /10\.0\.0\.3,\s+10\.0\.0\.4 \}/);
    } finally {
      session.close();
      await bed.cleanup();
    }
  });

  test('nftables: the kernel accepts every transaction the planner writes, and holds what the fake holds', async () => {
    const bed = new TestBed('pxk');
    try {
      const node = await bed.netns('node');
      // Every command goes to the real nft in the namespace; transactions also to the fake.
      const fake = new FakeNft();
      const runner: Runner = async (file, args, opts = {}) => {
        const r = await run(file, args, { ...opts, netns: node.path });
        if (file === 'nft' && args[0] === '-f') fake.apply(opts.input ?? '');
        return r;
      };
      const dp = new ProxyDataplane({ runner, conntrack: false });
      const same = async () => {
        const kernel = parseTableNames((await node.exec('nft', ['-t', 'list', 'table', 'ip', 'podnet-proxy'])).stdout);
        const ours = parseTableNames(fake.listTable('ip', 'podnet-proxy', true));
        assert.deepEqual({ chains: kernel.chains.sort(), sets: kernel.sets.sort() }, { chains: ours.chains.sort(), sets: ours.sets.sort() });
      };
      const c = fixtureCluster();
      const sync = async (expected: 'full' | 'partial') => {
        const m = fixtureModel('node1', c);
        const r = await dp.sync(m.services, m.endpoints, m.node);
        assert.equal(r.ok, true, JSON.stringify(r.problems));
        assert.equal(r.mode, expected);
        await same();
      };
      await sync('full');
      const steps: Array<() => void> = [
        () => c.slices.find((s) => s.metadata.name === 'web-abc')!.endpoints.pop(),
        () => (c.services.find((s) => s.metadata.name === 'sticky')!.spec!.sessionAffinityConfig = { clientIP: { timeoutSeconds: 30 } }),
        () => (c.services.find((s) => s.metadata.name === 'lb-local')!.spec!.externalTrafficPolicy = 'Cluster'),
        () => (c.slices.find((s) => s.metadata.name === 'np-abc')!.endpoints = []),
        () => (c.services.find((s) => s.metadata.name === 'web')!.spec!.externalIPs = ['192.168.1.210']),
        () => c.services.splice(0, 5),
      ];
      for (const step of steps) {
        step();
        await sync('partial');
      }
      // A full sync over the kernel's own listing: the services come back, stale chains of a
      // previous run (found by pattern) go.
      await node.exec('nft', ['-f', '-'], { input: 'add chain ip podnet-proxy svc-AAAAAAAA-old-gone-http\n' });
      fake.apply('add chain ip podnet-proxy svc-AAAAAAAA-old-gone-http\n');
      Object.assign(c, fixtureCluster());
      dp.requestFullSync();
      await sync('full');
      assert.ok(!fake.table('ip', 'podnet-proxy')!.chains.has('svc-AAAAAAAA-old-gone-http'));
      assert.deepEqual((await node.exec('nft', ['list', 'tables'])).stdout, 'table ip podnet-proxy\n');
    } finally {
      await bed.cleanup();
    }
  });

  test('iptables: iptables-restore accepts the fixture plan (--test)', async () => {
    const bed = new TestBed('pxi');
    try {
      const node = await bed.netns('node');
      const m = fixtureModel('node1');
      const { planIptables } = await import('../src/proxy/index.ts');
      const plan = planIptables(m.services, m.endpoints, m.node);
      await node.exec('iptables-restore', ['--noflush', '--test'], { input: plan.restore });
      await node.exec('iptables-restore', ['--noflush'], { input: plan.restore });
      const save = (await node.exec('iptables-save', ['-t', 'nat'])).stdout;
      assert.match(save, /-A PODNET-SERVICES -d 10\.96\.0\.10\/32 -p tcp -m comment --comment "default\/web:http cluster IP" -m tcp --dport 80 -j PODNET-SVC-/);
    } finally {
      await bed.cleanup();
    }
  });
});
