/**
 * What every SubnetManager implementation must do, as one suite (test-only code, not
 * exported from index.ts): memory.test.ts runs it in memory, test/subnet.test.ts on a real
 * etcd. Each test gets a fresh cluster; `manager()` makes one more agent on it.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { collect } from '../datastore/conformance.ts';
import { contains, parseSubnet } from '../netaddr/index.ts';
import type { KVSubnetManager, KVSubnetManagerOptions } from './manager.ts';
import type { LeaseAttrs, LeaseChange } from './types.ts';

export interface SubnetBackend {
  /** One more agent on this test's cluster (same store, same prefix). */
  manager(opts?: KVSubnetManagerOptions): KVSubnetManager;
  /** Ends a node's lease from outside, as its TTL running out does. */
  expire(nodeName: string): Promise<void>;
  cleanup(): Promise<void>;
}

const nodeIP = (n: number): string => `192.168.${1 + Math.floor(n / 200)}.${10 + (n % 200)}`;

export const attrs = (nodeName: string, extra: Partial<LeaseAttrs> = {}): LeaseAttrs => ({
  nodeName,
  nodeIP: nodeIP(Number(nodeName.replace(/\D/g, '') || 0)),
  backendType: 'vxlan',
  backendData: { vtepMAC: '0e:00:00:00:00:01', vni: 1 },
  ...extra,
});

export function subnetConformance(name: string, make: () => Promise<SubnetBackend>): void {
  describe(`${name}: SubnetManager conformance`, () => {
    const withBackend = (fn: (b: SubnetBackend) => Promise<void>) => async () => {
      const b = await make();
      try {
        await fn(b);
      } finally {
        await b.cleanup();
      }
    };

    test('nodes get the lowest free /24 of 10.244.0.0/16, starting at 10.244.1.0/24', withBackend(async (b) => {
      const m = b.manager();
      const h1 = await m.acquireLease(attrs('node1'));
      const h2 = await m.acquireLease(attrs('node2'));
      assert.equal(h1.lease.subnet, '10.244.1.0/24');
      assert.equal(h2.lease.subnet, '10.244.2.0/24');
      assert.deepEqual(
        { ...h1.lease, revision: undefined },
        { subnet: '10.244.1.0/24', nodeName: 'node1', nodeIP: '192.168.1.11', backendType: 'vxlan', backendData: { vtepMAC: '0e:00:00:00:00:01', vni: 1 }, revision: undefined },
      );
      assert.deepEqual(await m.getLease('node2'), h2.lease);
      assert.equal(await m.getLease('node9'), undefined);
      await h1.release();
      const h3 = await m.acquireLease(attrs('node3'));
      assert.equal(h3.lease.subnet, '10.244.1.0/24', 'a released subnet is handed out again');
    }));

    test('ten nodes joining at once get ten different subnets', withBackend(async (b) => {
      const agents = Array.from({ length: 10 }, () => b.manager());
      const held = await Promise.all(agents.map((m, i) => m.acquireLease(attrs(`node${i + 1}`))));
      const subnets = held.map((h) => h.lease.subnet);
      assert.equal(new Set(subnets).size, 10, subnets.join(' '));
      const cluster = parseSubnet('10.244.0.0/16');
      for (const s of subnets) assert.ok(contains(cluster, parseSubnet(s).ip) && s.endsWith('/24'), s);
      const { leases } = await agents[0]!.listLeases();
      assert.deepEqual(
        leases.map((l) => `${l.nodeName} ${l.subnet}`).sort(),
        held.map((h) => `${h.lease.nodeName} ${h.lease.subnet}`).sort(),
      );
    }));

    test('a node keeps its subnet across an agent restart, with its attributes updated', withBackend(async (b) => {
      const first = b.manager();
      await first.acquireLease(attrs('node0'));
      const h = await first.acquireLease(attrs('node1'));
      await first.close(); // stops renewing, gives nothing back
      const second = b.manager();
      const again = await second.acquireLease(attrs('node1', { nodeIP: '192.168.2.11', backendData: { vtepMAC: '0e:00:00:00:00:02' } }));
      assert.equal(again.lease.subnet, h.lease.subnet);
      assert.equal(again.lease.nodeIP, '192.168.2.11');
      assert.deepEqual((await second.getLease('node1'))?.backendData, { vtepMAC: '0e:00:00:00:00:02' });
      assert.equal((await second.listLeases()).leases.length, 2);
    }));

    test('a node whose lease ran out gets its previous subnet back if it asks for it and it is free', withBackend(async (b) => {
      const m = b.manager();
      const h = await m.acquireLease(attrs('node1'));
      await m.acquireLease(attrs('node2'));
      await h.detach(); // the agent is gone ...
      await b.expire('node1'); // ... and so, after its TTL, is its lease
      const again = await m.acquireLease(attrs('node1'), { preferredSubnet: '10.244.7.0/24' });
      assert.equal(again.lease.subnet, '10.244.7.0/24');
      const other = await m.acquireLease(attrs('node3'), { preferredSubnet: h.lease.subnet });
      assert.equal(other.lease.subnet, h.lease.subnet);
      const taken = await m.acquireLease(attrs('node4'), { preferredSubnet: '10.244.2.0/24' });
      assert.equal(taken.lease.subnet, '10.244.3.0/24', 'a preferred subnet that is taken is not given');
      const outside = await m.acquireLease(attrs('node5'), { preferredSubnet: '10.9.0.0/24' });
      assert.equal(outside.lease.subnet, '10.244.4.0/24', 'a preferred subnet outside the cluster CIDR is ignored');
    }));

    test('an expired lease frees the subnet for other nodes', withBackend(async (b) => {
      const m = b.manager();
      const h = await m.acquireLease(attrs('node1'));
      await h.detach();
      await b.expire('node1');
      assert.equal(await m.getLease('node1'), undefined);
      const h2 = await m.acquireLease(attrs('node2'));
      assert.equal(h2.lease.subnet, h.lease.subnet);
    }));

    test('when every subnet is taken the next node gets PODNET_SUBNET_EXHAUSTED saying what to do', withBackend(async (b) => {
      const m = b.manager({ clusterCIDR: '10.244.0.0/22', subnetLen: 24 });
      const held = [];
      for (const n of ['node1', 'node2', 'node3', 'node4']) held.push(await m.acquireLease(attrs(n)));
      assert.deepEqual(held.map((h) => h.lease.subnet), ['10.244.1.0/24', '10.244.2.0/24', '10.244.3.0/24', '10.244.0.0/24']);
      await assert.rejects(m.acquireLease(attrs('node5')), (err: Error & { code?: string }) => {
        assert.equal(err.code, 'PODNET_SUBNET_EXHAUSTED');
        assert.match(err.message, /no free \/24 left in cluster CIDR 10\.244\.0\.0\/22/);
        assert.match(err.message, /all 4 subnets are leased, held by 4 nodes \(node1, node2, node3, node4\)/);
        assert.match(err.message, /Remove nodes that are gone/);
        assert.match(err.message, /larger CIDR or the nodes a longer prefix \(e\.g\. \/25\)/);
        return true;
      });
      assert.equal(await m.getLease('node5'), undefined, 'the failed node holds nothing');
      await held[1]!.release();
      assert.equal((await m.acquireLease(attrs('node5'))).lease.subnet, '10.244.2.0/24');
    }));

    test('releaseLease frees a departed node\'s subnet, whoever holds it', withBackend(async (b) => {
      const agent = b.manager();
      const admin = b.manager();
      await agent.acquireLease(attrs('node1'));
      assert.equal(await admin.releaseLease('node1'), true);
      assert.equal(await admin.releaseLease('node1'), false);
      assert.equal(await admin.getLease('node1'), undefined);
    }));

    test('watchLeases reports nodes joining, changing and leaving, and resumes from a revision', withBackend(async (b) => {
      const m = b.manager();
      await m.acquireLease(attrs('node1'));
      const w = m.watchLeases();
      const c = collect(w);
      await c.until(1);
      const t0 = Date.now();
      const h2 = await m.acquireLease(attrs('node2'));
      await c.until(2, 1000);
      assert.ok(Date.now() - t0 < 1000, 'a join is seen within a second');
      await h2.detach();
      const h2b = await m.acquireLease(attrs('node2', { nodeIP: '192.168.1.99' })); // node2's agent restarts with a new IP
      await h2b.release();
      await c.until(4, 1000);
      await w.stop();
      assert.deepEqual(
        c.events.map((e) => `${e.type} ${e.object.nodeName} ${e.object.subnet} ${e.object.nodeIP}`),
        [
          'ADDED node1 10.244.1.0/24 192.168.1.11',
          'ADDED node2 10.244.2.0/24 192.168.1.12',
          'MODIFIED node2 10.244.2.0/24 192.168.1.99',
          'DELETED node2 10.244.2.0/24 192.168.1.99',
        ],
      );
      const { revision } = await m.listLeases();
      await m.acquireLease(attrs('node3'));
      const w2 = m.watchLeases({ fromRevision: revision });
      const c2 = collect(w2);
      await c2.until(1);
      await w2.stop();
      assert.deepEqual(c2.events.map((e) => `${e.type} ${e.object.nodeName}`), ['ADDED node3']);
    }));

    test('an agent with a different cluster CIDR is refused with PODNET_SUBNET_CONFIG_MISMATCH', withBackend(async (b) => {
      await b.manager().acquireLease(attrs('node1'));
      await assert.rejects(b.manager({ clusterCIDR: '10.245.0.0/16' }).acquireLease(attrs('node2')), {
        code: 'PODNET_SUBNET_CONFIG_MISMATCH',
        message: /the cluster's network is 10\.244\.0\.0\/16 with a \/24 per node .* configured for 10\.245\.0\.0\/16/,
      });
      await assert.rejects(b.manager({ subnetLen: 26 }).acquireLease(attrs('node2')), { code: 'PODNET_SUBNET_CONFIG_MISMATCH' });
    }));

    test('a lease lost while held is acquired again, with the same subnet, and the holder is told', withBackend(async (b) => {
      const m = b.manager();
      const changes: LeaseChange[] = [];
      const h = await m.acquireLease(attrs('node1'), { onChange: (c) => changes.push(c) });
      const before = h.lease;
      await b.expire('node1');
      const deadline = Date.now() + 5000;
      while (changes.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      assert.deepEqual(changes.map((c) => c.type), ['lost', 'reacquired']);
      const re = changes[1] as Extract<LeaseChange, { type: 'reacquired' }>;
      assert.equal(re.sameSubnet, true);
      assert.equal(h.lease.subnet, before.subnet);
      assert.deepEqual(await m.getLease('node1'), h.lease);
    }));

    test('bad lease attributes are refused with PODNET_SUBNET_BAD_ATTRS', withBackend(async (b) => {
      const m = b.manager();
      for (const bad of [attrs('Node_1'), attrs('node1', { nodeIP: '192.168.1' }), attrs('node1', { backendType: '' })]) {
        await assert.rejects(m.acquireLease(bad), { code: 'PODNET_SUBNET_BAD_ATTRS' });
      }
    }));
  });
}
