/**
 * The behaviour every Datastore backend must show, as one suite of tests (test-only code,
 * not exported from index.ts). memory.test.ts runs it on MemoryDatastore,
 * test/datastore.test.ts on a real etcd, and a Kubernetes-API backend will run it too: the
 * interface is only as good as the agreement between its backends.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Datastore, EndpointSlice, Node, Pod, Watch, WatchEvent } from './types.ts';

export interface Backend {
  ds: Datastore;
  /** Compacts the backend's history up to now. */
  compact(): Promise<void>;
  cleanup(): Promise<void>;
}

export function pod(name: string, labels?: Record<string, string>, namespace = 'default'): Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace, ...(labels ? { labels } : {}) },
    spec: { containers: [{ name: 'c', image: 'busybox' }] },
  };
}

export function node(name: string): Node {
  return { apiVersion: 'v1', kind: 'Node', metadata: { name }, spec: {} };
}

/** Collects a watch's events in the background; `until` waits for a condition. */
export function collect<T>(w: Watch<T>): { events: WatchEvent<T>[]; until(pred: number | ((evs: WatchEvent<T>[]) => boolean), timeoutMs?: number): Promise<WatchEvent<T>[]>; done: Promise<unknown> } {
  const events: WatchEvent<T>[] = [];
  const done = (async () => {
    for await (const ev of w) events.push(ev);
  })().catch((err: unknown) => err);
  return {
    events,
    done,
    async until(pred, timeoutMs = 5000) {
      const ok = typeof pred === 'number' ? (evs: WatchEvent<T>[]) => evs.length >= pred : pred;
      const deadline = Date.now() + timeoutMs;
      while (!ok(events)) {
        if (Date.now() > deadline) {
          const seen = events.map((e) => `${e.type} ${JSON.stringify(e.object).slice(0, 80)}`);
          throw new Error(`watch: condition not met in ${timeoutMs} ms; got ${events.length} events: ${seen.join(', ')}`);
        }
        await new Promise((r) => setTimeout(r, 5));
      }
      return events;
    },
  };
}

/** "ADDED default/a" and so on, for readable assertions. */
export function brief(events: Array<WatchEvent<{ metadata: { name: string; namespace?: string } }>>): string[] {
  return events.map((e) => `${e.type} ${e.object.metadata.namespace ? `${e.object.metadata.namespace}/` : ''}${e.object.metadata.name}`);
}

export function datastoreConformance(name: string, make: () => Promise<Backend>): void {
  describe(`${name}: Datastore conformance`, () => {
    const withBackend = (fn: (b: Backend) => Promise<void>) => async () => {
      const b = await make();
      try {
        await fn(b);
      } finally {
        await b.cleanup();
      }
    };

    test('create fills in uid, creationTimestamp, resourceVersion, apiVersion and the default namespace', withBackend(async ({ ds }) => {
      const p = pod('web-1');
      delete p.metadata.namespace;
      const made = await ds.create(p);
      assert.match(made.metadata.uid ?? '', /^[0-9a-f-]{36}$/);
      assert.match(made.metadata.creationTimestamp ?? '', /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
      assert.match(made.metadata.resourceVersion ?? '', /^\d+$/);
      assert.equal(made.metadata.namespace, 'default');
      assert.equal(made.apiVersion, 'v1');
      assert.deepEqual(await ds.get('Pod', { namespace: 'default', name: 'web-1' }), made);
      assert.equal(p.metadata.uid, undefined, 'the caller\'s object is not changed');
    }));

    test('create of an existing object fails with ALREADY_EXISTS', withBackend(async ({ ds }) => {
      await ds.create(pod('web-1'));
      await assert.rejects(ds.create(pod('web-1')), { code: 'PODNET_DATASTORE_ALREADY_EXISTS', message: /Pod default\/web-1 already exists/ });
      await ds.create(pod('web-1', undefined, 'other'));
    }));

    test('generateName makes a unique name', withBackend(async ({ ds }) => {
      const p = pod('');
      p.metadata.generateName = 'web-';
      const a = await ds.create(p);
      const b = await ds.create(p);
      assert.match(a.metadata.name, /^web-[a-z0-9]{5}$/);
      assert.notEqual(a.metadata.name, b.metadata.name);
    }));

    test('get, update and delete of a missing object fail with NOT_FOUND', withBackend(async ({ ds }) => {
      await assert.rejects(ds.get('Pod', { namespace: 'default', name: 'nope' }), { code: 'PODNET_DATASTORE_NOT_FOUND', message: /Pod default\/nope not found/ });
      await assert.rejects(ds.get('Node', { name: 'nope' }), { code: 'PODNET_DATASTORE_NOT_FOUND', message: /^Node nope not found/ });
      await assert.rejects(ds.update(pod('nope')), { code: 'PODNET_DATASTORE_NOT_FOUND' });
      await assert.rejects(ds.updateStatus(pod('nope')), { code: 'PODNET_DATASTORE_NOT_FOUND' });
      await assert.rejects(ds.delete('Pod', { namespace: 'default', name: 'nope' }), { code: 'PODNET_DATASTORE_NOT_FOUND' });
    }));

    test('bad names, namespaces and kinds fail with INVALID', withBackend(async ({ ds }) => {
      await assert.rejects(ds.create(pod('Web_1')), { code: 'PODNET_DATASTORE_INVALID' });
      await assert.rejects(ds.create(pod('a/b')), { code: 'PODNET_DATASTORE_INVALID' });
      await assert.rejects(ds.create(pod('a', undefined, 'x/y')), { code: 'PODNET_DATASTORE_INVALID' });
      await assert.rejects(ds.create({ ...pod('a'), kind: 'Deployment' } as unknown as Pod), { code: 'PODNET_DATASTORE_INVALID' });
      await assert.rejects(ds.create({ ...pod('a'), apiVersion: 'apps/v1' }), { code: 'PODNET_DATASTORE_INVALID' });
    }));

    test('update with the current resourceVersion succeeds; with an old one fails with CONFLICT', withBackend(async ({ ds }) => {
      const v1 = await ds.create(pod('web-1', { app: 'web' }));
      const v2 = await ds.update({ ...v1, metadata: { ...v1.metadata, labels: { app: 'web', v: '2' } } });
      assert.ok(Number(v2.metadata.resourceVersion) > Number(v1.metadata.resourceVersion));
      assert.equal(v2.metadata.uid, v1.metadata.uid);
      assert.equal(v2.metadata.creationTimestamp, v1.metadata.creationTimestamp);
      await assert.rejects(ds.update({ ...v1, metadata: { ...v1.metadata, labels: { app: 'stale' } } }), {
        code: 'PODNET_DATASTORE_CONFLICT',
        message: new RegExp(`Pod default/web-1 was changed by somebody else \\(you have resourceVersion ${v1.metadata.resourceVersion}, it is now ${v2.metadata.resourceVersion}\\)`),
      });
      assert.deepEqual((await ds.get('Pod', { name: 'web-1', namespace: 'default' })).metadata.labels, { app: 'web', v: '2' });
    }));

    test('of two writers holding the same version, exactly one wins', withBackend(async ({ ds }) => {
      const v1 = await ds.create(pod('web-1'));
      const results = await Promise.allSettled(
        ['a', 'b', 'c', 'd'].map((who) => ds.update({ ...v1, metadata: { ...v1.metadata, labels: { who } } })),
      );
      assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
      for (const r of results) if (r.status === 'rejected') assert.equal((r.reason as { code: string }).code, 'PODNET_DATASTORE_CONFLICT');
    }));

    test('update without a resourceVersion writes whatever is there', withBackend(async ({ ds }) => {
      await ds.create(pod('web-1'));
      const p = pod('web-1', { x: '1' });
      const v = await ds.update(p);
      assert.deepEqual(v.metadata.labels, { x: '1' });
      assert.ok(v.metadata.uid, 'identity comes from the stored object');
    }));

    test('update keeps the status; updateStatus changes only the status', withBackend(async ({ ds }) => {
      const v1 = await ds.create(pod('web-1'));
      const v2 = await ds.updateStatus({ ...v1, metadata: { ...v1.metadata, labels: { ignored: 'yes' } }, status: { phase: 'Running', podIP: '10.244.1.2' } });
      assert.deepEqual(v2.status, { phase: 'Running', podIP: '10.244.1.2' });
      assert.equal(v2.metadata.labels, undefined, 'updateStatus ignores metadata changes');
      const v3 = await ds.update({ ...v2, spec: { ...v2.spec!, nodeName: 'node1' }, status: { phase: 'Failed' } });
      assert.equal(v3.spec?.nodeName, 'node1');
      assert.deepEqual(v3.status, { phase: 'Running', podIP: '10.244.1.2' }, 'update ignores status changes');
      await assert.rejects(ds.updateStatus({ ...v2, status: { phase: 'Succeeded' } }), { code: 'PODNET_DATASTORE_CONFLICT' });
    }));

    test('kinds without a status subresource are written whole by update', withBackend(async ({ ds }) => {
      const slice: EndpointSlice = {
        apiVersion: 'discovery.k8s.io/v1',
        kind: 'EndpointSlice',
        metadata: { name: 'web-abc', namespace: 'default', labels: { 'kubernetes.io/service-name': 'web' } },
        addressType: 'IPv4',
        endpoints: [],
        ports: [{ name: 'http', port: 80, protocol: 'TCP' }],
      };
      const v1 = await ds.create(slice);
      const v2 = await ds.update({ ...v1, endpoints: [{ addresses: ['10.244.1.2'], conditions: { ready: true } }] });
      assert.deepEqual((await ds.get('EndpointSlice', { namespace: 'default', name: 'web-abc' })).endpoints, v2.endpoints);
      await assert.rejects(ds.updateStatus(v2), { code: 'PODNET_DATASTORE_INVALID', message: /EndpointSlice has no status/ });
    }));

    test('an update that changes nothing writes nothing', withBackend(async ({ ds }) => {
      const v1 = await ds.create(pod('web-1'));
      const again = await ds.update(v1);
      assert.equal(again.metadata.resourceVersion, v1.metadata.resourceVersion);
    }));

    test('delete returns the last state; preconditions on resourceVersion and uid give CONFLICT', withBackend(async ({ ds }) => {
      const v1 = await ds.create(pod('web-1'));
      const v2 = await ds.update({ ...v1, metadata: { ...v1.metadata, labels: { a: 'b' } } });
      await assert.rejects(ds.delete('Pod', { namespace: 'default', name: 'web-1' }, { resourceVersion: v1.metadata.resourceVersion }), { code: 'PODNET_DATASTORE_CONFLICT' });
      await assert.rejects(ds.delete('Pod', { namespace: 'default', name: 'web-1' }, { uid: 'not-it' }), { code: 'PODNET_DATASTORE_CONFLICT' });
      const gone = await ds.delete('Pod', { namespace: 'default', name: 'web-1' }, { resourceVersion: v2.metadata.resourceVersion, uid: v1.metadata.uid! });
      assert.deepEqual(gone.metadata.labels, { a: 'b' });
      await assert.rejects(ds.get('Pod', { namespace: 'default', name: 'web-1' }), { code: 'PODNET_DATASTORE_NOT_FOUND' });
    }));

    test('list by namespace, across namespaces, by label selector, and of cluster-scoped kinds', withBackend(async ({ ds }) => {
      await ds.create(pod('a', { app: 'web' }));
      await ds.create(pod('b', { app: 'db' }));
      await ds.create(pod('c', { app: 'web' }, 'default2'));
      await ds.create(node('node1'));
      await ds.create(node('node2'));
      const names = (l: { items: Array<{ metadata: { name: string } }> }) => l.items.map((i) => i.metadata.name).sort();
      const cases: Array<[string, Promise<{ items: Array<{ metadata: { name: string } }>; revision: string }>, string[]]> = [
        ['default', ds.list('Pod', { namespace: 'default' }), ['a', 'b']],
        ['default2 (no prefix confusion)', ds.list('Pod', { namespace: 'default2' }), ['c']],
        ['all namespaces', ds.list('Pod'), ['a', 'b', 'c']],
        ['app=web', ds.list('Pod', { labelSelector: 'app=web' }), ['a', 'c']],
        ['matchLabels app=db', ds.list('Pod', { labelSelector: { matchLabels: { app: 'db' } } }), ['b']],
        ['nodes', ds.list('Node'), ['node1', 'node2']],
        ['services (none)', ds.list('Service'), []],
      ];
      for (const [what, got, want] of cases) assert.deepEqual(names(await got), want, what);
      const l = await ds.list('Pod');
      assert.ok(l.items.every((i) => Number(i.metadata.resourceVersion) <= Number(l.revision)));
    }));

    test('reads return copies', withBackend(async ({ ds }) => {
      await ds.create(pod('a', { app: 'web' }));
      const got = await ds.get('Pod', { namespace: 'default', name: 'a' });
      got.metadata.labels!.app = 'changed';
      assert.equal((await ds.get('Pod', { namespace: 'default', name: 'a' })).metadata.labels?.app, 'web');
    }));

    test('a watch without a revision delivers the existing objects as ADDED, then the changes in order', withBackend(async ({ ds }) => {
      await ds.create(pod('b'));
      await ds.create(pod('a'));
      const w = ds.watch('Pod');
      const c = collect(w);
      await c.until(2);
      const v = await ds.create(pod('c'));
      const v2 = await ds.update({ ...v, metadata: { ...v.metadata, labels: { x: 'y' } } });
      await ds.delete('Pod', { namespace: 'default', name: 'a' });
      await c.until(5);
      await w.stop();
      assert.deepEqual(brief(c.events), ['ADDED default/a', 'ADDED default/b', 'ADDED default/c', 'MODIFIED default/c', 'DELETED default/a']);
      assert.equal(c.events[3]?.object.metadata.resourceVersion, v2.metadata.resourceVersion);
      assert.equal(c.events[3]?.revision, v2.metadata.resourceVersion);
      assert.equal(c.events[0]?.revision, '0', 'the initial list is not complete before its last event');
      assert.ok(Number(c.events[1]?.revision) >= 2, 'its last event carries the list revision');
      const revs = c.events.slice(2).map((e) => Number(e.revision));
      assert.deepEqual(revs, [...revs].sort((x, y) => x - y), 'revisions only grow');
      assert.equal(w.revision, c.events[4]?.revision);
    }));

    test('a watch from a list revision delivers only the later changes', withBackend(async ({ ds }) => {
      await ds.create(pod('old'));
      const l = await ds.list('Pod');
      await ds.create(pod('new'));
      const w = ds.watch('Pod', { fromRevision: l.revision });
      const c = collect(w);
      await c.until(1);
      await ds.delete('Pod', { namespace: 'default', name: 'old' });
      await c.until(2);
      await w.stop();
      assert.deepEqual(brief(c.events), ['ADDED default/new', 'DELETED default/old']);
      const deleted = c.events[1]!;
      assert.equal(deleted.object.metadata.resourceVersion, deleted.revision, 'DELETED carries the deletion revision');
    }));

    test('a watch sees only its namespace, kind and selector; label changes move objects in and out', withBackend(async ({ ds }) => {
      const w = ds.watch('Pod', { namespace: 'default', labelSelector: 'app=web' });
      const c = collect(w);
      const a = await ds.create(pod('a', { app: 'db' }));
      await ds.create(pod('b', { app: 'web' }, 'default2'));
      await ds.create(node('node1'));
      const a2 = await ds.update({ ...a, metadata: { ...a.metadata, labels: { app: 'web' } } });
      const a3 = await ds.update({ ...a2, metadata: { ...a2.metadata, labels: { app: 'web', v: '2' } } });
      await ds.update({ ...a3, metadata: { ...a3.metadata, labels: { app: 'db' } } });
      await c.until(3);
      await new Promise((r) => setTimeout(r, 50));
      await w.stop();
      assert.deepEqual(brief(c.events), ['ADDED default/a', 'MODIFIED default/a', 'DELETED default/a']);
    }));

    test('stop ends the iteration', withBackend(async ({ ds }) => {
      const w = ds.watch('Node');
      const c = collect(w);
      await w.stop();
      assert.equal(await c.done, undefined);
    }));

    test('a watch from a compacted revision fails with EXPIRED', withBackend(async ({ ds, compact }) => {
      const old = await ds.create(pod('a'));
      await ds.create(pod('b'));
      await ds.create(pod('c'));
      await compact();
      const w = ds.watch('Pod', { fromRevision: String(Number(old.metadata.resourceVersion) - 1) });
      const c = collect(w);
      const err = await c.done;
      assert.equal((err as { code?: string }).code, 'PODNET_DATASTORE_EXPIRED');
      assert.match(String((err as Error).message), /compacted/);
    }));
  });
}
