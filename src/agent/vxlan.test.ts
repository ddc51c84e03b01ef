import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { parseIP, sameIP } from '../netaddr/index.ts';
import { planNode } from './dataplane.ts';
import { checkSpec } from './spec.ts';
import {
  NOTRACK_IN_CHAIN,
  NOTRACK_OUT_CHAIN,
  decideTxChecksum,
  hasNatChecksumBug,
  isVxlanDeviceName,
  parseKernelRelease,
  planVxlan,
  planVxlanNotrack,
  planVxlanNotrackRemoval,
  vtepMac,
  vxlanDeviceName,
} from './vxlan.ts';
import type { DataplaneSpec, FdbEntry, NodeSpec, NotrackPlan, Underlay, VxlanDevice } from './types.ts';

const self: NodeSpec = { name: 'node1', nodeIP: '192.168.1.11', subnet: '10.244.1.0/24' };
const eth0: Underlay = { name: 'eth0', mtu: 1500, addresses: ['192.168.1.11/24'] };

function spec(peers: NodeSpec[], over: Partial<DataplaneSpec> = {}): DataplaneSpec {
  return { self, peers, clusterCIDR: '10.244.0.0/16', backend: 'vxlan', underlayIface: 'eth0', ...over };
}

describe('vtepMac', () => {
  test('is stable, unicast and locally administered', () => {
    for (const name of ['node1', 'node2', 'a', 'worker-17.example.com']) {
      const mac = vtepMac(name);
      assert.equal(mac, vtepMac(name));
      assert.match(mac, /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);
      const first = parseInt(mac.slice(0, 2), 16);
      assert.equal(first & 1, 0, 'unicast');
      assert.equal(first & 2, 2, 'locally administered');
    }
  });
  test('differs between nodes', () => {
    const macs = new Set(Array.from({ length: 500 }, (_, i) => vtepMac(`node${i}`)));
    assert.equal(macs.size, 500);
  });
});

describe('vxlan device names', () => {
  const cases: Array<[number, string]> = [
    [1, 'podnet.1'],
    [42, 'podnet.42'],
    [16777215, 'podnet.16777215'],
  ];
  for (const [vni, name] of cases) {
    test(`VNI ${vni} is ${name}, within the 15-byte limit`, () => {
      assert.equal(vxlanDeviceName(vni), name);
      assert.ok(name.length <= 15);
      assert.ok(isVxlanDeviceName(name));
    });
  }
  for (const name of ['podnet', 'podnet.', 'podnet.0', 'podnet.x', 'cni0', 'flannel.1']) {
    test(`${name} is not one of ours`, () => assert.equal(isVxlanDeviceName(name), false));
  }
});

describe('planVxlan', () => {
  test('one device with the node IP as VTEP, the subnet .0/32 and MTU − 50', () => {
    const { device } = planVxlan(checkSpec(spec([])), eth0);
    assert.deepEqual(device, {
      name: 'podnet.1',
      vni: 1,
      port: 4789,
      local: '192.168.1.11',
      dev: 'eth0',
      mac: vtepMac('node1'),
      mtu: 1450,
      address: '10.244.1.0/32',
    });
  });

  test('VNI, port, jumbo frames and an explicit MAC are honoured', () => {
    const s = spec([], { vni: 7, port: 8472, self: { ...self, vtepMac: '0A:00:00:00:00:01' } });
    const { device } = planVxlan(checkSpec(s), { ...eth0, mtu: 9001 });
    assert.equal(device.name, 'podnet.7');
    assert.equal(device.port, 8472);
    assert.equal(device.mtu, 8951);
    assert.equal(device.mac, '0a:00:00:00:00:01');
  });

  const cases: Array<{ name: string; peers: NodeSpec[]; lines: string[]; errors: string[] }> = [
    {
      name: 'per peer a route via its .0 onlink, a permanent neighbour and an FDB entry',
      peers: [
        { name: 'node3', nodeIP: '192.168.2.13', subnet: '10.244.3.0/24', vtepMac: '02:00:00:00:00:03' },
        { name: 'node2', nodeIP: '192.168.1.12', subnet: '10.244.2.0/24', vtepMac: '02:00:00:00:00:02' },
      ],
      lines: [
        'route 10.244.2.0/24 via 10.244.2.0 dev podnet.1 onlink',
        'neigh 10.244.2.0 02:00:00:00:00:02',
        'fdb 02:00:00:00:00:02 dst 192.168.1.12',
        'route 10.244.3.0/24 via 10.244.3.0 dev podnet.1 onlink',
        'neigh 10.244.3.0 02:00:00:00:00:03',
        'fdb 02:00:00:00:00:03 dst 192.168.2.13',
      ],
      errors: [],
    },
    {
      name: 'a peer without a VTEP MAC gets the one derived from its name',
      peers: [{ name: 'node2', nodeIP: '192.168.1.12', subnet: '10.244.2.0/24' }],
      lines: [
        'route 10.244.2.0/24 via 10.244.2.0 dev podnet.1 onlink',
        `neigh 10.244.2.0 ${vtepMac('node2')}`,
        `fdb ${vtepMac('node2')} dst 192.168.1.12`,
      ],
      errors: [],
    },
    {
      name: 'a peer claiming our VTEP MAC is left out',
      peers: [{ name: 'node2', nodeIP: '192.168.1.12', subnet: '10.244.2.0/24', vtepMac: vtepMac('node1') }],
      lines: [],
      errors: [`peer node2: VTEP MAC ${vtepMac('node1')} is also node1's; left out`],
    },
    {
      name: 'a peer whose node IP is of the other family is left out',
      peers: [{ name: 'node2', nodeIP: 'fd00::12', subnet: '10.244.2.0/24' }],
      lines: [],
      errors: ["peer node2: its node IP fd00::12 is IPv6 but this node's VTEP is IPv4; left out"],
    },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const p = planVxlan(checkSpec(spec(c.peers)), eth0);
      const lines: string[] = [];
      p.routes.forEach((r, i) => {
        lines.push(`route ${r.dst} via ${r.via} dev ${r.dev}${r.onlink ? ' onlink' : ''}`);
        lines.push(`neigh ${p.neighs[i]!.ip} ${p.neighs[i]!.mac}`);
        lines.push(`fdb ${p.fdb[i]!.mac} dst ${p.fdb[i]!.dst}`);
      });
      assert.deepEqual(lines, c.lines);
      assert.deepEqual(p.errors.map((e) => e.message), c.errors);
    });
  }
});

describe('TX checksum offload by kernel release (the NAT checksum bug, fixed by ea64d8d6c675)', () => {
  // [uname -r, has the bug, what auto does]
  const cases: Array<[string, boolean | undefined, 'off' | 'on']> = [
    ['3.10.0-1127.el7.x86_64', true, 'off'], // RHEL 7: never fixed
    ['4.14.180', true, 'off'],
    ['4.14.181', false, 'on'], // first fixed 4.14 stable
    ['4.18.0-240.el8.x86_64', true, 'off'], // RHEL 8 backported it, but the version cannot tell
    ['4.19.122', true, 'off'],
    ['4.19.123', false, 'on'],
    ['4.19.0-9-amd64', true, 'off'], // Debian's ABI number is not a patch level
    ['4.9.224', true, 'off'], // no backport known for 4.9
    ['5.4.0-42-generic', true, 'off'], // Ubuntu's 5.4.0-N: the version cannot tell
    ['5.4.40', true, 'off'],
    ['5.4.41', false, 'on'],
    ['5.5.19', true, 'off'], // 5.5 was already closed
    ['5.6.12', true, 'off'],
    ['5.6.13', false, 'on'],
    ['5.7.0-rc2', true, 'off'],
    ['5.7', false, 'on'],
    ['5.7.0', false, 'on'],
    ['5.8.0-63-generic', false, 'on'],
    ['5.15.0-134-generic', false, 'on'],
    ['6.18.44-fc-v669', false, 'on'], // the machine the benchmark runs on
    ['10.0.1', false, 'on'],
    ['', undefined, 'off'],
    ['not-a-kernel', undefined, 'off'],
  ];
  for (const [release, bug, auto] of cases) {
    test(`${release || '(empty)'}: ${bug === undefined ? 'unreadable' : bug ? 'affected' : 'fixed'}, auto turns offload ${auto}`, () => {
      assert.equal(hasNatChecksumBug(release), bug);
      const d = decideTxChecksum('auto', release);
      assert.equal(d.offload, auto === 'on');
      assert.equal(d.kernel, release);
      assert.equal(d.mode, 'auto');
    });
  }
  test('off and on do as they say on any kernel', () => {
    for (const release of ['4.19.0', '6.18.44']) {
      assert.equal(decideTxChecksum('off', release).offload, false);
      assert.equal(decideTxChecksum('on', release).offload, true);
    }
  });
  test('the reason names the fix', () => {
    assert.match(decideTxChecksum('auto', '5.4.0-42-generic').reason, /predates the fix .*ea64d8d6c675.*turned off/);
    assert.match(decideTxChecksum('auto', '6.18.44').reason, /has the fix .*left on/);
  });
  test('parseKernelRelease', () => {
    assert.deepEqual(parseKernelRelease('6.18.44-fc-v669'), [6, 18, 44]);
    assert.deepEqual(parseKernelRelease('5.7'), [5, 7, 0]);
    assert.equal(parseKernelRelease('v5.7'), undefined);
  });
});

describe('planVxlanNotrack: the outer VXLAN packets leave conntrack', () => {
  const node = (i: number, ip: string): NodeSpec => ({ name: `node${i}`, nodeIP: ip, subnet: `10.244.${i}.0/24` });
  const plan = (s: DataplaneSpec, u: Underlay | undefined): NotrackPlan | undefined => planNode(s, u).notrack;
  const rules = (p: NotrackPlan | undefined) => (p ? [p.chains[NOTRACK_IN_CHAIN]!.slice(1), p.chains[NOTRACK_OUT_CHAIN]!.slice(1)] : undefined);
  const cases: Array<{ name: string; spec: DataplaneSpec; underlay?: Underlay; rules: string[][] | undefined }> = [
    { name: 'host-gw: none', spec: spec([node(2, '192.168.1.12')], { backend: 'host-gw' }), rules: undefined },
    { name: 'vxlan without peers: none (no tunnel traffic)', spec: spec([]), rules: undefined },
    {
      name: 'vxlan, one peer: its address and ours, the VXLAN port, UDP',
      spec: spec([node(2, '192.168.1.12')]),
      rules: [['ip daddr 192.168.1.11 udp dport 4789 ip saddr 192.168.1.12 notrack'], ['ip saddr 192.168.1.11 udp dport 4789 ip daddr 192.168.1.12 notrack']],
    },
    {
      name: 'vxlan, peers in any order and behind a router: one set, sorted by value as nft lists it',
      spec: spec([node(4, '192.168.1.100'), node(2, '192.168.2.12'), node(3, '192.168.1.9')]),
      rules: [
        ['ip daddr 192.168.1.11 udp dport 4789 ip saddr { 192.168.1.9, 192.168.1.100, 192.168.2.12 } notrack'],
        ['ip saddr 192.168.1.11 udp dport 4789 ip daddr { 192.168.1.9, 192.168.1.100, 192.168.2.12 } notrack'],
      ],
    },
    {
      name: 'the configured port (flannel\'s 8472)',
      spec: spec([node(2, '192.168.1.12')], { port: 8472 }),
      rules: [['ip daddr 192.168.1.11 udp dport 8472 ip saddr 192.168.1.12 notrack'], ['ip saddr 192.168.1.11 udp dport 8472 ip daddr 192.168.1.12 notrack']],
    },
    {
      name: 'a peer the VXLAN plan leaves out (a clashing VTEP MAC) is left out here too',
      spec: spec([node(2, '192.168.1.12'), { ...node(3, '192.168.1.13'), vtepMac: vtepMac('node2') }]),
      rules: [['ip daddr 192.168.1.11 udp dport 4789 ip saddr 192.168.1.12 notrack'], ['ip saddr 192.168.1.11 udp dport 4789 ip daddr 192.168.1.12 notrack']],
    },
    { name: 'an unknown underlay: no device planned, so nothing (the diff leaves the chains alone)', spec: spec([node(2, '192.168.1.12')]), underlay: undefined, rules: undefined },
  ];
  for (const c of cases) test(c.name, () => assert.deepEqual(rules(plan(c.spec, 'underlay' in c ? c.underlay : eth0)), c.rules));

  test('one transaction: the table if missing, each chain added, flushed and refilled, at raw priority', () => {
    assert.equal(
      plan(spec([node(2, '192.168.1.12')]), eth0)!.script,
      [
        'add table inet podnet',
        'add chain inet podnet vxlan-notrack-in { type filter hook prerouting priority raw; policy accept; }',
        'flush chain inet podnet vxlan-notrack-in',
        'add rule inet podnet vxlan-notrack-in ip daddr 192.168.1.11 udp dport 4789 ip saddr 192.168.1.12 notrack',
        'add chain inet podnet vxlan-notrack-out { type filter hook output priority raw; policy accept; }',
        'flush chain inet podnet vxlan-notrack-out',
        'add rule inet podnet vxlan-notrack-out ip saddr 192.168.1.11 udp dport 4789 ip daddr 192.168.1.12 notrack',
        '',
      ].join('\n'),
    );
    assert.equal(planVxlanNotrackRemoval([NOTRACK_IN_CHAIN, NOTRACK_OUT_CHAIN]), 'delete chain inet podnet vxlan-notrack-in\ndelete chain inet podnet vxlan-notrack-out\n');
  });

  test('IPv6 VTEPs get ip6 matches; entries of the other family and repeats are left out', () => {
    const dev: VxlanDevice = { name: 'podnet.1', vni: 1, port: 4789, local: 'fd00::11', dev: 'eth0', mac: vtepMac('node1'), mtu: 1430, address: 'fd00:10:244:1::/128' };
    const fdb: FdbEntry[] = [
      { mac: '02:00:00:00:00:03', dst: 'fd00::13', dev: 'podnet.1' },
      { mac: '02:00:00:00:00:02', dst: 'fd00::12', dev: 'podnet.1' },
      { mac: '02:00:00:00:00:04', dst: 'fd00::12', dev: 'podnet.1' },
      { mac: '02:00:00:00:00:05', dst: '192.168.1.12', dev: 'podnet.1' },
    ];
    assert.deepEqual(rules(planVxlanNotrack(dev, fdb)), [
      ['ip6 daddr fd00::11 udp dport 4789 ip6 saddr { fd00::12, fd00::13 } notrack'],
      ['ip6 saddr fd00::11 udp dport 4789 ip6 daddr { fd00::12, fd00::13 } notrack'],
    ]);
  });

  /**
   * A packet tracer for the two chains: whether a packet at a hook meets `notrack`. It
   * understands exactly the rule forms the planner writes.
   */
  function untracked(p: NotrackPlan, hook: 'prerouting' | 'output', pkt: { src: string; dst: string; proto: 'udp' | 'tcp'; dport: number }): boolean {
    const chain = hook === 'prerouting' ? NOTRACK_IN_CHAIN : NOTRACK_OUT_CHAIN;
    const [header, ...body] = p.chains[chain]!;
    assert.match(header!, new RegExp(`hook ${hook} priority raw;`));
    const inSet = (set: string, ip: string) => set.replace(/[{}]/g, ' ').split(/[\s,]+/).filter(Boolean).some((a) => sameIP(parseIP(a), parseIP(ip)));
    return body.some((rule) => {
      const m = /^ip6? (saddr|daddr) (\S+) udp dport (\d+) ip6? (saddr|daddr) (\{ [^}]+ \}|\S+) notrack$/.exec(rule);
      assert.ok(m && m[1] !== m[4], `tracer does not understand "${rule}"`);
      const addr = (field: string) => (field === 'saddr' ? pkt.src : pkt.dst);
      return inSet(m[2]!, addr(m[1]!)) && pkt.proto === 'udp' && pkt.dport === Number(m[3]) && inSet(m[5]!, addr(m[4]!));
    });
  }

  describe('packets through the notrack chains (node1 192.168.1.11, peers .12 and 192.168.2.12)', () => {
    const p = plan(spec([node(2, '192.168.1.12'), node(3, '192.168.2.12')]), eth0)!;
    const flows: Array<{ name: string; hook: 'prerouting' | 'output'; src: string; dst: string; proto?: 'udp' | 'tcp'; dport?: number; untracked: boolean }> = [
      { name: 'an outer packet from a peer', hook: 'prerouting', src: '192.168.1.12', dst: '192.168.1.11', untracked: true },
      { name: 'an outer packet from the peer behind the router', hook: 'prerouting', src: '192.168.2.12', dst: '192.168.1.11', untracked: true },
      { name: 'an outer packet to a peer', hook: 'output', src: '192.168.1.11', dst: '192.168.2.12', untracked: true },
      { name: 'UDP 4789 from a host that is not a node stays tracked', hook: 'prerouting', src: '192.168.1.50', dst: '192.168.1.11', untracked: false },
      { name: 'UDP 4789 to a host that is not a node stays tracked', hook: 'output', src: '192.168.1.11', dst: '203.0.113.10', untracked: false },
      { name: 'another UDP port between nodes stays tracked', hook: 'prerouting', src: '192.168.1.12', dst: '192.168.1.11', dport: 53, untracked: false },
      { name: 'TCP to port 4789 stays tracked', hook: 'output', src: '192.168.1.11', dst: '192.168.1.12', proto: 'tcp', untracked: false },
      { name: 'a forwarded pod packet stays tracked', hook: 'prerouting', src: '10.244.2.5', dst: '10.244.1.7', untracked: false },
      { name: 'a pod sending UDP to 4789 of a peer stays tracked', hook: 'prerouting', src: '10.244.1.7', dst: '192.168.1.12', untracked: false },
      { name: 'a reply from the VXLAN port of a peer (sport 4789) stays tracked', hook: 'prerouting', src: '192.168.1.12', dst: '192.168.1.11', dport: 40000, untracked: false },
    ];
    for (const f of flows) {
      test(f.name, () => assert.equal(untracked(p, f.hook, { src: f.src, dst: f.dst, proto: f.proto ?? 'udp', dport: f.dport ?? 4789 }), f.untracked));
    }
  });
});
