/**
 * The host-gw backend: the tutorial's `ip route add 10.244.2.0/24 via 192.168.1.12`, one route
 * per peer subnet via the peer's node IP. No encapsulation, no MTU cost, nothing but routes.
 *
 * Its one condition is that every peer is a direct neighbour on the underlay: the route's
 * next hop is the peer itself, so the kernel must be able to ARP for it. A peer behind a
 * router would get a route the kernel refuses (or, with `onlink`, one that sends frames into
 * the void), and the router in between knows nothing of pod subnets anyway. So the planner
 * checks each peer against the underlay's connected prefixes and reports an unreachable one
 * as an error value, telling the operator to switch to VXLAN, instead of installing a
 * blackhole.
 */
import { type Prefix, contains, formatIP, formatPrefix, parsePrefix } from '../netaddr/index.ts';
import type { CheckedSpec, Node } from './spec.ts';
import type { DataplaneError, RouteEntry, Underlay } from './types.ts';

export const UNREACHABLE = 'PODNET_PEER_UNREACHABLE';

/** The underlay's directly connected prefixes (from its addresses). */
export function connectedPrefixes(underlay: Underlay): Prefix[] {
  return underlay.addresses.map((a) => parsePrefix(a, false).prefix);
}

/** Whether a peer's node IP lies on a directly connected underlay subnet. */
export function isDirectNeighbour(underlay: Underlay, peer: Node): boolean {
  return connectedPrefixes(underlay).some((p) => contains(p, peer.ip));
}

export function unreachableMessage(peer: Node): string {
  return `host-gw needs nodes on one L2 segment; ${peer.name} (${formatIP(peer.ip)}) is behind a router; use --backend vxlan`;
}

export interface HostGwPlan {
  routes: RouteEntry[];
  errors: DataplaneError[];
}

/** Pure: the routes for host-gw, and the peers it cannot reach. */
export function planHostGw(spec: CheckedSpec, underlay: Underlay): HostGwPlan {
  const routes: RouteEntry[] = [];
  const errors: DataplaneError[] = [];
  for (const peer of spec.peers) {
    if (peer.subnet.ip.family !== peer.ip.family) {
      errors.push({
        code: UNREACHABLE,
        peer: peer.name,
        message: `host-gw cannot route the IPv${peer.subnet.ip.family} subnet ${formatPrefix(peer.subnet)} via ${peer.name}'s IPv${peer.ip.family} address ${formatIP(peer.ip)}; use --backend vxlan`,
      });
      continue;
    }
    if (!isDirectNeighbour(underlay, peer)) {
      errors.push({ code: UNREACHABLE, peer: peer.name, message: unreachableMessage(peer) });
      continue;
    }
    routes.push({ dst: formatPrefix(peer.subnet), via: formatIP(peer.ip), dev: underlay.name, onlink: false });
  }
  return { routes, errors };
}
