/**
 * A small cluster for the proxy's tests (not part of the public surface): two nodes on the
 * lab's address plan, and one service for every case the rules must get right.
 *
 *   node1 192.168.1.11, pods 10.244.1.0/24 (bridge 10.244.1.1)
 *   node2 192.168.1.12, pods 10.244.2.0/24 (bridge 10.244.2.1)
 *   cluster CIDR 10.244.0.0/16, services 10.96.0.0/12, load balancers 192.168.1.200+
 */
import type { Endpoint, EndpointSlice, Protocol, Service, ServiceSpec, ServiceStatus } from '../datastore/types.ts';
import type { NftTableState } from './fake-nft.ts';
import type { NftRule } from './nft-rules.ts';
import { ENDPOINT_MAP_PATTERN } from './nftables.ts';
import { translate } from './translate.ts';
import type { ProxyModel } from './types.ts';

export const CLUSTER_CIDR = '10.244.0.0/16';
export const NODES = {
  node1: { ip: '192.168.1.11', bridge: '10.244.1.1' },
  node2: { ip: '192.168.1.12', bridge: '10.244.2.1' },
} as const;
export type NodeName = keyof typeof NODES;

export function service(name: string, spec: ServiceSpec, status?: ServiceStatus, namespace = 'default'): Service {
  return { apiVersion: 'v1', kind: 'Service', metadata: { name, namespace }, spec, ...(status ? { status } : {}) };
}

export interface EpSpec {
  ip: string;
  node: NodeName;
  ready?: boolean;
  serving?: boolean;
  terminating?: boolean;
}

export function slice(
  svcName: string,
  ports: Array<{ name?: string; port: number; protocol?: Protocol }>,
  eps: EpSpec[],
  opts: { name?: string; namespace?: string; addressType?: 'IPv4' | 'IPv6' } = {},
): EndpointSlice {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: opts.name ?? `${svcName}-abc`, namespace: opts.namespace ?? 'default', labels: { 'kubernetes.io/service-name': svcName } },
    addressType: opts.addressType ?? 'IPv4',
    ports: ports.map((p) => ({ ...(p.name !== undefined ? { name: p.name } : {}), port: p.port, protocol: p.protocol ?? 'TCP' })),
    endpoints: eps.map((e): Endpoint => {
      const conditions: Endpoint['conditions'] = {};
      if (e.ready !== undefined) conditions.ready = e.ready;
      if (e.serving !== undefined) conditions.serving = e.serving;
      if (e.terminating !== undefined) conditions.terminating = e.terminating;
      return { addresses: [e.ip], nodeName: e.node, conditions };
    }),
  };
}

const http = [{ name: 'http', port: 80, targetPort: 8080 }];
const httpEp = [{ name: 'http', port: 8080 }];

/** Every service of the fixture, with its slices. */
export function fixtureCluster(): { services: Service[]; slices: EndpointSlice[] } {
  const services: Service[] = [
    service('web', { type: 'ClusterIP', clusterIP: '10.96.0.10', ports: http }),
    service('np', { type: 'NodePort', clusterIP: '10.96.0.20', ports: [{ name: 'http', port: 80, nodePort: 30080 }] }),
    service('lb', { type: 'LoadBalancer', clusterIP: '10.96.0.30', ports: [{ name: 'http', port: 80, nodePort: 30081 }] }, { loadBalancer: { ingress: [{ ip: '192.168.1.200' }] } }),
    service(
      'lb-local',
      { type: 'LoadBalancer', clusterIP: '10.96.0.31', externalTrafficPolicy: 'Local', healthCheckNodePort: 32001, ports: [{ name: 'http', port: 80, nodePort: 30082 }] },
      { loadBalancer: { ingress: [{ ip: '192.168.1.201' }] } },
    ),
    service(
      'lb-local-none',
      { type: 'LoadBalancer', clusterIP: '10.96.0.32', externalTrafficPolicy: 'Local', ports: [{ name: 'http', port: 80, nodePort: 30083 }] },
      { loadBalancer: { ingress: [{ ip: '192.168.1.202' }] } },
    ),
    service('ext', { type: 'ClusterIP', clusterIP: '10.96.0.40', externalIPs: ['192.168.1.210'], ports: http }),
    service('multi', {
      type: 'ClusterIP',
      clusterIP: '10.96.0.50',
      ports: [
        { name: 'http', port: 80, targetPort: 8080 },
        { name: 'https', port: 443, targetPort: 8443 },
      ],
    }),
    service('dns', {
      type: 'ClusterIP',
      clusterIP: '10.96.0.53',
      ports: [
        { name: 'dns', port: 53, protocol: 'UDP' },
        { name: 'dns-tcp', port: 53, protocol: 'TCP' },
      ],
    }),
    service('sctp', { type: 'ClusterIP', clusterIP: '10.96.0.60', ports: [{ name: 'assoc', port: 9999, protocol: 'SCTP' }] }),
    service('sticky', { type: 'ClusterIP', clusterIP: '10.96.0.70', sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 600 } }, ports: http }),
    service('itp-local', { type: 'ClusterIP', clusterIP: '10.96.0.80', internalTrafficPolicy: 'Local', ports: http }),
    service('itp-local-none', { type: 'ClusterIP', clusterIP: '10.96.0.81', internalTrafficPolicy: 'Local', ports: http }),
    service('terminating', { type: 'ClusterIP', clusterIP: '10.96.0.90', ports: http }),
    service('mixed', { type: 'ClusterIP', clusterIP: '10.96.0.91', ports: http }),
    service('empty', { type: 'NodePort', clusterIP: '10.96.0.99', ports: [{ name: 'http', port: 80, nodePort: 30099 }] }),
    service('empty-udp', { type: 'ClusterIP', clusterIP: '10.96.0.98', ports: [{ name: 'dns', port: 53, protocol: 'UDP' }] }),
    service('headless', { type: 'ClusterIP', clusterIP: 'None', ports: http }),
    service('external-name', { type: 'ExternalName', externalName: 'example.org' }),
  ];
  const slices: EndpointSlice[] = [
    slice('web', httpEp, [
      { ip: '10.244.1.2', node: 'node1' },
      { ip: '10.244.2.2', node: 'node2' },
    ]),
    slice('np', httpEp, [
      { ip: '10.244.1.3', node: 'node1' },
      { ip: '10.244.2.3', node: 'node2' },
    ]),
    slice('lb', httpEp, [{ ip: '10.244.2.4', node: 'node2' }]),
    slice('lb-local', httpEp, [
      { ip: '10.244.1.5', node: 'node1' },
      { ip: '10.244.2.5', node: 'node2' },
    ]),
    slice('lb-local-none', httpEp, [{ ip: '10.244.2.6', node: 'node2' }]),
    slice('ext', httpEp, [{ ip: '10.244.1.7', node: 'node1' }]),
    slice(
      'multi',
      [
        { name: 'http', port: 8080 },
        { name: 'https', port: 8443 },
      ],
      [
        { ip: '10.244.1.8', node: 'node1' },
        { ip: '10.244.2.8', node: 'node2' },
      ],
    ),
    slice(
      'dns',
      [
        { name: 'dns', port: 5353, protocol: 'UDP' },
        { name: 'dns-tcp', port: 5353, protocol: 'TCP' },
      ],
      [
        { ip: '10.244.1.9', node: 'node1' },
        { ip: '10.244.2.9', node: 'node2' },
      ],
    ),
    slice('sctp', [{ name: 'assoc', port: 9999, protocol: 'SCTP' }], [{ ip: '10.244.2.10', node: 'node2' }]),
    slice('sticky', httpEp, [
      { ip: '10.244.1.11', node: 'node1' },
      { ip: '10.244.2.11', node: 'node2' },
    ]),
    slice('itp-local', httpEp, [
      { ip: '10.244.1.12', node: 'node1' },
      { ip: '10.244.2.12', node: 'node2' },
    ]),
    slice('itp-local-none', httpEp, [{ ip: '10.244.2.13', node: 'node2' }]),
    slice('terminating', httpEp, [
      { ip: '10.244.1.14', node: 'node1', ready: false, serving: true, terminating: true },
      { ip: '10.244.2.14', node: 'node2', ready: false, serving: false, terminating: true },
    ]),
    slice('mixed', httpEp, [
      { ip: '10.244.1.15', node: 'node1', ready: false, serving: true, terminating: true },
      { ip: '10.244.2.15', node: 'node2' },
    ]),
    slice('empty', httpEp, []),
  ];
  return { services, slices };
}

/** The fixture's model as `node` sees it. */
export function fixtureModel(node: NodeName, cluster = fixtureCluster()): ProxyModel {
  return translate({ services: cluster.services, endpointSlices: cluster.slices, nodeName: node, nodeIPs: [NODES[node].ip], clusterCIDR: CLUSTER_CIDR });
}

/** Addresses local to `node` (its underlay address and its bridge). */
export function localAddresses(node: NodeName): string[] {
  return [NODES[node].ip, NODES[node].bridge];
}

/** A table's content in a canonical, order-free form. */
export function dump(t: NftTableState | undefined): string[] {
  if (!t) return [];
  const out: string[] = [];
  // Endpoint map slots depend on the order chains came and went, so a dispatch rule is shown
  // by the endpoints it reaches (`→ [ip . port, …]`) and the endpoint maps are left out.
  const resolve = (r: NftRule): string => {
    const d = r.exprs.find((e) => e.t === 'dnatMap');
    if (!d || d.t !== 'dnatMap') return r.text;
    const map = t.sets.get(d.map);
    const targets = [...Array(d.mod).keys()].map((i) => map?.elements.get(String(d.offset + i)) ?? 'MISSING');
    return `${r.text.replace(/ offset \d+ map @\S+$/, '')} → [${targets.join(', ')}]`;
  };
  for (const [n, c] of t.chains) out.push(`chain ${n}${c.base ? ` [${c.base.type} ${c.base.hook} ${c.base.priority}]` : ''}: ${c.rules.map(resolve).join(' | ')}`);
  for (const [n, s] of t.sets) {
    if (ENDPOINT_MAP_PATTERN.test(n)) continue;
    out.push(`${s.isMap ? 'map' : 'set'} ${n} {${s.type}; ${s.flags.join(',')}; ${s.timeoutSeconds ?? ''}}: ${[...s.elements].map(([k, v]) => `${k}=${v}`).sort().join(', ')}`);
  }
  return out.sort();
}

/** Endpoint map elements that no dispatch rule reaches (a partial sync must not leave any). */
export function orphanTargets(t: NftTableState | undefined): string[] {
  if (!t) return [];
  const reached = new Set<string>();
  for (const c of t.chains.values()) {
    for (const r of c.rules) for (const e of r.exprs) if (e.t === 'dnatMap') for (let i = 0; i < e.mod; i++) reached.add(`${e.map} ${e.offset + i}`);
  }
  const out: string[] = [];
  for (const [n, s] of t.sets) if (ENDPOINT_MAP_PATTERN.test(n)) for (const k of s.elements.keys()) if (!reached.has(`${n} ${k}`)) out.push(`${n} ${k}`);
  return out;
}
