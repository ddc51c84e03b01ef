import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Service, ServiceSpec } from '../datastore/index.ts';
import { ADDRESS_PLAN } from '../lab/plan.ts';
import {
  CONDITION,
  DEFAULT_SERVICE_NETWORK,
  type Holdings,
  type ServiceNetworkConfig,
  keepAllocatedValues,
  planAllocations,
  serviceNetwork,
  validateService,
} from './alloc.ts';

const NOW = '2030-01-01T00:00:00Z';

/** A Service created at second `age` (older Services win ties), uid = name. */
function svc(name: string, spec: ServiceSpec = {}, age = 0, status?: Service['status']): Service {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name, namespace: 'default', uid: `uid-${name}`, creationTimestamp: `2030-01-01T00:00:${String(age).padStart(2, '0')}Z` },
    spec: { ports: [{ port: 80 }], ...spec },
    ...(status ? { status } : {}),
  };
}

/** Plans, then "stores" every desired Service, as the controller does; returns both. */
function pass(services: Service[], cfg: ServiceNetworkConfig = DEFAULT_SERVICE_NETWORK, prior?: Holdings) {
  const plan = planAllocations(services, cfg, prior, NOW);
  return { plan, stored: plan.results.map((r) => r.desired), holdings: plan.holdings };
}

function cond(s: Service, type: string) {
  return s.status?.conditions?.find((c) => c.type === type);
}

describe('ClusterIP allocation', () => {
  const cases: Array<{ name: string; services: Service[]; cfg?: ServiceNetworkConfig; want: Array<string | undefined>; reasons?: Array<string | undefined> }> = [
    { name: 'dynamic addresses come from the upper band, lowest first', services: [svc('a', {}, 1), svc('b', {}, 2)], want: ['10.96.1.1', '10.96.1.2'] },
    { name: 'the older Service gets the lower address whatever the input order', services: [svc('b', {}, 2), svc('a', {}, 1)], want: ['10.96.1.2', '10.96.1.1'] },
    { name: 'an explicit free address is honoured', services: [svc('a', { clusterIP: '10.96.0.50' })], want: ['10.96.0.50'], reasons: ['Allocated'] },
    { name: 'a reserved address is given when asked for explicitly', services: [svc('dns', { clusterIP: '10.96.0.10' })], want: ['10.96.0.10'] },
    {
      name: 'a duplicate is refused: the older Service keeps it, the newer gets none',
      services: [svc('new', { clusterIP: '10.96.0.50' }, 5), svc('old', { clusterIP: '10.96.0.50' }, 1)],
      want: [undefined, '10.96.0.50'],
      reasons: ['ClusterIPAlreadyAllocated', 'Allocated'],
    },
    { name: 'an explicit address beats a dynamic one of an older Service', services: [svc('old', {}, 1), svc('new', { clusterIP: '10.96.1.1' }, 5)], want: ['10.96.1.2', '10.96.1.1'] },
    { name: 'an address outside the CIDR is refused', services: [svc('a', { clusterIP: '10.0.0.5' })], want: [undefined], reasons: ['ClusterIPNotInRange'] },
    { name: 'the broadcast address is refused', services: [svc('a', { clusterIP: '10.111.255.255' })], want: [undefined], reasons: ['ClusterIPNotInRange'] },
    { name: 'something that is no address is refused', services: [svc('a', { clusterIP: 'ten' })], want: [undefined], reasons: ['ClusterIPInvalid'] },
    { name: 'headless gets no address', services: [svc('h', { clusterIP: 'None' })], want: ['None'], reasons: [undefined] },
    { name: 'ExternalName gets no address (a stray one is removed)', services: [svc('x', { type: 'ExternalName', externalName: 'db.example.com', clusterIP: '10.96.0.7' })], want: [undefined], reasons: [undefined] },
    { name: 'spec.clusterIPs alone is a request too', services: [svc('a', { clusterIPs: ['10.96.0.77'] })], want: ['10.96.0.77'] },
    {
      name: 'a small range skips network, reserved (.1, .10) and broadcast, then is full',
      cfg: serviceNetwork({ serviceCIDR: '10.96.0.0/28' }),
      services: Array.from({ length: 13 }, (_, i) => svc(`s${i}`, {}, i)),
      want: ['.2', '.3', '.4', '.5', '.6', '.7', '.8', '.9', '.11', '.12', '.13', '.14', undefined].map((x) => x && `10.96.0${x}`),
      reasons: [...Array<string>(12).fill('Allocated'), 'ClusterIPRangeFull'],
    },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const { plan } = pass(c.services, c.cfg);
      assert.deepEqual(
        plan.results.map((r) => r.desired.spec?.clusterIP),
        c.want,
      );
      for (const r of plan.results) {
        const ip = r.desired.spec?.clusterIP;
        assert.deepEqual(r.desired.spec?.clusterIPs, ip ? [ip] : undefined, 'clusterIPs mirrors clusterIP');
      }
      if (c.reasons) assert.deepEqual(plan.results.map((r) => cond(r.desired, CONDITION.clusterIP)?.reason), c.reasons);
    });
  }

  test('the refusal says what happened and what to do', () => {
    const { stored } = pass([svc('web', { clusterIP: '10.96.0.50' }, 1), svc('api', { clusterIP: '10.96.0.50' }, 2)]);
    const c = cond(stored[1]!, CONDITION.clusterIP)!;
    assert.equal(c.status, 'False');
    assert.match(c.message!, /spec\.clusterIP 10\.96\.0\.50 is already allocated to Service default\/web/);
    assert.match(c.message!, /Delete the Service and apply it again with another free address of 10\.96\.0\.0\/12, or without spec\.clusterIP/);
    assert.equal(c.lastTransitionTime, NOW);
  });

  test('a refused Service is not given another address on the next pass', () => {
    const first = pass([svc('web', { clusterIP: '10.96.0.50' }, 1), svc('api', { clusterIP: '10.96.0.50' }, 2)]);
    const again = planAllocations(first.stored, DEFAULT_SERVICE_NETWORK, first.holdings, '2030-01-02T00:00:00Z');
    assert.equal(again.results[1]!.desired.spec?.clusterIP, undefined);
    assert.equal(again.results[1]!.specChanged || again.results[1]!.statusChanged, false, 'nothing to write');
  });

  test('a refused Service asking for a free address gets it', () => {
    const first = pass([svc('web', { clusterIP: '10.96.0.50' }, 1), svc('api', { clusterIP: '10.96.0.50' }, 2)]);
    const fixed = { ...first.stored[1]!, spec: { ...first.stored[1]!.spec, clusterIP: '10.96.0.51' } };
    const again = planAllocations([first.stored[0]!, fixed], DEFAULT_SERVICE_NETWORK, first.holdings, NOW);
    assert.equal(again.results[1]!.desired.spec?.clusterIP, '10.96.0.51');
    assert.equal(cond(again.results[1]!.desired, CONDITION.clusterIP)?.status, 'True');
  });

  test('the holder of the previous pass keeps its address against an older claimant', () => {
    const holder = svc('young', { clusterIP: '10.96.0.60' }, 9);
    const { holdings } = pass([holder]);
    const { stored } = pass([holder, svc('old', { clusterIP: '10.96.0.60' }, 1)], DEFAULT_SERVICE_NETWORK, holdings);
    assert.deepEqual(stored.map((s) => s.spec?.clusterIP), ['10.96.0.60', undefined]);
  });

  test('a full range hands out the address of a deleted Service to the one waiting', () => {
    const cfg = serviceNetwork({ serviceCIDR: '10.96.0.0/29', reservedClusterIPs: [] });
    const first = pass(Array.from({ length: 7 }, (_, i) => svc(`s${i}`, {}, i)), cfg);
    assert.equal(first.stored[6]!.spec?.clusterIP, undefined);
    assert.equal(cond(first.stored[6]!, CONDITION.clusterIP)?.reason, 'ClusterIPRangeFull');
    const freed = first.stored[2]!.spec?.clusterIP;
    const second = pass(first.stored.filter((_, i) => i !== 2), cfg, first.holdings);
    assert.equal(second.stored.at(-1)!.spec?.clusterIP, freed);
    assert.equal(cond(second.stored.at(-1)!, CONDITION.clusterIP)?.status, 'True');
  });

  test('allocation is stable across restarts: a fresh planner over stored Services changes nothing', () => {
    const services = [
      svc('a', {}, 1),
      svc('b', { type: 'NodePort', ports: [{ name: 'http', port: 80 }, { name: 'dns', port: 53, protocol: 'UDP' }] }, 2),
      svc('c', { type: 'LoadBalancer', externalTrafficPolicy: 'Local' }, 3),
      svc('d', { clusterIP: '10.96.0.10' }, 4),
      svc('e', { clusterIP: '10.96.0.10' }, 5),
    ];
    const first = pass(services);
    const restarted = planAllocations(first.stored, DEFAULT_SERVICE_NETWORK, new Map(), '2031-01-01T00:00:00Z');
    assert.deepEqual(
      restarted.results.filter((r) => r.specChanged || r.statusChanged).map((r) => r.service.metadata.name),
      [],
    );
    assert.deepEqual(restarted.holdings, first.holdings);
    // A newcomer gets an address that nobody holds.
    const later = pass([...first.stored, svc('f', {}, 9)]);
    const ips = later.stored.map((s) => s.spec?.clusterIP).filter(Boolean);
    assert.equal(new Set(ips).size, ips.length);
  });

  test('the defaults are the lab address plan', () => {
    assert.equal(DEFAULT_SERVICE_NETWORK.serviceCIDR, ADDRESS_PLAN.serviceCIDR);
    assert.ok(DEFAULT_SERVICE_NETWORK.reservedClusterIPs.includes(ADDRESS_PLAN.dnsServiceIP));
    assert.deepEqual([...DEFAULT_SERVICE_NETWORK.nodePortRange], [...ADDRESS_PLAN.nodePorts]);
    assert.deepEqual([...DEFAULT_SERVICE_NETWORK.loadBalancerPool], [...ADDRESS_PLAN.loadBalancerPool]);
  });

  const badConfigs: Array<[string, Partial<ServiceNetworkConfig>, RegExp]> = [
    ['a CIDR with host bits', { serviceCIDR: '10.96.0.1/12' }, /service CIDR "10\.96\.0\.1\/12"/],
    ['a node port range upside down', { nodePortRange: [32767, 30000] }, /node port range/],
    ['a pool upside down', { loadBalancerPool: ['192.168.1.250', '192.168.1.200'] }, /LoadBalancer pool/],
  ];
  for (const [name, partial, re] of badConfigs) {
    test(`configuration: ${name} is refused`, () => {
      assert.throws(() => serviceNetwork(partial), { code: 'PODNET_BAD_SERVICE_CONFIG', message: re });
    });
  }

  test('configuration: another CIDR reserves its own 1st and 10th address', () => {
    assert.deepEqual(serviceNetwork({ serviceCIDR: '10.100.0.0/16' }).reservedClusterIPs, ['10.100.0.1', '10.100.0.10']);
  });
});

describe('NodePort allocation', () => {
  const np = (ports: ServiceSpec['ports'], extra: ServiceSpec = {}): ServiceSpec => ({ type: 'NodePort', ports, ...extra });
  const cases: Array<{ name: string; services: Service[]; cfg?: ServiceNetworkConfig; want: Array<Array<number | undefined>>; hc?: Array<number | undefined>; reasons?: Array<string | undefined> }> = [
    {
      name: 'dynamic node ports come from above the lower band (30086 on), one per port',
      services: [svc('a', np([{ name: 'http', port: 80 }, { name: 'https', port: 443 }]))],
      want: [[30086, 30087]],
      reasons: ['Allocated'],
    },
    {
      name: 'TCP and UDP of one port share a node port',
      services: [svc('dns', np([{ name: 'dns-udp', port: 53, protocol: 'UDP' }, { name: 'dns-tcp', port: 53, protocol: 'TCP' }]))],
      want: [[30086, 30086]],
    },
    { name: 'an explicit free node port is honoured', services: [svc('a', np([{ port: 80, nodePort: 30080 }]))], want: [[30080]] },
    {
      name: 'a duplicate node port is refused for the newer Service, and its other ports wait',
      services: [svc('old', np([{ port: 80, nodePort: 30080 }]), 1), svc('new', np([{ name: 'a', port: 80, nodePort: 30080 }, { name: 'b', port: 81 }]), 2)],
      want: [[30080], [undefined, undefined]],
      reasons: ['Allocated', 'NodePortAlreadyAllocated'],
    },
    { name: 'a node port outside the range is refused', services: [svc('a', np([{ port: 80, nodePort: 8080 }]))], want: [[undefined]], reasons: ['NodePortNotInRange'] },
    { name: 'LoadBalancer ports get node ports', services: [svc('lb', { type: 'LoadBalancer' })], want: [[30086]] },
    {
      name: 'LoadBalancer with allocateLoadBalancerNodePorts: false gets none (explicit ones stay)',
      services: [svc('lb', { type: 'LoadBalancer', allocateLoadBalancerNodePorts: false, ports: [{ name: 'a', port: 80 }, { name: 'b', port: 81, nodePort: 31000 }] })],
      want: [[undefined, 31000]],
    },
    {
      name: 'LoadBalancer with externalTrafficPolicy Local gets a health check node port',
      services: [svc('lb', { type: 'LoadBalancer', externalTrafficPolicy: 'Local' })],
      want: [[30086]],
      hc: [30087],
    },
    {
      name: 'an explicit health check node port is honoured',
      services: [svc('lb', { type: 'LoadBalancer', externalTrafficPolicy: 'Local', healthCheckNodePort: 32000 })],
      want: [[30086]],
      hc: [32000],
    },
    { name: 'externalTrafficPolicy Cluster drops the health check node port', services: [svc('lb', { type: 'LoadBalancer', healthCheckNodePort: 32000 })], want: [[30086]], hc: [undefined] },
    { name: 'type ClusterIP drops node ports and the condition', services: [svc('a', { ports: [{ port: 80, nodePort: 30080 }] })], want: [[undefined]], reasons: [undefined] },
    {
      name: 'a headless NodePort Service gets none, and is told why',
      services: [svc('h', np([{ port: 80, nodePort: 30080 }], { clusterIP: 'None' }))],
      want: [[undefined]],
      reasons: ['HeadlessNotAllowed'],
    },
    {
      name: 'an exhausted range leaves the last Service waiting',
      cfg: serviceNetwork({ nodePortRange: [30000, 30001] }),
      services: [svc('a', np([{ port: 80 }]), 1), svc('b', np([{ port: 80 }]), 2), svc('c', np([{ port: 80 }]), 3)],
      want: [[30000], [30001], [undefined]],
      reasons: ['Allocated', 'Allocated', 'NodePortRangeFull'],
    },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const { stored } = pass(c.services, c.cfg);
      assert.deepEqual(
        stored.map((s) => (s.spec?.ports ?? []).map((p) => p.nodePort)),
        c.want,
      );
      if (c.hc) assert.deepEqual(stored.map((s) => s.spec?.healthCheckNodePort), c.hc);
      if (c.reasons) assert.deepEqual(stored.map((s) => cond(s, CONDITION.nodePorts)?.reason), c.reasons);
    });
  }

  test('NodePort → ClusterIP frees the port for another Service', () => {
    const first = pass([svc('a', { type: 'NodePort' }, 1)]);
    assert.equal(first.stored[0]!.spec?.ports?.[0]?.nodePort, 30086);
    const changed = { ...first.stored[0]!, spec: { ...first.stored[0]!.spec, type: 'ClusterIP' as const } };
    const second = pass([changed, svc('b', { type: 'NodePort' }, 2)], DEFAULT_SERVICE_NETWORK, first.holdings);
    assert.deepEqual(second.stored.map((s) => s.spec?.ports?.[0]?.nodePort), [undefined, 30086]);
    assert.equal(cond(second.stored[0]!, CONDITION.nodePorts), undefined);
  });
});

describe('LoadBalancer addresses', () => {
  const lb = (extra: ServiceSpec = {}): ServiceSpec => ({ type: 'LoadBalancer', ...extra });
  const ingress = (s: Service) => s.status?.loadBalancer?.ingress?.map((i) => i.ip);
  const cases: Array<{ name: string; services: Service[]; cfg?: ServiceNetworkConfig; want: Array<string[] | undefined>; reasons?: Array<string | undefined> }> = [
    { name: 'the pool is handed out lowest first', services: [svc('a', lb(), 1), svc('b', lb(), 2)], want: [['192.168.1.200'], ['192.168.1.201']], reasons: ['Allocated', 'Allocated'] },
    { name: 'spec.loadBalancerIP is honoured when free', services: [svc('a', lb({ loadBalancerIP: '192.168.1.220' }))], want: [['192.168.1.220']] },
    { name: 'spec.loadBalancerIP outside the pool is not assigned', services: [svc('a', lb({ loadBalancerIP: '10.0.0.1' }))], want: [undefined], reasons: ['LoadBalancerIPNotInPool'] },
    {
      name: 'an address already in a status stays there, even against an older request',
      services: [svc('holder', lb(), 9, { loadBalancer: { ingress: [{ ip: '192.168.1.220' }] } }), svc('asker', lb({ loadBalancerIP: '192.168.1.220' }), 1)],
      want: [['192.168.1.220'], undefined],
      reasons: ['Allocated', 'LoadBalancerIPInUse'],
    },
    {
      name: 'an exhausted pool leaves the last Service pending',
      cfg: serviceNetwork({ loadBalancerPool: ['192.168.1.200', '192.168.1.201'] }),
      services: [svc('a', lb(), 1), svc('b', lb(), 2), svc('c', lb(), 3)],
      want: [['192.168.1.200'], ['192.168.1.201'], undefined],
      reasons: ['Allocated', 'Allocated', 'LoadBalancerPoolExhausted'],
    },
    {
      name: 'another load-balancer class is left alone',
      services: [svc('a', { ...lb(), loadBalancerClass: 'example.com/other' } as ServiceSpec, 1, { loadBalancer: { ingress: [{ ip: '203.0.113.7' }] } })],
      want: [['203.0.113.7']],
      reasons: [undefined],
    },
    { name: 'a ClusterIP Service loses a stale ingress', services: [svc('a', {}, 1, { loadBalancer: { ingress: [{ ip: '192.168.1.200' }] } })], want: [undefined], reasons: [undefined] },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const { stored } = pass(c.services, c.cfg);
      assert.deepEqual(stored.map(ingress), c.want);
      if (c.reasons) assert.deepEqual(stored.map((s) => cond(s, CONDITION.loadBalancer)?.reason), c.reasons);
    });
  }

  test('the exhausted message says what will happen', () => {
    const cfg = serviceNetwork({ loadBalancerPool: ['192.168.1.200', '192.168.1.200'] });
    const { stored } = pass([svc('a', lb(), 1), svc('b', lb(), 2)], cfg);
    assert.match(cond(stored[1]!, CONDITION.loadBalancer)!.message!, /every address of the LoadBalancer pool 192\.168\.1\.200-192\.168\.1\.200 is in use\. The Service gets an address as soon as/);
  });

  test('LoadBalancer → ClusterIP frees the address; a waiting Service gets it', () => {
    const cfg = serviceNetwork({ loadBalancerPool: ['192.168.1.200', '192.168.1.200'] });
    const first = pass([svc('a', lb(), 1), svc('b', lb(), 2)], cfg);
    assert.deepEqual(first.stored.map(ingress), [['192.168.1.200'], undefined]);
    const a = { ...first.stored[0]!, spec: { ...first.stored[0]!.spec, type: 'ClusterIP' as const } };
    const second = pass([a, first.stored[1]!], cfg, first.holdings);
    assert.deepEqual(second.stored.map(ingress), [undefined, ['192.168.1.200']]);
    assert.deepEqual(second.stored[0]!.status?.loadBalancer, {});
    assert.equal(cond(second.stored[0]!, CONDITION.loadBalancer), undefined);
  });

  test('deleting a LoadBalancer Service frees its address', () => {
    const cfg = serviceNetwork({ loadBalancerPool: ['192.168.1.200', '192.168.1.200'] });
    const first = pass([svc('a', lb(), 1), svc('b', lb(), 2)], cfg);
    const second = pass([first.stored[1]!], cfg, first.holdings);
    assert.deepEqual(second.stored.map(ingress), [['192.168.1.200']]);
  });
});

describe('validateService (before lab apply stores a Service)', () => {
  const existing = [
    svc('web', { clusterIP: '10.96.0.50', type: 'NodePort', ports: [{ port: 80, nodePort: 30080 }] }),
    svc('lb', { clusterIP: '10.96.1.1', type: 'LoadBalancer', ports: [{ port: 443, nodePort: 30443 }] }, 0, { loadBalancer: { ingress: [{ ip: '192.168.1.200' }] } }),
  ];
  const cases: Array<[string, Service, string[]]> = [
    ['a plain new Service is fine', svc('api'), []],
    ['a free explicit address is fine', svc('api', { clusterIP: '10.96.0.51' }), []],
    ['a duplicate address is refused', svc('api', { clusterIP: '10.96.0.50' }), ['ClusterIPAlreadyAllocated']],
    ['an address outside the CIDR is refused', svc('api', { clusterIP: '192.168.0.1' }), ['ClusterIPNotInRange']],
    ['not an address is refused', svc('api', { clusterIP: 'auto' }), ['ClusterIPInvalid']],
    ['re-applying a Service with its own address is fine', svc('web', { clusterIP: '10.96.0.50', type: 'NodePort', ports: [{ port: 80, nodePort: 30080 }] }), []],
    ['changing the address of a stored Service is refused', svc('web', { clusterIP: '10.96.0.52' }), ['ClusterIPImmutable']],
    ['a duplicate node port is refused', svc('api', { type: 'NodePort', ports: [{ port: 80, nodePort: 30080 }] }), ['NodePortAlreadyAllocated']],
    ['a node port outside the range is refused', svc('api', { type: 'NodePort', ports: [{ port: 80, nodePort: 80 }] }), ['NodePortNotInRange']],
    ['a node port on a ClusterIP Service is refused', svc('api', { ports: [{ port: 80, nodePort: 30001 }] }), ['NodePortNotAllowed']],
    ['a LoadBalancer address in use is refused', svc('api', { type: 'LoadBalancer', loadBalancerIP: '192.168.1.200' }), ['LoadBalancerIPInUse']],
    ['a LoadBalancer address outside the pool is refused', svc('api', { type: 'LoadBalancer', loadBalancerIP: '192.168.1.10' }), ['LoadBalancerIPNotInPool']],
    ['a headless NodePort Service is refused', svc('api', { type: 'NodePort', clusterIP: 'None' }), ['HeadlessNotAllowed']],
    ['ExternalName needs a name', svc('api', { type: 'ExternalName' }), ['ExternalNameInvalid']],
    ['an unknown type is refused', svc('api', { type: 'Ingress' as 'ClusterIP' }), ['InvalidType']],
    ['two ports need names', svc('api', { ports: [{ port: 80 }, { port: 81 }] }), ['InvalidPort', 'InvalidPort']],
    ['a bad targetPort name is refused', svc('api', { ports: [{ port: 80, targetPort: 'Not_A_Name' }] }), ['InvalidPort']],
    ['a named targetPort is fine', svc('api', { ports: [{ port: 80, targetPort: 'http' }] }), []],
  ];
  for (const [name, s, reasons] of cases) {
    test(name, () => {
      assert.deepEqual(validateService(s, existing).map((p) => p.reason), reasons);
    });
  }

  test('the message names the holder and the way out', () => {
    const [p] = validateService(svc('api', { clusterIP: '10.96.0.50' }), existing);
    assert.equal(p?.field, 'spec.clusterIP');
    assert.equal(p?.message, 'spec.clusterIP 10.96.0.50 is already allocated to Service default/web: choose another free address of 10.96.0.0/12, or leave spec.clusterIP out to have one allocated');
  });
});

describe('keepAllocatedValues (re-applying a manifest)', () => {
  test('keeps the stored clusterIP, node ports (by port name) and health check port', () => {
    const stored = svc('lb', {
      type: 'LoadBalancer',
      externalTrafficPolicy: 'Local',
      clusterIP: '10.96.1.1',
      clusterIPs: ['10.96.1.1'],
      healthCheckNodePort: 30090,
      ports: [{ name: 'http', port: 80, nodePort: 30086 }, { name: 'https', port: 443, nodePort: 30087 }],
    });
    const applied = svc('lb', { type: 'LoadBalancer', externalTrafficPolicy: 'Local', ports: [{ name: 'https', port: 8443 }, { name: 'http', port: 80 }, { name: 'new', port: 9000 }] });
    const out = keepAllocatedValues(stored, applied);
    assert.equal(out.spec?.clusterIP, '10.96.1.1');
    assert.deepEqual(out.spec?.clusterIPs, ['10.96.1.1']);
    assert.equal(out.spec?.healthCheckNodePort, 30090);
    assert.deepEqual(out.spec?.ports?.map((p) => p.nodePort), [30087, 30086, undefined]);
  });

  test('keeps nothing when the Service stops needing it', () => {
    const stored = svc('a', { type: 'NodePort', clusterIP: '10.96.1.1', ports: [{ port: 80, nodePort: 30086 }] });
    const out = keepAllocatedValues(stored, svc('a', { type: 'ExternalName', externalName: 'x.example.com' }));
    assert.equal(out.spec?.clusterIP, undefined);
    assert.equal(out.spec?.ports?.[0]?.nodePort, undefined);
  });
});
