import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ep, externalName, headless, pod, service, slice } from './fixtures.ts';
import { TOLERATE_UNREADY_ANNOTATION, podRecord, serviceRecord, sliceRecord } from './translate.ts';

test('services: kind, canonical addresses, named ports only, unready publishing', () => {
  assert.deepEqual(serviceRecord(service('Default', 'Web', { clusterIP: '10.96.0.20', clusterIPs: ['10.96.0.20', 'FD00:0::20'], ports: [{ port: 80 }, { name: 'HTTP', port: 80 }, { name: 'q', port: 53, protocol: 'UDP' }] })), {
    namespace: 'default',
    name: 'web',
    kind: 'ClusterIP',
    ips: ['10.96.0.20', 'fd00::20'],
    ports: [
      { name: 'http', protocol: 'tcp', port: 80 },
      { name: 'q', protocol: 'udp', port: 53 },
    ],
    publishNotReady: false,
  });
  assert.deepEqual(serviceRecord(service('d', 'pending', {}))?.ips, [], 'no cluster IP yet: a ClusterIP service without addresses');
  assert.equal(serviceRecord(headless('d', 'h'))?.kind, 'Headless');
  assert.equal(serviceRecord(service('d', 'h', { clusterIP: 'None' }, { [TOLERATE_UNREADY_ANNOTATION]: 'true' }))?.publishNotReady, true);
  assert.equal(serviceRecord(externalName('d', 'e', 'WWW.Example.com.'))?.externalName, 'www.example.com');
  assert.equal(serviceRecord(externalName('d', 'e', `${'x'.repeat(64)}.com`))?.externalName, undefined, 'a target that cannot be encoded is dropped');
});

test('endpoint slices: the service label, IP slices only, hostnames or dashed addresses, ready unless said otherwise', () => {
  const rec = sliceRecord(slice('d', 'db', 'db-1', [ep('10.244.1.5', { hostname: 'DB-0' }), ep('fd00::6'), ep('10.244.1.7', { ready: false })], [{ name: 'pg', port: 15432 }, { port: 1 }]));
  assert.deepEqual(rec, {
    namespace: 'd',
    name: 'db-1',
    service: 'db',
    addresses: [
      { host: 'db-0', ip: '10.244.1.5', ready: true },
      { host: 'fd00--6', ip: 'fd00::6', ready: true },
      { host: '10-244-1-7', ip: '10.244.1.7', ready: false },
    ],
    ports: [{ name: 'pg', protocol: 'tcp', port: 15432 }],
  });
  const orphan = slice('d', 'x', 'x-1', []);
  delete orphan.metadata.labels;
  assert.equal(sliceRecord(orphan), undefined);
  assert.equal(sliceRecord(slice('d', 'x', 'x-1', [], [], 'FQDN')), undefined);
});

test('pods: running pods with addresses; not host-network, finished or terminating ones', () => {
  assert.deepEqual(podRecord(pod('d', 'p', ['10.244.1.5', 'fd00::5'])), { namespace: 'd', name: 'p', ips: ['10.244.1.5', 'fd00::5'] });
  assert.equal(podRecord(pod('d', 'p', ['192.168.1.11'], { hostNetwork: true })), undefined);
  assert.equal(podRecord({ ...pod('d', 'p', ['10.244.1.5']), status: { phase: 'Failed', podIP: '10.244.1.5' } }), undefined);
  const gone = pod('d', 'p', ['10.244.1.5']);
  gone.metadata.deletionTimestamp = '2026-01-01T00:00:00Z';
  assert.equal(podRecord(gone), undefined);
  assert.equal(podRecord({ ...pod('d', 'p', []), status: { phase: 'Pending' } }), undefined);
});
