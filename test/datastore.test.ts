/**
 * The etcd datastore against a real etcd (test/support/etcd.ts: one etcd for this file,
 * over a unix socket, no TCP): the conformance suite every backend passes, then what only
 * a real etcd can show: the key layout, the error when etcd is not there, and watches and
 * informers that live through etcd restarts and compactions.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { brief, collect, datastoreConformance, pod } from '../src/datastore/conformance.ts';
import {
  EtcdClient,
  EtcdDatastore,
  KVDatastore,
  createInformer,
  type KV,
  type KVSession,
  type KVSink,
  type WatchStatus,
} from '../src/datastore/index.ts';
import { haveEtcd, startEtcd, type TestEtcd } from './support/etcd.ts';

const skip = haveEtcd() ? false : 'needs /usr/bin/etcd (Debian etcd-server)';

let etcd: TestEtcd;
let client: EtcdClient;
let prefixes = 0;

/** A fresh key space per test, so tests share one etcd without seeing each other. */
const freshPrefix = (): string => `/t${++prefixes}/registry`;

async function compactNow(c: EtcdClient): Promise<number> {
  const res = await c.etcd.kv.range({ key: Buffer.from('/') });
  const revision = Number(res.header.revision);
  await c.etcd.kv.compact({ revision, physical: true });
  return revision;
}

/**
 * A KV whose new watch sessions can be held back: lets a test keep a watch away from etcd
 * while it changes and compacts the store, without racing the watch's reconnect timer.
 */
class GatedKV implements KV {
  readonly inner: KV;
  #held = false;
  #pending: Array<{ prefix: string; from: number; sink: KVSink; closed: boolean; real?: KVSession }> = [];

  constructor(inner: KV) {
    this.inner = inner;
  }
  get endpoint(): string {
    return this.inner.endpoint;
  }
  hold(): void {
    this.#held = true;
  }
  release(): void {
    this.#held = false;
    for (const p of this.#pending.splice(0)) if (!p.closed) p.real = this.inner.watch(p.prefix, p.from, p.sink);
  }
  get = (key: string) => this.inner.get(key);
  range = (prefix: string, at?: number) => this.inner.range(prefix, at);
  create = (key: string, value: string) => this.inner.create(key, value);
  replace = (key: string, value: string, rev: number) => this.inner.replace(key, value, rev);
  remove = (key: string, rev?: number) => this.inner.remove(key, rev);
  watch(prefix: string, from: number, sink: KVSink): KVSession {
    if (!this.#held) return this.inner.watch(prefix, from, sink);
    const p: { prefix: string; from: number; sink: KVSink; closed: boolean; real?: KVSession } = { prefix, from, sink, closed: false };
    this.#pending.push(p);
    return { close: async () => { p.closed = true; await p.real?.close(); } };
  }
  async close(): Promise<void> {}
}

describe('etcd datastore', { skip }, () => {
  before(async () => {
    etcd = await startEtcd();
    client = new EtcdClient({ endpoints: etcd.endpoint, timeoutMs: 3000 });
  });
  after(async () => {
    await client?.close();
    await etcd?.stop();
  });

  datastoreConformance('EtcdDatastore', async () => {
    const ds = new EtcdDatastore({ client, prefix: freshPrefix() });
    return { ds, compact: async () => void (await compactNow(client)), cleanup: () => ds.close() };
  });

  test('objects live at /registry/<plural>/<namespace>/<name>, stored without resourceVersion', async () => {
    const ds = new EtcdDatastore({ client });
    const made = await ds.create(pod('layout-1', { app: 'web' }, 'team-a'));
    await ds.create({ apiVersion: 'v1', kind: 'Node', metadata: { name: 'layout-node' } });
    const raw = await client.etcd.get('/registry/pods/team-a/layout-1').string();
    assert.ok(raw, 'the pod is at /registry/pods/team-a/layout-1');
    const stored = JSON.parse(raw) as { metadata: Record<string, unknown> };
    assert.equal(stored.metadata.resourceVersion, undefined);
    assert.equal(stored.metadata.uid, made.metadata.uid);
    assert.ok(await client.etcd.get('/registry/nodes/layout-node').string(), 'a node is at /registry/nodes/<name>');
    const item = await client.get('/registry/pods/team-a/layout-1');
    assert.equal(String(item?.modRevision), made.metadata.resourceVersion, 'resourceVersion is the mod revision');
    await ds.close();
  });

  test('an unreachable etcd gives PODNET_DATASTORE_UNAVAILABLE naming the endpoint and what to check', async () => {
    const missing = `unix://${etcd.dir}/no-such-socket`;
    const ds = new EtcdDatastore({ endpoints: missing, timeoutMs: 500, readRetries: 0 });
    const started = Date.now();
    try {
      await assert.rejects(ds.get('Pod', { namespace: 'default', name: 'x' }), (err: Error & { code?: string }) => {
        assert.equal(err.code, 'PODNET_DATASTORE_UNAVAILABLE');
        assert.ok(err.message.includes(missing), err.message);
        assert.match(err.message, /Check that etcd is running/);
        assert.match(err.message, /socket file exists/);
        assert.match(err.message, /etcdctl --endpoints=/);
        return true;
      });
      assert.ok(Date.now() - started < 3000, 'fails fast');
    } finally {
      await ds.close();
    }
  });

  test('a watch resumes across an etcd restart: nothing lost, nothing repeated', async () => {
    const ds = new EtcdDatastore({ client, prefix: freshPrefix(), watchRetry: { initialMs: 50, maxMs: 300 } });
    const writer = new EtcdDatastore({ endpoints: etcd.endpoint, prefix: ds.prefix });
    const statuses: WatchStatus[] = [];
    const w = ds.watch('Pod', { onStatus: (s) => statuses.push(s) });
    const c = collect(w);
    const a = await writer.create(pod('a'));
    await writer.create(pod('b'));
    await c.until(2);
    await etcd.restart();
    // Written the moment etcd is back: before, or while, the watch reconnects.
    await writer.update({ ...a, metadata: { ...a.metadata, labels: { after: 'restart' } } });
    await writer.create(pod('c'));
    await writer.delete('Pod', { namespace: 'default', name: 'b' });
    await c.until(5, 10_000);
    // A second restart with nothing written in between.
    await etcd.restart();
    await writer.create(pod('d'));
    await c.until(6, 10_000);
    await new Promise((r) => setTimeout(r, 200));
    await w.stop();
    assert.deepEqual(brief(c.events), ['ADDED default/a', 'ADDED default/b', 'MODIFIED default/a', 'ADDED default/c', 'DELETED default/b', 'ADDED default/d']);
    assert.equal(c.events.filter((e) => e.synthetic).length, 0, 'resumed from history, not from a relist');
    const states = statuses.map((s) => s.state);
    assert.ok(states.filter((s) => s === 'disconnected').length >= 2, states.join(','));
    assert.equal(states.at(-1), 'connected');
    await writer.close();
    await ds.close();
  });

  test('a watch that fell behind a compaction relists and emits the difference', async () => {
    const gated = new GatedKV(client);
    const ds = new KVDatastore('etcd', gated, { prefix: freshPrefix(), watchRetry: { initialMs: 50, maxMs: 300 } });
    const writer = new EtcdDatastore({ client, prefix: ds.prefix });
    const statuses: string[] = [];
    const w = ds.watch('Pod', { onStatus: (s) => statuses.push(s.state) });
    const c = collect(w);
    const a = await writer.create(pod('a'));
    await writer.create(pod('b'));
    await c.until(2);
    gated.hold();
    await etcd.restart();
    await writer.update({ ...a, metadata: { ...a.metadata, labels: { v: '2' } } });
    await writer.delete('Pod', { namespace: 'default', name: 'b' });
    await writer.create(pod('c'));
    await compactNow(client);
    gated.release();
    await c.until(5, 10_000);
    await writer.create(pod('d'));
    await c.until(6, 10_000);
    await w.stop();
    assert.deepEqual(brief(c.events), ['ADDED default/a', 'ADDED default/b', 'DELETED default/b', 'MODIFIED default/a', 'ADDED default/c', 'ADDED default/d']);
    assert.deepEqual(c.events.map((e) => e.synthetic ?? false), [false, false, true, true, true, false]);
    assert.ok(statuses.includes('resynced'), statuses.join(','));
    await ds.close();
  });

  test('an informer cache converges with etcd across a restart', async () => {
    const prefix = freshPrefix();
    const ds = new EtcdDatastore({ client, prefix, watchRetry: { initialMs: 50, maxMs: 300 } });
    const writer = new EtcdDatastore({ client, prefix });
    for (const n of ['a', 'b', 'c']) await writer.create(pod(n, { app: 'web' }));
    const inf = createInformer(ds, 'Pod', { labelSelector: 'app=web' });
    const calls: string[] = [];
    inf.addEventHandler({
      onAdd: (o) => calls.push(`add ${o.metadata.name}`),
      onUpdate: (_old, o) => calls.push(`update ${o.metadata.name}`),
      onDelete: (o) => calls.push(`delete ${o.metadata.name}`),
    });
    await inf.start();
    assert.equal(inf.list().length, 3);
    const b = await writer.get('Pod', { namespace: 'default', name: 'b' });
    await writer.update({ ...b, metadata: { ...b.metadata, labels: { app: 'db' } } }); // leaves the selector
    await etcd.restart();
    await writer.delete('Pod', { namespace: 'default', name: 'a' });
    const last = await writer.create(pod('e', { app: 'web' }));
    await inf.waitForRevision(last.metadata.resourceVersion!, 10_000);
    const truth = (await writer.list('Pod', { labelSelector: 'app=web' })).items;
    assert.deepEqual(
      inf.list().map((p) => `${p.metadata.name}@${p.metadata.resourceVersion}`),
      truth.map((p) => `${p.metadata.name}@${p.metadata.resourceVersion}`),
    );
    assert.deepEqual(calls, ['add a', 'add b', 'add c', 'delete b', 'delete a', 'add e']);
    await inf.stop();
    await ds.close();
  });
});
