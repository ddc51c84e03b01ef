/**
 * Checking a DataplaneSpec before anything is planned. The agent's own settings (cluster CIDR,
 * its subnet, the interface, VNI, port) are its configuration: a bad one throws, since no
 * data plane can be built from it. Peers come from other nodes' lease records: a bad peer is
 * reported as an error value and left out, so one broken record cannot take the node's
 * connectivity to every other node down with it.
 */
import { PodnetError } from '../errors/index.ts';
import { assertIfName } from '../kernel/index.ts';
import { type IP, type Prefix, contains, formatIP, formatPrefix, overlaps, parseIP, parseSubnet, sameIP } from '../netaddr/index.ts';
import { BACKENDS, type DataplaneError, type DataplaneSpec, type NodeSpec } from './types.ts';

export const DEFAULT_VNI = 1;
export const DEFAULT_VXLAN_PORT = 4789;

export class SpecError extends PodnetError {
  override readonly name = 'SpecError';
  constructor(message: string) {
    super('PODNET_BAD_SPEC', message);
  }
}

/** A unicast, locally administered MAC written as six lowercase pairs. */
const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

export function isUnicastMac(mac: string): boolean {
  return typeof mac === 'string' && MAC_RE.test(mac) && (parseInt(mac.slice(0, 2), 16) & 1) === 0;
}

/** A node name as it may appear in messages and the VTEP derivation. */
const NAME_RE = /^[A-Za-z0-9]([A-Za-z0-9._-]{0,251}[A-Za-z0-9])?$/;

export interface Node {
  name: string;
  ip: IP;
  subnet: Prefix;
  /** As given (lowercased), if given. */
  vtepMac: string | undefined;
}

export interface CheckedSpec {
  cluster: Prefix;
  self: Node;
  peers: Node[];
  vni: number;
  port: number;
  errors: DataplaneError[];
}

function parseOr<T>(f: () => T): T | undefined {
  try {
    return f();
  } catch {
    return undefined;
  }
}

function checkSelf(spec: DataplaneSpec, cluster: Prefix): Node {
  const s = spec.self;
  if (!s || typeof s !== 'object') throw new SpecError('self: the node itself is missing');
  if (typeof s.name !== 'string' || !NAME_RE.test(s.name)) throw new SpecError(`self.name "${String(s.name)}" is not a node name`);
  const ip = parseOr(() => parseIP(s.nodeIP));
  if (!ip) throw new SpecError(`self.nodeIP "${String(s.nodeIP)}" is not an IP address`);
  const subnet = parseOr(() => parseSubnet(s.subnet));
  if (!subnet) throw new SpecError(`self.subnet "${String(s.subnet)}" is not a subnet (like 10.244.1.0/24)`);
  if (!contains(cluster, subnet.ip) || subnet.bits < cluster.bits) {
    throw new SpecError(`self.subnet ${formatPrefix(subnet)} is not inside the cluster CIDR ${formatPrefix(cluster)}`);
  }
  const vtepMac = s.vtepMac?.toLowerCase();
  if (vtepMac !== undefined && !isUnicastMac(vtepMac)) throw new SpecError(`self.vtepMac "${s.vtepMac}" is not a unicast MAC address`);
  return { name: s.name, ip, subnet, vtepMac };
}

/** Validates the spec; throws SpecError for the node's own settings, reports bad peers. */
export function checkSpec(spec: DataplaneSpec): CheckedSpec {
  if (!BACKENDS.includes(spec.backend)) throw new SpecError(`backend "${String(spec.backend)}" is not one of ${BACKENDS.join(', ')}`);
  const cluster = parseOr(() => parseSubnet(spec.clusterCIDR));
  if (!cluster) throw new SpecError(`clusterCIDR "${String(spec.clusterCIDR)}" is not a subnet (like 10.244.0.0/16)`);
  try {
    assertIfName(spec.underlayIface, 'underlay interface');
  } catch (err) {
    throw new SpecError((err as Error).message);
  }
  const vni = spec.vni ?? DEFAULT_VNI;
  if (!Number.isInteger(vni) || vni < 1 || vni > 0xffffff) throw new SpecError(`vni ${vni} is not in 1-16777215`);
  const port = spec.port ?? DEFAULT_VXLAN_PORT;
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new SpecError(`port ${port} is not in 1-65535`);
  const self = checkSelf(spec, cluster);

  const errors: DataplaneError[] = [];
  const peers: Node[] = [];
  const names = new Set<string>([self.name]);
  const bad = (peer: NodeSpec, message: string): void => {
    errors.push({ code: 'PODNET_BAD_PEER', peer: String(peer.name), message: `peer ${String(peer.name)}: ${message}; left out` });
  };
  for (const p of spec.peers ?? []) {
    if (p.name === self.name) continue;
    if (typeof p.name !== 'string' || !NAME_RE.test(p.name)) {
      bad(p, 'the name is not a node name');
      continue;
    }
    if (names.has(p.name)) {
      bad(p, 'a second record with the same name');
      continue;
    }
    const ip = parseOr(() => parseIP(p.nodeIP));
    if (!ip) {
      bad(p, `node IP "${String(p.nodeIP)}" is not an IP address`);
      continue;
    }
    const subnet = parseOr(() => parseSubnet(p.subnet));
    if (!subnet) {
      bad(p, `subnet "${String(p.subnet)}" is not a subnet`);
      continue;
    }
    if (!contains(cluster, subnet.ip) || subnet.bits < cluster.bits) {
      bad(p, `subnet ${formatPrefix(subnet)} is not inside the cluster CIDR ${formatPrefix(cluster)}`);
      continue;
    }
    if (sameIP(ip, self.ip)) {
      bad(p, `node IP ${formatIP(ip)} is this node's own address`);
      continue;
    }
    const clash = [self, ...peers].find((n) => overlaps(n.subnet, subnet));
    if (clash) {
      bad(p, `subnet ${formatPrefix(subnet)} overlaps ${clash.name}'s ${formatPrefix(clash.subnet)}`);
      continue;
    }
    const vtepMac = p.vtepMac?.toLowerCase();
    if (vtepMac !== undefined && !isUnicastMac(vtepMac)) {
      bad(p, `VTEP MAC "${p.vtepMac}" is not a unicast MAC address`);
      continue;
    }
    names.add(p.name);
    peers.push({ name: p.name, ip, subnet, vtepMac });
  }
  // A stable order, so that plans (and the batches made from them) do not depend on the
  // order in which lease records arrived.
  peers.sort((a, b) => (a.subnet.ip.value < b.subnet.ip.value ? -1 : a.subnet.ip.value > b.subnet.ip.value ? 1 : 0));
  return { cluster, self, peers, vni, port, errors };
}
