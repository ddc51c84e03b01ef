/**
 * Pod MTU. host-gw forwards pod packets unchanged, so pods get the underlay's MTU. VXLAN wraps
 * every pod frame in outer headers, and a pod that sends underlay-sized packets would have
 * them dropped (or fragmented) at the VTEP, so the device and the pods get the underlay MTU
 * minus the encapsulation:
 *
 *   inner Ethernet 14 + VXLAN 8 + UDP 8 + outer IPv4 20 = 50   (outer IPv6 40: 70)
 *
 * The underlay MTU is read from the kernel, never assumed, since clouds and lab links differ
 * (1500, 9001 jumbo frames, 1450 inside another overlay).
 */
import type { Family } from '../netaddr/index.ts';
import type { Backend } from './types.ts';

export const VXLAN_OVERHEAD_V4 = 50;
export const VXLAN_OVERHEAD_V6 = 70;
/** The smallest MTU IPv4 (576, RFC 791's datagram every host must accept) and IPv6 (1280) allow. */
export function minMTU(family: Family): number {
  return family === 6 ? 1280 : 576;
}

/** The encapsulation cost of a backend over an underlay of the given address family. */
export function overhead(backend: Backend, underlayFamily: Family): number {
  if (backend === 'host-gw') return 0;
  return underlayFamily === 6 ? VXLAN_OVERHEAD_V6 : VXLAN_OVERHEAD_V4;
}

/** The MTU of pods (and of the VXLAN device) for an underlay MTU. */
export function podMTU(backend: Backend, underlayMTU: number, underlayFamily: Family = 4): number {
  return underlayMTU - overhead(backend, underlayFamily);
}
