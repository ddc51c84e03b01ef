/**
 * podnet-ipam: the CNI IPAM plugin, a drop-in for the reference host-local. The same
 * functions serve the podnet-ipam executable and podnet-bridge, which calls them in-process
 * when its ipam type is podnet-ipam (saving a process start on every pod).
 */
import { accessSync, constants } from 'node:fs';
import { CniCode, CniError } from '../cni/errors.ts';
import type { CniPlugin } from '../cni/skel.ts';
import type { Attachment, CniArgs, CniResult, NetConf } from '../cni/types.ts';
import { parseResult } from '../cni/version.ts';
import { compareIP, contains, formatIP, parsePrefix, sameIP } from '../netaddr/index.ts';
import { allocate, collectGarbage, release } from './allocator.ts';
import { DEFAULT_DATA_DIR, parseIpamConf } from './config.ts';
import { DiskStore, type Owner } from './store.ts';

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** The store of a config; only the network name and dataDir are needed (DEL and GC work without ranges). */
export function storeFor(top: Record<string, unknown>): DiskStore {
  const ipam = isObj(top.ipam) ? top.ipam : {};
  const dataDir = typeof ipam.dataDir === 'string' && ipam.dataDir !== '' ? ipam.dataDir : DEFAULT_DATA_DIR;
  if (!dataDir.startsWith('/')) throw new CniError(CniCode.InvalidConfig, `ipam.dataDir "${dataDir}" must be an absolute path`);
  try {
    return new DiskStore(dataDir, String(top.name));
  } catch (err) {
    throw new CniError(CniCode.IOFailure, `cannot use IPAM data directory ${dataDir}: ${(err as Error).message}`);
  }
}

const ownerOf = (args: CniArgs): Owner => ({ containerId: args.containerId, ifName: args.ifName });

export function ipamAdd(top: Record<string, unknown>, args: CniArgs): CniResult {
  const conf = parseIpamConf(top, args);
  const result = allocate(storeFor(top), conf, ownerOf(args));
  result.cniVersion = String(top.cniVersion);
  return result;
}

/** Releases the container's addresses and returns them (the bridge removes their masquerade). */
export function ipamDel(top: Record<string, unknown>, args: CniArgs): string[] {
  return release(storeFor(top), ownerOf(args));
}

export function ipamCheck(top: Record<string, unknown>, args: CniArgs): void {
  const conf = parseIpamConf(top, args);
  const store = storeFor(top);
  const held = store.owned(ownerOf(args));
  if (held.length === 0) {
    throw new CniError(CniCode.CheckFailed, `no address on ${conf.network} is leased to container ${args.containerId} (${args.ifName})`);
  }
  if (top.prevResult !== undefined) {
    const prev = parseResult(top.prevResult);
    for (const ipc of prev.ips ?? []) {
      const ip = parsePrefix(ipc.address, false).ip;
      const ours = conf.rangeSets.flat().some((r) => contains(r.subnet, ip));
      if (ours && !held.includes(formatIP(ip))) {
        throw new CniError(CniCode.CheckFailed, `address ${ipc.address} of the previous result is not leased to container ${args.containerId}`);
      }
    }
  }
}

export function ipamGc(top: Record<string, unknown>, valid: Attachment[]): void {
  const store = storeFor(top);
  collectGarbage(
    store,
    valid.map((a) => ({ containerId: a.containerID, ifName: a.ifname })),
  );
  store.sweepTemp();
}

/** Ready when the ranges are known (the agent wrote the subnet file), writable, and not full. */
export function ipamStatus(top: Record<string, unknown>): void {
  let conf;
  try {
    conf = parseIpamConf(top, undefined);
  } catch (err) {
    if (err instanceof CniError && err.cniCode === CniCode.TryAgainLater) {
      throw new CniError(CniCode.PluginNotAvailable, err.message, err.details);
    }
    throw err;
  }
  const store = storeFor(top);
  try {
    accessSync(store.dir, constants.W_OK);
  } catch {
    throw new CniError(CniCode.PluginNotAvailable, `IPAM data directory ${store.dir} is not writable`);
  }
  const leased = [...store.leased()];
  conf.rangeSets.forEach((set) => {
    let capacity = 0n;
    for (const r of set) {
      capacity += r.end.value - r.start.value + 1n;
      if (r.gateway && compareIP(r.start, r.gateway) <= 0 && compareIP(r.gateway, r.end) <= 0) capacity -= 1n;
    }
    const used = leased.filter((t) => {
      const ip = parsePrefix(`${t}/${t.includes(':') ? 128 : 32}`).ip;
      return set.some((r) => compareIP(r.start, ip) <= 0 && compareIP(ip, r.end) <= 0 && !(r.gateway && sameIP(ip, r.gateway)));
    }).length;
    if (BigInt(used) >= capacity) {
      throw new CniError(CniCode.PluginNotAvailable, `no free addresses left on network ${conf.network} (${used} of ${capacity} in use)`);
    }
  });
}

export const ipamPlugin: CniPlugin<NetConf> = {
  about: 'podnet-ipam: host-local compatible IPAM (podnet)',
  parseConfig: (raw) => raw as NetConf,
  add: async (args, conf) => ipamAdd(conf, args),
  del: async (args, conf) => {
    ipamDel(conf, args);
  },
  check: async (args, conf) => ipamCheck(conf, args),
  status: async (_args, conf) => ipamStatus(conf),
  gc: async (_args, conf, valid) => ipamGc(conf, valid),
};
