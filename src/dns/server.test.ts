/**
 * The server over real sockets on 127.0.0.1 (nothing leaves loopback): UDP and TCP, EDNS0
 * sizes and truncation, flags, malformed input, forwarding to a fake upstream run here,
 * the cache, and answers following datastore changes through the informers.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { connect, createServer, type Server } from 'node:net';
import * as packet from 'dns-packet';
import type { Answer, DecodedPacket, Packet } from 'dns-packet';
import { MemoryDatastore } from '../datastore/index.ts';
import { clusterIP, ep, headless, sampleCluster, slice } from './fixtures.ts';
import { formatRR } from './format.ts';
import { startDnsServer, type AnswerSource, type DnsServer, type Transport } from './server.ts';
import { watchCluster, type ClusterWatch } from './watch.ts';
import { FrameReader, frame } from './wire.ts';

const LOOPBACK = '127.0.0.1';

interface Ask {
  name: string;
  type?: string;
  tcp?: boolean;
  /** EDNS0 UDP size to advertise; none: no OPT record. */
  edns?: number;
  ednsVersion?: number;
  flags?: number;
}

function query(a: Ask, id: number): Buffer {
  const p: Packet = {
    type: 'query',
    id,
    flags: a.flags ?? packet.RECURSION_DESIRED,
    questions: [{ name: a.name, type: (a.type ?? 'A') as 'A' }],
    additionals: a.edns ? [{ name: '.', type: 'OPT', udpPayloadSize: a.edns, extendedRcode: 0, ednsVersion: a.ednsVersion ?? 0, flags: 0, flag_do: false, options: [] }] : [],
  };
  return packet.encode(p);
}

function udpExchange(port: number, msg: Buffer, timeoutMs = 3000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const sock = createSocket('udp4');
    const timer = setTimeout(() => {
      sock.close();
      reject(new Error('no UDP answer'));
    }, timeoutMs);
    sock.on('message', (m) => {
      clearTimeout(timer);
      sock.close();
      resolve(m);
    });
    sock.send(msg, port, LOOPBACK);
  });
}

function tcpExchange(port: number, msgs: Buffer[], timeoutMs = 3000): Promise<Buffer[]> {
  return new Promise((resolve, reject) => {
    const sock = connect({ host: LOOPBACK, port });
    const reader = new FrameReader();
    const got: Buffer[] = [];
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`${got.length} of ${msgs.length} TCP answers`));
    }, timeoutMs);
    sock.on('connect', () => sock.write(Buffer.concat(msgs.map(frame))));
    sock.on('data', (c) => {
      got.push(...reader.push(c));
      if (got.length === msgs.length) {
        clearTimeout(timer);
        sock.destroy();
        resolve(got);
      }
    });
    sock.on('error', reject);
  });
}

let nextId = 1;
async function ask(port: number, a: Ask): Promise<DecodedPacket & { rcode: string; size: number }> {
  const id = nextId++ & 0xffff;
  const raw = a.tcp ? ((await tcpExchange(port, [query(a, id)]))[0] as Buffer) : await udpExchange(port, query(a, id));
  const res = packet.decode(raw) as DecodedPacket & { rcode: string; size: number };
  res.size = raw.length;
  assert.equal(res.id, id, 'the reply carries the query ID');
  return res;
}

const lines = (rrs: Answer[] | undefined): string[] => (rrs ?? []).filter((r) => r.type !== 'OPT').map(formatRR);

// ---------------------------------------------------------------------------------------------
// A fake upstream on 127.0.0.1: answers a few names, counts what it is asked.

interface FakeUpstream {
  port: number;
  asked: string[];
  close(): Promise<void>;
}

function upstreamAnswer(q: DecodedPacket, transport: 'udp' | 'tcp'): Packet {
  const question = q.questions![0]!;
  const base: Packet = { type: 'response', id: q.id, flags: packet.RECURSION_AVAILABLE | packet.RECURSION_DESIRED, questions: [question] };
  const name = question.name.toLowerCase();
  if (name === 'example.com' && question.type === 'A') return { ...base, answers: [{ name: question.name, type: 'A', ttl: 300, data: '192.0.2.1' }] };
  if (name === 'www.example.com') return { ...base, answers: question.type === 'A' ? [{ name: question.name, type: 'A', ttl: 300, data: '192.0.2.80' }] : [] };
  if (name === 'gone.example.com') {
    return {
      ...base,
      flags: (base.flags ?? 0) | 3,
      authorities: [{ name: 'example.com', type: 'SOA', ttl: 60, data: { mname: 'ns.example.com', rname: 'admin.example.com', serial: 1, refresh: 1, retry: 1, expire: 1, minimum: 30 } }],
    };
  }
  if (name === 'big.example.com') {
    if (transport === 'udp') return { ...base, flags: (base.flags ?? 0) | packet.TRUNCATED_RESPONSE };
    return { ...base, answers: Array.from({ length: 40 }, (_, i) => ({ name: question.name, type: 'A' as const, ttl: 300, data: `192.0.2.${i + 1}` })) };
  }
  return { ...base, flags: (base.flags ?? 0) | 3 };
}

async function fakeUpstream(opts: { silent?: boolean } = {}): Promise<FakeUpstream> {
  const asked: string[] = [];
  const udp: UdpSocket = createSocket('udp4');
  await new Promise<void>((r) => udp.bind(0, LOOPBACK, () => r()));
  const port = udp.address().port;
  udp.on('message', (m, rinfo) => {
    const q = packet.decode(m);
    asked.push(`udp ${q.questions?.[0]?.name}`);
    if (!opts.silent) udp.send(packet.encode(upstreamAnswer(q, 'udp')), rinfo.port, rinfo.address);
  });
  const tcp: Server = createServer((sock) => {
    const reader = new FrameReader();
    sock.on('data', (c) => {
      for (const m of reader.push(c)) {
        const q = packet.decode(m);
        asked.push(`tcp ${q.questions?.[0]?.name}`);
        if (!opts.silent) sock.write(frame(packet.encode(upstreamAnswer(q, 'tcp'))));
      }
    });
    sock.on('error', () => undefined);
  });
  await new Promise<void>((r) => tcp.listen(port, LOOPBACK, () => r()));
  return {
    port,
    asked,
    close: async () => {
      await new Promise<void>((r) => udp.close(() => r()));
      await new Promise<void>((r) => tcp.close(() => r()));
    },
  };
}

// ---------------------------------------------------------------------------------------------

describe('dns server on 127.0.0.1, fed by informers over a MemoryDatastore', () => {
  let ds: MemoryDatastore;
  let watch: ClusterWatch;
  let server: DnsServer;
  let upstream: FakeUpstream;
  let silent: FakeUpstream;
  const events: Array<{ proto: Transport; qtype: string; rcode: string; source: AnswerSource; seconds: number; truncated: boolean }> = [];

  before(async () => {
    const sample = sampleCluster();
    const many = Array.from({ length: 60 }, (_, i) => ep(`10.244.${Math.floor(i / 250)}.${(i % 250) + 1}`));
    const few = Array.from({ length: 8 }, (_, i) => ep(`10.244.9.${i + 1}`));
    ds = await MemoryDatastore.with([
      ...sample.services,
      ...sample.endpointSlices,
      ...sample.pods,
      headless('default', 'many', [{ name: 'http', port: 80 }]),
      slice('default', 'many', 'many-1', many, [{ name: 'http', port: 8080, protocol: 'TCP' }]),
      headless('default', 'few', [{ name: 'http', port: 80 }]),
      slice('default', 'few', 'few-1', few, [{ name: 'http', port: 8080, protocol: 'TCP' }]),
    ]);
    watch = watchCluster(ds);
    await watch.start();
    silent = await fakeUpstream({ silent: true });
    upstream = await fakeUpstream();
    server = await startDnsServer({
      source: watch.store,
      host: LOOPBACK,
      port: 0,
      // The silent one first: every forward shows that a timeout moves on to the next.
      upstreams: [
        { host: LOOPBACK, port: silent.port },
        { host: LOOPBACK, port: upstream.port },
      ],
      forwardTimeoutMs: 200,
      onQuery: (proto, qtype, rcode, source, seconds, truncated) => void events.push({ proto, qtype, rcode, source, seconds, truncated }),
    });
  });

  after(async () => {
    await server?.close();
    await watch?.stop();
    await upstream?.close();
    await silent?.close();
    await ds?.close();
  });

  test('UDP: an answer from the zone, with AA and RA set, RD echoed', async () => {
    const res = await ask(server.port, { name: 'web.default.svc.cluster.local' });
    assert.equal(res.rcode, 'NOERROR');
    assert.deepEqual(lines(res.answers), ['web.default.svc.cluster.local. 5 IN A 10.96.0.20']);
    assert.equal(res.flag_qr, true);
    assert.equal(res.flag_aa, true);
    assert.equal(res.flag_ra, true);
    assert.equal(res.flag_rd, true);
    assert.equal(res.flag_tc, false);
    const norec = await ask(server.port, { name: 'web.default.svc.cluster.local', flags: 0 });
    assert.equal(norec.flag_rd, false);
  });

  test('TCP: the same answers, several queries pipelined on one connection', async () => {
    const msgs = [query({ name: 'web.default.svc.cluster.local' }, 101), query({ name: 'dns-version.cluster.local', type: 'TXT' }, 102), query({ name: 'nope.default.svc.cluster.local' }, 103)];
    const replies = (await tcpExchange(server.port, msgs)).map((b) => packet.decode(b) as DecodedPacket & { rcode: string });
    const byId = new Map(replies.map((r) => [r.id, r]));
    assert.deepEqual(lines(byId.get(101)?.answers), ['web.default.svc.cluster.local. 5 IN A 10.96.0.20']);
    assert.deepEqual(lines(byId.get(102)?.answers), ['dns-version.cluster.local. 5 IN TXT "1.1.0"']);
    assert.equal(byId.get(103)?.rcode, 'NXDOMAIN');
  });

  test('NXDOMAIN and NODATA stay distinct on the wire, both with the SOA', async () => {
    const nx = await ask(server.port, { name: 'nope.default.svc.cluster.local' });
    assert.equal(nx.rcode, 'NXDOMAIN');
    assert.equal(nx.flag_aa, true);
    assert.deepEqual((nx.authorities ?? []).map((r) => r.type), ['SOA']);
    const nodata = await ask(server.port, { name: 'web.default.svc.cluster.local', type: 'AAAA' });
    assert.equal(nodata.rcode, 'NOERROR');
    assert.deepEqual(nodata.answers, []);
    assert.deepEqual((nodata.authorities ?? []).map((r) => r.type), ['SOA']);
  });

  test('EDNS0: the client\'s UDP size is honoured; what does not fit is truncated (TC) and complete over TCP', async () => {
    const name = 'many.default.svc.cluster.local';
    const classic = await ask(server.port, { name });
    assert.equal(classic.flag_tc, true, 'no EDNS: 512 octets');
    assert.deepEqual(classic.answers, []);
    assert.ok(classic.size <= 512);
    const small = await ask(server.port, { name, edns: 1232 });
    assert.equal(small.flag_tc, true);
    assert.ok(small.size <= 1232);
    assert.equal(small.additionals?.find((a) => a.type === 'OPT')?.type, 'OPT', 'the OPT record stays');
    const big = await ask(server.port, { name, edns: 4096 });
    assert.equal(big.flag_tc, false);
    assert.equal(big.answers?.length, 60);
    assert.ok(big.size > 1232 && big.size <= 4096);
    const opt = big.additionals?.find((a) => a.type === 'OPT');
    assert.equal(opt?.type === 'OPT' ? opt.udpPayloadSize : 0, 4096, 'we advertise our size');
    const tcp = await ask(server.port, { name, tcp: true });
    assert.equal(tcp.flag_tc, false);
    assert.equal(tcp.answers?.length, 60);
  });

  test('the additional section is dropped before anything is truncated (no TC for that)', async () => {
    const name = '_http._tcp.few.default.svc.cluster.local';
    const full = await ask(server.port, { name, type: 'SRV', edns: 4096 });
    assert.equal(full.answers?.length, 8);
    assert.equal(lines(full.additionals).length, 8);
    const lean = await ask(server.port, { name, type: 'SRV', edns: 1232 });
    assert.ok(full.size > 1232, `the full answer (${full.size} octets) must not fit 1232`);
    assert.equal(lean.flag_tc, false);
    assert.equal(lean.answers?.length, 8);
    assert.deepEqual(lines(lean.additionals), []);
  });

  test('malformed and unsupported messages: FORMERR, NOTIMP, BADVERS, REFUSED; responses are never answered', async () => {
    const garbage = Buffer.from('0102000000010000000000000377777700', 'hex'); // a question cut short
    const formerr = packet.decode(await udpExchange(server.port, garbage)) as DecodedPacket & { rcode: string };
    assert.equal(formerr.id, 0x0102);
    assert.equal(formerr.rcode, 'FORMERR');
    const notify = query({ name: 'cluster.local', type: 'SOA' }, 7);
    notify.writeUInt16BE(notify.readUInt16BE(2) | (4 << 11), 2); // opcode NOTIFY
    assert.equal((packet.decode(await udpExchange(server.port, notify)) as DecodedPacket & { rcode: string }).rcode, 'NOTIMP');
    const badvers = await ask(server.port, { name: 'web.default.svc.cluster.local', edns: 1232, ednsVersion: 1 });
    const opt = badvers.additionals?.find((a) => a.type === 'OPT');
    assert.equal(opt?.type === 'OPT' ? opt.extendedRcode : -1, 1, 'BADVERS is extended rcode 16: 1 in the OPT record');
    assert.deepEqual(badvers.answers, []);
    assert.equal((await ask(server.port, { name: 'cluster.local', type: 'AXFR', tcp: true })).rcode, 'REFUSED');
    const response = query({ name: 'web.default.svc.cluster.local' }, 9);
    response.writeUInt16BE(response.readUInt16BE(2) | 0x8000, 2);
    await assert.rejects(udpExchange(server.port, response, 300), /no UDP answer/);
  });

  test('names outside the zone go to the upstream (past one that times out), and are cached by their TTL', async () => {
    const first = await ask(server.port, { name: 'example.com' });
    assert.equal(first.rcode, 'NOERROR');
    assert.equal(first.flag_aa, false, 'not our zone: not authoritative');
    assert.equal(first.flag_ra, true);
    assert.deepEqual(lines(first.answers), ['example.com. 300 IN A 192.0.2.1']);
    assert.deepEqual(silent.asked, ['udp example.com'], 'the silent upstream was asked first');
    assert.deepEqual(upstream.asked, ['udp example.com']);
    const again = await ask(server.port, { name: 'EXAMPLE.com' });
    // The cache is keyed case-insensitively; its records keep the owner name they came with.
    assert.deepEqual(lines(again.answers), ['example.com. 300 IN A 192.0.2.1']);
    assert.deepEqual(upstream.asked, ['udp example.com'], 'the second answer came from the cache');
    assert.equal(events.filter((e) => e.source === 'cache').length, 1);
  });

  test('negative answers are cached by the SOA\'s negative TTL', async () => {
    const nx = await ask(server.port, { name: 'gone.example.com' });
    assert.equal(nx.rcode, 'NXDOMAIN');
    await ask(server.port, { name: 'gone.example.com' });
    assert.deepEqual(upstream.asked.filter((q) => q.endsWith('gone.example.com')), ['udp gone.example.com']);
    assert.equal(server.forwarder.cache?.size, 2);
  });

  test('an upstream that truncates is asked again over TCP; the client gets what fits its transport', async () => {
    const udp = await ask(server.port, { name: 'big.example.com', edns: 4096 });
    assert.equal(udp.flag_tc, false);
    assert.equal(udp.answers?.length, 40);
    assert.deepEqual(upstream.asked.filter((q) => q.endsWith('big.example.com')), ['udp big.example.com', 'tcp big.example.com']);
    const classic = await ask(server.port, { name: 'big.example.com' });
    assert.equal(classic.flag_tc, true, '40 records do not fit 512 octets');
    const tcp = await ask(server.port, { name: 'big.example.com', tcp: true });
    assert.equal(tcp.answers?.length, 40);
  });

  test('reverse names the cluster does not know fall through to the upstream', async () => {
    const ours = await ask(server.port, { name: '20.0.96.10.in-addr.arpa', type: 'PTR' });
    assert.deepEqual(lines(ours.answers), ['20.0.96.10.in-addr.arpa. 5 IN PTR web.default.svc.cluster.local.']);
    assert.equal(ours.flag_aa, true);
    const theirs = await ask(server.port, { name: '1.2.0.192.in-addr.arpa', type: 'PTR' });
    assert.equal(theirs.rcode, 'NXDOMAIN', 'the fake upstream says NXDOMAIN to what it does not know');
    assert.ok(upstream.asked.includes('udp 1.2.0.192.in-addr.arpa'));
  });

  test('an ExternalName pointing outside the zone: the CNAME, then the target\'s records from the upstream', async () => {
    // Stub resolvers (glibc, musl) do not chase CNAMEs: the server must, as CoreDNS does.
    const a = await ask(server.port, { name: 'ext.default.svc.cluster.local' });
    assert.equal(a.rcode, 'NOERROR');
    assert.deepEqual(lines(a.answers), ['ext.default.svc.cluster.local. 5 IN CNAME www.example.com.', 'www.example.com. 300 IN A 192.0.2.80']);
    assert.ok(upstream.asked.includes('udp www.example.com'));
    const cname = await ask(server.port, { name: 'ext.default.svc.cluster.local', type: 'CNAME' });
    assert.deepEqual(lines(cname.answers), ['ext.default.svc.cluster.local. 5 IN CNAME www.example.com.'], 'asked for the CNAME itself: nothing is chased');
    const aaaa = await ask(server.port, { name: 'ext.default.svc.cluster.local', type: 'AAAA' });
    assert.equal(aaaa.rcode, 'NOERROR');
    assert.deepEqual(lines(aaaa.answers), ['ext.default.svc.cluster.local. 5 IN CNAME www.example.com.'], 'the target has no AAAA: the CNAME alone');
  });

  test('many concurrent queries over UDP and TCP are all answered', async () => {
    const names = Array.from({ length: 500 }, (_, i) => (i % 3 === 0 ? 'web.default.svc.cluster.local' : i % 3 === 1 ? 'nope.default.svc.cluster.local' : 'example.com'));
    const udp = await Promise.all(names.map((name) => ask(server.port, { name })));
    assert.equal(udp.filter((r) => r.rcode === 'NOERROR').length, 333);
    assert.equal(udp.filter((r) => r.rcode === 'NXDOMAIN').length, 167);
    const tcp = await tcpExchange(server.port, names.map((name, i) => query({ name }, i)), 5000);
    assert.equal(tcp.length, 500);
  });

  test('a service change is answered within a second (informer event → index)', async () => {
    const ask1 = async (): Promise<string[]> => lines((await ask(server.port, { name: 'late.default.svc.cluster.local' })).answers);
    assert.deepEqual(await ask1(), []);
    const t0 = Date.now();
    await ds.create(clusterIP('default', 'late', '10.96.0.77'));
    let got: string[] = [];
    while (Date.now() - t0 < 1000) {
      got = await ask1();
      if (got.length > 0) break;
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.deepEqual(got, ['late.default.svc.cluster.local. 5 IN A 10.96.0.77'], `answered after ${Date.now() - t0} ms`);
    const svc = await ds.get('Service', { namespace: 'default', name: 'late' });
    await ds.update({ ...svc, spec: { ...svc.spec, clusterIP: '10.96.0.78', clusterIPs: ['10.96.0.78'] } });
    const t1 = Date.now();
    while (Date.now() - t1 < 1000 && !(got = await ask1()).includes('late.default.svc.cluster.local. 5 IN A 10.96.0.78')) await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(got, ['late.default.svc.cluster.local. 5 IN A 10.96.0.78']);
    await ds.delete('Service', { namespace: 'default', name: 'late' });
    const t2 = Date.now();
    let rcode = '';
    while (Date.now() - t2 < 1000 && (rcode = (await ask(server.port, { name: 'late.default.svc.cluster.local' })).rcode) !== 'NXDOMAIN') await new Promise((r) => setTimeout(r, 10));
    assert.equal(rcode, 'NXDOMAIN');
  });

  test('an answer served from the reply cache changes within a second of a service change', async () => {
    const name = 'cached.default.svc.cluster.local';
    const answer = async (): Promise<string[]> => lines((await ask(server.port, { name })).answers);
    await ds.create(clusterIP('default', 'cached', '10.96.0.81'));
    const t0 = Date.now();
    let got: string[] = [];
    while (Date.now() - t0 < 1000 && (got = await answer()).length === 0) await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(got, ['cached.default.svc.cluster.local. 5 IN A 10.96.0.81']);
    const hits = server.handler.replies!.hits;
    assert.deepEqual(await answer(), got);
    assert.equal(server.handler.replies!.hits, hits + 1, 'the second answer came from the reply cache');
    const svc = await ds.get('Service', { namespace: 'default', name: 'cached' });
    await ds.update({ ...svc, spec: { ...svc.spec, clusterIP: '10.96.0.82', clusterIPs: ['10.96.0.82'] } });
    const t1 = Date.now();
    while (Date.now() - t1 < 1000 && !(got = await answer()).includes('cached.default.svc.cluster.local. 5 IN A 10.96.0.82')) await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(got, ['cached.default.svc.cluster.local. 5 IN A 10.96.0.82'], `answered after ${Date.now() - t1} ms`);
    await ds.delete('Service', { namespace: 'default', name: 'cached' });
  });

  test('every query is reported (for the metrics)', () => {
    assert.ok(events.length > 1000);
    assert.ok(events.some((e) => e.proto === 'tcp' && e.source === 'cluster'));
    assert.ok(events.some((e) => e.truncated));
    assert.ok(events.some((e) => e.source === 'forward' && e.rcode === 'NOERROR'));
    assert.ok(events.every((e) => e.seconds >= 0 && e.seconds < 5));
  });
});

describe('dns server without upstreams', () => {
  test('names outside the zone are SERVFAIL; the zone still answers', async () => {
    const server = await startDnsServer({ source: (await import('./store.ts')).RecordStore.from(sampleCluster()), host: LOOPBACK, port: 0 });
    try {
      assert.equal((await ask(server.port, { name: 'example.com' })).rcode, 'SERVFAIL');
      assert.equal((await ask(server.port, { name: 'web.default.svc.cluster.local' })).rcode, 'NOERROR');
    } finally {
      await server.close();
    }
  });

  test('every upstream silent: SERVFAIL after the timeouts', async () => {
    const silent = await fakeUpstream({ silent: true });
    const server = await startDnsServer({
      source: (await import('./store.ts')).RecordStore.from(sampleCluster()),
      host: LOOPBACK,
      port: 0,
      upstreams: [{ host: LOOPBACK, port: silent.port }],
      forwardTimeoutMs: 100,
    });
    try {
      const t0 = Date.now();
      assert.equal((await ask(server.port, { name: 'example.com' })).rcode, 'SERVFAIL');
      assert.ok(Date.now() - t0 >= 90);
    } finally {
      await server.close();
      await silent.close();
    }
  });
});
