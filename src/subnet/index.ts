/**
 * Node pod-subnet leasing: one small interface (SubnetManager) with an etcd implementation
 * (compare-and-swap + TTL leases) and an in-memory one for tests; a Kubernetes one
 * (node.spec.podCIDR) fits the same interface. See docs/datastore.md and manager.ts.
 */
export type { AcquireOptions, HeldLease, LeaseAttrs, LeaseChange, SubnetConfig, SubnetLease, SubnetManager, WatchLeasesOptions } from './types.ts';
export { SubnetCode, SubnetError } from './errors.ts';
export { DEFAULT_CONFIG, chooseSubnet, parseConfig, parseSubnetKey, subnetKey, subnetOf } from './allocate.ts';
export type { ChooseOptions, ParsedConfig } from './allocate.ts';
export { DEFAULT_TTL_SECONDS, KVSubnetManager } from './manager.ts';
export type { KVSubnetManagerOptions, LeaseStore, StoreLease } from './manager.ts';
export { EtcdLeaseStore, EtcdSubnetManager } from './etcd.ts';
export type { EtcdSubnetManagerOptions } from './etcd.ts';
export { MemoryLeaseStore, MemorySubnetManager } from './memory.ts';
