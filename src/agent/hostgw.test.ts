import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { checkSpec } from './spec.ts';
import { planHostGw } from './hostgw.ts';
import type { DataplaneSpec, NodeSpec, Underlay } from './types.ts';

const self: NodeSpec = { name: 'node1', nodeIP: '192.168.1.11', subnet: '10.244.1.0/24' };
const node2: NodeSpec = { name: 'node2', nodeIP: '192.168.1.12', subnet: '10.244.2.0/24' };
const node3: NodeSpec = { name: 'node3', nodeIP: '192.168.1.13', subnet: '10.244.3.0/24' };
const far: NodeSpec = { name: 'node2', nodeIP: '192.168.2.12', subnet: '10.244.2.0/24' };
const eth0: Underlay = { name: 'eth0', mtu: 1500, addresses: ['192.168.1.11/24'] };

function spec(peers: NodeSpec[]): DataplaneSpec {
  return { self, peers, clusterCIDR: '10.244.0.0/16', backend: 'host-gw', underlayIface: 'eth0' };
}

describe('planHostGw', () => {
  const cases: Array<{ name: string; peers: NodeSpec[]; underlay?: Underlay; routes: string[]; errors: string[] }> = [
    { name: 'no peers means no routes', peers: [], routes: [], errors: [] },
    {
      name: 'one route per peer subnet via the peer node IP, in subnet order',
      peers: [node3, node2],
      routes: ['10.244.2.0/24 via 192.168.1.12 dev eth0', '10.244.3.0/24 via 192.168.1.13 dev eth0'],
      errors: [],
    },
    {
      name: 'a peer behind a router is reported, not routed',
      peers: [far, node3],
      routes: ['10.244.3.0/24 via 192.168.1.13 dev eth0'],
      errors: ['host-gw needs nodes on one L2 segment; node2 (192.168.2.12) is behind a router; use --backend vxlan'],
    },
    {
      name: 'a second address on the underlay makes its subnet directly connected',
      peers: [far],
      underlay: { ...eth0, addresses: ['192.168.1.11/24', '192.168.2.250/24'] },
      routes: ['10.244.2.0/24 via 192.168.2.12 dev eth0'],
      errors: [],
    },
    {
      name: 'an underlay without addresses reaches nobody',
      peers: [node2],
      underlay: { ...eth0, addresses: [] },
      routes: [],
      errors: ['host-gw needs nodes on one L2 segment; node2 (192.168.1.12) is behind a router; use --backend vxlan'],
    },
    {
      name: 'a v4 subnet cannot be routed via a v6 node address',
      peers: [{ name: 'v6node', nodeIP: 'fd00::12', subnet: '10.244.9.0/24' }],
      underlay: { ...eth0, addresses: ['192.168.1.11/24', 'fd00::11/64'] },
      routes: [],
      errors: ["host-gw cannot route the IPv4 subnet 10.244.9.0/24 via v6node's IPv6 address fd00::12; use --backend vxlan"],
    },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const plan = planHostGw(checkSpec(spec(c.peers)), c.underlay ?? eth0);
      assert.deepEqual(
        plan.routes.map((r) => `${r.dst} via ${r.via} dev ${r.dev}${r.onlink ? ' onlink' : ''}`),
        c.routes,
      );
      assert.deepEqual(plan.errors.map((e) => e.message), c.errors);
      for (const e of plan.errors) assert.equal(e.code, 'PODNET_PEER_UNREACHABLE');
    });
  }
});
