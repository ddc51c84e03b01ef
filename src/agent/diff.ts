/**
 * The diff: desired data plane against the kernel's, as the lines of one `ip -batch`, one
 * `bridge -batch` and one `nft -f` script. Pure, so that "nothing changed" is simply three
 * empty outputs and a periodic resync (flannel's drift repair) writes nothing at all.
 *
 * Ownership is how stale entries are found without a state file: routes carry podnet's own
 * route protocol number, VXLAN devices are named podnet.<vni>, neighbour and FDB entries are
 * read from those devices only, and the masquerade lives in its own nft chain. Whatever the
 * kernel has there that the plan does not is podnet's leftover, and is removed. The same goes
 * for the VXLAN notrack chains (vxlan.ts): written with the masquerade chain in one `nft -f`
 * transaction, rewritten when they drifted, removed when the plan has none (host-gw).
 *
 * Entries are keyed by what the kernel keys them by (a route by destination, a neighbour by
 * address, an FDB entry by MAC), so a changed next hop or VTEP becomes one `replace`, never a
 * delete followed by an add that would leave a gap.
 */
import { chainBody, masqMatches, planEgressMasqRemoval } from './masq.ts';
import type { DesiredState, FdbEntry, KernelState, NeighEntry, NotrackPlan, RouteEntry, VxlanDevice, VxlanLink } from './types.ts';
import { planVxlanNotrackRemoval } from './vxlan.ts';

/**
 * podnet's route protocol (rtm_protocol), so its routes can be told from everyone else's:
 * `ip route show proto 112`. 112 is ASCII "p", and is not registered in the kernel's
 * rtnetlink.h nor in iproute2's rt_protos (0-4 kernel, 8-18 routing daemons, 42 babel,
 * 99 openr, 186-192 bgp/isis/ospf/rip/eigrp; Calico uses 80). To give it a name, add the
 * line "112 podnet" to /etc/iproute2/rt_protos.d/podnet.conf.
 */
export const PODNET_RT_PROTO = 112;

export interface Counts {
  added: number;
  changed: number;
  removed: number;
}

export type DeviceAction = 'none' | 'unchanged' | 'created' | 'recreated' | 'updated' | 'deleted';
export type MasqAction = 'write' | 'remove' | 'unchanged' | 'disabled';
/** The VXLAN notrack chains: written, removed, left as they are, or none wanted and none there. */
export type NotrackAction = 'write' | 'remove' | 'unchanged' | 'none';

export interface Changes {
  /** Lines for `ip -batch -`, in order: links, addresses, neighbours, routes. */
  ip: string[];
  /** Lines for `bridge -batch -` (after the ip batch: the device must exist). */
  bridge: string[];
  /** The `nft -f -` script, if the masquerade or the notrack chains need writing or removing. */
  nft: string | undefined;
  device: DeviceAction;
  /** The VXLAN device was made by this batch (its TX checksum offload needs turning off). */
  freshDevice: string | undefined;
  /** Stale VXLAN devices deleted (another VNI, or the backend is no longer vxlan). */
  deletedDevices: string[];
  routes: Counts;
  neighs: Counts;
  fdb: Counts;
  masq: MasqAction;
  notrack: NotrackAction;
}

export interface DiffOptions {
  proto?: number;
  /**
   * A listing the executor saw right after writing exactly this plan's script: accepted as
   * a match even when this nft version prints the chain differently from the plan.
   */
  masqListing?: string;
  /** The same for the notrack chains: their listings right after writing this plan's script. */
  notrackListing?: Record<string, string>;
}

const zero = (): Counts => ({ added: 0, changed: 0, removed: 0 });

/** Whether an existing device can be kept (only MTU, MAC, up state and address may differ). */
export function vxlanMatches(cur: VxlanLink, want: VxlanDevice): boolean {
  return cur.vni === want.vni && cur.port === want.port && cur.local === want.local && cur.dev === want.dev && !cur.learning && !cur.flooding;
}

/** A generic keyed diff: `put` for new or different entries, `del` for entries not wanted. */
function keyed<T>(want: readonly T[], have: readonly T[], key: (e: T) => string, same: (a: T, b: T) => boolean) {
  const haveBy = new Map(have.map((e) => [key(e), e]));
  const wantKeys = new Set(want.map(key));
  const put: T[] = [];
  const counts = zero();
  for (const w of want) {
    const h = haveBy.get(key(w));
    if (h === undefined) {
      put.push(w);
      counts.added++;
    } else if (!same(w, h)) {
      put.push(w);
      counts.changed++;
    }
  }
  const del = have.filter((h) => !wantKeys.has(key(h)));
  counts.removed = del.length;
  return { put, del, counts };
}

export function routeLine(r: RouteEntry, proto: number): string {
  return `route replace ${r.dst} via ${r.via} dev ${r.dev}${r.onlink ? ' onlink' : ''} proto ${proto}`;
}

export function neighLine(n: NeighEntry): string {
  return `neigh replace ${n.ip} lladdr ${n.mac} dev ${n.dev} nud permanent`;
}

export function fdbLine(f: FdbEntry): string {
  return `fdb replace ${f.mac} dev ${f.dev} dst ${f.dst} self permanent`;
}

export function vxlanAddLine(d: VxlanDevice): string {
  return `link add ${d.name} address ${d.mac} mtu ${d.mtu} type vxlan id ${d.vni} local ${d.local} dev ${d.dev} dstport ${d.port} nolearning`;
}

/** Whether the kernel's notrack chains are exactly the planned ones. */
export function notrackMatches(plan: NotrackPlan, current: Record<string, string>): boolean {
  const names = Object.keys(plan.chains);
  if (Object.keys(current).length !== names.length) return false;
  return names.every((name) => {
    const listing = current[name];
    const want = plan.chains[name]!;
    if (listing === undefined) return false;
    const body = chainBody(listing);
    return body.length === want.length && body.every((l, i) => l === want[i]);
  });
}

function sameListings(a: Record<string, string>, b: Record<string, string>): boolean {
  const ka = Object.keys(a);
  return ka.length === Object.keys(b).length && ka.every((k) => a[k] === b[k]);
}

/** Pure: what to run to turn `current` into `desired`. */
export function diffDataplane(desired: DesiredState, current: KernelState, opts: DiffOptions = {}): Changes {
  const proto = opts.proto ?? PODNET_RT_PROTO;
  const ip: string[] = [];
  const bridge: string[] = [];
  const out: Changes = {
    ip,
    bridge,
    nft: undefined,
    device: desired.device ? 'unchanged' : 'none',
    freshDevice: undefined,
    deletedDevices: [],
    routes: zero(),
    neighs: zero(),
    fdb: zero(),
    masq: 'unchanged',
    notrack: 'unchanged',
  };

  if (!desired.hold) {
    const want = desired.device;
    // Devices that vanish in this batch take their routes, neighbours and FDB entries along.
    const gone = new Set<string>();
    for (const d of current.devices) {
      if (want && d.name === want.name) continue;
      ip.push(`link del dev ${d.name}`);
      gone.add(d.name);
      out.deletedDevices.push(d.name);
    }
    if (!want && out.deletedDevices.length) out.device = 'deleted';
    let fresh = false;
    if (want) {
      const cur = current.devices.find((d) => d.name === want.name);
      if (cur && !vxlanMatches(cur, want)) {
        ip.push(`link del dev ${want.name}`);
        gone.add(want.name);
        out.device = 'recreated';
        fresh = true;
      } else if (!cur) {
        out.device = 'created';
        fresh = true;
      }
      if (fresh) {
        ip.push(vxlanAddLine(want), `link set dev ${want.name} up`, `addr replace ${want.address} dev ${want.name}`);
        out.freshDevice = want.name;
      } else if (cur) {
        const sets: string[] = [];
        if (cur.mtu !== want.mtu) sets.push(`mtu ${want.mtu}`);
        if (cur.mac !== want.mac) sets.push(`address ${want.mac}`);
        if (!cur.up) sets.push('up');
        if (sets.length) ip.push(`link set dev ${want.name} ${sets.join(' ')}`);
        const stale = cur.addresses.filter((a) => a !== want.address);
        for (const a of stale) ip.push(`addr del ${a} dev ${want.name}`);
        if (!cur.addresses.includes(want.address)) ip.push(`addr replace ${want.address} dev ${want.name}`);
        if (sets.length || stale.length || !cur.addresses.includes(want.address)) out.device = 'updated';
      }
    }
    // Entries on a device that is (re)made now, or absent, are not there to compare with.
    const live = want && !fresh;
    const curRoutes = current.routes.filter((r) => !gone.has(r.dev));
    const routes = keyed(desired.routes, curRoutes, (r) => r.dst, (a, b) => a.via === b.via && a.dev === b.dev && a.onlink === b.onlink);
    const neighs = keyed(desired.neighs, live ? current.neighs : [], (n) => n.ip, (a, b) => a.mac === b.mac);
    const fdb = keyed(desired.fdb, live ? current.fdb : [], (f) => f.mac, (a, b) => a.dst === b.dst);
    for (const n of neighs.del) ip.push(`neigh del ${n.ip} dev ${n.dev}`);
    for (const n of neighs.put) ip.push(neighLine(n));
    for (const r of routes.del) ip.push(`route del ${r.dst} proto ${proto}`);
    for (const r of routes.put) ip.push(routeLine(r, proto));
    for (const f of fdb.del) bridge.push(`fdb del ${f.mac} dev ${f.dev} dst ${f.dst} self`);
    for (const f of fdb.put) bridge.push(fdbLine(f));
    out.routes = routes.counts;
    out.neighs = neighs.counts;
    out.fdb = fdb.counts;
  }

  const nft: string[] = [];
  if (desired.masq) {
    const accepted = opts.masqListing !== undefined && current.masq === opts.masqListing;
    if (!accepted && !masqMatches(desired.masq, current.masq)) {
      nft.push(desired.masq.script);
      out.masq = 'write';
    }
  } else if (current.masq !== undefined) {
    nft.push(planEgressMasqRemoval());
    out.masq = 'remove';
  } else {
    out.masq = 'disabled';
  }
  // The notrack chains belong to the VXLAN device: left alone while the underlay (and so the
  // device) is unknown, like the device itself.
  if (!desired.hold) {
    const present = Object.keys(current.notrack);
    if (desired.notrack) {
      const accepted = opts.notrackListing !== undefined && sameListings(current.notrack, opts.notrackListing);
      if (!accepted && !notrackMatches(desired.notrack, current.notrack)) {
        nft.push(desired.notrack.script);
        out.notrack = 'write';
      }
    } else if (present.length) {
      nft.push(planVxlanNotrackRemoval(present));
      out.notrack = 'remove';
    } else {
      out.notrack = 'none';
    }
  }
  // One script, so nft applies the masquerade and the notrack chains in one transaction.
  if (nft.length) out.nft = nft.join('');
  return out;
}

/** Whether a diff has nothing to do. */
export function isEmpty(c: Changes): boolean {
  return c.ip.length === 0 && c.bridge.length === 0 && c.nft === undefined;
}
