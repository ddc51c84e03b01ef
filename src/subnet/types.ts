/**
 * Node subnet leasing: each node gets one pod subnet (a /24 by default) out of the cluster
 * CIDR, and learns the other nodes' subnets to route or tunnel to them. flannel's
 * subnet.Manager in TypeScript: one small interface, with an etcd implementation (compare-
 * and-swap with a TTL lease), an in-memory one for tests, and room for a Kubernetes one
 * that reads `node.spec.podCIDR` (where kube-controller-manager does the allocating).
 */
import type { Watch, WatchStatus } from '../datastore/index.ts';

export interface SubnetConfig {
  /** The cluster's pod network (default 10.244.0.0/16). */
  clusterCIDR: string;
  /** Prefix length of each node's subnet (default 24). */
  subnetLen: number;
}

/** What a node says about itself when it leases a subnet. */
export interface LeaseAttrs {
  nodeName: string;
  /** The node's underlay address: peers route (host-gw) or tunnel (vxlan) to it. */
  nodeIP: string;
  /** 'host-gw' or 'vxlan'. */
  backendType: string;
  /** Backend-specific facts peers need, e.g. `{ vtepMAC: '0e:…', vni: 1 }`. */
  backendData?: Record<string, unknown>;
}

/** A node's subnet lease as every node sees it. */
export interface SubnetLease extends LeaseAttrs {
  /** The leased subnet, e.g. "10.244.1.0/24". */
  subnet: string;
  /** Version of the record (etcd: its mod revision). */
  revision: string;
}

export interface AcquireOptions {
  /**
   * The subnet to ask for first if the node holds none: the one the agent used last time
   * (from its subnet file), so a node keeps its subnet even across a restart that outlived
   * its lease. Taken by another node or outside the cluster CIDR: ignored.
   */
  preferredSubnet?: string;
  signal?: AbortSignal;
  /**
   * Told when the lease is lost (it expired while the datastore was unreachable, or was
   * revoked) and when it has been acquired again (preferably with the same subnet).
   */
  onChange?: (change: LeaseChange) => void;
}

export type LeaseChange = { type: 'lost'; subnet: string; error: Error } | { type: 'reacquired'; lease: SubnetLease; sameSubnet: boolean };

/** A lease this process holds and keeps alive. */
export interface HeldLease {
  /** The lease now (it changes only after a loss and re-acquisition). */
  readonly lease: SubnetLease;
  /** Lease time-to-live (s): how long the subnet outlives this process. */
  readonly ttlSeconds: number;
  /** Gives the subnet back now: peers see it leave, another node may take it. */
  release(): Promise<void>;
  /**
   * Stops renewing without giving the subnet back (agent shutdown): the record lives out
   * its TTL, and an agent of the same node that starts within it gets the same subnet.
   */
  detach(): Promise<void>;
}

export interface WatchLeasesOptions {
  /** Changes after this revision (from `listLeases().revision`); without it, first every current lease as ADDED. */
  fromRevision?: string;
  signal?: AbortSignal;
  onStatus?: (status: WatchStatus) => void;
}

export interface SubnetManager {
  readonly config: Readonly<SubnetConfig>;
  /**
   * Leases a subnet for `attrs.nodeName` and keeps it alive. A node that already holds one
   * (an agent restarting) gets the same subnet back, with its attributes updated; else the
   * lowest free subnet is taken. Throws PODNET_SUBNET_EXHAUSTED when none is free.
   */
  acquireLease(attrs: LeaseAttrs, opts?: AcquireOptions): Promise<HeldLease>;
  /** The lease of one node, if it holds one. */
  getLease(nodeName: string): Promise<SubnetLease | undefined>;
  listLeases(): Promise<{ leases: SubnetLease[]; revision: string }>;
  /** Leases as they come and go (ADDED, MODIFIED, DELETED), resuming across disconnects. */
  watchLeases(opts?: WatchLeasesOptions): Watch<SubnetLease>;
  /** Frees the subnet of a node that left the cluster, whoever holds it. False if it held none. */
  releaseLease(nodeName: string): Promise<boolean>;
  /** Stops renewing held leases (as `detach`) and watches; frees the connection if owned. */
  close(): Promise<void>;
}
