import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { attrs, subnetConformance } from './conformance.ts';
import { MemoryLeaseStore, MemorySubnetManager } from './memory.ts';

subnetConformance('MemorySubnetManager', async () => {
  const store = new MemoryLeaseStore();
  const managers: MemorySubnetManager[] = [];
  const first = (): MemorySubnetManager => managers[0] ?? new MemorySubnetManager({ store });
  return {
    manager(opts = {}) {
      const m = new MemorySubnetManager({ ...opts, store });
      managers.push(m);
      return m;
    },
    async expire(nodeName) {
      assert.ok(await first().expire(nodeName), `${nodeName} holds a lease`);
    },
    async cleanup() {
      for (const m of managers) await m.close();
      await store.close();
    },
  };
});

describe('MemorySubnetManager', () => {
  test('a detached lease expires after its TTL, like an etcd lease', async () => {
    const m = new MemorySubnetManager({ ttlSeconds: 1 });
    const h = await m.acquireLease(attrs('node1'));
    await h.detach();
    assert.ok(await m.getLease('node1'), 'still there right after detach');
    await new Promise((r) => setTimeout(r, 1100));
    assert.equal(await m.getLease('node1'), undefined);
    await m.close();
  });

  test('a whole /16 fills up: 256 nodes, 256 subnets, then EXHAUSTED', async () => {
    const m = new MemorySubnetManager();
    const seen = new Set<string>();
    for (let i = 0; i < 256; i++) seen.add((await m.acquireLease(attrs(`n${i}`))).lease.subnet);
    assert.equal(seen.size, 256);
    await assert.rejects(m.acquireLease(attrs('n256')), { code: 'PODNET_SUBNET_EXHAUSTED', message: /held by 256 nodes \(n0, n1, .*, … \(248 more\)\)/ });
    await m.close();
  });

  test('an aborted signal stops an acquisition', async () => {
    const m = new MemorySubnetManager();
    await assert.rejects(m.acquireLease(attrs('node1'), { signal: AbortSignal.abort() }), { name: 'AbortError' });
    await m.close();
  });
});
