import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { EndpointSlice, Service } from '../datastore/types.ts';
import { planConntrackCleanup } from './conntrack.ts';
import { CLUSTER_CIDR, fixtureCluster, service, slice } from './fixtures.ts';
import { ServiceChangeTracker } from './tracker.ts';
import { translate } from './translate.ts';

function snap(c: { services: Service[]; slices: EndpointSlice[] }) {
  const m = translate({ services: c.services, endpointSlices: c.slices, nodeName: 'node1', nodeIPs: ['192.168.1.11'], clusterCIDR: CLUSTER_CIDR });
  return ServiceChangeTracker.snapshot(m.services, m.endpoints);
}

describe('ServiceChangeTracker: {previous, current} per service port', () => {
  test('everything is new at first; nothing after a commit of the same state', () => {
    const t = new ServiceChangeTracker();
    const s = snap(fixtureCluster());
    assert.equal(t.changes(s).length, s.size);
    assert.ok(t.changes(s).every((c) => c.previous === undefined && c.current !== undefined));
    t.commit(s);
    assert.deepEqual(t.changes(snap(fixtureCluster())), [], 'equal content built anew compares equal');
  });

  test('reports changed, added and removed ports only', () => {
    const t = new ServiceChangeTracker();
    const c = fixtureCluster();
    t.commit(snap(c));
    c.slices.find((s) => s.metadata.name === 'web-abc')!.endpoints.pop();
    c.services.splice(c.services.findIndex((s) => s.metadata.name === 'sctp'), 1);
    c.services.push(service('fresh', { clusterIP: '10.96.9.9', ports: [{ port: 80 }] }));
    const ch = t.changes(snap(c));
    assert.deepEqual(
      ch.map((x) => [x.key, x.previous ? 'prev' : '-', x.current ? 'cur' : '-']).sort(),
      [
        ['default/fresh', '-', 'cur'],
        ['default/sctp:assoc', 'prev', '-'],
        ['default/web:http', 'prev', 'cur'],
      ],
    );
    const web = ch.find((x) => x.key === 'default/web:http')!;
    assert.equal(web.previous!.endpoints.length, 2);
    assert.equal(web.current!.endpoints.length, 1);
  });

  test('a condition change is a change', () => {
    const t = new ServiceChangeTracker();
    const c = fixtureCluster();
    t.commit(snap(c));
    c.slices.find((s) => s.metadata.name === 'web-abc')!.endpoints[0]!.conditions = { ready: false, serving: true, terminating: true };
    assert.deepEqual(t.changes(snap(c)).map((x) => x.key), ['default/web:http']);
  });
});

describe('planConntrackCleanup: UDP flows to endpoints that went away', () => {
  const base = () => ({
    services: [service('dns', { type: 'NodePort', clusterIP: '10.96.0.53', externalIPs: ['192.168.1.210'], ports: [{ name: 'dns', port: 53, protocol: 'UDP', nodePort: 30053 }] })],
    slices: [slice('dns', [{ name: 'dns', port: 5353, protocol: 'UDP' }], [{ ip: '10.244.1.9', node: 'node1' }, { ip: '10.244.2.9', node: 'node2' }])],
  });

  test('a removed endpoint: its entries for every service address and the NodePort', () => {
    const t = new ServiceChangeTracker();
    const c = base();
    t.commit(snap(c));
    c.slices[0]!.endpoints.pop();
    assert.deepEqual(planConntrackCleanup(t.changes(snap(c))), [
      ['-D', '-p', 'udp', '--orig-dst', '10.96.0.53', '--orig-port-dst', '53', '--reply-src', '10.244.2.9'],
      ['-D', '-p', 'udp', '--orig-dst', '192.168.1.210', '--orig-port-dst', '53', '--reply-src', '10.244.2.9'],
      ['-D', '-p', 'udp', '--orig-port-dst', '30053', '--reply-src', '10.244.2.9'],
    ]);
  });

  test('an endpoint that stops being ready counts as removed', () => {
    const t = new ServiceChangeTracker();
    const c = base();
    t.commit(snap(c));
    c.slices[0]!.endpoints[0]!.conditions = { ready: false };
    const cmds = planConntrackCleanup(t.changes(snap(c)));
    assert.equal(cmds.length, 3);
    assert.ok(cmds.every((a) => a.at(-1) === '10.244.1.9'));
  });

  test('a service going from no endpoint to some: its un-NATed entries', () => {
    const t = new ServiceChangeTracker();
    const c = base();
    const eps = c.slices[0]!.endpoints;
    c.slices[0]!.endpoints = [];
    t.commit(snap(c));
    c.slices[0]!.endpoints = eps;
    assert.deepEqual(planConntrackCleanup(t.changes(snap(c))), [
      ['-D', '-p', 'udp', '--orig-dst', '10.96.0.53', '--orig-port-dst', '53'],
      ['-D', '-p', 'udp', '--orig-dst', '192.168.1.210', '--orig-port-dst', '53'],
      ['-D', '-p', 'udp', '--orig-port-dst', '30053'],
    ]);
  });

  test('a removed service: entries to all its endpoints', () => {
    const t = new ServiceChangeTracker();
    const c = base();
    t.commit(snap(c));
    const cmds = planConntrackCleanup(t.changes(snap({ services: [], slices: [] })));
    assert.equal(cmds.length, 6);
  });

  test('TCP services and unchanged ones need nothing', () => {
    const t = new ServiceChangeTracker();
    const c = fixtureCluster();
    t.commit(snap(c));
    c.slices.find((s) => s.metadata.name === 'web-abc')!.endpoints.pop();
    assert.deepEqual(planConntrackCleanup(t.changes(snap(c))), []);
  });
});
