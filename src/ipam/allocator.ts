/**
 * Address allocation over a store: one address from each range set, walking round-robin
 * from the last reserved address as host-local does (so a freed address is not reused at
 * once, which keeps stale conntrack and ARP entries from hitting a new pod).
 */
import { CniCode, CniError } from '../cni/errors.ts';
import type { CniIPConfig, CniResult } from '../cni/types.ts';
import { type IP, addToIP, compareIP, contains, formatIP, parseIP, sameIP } from '../netaddr/index.ts';
import type { IpamConf, Range } from './config.ts';
import type { LeaseStore, Owner } from './store.ts';

/** The addresses of a range set in walk order, starting after `after` (or at the beginning). */
export function* walk(set: Range[], after: IP | undefined): Generator<{ ip: IP; range: Range }> {
  function* visit(range: Range, lo: IP, hi: IP): Generator<{ ip: IP; range: Range }> {
    for (let ip = lo; compareIP(ip, hi) <= 0; ip = addToIP(ip, 1n)) {
      if (range.gateway && sameIP(ip, range.gateway)) continue;
      yield { ip, range };
    }
  }
  let first = 0;
  let from = set[0]!.start;
  const at = after ? set.findIndex((r) => compareIP(r.start, after) <= 0 && compareIP(after, r.end) <= 0) : -1;
  if (after && at >= 0) {
    first = at;
    from = addToIP(after, 1n);
  }
  // One lap: the rest of the current range, every other range, then the current range's head.
  const current = set[first]!;
  if (compareIP(from, current.end) <= 0) yield* visit(current, from, current.end);
  for (let k = 1; k < set.length; k++) {
    const r = set[(first + k) % set.length]!;
    yield* visit(r, r.start, r.end);
  }
  if (compareIP(from, current.start) > 0) yield* visit(current, current.start, addToIP(from, -1n));
}

function describeSet(set: Range[]): string {
  return set.map((r) => `${formatIP(r.start)}-${formatIP(r.end)}`).join(', ');
}

/**
 * Allocates for `owner`. On any failure nothing stays claimed. Throws CniError: duplicate
 * attachment (7), requested address taken (7), no address left (100).
 */
export function allocate(store: LeaseStore, conf: IpamConf, owner: Owner): CniResult {
  if (!store.beginAttachment(owner)) {
    throw new CniError(
      CniCode.InvalidConfig,
      `container ${owner.containerId} already has addresses on ${conf.network} for interface ${owner.ifName}`,
      'call DEL for it first; a second ADD for the same container and interface is refused',
    );
  }
  const claimed: string[] = [];
  try {
    const ips: CniIPConfig[] = [];
    conf.rangeSets.forEach((set, setIndex) => {
      const requested = conf.requested.find((ip) => set.some((r) => contains(r.subnet, ip)));
      let got: { ip: IP; range: Range } | undefined;
      if (requested) {
        const range = set.find((r) => compareIP(r.start, requested) <= 0 && compareIP(requested, r.end) <= 0);
        if (!range) throw new CniError(CniCode.InvalidConfig, `requested IP ${formatIP(requested)} is outside the allocatable range ${describeSet(set)}`);
        if (range.gateway && sameIP(requested, range.gateway)) {
          throw new CniError(CniCode.InvalidConfig, `requested IP ${formatIP(requested)} is the gateway of ${conf.network}; it cannot be given to a pod`);
        }
        if (!store.claim(formatIP(requested), owner)) {
          throw new CniError(CniCode.InvalidConfig, `requested IP ${formatIP(requested)} is already allocated on ${conf.network}`);
        }
        got = { ip: requested, range };
      } else {
        const last = store.lastReserved(setIndex);
        const taken = store.leased();
        for (const cand of walk(set, last ? parseIP(last) : undefined)) {
          const text = formatIP(cand.ip);
          if (taken.has(text)) continue;
          if (store.claim(text, owner)) {
            got = cand;
            break;
          }
        }
        if (!got) {
          throw new CniError(
            CniCode.NoAddressesLeft,
            `no IP addresses left in range set ${describeSet(set)} of network ${conf.network}`,
            'release addresses of pods that are gone (DEL, or GC with the valid attachments), or give the network a larger range',
          );
        }
      }
      const text = formatIP(got.ip);
      claimed.push(text);
      if (!requested) store.setLastReserved(setIndex, text);
      const ipc: CniIPConfig = { address: `${text}/${got.range.subnet.bits}` };
      if (got.range.gateway) ipc.gateway = formatIP(got.range.gateway);
      ips.push(ipc);
    });
    store.completeAttachment(owner, claimed);
    const result: CniResult = { cniVersion: '1.1.0', ips, routes: conf.routes.map((r) => ({ ...r })) };
    if (conf.dns) result.dns = conf.dns;
    return result;
  } catch (err) {
    for (const ip of claimed) store.release(ip, owner);
    store.endAttachment(owner);
    throw err;
  }
}

/** Releases everything `owner` holds; releasing nothing is success (DEL is idempotent). */
export function release(store: LeaseStore, owner: Owner): string[] {
  const ips = store.owned(owner);
  for (const ip of ips) store.release(ip, owner);
  store.endAttachment(owner);
  return ips;
}

/** Releases every lease and attachment whose owner is not in `valid`. */
export function collectGarbage(store: LeaseStore, valid: Owner[]): string[] {
  const keep = (o: Owner): boolean => valid.some((v) => v.containerId === o.containerId && (o.ifName === '' || v.ifName === o.ifName));
  const freed: string[] = [];
  for (const lease of store.all()) {
    if (!keep(lease.owner)) {
      store.release(lease.ip, lease.owner);
      freed.push(lease.ip);
    }
  }
  for (const a of store.attachments()) if (!keep(a)) store.endAttachment(a);
  return freed;
}
