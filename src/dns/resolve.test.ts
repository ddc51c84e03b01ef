import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { pod, sampleCluster } from './fixtures.ts';
import { formatRR } from './format.ts';
import { Resolver, type Outcome } from './resolve.ts';
import { RecordStore } from './store.ts';
import type { PodsMode } from './types.ts';

const NOW = 1_700_000_000_000;
const SOA = 'cluster.local. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1700000000 7200 1800 86400 5';

interface Case {
  qname: string;
  qtype: string;
  rcode: string | 'forward';
  answer?: string[];
  /** The additional section (SRV answers carry their targets' addresses there). */
  extra?: string[];
}

function resolver(pods: PodsMode = 'verified', zone = 'cluster.local', ttl = 5): Resolver {
  return new Resolver(RecordStore.from(sampleCluster(), { now: () => NOW }), { zone, ttl, pods });
}

function check(r: Resolver, c: Case): void {
  const out: Outcome = r.resolve({ name: c.qname, type: c.qtype, class: 'IN' });
  const what = `${c.qname} ${c.qtype}`;
  if (c.rcode === 'forward') {
    assert.equal(out, 'forward', what);
    return;
  }
  assert.notEqual(out, 'forward', `${what} was forwarded`);
  if (out === 'forward') return;
  assert.equal(out.rcode, c.rcode, what);
  assert.deepEqual(out.answers.map(formatRR), c.answer ?? [], what);
  assert.deepEqual(out.additionals.map(formatRR), c.extra ?? [], `${what} (additional)`);
  assert.equal(out.authoritative, true, `${what}: AA`);
  // NXDOMAIN and NODATA both carry the SOA (the negative TTL); positive answers do not.
  const negative = out.answers.length === 0;
  assert.deepEqual(out.authorities.map(formatRR), negative ? [SOA] : [], `${what} (authority)`);
}

const cases: Record<string, Case[]> = {
  'the schema version': [
    { qname: 'dns-version.cluster.local', qtype: 'TXT', rcode: 'NOERROR', answer: ['dns-version.cluster.local. 5 IN TXT "1.1.0"'] },
    { qname: 'dns-version.cluster.local', qtype: 'A', rcode: 'NOERROR' },
  ],
  'A/AAAA of a service with a cluster IP': [
    { qname: 'web.default.svc.cluster.local', qtype: 'A', rcode: 'NOERROR', answer: ['web.default.svc.cluster.local. 5 IN A 10.96.0.20'] },
    { qname: 'web.default.svc.cluster.local.', qtype: 'A', rcode: 'NOERROR', answer: ['web.default.svc.cluster.local. 5 IN A 10.96.0.20'] },
    { qname: 'Web.DEFAULT.svc.Cluster.Local', qtype: 'A', rcode: 'NOERROR', answer: ['Web.DEFAULT.svc.Cluster.Local. 5 IN A 10.96.0.20'] },
    { qname: 'web.default.svc.cluster.local', qtype: 'AAAA', rcode: 'NOERROR' },
    { qname: 'web.default.svc.cluster.local', qtype: 'TXT', rcode: 'NOERROR' },
    { qname: 'web.default.svc.cluster.local', qtype: 'ANY', rcode: 'NOERROR', answer: ['web.default.svc.cluster.local. 5 IN A 10.96.0.20'] },
    { qname: 'dual.default.svc.cluster.local', qtype: 'A', rcode: 'NOERROR', answer: ['dual.default.svc.cluster.local. 5 IN A 10.96.0.30'] },
    { qname: 'dual.default.svc.cluster.local', qtype: 'AAAA', rcode: 'NOERROR', answer: ['dual.default.svc.cluster.local. 5 IN AAAA fd00:10:96::30'] },
    { qname: 'v6only.default.svc.cluster.local', qtype: 'AAAA', rcode: 'NOERROR', answer: ['v6only.default.svc.cluster.local. 5 IN AAAA fd00:10:96::40'] },
    { qname: 'v6only.default.svc.cluster.local', qtype: 'A', rcode: 'NOERROR' },
    { qname: 'pending.default.svc.cluster.local', qtype: 'A', rcode: 'NOERROR' },
  ],
  'names that do not exist, and names that exist without records (NXDOMAIN vs NODATA)': [
    { qname: 'nope.default.svc.cluster.local', qtype: 'A', rcode: 'NXDOMAIN' },
    { qname: 'web.nons.svc.cluster.local', qtype: 'A', rcode: 'NXDOMAIN' },
    { qname: 'default.svc.cluster.local', qtype: 'A', rcode: 'NOERROR' },
    { qname: 'nons.svc.cluster.local', qtype: 'A', rcode: 'NXDOMAIN' },
    { qname: 'svc.cluster.local', qtype: 'A', rcode: 'NOERROR' },
    { qname: 'pod.cluster.local', qtype: 'A', rcode: 'NOERROR' },
    { qname: 'cluster.local', qtype: 'A', rcode: 'NOERROR' },
    { qname: 'cluster.local', qtype: 'NS', rcode: 'NOERROR' },
    { qname: 'cluster.local', qtype: 'SOA', rcode: 'NOERROR', answer: [SOA] },
    { qname: 'other.cluster.local', qtype: 'A', rcode: 'NXDOMAIN' },
    { qname: 'x.y.web.default.svc.cluster.local', qtype: 'A', rcode: 'NXDOMAIN' },
    // Only headless services have endpoint names.
    { qname: '10-244-1-20.web.default.svc.cluster.local', qtype: 'A', rcode: 'NXDOMAIN' },
  ],
  'SRV of named ports': [
    {
      qname: '_http._tcp.web.default.svc.cluster.local',
      qtype: 'SRV',
      rcode: 'NOERROR',
      answer: ['_http._tcp.web.default.svc.cluster.local. 5 IN SRV 0 100 80 web.default.svc.cluster.local.'],
      extra: ['web.default.svc.cluster.local. 5 IN A 10.96.0.20'],
    },
    {
      qname: '_dns._udp.web.default.svc.cluster.local',
      qtype: 'SRV',
      rcode: 'NOERROR',
      answer: ['_dns._udp.web.default.svc.cluster.local. 5 IN SRV 0 100 53 web.default.svc.cluster.local.'],
      extra: ['web.default.svc.cluster.local. 5 IN A 10.96.0.20'],
    },
    { qname: '_http._udp.web.default.svc.cluster.local', qtype: 'SRV', rcode: 'NXDOMAIN' },
    { qname: '_nope._tcp.web.default.svc.cluster.local', qtype: 'SRV', rcode: 'NXDOMAIN' },
    { qname: 'http.tcp.web.default.svc.cluster.local', qtype: 'SRV', rcode: 'NXDOMAIN' },
    { qname: '_http._tcp.web.default.svc.cluster.local', qtype: 'A', rcode: 'NOERROR' },
    { qname: '_tcp.web.default.svc.cluster.local', qtype: 'SRV', rcode: 'NOERROR' },
    { qname: '_sctp.web.default.svc.cluster.local', qtype: 'SRV', rcode: 'NXDOMAIN' },
    { qname: 'web.default.svc.cluster.local', qtype: 'SRV', rcode: 'NOERROR' },
  ],
  'headless services: every ready endpoint, endpoint names, SRV per endpoint': [
    { qname: 'db.prod.svc.cluster.local', qtype: 'A', rcode: 'NOERROR', answer: ['db.prod.svc.cluster.local. 5 IN A 10.244.1.5', 'db.prod.svc.cluster.local. 5 IN A 10.244.2.6'] },
    { qname: 'db.prod.svc.cluster.local', qtype: 'AAAA', rcode: 'NOERROR', answer: ['db.prod.svc.cluster.local. 5 IN AAAA fd00:244::6'] },
    { qname: 'db-0.db.prod.svc.cluster.local', qtype: 'A', rcode: 'NOERROR', answer: ['db-0.db.prod.svc.cluster.local. 5 IN A 10.244.1.5'] },
    { qname: 'db-0.db.prod.svc.cluster.local', qtype: 'AAAA', rcode: 'NOERROR', answer: ['db-0.db.prod.svc.cluster.local. 5 IN AAAA fd00:244::6'] },
    { qname: '10-244-2-6.db.prod.svc.cluster.local', qtype: 'A', rcode: 'NOERROR', answer: ['10-244-2-6.db.prod.svc.cluster.local. 5 IN A 10.244.2.6'] },
    { qname: '10-244-2-6.db.prod.svc.cluster.local', qtype: 'AAAA', rcode: 'NOERROR' },
    { qname: 'db-2.db.prod.svc.cluster.local', qtype: 'A', rcode: 'NXDOMAIN' },
    {
      qname: '_pg._tcp.db.prod.svc.cluster.local',
      qtype: 'SRV',
      rcode: 'NOERROR',
      answer: [
        '_pg._tcp.db.prod.svc.cluster.local. 5 IN SRV 0 50 15432 db-0.db.prod.svc.cluster.local.',
        '_pg._tcp.db.prod.svc.cluster.local. 5 IN SRV 0 50 15432 10-244-2-6.db.prod.svc.cluster.local.',
      ],
      extra: [
        'db-0.db.prod.svc.cluster.local. 5 IN A 10.244.1.5',
        'db-0.db.prod.svc.cluster.local. 5 IN AAAA fd00:244::6',
        '10-244-2-6.db.prod.svc.cluster.local. 5 IN A 10.244.2.6',
      ],
    },
    // No ready endpoint: NXDOMAIN (the spec), for the service and everything below it.
    { qname: 'empty.prod.svc.cluster.local', qtype: 'A', rcode: 'NXDOMAIN' },
    { qname: '_pg._tcp.empty.prod.svc.cluster.local', qtype: 'SRV', rcode: 'NXDOMAIN' },
    // publishNotReadyAddresses: unready endpoints count.
    { qname: 'warming.prod.svc.cluster.local', qtype: 'A', rcode: 'NOERROR', answer: ['warming.prod.svc.cluster.local. 5 IN A 10.244.2.8'] },
  ],
  'ExternalName: a CNAME, followed only inside the zone': [
    { qname: 'ext.default.svc.cluster.local', qtype: 'A', rcode: 'NOERROR', answer: ['ext.default.svc.cluster.local. 5 IN CNAME www.example.com.'] },
    { qname: 'ext.default.svc.cluster.local', qtype: 'AAAA', rcode: 'NOERROR', answer: ['ext.default.svc.cluster.local. 5 IN CNAME www.example.com.'] },
    { qname: 'ext.default.svc.cluster.local', qtype: 'CNAME', rcode: 'NOERROR', answer: ['ext.default.svc.cluster.local. 5 IN CNAME www.example.com.'] },
    { qname: '_http._tcp.ext.default.svc.cluster.local', qtype: 'SRV', rcode: 'NOERROR', answer: ['_http._tcp.ext.default.svc.cluster.local. 5 IN SRV 0 100 80 www.example.com.'] },
    {
      qname: 'alias.default.svc.cluster.local',
      qtype: 'A',
      rcode: 'NOERROR',
      answer: ['alias.default.svc.cluster.local. 5 IN CNAME web.default.svc.cluster.local.', 'web.default.svc.cluster.local. 5 IN A 10.96.0.20'],
    },
    {
      qname: 'loop.default.svc.cluster.local',
      qtype: 'A',
      rcode: 'NOERROR',
      answer: Array(8).fill('loop.default.svc.cluster.local. 5 IN CNAME loop.default.svc.cluster.local.'),
    },
  ],
  'pod records (pods verified)': [
    { qname: '10-244-1-10.default.pod.cluster.local', qtype: 'A', rcode: 'NOERROR', answer: ['10-244-1-10.default.pod.cluster.local. 5 IN A 10.244.1.10'] },
    { qname: '10-244-1-10.default.pod.cluster.local', qtype: 'AAAA', rcode: 'NOERROR' },
    { qname: 'fd00-244--5.default.pod.cluster.local', qtype: 'AAAA', rcode: 'NOERROR', answer: ['fd00-244--5.default.pod.cluster.local. 5 IN AAAA fd00:244::5'] },
    { qname: '10-244-1-10.prod.pod.cluster.local', qtype: 'A', rcode: 'NXDOMAIN' },
    { qname: '10-244-9-9.default.pod.cluster.local', qtype: 'A', rcode: 'NXDOMAIN' },
    { qname: '192-168-1-11.kube-system.pod.cluster.local', qtype: 'A', rcode: 'NXDOMAIN' },
    { qname: 'client.default.pod.cluster.local', qtype: 'A', rcode: 'NXDOMAIN' },
    { qname: 'default.pod.cluster.local', qtype: 'A', rcode: 'NOERROR' },
    { qname: 'nons.pod.cluster.local', qtype: 'A', rcode: 'NXDOMAIN' },
  ],
  'PTR: cluster IPs, then headless endpoints, then pods; unknown addresses are forwarded': [
    { qname: '20.0.96.10.in-addr.arpa', qtype: 'PTR', rcode: 'NOERROR', answer: ['20.0.96.10.in-addr.arpa. 5 IN PTR web.default.svc.cluster.local.'] },
    {
      qname: '0.3.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.9.0.0.0.1.0.0.0.0.d.f.ip6.arpa',
      qtype: 'PTR',
      rcode: 'NOERROR',
      answer: ['0.3.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.9.0.0.0.1.0.0.0.0.d.f.ip6.arpa. 5 IN PTR dual.default.svc.cluster.local.'],
    },
    { qname: '5.1.244.10.in-addr.arpa', qtype: 'PTR', rcode: 'NOERROR', answer: ['5.1.244.10.in-addr.arpa. 5 IN PTR db-0.db.prod.svc.cluster.local.'] },
    { qname: '6.2.244.10.in-addr.arpa', qtype: 'PTR', rcode: 'NOERROR', answer: ['6.2.244.10.in-addr.arpa. 5 IN PTR 10-244-2-6.db.prod.svc.cluster.local.'] },
    { qname: '10.1.244.10.in-addr.arpa', qtype: 'PTR', rcode: 'NOERROR', answer: ['10.1.244.10.in-addr.arpa. 5 IN PTR 10-244-1-10.default.pod.cluster.local.'] },
    // An endpoint of a service with a cluster IP is named by its pod, not by the service.
    { qname: '20.1.244.10.in-addr.arpa', qtype: 'PTR', rcode: 'NOERROR', answer: ['20.1.244.10.in-addr.arpa. 5 IN PTR 10-244-1-20.default.pod.cluster.local.'] },
    // A not-ready endpoint of a headless service has no name.
    { qname: '7.3.244.10.in-addr.arpa', qtype: 'PTR', rcode: 'forward' },
    { qname: '1.1.1.10.in-addr.arpa', qtype: 'PTR', rcode: 'forward' },
    { qname: '96.10.in-addr.arpa', qtype: 'PTR', rcode: 'forward' },
    { qname: '20.0.96.10.in-addr.arpa', qtype: 'A', rcode: 'forward' },
  ],
  'names outside the zone are forwarded': [
    { qname: 'example.com', qtype: 'A', rcode: 'forward' },
    { qname: 'local', qtype: 'SOA', rcode: 'forward' },
    { qname: 'notcluster.local', qtype: 'A', rcode: 'forward' },
  ],
};

describe('resolver: the Kubernetes DNS specification, table by table', () => {
  const r = resolver();
  for (const [name, table] of Object.entries(cases)) {
    test(name, () => {
      for (const c of table) check(r, c);
    });
  }
});

describe('resolver options', () => {
  test('pods insecure answers any dashed address in any namespace; pods disabled answers none', () => {
    check(resolver('insecure'), { qname: '10-1-2-3.anything.pod.cluster.local', qtype: 'A', rcode: 'NOERROR', answer: ['10-1-2-3.anything.pod.cluster.local. 5 IN A 10.1.2.3'] });
    check(resolver('insecure'), { qname: 'not-an-ip.default.pod.cluster.local', qtype: 'A', rcode: 'NXDOMAIN' });
    check(resolver('disabled'), { qname: '10-244-1-10.default.pod.cluster.local', qtype: 'A', rcode: 'NXDOMAIN' });
    check(resolver('disabled'), { qname: 'pod.cluster.local', qtype: 'A', rcode: 'NXDOMAIN' });
    check(resolver('disabled'), { qname: '10.1.244.10.in-addr.arpa', qtype: 'PTR', rcode: 'forward' });
  });

  test('the zone and the TTL are configurable', () => {
    const r = resolver('verified', 'Example.ORG.', 30);
    const out = r.resolve({ name: 'web.default.svc.example.org', type: 'A' });
    assert.ok(out !== 'forward');
    assert.deepEqual(out.answers.map(formatRR), ['web.default.svc.example.org. 30 IN A 10.96.0.20']);
    const nx = r.resolve({ name: 'nope.default.svc.example.org', type: 'A' });
    assert.ok(nx !== 'forward');
    assert.deepEqual(nx.authorities.map(formatRR), ['example.org. 30 IN SOA ns.dns.example.org. hostmaster.example.org. 1700000000 7200 1800 86400 30']);
    assert.equal(r.resolve({ name: 'web.default.svc.cluster.local', type: 'A' }), 'forward');
    assert.equal(r.resolve({ name: '20.0.96.10.in-addr.arpa', type: 'PTR' }) !== 'forward', true, 'PTR targets use the configured zone');
  });

  test('before the first lists are in, zone names are SERVFAIL (never a false NXDOMAIN)', () => {
    let synced = false;
    const store = RecordStore.from(sampleCluster());
    store.setSynced(() => synced);
    const r = new Resolver(store, { zone: 'cluster.local', ttl: 5, pods: 'verified' });
    const out = r.resolve({ name: 'web.default.svc.cluster.local', type: 'A' });
    assert.ok(out !== 'forward');
    assert.equal(out.rcode, 'SERVFAIL');
    synced = true;
    assert.ok(r.resolve({ name: 'web.default.svc.cluster.local', type: 'A' }) !== 'forward');
  });

  test('a class other than IN inside the zone is refused', () => {
    const out = resolver().resolve({ name: 'web.default.svc.cluster.local', type: 'A', class: 'CH' });
    assert.ok(out !== 'forward');
    assert.equal(out.rcode, 'REFUSED');
  });
});

describe('record store: changes reach answers at once', () => {
  test('a service change, a slice change and deletions', () => {
    const store = RecordStore.from(sampleCluster(), { now: () => NOW });
    const r = new Resolver(store, { zone: 'cluster.local', ttl: 5, pods: 'verified' });
    const a = (name: string, type = 'A'): string[] => {
      const out = r.resolve({ name, type });
      return out === 'forward' ? ['forward'] : [out.rcode, ...out.answers.map((x) => (x.type === 'A' || x.type === 'AAAA' ? String(x.data) : x.type))];
    };
    const g0 = store.generation;
    const web = sampleCluster().services[0]!;
    store.applyService({ ...web, spec: { ...web.spec, clusterIP: '10.96.0.99', clusterIPs: ['10.96.0.99'] } });
    assert.ok(store.generation > g0);
    assert.deepEqual(a('web.default.svc.cluster.local'), ['NOERROR', '10.96.0.99']);
    assert.equal(r.resolve({ name: '20.0.96.10.in-addr.arpa', type: 'PTR' }), 'forward', 'the old cluster IP has no PTR any more');
    store.deleteService('default', 'web');
    assert.deepEqual(a('web.default.svc.cluster.local'), ['NXDOMAIN']);
    store.deleteSlice('prod', 'db-abc');
    assert.deepEqual(a('db.prod.svc.cluster.local', 'A'), ['NOERROR']);
    store.deleteSlice('prod', 'db-v6');
    assert.deepEqual(a('db.prod.svc.cluster.local', 'A'), ['NXDOMAIN']);
    store.applyPod(pod('default', 'client', ['10.244.1.11']));
    assert.deepEqual(a('10-244-1-10.default.pod.cluster.local'), ['NXDOMAIN']);
    assert.deepEqual(a('10-244-1-11.default.pod.cluster.local'), ['NOERROR', '10.244.1.11']);
    store.applyPod({ ...pod('default', 'client', ['10.244.1.11']), status: { phase: 'Succeeded' } });
    assert.deepEqual(a('10-244-1-11.default.pod.cluster.local'), ['NXDOMAIN']);
    assert.deepEqual(store.counts(), { services: 9, endpointSlices: 3, endpointAddresses: 4, pods: 3 });
  });
});
