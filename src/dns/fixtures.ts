/**
 * Test-only: builders for the API objects DNS reads, and the small cluster the resolver and
 * server tests share. Not part of the public surface.
 */
import type { Endpoint, EndpointSlice, Pod, Service, ServicePort } from '../datastore/index.ts';
import { SERVICE_NAME_LABEL } from './translate.ts';

export function service(ns: string, name: string, spec: Service['spec'], annotations?: Record<string, string>): Service {
  return { apiVersion: 'v1', kind: 'Service', metadata: { namespace: ns, name, ...(annotations ? { annotations } : {}) }, spec };
}

export function clusterIP(ns: string, name: string, ip: string | string[], ports: ServicePort[] = []): Service {
  const ips = Array.isArray(ip) ? ip : [ip];
  return service(ns, name, { type: 'ClusterIP', clusterIP: ips[0] as string, clusterIPs: ips, ports });
}

export function headless(ns: string, name: string, ports: ServicePort[] = [], extra: Partial<NonNullable<Service['spec']>> = {}): Service {
  return service(ns, name, { clusterIP: 'None', ports, ...extra });
}

export function externalName(ns: string, name: string, target: string, ports: ServicePort[] = []): Service {
  return service(ns, name, { type: 'ExternalName', externalName: target, ports });
}

export function ep(address: string, opts: { hostname?: string; ready?: boolean } = {}): Endpoint {
  return {
    addresses: [address],
    ...(opts.hostname ? { hostname: opts.hostname } : {}),
    ...(opts.ready !== undefined ? { conditions: { ready: opts.ready } } : {}),
  };
}

export function slice(ns: string, svc: string, name: string, endpoints: Endpoint[], ports: EndpointSlice['ports'] = [], addressType: EndpointSlice['addressType'] = 'IPv4'): EndpointSlice {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { namespace: ns, name, labels: { [SERVICE_NAME_LABEL]: svc } },
    addressType,
    endpoints,
    ports,
  };
}

export function pod(ns: string, name: string, ips: string[], spec: Partial<NonNullable<Pod['spec']>> = {}): Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { namespace: ns, name },
    spec: { containers: [{ name: 'c' }], ...spec },
    status: { phase: 'Running', podIP: ips[0] as string, podIPs: ips.map((ip) => ({ ip })) },
  };
}

/** A small cluster with one of every kind of record. */
export function sampleCluster(): { services: Service[]; endpointSlices: EndpointSlice[]; pods: Pod[] } {
  return {
    services: [
      clusterIP('default', 'web', '10.96.0.20', [
        { name: 'http', port: 80, protocol: 'TCP', targetPort: 8080 },
        { name: 'dns', port: 53, protocol: 'UDP' },
        { port: 9000 },
      ]),
      clusterIP('default', 'dual', ['10.96.0.30', 'fd00:10:96::30']),
      clusterIP('default', 'v6only', 'fd00:10:96::40'),
      service('default', 'pending', { type: 'ClusterIP' }),
      headless('prod', 'db', [{ name: 'pg', port: 5432, targetPort: 15432 }]),
      headless('prod', 'empty', [{ name: 'pg', port: 5432 }]),
      headless('prod', 'warming', [], { publishNotReadyAddresses: true }),
      externalName('default', 'ext', 'www.example.com.', [{ name: 'http', port: 80 }]),
      externalName('default', 'alias', 'web.default.svc.cluster.local'),
      externalName('default', 'loop', 'loop.default.svc.cluster.local'),
    ],
    endpointSlices: [
      slice('prod', 'db', 'db-abc', [ep('10.244.1.5', { hostname: 'db-0' }), ep('10.244.2.6'), ep('10.244.3.7', { hostname: 'db-2', ready: false })], [{ name: 'pg', port: 15432, protocol: 'TCP' }]),
      slice('prod', 'db', 'db-v6', [ep('fd00:244::6', { hostname: 'db-0' })], [{ name: 'pg', port: 15432, protocol: 'TCP' }], 'IPv6'),
      slice('prod', 'empty', 'empty-abc', [ep('10.244.1.9', { ready: false })]),
      slice('prod', 'warming', 'warming-abc', [ep('10.244.2.8', { ready: false })]),
      slice('default', 'web', 'web-abc', [ep('10.244.1.20'), ep('10.244.2.21')], [{ name: 'http', port: 8080, protocol: 'TCP' }]),
    ],
    pods: [
      pod('default', 'client', ['10.244.1.10']),
      pod('default', 'v6pod', ['fd00:244::5']),
      pod('prod', 'db-0', ['10.244.1.5', 'fd00:244::6']),
      pod('default', 'web-1', ['10.244.1.20']),
      pod('kube-system', 'agent', ['192.168.1.11'], { hostNetwork: true }),
    ],
  };
}
