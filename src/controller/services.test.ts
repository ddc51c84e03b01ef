import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { type EndpointSlice, MemoryDatastore, type Node, type Pod, type Service, type ServiceSpec } from '../datastore/index.ts';
import { CONDITION } from './alloc.ts';
import { Controller, type ControllerOptions } from './controller.ts';
import { MANAGED_BY_LABEL, SERVICE_NAME_LABEL } from './endpointslices.ts';

function node(name: string): Node {
  return { apiVersion: 'v1', kind: 'Node', metadata: { name, labels: { 'topology.kubernetes.io/zone': 'z1' } }, status: { conditions: [{ type: 'Ready', status: 'True' }] } };
}

function service(name: string, spec: ServiceSpec = {}): Service {
  return { apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: 'default' }, spec: { selector: { app: name }, ports: [{ name: 'http', port: 80, targetPort: 8080 }], ...spec } };
}

function pod(name: string, app: string, ip: string, ready = true): Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: 'default', labels: { app } },
    spec: { nodeName: 'node1', containers: [{ name: 'c' }] },
    status: { phase: 'Running', podIP: ip, conditions: [{ type: 'Ready', status: ready ? 'True' : 'False' }] },
  };
}

interface Harness {
  ds: MemoryDatastore;
  ctl: Controller;
  logs: string[];
  stop(): Promise<void>;
}

async function startController(ds: MemoryDatastore, services?: ControllerOptions['services']): Promise<Harness> {
  const logs: string[] = [];
  const ctl = new Controller(ds, { info: (_o, m) => logs.push(m), error: (o, m) => logs.push(`ERROR ${m} ${JSON.stringify(o)}`) }, { debounceMs: 1, resyncMs: 60_000, ...(services ? { services } : {}) });
  const ac = new AbortController();
  await ctl.start(ac.signal);
  return {
    ds,
    ctl,
    logs,
    stop: async () => {
      ac.abort();
      await new Promise((r) => setTimeout(r, 20)); // a pass in flight finishes
    },
  };
}

/** Polls until `check` returns a value (not undefined) or fails after a while. */
async function until<T>(what: string, check: () => Promise<T | undefined>, ms = 3000): Promise<T> {
  const end = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function slicesOf(ds: MemoryDatastore, svc: string): Promise<EndpointSlice[]> {
  return (await ds.list('EndpointSlice', { namespace: 'default', labelSelector: `${SERVICE_NAME_LABEL}=${svc}` })).items;
}

const addresses = (slices: EndpointSlice[]): string[] => slices.flatMap((s) => s.endpoints.filter((e) => e.conditions?.ready).map((e) => e.addresses[0] ?? '')).sort();

describe('the controller runs Services end to end (MemoryDatastore)', () => {
  test('a Service with pods gets an address and slices; deleting it removes them', async () => {
    const ds = await MemoryDatastore.with([node('node1'), pod('web-1', 'web', '10.244.1.11'), pod('web-2', 'web', '10.244.1.12'), pod('db-1', 'db', '10.244.1.20')]);
    const h = await startController(ds);
    try {
      await ds.create(service('web', { type: 'NodePort' }));
      const svc = await until('an allocated Service', async () => {
        const s = await ds.get('Service', { namespace: 'default', name: 'web' });
        return s.spec?.clusterIP && s.spec.ports?.[0]?.nodePort ? s : undefined;
      });
      assert.equal(svc.spec?.clusterIP, '10.96.1.1');
      assert.deepEqual(svc.spec?.clusterIPs, ['10.96.1.1']);
      assert.equal(svc.spec?.ports?.[0]?.nodePort, 30086);
      assert.deepEqual(svc.status?.conditions?.map((c) => `${c.type}=${c.status}`), [`${CONDITION.clusterIP}=True`, `${CONDITION.nodePorts}=True`]);

      const slices = await until('slices with both pods', async () => {
        const s = await slicesOf(ds, 'web');
        return addresses(s).length === 2 ? s : undefined;
      });
      assert.equal(slices.length, 1);
      assert.deepEqual(addresses(slices), ['10.244.1.11', '10.244.1.12']);
      assert.equal(slices[0]!.metadata.labels?.[MANAGED_BY_LABEL], 'podnet-controller');
      assert.deepEqual(slices[0]!.ports, [{ name: 'http', protocol: 'TCP', port: 8080 }]);
      assert.equal(slices[0]!.endpoints[0]!.zone, 'z1');

      // Readiness flips and a new pod show up.
      const p2 = await ds.get('Pod', { namespace: 'default', name: 'web-2' });
      await ds.updateStatus({ ...p2, status: { ...p2.status, conditions: [{ type: 'Ready', status: 'False' }] } });
      await ds.create(pod('web-3', 'web', '10.244.1.13'));
      await until('web-2 not ready, web-3 ready', async () => {
        const a = addresses(await slicesOf(ds, 'web'));
        return a.join() === '10.244.1.11,10.244.1.13' ? a : undefined;
      });

      // A user-made slice of a selector-less Service is left alone.
      await ds.create(service('ext', { selector: {} }));
      const manual: EndpointSlice = {
        apiVersion: 'discovery.k8s.io/v1',
        kind: 'EndpointSlice',
        metadata: { name: 'ext-1', namespace: 'default', labels: { [SERVICE_NAME_LABEL]: 'ext' } },
        addressType: 'IPv4',
        endpoints: [{ addresses: ['192.168.1.50'] }],
      };
      await ds.create(manual);

      await ds.delete('Service', { namespace: 'default', name: 'web' });
      await until('no slices of web', async () => ((await slicesOf(ds, 'web')).length === 0 ? true : undefined));
      await until('ext allocated', async () => ((await ds.get('Service', { namespace: 'default', name: 'ext' })).spec?.clusterIP ? true : undefined));
      assert.deepEqual((await slicesOf(ds, 'ext')).map((s) => s.metadata.name), ['ext-1']);
      assert.deepEqual(h.logs.filter((l) => l.startsWith('ERROR')), []);
    } finally {
      await h.stop();
      await ds.close();
    }
  });

  test('a duplicate clusterIP written behind the controller’s back is refused and reported', async () => {
    const ds = await MemoryDatastore.with([node('node1')]);
    const h = await startController(ds);
    try {
      await ds.create(service('first', { clusterIP: '10.96.0.50' }));
      await until('first allocated', async () => ((await ds.get('Service', { namespace: 'default', name: 'first' })).status?.conditions?.length ? true : undefined));
      await ds.create(service('second', { clusterIP: '10.96.0.50' }));
      const second = await until('second refused', async () => {
        const s = await ds.get('Service', { namespace: 'default', name: 'second' });
        return s.status?.conditions?.some((c) => c.status === 'False') && !s.spec?.clusterIP ? s : undefined;
      });
      const c = second.status?.conditions?.find((x) => x.type === CONDITION.clusterIP);
      assert.equal(c?.reason, 'ClusterIPAlreadyAllocated');
      assert.match(c?.message ?? '', /already allocated to Service default\/first/);
      assert.equal((await ds.get('Service', { namespace: 'default', name: 'first' })).spec?.clusterIP, '10.96.0.50');
      assert.ok(h.logs.some((l) => l.startsWith('ERROR spec.clusterIP 10.96.0.50 is already allocated')), h.logs.join('\n'));
      // It stays without an address (no silent replacement) through later passes.
      await h.ctl.pass();
      assert.equal((await ds.get('Service', { namespace: 'default', name: 'second' })).spec?.clusterIP, undefined);
    } finally {
      await h.stop();
      await ds.close();
    }
  });

  test('a restarted controller keeps every allocation and writes nothing', async () => {
    const ds = await MemoryDatastore.with([node('node1'), pod('a-1', 'a', '10.244.1.5')]);
    const first = await startController(ds);
    let before: Service[];
    try {
      for (const [name, spec] of [
        ['a', {}],
        ['b', { type: 'LoadBalancer', externalTrafficPolicy: 'Local' }],
        ['c', { type: 'NodePort' }],
      ] as Array<[string, ServiceSpec]>) {
        await ds.create(service(name, spec));
      }
      before = await until('all allocated', async () => {
        const items = (await ds.list('Service')).items;
        return items.every((s) => s.status?.conditions?.length) && items.length === 3 ? items : undefined;
      });
      await until('slices', async () => ((await slicesOf(ds, 'a')).length === 1 ? true : undefined));
    } finally {
      await first.stop();
    }
    const revision = (await ds.list('Service')).revision;
    const second = await startController(ds);
    try {
      await second.ctl.pass();
      const after = (await ds.list('Service')).items;
      assert.deepEqual(after, before);
      assert.equal((await ds.list('Service')).revision, revision, 'no write at all');
      assert.deepEqual(second.ctl.serviceController.stats, { allocationWrites: 0, problems: 0, slicesCreated: 0, slicesUpdated: 0, slicesDeleted: 0, errors: 0 });
      assert.deepEqual(
        after.map((s) => [s.metadata.name, s.spec?.clusterIP, s.status?.loadBalancer?.ingress?.[0]?.ip]),
        [
          ['a', '10.96.1.1', undefined],
          ['b', '10.96.1.2', '192.168.1.200'],
          ['c', '10.96.1.3', undefined],
        ],
      );
    } finally {
      await second.stop();
      await ds.close();
    }
  });

  test('an exhausted pool is reported, and filled when a Service goes', async () => {
    const ds = await MemoryDatastore.with([node('node1')]);
    const h = await startController(ds, { network: { loadBalancerPool: ['192.168.1.200', '192.168.1.200'] } });
    try {
      await ds.create(service('one', { type: 'LoadBalancer' }));
      await until('one has the address', async () => ((await ds.get('Service', { namespace: 'default', name: 'one' })).status?.loadBalancer?.ingress?.length ? true : undefined));
      await ds.create(service('two', { type: 'LoadBalancer' }));
      const two = await until('two pending', async () => {
        const s = await ds.get('Service', { namespace: 'default', name: 'two' });
        return s.status?.conditions?.find((c) => c.type === CONDITION.loadBalancer) ? s : undefined;
      });
      assert.equal(two.status?.conditions?.find((c) => c.type === CONDITION.loadBalancer)?.reason, 'LoadBalancerPoolExhausted');
      await ds.delete('Service', { namespace: 'default', name: 'one' });
      const ip = await until('two gets the address', async () => (await ds.get('Service', { namespace: 'default', name: 'two' })).status?.loadBalancer?.ingress?.[0]?.ip);
      assert.equal(ip, '192.168.1.200');
    } finally {
      await h.stop();
      await ds.close();
    }
  });

  test('many Services created at once get distinct addresses (one allocator, read-your-writes)', async () => {
    const ds = await MemoryDatastore.with([node('node1')]);
    const h = await startController(ds, { network: { nodePortRange: [30000, 30040] } });
    try {
      await Promise.all(Array.from({ length: 30 }, (_, i) => ds.create(service(`s${i}`, { type: 'NodePort' }))));
      const items = await until('all allocated', async () => {
        const list = (await ds.list('Service')).items;
        return list.every((s) => s.spec?.clusterIP && s.spec.ports?.[0]?.nodePort) ? list : undefined;
      });
      assert.equal(new Set(items.map((s) => s.spec?.clusterIP)).size, 30);
      assert.equal(new Set(items.map((s) => s.spec?.ports?.[0]?.nodePort)).size, 30);
    } finally {
      await h.stop();
      await ds.close();
    }
  });
});

describe('lab apply checks Services before storing them', () => {
  const yaml = (name: string, extra = '') => `apiVersion: v1
kind: Service
metadata: {name: ${name}}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080${extra}}]
`;

  test('duplicates and address changes are refused with a clear message; a re-apply keeps what was allocated', async () => {
    const { applyManifests } = await import('../lab/commands.ts');
    const { parseManifests } = await import('../lab/manifest.ts');
    const ds = await MemoryDatastore.with([node('node1'), { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'default' } }]);
    const h = await startController(ds);
    const lines: string[] = [];
    const apply = (text: string) => applyManifests(ds, parseManifests(text), (l) => lines.push(l));
    try {
      await apply(yaml('web'));
      const web = await until('web allocated', async () => {
        const s = await ds.get('Service', { namespace: 'default', name: 'web' });
        return s.spec?.ports?.[0]?.nodePort ? s : undefined;
      });
      await apply(yaml('web'));
      assert.deepEqual(lines, ['service/web created', 'service/web unchanged']);

      const cases: Array<[string, RegExp]> = [
        [yaml('api').replace('type: NodePort', `type: NodePort\n  clusterIP: ${web.spec?.clusterIP}`), /^service\/api is invalid: spec\.clusterIP 10\.96\.1\.1 is already allocated to Service default\/web: choose another free address/],
        [yaml('api', `, nodePort: ${web.spec?.ports?.[0]?.nodePort}`), /^service\/api is invalid: spec\.ports\[0\]\.nodePort 30086 is already allocated to Service default\/web/],
        [yaml('api').replace('type: NodePort', 'type: NodePort\n  clusterIP: 10.0.0.1'), /is not a usable address of the service CIDR 10\.96\.0\.0\/12/],
        [yaml('web').replace('type: NodePort', 'type: NodePort\n  clusterIP: 10.96.1.9'), /spec\.clusterIP cannot change from 10\.96\.1\.1 to 10\.96\.1\.9/],
      ];
      for (const [text, re] of cases) await assert.rejects(apply(text), { code: 'PODNET_INVALID_SERVICE', message: re });
      await assert.rejects(ds.get('Service', { namespace: 'default', name: 'api' }), { code: 'PODNET_DATASTORE_NOT_FOUND' });

      await apply(yaml('web').replace('8080', '9090'));
      const after = await ds.get('Service', { namespace: 'default', name: 'web' });
      assert.equal(after.spec?.clusterIP, web.spec?.clusterIP);
      assert.equal(after.spec?.ports?.[0]?.nodePort, web.spec?.ports?.[0]?.nodePort);
      assert.equal(after.spec?.ports?.[0]?.targetPort, 9090);
    } finally {
      await h.stop();
      await ds.close();
    }
  });
});
