import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { planDataplane } from './plan.ts';
import { SpecError, checkSpec } from './spec.ts';
import type { DataplaneSpec, NodeSpec, Underlay } from './types.ts';

const self: NodeSpec = { name: 'node1', nodeIP: '192.168.1.11', subnet: '10.244.1.0/24' };
const node2: NodeSpec = { name: 'node2', nodeIP: '192.168.1.12', subnet: '10.244.2.0/24' };
const eth0: Underlay = { name: 'eth0', mtu: 1500, addresses: ['192.168.1.11/24'] };
const base: DataplaneSpec = { self, peers: [node2], clusterCIDR: '10.244.0.0/16', backend: 'host-gw', underlayIface: 'eth0' };

describe('checkSpec refuses a node configuration it cannot build from', () => {
  const cases: Array<{ name: string; over: Partial<DataplaneSpec>; message: RegExp }> = [
    { name: 'an unknown backend', over: { backend: 'udp' as never }, message: /backend "udp" is not one of host-gw, vxlan/ },
    { name: 'a cluster CIDR with host bits', over: { clusterCIDR: '10.244.0.1/16' }, message: /clusterCIDR/ },
    { name: 'an interface name with a slash', over: { underlayIface: 'eth/0' }, message: /underlay interface/ },
    { name: 'VNI 0', over: { vni: 0 }, message: /vni 0/ },
    { name: 'port 70000', over: { port: 70000 }, message: /port 70000/ },
    { name: 'a subnet outside the cluster', over: { self: { ...self, subnet: '10.245.1.0/24' } }, message: /not inside the cluster CIDR/ },
    { name: 'a subnet larger than the cluster', over: { self: { ...self, subnet: '10.0.0.0/8' } }, message: /not inside the cluster CIDR/ },
    { name: 'a node IP that is not one', over: { self: { ...self, nodeIP: '192.168.1' } }, message: /self.nodeIP/ },
    { name: 'a multicast VTEP MAC', over: { self: { ...self, vtepMac: '01:00:5e:00:00:01' } }, message: /not a unicast MAC/ },
    { name: 'a name that could be an option', over: { self: { ...self, name: '-rf' } }, message: /self.name/ },
  ];
  for (const c of cases) {
    test(c.name, () => {
      assert.throws(() => checkSpec({ ...base, ...c.over }), (err: unknown) => err instanceof SpecError && err.code === 'PODNET_BAD_SPEC' && c.message.test(err.message));
    });
  }
});

describe('checkSpec leaves bad peers out and says why', () => {
  const cases: Array<{ name: string; peer: NodeSpec; message: string }> = [
    { name: 'a bad node IP', peer: { ...node2, name: 'x', nodeIP: 'nope' }, message: 'peer x: node IP "nope" is not an IP address; left out' },
    { name: 'a subnet outside the cluster', peer: { ...node2, subnet: '10.9.0.0/24' }, message: 'peer node2: subnet 10.9.0.0/24 is not inside the cluster CIDR 10.244.0.0/16; left out' },
    { name: 'our own subnet', peer: { ...node2, subnet: '10.244.1.0/24' }, message: "peer node2: subnet 10.244.1.0/24 overlaps node1's 10.244.1.0/24; left out" },
    { name: 'our own node IP', peer: { ...node2, nodeIP: '192.168.1.11' }, message: "peer node2: node IP 192.168.1.11 is this node's own address; left out" },
    { name: 'a bad VTEP MAC', peer: { ...node2, vtepMac: 'zz' }, message: 'peer node2: VTEP MAC "zz" is not a unicast MAC address; left out' },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const s = checkSpec({ ...base, peers: [c.peer] });
      assert.deepEqual(s.peers, []);
      assert.deepEqual(s.errors.map((e) => e.message), [c.message]);
    });
  }
  test('a duplicate subnet loses to the first record, a record for ourselves is ignored', () => {
    const s = checkSpec({ ...base, peers: [node2, { ...node2, name: 'node2b', nodeIP: '192.168.1.99' }, self] });
    assert.deepEqual(s.peers.map((p) => p.name), ['node2']);
    assert.equal(s.errors.length, 1);
    assert.equal(s.errors[0]!.peer, 'node2b');
  });
});

describe('planDataplane', () => {
  test('host-gw: routes, pod MTU = underlay MTU, masquerade, no device', () => {
    const d = planDataplane(base, eth0);
    assert.equal(d.podMTU, 1500);
    assert.equal(d.device, undefined);
    assert.deepEqual(d.routes, [{ dst: '10.244.2.0/24', via: '192.168.1.12', dev: 'eth0', onlink: false }]);
    assert.ok(d.masq);
    assert.deepEqual(d.errors, []);
    assert.equal(d.hold, false);
  });
  test('vxlan: pod MTU = underlay MTU − 50', () => {
    const d = planDataplane({ ...base, backend: 'vxlan' }, eth0);
    assert.equal(d.podMTU, 1450);
    assert.equal(d.device?.mtu, 1450);
    assert.equal(d.routes.length, 1);
    assert.equal(d.fdb.length, 1);
  });
  test('masquerade: false plans no chain', () => {
    assert.equal(planDataplane({ ...base, masquerade: false }, eth0).masq, undefined);
  });
  test('an unknown underlay holds routes and devices as they are', () => {
    const d = planDataplane(base, undefined);
    assert.equal(d.hold, true);
    assert.equal(d.podMTU, undefined);
    assert.equal(d.errors[0]!.code, 'PODNET_NO_UNDERLAY');
  });
  test('a node IP that is not on the underlay is reported', () => {
    const d = planDataplane(base, { ...eth0, addresses: ['192.168.1.50/24'] });
    assert.deepEqual(d.errors.map((e) => e.message), ['node IP 192.168.1.11 is not an address of eth0 (it has 192.168.1.50/24)']);
    assert.equal(d.routes.length, 1);
  });
  test('an underlay too small for VXLAN is reported', () => {
    const d = planDataplane({ ...base, backend: 'vxlan' }, { ...eth0, mtu: 600 });
    assert.equal(d.podMTU, 550);
    assert.deepEqual(d.errors.map((e) => e.code), ['PODNET_MTU_TOO_SMALL']);
  });
  test('the plan does not depend on the order of the peer records', () => {
    const peers = [3, 2, 5, 4].map((i) => ({ name: `node${i}`, nodeIP: `192.168.1.${10 + i}`, subnet: `10.244.${i}.0/24` }));
    const a = planDataplane({ ...base, backend: 'vxlan', peers }, eth0);
    const b = planDataplane({ ...base, backend: 'vxlan', peers: [...peers].reverse() }, eth0);
    assert.deepEqual(a, b);
    assert.deepEqual(a.routes.map((r) => r.dst), ['10.244.2.0/24', '10.244.3.0/24', '10.244.4.0/24', '10.244.5.0/24']);
  });
});
