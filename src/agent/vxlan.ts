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
 * TX checksum offload, and why it is only turned off on old kernels (`--vxlan-tx-checksum`,
 * default `auto`). The "63-second delay" of 2020 (kubernetes/kubernetes#88986, flannel#1279,
 * calico#3145): a VXLAN device sends its outer UDP header with checksum 0 (IPv4 allows "no
 * checksum"), while the inner packet is left CHECKSUM_PARTIAL for offload. When netfilter
 * then source-NATs that *outer* packet with a port change (kube-proxy's `MASQUERADE
 * --random-fully`, which caught the encapsulated packets because they inherited the inner
 * packet's masquerade mark), udp_manip_pkt() "updated" the zero checksum as if it were a real
 * one because of the inner packet's ip_summed. The receiver dropped every such packet as a bad
 * UDP checksum, and TCP got through only after its SYN retries (1+2+4+8+16+32 = 63 s). The
 * kernel fix is ea64d8d6c675 "netfilter: nat: never update the UDP checksum when it's 0"
 * (v5.7; stable 5.6.13, 5.4.41, 4.19.123, 4.14.181); kube-proxy also stopped masquerading
 * the outer packets (kubernetes/kubernetes#92035, unmark before masquerade). Turning TX
 * checksum offload off on the VXLAN device avoids the bug, and costs a lot: it also turns
 * off TSO/GSO for the device, so every inner segment is checksummed in software and
 * encapsulated one by one (0.38–0.57 of the TCP throughput in bench/dataplane.ts runs).
 * Calico's felix decided the same by kernel version (ChecksumOffloadBroken = kernel < 5.7,
 * felix#2811, with a FeatureDetectOverride), later went back and forth on all kernels
 * (calico#6842, #8746, #9036) because of *NIC* bugs (vmxnet3 VXLAN offload on port 4789,
 * calico#4727), which no kernel version tells and which `--vxlan-tx-checksum off` is for.
 *
 * On a fixed kernel (6.18) the stall does not come back even when provoked: a VXLAN pair made
 * with `noudpcsum` (zero outer checksums, the 2020 default; here a device made without the
 * option computes them), its outer packets masqueraded fully-random on the sender (conntrack
 * showed the new source ports), kept "no cksum" on the wire, the receiver counted no
 * UdpInCsumErrors, and TCP went through at once with offload on.
 *
 * podnet itself never NATs outer VXLAN packets (its masquerade matches pod sources only), so
 * `auto` turns offload off only where the kernel has the bug: a release below 5.7 that is not
 * a fixed stable one. Distribution kernels that backported the fix under an old version
 * number (RHEL 8's 4.18, Ubuntu's 5.4.0-N) are treated as affected: off is the safe side, and
 * `--vxlan-tx-checksum on` says otherwise.
 */
import { createHash } from 'node:crypto';
import { compareIP, formatIP, formatPrefix, parseIP } from '../netaddr/index.ts';
import { EGRESS_TABLE } from './masq.ts';
import { podMTU } from './mtu.ts';
import type { CheckedSpec } from './spec.ts';
import type { DataplaneError, FdbEntry, NeighEntry, NotrackPlan, RouteEntry, TxChecksumDecision, TxChecksumMode, Underlay, VxlanDevice } from './types.ts';

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

/** The chain that untracks incoming outer packets (prerouting) and the one for outgoing ones (output). */
export const NOTRACK_IN_CHAIN = 'vxlan-notrack-in';
export const NOTRACK_OUT_CHAIN = 'vxlan-notrack-out';
export const NOTRACK_CHAINS: readonly string[] = [NOTRACK_IN_CHAIN, NOTRACK_OUT_CHAIN];

const NOTRACK_IN_HEADER = 'type filter hook prerouting priority raw; policy accept;';
const NOTRACK_OUT_HEADER = 'type filter hook output priority raw; policy accept;';

/**
 * Pure: the chains that keep the VXLAN *outer* packets out of connection tracking, planned
 * from the device and the FDB entries (the peers' node IPs, the only remote VTEPs) of a VXLAN
 * plan; undefined when there is no device (host-gw) or no peer.
 *
 * Why: with any nat chain in the namespace (podnet's masquerade, the service proxy's) the
 * kernel tracks every packet, and an encapsulated packet twice: the inner packet where it is
 * forwarded, and the outer UDP packet node → node (output on the sender, prerouting on the
 * receiver). The outer packets must never be NATed anyway (NATing them is what caused the
 * VXLAN checksum stall, kubernetes#88986; kube-proxy stopped masquerading them, #92035), and
 * no rule of podnet or the proxy looks at their conntrack state, so a `notrack` at raw
 * priority (before conntrack, -200) saves one conntrack lookup per packet on each side.
 * The inner packets stay tracked: the encapsulation and decapsulation scrub the packet's
 * conntrack entry (skb_scrub_packet), so the untracked mark of the outer packet does not
 * carry over to the inner one, which is tracked as before (service replies are de-NATed).
 *
 * The rules match exactly the tunnel's packets: UDP to the VXLAN port from a peer's node IP
 * to this node's VTEP address (prerouting), and from this node's VTEP address to a peer's
 * (output). Any other UDP to that port (from a host that is not a node) stays tracked, so a
 * host firewall's `ct state` rules see it as before. nft lists an anonymous set sorted by
 * value and a one-element set as a plain address, so the plan writes them that way.
 */
export function planVxlanNotrack(device: VxlanDevice | undefined, fdb: readonly FdbEntry[]): NotrackPlan | undefined {
  if (!device) return undefined;
  const local = parseIP(device.local);
  // Sorted by value and without repeats (a Set keeps the first-seen order).
  const peers = [
    ...new Set(
      fdb
        .map((f) => parseIP(f.dst))
        .filter((ip) => ip.family === local.family)
        .sort(compareIP)
        .map(formatIP),
    ),
  ];
  if (peers.length === 0) return undefined;
  const ipf = local.family === 4 ? 'ip' : 'ip6';
  const set = peers.length === 1 ? peers[0]! : `{ ${peers.join(', ')} }`;
  const me = formatIP(local);
  // Cheapest and most selective match first: these chains see every packet of the node
  // (forwarded and bridged pod packets in prerouting too), and a forwarded pod packet fails
  // the one address compare without a port load or a set lookup.
  const inRule = `${ipf} daddr ${me} udp dport ${device.port} ${ipf} saddr ${set} notrack`;
  const outRule = `${ipf} saddr ${me} udp dport ${device.port} ${ipf} daddr ${set} notrack`;
  const t = `inet ${EGRESS_TABLE}`;
  const chain = (name: string, header: string, rule: string): string[] => [
    `add chain ${t} ${name} { ${header} }`,
    `flush chain ${t} ${name}`,
    `add rule ${t} ${name} ${rule}`,
  ];
  const script = [`add table ${t}`, ...chain(NOTRACK_IN_CHAIN, NOTRACK_IN_HEADER, inRule), ...chain(NOTRACK_OUT_CHAIN, NOTRACK_OUT_HEADER, outRule)];
  return {
    table: t,
    script: script.join('\n') + '\n',
    chains: { [NOTRACK_IN_CHAIN]: [NOTRACK_IN_HEADER, inRule], [NOTRACK_OUT_CHAIN]: [NOTRACK_OUT_HEADER, outRule] },
  };
}

/** The nft commands that remove the given notrack chains (the table stays: it holds others). */
export function planVxlanNotrackRemoval(present: readonly string[]): string {
  return present.map((name) => `delete chain inet ${EGRESS_TABLE} ${name}\n`).join('');
}

/** `6.18.44-fc-v669` → [6, 18, 44] (a missing patch level is 0); undefined when unreadable. */
export function parseKernelRelease(release: string): [number, number, number] | undefined {
  const m = /^(\d+)\.(\d+)(?:\.(\d+))?/.exec(release.trim());
  return m ? [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)] : undefined;
}

/** The stable series that got ea64d8d6c675 backported, with their first fixed release. */
const FIXED_STABLE: ReadonlyArray<readonly [number, number, number]> = [
  [5, 6, 13],
  [5, 4, 41],
  [4, 19, 123],
  [4, 14, 181],
];

/**
 * Whether this kernel release has the NAT checksum bug described above: below 5.7 and not a
 * fixed stable release. A 5.7 release candidate counts as affected (the fix came in late in
 * the 5.7 cycle). undefined: the release could not be read.
 */
export function hasNatChecksumBug(release: string): boolean | undefined {
  const v = parseKernelRelease(release);
  if (!v) return undefined;
  const [major, minor, patch] = v;
  if (major > 5 || (major === 5 && minor > 7)) return false;
  if (major === 5 && minor === 7) return /^5\.7(\.0)?-rc/.test(release.trim());
  const series = FIXED_STABLE.find(([a, b]) => a === major && b === minor);
  return !(series && patch >= series[2]);
}

/** Pure: what `--vxlan-tx-checksum MODE` comes to on a kernel of this release. */
export function decideTxChecksum(mode: TxChecksumMode, kernel: string): TxChecksumDecision {
  if (mode === 'off') return { mode, offload: false, kernel, reason: 'turned off as asked (--vxlan-tx-checksum off)' };
  if (mode === 'on') return { mode, offload: true, kernel, reason: "the kernel's default, as asked (--vxlan-tx-checksum on)" };
  const bug = hasNatChecksumBug(kernel);
  if (bug === undefined) return { mode, offload: false, kernel, reason: `kernel release "${kernel}" is unreadable: turned off to be safe` };
  return bug
    ? { mode, offload: false, kernel, reason: `kernel ${kernel} predates the fix of NATed VXLAN checksums (ea64d8d6c675: 5.7, 5.6.13, 5.4.41, 4.19.123, 4.14.181): turned off` }
    : { mode, offload: true, kernel, reason: `kernel ${kernel} has the fix of NATed VXLAN checksums (ea64d8d6c675): left on` };
}
