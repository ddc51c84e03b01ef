/**
 * The reply cache against the slow path it memoises: for every kind of question, a handler
 * with the cache must send exactly the octets a handler without it sends (IDs, RD and CD
 * differing between the query that filled an entry and the one served from it), must not
 * keep what the key does not describe, and must forget everything when the store changes.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as packet from 'dns-packet';
import type { Packet } from 'dns-packet';
import { AnswerCache, cacheKey } from './cache.ts';
import { clusterIP, ep, headless, sampleCluster, slice } from './fixtures.ts';
import { Forwarder } from './forward.ts';
import { scanQuery } from './replies.ts';
import { Resolver } from './resolve.ts';
import { DnsHandler, type Transport } from './server.ts';
import { RecordStore } from './store.ts';

const NOW = 1_700_000_000_000;

function cluster(): RecordStore {
  const sample = sampleCluster();
  const many = Array.from({ length: 60 }, (_, i) => ep(`10.244.${Math.floor(i / 250)}.${(i % 250) + 1}`));
  const few = Array.from({ length: 8 }, (_, i) => ep(`10.244.9.${i + 1}`));
  return RecordStore.from(
    {
      services: [...sample.services, headless('default', 'many', [{ name: 'http', port: 80 }]), headless('default', 'few', [{ name: 'http', port: 80 }])],
      endpointSlices: [
        ...sample.endpointSlices,
        slice('default', 'many', 'many-1', many, [{ name: 'http', port: 8080, protocol: 'TCP' }]),
        slice('default', 'few', 'few-1', few, [{ name: 'http', port: 8080, protocol: 'TCP' }]),
      ],
      pods: sample.pods,
    },
    { now: () => NOW },
  );
}

interface Ask {
  name: string;
  type?: string;
  klass?: string;
  /** EDNS0 UDP size; none: no OPT record. */
  edns?: number;
  dnssecOk?: boolean;
  tcp?: boolean;
}

function query(a: Ask, id: number, flags: number): Buffer {
  const p: Packet = {
    type: 'query',
    id,
    flags,
    questions: [{ name: a.name, type: (a.type ?? 'A') as 'A', class: (a.klass ?? 'IN') as 'IN' }],
    additionals: a.edns ? [{ name: '.', type: 'OPT', udpPayloadSize: a.edns, extendedRcode: 0, ednsVersion: 0, flags: a.dnssecOk ? packet.DNSSEC_OK : 0, flag_do: a.dnssecOk ?? false, options: [] }] : [],
  };
  return packet.encode(p);
}

/** Every record kind, both negative answers, EDNS sizes and truncation, case as asked. */
const CASES: Ask[] = [
  { name: 'web.default.svc.cluster.local' },
  { name: 'web.default.svc.cluster.local', type: 'AAAA' },
  { name: 'web.default.svc.cluster.local', type: 'ANY' },
  { name: 'Web.DEFAULT.svc.Cluster.Local' },
  { name: 'wEb.default.svc.cluster.local', type: 'AAAA' },
  { name: 'dual.default.svc.cluster.local', type: 'AAAA' },
  { name: 'v6only.default.svc.cluster.local', type: 'AAAA' },
  { name: 'pending.default.svc.cluster.local' },
  { name: 'db.prod.svc.cluster.local' },
  { name: 'db-0.db.prod.svc.cluster.local', type: 'AAAA' },
  { name: '10-244-2-6.db.prod.svc.cluster.local' },
  { name: 'empty.prod.svc.cluster.local' },
  { name: 'warming.prod.svc.cluster.local' },
  { name: '_http._tcp.web.default.svc.cluster.local', type: 'SRV' },
  { name: '_HTTP._tcp.Web.default.svc.cluster.local', type: 'SRV', edns: 1232 },
  { name: '_pg._tcp.db.prod.svc.cluster.local', type: 'SRV' },
  { name: '_tcp.web.default.svc.cluster.local', type: 'SRV' },
  { name: 'ext.default.svc.cluster.local' },
  { name: 'ext.default.svc.cluster.local', type: 'CNAME' },
  { name: '_http._tcp.ext.default.svc.cluster.local', type: 'SRV' },
  { name: 'alias.default.svc.cluster.local' },
  { name: 'loop.default.svc.cluster.local' },
  { name: '10-244-1-10.default.pod.cluster.local' },
  { name: '10-244-1-99.default.pod.cluster.local' },
  { name: 'fd00-244--5.default.pod.cluster.local', type: 'AAAA' },
  { name: '20.0.96.10.in-addr.arpa', type: 'PTR' },
  { name: '5.1.244.10.in-addr.arpa', type: 'PTR' },
  { name: '5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.4.4.2.0.0.0.d.f.ip6.arpa', type: 'PTR' },
  { name: 'cluster.local', type: 'SOA' },
  { name: 'cluster.local', type: 'NS' },
  { name: 'dns-version.cluster.local', type: 'TXT' },
  { name: 'nope.default.svc.cluster.local' },
  { name: 'nons.svc.cluster.local' },
  { name: 'default.svc.cluster.local' },
  { name: 'svc.cluster.local' },
  { name: 'web.default.svc.cluster.local', klass: 'CH' },
  { name: 'web.default.svc.cluster.local', type: 'HTTPS' },
  { name: 'web.default.svc.cluster.local', edns: 1232 },
  { name: 'web.default.svc.cluster.local', edns: 1232, dnssecOk: true },
  { name: 'web.default.svc.cluster.local', edns: 100 },
  { name: 'web.default.svc.cluster.local', edns: 65000 },
  { name: 'nope.default.svc.cluster.local', edns: 4096, dnssecOk: true },
  { name: 'many.default.svc.cluster.local' },
  { name: 'many.default.svc.cluster.local', edns: 1232 },
  { name: 'many.default.svc.cluster.local', edns: 4096 },
  { name: 'many.default.svc.cluster.local', tcp: true },
  { name: 'MANY.default.svc.cluster.local', edns: 4096, tcp: true },
  { name: '_http._tcp.few.default.svc.cluster.local', type: 'SRV', edns: 1232 },
  { name: '_http._tcp.few.default.svc.cluster.local', type: 'SRV', edns: 4096 },
  { name: '_http._tcp.few.default.svc.cluster.local', type: 'SRV' },
];

const FLAGS = [packet.RECURSION_DESIRED, 0, packet.CHECKING_DISABLED, packet.RECURSION_DESIRED | packet.CHECKING_DISABLED | packet.AUTHENTIC_DATA];

function handlers(store: RecordStore, opts: { replyCacheSize?: number; forwarder?: Forwarder } = {}): { slow: DnsHandler; fast: DnsHandler } {
  const resolver = new Resolver(store, { zone: 'cluster.local', ttl: 5, pods: 'verified' });
  const forwarder = opts.forwarder ? { forwarder: opts.forwarder } : {};
  return {
    slow: new DnsHandler({ resolver, replyCacheSize: 0, ...forwarder }),
    fast: new DnsHandler({ resolver, ...forwarder, ...(opts.replyCacheSize !== undefined ? { replyCacheSize: opts.replyCacheSize } : {}) }),
  };
}

const label = (a: Ask): string => `${a.name} ${a.type ?? 'A'}${a.klass ? ` ${a.klass}` : ''}${a.edns ? ` edns=${a.edns}` : ''}${a.dnssecOk ? ' DO' : ''}${a.tcp ? ' tcp' : ''}`;

describe('reply cache: byte for byte what the slow path sends', () => {
  test('every kind of zone answer, filled by one query and served to others with other IDs, RD and CD', async () => {
    const { slow, fast } = handlers(cluster());
    const replies = fast.replies!;
    let id = 1;
    for (const c of CASES) {
      const proto: Transport = c.tcp ? 'tcp' : 'udp';
      for (const flags of FLAGS) {
        const msg = query(c, id++, flags);
        const want = await slow.handle(msg, proto);
        assert.ok(want, label(c));
        const hits = replies.hits;
        const got = fast.respond(msg, proto);
        assert.ok(Buffer.isBuffer(got), `${label(c)}: answered synchronously`);
        assert.equal(got.toString('hex'), want.toString('hex'), `${label(c)} flags ${flags}`);
        if (flags !== FLAGS[0]) assert.equal(replies.hits, hits + 1, `${label(c)} flags ${flags}: from the cache`);
      }
    }
    assert.equal(replies.size, CASES.length, 'one entry per case');
  });

  test('the question is echoed as asked: names that differ only in case are different entries', async () => {
    const { fast } = handlers(cluster());
    const a = packet.decode((await fast.handle(query({ name: 'web.default.svc.cluster.local' }, 1, 0), 'udp'))!);
    const b = packet.decode((await fast.handle(query({ name: 'WEB.default.svc.cluster.local' }, 2, 0), 'udp'))!);
    assert.equal(a.questions?.[0]?.name, 'web.default.svc.cluster.local');
    assert.equal(b.questions?.[0]?.name, 'WEB.default.svc.cluster.local');
    assert.equal(b.answers?.[0]?.name, 'WEB.default.svc.cluster.local');
    assert.equal(fast.replies!.size, 2);
  });

  test('what the key does not describe takes the slow path and is not kept', async () => {
    const { slow, fast } = handlers(cluster());
    const plain = query({ name: 'web.default.svc.cluster.local', edns: 1232 }, 7, packet.RECURSION_DESIRED);
    const withOption = packet.encode({
      type: 'query',
      id: 8,
      flags: packet.RECURSION_DESIRED,
      questions: [{ name: 'web.default.svc.cluster.local', type: 'A' }],
      additionals: [{ name: '.', type: 'OPT', udpPayloadSize: 1232, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [{ code: 12, length: 8 }] }],
    });
    const twoQuestions = packet.encode({ type: 'query', id: 9, questions: [{ name: 'web.default.svc.cluster.local', type: 'A' }, { name: 'db.prod.svc.cluster.local', type: 'A' }] });
    const version1 = Buffer.from(plain);
    version1[version1.length - 5] = 1; // the OPT's EDNS version
    const notify = query({ name: 'cluster.local', type: 'SOA' }, 10, 0);
    notify[2] = (notify[2] as number) | (4 << 3); // opcode NOTIFY
    const trailing = Buffer.concat([query({ name: 'web.default.svc.cluster.local' }, 11, 0), Buffer.from([0])]);
    // The question's name as a pointer to itself: what the scanner must not follow.
    const pointer = Buffer.from('000c01000001000000000000c00c00010001', 'hex');
    const response = query({ name: 'web.default.svc.cluster.local' }, 12, 0);
    response[2] = (response[2] as number) | 0x80;
    const axfr = query({ name: 'cluster.local', type: 'AXFR' }, 13, 0);
    const forwarded = query({ name: 'example.com' }, 14, 0);
    const cases: Array<[string, Buffer, boolean]> = [
      ['an OPT record with an option (padding)', withOption, false],
      ['two questions', twoQuestions, false],
      ['EDNS version 1', version1, false],
      ['opcode NOTIFY', notify, false],
      ['trailing octets', trailing, false],
      ['a compression pointer', pointer, false],
      ['a response', response, false],
      ['AXFR (refused)', axfr, true],
      ['a name outside the zone', forwarded, true],
    ];
    for (const [what, msg, shaped] of cases) {
      assert.equal(scanQuery(msg) !== undefined, shaped, `${what}: scanned`);
      for (let i = 0; i < 2; i++) {
        const want = await slow.handle(msg, 'tcp');
        const got = await fast.handle(msg, 'tcp');
        assert.equal(got?.toString('hex'), want?.toString('hex'), what);
      }
    }
    assert.equal(fast.replies!.size, 0, 'nothing kept');
    assert.equal(fast.replies!.hits, 0);
  });

  test('an ExternalName whose target was resolved upstream is not kept (the upstream part ages)', async () => {
    const cache = new AnswerCache({ now: () => NOW });
    cache.set(cacheKey('www.example.com', 'A'), { rcode: 'NOERROR', answers: [{ name: 'www.example.com', type: 'A', ttl: 300, class: 'IN', data: '192.0.2.80' }], authorities: [], additionals: [] });
    // Port 9 (discard) is never asked: the answer is in the forward cache.
    const forwarder = new Forwarder({ upstreams: [{ host: '127.0.0.1', port: 9 }], cache });
    const { fast } = handlers(cluster(), { forwarder });
    for (let i = 0; i < 2; i++) {
      const res = packet.decode((await fast.handle(query({ name: 'ext.default.svc.cluster.local' }, i, 0), 'udp'))!);
      assert.deepEqual(res.answers?.map((r) => r.type), ['CNAME', 'A']);
    }
    assert.equal(fast.replies!.size, 0);
    forwarder.close();
  });
});

describe('reply cache: invalidation and bounds', () => {
  const ask = (h: DnsHandler, name: string, id = 1): string[] => {
    const out = h.respond(query({ name }, id, 0), 'udp');
    assert.ok(Buffer.isBuffer(out));
    const res = packet.decode(out) as ReturnType<typeof packet.decode> & { rcode: string };
    return [res.rcode, ...(res.answers ?? []).map((r) => ('data' in r ? String(r.data) : r.type))];
  };

  test('a store change reaches the very next answer', () => {
    const store = cluster();
    const { fast } = handlers(store);
    assert.deepEqual(ask(fast, 'web.default.svc.cluster.local'), ['NOERROR', '10.96.0.20']);
    assert.deepEqual(ask(fast, 'web.default.svc.cluster.local', 2), ['NOERROR', '10.96.0.20']);
    assert.equal(fast.replies!.hits, 1);
    store.applyService(clusterIP('default', 'web', '10.96.0.21'));
    assert.deepEqual(ask(fast, 'web.default.svc.cluster.local', 3), ['NOERROR', '10.96.0.21']);
    assert.deepEqual(ask(fast, 'late.default.svc.cluster.local'), ['NXDOMAIN']);
    store.applyService(clusterIP('default', 'late', '10.96.0.77'));
    assert.deepEqual(ask(fast, 'late.default.svc.cluster.local', 4), ['NOERROR', '10.96.0.77']);
    store.deleteService('default', 'late');
    assert.deepEqual(ask(fast, 'late.default.svc.cluster.local', 5), ['NXDOMAIN']);
    assert.equal(fast.replies!.hits, 1, 'every answer after a change was computed afresh');
  });

  test('nothing is kept before the informers synced (those answers are SERVFAIL)', () => {
    let synced = false;
    const store = new RecordStore({ synced: () => synced, now: () => NOW });
    for (const s of sampleCluster().services) store.applyService(s);
    const { fast } = handlers(store);
    assert.deepEqual(ask(fast, 'web.default.svc.cluster.local'), ['SERVFAIL']);
    assert.equal(fast.replies!.size, 0);
    synced = true;
    assert.deepEqual(ask(fast, 'web.default.svc.cluster.local', 2), ['NOERROR', '10.96.0.20']);
    assert.equal(fast.replies!.size, 1);
  });

  test('the size bound: a full cache starts again, answers stay right', () => {
    const { fast } = handlers(cluster(), { replyCacheSize: 3 });
    const names = ['web', 'dual', 'ext', 'alias', 'nope', 'web'].map((n) => `${n}.default.svc.cluster.local`);
    for (const [i, name] of names.entries()) {
      ask(fast, name, i);
      assert.ok(fast.replies!.size <= 3);
    }
    assert.deepEqual(ask(fast, 'web.default.svc.cluster.local', 99), ['NOERROR', '10.96.0.20']);
  });
});
