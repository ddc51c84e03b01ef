/**
 * The lab's address plan (shared/DESIGN.md, "Address plan of the lab") as one constant, and
 * the pure planner that turns `lab up` options into namespaces, links and addresses.
 *
 * The lab is a cluster made of network namespaces on one host:
 *
 *   ext (203.0.113.10) ── rtr (203.0.113.1 | 192.168.1.1 [| 192.168.2.1])
 *                              │
 *   sw: bridge seg1 (192.168.1.0/24) ── cp (192.168.1.2), node1 (.11), node2 (.12), …
 *       bridge seg2 (192.168.2.0/24, routed topology only) ── the even nodes (192.168.2.(10+i))
 *
 * Every namespace is named `pnl.<lab>.<role>`: the prefix tells a lab's namespaces from
 * everything else on the host (and from another lab's), so `down` and a crashed lab's clean-up
 * can find exactly what the lab made and nothing more.
 */
import { PodnetError } from '../errors/index.ts';

export const ADDRESS_PLAN = {
  underlay: '192.168.1.0/24',
  underlay2: '192.168.2.0/24',
  router: '192.168.1.1',
  router2: '192.168.2.1',
  controlPlane: '192.168.1.2',
  /** node i is 192.168.1.(10+i) (or 192.168.2.(10+i) on the second segment). */
  nodeHostBase: 10,
  clusterCIDR: '10.244.0.0/16',
  nodeSubnetBits: 24,
  serviceCIDR: '10.96.0.0/12',
  dnsServiceIP: '10.96.0.10',
  nodePorts: [30000, 32767] as const,
  loadBalancerPool: ['192.168.1.200', '192.168.1.250'] as const,
  internet: '203.0.113.0/24',
  internetRouter: '203.0.113.1',
  externalHost: '203.0.113.10',
  etcdPort: 2379,
} as const;

export type Backend = 'host-gw' | 'vxlan';
export type Topology = 'flat' | 'routed';
export type ProxyMode = 'nftables' | 'iptables';

export interface LabOptions {
  name: string;
  nodes: number;
  backend: Backend;
  topology: Topology;
  proxy: ProxyMode;
}

export const DEFAULT_OPTIONS: LabOptions = { name: 'podnet', nodes: 3, backend: 'vxlan', topology: 'flat', proxy: 'nftables' };
export const MAX_NODES = 60;

export class LabError extends PodnetError {
  override readonly name = 'LabError';
}

const LAB_NAME = /^[a-z0-9]([a-z0-9-]{0,14}[a-z0-9])?$/;

export function validateOptions(o: LabOptions): LabOptions {
  if (!LAB_NAME.test(o.name)) {
    throw new LabError('PODNET_LAB_BAD_NAME', `lab name "${o.name}" must be 1-16 lowercase letters, digits or '-' (not at either end)`);
  }
  if (!Number.isInteger(o.nodes) || o.nodes < 1 || o.nodes > MAX_NODES) {
    throw new LabError('PODNET_LAB_BAD_NODES', `--nodes must be a whole number from 1 to ${MAX_NODES}, not ${o.nodes}`);
  }
  if (o.backend !== 'host-gw' && o.backend !== 'vxlan') throw new LabError('PODNET_LAB_BAD_BACKEND', `--backend must be host-gw or vxlan, not "${o.backend}"`);
  if (o.topology !== 'flat' && o.topology !== 'routed') throw new LabError('PODNET_LAB_BAD_TOPOLOGY', `--topology must be flat or routed, not "${o.topology}"`);
  if (o.proxy !== 'nftables' && o.proxy !== 'iptables') throw new LabError('PODNET_LAB_BAD_PROXY', `--proxy must be nftables or iptables, not "${o.proxy}"`);
  return o;
}

export function nsPrefix(lab: string): string {
  return `pnl.${lab}.`;
}

export function nsName(lab: string, role: string): string {
  return `${nsPrefix(lab)}${role}`;
}

export interface HostPlan {
  /** Role: sw, rtr, ext, cp, node1, … */
  role: string;
  netns: string;
  /** The host's underlay address with prefix length, on its eth0. */
  address: string;
  gateway: string;
  /** Which switch segment its eth0 plugs into. */
  segment: 'seg1' | 'seg2' | 'inet';
}

export interface NodePlan extends HostPlan {
  name: string;
  index: number;
  ip: string;
}

export function nodeName(i: number): string {
  return `node${i}`;
}

/** Where node i sits: in the routed topology even nodes are on the second segment. */
export function planNode(lab: string, i: number, topology: Topology): NodePlan {
  const second = topology === 'routed' && i % 2 === 0;
  const ip = second ? `192.168.2.${ADDRESS_PLAN.nodeHostBase + i}` : `192.168.1.${ADDRESS_PLAN.nodeHostBase + i}`;
  return {
    role: nodeName(i),
    name: nodeName(i),
    index: i,
    netns: nsName(lab, nodeName(i)),
    ip,
    address: `${ip}/24`,
    gateway: second ? ADDRESS_PLAN.router2 : ADDRESS_PLAN.router,
    segment: second ? 'seg2' : 'seg1',
  };
}

export interface LabPlan {
  options: LabOptions;
  sw: string;
  rtr: string;
  ext: string;
  cp: HostPlan;
  nodes: NodePlan[];
}

export function planLab(options: LabOptions): LabPlan {
  const o = validateOptions(options);
  return {
    options: o,
    sw: nsName(o.name, 'sw'),
    rtr: nsName(o.name, 'rtr'),
    ext: nsName(o.name, 'ext'),
    cp: { role: 'cp', netns: nsName(o.name, 'cp'), address: `${ADDRESS_PLAN.controlPlane}/24`, gateway: ADDRESS_PLAN.router, segment: 'seg1' },
    nodes: Array.from({ length: o.nodes }, (_, k) => planNode(o.name, k + 1, o.topology)),
  };
}

/**
 * The `ip -batch` lines that plug a host into the switch: a veth pair made inside the switch
 * namespace, its far end moved into the host's namespace as eth0, addressed and routed there.
 * Returned per namespace, because `ip -batch` runs in one namespace at a time.
 */
export function planPlug(sw: string, host: HostPlan, swPort: string): { sw: string[]; host: string[] } {
  return {
    sw: [`link add ${swPort} type veth peer name eth0 netns ${host.netns}`, `link set ${swPort} master ${host.segment} up`],
    host: ['link set lo up', 'link set eth0 up', `addr add ${host.address} dev eth0`, `route add default via ${host.gateway}`],
  };
}
