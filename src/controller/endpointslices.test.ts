import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { EndpointSlice, Pod, Service, ServiceSpec } from '../datastore/index.ts';
import {
  HEADLESS_LABEL,
  MANAGED_BY_LABEL,
  SERVICE_NAME_LABEL,
  type SlicePlan,
  planEndpointSlices,
  podEndpoint,
  sliceName,
  targetPortOf,
} from './endpointslices.ts';

function service(spec: ServiceSpec = {}, name = 'web'): Service {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name, namespace: 'default', uid: `uid-${name}`, labels: { team: 'a' } },
    spec: { selector: { app: 'web' }, ports: [{ name: 'http', port: 80, targetPort: 8080 }], ...spec },
  };
}

interface PodOpts {
  ip?: string | null;
  ready?: boolean;
  terminating?: boolean;
  labels?: Record<string, string>;
  ns?: string;
  node?: string;
  phase?: 'Running' | 'Succeeded' | 'Failed' | 'Pending';
  ports?: Array<{ name: string; containerPort: number; protocol?: 'TCP' | 'UDP' }>;
  hostname?: string;
  subdomain?: string;
}

let ipCounter = 0;
function pod(name: string, o: PodOpts = {}): Pod {
  const ip = o.ip === null ? undefined : (o.ip ?? `10.244.1.${++ipCounter % 250}`);
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name,
      namespace: o.ns ?? 'default',
      uid: `uid-${name}`,
      labels: o.labels ?? { app: 'web' },
      ...(o.terminating ? { deletionTimestamp: '2030-01-01T00:00:00Z' } : {}),
    },
    spec: {
      nodeName: o.node ?? 'node1',
      containers: [{ name: 'c', ...(o.ports ? { ports: o.ports } : {}) }],
      ...(o.hostname ? { hostname: o.hostname } : {}),
      ...(o.subdomain ? { subdomain: o.subdomain } : {}),
    },
    status: {
      phase: o.phase ?? 'Running',
      ...(ip ? { podIP: ip } : {}),
      conditions: [{ type: 'Ready', status: o.ready === false ? 'False' : 'True' }],
    },
  };
}

/** Stores a plan's writes, as the datastore would (uids and versions for new slices). */
let stored = 0;
function apply(slices: EndpointSlice[], plan: SlicePlan): EndpointSlice[] {
  const gone = new Set(plan.delete.map((s) => s.metadata.name));
  const updated = new Map(plan.update.map((s) => [s.metadata.name, s]));
  const kept = slices.filter((s) => !gone.has(s.metadata.name)).map((s) => structuredClone(updated.get(s.metadata.name) ?? s));
  const created = plan.create.map((s) => ({ ...structuredClone(s), metadata: { ...s.metadata, uid: `slice-${++stored}` } }));
  return [...kept, ...created];
}

function plan(svc: Service, pods: Pod[], slices: EndpointSlice[] = [], max?: number): SlicePlan {
  return planEndpointSlices({ service: svc, pods, slices, ...(max ? { maxEndpointsPerSlice: max } : {}) });
}

const names = (s: EndpointSlice): string[] => s.endpoints.map((e) => e.targetRef?.name ?? '');
const counts = (p: SlicePlan) => ({ create: p.create.length, update: p.update.length, delete: p.delete.length });

describe('an endpoint per pod', () => {
  const cases: Array<[string, PodOpts, ServiceSpec, { ready: boolean; serving: boolean; terminating: boolean }]> = [
    ['a ready pod is ready and serving', {}, {}, { ready: true, serving: true, terminating: false }],
    ['a pod that is not ready is neither', { ready: false }, {}, { ready: false, serving: false, terminating: false }],
    ['a terminating ready pod serves but is not ready', { terminating: true }, {}, { ready: false, serving: true, terminating: true }],
    ['a terminating pod that is not ready is only terminating', { terminating: true, ready: false }, {}, { ready: false, serving: false, terminating: true }],
    ['publishNotReadyAddresses makes a not-ready pod ready', { ready: false }, { publishNotReadyAddresses: true }, { ready: true, serving: false, terminating: false }],
    ['publishNotReadyAddresses makes a terminating pod ready', { terminating: true }, { publishNotReadyAddresses: true }, { ready: true, serving: true, terminating: true }],
  ];
  for (const [name, o, spec, want] of cases) {
    test(name, () => {
      assert.deepEqual(podEndpoint(service(spec), pod('p', o), '10.244.1.5').conditions, want);
    });
  }

  test('an endpoint names its pod and node', () => {
    assert.deepEqual(podEndpoint(service(), pod('p', { node: 'node2' }), '10.244.2.5', 'zone-b'), {
      addresses: ['10.244.2.5'],
      conditions: { ready: true, serving: true, terminating: false },
      targetRef: { kind: 'Pod', namespace: 'default', name: 'p', uid: 'uid-p' },
      nodeName: 'node2',
      zone: 'zone-b',
    });
  });

  test('hostname is set only when the pod’s subdomain is the Service', () => {
    assert.equal(podEndpoint(service({ clusterIP: 'None' }), pod('db-0', { hostname: 'db-0', subdomain: 'web' }), '10.244.1.9').hostname, 'db-0');
    assert.equal(podEndpoint(service({ clusterIP: 'None' }), pod('db-0', { hostname: 'db-0', subdomain: 'other' }), '10.244.1.9').hostname, undefined);
  });

  const ports: Array<[string, ServiceSpec['ports'], PodOpts['ports'], Array<number | undefined>]> = [
    ['a numeric targetPort is used as is', [{ port: 80, targetPort: 8080 }], [], [8080]],
    ['no targetPort means the port itself', [{ port: 80 }], [], [80]],
    ['a named targetPort is looked up in the containers', [{ port: 80, targetPort: 'http' }], [{ name: 'http', containerPort: 8000 }], [8000]],
    ['a named port of another protocol does not match', [{ port: 53, protocol: 'UDP', targetPort: 'dns' }], [{ name: 'dns', containerPort: 5353 }], [undefined]],
    ['a named port the pod lacks resolves to nothing', [{ port: 80, targetPort: 'http' }], [], [undefined]],
    ['a number written as a string is a number', [{ port: 80, targetPort: '9090' }], [], [9090]],
  ];
  for (const [name, sp, cp, want] of ports) {
    test(`ports: ${name}`, () => {
      const p = pod('p', { ports: cp ?? [] });
      assert.deepEqual((sp ?? []).map((x) => targetPortOf(x, p)), want);
    });
  }
});

describe('EndpointSlices of a Service', () => {
  test('a Service with three pods gets one slice, labelled and owned', () => {
    const svc = service({ ports: [{ name: 'http', port: 80, targetPort: 8080 }, { name: 'dns', port: 53, protocol: 'UDP', appProtocol: 'dns' }] });
    const p = plan(svc, [pod('web-2', { ip: '10.244.1.2' }), pod('web-1', { ip: '10.244.1.1' }), pod('web-10', { ip: '10.244.1.10' })]);
    assert.deepEqual(counts(p), { create: 1, update: 0, delete: 0 });
    const s = p.create[0]!;
    assert.equal(s.metadata.name, sliceName(svc, 0));
    assert.match(s.metadata.name, /^web-[0-9a-f]{8}$/);
    assert.deepEqual(s.metadata.labels, { team: 'a', [SERVICE_NAME_LABEL]: 'web', [MANAGED_BY_LABEL]: 'podnet-controller' });
    assert.deepEqual(s.metadata.ownerReferences, [{ apiVersion: 'v1', kind: 'Service', name: 'web', uid: 'uid-web', controller: true, blockOwnerDeletion: true }]);
    assert.equal(s.addressType, 'IPv4');
    assert.deepEqual(s.ports, [
      { name: 'http', protocol: 'TCP', port: 8080 },
      { name: 'dns', protocol: 'UDP', port: 53, appProtocol: 'dns' },
    ]);
    assert.deepEqual(names(s), ['web-1', 'web-2', 'web-10']);
    assert.deepEqual(s.endpoints.map((e) => e.addresses[0]), ['10.244.1.1', '10.244.1.2', '10.244.1.10']);
  });

  test('a headless Service’s slices carry the headless label', () => {
    const p = plan(service({ clusterIP: 'None' }), [pod('a')]);
    assert.equal(p.create[0]!.metadata.labels?.[HEADLESS_LABEL], '');
  });

  const selection: Array<[string, Pod, boolean]> = [
    ['a pod without an address', pod('x', { ip: null }), false],
    ['a pod in another namespace', pod('x', { ns: 'other' }), false],
    ['a pod with other labels', pod('x', { labels: { app: 'db' } }), false],
    ['a finished pod', pod('x', { phase: 'Succeeded' }), false],
    ['a failed pod', pod('x', { phase: 'Failed' }), false],
    ['an IPv6-only pod (the slices are IPv4)', pod('x', { ip: 'fd00::5' }), false],
    ['a pending pod with an address', pod('x', { phase: 'Pending' }), true],
    ['a terminating pod', pod('x', { terminating: true }), true],
    ['a pod that is not ready', pod('x', { ready: false }), true],
  ];
  for (const [name, p, included] of selection) {
    test(`${included ? 'includes' : 'leaves out'} ${name}`, () => {
      const s = plan(service(), [pod('base'), p]).create[0]!;
      assert.deepEqual(names(s), included ? ['base', 'x'] : ['base']);
    });
  }

  test('nothing is written when nothing changed', () => {
    const pods = [pod('a'), pod('b')];
    const slices = apply([], plan(service(), pods));
    assert.deepEqual(counts(plan(service(), pods, slices)), { create: 0, update: 0, delete: 0 });
  });

  test('a readiness flip updates the slice in place', () => {
    const pods = [pod('a', { ip: '10.244.1.1' }), pod('b', { ip: '10.244.1.2' })];
    let slices = apply([], plan(service(), pods));
    pods[1] = pod('b', { ip: '10.244.1.2', ready: false });
    const p = plan(service(), pods, slices);
    assert.deepEqual(counts(p), { create: 0, update: 1, delete: 0 });
    assert.equal(p.update[0]!.metadata.name, slices[0]!.metadata.name);
    assert.equal(p.update[0]!.metadata.uid, slices[0]!.metadata.uid, 'the stored object is updated, with its uid');
    assert.deepEqual(p.update[0]!.endpoints.map((e) => e.conditions?.ready), [true, false]);
    slices = apply(slices, p);
    pods[1] = pod('b', { ip: '10.244.1.2', terminating: true });
    assert.deepEqual(plan(service(), pods, slices).update[0]!.endpoints[1]!.conditions, { ready: false, serving: true, terminating: true });
  });

  test('a deleted pod leaves its slice', () => {
    const slices = apply([], plan(service(), [pod('a'), pod('b')]));
    const p = plan(service(), [pod('b')], slices);
    assert.deepEqual(counts(p), { create: 0, update: 1, delete: 0 });
    assert.deepEqual(names(p.update[0]!), ['b']);
  });

  test('with no endpoints left one empty placeholder slice stays', () => {
    const slices = apply([], plan(service(), [pod('a')]));
    const p = plan(service(), [], slices);
    assert.deepEqual(counts(p), { create: 0, update: 1, delete: 0 });
    assert.deepEqual(p.update[0]!.endpoints, []);
    assert.deepEqual(p.update[0]!.ports, []);
    const after = apply(slices, p);
    assert.deepEqual(counts(plan(service(), [], after)), { create: 0, update: 0, delete: 0 });
  });

  test('a Service without pods gets a placeholder, which its first pod fills', () => {
    const first = plan(service(), []);
    assert.deepEqual(counts(first), { create: 1, update: 0, delete: 0 });
    assert.deepEqual(first.create[0]!.endpoints, []);
    const slices = apply([], first);
    const p = plan(service(), [pod('a')], slices);
    // Another port list, so another slice: the placeholder is rewritten to be it.
    assert.deepEqual(counts(p), { create: 0, update: 1, delete: 0 });
    assert.deepEqual(names(p.update[0]!), ['a']);
    assert.deepEqual(p.update[0]!.ports, [{ name: 'http', protocol: 'TCP', port: 8080 }]);
    assert.equal(p.update[0]!.metadata.name, slices[0]!.metadata.name);
  });

  test('a targetPort change rewrites the slices rather than replacing them', () => {
    const slices = apply([], plan(service(), [pod('a'), pod('b')]));
    const p = plan(service({ ports: [{ name: 'http', port: 80, targetPort: 9000 }] }), [pod('a'), pod('b')], slices);
    assert.deepEqual(counts(p), { create: 0, update: 1, delete: 0 });
    assert.deepEqual(p.update[0]!.ports?.map((x) => x.port), [9000]);
    assert.deepEqual(names(p.update[0]!), ['a', 'b']);
  });

  test('pods whose named port differs get their own slice', () => {
    const svc = service({ ports: [{ name: 'http', port: 80, targetPort: 'http' }] });
    const pods = [
      pod('v1-a', { ports: [{ name: 'http', containerPort: 8080 }] }),
      pod('v2-a', { ports: [{ name: 'http', containerPort: 9090 }] }),
      pod('v1-b', { ports: [{ name: 'http', containerPort: 8080 }] }),
      pod('none', { ports: [] }),
    ];
    const p = plan(svc, pods);
    const summary = p.create.map((s) => `${s.ports?.map((x) => x.port).join(',') || '-'}: ${names(s).join(',')}`).sort();
    assert.deepEqual(summary, ['-: none', '8080: v1-a,v1-b', '9090: v2-a']);
  });

  test('more than 100 endpoints are split into slices of at most 100', () => {
    const pods = Array.from({ length: 250 }, (_, i) => pod(`p${i}`, { ip: `10.244.${Math.floor(i / 200)}.${i % 200}` }));
    const p = plan(service(), pods);
    assert.deepEqual(p.create.map((s) => s.endpoints.length), [100, 100, 50]);
    assert.equal(new Set(p.create.map((s) => s.metadata.name)).size, 3);
    let slices = apply([], p);

    // Ten pods of the first slice go: only that slice is written.
    const fewer = pods.filter((_, i) => i < 0 || i >= 10);
    const p2 = plan(service(), fewer, slices);
    assert.deepEqual(counts(p2), { create: 0, update: 1, delete: 0 });
    assert.equal(p2.update[0]!.endpoints.length, 90);
    slices = apply(slices, p2);

    // Five new pods fill that slice's room rather than touch another.
    const more = [...fewer, ...Array.from({ length: 5 }, (_, i) => pod(`q${i}`, { ip: `10.244.9.${i}` }))];
    const p3 = plan(service(), more, slices);
    assert.deepEqual(counts(p3), { create: 0, update: 1, delete: 0 });
    assert.equal(p3.update[0]!.endpoints.length, 95);
    slices = apply(slices, p3);
    assert.deepEqual(slices.map((s) => s.endpoints.length).sort((a, b) => a - b), [50, 95, 100]);
    const all = slices.flatMap(names);
    assert.equal(new Set(all).size, 245, 'every pod exactly once');
  });

  test('a small slice size is honoured too', () => {
    const p = plan(service(), [pod('a'), pod('b'), pod('c')], [], 2);
    assert.deepEqual(p.create.map((s) => s.endpoints.length), [2, 1]);
  });

  test('a selector change swaps the endpoints', () => {
    const pods = [pod('web-1'), pod('api-1', { labels: { app: 'api' } })];
    const slices = apply([], plan(service(), pods));
    const p = plan(service({ selector: { app: 'api' } }), pods, slices);
    assert.deepEqual(counts(p), { create: 0, update: 1, delete: 0 });
    assert.deepEqual(names(p.update[0]!), ['api-1']);
  });

  test('a Service that loses its selector loses its slices', () => {
    const slices = apply([], plan(service(), [pod('a')]));
    const p = plan(service({ selector: {} }), [pod('a')], slices);
    assert.deepEqual(counts(p), { create: 0, update: 0, delete: 1 });
  });

  test('an ExternalName Service has no slices', () => {
    const slices = apply([], plan(service(), [pod('a')]));
    assert.deepEqual(counts(plan(service({ type: 'ExternalName', externalName: 'x.example.com' }), [pod('a')], slices)), { create: 0, update: 0, delete: 1 });
  });

  test('slices of an earlier Service of the same name are replaced', () => {
    const slices = apply([], plan(service(), [pod('a')]));
    const reborn = { ...service(), metadata: { ...service().metadata, uid: 'uid-web-2' } };
    const p = plan(reborn, [pod('a')], slices);
    assert.deepEqual(counts(p), { create: 1, update: 0, delete: 1 });
    assert.notEqual(p.create[0]!.metadata.name, slices[0]!.metadata.name);
  });

  test('a Service label change is copied to its slices', () => {
    const slices = apply([], plan(service(), [pod('a')]));
    const relabelled = { ...service(), metadata: { ...service().metadata, labels: { team: 'b' } } };
    const p = plan(relabelled, [pod('a')], slices);
    assert.deepEqual(counts(p), { create: 0, update: 1, delete: 0 });
    assert.equal(p.update[0]!.metadata.labels?.team, 'b');
  });

  test('a new name avoids slices that exist already', () => {
    const svc = service();
    const p = planEndpointSlices({ service: svc, pods: [pod('a')], slices: [], usedNames: new Set([sliceName(svc, 0)]) });
    assert.equal(p.create[0]!.metadata.name, sliceName(svc, 1));
  });
});
