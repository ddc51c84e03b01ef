import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { planNode } from './dataplane.ts';
import { diffDataplane, isEmpty, notrackMatches } from './diff.ts';
import { planDataplane } from './plan.ts';
import type { DataplaneSpec, DesiredState, KernelState, NodeSpec, Underlay, VxlanLink } from './types.ts';
import { vtepMac } from './vxlan.ts';

const self: NodeSpec = { name: 'node1', nodeIP: '192.168.1.11', subnet: '10.244.1.0/24' };
const node2: NodeSpec = { name: 'node2', nodeIP: '192.168.1.12', subnet: '10.244.2.0/24', vtepMac: '02:00:00:00:00:02' };
const node3: NodeSpec = { name: 'node3', nodeIP: '192.168.1.13', subnet: '10.244.3.0/24', vtepMac: '02:00:00:00:00:03' };
const eth0: Underlay = { name: 'eth0', mtu: 1500, addresses: ['192.168.1.11/24'] };
const spec = (backend: 'host-gw' | 'vxlan', peers: NodeSpec[] = [node2, node3]): DataplaneSpec => ({
  self,
  peers,
  clusterCIDR: '10.244.0.0/16',
  backend,
  underlayIface: 'eth0',
});
const MAC1 = vtepMac('node1');

/** The kernel exactly as a plan leaves it (what a read after a successful apply returns). */
function applied(d: DesiredState): KernelState {
  const dev = d.device;
  const chain = (name: string, lines: string[]) => `\tchain ${name} {\n${lines.map((l) => `\t\t${l}`).join('\n')}\n\t}\n`;
  const listing = d.masq ? chain('egress-masq', d.masq.listing) : undefined;
  const notrack = Object.fromEntries(Object.entries(d.notrack?.chains ?? {}).map(([name, lines]) => [name, chain(name, lines)]));
  return {
    underlay: eth0,
    routes: d.routes,
    devices: dev
      ? [{ name: dev.name, ifindex: 7, up: true, mtu: dev.mtu, mac: dev.mac, vni: dev.vni, port: dev.port, local: dev.local, dev: dev.dev, learning: false, flooding: false, addresses: [dev.address] }]
      : [],
    neighs: d.neighs,
    fdb: d.fdb,
    masq: listing,
    notrack,
  };
}

const empty: KernelState = { underlay: eth0, routes: [], devices: [], neighs: [], fdb: [], masq: undefined, notrack: {} };
const link = (over: Partial<VxlanLink> = {}): VxlanLink => ({
  name: 'podnet.1',
  ifindex: 7,
  up: true,
  mtu: 1450,
  mac: MAC1,
  vni: 1,
  port: 4789,
  local: '192.168.1.11',
  dev: 'eth0',
  learning: false,
  flooding: false,
  addresses: ['10.244.1.0/32'],
  ...over,
});

describe('diffDataplane', () => {
  const hostgw = planDataplane(spec('host-gw'), eth0);
  const vxlan = planDataplane(spec('vxlan'), eth0);

  const cases: Array<{ name: string; desired: DesiredState; current: KernelState; ip: string[]; bridge?: string[]; nft?: boolean }> = [
    {
      name: 'host-gw on an empty node: one route per peer and the masquerade chain',
      desired: hostgw,
      current: empty,
      ip: ['route replace 10.244.2.0/24 via 192.168.1.12 dev eth0 proto 112', 'route replace 10.244.3.0/24 via 192.168.1.13 dev eth0 proto 112'],
      nft: true,
    },
    { name: 'host-gw with nothing changed writes nothing', desired: hostgw, current: applied(hostgw), ip: [] },
    { name: 'vxlan with nothing changed writes nothing', desired: vxlan, current: applied(vxlan), ip: [] },
    {
      name: 'a hand-deleted route is put back, nothing else',
      desired: hostgw,
      current: { ...applied(hostgw), routes: applied(hostgw).routes.slice(1) },
      ip: ['route replace 10.244.2.0/24 via 192.168.1.12 dev eth0 proto 112'],
    },
    {
      name: 'a peer that left: its route is removed',
      desired: planDataplane(spec('host-gw', [node2]), eth0),
      current: applied(hostgw),
      ip: ['route del 10.244.3.0/24 proto 112'],
    },
    {
      name: 'a peer that moved to another node IP: its route is replaced in place',
      desired: planDataplane(spec('host-gw', [node2, { ...node3, nodeIP: '192.168.1.33' }]), eth0),
      current: applied(hostgw),
      ip: ['route replace 10.244.3.0/24 via 192.168.1.33 dev eth0 proto 112'],
    },
    {
      name: 'vxlan on an empty node: the device first, then neighbours and routes; FDB in the bridge batch',
      desired: vxlan,
      current: empty,
      ip: [
        `link add podnet.1 address ${MAC1} mtu 1450 type vxlan id 1 local 192.168.1.11 dev eth0 dstport 4789 nolearning`,
        'link set dev podnet.1 up',
        'addr replace 10.244.1.0/32 dev podnet.1',
        'neigh replace 10.244.2.0 lladdr 02:00:00:00:00:02 dev podnet.1 nud permanent',
        'neigh replace 10.244.3.0 lladdr 02:00:00:00:00:03 dev podnet.1 nud permanent',
        'route replace 10.244.2.0/24 via 10.244.2.0 dev podnet.1 onlink proto 112',
        'route replace 10.244.3.0/24 via 10.244.3.0 dev podnet.1 onlink proto 112',
      ],
      bridge: ['fdb replace 02:00:00:00:00:02 dev podnet.1 dst 192.168.1.12 self permanent', 'fdb replace 02:00:00:00:00:03 dev podnet.1 dst 192.168.1.13 self permanent'],
      nft: true,
    },
    {
      name: 'host-gw to vxlan: the routes are replaced to go through the device',
      desired: vxlan,
      current: applied(hostgw),
      ip: [
        `link add podnet.1 address ${MAC1} mtu 1450 type vxlan id 1 local 192.168.1.11 dev eth0 dstport 4789 nolearning`,
        'link set dev podnet.1 up',
        'addr replace 10.244.1.0/32 dev podnet.1',
        'neigh replace 10.244.2.0 lladdr 02:00:00:00:00:02 dev podnet.1 nud permanent',
        'neigh replace 10.244.3.0 lladdr 02:00:00:00:00:03 dev podnet.1 nud permanent',
        'route replace 10.244.2.0/24 via 10.244.2.0 dev podnet.1 onlink proto 112',
        'route replace 10.244.3.0/24 via 10.244.3.0 dev podnet.1 onlink proto 112',
      ],
      bridge: ['fdb replace 02:00:00:00:00:02 dev podnet.1 dst 192.168.1.12 self permanent', 'fdb replace 02:00:00:00:00:03 dev podnet.1 dst 192.168.1.13 self permanent'],
    },
    {
      name: 'vxlan to host-gw: the device goes (with its entries), host routes come',
      desired: hostgw,
      current: applied(vxlan),
      ip: ['link del dev podnet.1', 'route replace 10.244.2.0/24 via 192.168.1.12 dev eth0 proto 112', 'route replace 10.244.3.0/24 via 192.168.1.13 dev eth0 proto 112'],
    },
    {
      name: 'a hand-deleted FDB entry and a wrong neighbour are repaired',
      desired: vxlan,
      current: { ...applied(vxlan), fdb: applied(vxlan).fdb.slice(0, 1), neighs: [applied(vxlan).neighs[0]!, { ip: '10.244.3.0', mac: '02:00:00:00:00:99', dev: 'podnet.1' }] },
      ip: ['neigh replace 10.244.3.0 lladdr 02:00:00:00:00:03 dev podnet.1 nud permanent'],
      bridge: ['fdb replace 02:00:00:00:00:03 dev podnet.1 dst 192.168.1.13 self permanent'],
    },
    {
      name: 'stale neighbour and FDB entries of a departed peer are deleted',
      desired: planDataplane(spec('vxlan', [node2]), eth0),
      current: applied(vxlan),
      ip: ['neigh del 10.244.3.0 dev podnet.1', 'route del 10.244.3.0/24 proto 112'],
      bridge: ['fdb del 02:00:00:00:00:03 dev podnet.1 dst 192.168.1.13 self'],
    },
    {
      name: 'a device with a drifted MTU, a stale address and down is fixed in place',
      desired: vxlan,
      current: { ...applied(vxlan), devices: [link({ mtu: 1500, up: false, addresses: ['10.244.1.0/32', '10.244.7.0/32'] })] },
      ip: ['link set dev podnet.1 mtu 1450 up', 'addr del 10.244.7.0/32 dev podnet.1'],
    },
    {
      name: 'a device with another VTEP address is re-created, and its entries with it',
      desired: vxlan,
      current: { ...applied(vxlan), devices: [link({ local: '192.168.1.99' })] },
      ip: [
        'link del dev podnet.1',
        `link add podnet.1 address ${MAC1} mtu 1450 type vxlan id 1 local 192.168.1.11 dev eth0 dstport 4789 nolearning`,
        'link set dev podnet.1 up',
        'addr replace 10.244.1.0/32 dev podnet.1',
        'neigh replace 10.244.2.0 lladdr 02:00:00:00:00:02 dev podnet.1 nud permanent',
        'neigh replace 10.244.3.0 lladdr 02:00:00:00:00:03 dev podnet.1 nud permanent',
        'route replace 10.244.2.0/24 via 10.244.2.0 dev podnet.1 onlink proto 112',
        'route replace 10.244.3.0/24 via 10.244.3.0 dev podnet.1 onlink proto 112',
      ],
      bridge: ['fdb replace 02:00:00:00:00:02 dev podnet.1 dst 192.168.1.12 self permanent', 'fdb replace 02:00:00:00:00:03 dev podnet.1 dst 192.168.1.13 self permanent'],
    },
    {
      name: 'a learning or flooding device is re-created',
      desired: planDataplane(spec('vxlan', []), eth0),
      current: { ...applied(planDataplane(spec('vxlan', []), eth0)), devices: [link({ learning: true })] },
      ip: ['link del dev podnet.1', `link add podnet.1 address ${MAC1} mtu 1450 type vxlan id 1 local 192.168.1.11 dev eth0 dstport 4789 nolearning`, 'link set dev podnet.1 up', 'addr replace 10.244.1.0/32 dev podnet.1'],
    },
    {
      name: 'a device of an old VNI is deleted',
      desired: vxlan,
      current: { ...applied(vxlan), devices: [...applied(vxlan).devices, link({ name: 'podnet.2', vni: 2 })] },
      ip: ['link del dev podnet.2'],
    },
    {
      name: 'an unknown underlay changes no routes or devices',
      desired: planDataplane(spec('host-gw'), undefined),
      current: { ...applied(vxlan), underlay: undefined },
      ip: [],
    },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const ch = diffDataplane(c.desired, c.current);
      assert.deepEqual(ch.ip, c.ip);
      assert.deepEqual(ch.bridge, c.bridge ?? []);
      assert.equal(ch.nft !== undefined, c.nft ?? false);
    });
  }

  test('counts say what changed', () => {
    const ch = diffDataplane(planDataplane(spec('vxlan', [node2]), eth0), {
      ...applied(vxlan),
      fdb: [{ ...applied(vxlan).fdb[0]!, dst: '192.168.1.99' }, applied(vxlan).fdb[1]!],
    });
    assert.deepEqual(ch.routes, { added: 0, changed: 0, removed: 1 });
    assert.deepEqual(ch.neighs, { added: 0, changed: 0, removed: 1 });
    assert.deepEqual(ch.fdb, { added: 0, changed: 1, removed: 1 });
    assert.equal(ch.device, 'unchanged');
    const fresh = diffDataplane(vxlan, empty);
    assert.equal(fresh.device, 'created');
    assert.equal(fresh.freshDevice, 'podnet.1');
    assert.deepEqual(fresh.routes, { added: 2, changed: 0, removed: 0 });
  });

  test('nothing changed is empty, including the masquerade chain', () => {
    assert.ok(isEmpty(diffDataplane(vxlan, applied(vxlan))));
    assert.equal(diffDataplane(vxlan, applied(vxlan)).masq, 'unchanged');
  });

  test('a masquerade chain listed differently is accepted when the executor saw it right after writing', () => {
    const odd = 'table inet podnet {\n chain egress-masq {\n  some other spelling\n }\n}\n';
    const current = { ...applied(vxlan), masq: odd };
    assert.equal(diffDataplane(vxlan, current).masq, 'write');
    assert.equal(diffDataplane(vxlan, current, { masqListing: odd }).masq, 'unchanged');
  });

  test('masquerade turned off removes the chain, once', () => {
    const off = planDataplane({ ...spec('host-gw'), masquerade: false }, eth0);
    assert.equal(diffDataplane(off, applied(hostgw)).nft, 'delete chain inet podnet egress-masq\n');
    assert.equal(diffDataplane(off, { ...applied(hostgw), masq: undefined }).masq, 'disabled');
  });

  test('another route protocol number can be used', () => {
    assert.deepEqual(diffDataplane(hostgw, { ...empty, masq: applied(hostgw).masq }, { proto: 200 }).ip[0], 'route replace 10.244.2.0/24 via 192.168.1.12 dev eth0 proto 200');
  });

  describe('the VXLAN notrack chains', () => {
    const vx = planNode(spec('vxlan'), eth0);
    const hg = planNode(spec('host-gw'), eth0);
    const IN = 'vxlan-notrack-in';
    const OUT = 'vxlan-notrack-out';
    const cases: Array<{ name: string; desired: DesiredState; current: KernelState; notrack: string; nft: RegExp | undefined }> = [
      { name: 'vxlan on an empty node: written with the masquerade, in one script', desired: vx, current: empty, notrack: 'write', nft: /egress-masq[^]*add chain inet podnet vxlan-notrack-in[^]*vxlan-notrack-out/ },
      { name: 'vxlan with nothing changed: nothing', desired: vx, current: applied(vx), notrack: 'unchanged', nft: undefined },
      {
        name: 'a hand-deleted chain: both rewritten, the masquerade left alone',
        desired: vx,
        current: { ...applied(vx), notrack: { [IN]: applied(vx).notrack[IN]! } },
        notrack: 'write',
        nft: /^add table inet podnet\nadd chain inet podnet vxlan-notrack-in [^]*flush chain inet podnet vxlan-notrack-out\n[^]*$/,
      },
      {
        name: 'a hand-edited rule: rewritten',
        desired: vx,
        current: { ...applied(vx), notrack: { ...applied(vx).notrack, [OUT]: `\tchain ${OUT} {\n\t\ttype filter hook output priority raw; policy accept;\n\t\tudp dport 4789 notrack\n\t}\n` } },
        notrack: 'write',
        nft: /flush chain inet podnet vxlan-notrack-out/,
      },
      {
        name: 'a new peer: rewritten with it',
        desired: planNode(spec('vxlan', [node2, node3, { name: 'node4', nodeIP: '192.168.1.14', subnet: '10.244.4.0/24' }]), eth0),
        current: applied(vx),
        notrack: 'write',
        nft: /ip daddr 192\.168\.1\.11 udp dport 4789 ip saddr \{ 192\.168\.1\.12, 192\.168\.1\.13, 192\.168\.1\.14 \} notrack/,
      },
      { name: 'vxlan to host-gw: both removed', desired: hg, current: { ...applied(vx), masq: applied(hg).masq }, notrack: 'remove', nft: /^delete chain inet podnet vxlan-notrack-in\ndelete chain inet podnet vxlan-notrack-out\n$/ },
      { name: 'only the chain that is there is removed', desired: hg, current: { ...applied(hg), notrack: { [OUT]: applied(vx).notrack[OUT]! } }, notrack: 'remove', nft: /^delete chain inet podnet vxlan-notrack-out\n$/ },
      { name: 'the last peer left: removed', desired: planNode(spec('vxlan', []), eth0), current: applied(vx), notrack: 'remove', nft: /delete chain inet podnet vxlan-notrack-in/ },
      { name: 'host-gw: none wanted, none there', desired: hg, current: applied(hg), notrack: 'none', nft: undefined },
      { name: 'an unknown underlay: left as they are', desired: planNode(spec('vxlan'), undefined), current: { ...applied(vx), underlay: undefined }, notrack: 'unchanged', nft: undefined },
    ];
    for (const c of cases) {
      test(c.name, () => {
        const ch = diffDataplane(c.desired, c.current);
        assert.equal(ch.notrack, c.notrack);
        if (c.nft === undefined) assert.equal(ch.nft, undefined);
        else assert.match(ch.nft ?? '', c.nft);
      });
    }

    test('planned chains match their listing; extra or missing ones do not', () => {
      const plan = vx.notrack!;
      assert.ok(notrackMatches(plan, applied(vx).notrack));
      assert.ok(!notrackMatches(plan, {}));
      assert.ok(!notrackMatches(plan, { [IN]: applied(vx).notrack[IN]! }));
    });

    test('chains listed differently are accepted when the executor saw them right after writing', () => {
      const odd = { [IN]: `\tchain ${IN} {\n\t\tsome other spelling\n\t}\n`, [OUT]: applied(vx).notrack[OUT]! };
      const current = { ...applied(vx), notrack: odd };
      assert.equal(diffDataplane(vx, current).notrack, 'write');
      assert.equal(diffDataplane(vx, current, { notrackListing: { ...odd } }).notrack, 'unchanged');
    });
  });
});
