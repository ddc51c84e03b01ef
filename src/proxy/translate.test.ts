import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { CLUSTER_CIDR, fixtureCluster, fixtureModel, service, slice } from './fixtures.ts';
import { layoutService, usable } from './layout.ts';
import { affinitySet, endpointChain, hashName, iptEndpointChain, iptServiceChain, serviceChain } from './names.ts';
import { Translator, translate } from './translate.ts';
import { ServiceChangeTracker } from './tracker.ts';
import type { EndpointInfo, ServiceInfo } from './types.ts';

describe('translate: Services and EndpointSlices → ServiceInfo / EndpointInfo', () => {
  const m = fixtureModel('node1');

  test('one record per service port, keyed namespace/name:port', () => {
    assert.deepEqual(
      [...m.services.keys()].filter((k) => /multi|dns:/.test(k)),
      ['default/dns:dns', 'default/dns:dns-tcp', 'default/multi:http', 'default/multi:https'],
    );
    assert.equal(m.problems.length, 0);
  });

  test('headless and ExternalName services have no virtual IP and are left out', () => {
    assert.ok(![...m.services.keys()].some((k) => k.includes('headless') || k.includes('external-name')));
  });

  test('a LoadBalancer service carries everything the rules need', () => {
    assert.deepEqual(m.services.get('default/lb-local:http'), {
      key: 'default/lb-local:http',
      namespace: 'default',
      name: 'lb-local',
      portName: 'http',
      protocol: 'TCP',
      port: 80,
      clusterIPs: ['10.96.0.31'],
      nodePort: 30082,
      externalIPs: [],
      loadBalancerIPs: ['192.168.1.201'],
      sessionAffinity: 'None',
      affinityTimeoutSeconds: 10800,
      externalTrafficPolicy: 'Local',
      internalTrafficPolicy: 'Cluster',
      healthCheckNodePort: 32001,
    });
  });

  test('affinity timeout, protocols, target ports from the slice of the same port name', () => {
    assert.equal(m.services.get('default/sticky:http')!.sessionAffinity, 'ClientIP');
    assert.equal(m.services.get('default/sticky:http')!.affinityTimeoutSeconds, 600);
    assert.equal(m.services.get('default/dns:dns')!.protocol, 'UDP');
    assert.deepEqual(m.endpoints.get('default/multi:https')!.map((e) => `${e.ip}:${e.port}`), ['10.244.1.8:8443', '10.244.2.8:8443']);
  });

  test('endpoints: conditions defaulted as Kubernetes does, isLocal from nodeName', () => {
    const eps = m.endpoints.get('default/terminating:http')!;
    assert.deepEqual(eps, [
      { ip: '10.244.1.14', port: 8080, ready: false, serving: true, terminating: true, nodeName: 'node1', isLocal: true },
      { ip: '10.244.2.14', port: 8080, ready: false, serving: false, terminating: true, nodeName: 'node2', isLocal: false },
    ]);
    const web = m.endpoints.get('default/web:http')!;
    assert.deepEqual(web.map((e) => [e.ready, e.serving, e.terminating, e.isLocal]), [
      [true, true, false, true],
      [true, true, false, false],
    ]);
  });

  test('a service without a slice has no endpoints (not missing)', () => {
    assert.deepEqual(m.endpoints.get('default/empty-udp:dns'), []);
  });

  test('endpoints in two slices are kept once; sorted by address, numerically', () => {
    const r = translate({
      services: [service('s', { clusterIP: '10.96.5.5', ports: [{ port: 80 }] })],
      endpointSlices: [
        slice('s', [{ port: 80 }], [{ ip: '10.244.1.10', node: 'node1' }, { ip: '10.244.1.9', node: 'node1' }], { name: 's-1' }),
        slice('s', [{ port: 80 }], [{ ip: '10.244.1.9', node: 'node1' }], { name: 's-2' }),
      ],
      nodeName: 'node1',
      nodeIPs: [],
      clusterCIDR: CLUSTER_CIDR,
    });
    assert.deepEqual([...r.services.keys()], ['default/s']);
    assert.deepEqual(r.endpoints.get('default/s')!.map((e) => e.ip), ['10.244.1.9', '10.244.1.10']);
  });

  test('bad data is reported and left out; the other services still come through', () => {
    const r = translate({
      services: [
        service('bad', { clusterIP: '10.96.0.1', externalIPs: ['not-an-ip'], ports: [{ name: 'a', port: 80 }, { name: 'a', port: 81 }, { name: 'b', port: 70000 }] }),
        service('ok', { clusterIP: '10.96.0.2', ports: [{ port: 80 }] }),
      ],
      endpointSlices: [slice('ok', [{ port: 80 }], [{ ip: '10.244.1.300', node: 'node1' }, { ip: '10.244.1.3', node: 'node1' }])],
      nodeName: 'node1',
      nodeIPs: [],
      clusterCIDR: CLUSTER_CIDR,
    });
    assert.deepEqual([...r.services.keys()], ['default/bad:a', 'default/ok']);
    assert.deepEqual(r.endpoints.get('default/ok')!.map((e) => e.ip), ['10.244.1.3']);
    assert.equal(r.problems.length, 4, r.problems.join('\n'));
  });

  test('dual-stack: the model keeps the family of the cluster CIDR', () => {
    const svc = service('ds', { clusterIPs: ['10.96.0.7', 'FD00:96::7'], ipFamilies: ['IPv4', 'IPv6'], ports: [{ port: 80 }] });
    const v6 = translate({ services: [svc], endpointSlices: [], nodeName: 'n', nodeIPs: ['192.168.1.11', 'fd00:1::11'], clusterCIDR: 'fd00:244::/32' });
    assert.deepEqual(v6.services.get('default/ds')!.clusterIPs, ['fd00:96::7'], 'canonical text');
    assert.equal(v6.node.family, 6);
    assert.deepEqual(v6.node.ips, ['fd00:1::11']);
  });
});

describe('layoutService: which endpoints each kind of traffic may reach', () => {
  const m = fixtureModel('node1');
  const layout = (key: string) => layoutService(m.services.get(key)!, m.endpoints.get(key)!);

  const cases: Array<{ key: string; internal: string; external: string | undefined; cluster: number; local: number }> = [
    { key: 'default/web:http', internal: 'endpoints/cluster', external: undefined, cluster: 2, local: 1 },
    { key: 'default/np:http', internal: 'endpoints/cluster', external: 'endpoints/Cluster', cluster: 2, local: 1 },
    { key: 'default/lb-local:http', internal: 'endpoints/cluster', external: 'endpoints/Local', cluster: 2, local: 1 },
    { key: 'default/lb-local-none:http', internal: 'endpoints/cluster', external: 'drop/Local', cluster: 1, local: 0 },
    { key: 'default/itp-local-none:http', internal: 'drop/local', external: undefined, cluster: 1, local: 0 },
    { key: 'default/empty:http', internal: 'reject/cluster', external: 'reject/Cluster', cluster: 0, local: 0 },
    { key: 'default/terminating:http', internal: 'endpoints/cluster', external: undefined, cluster: 1, local: 1 },
  ];
  for (const c of cases) {
    test(c.key, () => {
      const l = layout(c.key);
      assert.equal(`${l.internal.verdict}/${l.internal.set}`, c.internal);
      assert.equal(l.external && `${l.external.verdict}/${l.external.policy}`, c.external);
      assert.equal(l.cluster.length, c.cluster);
      assert.equal(l.local.length, c.local);
    });
  }

  test('usable: ready ones; only when none is ready, the serving terminating ones', () => {
    const ep = (ip: string, ready: boolean, serving: boolean, terminating: boolean): EndpointInfo => ({ ip, port: 80, ready, serving, terminating, isLocal: false });
    assert.deepEqual(usable([ep('a', true, true, false), ep('b', false, true, true)]).map((e) => e.ip), ['a']);
    assert.deepEqual(usable([ep('a', false, false, false), ep('b', false, true, true), ep('c', false, false, true)]).map((e) => e.ip), ['b']);
    assert.deepEqual(usable([ep('a', false, false, false)]), []);
  });
});

describe('names: stable hashes with a readable suffix', () => {
  const svc = { key: 'default/web:http', namespace: 'default', name: 'web', portName: 'http', protocol: 'TCP', port: 80, affinityTimeoutSeconds: 10800 } as ServiceInfo;
  const ep = { ip: '10.244.1.5', port: 8080 };

  test('shapes', () => {
    assert.match(serviceChain('svc', svc), /^svc-[A-Z2-7]{8}-default-web-http$/);
    assert.match(serviceChain('local', svc), /^local-[A-Z2-7]{8}-default-web-http$/);
    assert.match(endpointChain(svc, ep), /^ep-[A-Z2-7]{8}-default-web-http-10\.244\.1\.5-8080$/);
    assert.match(affinitySet(svc, ep), /^aff-[A-Z2-7]{8}-default-web-http-10\.244\.1\.5-8080$/);
    assert.match(iptServiceChain('SVC', svc), /^PODNET-SVC-[A-Z2-7]{16}$/);
    assert.ok(iptEndpointChain(svc, ep).length <= 28, 'iptables chain names are at most 28 characters');
  });

  test('stable across calls, different for other services, ports, protocols and timeouts', () => {
    assert.equal(serviceChain('svc', svc), serviceChain('svc', { ...svc }));
    assert.equal(hashName('x', 8), hashName('x', 8));
    const names = new Set([
      serviceChain('svc', svc),
      serviceChain('svc', { ...svc, protocol: 'UDP' }),
      serviceChain('svc', { ...svc, key: 'default/web-http', name: 'web-http', portName: '' }),
    ]);
    assert.equal(names.size, 3);
    assert.notEqual(affinitySet(svc, ep), affinitySet({ ...svc, affinityTimeoutSeconds: 60 }, ep));
  });

  test('IPv6 endpoints: no colons in names', () => {
    assert.match(endpointChain(svc, { ip: 'fd00::5', port: 80 }), /-fd00..5-80$/);
  });
});

describe('Translator: the agent\'s incremental translate', () => {
  const fresh = (c: ReturnType<typeof fixtureCluster>) => translate({ services: c.services, endpointSlices: c.slices, nodeName: 'node1', nodeIPs: ['192.168.1.11'], clusterCIDR: CLUSTER_CIDR });

  // Each case replaces objects the way an informer does (never in place) and checks that the
  // result equals a from-scratch translate, and that only the touched service got new objects.
  const cases: Array<[string, (c: ReturnType<typeof fixtureCluster>) => string[]]> = [
    ['nothing changed', () => []],
    ['a slice replaced', (c) => {
      const i = c.slices.findIndex((s) => s.metadata.name.startsWith('web'));
      c.slices[i] = { ...c.slices[i]!, endpoints: [{ addresses: ['10.244.2.77'], nodeName: 'node2' }] };
      return ['default/web:http'];
    }],
    ['a service replaced', (c) => {
      const i = c.services.findIndex((s) => s.metadata.name === 'np');
      c.services[i] = { ...c.services[i]!, spec: { ...c.services[i]!.spec!, ports: [{ name: 'http', port: 80, nodePort: 30111 }] } };
      return ['default/np:http'];
    }],
    ['a slice added for a service', (c) => {
      c.slices.push(slice('web', [{ name: 'http', port: 8080 }], [{ ip: '10.244.1.99', node: 'node1' }], { name: 'web-extra' }));
      return ['default/web:http'];
    }],
    ['a service removed', (c) => {
      c.services = c.services.filter((s) => s.metadata.name !== 'sctp');
      return [];
    }],
  ];
  for (const [name, mutate] of cases) {
    test(name, () => {
      const c = fixtureCluster();
      const tr = new Translator('node1', ['192.168.1.11'], CLUSTER_CIDR);
      const before = tr.translate(c.services, c.slices);
      const changed = new Set(mutate(c));
      const after = tr.translate(c.services, c.slices);
      const want = fresh(c);
      assert.deepEqual([...after.services], [...want.services]);
      assert.deepEqual([...after.endpoints], [...want.endpoints]);
      for (const [key, info] of after.services) {
        if (!before.services.has(key)) continue;
        const reused = info === before.services.get(key) && after.endpoints.get(key) === before.endpoints.get(key);
        assert.equal(reused, !changed.has(key), `${key}: ${reused ? 'reused' : 'rebuilt'}`);
      }
      const tracker = new ServiceChangeTracker();
      tracker.commit(ServiceChangeTracker.snapshot(before.services, before.endpoints));
      const keys = tracker.changes(ServiceChangeTracker.snapshot(after.services, after.endpoints)).map((x) => x.key).filter((k) => after.services.has(k));
      assert.deepEqual(keys.sort(), [...changed].sort());
    });
  }
});
