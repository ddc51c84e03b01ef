import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Service } from '../datastore/index.ts';
import { podServiceEnv, serviceEnv } from './envvars.ts';

const svc = (name: string, ns: string, spec: Record<string, unknown>, created = '2026-01-01T00:00:00Z'): Service =>
  ({ apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: ns, creationTimestamp: created }, spec }) as Service;

describe('service environment variables', () => {
  test('a named multi-port service gives the kubelet variables and the Docker link variables', () => {
    const env = serviceEnv(svc('redis-primary', 'default', { clusterIP: '10.96.1.5', ports: [{ name: 'redis', port: 6379 }, { name: 'metrics', port: 9121, protocol: 'TCP' }] }));
    assert.deepEqual(env, {
      REDIS_PRIMARY_SERVICE_HOST: '10.96.1.5',
      REDIS_PRIMARY_SERVICE_PORT: '6379',
      REDIS_PRIMARY_SERVICE_PORT_REDIS: '6379',
      REDIS_PRIMARY_SERVICE_PORT_METRICS: '9121',
      REDIS_PRIMARY_PORT: 'tcp://10.96.1.5:6379',
      REDIS_PRIMARY_PORT_6379_TCP: 'tcp://10.96.1.5:6379',
      REDIS_PRIMARY_PORT_6379_TCP_PROTO: 'tcp',
      REDIS_PRIMARY_PORT_6379_TCP_PORT: '6379',
      REDIS_PRIMARY_PORT_6379_TCP_ADDR: '10.96.1.5',
      REDIS_PRIMARY_PORT_9121_TCP: 'tcp://10.96.1.5:9121',
      REDIS_PRIMARY_PORT_9121_TCP_PROTO: 'tcp',
      REDIS_PRIMARY_PORT_9121_TCP_PORT: '9121',
      REDIS_PRIMARY_PORT_9121_TCP_ADDR: '10.96.1.5',
    });
  });

  const none: Array<[string, Service]> = [
    ['a headless service', svc('h', 'default', { clusterIP: 'None', ports: [{ port: 80 }] })],
    ['an ExternalName service', svc('x', 'default', { type: 'ExternalName', externalName: 'example.com' })],
    ['a service not allocated yet', svc('p', 'default', { ports: [{ port: 80 }] })],
  ];
  for (const [what, s] of none) test(`${what} gives no variables`, () => assert.deepEqual(serviceEnv(s), {}));

  test('a pod sees the services of its namespace made before it, not later ones or other namespaces', () => {
    const pod = { metadata: { namespace: 'shop', creationTimestamp: '2026-01-02T00:00:00Z' }, spec: {} };
    const env = podServiceEnv(pod, [
      svc('api', 'shop', { clusterIP: '10.96.1.1', ports: [{ port: 80 }] }),
      svc('late', 'shop', { clusterIP: '10.96.1.2', ports: [{ port: 80 }] }, '2026-01-03T00:00:00Z'),
      svc('other', 'default', { clusterIP: '10.96.1.3', ports: [{ port: 80 }] }),
    ]);
    assert.equal(env.API_SERVICE_HOST, '10.96.1.1');
    assert.equal(env.LATE_SERVICE_HOST, undefined);
    assert.equal(env.OTHER_SERVICE_HOST, undefined);
  });

  test('enableServiceLinks false keeps only the kubernetes service', () => {
    const pod = { metadata: { namespace: 'default', creationTimestamp: '2026-01-02T00:00:00Z' }, spec: { enableServiceLinks: false } };
    const env = podServiceEnv(pod, [svc('kubernetes', 'default', { clusterIP: '10.96.0.1', ports: [{ name: 'https', port: 443 }] }), svc('web', 'default', { clusterIP: '10.96.1.9', ports: [{ port: 80 }] })]);
    assert.equal(env.KUBERNETES_SERVICE_HOST, '10.96.0.1');
    assert.equal(env.WEB_SERVICE_HOST, undefined);
  });
});
