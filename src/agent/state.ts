/**
 * Reading the kernel's answers. Each function turns the JSON of one `ip -j` / `bridge -j`
 * command into the same entry shapes the planners produce, so that the diff compares like
 * with like. Pure, and tolerant: fields the kernel leaves out are treated as absent, and
 * entries podnet did not make (other devices, dynamic neighbours) are dropped here.
 */
import { formatIP, formatPrefix, parseIP, parsePrefix } from '../netaddr/index.ts';
import type { FdbEntry, NeighEntry, RouteEntry, Underlay, VxlanLink } from './types.ts';
import { isVxlanDeviceName } from './vxlan.ts';

type Json = Record<string, unknown>;

function list(text: string): Json[] {
  const t = text.trim();
  if (t === '') return [];
  const v: unknown = JSON.parse(t);
  return Array.isArray(v) ? (v.filter((x) => typeof x === 'object' && x !== null) as Json[]) : [];
}

const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
const num = (v: unknown): number | undefined => (typeof v === 'number' ? v : undefined);

/** An address in canonical spelling (so "fd00:0::1" and "fd00::1" compare equal). */
function canonIP(text: string): string {
  try {
    return formatIP(parseIP(text));
  } catch {
    return text;
  }
}

/** A route destination in canonical spelling; the kernel prints host routes without /32. */
export function canonDst(text: string): string {
  try {
    if (text.includes('/')) return formatPrefix(parsePrefix(text, false).prefix);
    const ip = parseIP(text);
    return `${formatIP(ip)}/${ip.family === 4 ? 32 : 128}`;
  } catch {
    return text;
  }
}

interface AddrInfo {
  local?: string;
  prefixlen?: number;
  scope?: string;
}

function globalAddresses(link: Json): string[] {
  const infos = Array.isArray(link.addr_info) ? (link.addr_info as AddrInfo[]) : [];
  return infos
    .filter((a) => a.scope === 'global' && typeof a.local === 'string' && typeof a.prefixlen === 'number')
    .map((a) => `${canonIP(a.local!)}/${a.prefixlen}`);
}

/** `ip -j addr show dev IF` → the underlay's MTU and global addresses. */
export function parseUnderlay(text: string): Underlay | undefined {
  const link = list(text)[0];
  const name = link && str(link.ifname);
  const mtu = link && num(link.mtu);
  if (!link || name === undefined || mtu === undefined) return undefined;
  return { name, mtu, addresses: globalAddresses(link) };
}

/** `ip -j route show proto N` → routes (the proto filter already picked podnet's own). */
export function parseRoutes(text: string): RouteEntry[] {
  return list(text)
    .filter((r) => typeof r.dst === 'string' && r.dst !== 'default')
    .map((r) => ({
      dst: canonDst(r.dst as string),
      via: canonIP(str(r.gateway) ?? ''),
      dev: str(r.dev) ?? '',
      onlink: Array.isArray(r.flags) && r.flags.includes('onlink'),
    }));
}

/** `ip -d -j addr show type vxlan` → podnet's VXLAN devices (named podnet.<vni>). */
export function parseVxlanLinks(text: string): VxlanLink[] {
  return list(text)
    .filter((l) => typeof l.ifname === 'string' && isVxlanDeviceName(l.ifname))
    .map((l) => {
      const info = (l.linkinfo as Json | undefined) ?? {};
      const data = (info.info_kind === 'vxlan' ? (info.info_data as Json | undefined) : undefined) ?? {};
      const local = str(data.local) ?? str(data.local6);
      return {
        name: l.ifname as string,
        ifindex: num(l.ifindex) ?? 0,
        up: Array.isArray(l.flags) && l.flags.includes('UP'),
        mtu: num(l.mtu) ?? 0,
        mac: (str(l.address) ?? '').toLowerCase(),
        vni: num(data.id),
        port: num(data.port),
        local: local === undefined ? undefined : canonIP(local),
        dev: str(data.link),
        learning: data.learning !== false,
        flooding: data.group !== undefined || data.group6 !== undefined || data.remote !== undefined || data.remote6 !== undefined,
        addresses: globalAddresses(l),
      };
    });
}

/** `ip -j neigh show dev D` → the permanent entries (the ones podnet writes). */
export function parseNeighs(text: string, dev: string): NeighEntry[] {
  return list(text)
    .filter((n) => typeof n.dst === 'string' && typeof n.lladdr === 'string' && Array.isArray(n.state) && n.state.includes('PERMANENT'))
    .map((n) => ({ ip: canonIP(n.dst as string), mac: (n.lladdr as string).toLowerCase(), dev }));
}

/** `bridge -j fdb show dev D` → entries that point at a remote VTEP. */
export function parseFdb(text: string, dev: string): FdbEntry[] {
  return list(text)
    .filter((f) => typeof f.mac === 'string' && typeof f.dst === 'string')
    .map((f) => ({ mac: (f.mac as string).toLowerCase(), dst: canonIP(f.dst as string), dev }));
}
