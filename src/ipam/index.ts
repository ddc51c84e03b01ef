export { ipamPlugin, ipamAdd, ipamDel, ipamCheck, ipamGc, ipamStatus, storeFor } from './plugin.ts';
export { allocate, release, collectGarbage, walk } from './allocator.ts';
export { parseIpamConf, parseRange, readSubnetFile, DEFAULT_DATA_DIR } from './config.ts';
export type { IpamConf, Range, SubnetFile } from './config.ts';
export { DiskStore, MemoryStore } from './store.ts';
export type { LeaseStore, Owner } from './store.ts';
