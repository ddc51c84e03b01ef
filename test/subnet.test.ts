/**
 * Subnet leasing against a real etcd (one per file, unix socket only): the SubnetManager
 * conformance suite with every agent on its own etcd connection, then what needs a real
 * etcd: TTL expiry, leases and lease watches across an etcd restart, the key layout.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { collect } from '../src/datastore/conformance.ts';
import { EtcdClient } from '../src/datastore/index.ts';
import { attrs, subnetConformance } from '../src/subnet/conformance.ts';
import { EtcdSubnetManager, type KVSubnetManagerOptions } from '../src/subnet/index.ts';
import { haveEtcd, startEtcd, type TestEtcd } from './support/etcd.ts';

const skip = haveEtcd() ? false : 'needs /usr/bin/etcd (Debian etcd-server)';

let etcd: TestEtcd;
let admin: EtcdClient;
let prefixes = 0;

describe('etcd subnet leasing', { skip }, () => {
  before(async () => {
    etcd = await startEtcd();
    admin = new EtcdClient({ endpoints: etcd.endpoint });
  });
  after(async () => {
    await admin?.close();
    await etcd?.stop();
  });

  subnetConformance('EtcdSubnetManager', async () => {
    const prefix = `/t${++prefixes}/podnet`;
    const managers: EtcdSubnetManager[] = [];
    return {
      manager(opts: KVSubnetManagerOptions = {}) {
        // Every agent on its own connection, as on real nodes. A short TTL so that a
        // revoked lease is noticed (at the next keep-alive, a third of the TTL) quickly.
        const m = new EtcdSubnetManager({ endpoints: etcd.endpoint, prefix, ttlSeconds: 3, ...opts });
        managers.push(m);
        return m;
      },
      async expire(nodeName) {
        const owner = await admin.get(`${prefix}/owners/${nodeName}`);
        assert.ok(owner?.lease, `${nodeName} holds a lease`);
        await admin.etcd.leaseClient.leaseRevoke({ ID: owner.lease });
      },
      async cleanup() {
        await Promise.all(managers.map((m) => m.close()));
      },
    };
  });

  test('records live at /podnet/subnets/<subnet> and /podnet/owners/<node>, on one TTL lease', async () => {
    const prefix = `/t${++prefixes}/podnet`;
    const m = new EtcdSubnetManager({ client: admin, prefix, ttlSeconds: 30 });
    const h = await m.acquireLease(attrs('node1'));
    const rec = await admin.get(`${prefix}/subnets/10.244.1.0-24`);
    const owner = await admin.get(`${prefix}/owners/node1`);
    assert.deepEqual(JSON.parse(rec!.value), {
      subnet: '10.244.1.0/24',
      nodeName: 'node1',
      nodeIP: '192.168.1.11',
      backendType: 'vxlan',
      backendData: { vtepMAC: '0e:00:00:00:00:01', vni: 1 },
    });
    assert.equal(owner?.value, '10.244.1.0-24');
    assert.ok(rec?.lease && rec.lease === owner?.lease, 'both keys on the same lease');
    const ttl = await admin.etcd.leaseClient.leaseTimeToLive({ ID: rec.lease });
    assert.equal(Number(ttl.grantedTTL), 30);
    assert.deepEqual(JSON.parse((await admin.get(`${prefix}/config`))!.value), { clusterCIDR: '10.244.0.0/16', subnetLen: 24 });
    await h.release();
    assert.equal(await admin.get(`${prefix}/subnets/10.244.1.0-24`), undefined, 'release deletes the records at once');
    await m.close();
  });

  test('a node that stops renewing loses its subnet when the TTL runs out, and peers see it leave', async () => {
    const prefix = `/t${++prefixes}/podnet`;
    const agent = new EtcdSubnetManager({ endpoints: etcd.endpoint, prefix, ttlSeconds: 2 });
    const peer = new EtcdSubnetManager({ endpoints: etcd.endpoint, prefix, ttlSeconds: 2 });
    const h = await agent.acquireLease(attrs('node1'));
    const w = peer.watchLeases();
    const c = collect(w);
    await c.until(1);
    const stopped = Date.now();
    await agent.close(); // the agent dies: nothing is revoked, nothing renewed
    await c.until((evs) => evs.some((e) => e.type === 'DELETED'), 6000);
    const after = Date.now() - stopped;
    assert.ok(after >= 1000 && after < 5000, `expired after ${after} ms (TTL 2 s)`);
    const taken = await peer.acquireLease(attrs('node2'));
    assert.equal(taken.lease.subnet, h.lease.subnet, 'the expired subnet is free again');
    await w.stop();
    await peer.close();
  });

  test('leases and lease watches live through an etcd restart', async () => {
    const prefix = `/t${++prefixes}/podnet`;
    const agent = new EtcdSubnetManager({ endpoints: etcd.endpoint, prefix, ttlSeconds: 2, watchRetry: { initialMs: 50, maxMs: 300 } });
    const peer = new EtcdSubnetManager({ endpoints: etcd.endpoint, prefix, ttlSeconds: 2, watchRetry: { initialMs: 50, maxMs: 300 } });
    const changes: string[] = [];
    const h = await agent.acquireLease(attrs('node1'), { onChange: (ch) => changes.push(ch.type) });
    const w = peer.watchLeases();
    const c = collect(w);
    await c.until(1);
    await etcd.restart();
    const h2 = await peer.acquireLease(attrs('node2'));
    await c.until(2, 5000);
    // Well past the TTL: the keep-alive has resumed on the restarted etcd.
    await new Promise((r) => setTimeout(r, 2500));
    assert.deepEqual(await peer.getLease('node1'), h.lease);
    assert.deepEqual(changes, [], 'the lease was never lost');
    await w.stop();
    assert.deepEqual(c.events.map((e) => `${e.type} ${e.object.nodeName} ${e.object.subnet}`), ['ADDED node1 10.244.1.0/24', `ADDED node2 ${h2.lease.subnet}`]);
    await agent.close();
    await peer.close();
  });
});
