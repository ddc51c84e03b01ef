/**
 * The CNI plugins driven as a runtime drives them, in namespaces the test makes: a node
 * namespace (where the plugins run, as on a node) and pod namespaces. Real `ip`, real
 * nftables, real TCP between pods.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CNI_BIN, REF_BIN, type Netns, TestBed, isRoot, leases, links, runPlugin, sweepLeftovers, tcpExchange } from './support/netns.ts';

const BRIDGE = join(CNI_BIN, 'podnet-bridge');
const IPAM = join(CNI_BIN, 'podnet-ipam');
const skip = isRoot() ? false : 'needs root for network namespaces';

function bridgeConf(bed: TestBed, over: Record<string, unknown> = {}, ipamOver: Record<string, unknown> = {}): Record<string, any> {
  // A data directory per bridge keeps each test's leases apart.
  const bridge = String(over.bridge ?? 'cni0');
  return {
    cniVersion: '1.1.0',
    name: 'podnet',
    type: 'podnet-bridge',
    bridge,
    isGateway: true,
    isDefaultGateway: true,
    ipam: { type: 'podnet-ipam', subnet: '10.244.1.0/24', dataDir: join(bed.dir, `ipam-${bridge}`), ...ipamOver },
    ...over,
  };
}

async function podIP(pod: Netns, ifName = 'eth0'): Promise<string> {
  const { stdout } = await pod.exec('ip', ['-j', '-4', 'addr', 'show', 'dev', ifName]);
  return (JSON.parse(stdout) as Array<{ addr_info: Array<{ local: string }> }>)[0]!.addr_info[0]!.local;
}

describe('podnet-bridge with podnet-ipam in a node namespace', { skip, concurrency: false }, () => {
  let bed: TestBed;
  let node: Netns;
  before(async () => {
    await sweepLeftovers();
    bed = new TestBed('cni');
    node = await bed.netns('node');
  });
  after(async () => bed?.cleanup());

  test('three pods get distinct addresses from the subnet and talk over TCP', async () => {
    const conf = bridgeConf(bed);
    const pods: Netns[] = [];
    const ips: string[] = [];
    for (const i of [1, 2, 3]) {
      const pod = await bed.netns(`p${i}`);
      pods.push(pod);
      const out = await runPlugin(node, BRIDGE, { command: 'ADD', containerId: `ctr${i}`, netns: pod.path, ifName: 'eth0' }, conf);
      assert.equal(out.code, 0, out.stdout + out.stderr);
      assert.equal(out.json.cniVersion, '1.1.0');
      const addr: string = out.json.ips[0].address;
      assert.match(addr, /^10\.244\.1\.\d+\/24$/);
      assert.equal(out.json.ips[0].gateway, '10.244.1.1');
      assert.equal(out.json.ips[0].interface, 2);
      assert.equal(out.json.interfaces[2].name, 'eth0');
      assert.equal(out.json.interfaces[2].sandbox, pod.path);
      assert.deepEqual(out.json.routes, [{ dst: '0.0.0.0/0', gw: '10.244.1.1' }]);
      ips.push(addr.split('/')[0]!);
      assert.equal(await podIP(pod), addr.split('/')[0]);
    }
    assert.equal(new Set(ips).size, 3);
    assert.equal(await tcpExchange(pods[0]!, pods[1]!, ips[1]!, 7001, 'pod1 to pod2'), 'pod1 to pod2');
    assert.equal(await tcpExchange(pods[2]!, pods[0]!, ips[0]!, 7002, 'pod3 to pod1'), 'pod3 to pod1');
    // The node reaches its pods through the bridge's gateway address.
    assert.equal(await tcpExchange(node, pods[2]!, ips[2]!, 7003, 'node to pod3'), 'node to pod3');

    // CHECK passes on what ADD made, and fails once the pod's interface is gone.
    // A second interface in the same pod (no second default route).
    const prev = (await runPlugin(node, BRIDGE, { command: 'ADD', containerId: 'ctr-check', netns: pods[0]!.path, ifName: 'eth1' }, { ...conf, isDefaultGateway: false })).json;
    assert.ok(prev.ips, JSON.stringify(prev));
    const ok = await runPlugin(node, BRIDGE, { command: 'CHECK', containerId: 'ctr-check', netns: pods[0]!.path, ifName: 'eth1' }, { ...conf, prevResult: prev });
    assert.equal(ok.code, 0, ok.stdout);
    await pods[0]!.exec('ip', ['link', 'del', 'eth1']);
    const bad = await runPlugin(node, BRIDGE, { command: 'CHECK', containerId: 'ctr-check', netns: pods[0]!.path, ifName: 'eth1' }, { ...conf, prevResult: prev });
    assert.notEqual(bad.code, 0);
    assert.match(bad.json.msg, /eth1/);

    // DEL releases everything; a second DEL, and DEL with the namespace gone, still succeed.
    for (const i of [1, 2, 3]) {
      for (let round = 0; round < 2; round++) {
        const out = await runPlugin(node, BRIDGE, { command: 'DEL', containerId: `ctr${i}`, netns: pods[i - 1]!.path, ifName: 'eth0' }, conf);
        assert.equal(out.code, 0, out.stdout);
        assert.equal(out.stdout, '');
      }
    }
    const gone = await runPlugin(node, BRIDGE, { command: 'DEL', containerId: 'ctr-check', netns: '/var/run/netns/does-not-exist', ifName: 'eth1' }, conf);
    assert.equal(gone.code, 0, gone.stdout);
    assert.deepEqual(leases(conf.ipam.dataDir, 'podnet'), []);
    assert.deepEqual((await links(node)).filter((l) => l.startsWith('pnv')), []);
  });

  test('answers in the version of its config: 0.4.0, 1.0.0 and 1.1.0', async () => {
    for (const v of ['0.4.0', '1.0.0', '1.1.0']) {
      const pod = await bed.netns(`v${v.replaceAll('.', '')}`);
      const conf = bridgeConf(bed, { cniVersion: v, bridge: 'cni1' }, { subnet: '10.244.2.0/24' });
      const out = await runPlugin(node, BRIDGE, { command: 'ADD', containerId: `ver${v}`, netns: pod.path, ifName: 'eth0' }, conf);
      assert.equal(out.code, 0, out.stdout);
      assert.equal(out.json.cniVersion, v);
      assert.equal(out.json.ips[0].version, v === '0.4.0' ? '4' : undefined);
      const del = await runPlugin(node, BRIDGE, { command: 'DEL', containerId: `ver${v}`, netns: pod.path, ifName: 'eth0' }, conf);
      assert.equal(del.code, 0);
    }
    const ver = await runPlugin(node, BRIDGE, { command: 'VERSION' }, { cniVersion: '1.1.0' });
    assert.deepEqual(ver.json.supportedVersions, ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0']);
  });

  test('a failed ADD leaves no veth, no lease and no masquerade entry behind', async () => {
    const pod = await bed.netns('fail');
    // The pod already has an eth0: creating the pair fails after the address was leased.
    await pod.exec('ip', ['link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0peer']);
    const conf = bridgeConf(bed, { bridge: 'cni2', ipMasq: true }, { subnet: '10.244.3.0/24' });
    const out = await runPlugin(node, BRIDGE, { command: 'ADD', containerId: 'failing', netns: pod.path, ifName: 'eth0' }, conf);
    assert.notEqual(out.code, 0);
    assert.equal(typeof out.json.code, 'number');
    assert.match(out.json.msg, /eth0/);
    assert.deepEqual(leases(conf.ipam.dataDir, 'podnet'), []);
    assert.deepEqual((await links(node)).filter((l) => l.startsWith('pnv')), []);
    const nft = await node.exec('nft', ['list', 'ruleset']);
    assert.doesNotMatch(nft.stdout, /10\.244\.3\.\d+ :/);
    // The same container can be added once the conflict is gone.
    await pod.exec('ip', ['link', 'del', 'eth0']);
    assert.deepEqual(await links(pod), ['lo']);
    const again = await runPlugin(node, BRIDGE, { command: 'ADD', containerId: 'failing', netns: pod.path, ifName: 'eth0' }, conf);
    assert.equal(again.code, 0, again.stdout);
    const masq = await node.exec('nft', ['list', 'map', 'inet', 'podnet-bridge', 'masq4']);
    assert.match(masq.stdout, /10\.244\.3\.\d+ : jump/);
    const del = await runPlugin(node, BRIDGE, { command: 'DEL', containerId: 'failing', netns: pod.path, ifName: 'eth0' }, conf);
    assert.equal(del.code, 0);
    const after = await node.exec('nft', ['list', 'map', 'inet', 'podnet-bridge', 'masq4']);
    assert.doesNotMatch(after.stdout, /10\.244\.3\.\d+ : jump/);
  });

  test('a second ADD for the same container and interface is refused and keeps the first', async () => {
    const pod = await bed.netns('dup');
    const conf = bridgeConf(bed, { bridge: 'cni3' }, { subnet: '10.244.4.0/24' });
    const first = await runPlugin(node, BRIDGE, { command: 'ADD', containerId: 'dup', netns: pod.path, ifName: 'eth0' }, conf);
    assert.equal(first.code, 0);
    const second = await runPlugin(node, BRIDGE, { command: 'ADD', containerId: 'dup', netns: pod.path, ifName: 'eth0' }, conf);
    assert.notEqual(second.code, 0);
    assert.match(second.json.msg, /already has addresses/);
    assert.equal(leases(conf.ipam.dataDir, 'podnet').length, 1);
    assert.equal(await podIP(pod), first.json.ips[0].address.split('/')[0]);
    await runPlugin(node, BRIDGE, { command: 'DEL', containerId: 'dup', netns: pod.path, ifName: 'eth0' }, conf);
  });

  test('50 concurrent ADDs on one node never share an address', async () => {
    const conf = bridgeConf(bed, { bridge: 'cni4' }, { subnet: '10.244.5.0/24' });
    const pods = await Promise.all(Array.from({ length: 50 }, (_, i) => bed.netns(`c${i}`)));
    const outs = await Promise.all(pods.map((p, i) => runPlugin(node, BRIDGE, { command: 'ADD', containerId: `conc${i}`, netns: p.path, ifName: 'eth0' }, conf)));
    for (const o of outs) assert.equal(o.code, 0, o.stdout + o.stderr);
    const addrs = outs.map((o) => o.json.ips[0].address);
    assert.equal(new Set(addrs).size, 50);
    assert.equal(leases(conf.ipam.dataDir, 'podnet').length, 50);
    const dels = await Promise.all(pods.map((p, i) => runPlugin(node, BRIDGE, { command: 'DEL', containerId: `conc${i}`, netns: p.path, ifName: 'eth0' }, conf)));
    for (const d of dels) assert.equal(d.code, 0, d.stdout);
    assert.deepEqual(leases(conf.ipam.dataDir, 'podnet'), []);
  });

  test('GC releases every attachment not in cni.dev/valid-attachments, and STATUS reports readiness', async () => {
    const conf = bridgeConf(bed, { bridge: 'cni5' }, { subnet: '10.244.6.0/29' });
    const pods = await Promise.all([0, 1, 2].map((i) => bed.netns(`gc${i}`)));
    for (const [i, p] of pods.entries()) {
      const o = await runPlugin(node, BRIDGE, { command: 'ADD', containerId: `gc${i}`, netns: p.path, ifName: 'eth0' }, conf);
      assert.equal(o.code, 0, o.stdout);
    }
    const gc = await runPlugin(node, BRIDGE, { command: 'GC' }, { ...conf, 'cni.dev/valid-attachments': [{ containerID: 'gc1', ifname: 'eth0' }] });
    assert.equal(gc.code, 0, gc.stdout);
    assert.equal(leases(conf.ipam.dataDir, 'podnet').length, 1);
    assert.deepEqual((await links(node)).filter((l) => l.startsWith('pnv')).length, 1);
    const status = await runPlugin(node, BRIDGE, { command: 'STATUS' }, conf);
    assert.equal(status.code, 0, status.stdout);
    // A /29 has 5 usable addresses besides the gateway: fill them, then STATUS says 50, ADD says 100.
    const more = await Promise.all([3, 4, 5, 6].map((i) => bed.netns(`gc${i}`)));
    for (const [i, p] of more.entries()) {
      const o = await runPlugin(node, BRIDGE, { command: 'ADD', containerId: `gcm${i}`, netns: p.path, ifName: 'eth0' }, conf);
      assert.equal(o.code, 0, o.stdout);
    }
    const full = await runPlugin(node, BRIDGE, { command: 'STATUS' }, conf);
    assert.equal(full.json.code, 50);
    const extra = await bed.netns('gcx');
    const exhausted = await runPlugin(node, BRIDGE, { command: 'ADD', containerId: 'gcx', netns: extra.path, ifName: 'eth0' }, conf);
    assert.equal(exhausted.json.code, 100);
    assert.match(exhausted.json.msg, /no IP addresses left/);
    assert.deepEqual(await links(extra), ['lo']);
    const clear = await runPlugin(node, BRIDGE, { command: 'GC' }, { ...conf, 'cni.dev/valid-attachments': [] });
    assert.equal(clear.code, 0);
    assert.deepEqual(leases(conf.ipam.dataDir, 'podnet'), []);
  });

  test('the subnet can come from the file the agent writes; before it exists ADD says try again', async () => {
    const file = join(bed.dir, 'subnet.json');
    const conf = bridgeConf(bed, { bridge: 'cni6' }, { subnet: undefined, subnetFile: file });
    const pod = await bed.netns('sf');
    const early = await runPlugin(node, BRIDGE, { command: 'ADD', containerId: 'sf', netns: pod.path, ifName: 'eth0' }, conf);
    assert.equal(early.json.code, 11);
    const status = await runPlugin(node, BRIDGE, { command: 'STATUS' }, conf);
    assert.equal(status.json.code, 50);
    writeFileSync(file, JSON.stringify({ network: '10.244.0.0/16', subnet: '10.244.7.0/24', mtu: 1450 }));
    const out = await runPlugin(node, BRIDGE, { command: 'ADD', containerId: 'sf', netns: pod.path, ifName: 'eth0' }, conf);
    assert.equal(out.code, 0, out.stdout);
    assert.match(out.json.ips[0].address, /^10\.244\.7\./);
    await runPlugin(node, BRIDGE, { command: 'DEL', containerId: 'sf', netns: pod.path, ifName: 'eth0' }, conf);
  });
});

describe('mixing with the reference plugins', { skip, concurrency: false }, () => {
  let bed: TestBed;
  let node: Netns;
  before(async () => {
    await sweepLeftovers();
    bed = new TestBed('mix');
    node = await bed.netns('node');
  });
  after(async () => bed?.cleanup());

  const pairings = [
    { name: 'podnet-bridge with the reference host-local', main: BRIDGE, ipamType: 'host-local', net: 10 },
    { name: 'the reference bridge with podnet-ipam', main: join(REF_BIN, 'bridge'), ipamType: 'podnet-ipam', net: 11 },
    { name: 'podnet-ipam alone answers like host-local', main: IPAM, ipamType: 'podnet-ipam', net: 12 },
  ];
  for (const p of pairings) {
    test(`${p.name}: ADD, traffic, CHECK, DEL`, async () => {
      const conf = {
        cniVersion: '1.0.0',
        name: `mix${p.net}`,
        type: p.main.endsWith('podnet-ipam') ? 'podnet-ipam' : 'bridge',
        bridge: `br${p.net}`,
        isGateway: true,
        ipam: { type: p.ipamType, ranges: [[{ subnet: `10.244.${p.net}.0/24` }]], routes: [{ dst: '0.0.0.0/0' }], dataDir: join(bed.dir, `ipam${p.net}`) },
      };
      const a = await bed.netns(`a${p.net}`);
      const b = await bed.netns(`b${p.net}`);
      const outA = await runPlugin(node, p.main, { command: 'ADD', containerId: `a${p.net}`, netns: a.path, ifName: 'eth0' }, conf);
      assert.equal(outA.code, 0, outA.stdout + outA.stderr);
      assert.equal(outA.json.cniVersion, '1.0.0');
      assert.match(outA.json.ips[0].address, new RegExp(`^10\\.244\\.${p.net}\\.\\d+/24$`));
      if (p.main === IPAM) {
        // IPAM alone: the lease exists, in the reference layout, and DEL removes it.
        assert.deepEqual(leases(conf.ipam.dataDir, conf.name), [outA.json.ips[0].address.split('/')[0]]);
      } else {
        const outB = await runPlugin(node, p.main, { command: 'ADD', containerId: `b${p.net}`, netns: b.path, ifName: 'eth0' }, conf);
        assert.equal(outB.code, 0, outB.stdout);
        const ipB = outB.json.ips[0].address.split('/')[0];
        assert.equal(await tcpExchange(a, b, ipB, 7100 + p.net, `over ${p.name}`), `over ${p.name}`);
        const check = await runPlugin(node, p.main, { command: 'CHECK', containerId: `b${p.net}`, netns: b.path, ifName: 'eth0' }, { ...conf, prevResult: outB.json });
        assert.equal(check.code, 0, check.stdout + check.stderr);
        await runPlugin(node, p.main, { command: 'DEL', containerId: `b${p.net}`, netns: b.path, ifName: 'eth0' }, { ...conf, prevResult: outB.json });
      }
      const del = await runPlugin(node, p.main, { command: 'DEL', containerId: `a${p.net}`, netns: a.path, ifName: 'eth0' }, { ...conf, prevResult: outA.json });
      assert.equal(del.code, 0, del.stdout);
      assert.deepEqual(leases(conf.ipam.dataDir, conf.name), []);
    });
  }

  test('our result feeds the reference portmap in a conflist (hostPort and HostPort spellings)', async () => {
    const pod = await bed.netns('pm');
    const netConf = {
      cniVersion: '1.0.0',
      name: 'pm',
      type: 'podnet-bridge',
      bridge: 'brpm',
      isGateway: true,
      ipam: { type: 'podnet-ipam', subnet: '10.244.20.0/24', dataDir: join(bed.dir, 'ipampm') },
    };
    const add = await runPlugin(node, BRIDGE, { command: 'ADD', containerId: 'pm', netns: pod.path, ifName: 'eth0' }, netConf);
    assert.equal(add.code, 0, add.stdout);
    for (const [spelling, port] of [['hostPort', 18080], ['HostPort', 18081]] as const) {
      const mapping =
        spelling === 'hostPort'
          ? { hostPort: port, containerPort: 80, protocol: 'tcp' }
          : { HostPort: port, ContainerPort: 80, Protocol: 'tcp' };
      const pm = {
        cniVersion: '1.0.0',
        name: 'pm',
        type: 'portmap',
        capabilities: { portMappings: true },
        runtimeConfig: { portMappings: [mapping] },
        prevResult: add.json,
      };
      const out = await runPlugin(node, join(REF_BIN, 'portmap'), { command: 'ADD', containerId: 'pm', netns: pod.path, ifName: 'eth0' }, pm);
      // portmap reads the mapping through its own JSON decoding; both spellings decode.
      assert.equal(out.code, 0, out.stdout + out.stderr);
      assert.equal(out.json.ips[0].address, add.json.ips[0].address, 'portmap passes our result on');
      const rules = await node.exec('iptables-save', ['-t', 'nat']);
      assert.match(rules.stdout, new RegExp(`--dport ${port}`));
      const del = await runPlugin(node, join(REF_BIN, 'portmap'), { command: 'DEL', containerId: 'pm', netns: pod.path, ifName: 'eth0' }, pm);
      assert.equal(del.code, 0, del.stdout);
    }
    await runPlugin(node, BRIDGE, { command: 'DEL', containerId: 'pm', netns: pod.path, ifName: 'eth0' }, netConf);
  });
});

describe('crash safety and bad input', { skip, concurrency: false }, () => {
  let bed: TestBed;
  let node: Netns;
  before(async () => {
    await sweepLeftovers();
    bed = new TestBed('crash');
    node = await bed.netns('node');
  });
  after(async () => bed?.cleanup());

  test('kill -9 at any point of ADD leaves nothing that DEL or GC cannot reclaim', async () => {
    const conf = bridgeConf(bed, { bridge: 'cni9', ipMasq: true }, { subnet: '10.244.30.0/24' });
    // Kill after increasing delays so that the kill lands in different steps of ADD.
    const delays = [0, 10, 20, 30, 35, 40, 45, 50, 55, 60, 70, 80];
    for (const [i, ms] of delays.entries()) {
      const pod = await bed.netns(`k${i}`);
      const env = {
        CNI_COMMAND: 'ADD',
        CNI_CONTAINERID: `kill${i}`,
        CNI_NETNS: pod.path,
        CNI_IFNAME: 'eth0',
        CNI_PATH: CNI_BIN,
        PATH: process.env.PATH ?? '',
      };
      // nsenter (not `ip netns exec`) so that the pid we kill is the plugin itself.
      const child = spawn('nsenter', [`--net=${node.path}`, BRIDGE], { env, stdio: ['pipe', 'ignore', 'ignore'] });
      const closed = new Promise((r) => child.on('close', r));
      child.stdin.end(JSON.stringify(conf));
      await new Promise((r) => setTimeout(r, ms));
      child.kill('SIGKILL');
      await closed;
    }
    // The runtime's view after the crashes: none of those pods exist. GC with no valid attachment.
    const gc = await runPlugin(node, BRIDGE, { command: 'GC' }, { ...conf, 'cni.dev/valid-attachments': [] });
    assert.equal(gc.code, 0, gc.stdout);
    // DEL of each is still fine afterwards (idempotent).
    for (const i of delays.keys()) {
      const del = await runPlugin(node, BRIDGE, { command: 'DEL', containerId: `kill${i}`, netns: `/var/run/netns/${bed.id}-k${i}`, ifName: 'eth0' }, conf);
      assert.equal(del.code, 0, del.stdout);
    }
    assert.deepEqual(leases(conf.ipam.dataDir, 'podnet'), []);
    assert.deepEqual((await links(node)).filter((l) => l.startsWith('pnv')), []);
    // And the range is whole again: a fresh pod gets an address.
    const pod = await bed.netns('after');
    const ok = await runPlugin(node, BRIDGE, { command: 'ADD', containerId: 'after', netns: pod.path, ifName: 'eth0' }, conf);
    assert.equal(ok.code, 0, ok.stdout);
    await runPlugin(node, BRIDGE, { command: 'DEL', containerId: 'after', netns: pod.path, ifName: 'eth0' }, conf);
  });

  test('fuzzed bad input gets one well-formed error object and changes nothing', async () => {
    const pod = await bed.netns('fuzz');
    const base = bridgeConf(bed, { bridge: 'cni10' }, { subnet: '10.244.31.0/24' });
    const mutations: Array<[string, string | object, Record<string, string>?]> = [
      ['empty stdin', ''],
      ['not JSON', '{"cniVersion": "1.1.0", "name": '],
      ['a JSON array', '[1,2,3]'],
      ['unknown version', { ...base, cniVersion: '9.9.9' }],
      ['no name', { ...base, name: undefined }],
      ['name with a slash', { ...base, name: '../etc' }],
      ['bridge name too long', { ...base, bridge: 'averyveryverylongname' }],
      ['bridge name as an option', { ...base, bridge: '-all' }],
      ['bridge name with newline', { ...base, bridge: 'br\nlink del eth0' }],
      ['mtu as a string', { ...base, mtu: '1500' }],
      ['isGateway as a string', { ...base, isGateway: 'yes' }],
      ['no ipam', { ...base, ipam: undefined }],
      ['ipam type with a path', { ...base, ipam: { ...base.ipam, type: '../../bin/sh' } }],
      ['subnet not a CIDR', { ...base, ipam: { ...base.ipam, subnet: '10.244.31.0' } }],
      ['rangeEnd outside subnet', { ...base, ipam: { ...base.ipam, rangeEnd: '10.9.9.9' } }],
      ['relative dataDir', { ...base, ipam: { ...base.ipam, dataDir: 'rel/dir' } }],
      ['requested IP outside range', { ...base, runtimeConfig: { ips: ['192.0.2.1/24'] } }],
      ['vlan (unsupported)', { ...base, vlan: 5 }],
      ['bad MAC', { ...base, runtimeConfig: { mac: 'zz:zz' } }],
      ['interface name with a slash', base, { CNI_IFNAME: 'eth/0' }],
      ['interface name too long', base, { CNI_IFNAME: 'eth0123456789abcdef' }],
      ['container id with spaces', base, { CNI_CONTAINERID: 'a b' }],
      ['relative netns path', base, { CNI_NETNS: 'netns/x' }],
      ['netns that does not exist', base, { CNI_NETNS: '/var/run/netns/nope-nope' }],
      ['unknown command', base, { CNI_COMMAND: 'FROB' }],
      ['CNI_ARGS not key=value', base, { CNI_ARGS: 'IP' }],
    ];
    // Random byte noise as well: a fixed seed keeps failures reproducible.
    let seed = 42;
    const rnd = (): number => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
    const text = JSON.stringify(base);
    for (let i = 0; i < 20; i++) {
      const chars = [...text];
      for (let k = 0; k < 3; k++) chars[Math.floor(rnd() * chars.length)] = String.fromCharCode(32 + Math.floor(rnd() * 90));
      const noisy = chars.join('');
      // Noise that still parses but lost the test's dataDir would write to the machine's default
      // one (/var/lib/cni/networks): keep only noise that cannot.
      try {
        if (JSON.parse(noisy)?.ipam?.dataDir !== base.ipam.dataDir) continue;
      } catch {
        // Not JSON any more: exactly the kind of input this test wants.
      }
      mutations.push([`noise ${i}`, noisy]);
    }
    const before = await links(node);
    for (const [label, stdin, env] of mutations) {
      const out = await runPlugin(node, BRIDGE, { command: 'ADD', containerId: `fuzz${label.length}`, netns: pod.path, ifName: 'eth0', env }, stdin);
      if (label.startsWith('noise') && out.code === 0) {
        // A mutation may leave the JSON valid and meaningful: then it must have worked fully.
        await runPlugin(node, BRIDGE, { command: 'DEL', containerId: `fuzz${label.length}`, netns: pod.path, ifName: 'eth0' }, stdin);
        continue;
      }
      assert.notEqual(out.code, 0, `${label}: must fail`);
      assert.ok(out.json, `${label}: stdout must be one JSON object, got ${JSON.stringify(out.stdout)}`);
      assert.equal(out.stdout.trim().split('\n').length, 1, `${label}: exactly one line`);
      assert.equal(typeof out.json.code, 'number', label);
      assert.equal(typeof out.json.msg, 'string', label);
      assert.ok(out.json.cniVersion, label);
      assert.deepEqual(await links(pod), ['lo'], `${label}: the pod is untouched`);
    }
    const afterLinks = await links(node);
    assert.deepEqual(afterLinks.filter((l) => l.startsWith('pnv')), before.filter((l) => l.startsWith('pnv')));
    assert.deepEqual(leases(base.ipam.dataDir, 'podnet'), []);
  });
});
