/**
 * Outbound masquerade for ipMasq, in nftables (the reference plugin uses iptables chains).
 *
 * One table `podnet-bridge` holds, per network, a chain that leaves traffic to the pod's own
 * subnet and to multicast alone and masquerades the rest; a verdict map keyed by pod address
 * jumps to that chain. Adding or removing a pod is then one map element, and every change is
 * a single `nft -f` transaction that is safe to repeat: the element is added before it is
 * deleted, so deleting an absent one is not an error (DEL stays idempotent).
 */
import { createHash } from 'node:crypto';
import type { Family } from '../netaddr/index.ts';

export const MASQ_TABLE = 'podnet-bridge';

export interface MasqEntry {
  ip: string;
  /** The pod's own subnet (not masqueraded). */
  subnet: string;
  family: Family;
}

export function networkChain(network: string): string {
  return 'net-' + createHash('sha256').update(network).digest('hex').slice(0, 12);
}

/** Pure: the nft script for adding or removing pods' masquerade entries. */
export function planMasq(network: string, entries: MasqEntry[], op: 'add' | 'delete'): string {
  const t = `inet ${MASQ_TABLE}`;
  const chain = networkChain(network);
  const lines = [
    `add table ${t}`,
    `add map ${t} masq4 { type ipv4_addr : verdict; }`,
    `add map ${t} masq6 { type ipv6_addr : verdict; }`,
    `add chain ${t} postrouting { type nat hook postrouting priority srcnat; }`,
    `flush chain ${t} postrouting`,
    `add rule ${t} postrouting ip saddr vmap @masq4`,
    `add rule ${t} postrouting ip6 saddr vmap @masq6`,
    `add chain ${t} ${chain}`,
  ];
  if (op === 'add') {
    lines.push(`flush chain ${t} ${chain}`);
    for (const e of entries) lines.push(`add rule ${t} ${chain} ${e.family === 4 ? 'ip' : 'ip6'} daddr ${e.subnet} return`);
    lines.push(`add rule ${t} ${chain} ip daddr 224.0.0.0/4 return`, `add rule ${t} ${chain} ip6 daddr ff00::/8 return`, `add rule ${t} ${chain} masquerade`);
  }
  for (const e of entries) {
    const map = e.family === 4 ? 'masq4' : 'masq6';
    lines.push(`add element ${t} ${map} { ${e.ip} : jump ${chain} }`);
    if (op === 'delete') lines.push(`delete element ${t} ${map} { ${e.ip} : jump ${chain} }`);
  }
  return lines.join('\n') + '\n';
}
