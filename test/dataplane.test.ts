/**
 * The agent's data plane on a hand-built underlay, in namespaces the test makes:
 *
 *   flat:    switch (bridge br0) ── node1 192.168.1.11, node2 .12, node3 .13
 *   routed:  switch A 192.168.1.0/24 ── node1 .11, node3 .13, router .1
 *            switch B 192.168.2.0/24 ── node2 .12, router .1
 *            router ── ext 203.0.113.10 (the "internet"); the router knows no pod routes
 *
 * Each node has a bridge cni0 with .1 of its pod subnet and one pod (10.244.i.2) on it, made
 * with plain `ip` commands, as the tutorials do. The executor runs in each node namespace
 * (nsenter); the root namespace is never touched, and the test checks that at the end.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { release } from 'node:os';
import { run } from '../src/kernel/index.ts';
import { Dataplane, type ApplyResult, type DataplaneSpec, type NodeSpec, vtepMac } from '../src/agent/index.ts';
import type { TxChecksumMode } from '../src/agent/types.ts';
import { decideTxChecksum } from '../src/agent/vxlan.ts';
import { type Netns, TestBed, isRoot, sweepLeftovers, tcpExchange } from './support/netns.ts';

const skip = isRoot() ? false : 'needs root for network namespaces';
const CLUSTER = '10.244.0.0/16';
const UNREACHABLE_NODE2 = 'host-gw needs nodes on one L2 segment; node2 (192.168.2.12) is behind a router; use --backend vxlan';

interface Host {
  spec: NodeSpec;
  node: Netns;
  pod: Netns;
  podIP: string;
  dp: Dataplane;
}

async function batch(ns: Netns, lines: string[]): Promise<void> {
  await run('ip', ['-n', ns.name, '-batch', '-'], { input: lines.join('\n') + '\n' });
}

async function makeSwitch(bed: TestBed, label: string): Promise<Netns> {
  const sw = await bed.netns(label);
  await batch(sw, ['link add br0 type bridge', 'link set br0 up']);
  return sw;
}

/** Plugs a new interface `ifName` of `ns` into switch `sw` (port named `port`). */
async function plug(sw: Netns, port: string, ns: Netns, ifName: string): Promise<void> {
  await batch(sw, [`link add ${port} type veth peer name ${ifName} netns ${ns.name}`, `link set ${port} master br0 up`]);
}

/** A node on a switch, with cni0 (10.244.i.1/24) and one pod (10.244.i.2) on it. */
async function makeHost(bed: TestBed, sw: Netns, i: number, nodeIP: string, gateway?: string, txChecksum?: TxChecksumMode): Promise<Host> {
  const node = await bed.netns(`n${i}`);
  const pod = await bed.netns(`p${i}`);
  await plug(sw, `port${i}`, node, 'eth0');
  await batch(node, [
    'link set eth0 up',
    `addr add ${nodeIP}/24 dev eth0`,
    ...(gateway ? [`route add default via ${gateway}`] : []),
    'link add cni0 type bridge',
    `addr add 10.244.${i}.1/24 dev cni0`,
    'link set cni0 up',
    `link add vp${i} type veth peer name eth0 netns ${pod.name}`,
    `link set vp${i} master cni0 up`,
  ]);
  await node.exec('sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
  await batch(pod, ['link set eth0 up', `addr add 10.244.${i}.2/24 dev eth0`, `route add default via 10.244.${i}.1`]);
  return { spec: { name: `node${i}`, nodeIP, subnet: `10.244.${i}.0/24` }, node, pod, podIP: `10.244.${i}.2`, dp: new Dataplane({ netns: node.path, ...(txChecksum ? { vxlanTxChecksum: txChecksum } : {}) }) };
}

function specFor(h: Host, hosts: Host[], backend: 'host-gw' | 'vxlan'): DataplaneSpec {
  return { self: h.spec, peers: hosts.map((x) => x.spec), clusterCIDR: CLUSTER, backend, underlayIface: 'eth0', vni: 1, port: 4789 };
}

async function applyAll(hosts: Host[], backend: 'host-gw' | 'vxlan'): Promise<ApplyResult[]> {
  return Promise.all(hosts.map((h) => h.dp.apply(specFor(h, hosts, backend))));
}

async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function collect(child: ChildProcess): { text: () => string } {
  let out = '';
  child.stdout?.on('data', (d) => (out += d));
  child.stderr?.on('data', (d) => (out += d));
  return { text: () => out };
}

/** A one-connection TCP server that prints the peer's address and what it sent, as JSON. */
const WHO_SERVER = `
const net = require('node:net');
const srv = net.createServer((s) => {
  let d = '';
  s.on('data', (c) => (d += c));
  s.on('end', () => { process.stdout.write(JSON.stringify({ from: s.remoteAddress, data: d.trim() }) + '\\n'); s.end(); srv.close(); });
});
srv.listen(Number(process.argv[1]), '0.0.0.0', () => process.stdout.write('ready\\n'));
setTimeout(() => process.exit(2), 10000).unref();
`;

/** Connects from one namespace to `ip:port` served in another; returns the source address the server saw. */
async function sourceSeen(bed: TestBed, from: Netns, to: Netns, ip: string, port: number): Promise<string> {
  const server = bed.track(to.spawn(process.execPath, ['-e', WHO_SERVER, String(port)]));
  const out = collect(server);
  await until(() => out.text().includes('ready'), 5000, `server in ${to.name}`);
  await from.exec('nc', ['-N', '-w', '3', ip, String(port)], { input: `from ${from.name}\n`, timeoutMs: 8000 });
  await until(() => out.text().includes('{'), 5000, `the server's report in ${to.name}`);
  const seen = JSON.parse(out.text().split('\n').find((l) => l.startsWith('{'))!) as { from: string; data: string };
  assert.equal(seen.data, `from ${from.name}`);
  return seen.from;
}

/** Every pod reaches every other pod, and each receiver sees the sender pod's own address. */
async function assertPodMesh(bed: TestBed, hosts: Host[], port: number): Promise<void> {
  for (const a of hosts) {
    for (const b of hosts) {
      if (a === b) continue;
      assert.equal(await sourceSeen(bed, a.pod, b.pod, b.podIP, port++), a.podIP, `${a.spec.name}'s pod → ${b.spec.name}'s pod is not NATed`);
    }
  }
}

async function json<T>(ns: Netns, cmd: string, args: string[]): Promise<T> {
  return JSON.parse((await ns.exec(cmd, args)).stdout || '[]') as T;
}

/** `on` or `off`: the VXLAN device's TX checksum offload as ethtool reports it. */
async function txChecksumming(h: Host): Promise<string> {
  return /^tx-checksumming: (on|off)/m.exec((await h.node.exec('ethtool', ['-k', 'podnet.1'])).stdout)?.[1] ?? '?';
}

/** The node's connection tracking table (`conntrack -L`), one entry a line. */
async function conntrack(h: Host): Promise<string> {
  return (await h.node.exec('conntrack', ['-L'])).stdout;
}

/** Outer VXLAN packets in the table: UDP entries whose original direction goes to port 4789. */
const outerEntries = (table: string): string[] => table.split('\n').filter((l) => /^udp\s.*?\bdport=4789\b/.test(l));

/** Whether the table tracks the TCP connection from one pod to another's port. */
const podFlowTracked = (table: string, from: Host, to: Host, port: number): boolean =>
  new RegExp(`^tcp\\s.*?src=${from.podIP.replaceAll('.', '\\.')} dst=${to.podIP.replaceAll('.', '\\.')} sport=\\d+ dport=${port}\\b`, 'm').test(table);

const notrackRules = async (h: Host): Promise<string[]> =>
  (await h.node.exec('nft', ['list', 'table', 'inet', 'podnet'])).stdout
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.endsWith(' notrack'));

const podnetRoutes = (h: Host) => json<Array<{ dst: string; gateway: string; dev: string; flags: string[] }>>(h.node, 'ip', ['-j', 'route', 'show', 'proto', '112']);

let rootLinks = '';
let rootTables = '';
async function rootState(): Promise<[string, string]> {
  const links = (await run('ip', ['-br', 'link'])).stdout;
  const tables = (await run('nft', ['list', 'tables'])).stdout;
  return [links, tables];
}

describe('agent data plane in namespaces', { skip, concurrency: false }, () => {
  before(async () => {
    await sweepLeftovers();
    [rootLinks, rootTables] = await rootState();
  });
  after(async () => {
    if (skip) return;
    const [links, tables] = await rootState();
    assert.equal(links, rootLinks, 'the root namespace links are unchanged');
    assert.equal(tables, rootTables, 'the root namespace nft tables are unchanged');
  });

  describe('flat underlay: three nodes on one switch', { concurrency: false }, () => {
    let bed: TestBed;
    let hosts: Host[];
    before(async () => {
      bed = new TestBed('dpflat');
      const sw = await makeSwitch(bed, 'sw');
      hosts = [];
      for (const i of [1, 2, 3]) hosts.push(await makeHost(bed, sw, i, `192.168.1.${10 + i}`));
    });
    after(async () => {
      try {
        for (const h of hosts ?? []) {
          assert.deepEqual(await h.dp.teardown(), []);
          assert.deepEqual(await podnetRoutes(h), []);
          assert.equal((await h.node.exec('nft', ['list', 'ruleset'])).stdout, '', 'teardown leaves no nft table');
        }
      } finally {
        await bed?.cleanup();
      }
    });

    test('host-gw: a route per peer via its node IP; pods talk across nodes without NAT', async () => {
      const results = await applyAll(hosts, 'host-gw');
      for (const r of results) {
        assert.deepEqual(r.errors, []);
        assert.deepEqual(r.routes, { added: 2, changed: 0, removed: 0 });
        assert.equal(r.podMTU, 1500);
        assert.equal(r.masq, 'write');
      }
      assert.deepEqual(
        (await podnetRoutes(hosts[0]!)).map((r) => `${r.dst} via ${r.gateway} dev ${r.dev}`),
        ['10.244.2.0/24 via 192.168.1.12 dev eth0', '10.244.3.0/24 via 192.168.1.13 dev eth0'],
      );
      assert.equal(await tcpExchange(hosts[0]!.pod, hosts[1]!.pod, hosts[1]!.podIP, 7100, 'pod1 to pod2'), 'pod1 to pod2');
      await assertPodMesh(bed, hosts, 7110);
    });

    test('a resync with nothing changed reads and writes nothing', async () => {
      for (const r of await applyAll(hosts, 'host-gw')) {
        assert.equal(r.writes, 0);
        assert.equal(r.changed, false);
      }
    });

    test('a hand-deleted route is restored by the next apply', async () => {
      const [h1, h2] = [hosts[0]!, hosts[1]!];
      await h1.node.exec('ip', ['route', 'del', '10.244.2.0/24']);
      const r = await h1.dp.apply(specFor(h1, hosts, 'host-gw'));
      assert.deepEqual(r.routes, { added: 1, changed: 0, removed: 0 });
      assert.equal(r.writes, 1, 'one ip batch, nothing else');
      assert.equal(await sourceSeen(bed, h1.pod, h2.pod, h2.podIP, 7130), h1.podIP);
    });

    test('vxlan: podnet.1 with VNI 1, port 4789, MTU 1450, no learning, TX offload as auto decides for this kernel; pods talk through it', async () => {
      const results = await applyAll(hosts, 'vxlan');
      for (const r of results) {
        assert.deepEqual(r.errors, []);
        assert.equal(r.device, 'created');
        assert.deepEqual(r.routes, { added: 0, changed: 2, removed: 0 });
        assert.deepEqual(r.fdb, { added: 2, changed: 0, removed: 0 });
        assert.deepEqual(r.neighs, { added: 2, changed: 0, removed: 0 });
        assert.equal(r.podMTU, 1450);
      }
      const h1 = hosts[0]!;
      type Link = { mtu: number; address: string; linkinfo: { info_data: { id: number; port: number; learning: boolean; local: string; link: string; group?: string; remote?: string } } };
      const [link] = await json<Link[]>(h1.node, 'ip', ['-d', '-j', 'link', 'show', 'dev', 'podnet.1']);
      assert.equal(link!.mtu, 1450);
      assert.equal(link!.address, vtepMac('node1'));
      assert.deepEqual(
        { ...link!.linkinfo.info_data, group: link!.linkinfo.info_data.group, remote: link!.linkinfo.info_data.remote },
        { ...link!.linkinfo.info_data, id: 1, port: 4789, learning: false, local: '192.168.1.11', link: 'eth0', group: undefined, remote: undefined },
      );
      // auto: offload stays on unless this kernel has the NAT checksum bug (on 6.18: on).
      const auto = decideTxChecksum('auto', release());
      assert.equal(h1.dp.txChecksum.offload, auto.offload);
      assert.equal(await txChecksumming(h1), auto.offload ? 'on' : 'off');
      assert.deepEqual(
        (await podnetRoutes(h1)).map((r) => `${r.dst} via ${r.gateway} dev ${r.dev} ${r.flags.join(',')}`),
        ['10.244.2.0/24 via 10.244.2.0 dev podnet.1 onlink', '10.244.3.0/24 via 10.244.3.0 dev podnet.1 onlink'],
      );
      const neigh = await json<Array<{ dst: string; lladdr: string; state: string[] }>>(h1.node, 'ip', ['-j', 'neigh', 'show', 'dev', 'podnet.1']);
      assert.deepEqual(
        neigh.map((n) => `${n.dst} ${n.lladdr} ${n.state.join(',')}`).sort(),
        [`10.244.2.0 ${vtepMac('node2')} PERMANENT`, `10.244.3.0 ${vtepMac('node3')} PERMANENT`],
      );
      const fdb = await json<Array<{ mac: string; dst: string; state: string }>>(h1.node, 'bridge', ['-j', 'fdb', 'show', 'dev', 'podnet.1']);
      assert.deepEqual(
        fdb.map((f) => `${f.mac} ${f.dst} ${f.state}`).sort(),
        [`${vtepMac('node2')} 192.168.1.12 permanent`, `${vtepMac('node3')} 192.168.1.13 permanent`].sort(),
      );
      const addrs = await json<Array<{ addr_info: Array<{ local: string; prefixlen: number; scope: string }> }>>(h1.node, 'ip', ['-j', '-4', 'addr', 'show', 'dev', 'podnet.1']);
      assert.deepEqual(addrs[0]!.addr_info.map((a) => `${a.local}/${a.prefixlen}`), ['10.244.1.0/32']);

      const txBefore = (await json<Array<{ stats64: { tx: { packets: number } } }>>(h1.node, 'ip', ['-s', '-j', 'link', 'show', 'dev', 'podnet.1']))[0]!.stats64.tx.packets;
      await assertPodMesh(bed, hosts, 7140);
      const txAfter = (await json<Array<{ stats64: { tx: { packets: number } } }>>(h1.node, 'ip', ['-s', '-j', 'link', 'show', 'dev', 'podnet.1']))[0]!.stats64.tx.packets;
      assert.ok(txAfter > txBefore, 'the pod traffic went through the VXLAN device');
      for (const r of await applyAll(hosts, 'vxlan')) assert.equal(r.writes, 0, 'a second apply writes nothing');
    });

    test('vxlan: the outer UDP packets are not connection-tracked, the pod flows are; a hand-deleted notrack chain comes back', async () => {
      const [h1, h2] = [hosts[0]!, hosts[1]!];
      assert.deepEqual(await notrackRules(h1), [
        'ip daddr 192.168.1.11 udp dport 4789 ip saddr { 192.168.1.12, 192.168.1.13 } notrack',
        'ip saddr 192.168.1.11 udp dport 4789 ip daddr { 192.168.1.12, 192.168.1.13 } notrack',
      ]);
      // Without the chains (deleted by hand), the outer packets are tracked: what the check
      // below would see if the rules did not work.
      for (const h of [h1, h2]) {
        await h.node.exec('nft', ['-f', '-'], { input: 'delete chain inet podnet vxlan-notrack-in\ndelete chain inet podnet vxlan-notrack-out\n' });
        await h.node.exec('conntrack', ['-F']);
      }
      assert.equal(await sourceSeen(bed, h1.pod, h2.pod, h2.podIP, 7150), h1.podIP);
      assert.ok(outerEntries(await conntrack(h1)).length > 0, 'without the notrack chains, node1 tracks the outer packets');
      assert.ok(outerEntries(await conntrack(h2)).length > 0, 'without the notrack chains, node2 tracks the outer packets');
      // Drift repair: the next apply writes both chains back, in one nft transaction.
      for (const h of [h1, h2]) {
        const r = await h.dp.apply(specFor(h, hosts, 'vxlan'));
        assert.deepEqual([r.notrack, r.masq, r.writes, r.errors], ['write', 'unchanged', 1, []]);
        assert.equal((await notrackRules(h)).length, 2);
        await h.node.exec('conntrack', ['-F']);
      }
      assert.equal(await sourceSeen(bed, h1.pod, h2.pod, h2.podIP, 7151), h1.podIP);
      assert.equal(await sourceSeen(bed, h2.pod, h1.pod, h1.podIP, 7152), h2.podIP);
      for (const h of [h1, h2]) {
        const table = await conntrack(h);
        assert.deepEqual(outerEntries(table), [], `${h.spec.name} tracks no outer VXLAN packet`);
        assert.ok(podFlowTracked(table, h1, h2, 7151), `${h.spec.name} tracks the pod flow node1 → node2:\n${table}`);
        assert.ok(podFlowTracked(table, h2, h1, 7152), `${h.spec.name} tracks the pod flow node2 → node1:\n${table}`);
      }
    });

    test('a hand-deleted FDB entry and neighbour entry are restored by the next apply', async () => {
      const [h1, h2] = [hosts[0]!, hosts[1]!];
      await h1.node.exec('bridge', ['fdb', 'del', vtepMac('node2'), 'dev', 'podnet.1', 'dst', '192.168.1.12', 'self']);
      await h1.node.exec('ip', ['neigh', 'del', '10.244.2.0', 'dev', 'podnet.1']);
      await h1.node.exec('ip', ['route', 'del', '10.244.3.0/24']);
      const r = await h1.dp.apply(specFor(h1, hosts, 'vxlan'));
      assert.deepEqual(r.fdb, { added: 1, changed: 0, removed: 0 });
      assert.deepEqual(r.neighs, { added: 1, changed: 0, removed: 0 });
      assert.deepEqual(r.routes, { added: 1, changed: 0, removed: 0 });
      assert.equal(r.writes, 2, 'one ip batch and one bridge batch');
      assert.equal(await sourceSeen(bed, h1.pod, h2.pod, h2.podIP, 7160), h1.podIP);
    });

    test('a peer that leaves loses its route, neighbour and FDB entry', async () => {
      const [h1, , h3] = [hosts[0]!, hosts[1]!, hosts[2]!];
      const r = await h1.dp.apply({ ...specFor(h1, hosts, 'vxlan'), peers: [hosts[1]!.spec] });
      assert.deepEqual([r.routes.removed, r.neighs.removed, r.fdb.removed], [1, 1, 1]);
      assert.deepEqual((await podnetRoutes(h1)).map((x) => x.dst), ['10.244.2.0/24']);
      // node1 has no other way to 10.244.3.0/24 (no default route on the flat underlay).
      await assert.rejects(h1.node.exec('ip', ['route', 'get', h3.podIP]), /unreachable/);
      assert.equal((await h1.dp.apply(specFor(h1, hosts, 'vxlan'))).routes.added, 1);
    });

    test('back to host-gw: the VXLAN device goes, host routes come back', async () => {
      for (const r of await applyAll(hosts, 'host-gw')) {
        assert.equal(r.device, 'deleted');
        assert.equal(r.notrack, 'remove');
        assert.deepEqual(r.routes, { added: 2, changed: 0, removed: 0 });
        assert.equal(r.podMTU, 1500);
      }
      assert.ok(!(await hosts[0]!.node.exec('ip', ['-br', 'link'])).stdout.includes('podnet.1'));
      assert.deepEqual(await notrackRules(hosts[0]!), [], 'host-gw has no notrack chains');
      await assertPodMesh(bed, hosts.slice(0, 2), 7180);
    });
  });

  describe('routed underlay: two segments joined by a router that knows no pod routes', { concurrency: false }, () => {
    let bed: TestBed;
    let hosts: Host[];
    let ext: Netns;
    before(async () => {
      bed = new TestBed('dprt');
      const swA = await makeSwitch(bed, 'swa');
      const swB = await makeSwitch(bed, 'swb');
      const router = await bed.netns('rt');
      ext = await bed.netns('ext');
      await plug(swA, 'rt', router, 'eth0');
      await plug(swB, 'rt', router, 'eth1');
      await batch(router, [
        `link add eth2 type veth peer name eth0 netns ${ext.name}`,
        'link set eth0 up',
        'link set eth1 up',
        'link set eth2 up',
        'addr add 192.168.1.1/24 dev eth0',
        'addr add 192.168.2.1/24 dev eth1',
        'addr add 203.0.113.1/24 dev eth2',
      ]);
      await router.exec('sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
      await batch(ext, ['link set eth0 up', 'addr add 203.0.113.10/24 dev eth0', 'route add default via 203.0.113.1']);
      // These nodes run with --vxlan-tx-checksum off (the pre-5.7 kernel path), so that path
      // keeps carrying real pod traffic in a test whatever kernel runs it.
      hosts = [
        await makeHost(bed, swA, 1, '192.168.1.11', '192.168.1.1', 'off'),
        await makeHost(bed, swB, 2, '192.168.2.12', '192.168.2.1', 'off'),
        await makeHost(bed, swA, 3, '192.168.1.13', '192.168.1.1', 'off'),
      ];
    });
    after(async () => {
      try {
        for (const h of hosts ?? []) assert.deepEqual(await h.dp.teardown(), []);
      } finally {
        await bed?.cleanup();
      }
    });

    test('host-gw reports the peer behind the router and installs no route for it', async () => {
      const [r1, r2, r3] = await applyAll(hosts, 'host-gw');
      assert.deepEqual(r1!.errors, [{ code: 'PODNET_PEER_UNREACHABLE', peer: 'node2', message: UNREACHABLE_NODE2 }]);
      assert.deepEqual(r3!.errors, [{ code: 'PODNET_PEER_UNREACHABLE', peer: 'node2', message: UNREACHABLE_NODE2 }]);
      assert.deepEqual(
        r2!.errors.map((e) => e.message),
        [
          'host-gw needs nodes on one L2 segment; node1 (192.168.1.11) is behind a router; use --backend vxlan',
          'host-gw needs nodes on one L2 segment; node3 (192.168.1.13) is behind a router; use --backend vxlan',
        ],
      );
      assert.deepEqual((await podnetRoutes(hosts[0]!)).map((r) => r.dst), ['10.244.3.0/24'], 'only the peer on the same segment');
      assert.deepEqual(await podnetRoutes(hosts[1]!), []);
      assert.equal(await sourceSeen(bed, hosts[0]!.pod, hosts[2]!.pod, hosts[2]!.podIP, 7200), hosts[0]!.podIP);
    });

    test('vxlan works across the router, without NAT, with TX checksum offload off', async () => {
      for (const r of await applyAll(hosts, 'vxlan')) {
        assert.deepEqual(r.errors, []);
        assert.equal(r.device, 'created');
      }
      for (const h of hosts) assert.equal(await txChecksumming(h), 'off');
      assert.deepEqual(await notrackRules(hosts[1]!), [
        'ip daddr 192.168.2.12 udp dport 4789 ip saddr { 192.168.1.11, 192.168.1.13 } notrack',
        'ip saddr 192.168.2.12 udp dport 4789 ip daddr { 192.168.1.11, 192.168.1.13 } notrack',
      ]);
      for (const h of hosts) await h.node.exec('conntrack', ['-F']);
      await assertPodMesh(bed, hosts, 7210);
      // Ports 7210-7215 in the order assertPodMesh uses them: 1→2, 1→3, 2→1, 2→3, 3→1, 3→2.
      const [h1, h2] = [hosts[0]!, hosts[1]!];
      for (const h of hosts) {
        const table = await conntrack(h);
        assert.deepEqual(outerEntries(table), [], `${h.spec.name} tracks no outer VXLAN packet`);
      }
      assert.ok(podFlowTracked(await conntrack(h2), h1, h2, 7210), 'node2 (behind the router) tracks the pod flow from node1');
      assert.ok(podFlowTracked(await conntrack(h1), h2, h1, 7212), 'node1 tracks the pod flow from node2');
    });

    test('an agent restarted with offload on turns it back on; one restarted with off turns it off again', async () => {
      const h = hosts[1]!;
      const on = await new Dataplane({ netns: h.node.path, vxlanTxChecksum: 'on' }).apply(specFor(h, hosts, 'vxlan'));
      assert.deepEqual(on.errors, []);
      assert.equal(on.writes, 1, 'one ethtool -K … tx on, nothing else');
      assert.equal(await txChecksumming(h), 'on');
      assert.equal(await sourceSeen(bed, h.pod, hosts[0]!.pod, hosts[0]!.podIP, 7220), h.podIP);
      const off = await new Dataplane({ netns: h.node.path, vxlanTxChecksum: 'off' }).apply(specFor(h, hosts, 'vxlan'));
      assert.equal(off.writes, 1, 'one ethtool -K … tx off');
      assert.equal(await txChecksumming(h), 'off');
    });

    test('masquerade: the outside sees the node IP, pods still see pod IPs', async () => {
      assert.equal(await sourceSeen(bed, hosts[0]!.pod, ext, '203.0.113.10', 7230), '192.168.1.11');
      assert.equal(await sourceSeen(bed, hosts[1]!.pod, ext, '203.0.113.10', 7231), '192.168.2.12');
      assert.equal(await sourceSeen(bed, hosts[1]!.pod, hosts[0]!.pod, hosts[0]!.podIP, 7232), hosts[1]!.podIP);
      // A pod reaching another node's own address leaves the pod network: masqueraded too.
      assert.equal(await sourceSeen(bed, hosts[0]!.pod, hosts[1]!.node, '192.168.2.12', 7233), '192.168.1.11');
    });

    test('rewriting the masquerade chain does not disturb an established flow', async () => {
      const ECHO = `
const srv = require('node:net').createServer((s) => {
  s.setEncoding('utf8');
  let buf = '';
  s.on('data', (c) => { buf += c; let i; while ((i = buf.indexOf('\\n')) >= 0) { s.write(s.remoteAddress + ' ' + buf.slice(0, i) + '\\n'); buf = buf.slice(i + 1); } });
});
srv.listen(Number(process.argv[1]), '0.0.0.0', () => process.stdout.write('ready\\n'));
setTimeout(() => process.exit(2), 20000).unref();
`;
      const CLIENT = `const s = require('node:net').connect(Number(process.argv[2]), process.argv[1]); process.stdin.pipe(s); s.pipe(process.stdout);`;
      const server = collect(bed.track(ext.spawn(process.execPath, ['-e', ECHO, '7240'])));
      await until(() => server.text().includes('ready'), 5000, 'echo server');
      const child = bed.track(spawn('ip', ['netns', 'exec', hosts[0]!.pod.name, process.execPath, '-e', CLIENT, '203.0.113.10', '7240'], { stdio: ['pipe', 'pipe', 'pipe'] }));
      const client = collect(child);
      child.stdin!.write('one\n');
      await until(() => client.text().includes('one'), 5000, 'the first echo');
      assert.equal(client.text(), '192.168.1.11 one\n');
      // Drift: someone edits podnet's chain; the next apply rewrites it in one transaction.
      await hosts[0]!.node.exec('nft', ['add', 'rule', 'inet', 'podnet', 'egress-masq', 'ip', 'daddr', '198.51.100.1', 'drop']);
      const r = await hosts[0]!.dp.apply(specFor(hosts[0]!, hosts, 'vxlan'));
      assert.equal(r.masq, 'write');
      assert.equal(r.writes, 1);
      child.stdin!.write('two\n');
      await until(() => client.text().includes('two'), 5000, 'the second echo');
      assert.equal(client.text(), '192.168.1.11 one\n192.168.1.11 two\n');
      child.stdin!.end();
    });
  });
});
