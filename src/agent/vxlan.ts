/**
 * The VXLAN backend, in flannel's layout: one device per node, and per peer three static
 * entries, so the kernel never floods, never multicasts and never learns:
 *
 *   route   10.244.2.0/24 via 10.244.2.0 dev podnet.1 onlink        (peer subnet → its VTEP "gateway")
 *   neigh   10.244.2.0 lladdr <peer VTEP MAC> dev podnet.1 nud permanent   (no ARP across the overlay)
 *   fdb     <peer VTEP MAC> dev podnet.1 dst <peer node IP> self permanent  (which underlay host has that MAC)
 *
 * The device carries the node subnet's network address as a /32 (10.244.1.0/32): that is the
 * source the node uses when it talks to remote pods itself, and the address peers route to as
 * this node's "gateway" (their neighbour entry maps it to our MAC).
 *
 * Why no `group`/`remote` and `nolearning`: with a multicast group every unknown destination
 * would be flooded to all nodes, which needs multicast on the underlay (clouds have none);
 * learning would let any host that can send UDP to 4789 teach the kernel MAC locations.
 * All the kernel needs to know comes from the lease records, which is why the VTEP MAC must
 * be stable: it is derived from the node name, so it survives agent restarts and device
 * re-creation, and peers can even compute it when a record lacks it.
 *
 * The device's TX checksum offload is turned off (`ethtool -K podnet.1 tx off`), as flannel
 * does: with offload on, some kernels and virtual NICs send VXLAN-encapsulated packets whose
 * inner checksums are never filled in, and the receiving pod drops them.
 */
import { createHash } from 'node:crypto';
import { formatIP, formatPrefix } from '../netaddr/index.ts';
import { podMTU } from './mtu.ts';
import type { CheckedSpec } from './spec.ts';
import type { DataplaneError, FdbEntry, NeighEntry, RouteEntry, Underlay, VxlanDevice } from './types.ts';

export const VXLAN_PREFIX = 'podnet.';

/** `podnet.<vni>`: at most 7 + 8 = 15 bytes, the kernel's limit. */
export function vxlanDeviceName(vni: number): string {
  return `${VXLAN_PREFIX}${vni}`;
}

/** Whether a device name is one of podnet's VXLAN devices (any VNI). */
export function isVxlanDeviceName(name: string): boolean {
  return /^podnet\.[1-9][0-9]{0,7}$/.test(name);
}

/**
 * The node's VTEP MAC: the first six bytes of SHA-256 of the node name, with the multicast
 * bit cleared and the locally administered bit set (x2:, x6:, xa:, xe:).
 */
export function vtepMac(nodeName: string): string {
  const b = createHash('sha256').update(`podnet-vtep/${nodeName}`).digest().subarray(0, 6);
  b[0] = (b[0]! & 0xfc) | 0x02;
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');
}

export interface VxlanPlan {
  device: VxlanDevice;
  routes: RouteEntry[];
  neighs: NeighEntry[];
  fdb: FdbEntry[];
  errors: DataplaneError[];
}

/** Pure: the VXLAN device and the per-peer route, neighbour and FDB entries. */
export function planVxlan(spec: CheckedSpec, underlay: Underlay): VxlanPlan {
  const family = spec.self.ip.family;
  const dev = vxlanDeviceName(spec.vni);
  const hostBits = spec.self.subnet.ip.family === 4 ? 32 : 128;
  const device: VxlanDevice = {
    name: dev,
    vni: spec.vni,
    port: spec.port,
    local: formatIP(spec.self.ip),
    dev: underlay.name,
    mac: spec.self.vtepMac ?? vtepMac(spec.self.name),
    mtu: podMTU('vxlan', underlay.mtu, family),
    address: `${formatIP(spec.self.subnet.ip)}/${hostBits}`,
  };
  const routes: RouteEntry[] = [];
  const neighs: NeighEntry[] = [];
  const fdb: FdbEntry[] = [];
  const errors: DataplaneError[] = [];
  const macs = new Map<string, string>([[device.mac, spec.self.name]]);
  for (const peer of spec.peers) {
    if (peer.ip.family !== family) {
      errors.push({
        code: 'PODNET_BAD_PEER',
        peer: peer.name,
        message: `peer ${peer.name}: its node IP ${formatIP(peer.ip)} is IPv${peer.ip.family} but this node's VTEP is IPv${family}; left out`,
      });
      continue;
    }
    const mac = peer.vtepMac ?? vtepMac(peer.name);
    const owner = macs.get(mac);
    if (owner !== undefined) {
      errors.push({ code: 'PODNET_BAD_PEER', peer: peer.name, message: `peer ${peer.name}: VTEP MAC ${mac} is also ${owner}'s; left out` });
      continue;
    }
    macs.set(mac, peer.name);
    const gw = formatIP(peer.subnet.ip);
    routes.push({ dst: formatPrefix(peer.subnet), via: gw, dev, onlink: true });
    neighs.push({ ip: gw, mac, dev });
    fdb.push({ mac, dst: formatIP(peer.ip), dev });
  }
  return { device, routes, neighs, fdb, errors };
}
