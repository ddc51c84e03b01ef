/**
 * `podnet dns` as it runs: the CLI in a child process, fed by a real etcd reached over a
 * UNIX socket (test/support/etcd.ts), serving on 127.0.0.1; /healthz, /metrics, an answer,
 * a change, and a clean exit on SIGTERM. Skipped where etcd is not installed.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { createServer } from 'node:net';
import { join } from 'node:path';
import * as packet from 'dns-packet';
import type { DecodedPacket } from 'dns-packet';
import { EtcdDatastore } from '../datastore/index.ts';
import { ROOT } from '../../test/support/netns.ts';
import { haveEtcd, startEtcd, type TestEtcd } from '../../test/support/etcd.ts';
import { withoutSelf } from './daemon.ts';
import { clusterIP, sampleCluster } from './fixtures.ts';
import { parseListen } from './cli.ts';

const LOOPBACK = '127.0.0.1';

/** A port free on 127.0.0.1 for both TCP and UDP right now. */
async function freePort(): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, LOOPBACK, () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => resolve(p));
      });
    });
    const udpFree = await new Promise<boolean>((resolve) => {
      const u = createSocket('udp4');
      u.once('error', () => resolve(false));
      u.bind(port, LOOPBACK, () => u.close(() => resolve(true)));
    });
    if (udpFree) return port;
  }
}

function udpAsk(port: number, name: string, type = 'A'): Promise<DecodedPacket & { rcode: string }> {
  return new Promise((resolve, reject) => {
    const sock = createSocket('udp4');
    const timer = setTimeout(() => {
      sock.close();
      reject(new Error(`no answer for ${name}`));
    }, 2000);
    sock.on('message', (m) => {
      clearTimeout(timer);
      sock.close();
      resolve(packet.decode(m) as DecodedPacket & { rcode: string });
    });
    sock.send(packet.encode({ type: 'query', id: 7, flags: packet.RECURSION_DESIRED, questions: [{ name, type: type as 'A' }] }), port, LOOPBACK);
  });
}

async function until<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 15_000): Promise<T> {
  const t0 = Date.now();
  let last: unknown;
  while (Date.now() - t0 < timeoutMs) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${what}: not after ${timeoutMs} ms${last ? ` (${String(last)})` : ''}`);
}

test('flags: listen addresses and the upstream that is this server itself', () => {
  assert.deepEqual(parseListen('0.0.0.0:53', '--listen'), { host: '0.0.0.0', port: 53 });
  assert.deepEqual(parseListen(':5353', '--listen'), { host: '0.0.0.0', port: 5353 });
  assert.deepEqual(parseListen('[::]:53', '--listen'), { host: '::', port: 53 });
  assert.throws(() => parseListen('localhost:53', '--listen'), /not IP:PORT/);
  const ups = [
    { host: '127.0.0.1', port: 53 },
    { host: '127.0.0.53', port: 53 },
    { host: '192.0.2.53', port: 53 },
    { host: '127.0.0.1', port: 5353 },
  ];
  assert.deepEqual(withoutSelf(ups, '0.0.0.0', 53), [ups[2], ups[3]]);
  assert.deepEqual(withoutSelf(ups, '10.96.0.10', 53), ups);
  assert.deepEqual(withoutSelf(ups, '127.0.0.1', 5353), [ups[0], ups[1], ups[2]]);
});

describe('podnet dns (child process, real etcd over a unix socket)', { skip: !haveEtcd() && 'etcd is not installed' }, () => {
  let etcd: TestEtcd;
  let ds: EtcdDatastore;
  let child: ChildProcess | undefined;
  let dnsPort = 0;
  let metricsPort = 0;
  let exit: Promise<number | null>;
  let stderr = '';

  before(async () => {
    etcd = await startEtcd();
    ds = new EtcdDatastore({ endpoints: etcd.endpoint });
    const sample = sampleCluster();
    for (const o of [...sample.services, ...sample.endpointSlices, ...sample.pods]) await ds.create(o);
    dnsPort = await freePort();
    metricsPort = await freePort();
    // No upstream: the child must not read this machine's resolv.conf and forward anywhere.
    const emptyResolv = join(etcd.dir, 'resolv.conf');
    await import('node:fs/promises').then((fs) => fs.writeFile(emptyResolv, '# none\n'));
    child = spawn(
      process.execPath,
      [join(ROOT, 'src', 'cli', 'main.ts'), 'dns', '--etcd', etcd.endpoint, '--listen', `${LOOPBACK}:${dnsPort}`, '--metrics-address', `${LOOPBACK}:${metricsPort}`, '--resolv-conf', emptyResolv, '--ttl', '7'],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    child.stderr?.on('data', (b: Buffer) => (stderr = (stderr + b.toString()).slice(-8000)));
    exit = new Promise((resolve) => child?.once('exit', (code) => resolve(code)));
  });

  after(async () => {
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exit;
    }
    await ds?.close();
    await etcd?.stop();
  });

  test('healthy once synced, answers the zone, follows a change, reports metrics, stops on SIGTERM', async () => {
    await until('healthz ok', async () => {
      const res = await fetch(`http://${LOOPBACK}:${metricsPort}/healthz`);
      return res.status === 200 ? true : undefined;
    });
    const web = await until('an answer', () => udpAsk(dnsPort, 'web.default.svc.cluster.local'));
    assert.equal(web.rcode, 'NOERROR');
    assert.deepEqual(web.answers?.map((a) => (a.type === 'A' ? `${a.ttl} ${a.data}` : a.type)), ['7 10.96.0.20']);
    assert.equal((await udpAsk(dnsPort, 'example.com')).rcode, 'SERVFAIL', 'no upstream: nothing is forwarded');

    await ds.create(clusterIP('default', 'fresh', '10.96.0.123'));
    const t0 = Date.now(); // The change is in etcd: from here it is the watch and the index.
    const fresh = await until('the new service', async () => {
      const r = await udpAsk(dnsPort, 'fresh.default.svc.cluster.local');
      return r.answers?.length ? r : undefined;
    });
    const ms = Date.now() - t0;
    assert.ok(ms < 1000, `a new service answered after ${ms} ms`);
    assert.equal(fresh.answers?.[0]?.type === 'A' ? fresh.answers[0].data : '', '10.96.0.123');

    const metrics = await (await fetch(`http://${LOOPBACK}:${metricsPort}/metrics`)).text();
    for (const re of [
      /^podnet_dns_queries_total\{(?=[^}]*proto="udp")(?=[^}]*type="A")(?=[^}]*rcode="NOERROR")(?=[^}]*source="cluster")[^}]*\} [1-9]/m,
      /^podnet_dns_query_duration_seconds_bucket\{(?=[^}]*le="0.001")(?=[^}]*source="cluster")[^}]*\} \d+/m,
      /^podnet_dns_records\{(?=[^}]*kind="services")[^}]*\} 11$/m,
    ]) {
      assert.ok(re.test(metrics), `/metrics has no line matching ${re}`);
    }

    child?.kill('SIGTERM');
    assert.equal(await exit, 0, stderr);
  });
});
