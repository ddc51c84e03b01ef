import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { EndpointSlice, Service } from '../datastore/types.ts';
import { FakeNft } from './fake-nft.ts';
import { CLUSTER_CIDR, dump, fixtureCluster, fixtureModel, localAddresses, orphanTargets, service, slice } from './fixtures.ts';
import { SERVICE_CHAIN_PATTERN } from './names.ts';
import { NftTableMirror, type ServicePlan, collectDesired, planNftables, planService, planTableRemoval, renderFull } from './nftables.ts';
import { ServiceChangeTracker } from './tracker.ts';
import { NftTracer, summarize } from './tracer.ts';
import { translate } from './translate.ts';
import type { ProxyModel } from './types.ts';

function model(c: { services: Service[]; slices: EndpointSlice[] }): ProxyModel {
  return translate({ services: c.services, endpointSlices: c.slices, nodeName: 'node1', nodeIPs: ['192.168.1.11'], clusterCIDR: CLUSTER_CIDR });
}

function plansOf(m: ProxyModel) {
  return [...m.services.values()].map((s) => planService(s, m.endpoints.get(s.key) ?? [], m.node));
}

/** What ProxyDataplane does, without commands: a tracker and a mirror, full then partial. */
class Syncer {
  readonly tracker = new ServiceChangeTracker();
  readonly mirror = new NftTableMirror(4, '10.244.0.0/16');

  full(m: ProxyModel, existing: { chains: string[]; sets: string[] } = { chains: [], sets: [] }) {
    const snap = ServiceChangeTracker.snapshot(m.services, m.endpoints);
    const plans = new Map<string, ServicePlan>([...snap].map(([k, s]) => [k, planService(s.service, s.endpoints, m.node)]));
    const tx = this.mirror.full(plans, existing);
    return { tx, commit: () => (tx.commit(), this.tracker.commit(snap)) };
  }

  partial(m: ProxyModel) {
    const snap = ServiceChangeTracker.snapshot(m.services, m.endpoints);
    const changes = new Map<string, ServicePlan | undefined>();
    for (const ch of this.tracker.changes(snap)) changes.set(ch.key, ch.current ? planService(ch.current.service, ch.current.endpoints, m.node) : undefined);
    const tx = this.mirror.partial(changes);
    return { tx, commit: () => (tx.commit(), this.tracker.commit(snap)) };
  }
}

type Mutation = [string, (c: { services: Service[]; slices: EndpointSlice[] }) => void];

const svcNamed = (c: { services: Service[] }, name: string) => c.services.find((s) => s.metadata.name === name)!;
const sliceOf = (c: { slices: EndpointSlice[] }, name: string) => c.slices.find((s) => s.metadata.labels?.['kubernetes.io/service-name'] === name)!;

const mutations: Mutation[] = [
  ['an endpoint is added', (c) => sliceOf(c, 'web').endpoints.push({ addresses: ['10.244.2.22'], nodeName: 'node2' })],
  ['an endpoint is removed', (c) => sliceOf(c, 'np').endpoints.splice(0, 1)],
  ['an endpoint stops being ready', (c) => (sliceOf(c, 'multi').endpoints[1]!.conditions = { ready: false, serving: false, terminating: true })],
  ['a service is removed', (c) => c.services.splice(c.services.indexOf(svcNamed(c, 'sctp')), 1)],
  ['a service is added', (c) => {
    c.services.push(service('new', { type: 'NodePort', clusterIP: '10.96.1.1', ports: [{ name: 'http', port: 80, nodePort: 31000 }] }));
    c.slices.push(slice('new', [{ name: 'http', port: 8080 }], [{ ip: '10.244.1.50', node: 'node1' }]));
  }],
  ['the affinity timeout changes', (c) => (svcNamed(c, 'sticky').spec!.sessionAffinityConfig = { clientIP: { timeoutSeconds: 60 } })],
  ['affinity is switched off', (c) => (svcNamed(c, 'sticky').spec!.sessionAffinity = 'None')],
  ['externalTrafficPolicy Local becomes Cluster', (c) => (svcNamed(c, 'lb-local').spec!.externalTrafficPolicy = 'Cluster')],
  ['a NodePort changes', (c) => (svcNamed(c, 'np').spec!.ports![0]!.nodePort = 30090)],
  ['a cluster IP changes', (c) => (svcNamed(c, 'web').spec!.clusterIP = '10.96.0.11')],
  ['the last endpoint goes (reject)', (c) => (sliceOf(c, 'ext').endpoints = [])],
  ['the first endpoint comes back', (c) => (sliceOf(c, 'empty').endpoints = [{ addresses: ['10.244.2.99'], nodeName: 'node2' }])],
  ['internalTrafficPolicy Local is set', (c) => (svcNamed(c, 'web').spec!.internalTrafficPolicy = 'Local')],
  ['an external IP is added and a load balancer IP changes', (c) => {
    svcNamed(c, 'np').spec!.externalIPs = ['192.168.1.220'];
    svcNamed(c, 'lb').status = { loadBalancer: { ingress: [{ ip: '192.168.1.230' }] } };
  }],
  ['a second service claims an address another holds', (c) => (svcNamed(c, 'web').spec!.externalIPs = ['192.168.1.210'])],
  ['the holder goes and the other takes over', (c) => c.services.splice(c.services.indexOf(svcNamed(c, 'ext')), 1)],
  ['every service goes', (c) => {
    c.services.length = 0;
    c.slices.length = 0;
  }],
  ['they all come back', (c) => Object.assign(c, fixtureCluster())],
];

describe('planNftables: a full transaction', () => {
  const m = fixtureModel('node1');
  const { script, counts } = planNftables(m.services, m.endpoints, m.node);
  const lines = script.trim().split('\n');

  test('names only its own table', () => {
    assert.equal(lines[0], 'add table ip podnet-proxy');
    for (const l of lines) assert.match(l, /^(add|flush|delete) (table|chain|map|set|rule|element) ip podnet-proxy( |$)/);
  });

  test('hooks: dstnat in prerouting and output, srcnat in postrouting, filter checks after NAT in output', () => {
    assert.ok(lines.includes('add chain ip podnet-proxy nat-prerouting { type nat hook prerouting priority dstnat; policy accept; }'));
    assert.ok(lines.includes('add chain ip podnet-proxy nat-output { type nat hook output priority -100; policy accept; }'));
    assert.ok(lines.includes('add chain ip podnet-proxy nat-postrouting { type nat hook postrouting priority srcnat; policy accept; }'));
    assert.ok(lines.includes('add chain ip podnet-proxy filter-output { type filter hook output priority -90; policy accept; }'));
  });

  test('verdict maps keyed by address . protocol . port, and by protocol . port for NodePorts', () => {
    assert.ok(lines.includes('add map ip podnet-proxy service-ips { type ipv4_addr . inet_proto . inet_service : verdict ; }'));
    assert.ok(lines.includes('add map ip podnet-proxy service-nodeports { type inet_proto . inet_service : verdict ; }'));
    assert.ok(lines.some((l) => /^add element ip podnet-proxy service-ips \{ 10\.96\.0\.10 \. tcp \. 80 : goto svc-[A-Z2-7]{8}-default-web-http \}$/.test(l)));
    assert.ok(lines.some((l) => /^add element ip podnet-proxy service-nodeports \{ tcp \. 30080 : goto ext-[A-Z2-7]{8}-default-np-http \}$/.test(l)));
    assert.ok(lines.includes('add element ip podnet-proxy no-endpoint-services { 10.96.0.99 . tcp . 80 : goto reject-chain }'));
    assert.ok(lines.includes('add element ip podnet-proxy no-endpoint-nodeports { tcp . 30099 : goto reject-chain }'));
    assert.ok(lines.includes('add element ip podnet-proxy no-endpoint-services { 10.96.0.81 . tcp . 80 : drop }'));
  });

  test('a service chain DNATs through an endpoint map: one chain per service port, none per endpoint', () => {
    const web = lines.filter((l) => / svc-[A-Z2-7]{8}-default-web-http /.test(l) && l.startsWith('add rule'));
    assert.equal(web.length, 2);
    assert.match(web[0]!, /svc-\S+ meta mark set meta mark or 0x2000$/);
    const m = /svc-\S+ meta l4proto tcp dnat ip addr \. port to numgen random mod 2 offset (\d+) map @(endpoints-tcp-\d+)$/.exec(web[1]!);
    assert.ok(m, web[1]);
    const offset = Number(m[1]);
    assert.equal(offset % 65536, 0);
    assert.equal(m[2], `endpoints-tcp-${(offset / 65536) % 256}`);
    assert.ok(lines.includes(`add element ip podnet-proxy ${m[2]} { ${offset} : 10.244.1.2 . 8080, ${offset + 1} : 10.244.2.2 . 8080 }`));
    assert.ok(lines.includes(`add map ip podnet-proxy ${m[2]} { typeof numgen random mod 65536 : ip daddr . tcp dport ; }`));
    assert.ok(lines.some((l) => /svc-\S+ meta l4proto sctp dnat ip addr \. port to numgen random mod 1 offset \d+ map @endpoints-sctp-\d+$/.test(l)));
    assert.ok(!lines.some((l) => /add chain ip podnet-proxy ep-\S+-default-web-http/.test(l)), 'no endpoint chains without affinity');
    assert.ok(!lines.some((l) => l.includes('vmap {')), 'no anonymous maps by default');
  });

  test('local endpoints feed the hairpin and local-endpoint sets that postrouting checks', () => {
    assert.ok(lines.includes('add element ip podnet-proxy hairpin-endpoints { 10.244.1.2 . 10.244.1.2 }'));
    assert.ok(lines.includes('add element ip podnet-proxy local-endpoints { 10.244.1.2 }'));
    assert.ok(!lines.some((l) => l.includes('{ 10.244.2.2 }')), 'a remote endpoint is in neither set');
    assert.ok(lines.includes('add rule ip podnet-proxy masquerading meta mark & 0x2000 == 0x2000 jump masquerade-check'));
    assert.ok(lines.includes('add rule ip podnet-proxy masquerade-check ip saddr != 10.244.0.0/16 ip daddr != @local-endpoints jump mark-for-masquerade'));
  });

  test("dispatch 'vmap': one numgen verdict map per affinity policy chain", () => {
    const v = planNftables(m.services, m.endpoints, m.node, { dispatch: 'vmap' }).script.split('\n');
    assert.ok(v.some((l) => /svc-[A-Z2-7]{8}-default-sticky-http numgen random mod 2 vmap \{ 0 : goto ep-\S+-10\.244\.1\.11-8080, 1 : goto ep-\S+-10\.244\.2\.11-8080 \}$/.test(l)));
  });

  test('affinity: a timed set per endpoint, checked first, updated on use', () => {
    assert.ok(lines.some((l) => /^add set ip podnet-proxy aff-[A-Z2-7]{8}-default-sticky-http-10\.244\.1\.11-8080 \{ type ipv4_addr ; flags dynamic,timeout ; timeout 600s ; \}$/.test(l)));
    assert.ok(lines.some((l) => /svc-\S+-default-sticky-http ip saddr @aff-\S+ goto ep-\S+$/.test(l)));
    assert.ok(lines.some((l) => /ep-\S+-default-sticky-http-\S+ update @aff-\S+ \{ ip saddr \}$/.test(l)));
  });

  test('counts', () => {
    assert.equal(counts.lines, lines.length);
    assert.equal(counts.chainsDeleted, 0);
    assert.ok(counts.chainsWritten > 20 && counts.elementsAdded > 20);
  });

  test('the fake nft accepts it (every rule parses, every reference resolves)', () => {
    const fake = new FakeNft();
    fake.apply(script);
    assert.equal(fake.table('ip', 'podnet-proxy')!.chains.size, 12 + counts.chainsWritten);
  });

  test('IPv6: ip6 table, ipv6_addr keys, bracketed DNAT', () => {
    const v6 = translate({
      services: [service('web', { clusterIPs: ['fd00:96::10'], ports: [{ name: 'http', port: 80 }] })],
      endpointSlices: [slice('web', [{ name: 'http', port: 8080 }], [{ ip: 'fd00:244:1::2', node: 'node1' }, { ip: 'fd00:244:2::2', node: 'node2' }], { addressType: 'IPv6' })],
      nodeName: 'node1',
      nodeIPs: ['fd00:1::11'],
      clusterCIDR: 'fd00:244::/32',
    });
    const p = planNftables(v6.services, v6.endpoints, v6.node);
    assert.ok(p.script.startsWith('add table ip6 podnet-proxy\n'));
    assert.match(p.script, /ip6 saddr != fd00:244::\/32 ip6 daddr != @local-endpoints jump mark-for-masquerade/);
    assert.match(p.script, /meta l4proto tcp dnat ip6 addr \. port to numgen random mod 2 offset 0 map @endpoints-tcp-0/);
    assert.match(p.script, /add element ip6 podnet-proxy endpoints-tcp-0 \{ 0 : fd00:244:1::2 \. 8080, 1 : fd00:244:2::2 \. 8080 \}/);
    assert.match(p.script, /fib daddr type local ip6 daddr != ::1 /);
    const fake = new FakeNft();
    fake.apply(p.script);
    const t = new NftTracer(fake.table('ip6', 'podnet-proxy')!, { localAddresses: ['fd00:1::11'] });
    assert.deepEqual(summarize(t.trace({ src: 'fd00:244:1::9', dst: 'fd00:96::10', proto: 'tcp', dport: 80 })), { output: '[fd00:244:1::2]:8080, [fd00:244:2::2]:8080', masq: false });
    assert.deepEqual(summarize(t.trace({ src: 'fd00:1::11', dst: 'fd00:96::10', proto: 'tcp', dport: 80, fromLocalNode: true })), {
      output: '[fd00:244:1::2]:8080, [fd00:244:2::2]:8080',
      masq: ['[fd00:244:2::2]:8080'],
    });
  });

  test('removal deletes the table and nothing else', () => {
    assert.equal(planTableRemoval(4), 'delete table ip podnet-proxy\n');
    assert.equal(planTableRemoval(6), 'delete table ip6 podnet-proxy\n');
  });
});

describe('NftTableMirror: partial syncs write only what changed', () => {
  test('nothing changed: an empty transaction', () => {
    const s = new Syncer();
    s.full(fixtureModel('node1')).commit();
    const again = s.partial(fixtureModel('node1')).tx;
    assert.equal(again.script, '');
    assert.equal(again.counts.lines, 0);
  });

  test('one endpoint removed: the service chain says N−1 and the moved keys are rewritten, nothing else is touched', () => {
    const c = fixtureCluster();
    const s = new Syncer();
    s.full(model(c)).commit();
    const web = [...s.mirror.plan('default/web:http')!.chains].find((x) => x.dispatch)!.name;
    const slot = s.mirror.slotOf(web)!;
    sliceOf(c, 'web').endpoints.splice(0, 1);
    const r = s.partial(model(c)).tx;
    const lines = r.script.trim().split('\n');
    const map = `endpoints-tcp-${slot % 256}`;
    const k = slot * 65536;
    assert.deepEqual(lines, [
      `flush chain ip podnet-proxy ${web}`,
      `delete element ip podnet-proxy hairpin-endpoints { 10.244.1.2 . 10.244.1.2 }`,
      `delete element ip podnet-proxy local-endpoints { 10.244.1.2 }`,
      `delete element ip podnet-proxy ${map} { ${k}, ${k + 1} }`,
      `add rule ip podnet-proxy ${web} meta mark set meta mark or 0x2000`,
      `add rule ip podnet-proxy ${web} meta l4proto tcp dnat ip addr . port to numgen random mod 1 offset ${k} map @${map}`,
      `add element ip podnet-proxy ${map} { ${k} : 10.244.2.2 . 8080 }`,
    ]);
    assert.deepEqual(r.counts, { chainsWritten: 1, chainsDeleted: 0, rulesWritten: 2, elementsAdded: 1, elementsDeleted: 4, setsAdded: 0, setsDeleted: 0, lines: 7 });
  });

  test('an endpoint replaced by another: one key rewritten, the chain left alone', () => {
    const c = fixtureCluster();
    const s = new Syncer();
    s.full(model(c)).commit();
    const web = [...s.mirror.plan('default/web:http')!.chains].find((x) => x.dispatch)!.name;
    const k = s.mirror.slotOf(web)! * 65536;
    sliceOf(c, 'web').endpoints[1]!.addresses = ['10.244.2.3'];
    const lines = s.partial(model(c)).tx.script.trim().split('\n');
    assert.deepEqual(lines.map((l) => l.replace(/endpoints-tcp-\d+/, 'endpoints-B')), [
      `delete element ip podnet-proxy endpoints-B { ${k + 1} }`,
      `add element ip podnet-proxy endpoints-B { ${k + 1} : 10.244.2.3 . 8080 }`,
    ]);
  });

  // After every change, a partial sync must leave exactly what a full sync of the new state
  // writes into a fresh table; and the fake refuses anything the kernel would refuse.
  test('a sequence of changes: partial syncs end where full syncs do', () => {
    const c = fixtureCluster();
    const fake = new FakeNft();
    const s = new Syncer();
    let m = model(c);
    const first = s.full(m);
    fake.apply(first.tx.script);
    first.commit();
    for (const [name, mutate] of mutations) {
      mutate(c);
      m = model(c);
      const partial = s.partial(m);
      assert.doesNotThrow(() => fake.apply(partial.tx.script), name);
      partial.commit();
      const fresh = new FakeNft();
      fresh.apply(planNftables(m.services, m.endpoints, m.node).script);
      assert.deepEqual(dump(fake.table('ip', 'podnet-proxy')), dump(fresh.table('ip', 'podnet-proxy')), name);
      assert.deepEqual(orphanTargets(fake.table('ip', 'podnet-proxy')), [], `${name}: endpoint map elements left behind`);
    }
  });

  test('a full sync over a drifted table repairs it and deletes stale chains and sets by pattern', () => {
    const m = fixtureModel('node1');
    const fake = new FakeNft();
    fake.apply(planNftables(m.services, m.endpoints, m.node).script);
    // Drift: a stale service chain and set from an older run, a hand-flushed chain, a
    // deleted map element, and a chain of somebody else's in our table.
    fake.apply(
      [
        'add chain ip podnet-proxy svc-AAAAAAAA-old-gone-http',
        'add rule ip podnet-proxy svc-AAAAAAAA-old-gone-http drop',
        'add set ip podnet-proxy aff-BBBBBBBB-old-gone-http-10.0.0.1-80 { type ipv4_addr ; flags dynamic,timeout ; timeout 5s ; }',
        'add chain ip podnet-proxy my-debug-chain',
        'delete element ip podnet-proxy service-ips { 10.96.0.10 . tcp . 80 }',
      ].join('\n'),
    );
    const web = [...fake.table('ip', 'podnet-proxy')!.chains.keys()].find((n) => /^svc-.*-default-web-http$/.test(n))!;
    fake.apply(`flush chain ip podnet-proxy ${web}`);
    const listing = fake.listTable('ip', 'podnet-proxy', true);
    const names = {
      chains: [...listing.matchAll(/^\tchain (\S+) \{/gm)].map((x) => x[1]!),
      sets: [...listing.matchAll(/^\t(?:set|map) (\S+) \{/gm)].map((x) => x[1]!),
    };
    const r = renderFull(4, m.node.clusterCIDR, collectDesired(plansOf(m)), names);
    fake.apply(r.script);
    assert.equal(r.counts.chainsDeleted, 1);
    assert.equal(r.counts.setsDeleted, 1);
    const fresh = new FakeNft();
    fresh.apply(planNftables(m.services, m.endpoints, m.node).script);
    const got = dump(fake.table('ip', 'podnet-proxy'));
    assert.deepEqual(got.filter((l) => !l.startsWith('chain my-debug-chain')), dump(fresh.table('ip', 'podnet-proxy')));
    assert.ok(got.includes('chain my-debug-chain: '), 'chains not matching the pattern are left alone');
    assert.ok(!SERVICE_CHAIN_PATTERN.test('my-debug-chain'));
  });

  test('two services claiming one address and port: the first keeps it, the clash is reported', () => {
    const c = fixtureCluster();
    svcNamed(c, 'web').spec!.externalIPs = ['192.168.1.210'];
    const d = collectDesired(plansOf(model(c)));
    assert.deepEqual(d.conflicts, ['service-ips 192.168.1.210 . tcp . 80: claimed by default/ext:http and default/web:http; default/web:http loses it']);
    assert.match(d.elements.get('service-ips')!.get('192.168.1.210 . tcp . 80')!, /ext-\S+-default-ext-http/);
  });
});

describe('the tracer follows the planned table on both nodes', () => {
  test('node addresses are what `fib daddr type local` sees', () => {
    const m = fixtureModel('node2');
    const fake = new FakeNft();
    fake.apply(planNftables(m.services, m.endpoints, m.node).script);
    const t = new NftTracer(fake.table('ip', 'podnet-proxy')!, { localAddresses: localAddresses('node2') });
    assert.equal(summarize(t.trace({ src: '203.0.113.10', dst: '192.168.1.12', proto: 'tcp', dport: 30080 })).output, '10.244.1.3:8080, 10.244.2.3:8080');
    assert.equal(summarize(t.trace({ src: '203.0.113.10', dst: '192.168.1.11', proto: 'tcp', dport: 30080 })).output, 'ACCEPT');
  });
});
