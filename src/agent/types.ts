/**
 * The values the data plane is planned from and planned into. Everything here is plain data:
 * the agent's lease records become a `DataplaneSpec`, the kernel's `ip -j` answers become a
 * `KernelState`, and the planners turn a spec (plus a few facts about the underlay) into a
 * `DesiredState`. Only the executor in dataplane.ts ever talks to the kernel.
 */

export type Backend = 'host-gw' | 'vxlan';

export const BACKENDS: readonly Backend[] = ['host-gw', 'vxlan'];

/**
 * TX checksum offload on the VXLAN device (`--vxlan-tx-checksum`): `auto` turns it off only
 * on kernels with the NAT checksum bug (see vxlan.ts), `off` always turns it off, `on` leaves
 * the kernel's default (on), turning it back on if an earlier run turned it off.
 */
export type TxChecksumMode = 'auto' | 'off' | 'on';

export const TX_CHECKSUM_MODES: readonly TxChecksumMode[] = ['auto', 'off', 'on'];

/** What a mode comes to on this kernel; logged at start-up and exported as a metric. */
export interface TxChecksumDecision {
  mode: TxChecksumMode;
  /** Whether the device keeps TX checksum offload (true: the kernel default). */
  offload: boolean;
  /** The kernel release the decision was made for (`uname -r`). */
  kernel: string;
  /** Why, in a sentence. */
  reason: string;
}

/** One node as the subnet leases describe it. */
export interface NodeSpec {
  name: string;
  /** The node's address on the underlay, e.g. 192.168.1.12. */
  nodeIP: string;
  /** The node's pod subnet, e.g. 10.244.2.0/24. */
  subnet: string;
  /** The node's VTEP MAC (vxlan); derived from the name when absent. */
  vtepMac?: string;
}

export interface DataplaneSpec {
  self: NodeSpec;
  /** The other nodes; an entry named like `self` is ignored. */
  peers: readonly NodeSpec[];
  /** The cluster's pod network, e.g. 10.244.0.0/16. */
  clusterCIDR: string;
  backend: Backend;
  /** The node's interface on the underlay, e.g. eth0. */
  underlayIface: string;
  /** VXLAN network identifier (default 1). */
  vni?: number;
  /** VXLAN UDP port (default 4789, the IANA port). */
  port?: number;
  /** Masquerade pod traffic that leaves the cluster (default true). */
  masquerade?: boolean;
}

/** What the executor learns about the underlay interface before planning. */
export interface Underlay {
  name: string;
  mtu: number;
  /** Global addresses with their prefix length, e.g. 192.168.1.11/24. */
  addresses: string[];
}

/**
 * A problem the planner or the executor reports as a value: a peer that cannot be reached by
 * the chosen backend, a command that failed. The rest of the data plane is still applied.
 */
export interface DataplaneError {
  code: string;
  message: string;
  /** The peer the problem concerns, if any. */
  peer?: string;
}

export interface RouteEntry {
  dst: string;
  via: string;
  dev: string;
  onlink: boolean;
}

export interface NeighEntry {
  ip: string;
  mac: string;
  dev: string;
}

export interface FdbEntry {
  mac: string;
  /** The remote VTEP (the peer's node IP). */
  dst: string;
  dev: string;
}

export interface VxlanDevice {
  name: string;
  vni: number;
  port: number;
  /** The local VTEP address (this node's IP). */
  local: string;
  /** The underlay interface. */
  dev: string;
  mac: string;
  mtu: number;
  /** The device's own address: the node subnet's network address as a host route (x.x.x.0/32). */
  address: string;
}

export interface MasqPlan {
  table: string;
  chain: string;
  /** The `nft -f -` transaction that (re)writes the chain. */
  script: string;
  /** The chain as `nft list chain` prints it, one trimmed line each (header + rules). */
  listing: string[];
}

/**
 * The raw-priority chains that keep the VXLAN *outer* packets (node ↔ node UDP to the VXLAN
 * port) out of connection tracking; see planVxlanNotrack in vxlan.ts.
 */
export interface NotrackPlan {
  table: string;
  /** The `nft -f -` commands that (re)write both chains (add if missing, flush, refill). */
  script: string;
  /** Each chain as `nft list` prints it, one trimmed line each (header + rules), by name. */
  chains: Record<string, string[]>;
}

/** The data plane as it should be: the output of planDataplane (plus `notrack`, see planNode). */
export interface DesiredState {
  backend: Backend;
  /** The MTU pods should use (undefined when the underlay is unknown). */
  podMTU: number | undefined;
  /**
   * The underlay could not be read (the interface is missing): routes, the VXLAN device,
   * neighbour and FDB entries are left as they are rather than planned away.
   */
  hold: boolean;
  device: VxlanDevice | undefined;
  routes: RouteEntry[];
  neighs: NeighEntry[];
  fdb: FdbEntry[];
  /** undefined: masquerade is turned off (the chain is removed). */
  masq: MasqPlan | undefined;
  /**
   * The VXLAN notrack chains (vxlan backend with at least one peer); undefined: none (they are
   * removed). Planned from `device` and `fdb` by planVxlanNotrack; planNode (dataplane.ts)
   * fills it in, planDataplane leaves it out.
   */
  notrack?: NotrackPlan | undefined;
  errors: DataplaneError[];
}

/** A VXLAN device as `ip -d -j addr show type vxlan` describes it. */
export interface VxlanLink {
  name: string;
  ifindex: number;
  up: boolean;
  mtu: number;
  mac: string;
  vni: number | undefined;
  port: number | undefined;
  local: string | undefined;
  dev: string | undefined;
  learning: boolean;
  /** A group or remote address is set (the device would flood). */
  flooding: boolean;
  /** Global addresses with prefix length. */
  addresses: string[];
}

/** The data plane as the kernel has it: what the executor reads. */
export interface KernelState {
  underlay: Underlay | undefined;
  /** Routes of podnet's route protocol in the main table. */
  routes: RouteEntry[];
  /** VXLAN devices named podnet.*. */
  devices: VxlanLink[];
  /** Permanent neighbour entries on the desired VXLAN device. */
  neighs: NeighEntry[];
  /** FDB entries with a remote on the desired VXLAN device. */
  fdb: FdbEntry[];
  /** The masquerade chain as `nft list` prints it; undefined when it does not exist. */
  masq: string | undefined;
  /** podnet's VXLAN notrack chains as `nft list` prints them, by name (absent ones left out). */
  notrack: Record<string, string>;
}
