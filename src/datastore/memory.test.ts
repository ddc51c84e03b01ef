import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { brief, collect, datastoreConformance, node, pod } from './conformance.ts';
import { MemoryDatastore } from './memory.ts';
import { MemoryKV } from './memory-kv.ts';
import { MirrorWatch } from './watch-engine.ts';
import type { WatchStatus } from './types.ts';

datastoreConformance('MemoryDatastore', async () => {
  const ds = new MemoryDatastore();
  return { ds, compact: async () => ds.kv.compact(), cleanup: () => ds.close() };
});

describe('MemoryDatastore watches through failures', () => {
  test('a watch resumes after a disconnect without losing or repeating events', async () => {
    const ds = new MemoryDatastore();
    const statuses: string[] = [];
    const w = ds.watch('Pod', { onStatus: (s) => statuses.push(s.state) });
    const c = collect(w);
    await ds.create(pod('a'));
    await c.until(1);
    ds.kv.disconnect();
    // Changes made while the watch is between sessions.
    await ds.create(pod('b'));
    await ds.delete('Pod', { namespace: 'default', name: 'a' });
    await c.until(3);
    ds.kv.disconnect();
    ds.kv.disconnect();
    await ds.create(pod('c'));
    await c.until(4);
    await new Promise((r) => setTimeout(r, 50));
    await w.stop();
    assert.deepEqual(brief(c.events), ['ADDED default/a', 'ADDED default/b', 'DELETED default/a', 'ADDED default/c']);
    assert.ok(statuses.includes('disconnected') && statuses.at(-1) === 'connected', statuses.join(','));
    assert.equal(c.events.filter((e) => e.synthetic).length, 0);
  });

  test('a watch keeps retrying through an outage and then catches up', async () => {
    const ds = new MemoryDatastore();
    await ds.create(node('node1'));
    const w = ds.watch('Node');
    const c = collect(w);
    await c.until(1);
    ds.kv.setAvailable(false);
    await new Promise((r) => setTimeout(r, 60));
    ds.kv.setAvailable(true);
    await ds.create(node('node2'));
    await c.until(2);
    await w.stop();
    assert.deepEqual(brief(c.events), ['ADDED node1', 'ADDED node2']);
  });

  test('a watch that starts during an outage waits for the store', async () => {
    const ds = new MemoryDatastore();
    await ds.create(node('node1'));
    ds.kv.setAvailable(false);
    const statuses: WatchStatus[] = [];
    const w = ds.watch('Node', { onStatus: (s) => statuses.push(s) });
    const c = collect(w);
    await new Promise((r) => setTimeout(r, 40));
    assert.equal(c.events.length, 0);
    assert.equal(statuses[0]?.state, 'disconnected');
    assert.equal(statuses.filter((s) => s.state === 'disconnected').length, 1, 'one report per outage');
    ds.kv.setAvailable(true);
    await c.until(1);
    await w.stop();
    assert.deepEqual(brief(c.events), ['ADDED node1']);
  });

  test('after a compaction a resumed watch lists again and emits the difference as synthetic events', async () => {
    const ds = new MemoryDatastore();
    const a = await ds.create(pod('a'));
    await ds.create(pod('b'));
    const statuses: string[] = [];
    const w = ds.watch('Pod', { onStatus: (s) => statuses.push(s.state) });
    const c = collect(w);
    await c.until(2);
    // The watch falls behind: it is cut off, the history it needs is compacted away.
    ds.kv.disconnect();
    await ds.update({ ...a, metadata: { ...a.metadata, labels: { v: '2' } } });
    await ds.delete('Pod', { namespace: 'default', name: 'b' });
    await ds.create(pod('c'));
    const temp = await ds.create(pod('temp'));
    await ds.delete('Pod', { namespace: 'default', name: 'temp' });
    ds.kv.compact();
    await c.until(5);
    // And it carries on live afterwards.
    await ds.create(pod('d'));
    await c.until(6);
    await w.stop();
    assert.deepEqual(brief(c.events), ['ADDED default/a', 'ADDED default/b', 'DELETED default/b', 'MODIFIED default/a', 'ADDED default/c', 'ADDED default/d']);
    assert.deepEqual(c.events.map((e) => e.synthetic ?? false), [false, false, true, true, true, false]);
    assert.ok(!brief(c.events).some((e) => e.includes(temp.metadata.name)), 'a short-lived object is not seen');
    assert.ok(statuses.includes('resynced'));
  });

  test('a disconnect that replays history already delivered repeats nothing', async () => {
    const ds = new MemoryDatastore();
    const w = ds.watch('Pod');
    const c = collect(w);
    for (const n of ['a', 'b', 'c']) await ds.create(pod(n));
    await c.until(3);
    for (let i = 0; i < 5; i++) ds.kv.disconnect();
    await new Promise((r) => setTimeout(r, 80));
    await ds.create(pod('d'));
    await c.until(4);
    await new Promise((r) => setTimeout(r, 30));
    await w.stop();
    assert.deepEqual(brief(c.events), ['ADDED default/a', 'ADDED default/b', 'ADDED default/c', 'ADDED default/d']);
  });

  test('an aborted signal stops the watch', async () => {
    const ds = new MemoryDatastore();
    const ac = new AbortController();
    const w = ds.watch('Pod', { signal: ac.signal });
    const c = collect(w);
    ac.abort();
    assert.equal(await c.done, undefined);
  });

  test('close stops every watch', async () => {
    const ds = new MemoryDatastore();
    const c1 = collect(ds.watch('Pod'));
    const c2 = collect(ds.watch('Node'));
    await ds.close();
    assert.equal(await c1.done, undefined);
    assert.equal(await c2.done, undefined);
    assert.throws(() => ds.watch('Pod'), { code: 'PODNET_DATASTORE_UNAVAILABLE' });
  });

  test('MemoryDatastore.with seeds objects', async () => {
    const ds = await MemoryDatastore.with([node('n1'), pod('p1')]);
    assert.equal((await ds.list('Node')).items.length, 1);
    assert.equal((await ds.list('Pod')).items.length, 1);
  });
});

describe('MirrorWatch over a KV', () => {
  const plain = (kv: MemoryKV, fromRevision?: number) =>
    new MirrorWatch<{ key: string; value: string; rev: number }>({
      kv,
      prefix: '/x/',
      decode: (key, value, rev) => ({ key, value, rev }),
      version: (o) => o.rev,
      deleted: (o, rev) => ({ ...o, rev }),
      ...(fromRevision !== undefined ? { fromRevision } : {}),
      retry: { initialMs: 2, maxMs: 10 },
    });

  test('the changes of one transaction complete their revision only on the last one', async () => {
    const kv = new MemoryKV();
    const w = plain(kv);
    const events: Array<{ type: string; key: string; revision: string }> = [];
    const loop = (async () => {
      for await (const e of w) events.push({ type: e.type, key: e.object.key, revision: e.revision });
    })();
    await new Promise((r) => setTimeout(r, 5));
    const r1 = kv.commit([{ key: '/x/a', value: '1' }]);
    const r2 = kv.commit([{ key: '/x/b', value: '1' }, { key: '/y/ignored', value: '1' }, { key: '/x/c', value: '1' }]);
    await new Promise((r) => setTimeout(r, 20));
    await w.stop();
    await loop;
    assert.deepEqual(events, [
      { type: 'ADDED', key: '/x/a', revision: String(r1) },
      { type: 'ADDED', key: '/x/b', revision: String(r1) },
      { type: 'ADDED', key: '/x/c', revision: String(r2) },
    ]);
  });

  test('from revision 0 the whole history is replayed', async () => {
    const kv = new MemoryKV();
    kv.commit([{ key: '/x/a', value: '1' }]);
    kv.commit([{ key: '/x/a', value: '2' }]);
    kv.commit([{ key: '/x/a' }]);
    kv.commit([{ key: '/x/b', value: '1' }]);
    const w = plain(kv, 0);
    const events: string[] = [];
    const loop = (async () => {
      for await (const e of w) events.push(`${e.type} ${e.object.key}=${e.object.value}`);
    })();
    await new Promise((r) => setTimeout(r, 20));
    await w.stop();
    await loop;
    assert.deepEqual(events, ['ADDED /x/a=1', 'MODIFIED /x/a=2', 'DELETED /x/a=2', 'ADDED /x/b=1']);
  });
});
