/**
 * Egress masquerade: pods keep their own addresses inside the cluster (the Kubernetes model
 * forbids NAT between pods), but traffic that leaves the cluster gets the node's address, as
 * nothing outside knows how to route back to a pod subnet.
 *
 *   saddr in cluster, daddr in cluster   → return (pod to pod, never NATed)
 *   saddr in cluster, daddr multicast    → return
 *   saddr in cluster, anything else      → masquerade (the address of the outgoing interface:
 *                                          the node IP on the underlay), fully-random ports
 *
 * Traffic to other nodes' own addresses is masqueraded too (it leaves the pod network; in a
 * routed topology the router would not know the way back to the pod). Traffic to this node
 * itself never reaches postrouting.
 *
 * The rules live in podnet's own table `inet podnet`, in one chain of their own; other tables
 * are never touched, and other podnet chains in the table (service proxy, policy) are left
 * alone. The script adds the table and chain if missing, flushes the chain and refills it,
 * all in one `nft -f -` transaction: nftables swaps the rule set atomically, and NAT is
 * decided on a connection's first packet and kept in conntrack, so rewriting the chain never
 * disturbs established flows.
 */
import type { Prefix } from '../netaddr/index.ts';
import { formatPrefix } from '../netaddr/index.ts';
import type { MasqPlan } from './types.ts';

export const EGRESS_TABLE = 'podnet';
export const EGRESS_CHAIN = 'egress-masq';

const HEADER = 'type nat hook postrouting priority srcnat; policy accept;';

/** Pure: the nft transaction (and the expected listing) for the masquerade chain. */
export function planEgressMasq(cluster: Prefix): MasqPlan {
  const t = `inet ${EGRESS_TABLE}`;
  const c = formatPrefix(cluster);
  const ipf = cluster.ip.family === 4 ? 'ip' : 'ip6';
  const multicast = cluster.ip.family === 4 ? '224.0.0.0/4' : 'ff00::/8';
  const rules = [
    `${ipf} saddr ${c} ${ipf} daddr ${c} return`,
    `${ipf} saddr ${c} ${ipf} daddr ${multicast} return`,
    `${ipf} saddr ${c} masquerade fully-random`,
  ];
  const script = [
    `add table ${t}`,
    `add chain ${t} ${EGRESS_CHAIN} { ${HEADER} }`,
    `flush chain ${t} ${EGRESS_CHAIN}`,
    ...rules.map((r) => `add rule ${t} ${EGRESS_CHAIN} ${r}`),
  ];
  return { table: t, chain: EGRESS_CHAIN, script: script.join('\n') + '\n', listing: [HEADER, ...rules] };
}

/** The nft script that removes the masquerade chain (the table stays: it may hold others). */
export function planEgressMasqRemoval(): string {
  return `delete chain inet ${EGRESS_TABLE} ${EGRESS_CHAIN}\n`;
}

/**
 * The body of a `nft list chain` answer: its lines trimmed, without the table/chain framing
 * and braces, so it can be compared with a plan's `listing`.
 */
export function chainBody(listing: string): string[] {
  return listing
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && l !== '}' && !/^(table|chain) \S+( \S+)? \{$/.test(l));
}

/** Whether the kernel's chain is exactly the planned one. */
export function masqMatches(plan: MasqPlan, listing: string | undefined): boolean {
  if (listing === undefined) return false;
  const body = chainBody(listing);
  return body.length === plan.listing.length && body.every((l, i) => l === plan.listing[i]);
}
