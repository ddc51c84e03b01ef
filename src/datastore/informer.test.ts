import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { node, pod } from './conformance.ts';
import { createInformer } from './informer.ts';
import { MemoryDatastore } from './memory.ts';
import type { Pod } from './types.ts';

/** Records handler calls as "add a", "update a", "delete a". */
function recorder() {
  const calls: string[] = [];
  const handlers = {
    onAdd: (o: Pod, initial: boolean) => calls.push(`add ${o.metadata.name}${initial ? ' (initial)' : ''}`),
    onUpdate: (old: Pod, o: Pod) => calls.push(`update ${o.metadata.name} ${old.metadata.resourceVersion}->${o.metadata.resourceVersion}`),
    onDelete: (o: Pod) => calls.push(`delete ${o.metadata.name}`),
  };
  return { calls, handlers };
}

const names = (pods: Pod[]): string[] => pods.map((p) => `${p.metadata.namespace}/${p.metadata.name}`);

describe('informer', () => {
  test('start resolves once the cache holds the initial list; handlers see it as initial adds', async () => {
    const ds = await MemoryDatastore.with([pod('a'), pod('b'), pod('c', {}, 'kube-system')]);
    const inf = createInformer(ds, 'Pod');
    const r = recorder();
    inf.addEventHandler(r.handlers);
    assert.equal(inf.hasSynced(), false);
    await inf.start();
    assert.equal(inf.hasSynced(), true);
    assert.deepEqual(names(inf.list()), ['default/a', 'default/b', 'kube-system/c']);
    assert.deepEqual(names(inf.list('kube-system')), ['kube-system/c']);
    assert.equal(inf.get({ namespace: 'default', name: 'a' })?.metadata.name, 'a');
    assert.equal(inf.get({ name: 'a' })?.metadata.name, 'a', 'namespace defaults to "default"');
    assert.deepEqual(r.calls.sort(), ['add a (initial)', 'add b (initial)', 'add c (initial)']);
    await inf.stop();
    await ds.close();
  });

  test('changes reach the cache and the handlers in order', async () => {
    const ds = new MemoryDatastore();
    const inf = createInformer(ds, 'Pod');
    const r = recorder();
    inf.addEventHandler(r.handlers);
    await inf.start();
    const a = await ds.create(pod('a'));
    const a2 = await ds.update({ ...a, metadata: { ...a.metadata, labels: { v: '2' } } });
    const gone = await ds.delete('Pod', { namespace: 'default', name: 'a' });
    await inf.waitForRevision(gone.metadata.resourceVersion!);
    assert.deepEqual(r.calls, ['add a', `update a ${a.metadata.resourceVersion}->${a2.metadata.resourceVersion}`, 'delete a']);
    assert.deepEqual(inf.list(), []);
    await inf.stop();
  });

  test('a handler added after sync is told about every cached object first', async () => {
    const ds = await MemoryDatastore.with([node('n1'), node('n2')]);
    const inf = createInformer(ds, 'Node');
    await inf.start();
    const seen: string[] = [];
    const remove = inf.addEventHandler({ onAdd: (o, initial) => seen.push(`${o.metadata.name} ${initial}`) });
    assert.deepEqual(seen, ['n1 true', 'n2 true']);
    remove();
    const n3 = await ds.create(node('n3'));
    await inf.waitForRevision(n3.metadata.resourceVersion!);
    assert.deepEqual(seen, ['n1 true', 'n2 true'], 'a removed handler hears nothing more');
    await inf.stop();
  });

  test('a throwing handler is reported and does not stop the informer', async () => {
    const ds = new MemoryDatastore();
    const errors: unknown[] = [];
    const inf = createInformer(ds, 'Pod', { onError: (e) => errors.push(e) });
    const r = recorder();
    inf.addEventHandler({ onAdd: () => { throw new Error('boom'); } });
    inf.addEventHandler(r.handlers);
    await inf.start();
    await ds.create(pod('a'));
    const b = await ds.create(pod('b'));
    await inf.waitForRevision(b.metadata.resourceVersion!);
    assert.deepEqual(r.calls, ['add a', 'add b']);
    assert.equal(errors.length, 2);
    await inf.stop();
  });

  test('the cache converges after disconnects, an outage and a compaction', async () => {
    const ds = await MemoryDatastore.with([pod('a'), pod('b')]);
    const inf = createInformer(ds, 'Pod', { retry: { initialMs: 5, maxMs: 20 } });
    const r = recorder();
    inf.addEventHandler(r.handlers);
    await inf.start();
    ds.kv.disconnect();
    await ds.create(pod('c'));
    ds.kv.setAvailable(false);
    await new Promise((res) => setTimeout(res, 30));
    ds.kv.setAvailable(true);
    await ds.delete('Pod', { namespace: 'default', name: 'a' });
    ds.kv.disconnect();
    const b = await ds.get('Pod', { namespace: 'default', name: 'b' });
    await ds.update({ ...b, metadata: { ...b.metadata, labels: { v: '2' } } });
    const d = await ds.create(pod('d'));
    ds.kv.compact();
    await inf.waitForRevision(d.metadata.resourceVersion!);
    assert.deepEqual(names(inf.list()), names((await ds.list('Pod')).items));
    assert.deepEqual(
      inf.list().map((p) => p.metadata.resourceVersion),
      (await ds.list('Pod')).items.map((p) => p.metadata.resourceVersion),
    );
    assert.deepEqual(r.calls.filter((c) => !c.startsWith('update')), ['add a (initial)', 'add b (initial)', 'add c', 'delete a', 'add d']);
    await inf.stop();
  });

  test('an informer whose watch cannot start (start revision compacted) lists again and diffs', async () => {
    const ds = await MemoryDatastore.with([pod('a'), pod('b')]);
    // A datastore whose first list is old: the watch from its revision finds it compacted.
    let first = true;
    const list = ds.list.bind(ds);
    ds.list = (async (kind, opts) => {
      const l = await list(kind, opts);
      if (first) {
        first = false;
        await ds.delete('Pod', { namespace: 'default', name: 'a' });
        await ds.create(pod('c'));
        ds.kv.compact();
      }
      return l;
    }) as typeof ds.list;
    const errors: unknown[] = [];
    const inf = createInformer(ds, 'Pod', { onError: (e) => errors.push(e) });
    const r = recorder();
    inf.addEventHandler(r.handlers);
    await inf.start();
    const x = await ds.create(pod('x'));
    await inf.waitForRevision(x.metadata.resourceVersion!);
    assert.deepEqual(r.calls, ['add a (initial)', 'add b (initial)', 'delete a', 'add c', 'add x']);
    assert.deepEqual(names(inf.list()), ['default/b', 'default/c', 'default/x']);
    assert.deepEqual(errors, [], 'an expired watch is routine, not an error');
    await inf.stop();
  });

  test('an informer with a label selector caches only matching objects', async () => {
    const ds = await MemoryDatastore.with([pod('a', { app: 'web' }), pod('b', { app: 'db' })]);
    const inf = createInformer(ds, 'Pod', { labelSelector: 'app=web' });
    await inf.start();
    assert.deepEqual(names(inf.list()), ['default/a']);
    const b = await ds.get('Pod', { namespace: 'default', name: 'b' });
    const b2 = await ds.update({ ...b, metadata: { ...b.metadata, labels: { app: 'web' } } });
    await inf.waitForRevision(b2.metadata.resourceVersion!);
    assert.deepEqual(names(inf.list()), ['default/a', 'default/b']);
    await inf.stop();
  });

  test('waitForRevision times out with a clear message', async () => {
    const ds = new MemoryDatastore();
    const inf = createInformer(ds, 'Pod');
    await inf.start();
    await assert.rejects(inf.waitForRevision('999', 20), /Pod informer did not reach revision 999/);
    await inf.stop();
  });
});
