/**
 * The IPAM configuration: the fields of the reference `host-local` plugin (ranges, the
 * legacy single-range subnet/rangeStart/rangeEnd/gateway, routes, dataDir, resolvConf) plus
 * podnet's `subnetFile`, through which the node agent hands over the node's leased subnet.
 *
 * Everything is checked here, before any file is touched: a range whose start lies outside
 * its subnet, overlapping ranges, a gateway of the wrong family all fail as invalid config.
 */
import { readFileSync } from 'node:fs';
import { CniCode, CniError, invalidConfig } from '../cni/errors.ts';
import type { CniArgs, CniDNS, CniRoute } from '../cni/types.ts';
import { parseRoute } from '../cni/version.ts';
import {
  type IP,
  type Prefix,
  addToIP,
  compareIP,
  contains,
  formatIP,
  formatPrefix,
  lastIP,
  overlaps,
  parseIP,
  parsePrefix,
} from '../netaddr/index.ts';

export const DEFAULT_DATA_DIR = '/var/lib/cni/networks';

export interface Range {
  subnet: Prefix;
  start: IP;
  end: IP;
  gateway?: IP;
}

export interface IpamConf {
  /** The network name: the key of the lease directory. */
  network: string;
  rangeSets: Range[][];
  routes: CniRoute[];
  dataDir: string;
  dns?: CniDNS;
  /** Addresses the runtime asked for (CNI_ARGS IP=, runtimeConfig.ips, args.cni.ips). */
  requested: IP[];
}

/** What the agent writes for the plugins: the node's leased subnet and its context. */
export interface SubnetFile {
  /** The cluster's pod network, for example 10.244.0.0/16. */
  network?: string;
  /** This node's pod subnet, for example 10.244.1.0/24. */
  subnet: string;
  /** The MTU pods should use on this node (the agent accounts for VXLAN overhead). */
  mtu?: number;
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function field(obj: Record<string, unknown>, key: string, where: string): string | undefined {
  const v = obj[key];
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v !== 'string') throw invalidConfig(`${where}.${key} must be a string`);
  return v;
}

function ipField(obj: Record<string, unknown>, key: string, where: string): IP | undefined {
  const v = field(obj, key, where);
  if (v === undefined) return undefined;
  try {
    return parseIP(v);
  } catch {
    throw invalidConfig(`${where}.${key} "${v}" is not an IP address`);
  }
}

/** Builds one range from its JSON, filling host-local's defaults. */
export function parseRange(obj: Record<string, unknown>, where: string): Range {
  const subnetText = field(obj, 'subnet', where);
  if (subnetText === undefined) throw invalidConfig(`${where}.subnet is required`);
  let subnet: Prefix;
  try {
    // host-local accepts a subnet with host bits set and masks it; so do we.
    subnet = parsePrefix(subnetText, false).prefix;
  } catch {
    throw invalidConfig(`${where}.subnet "${subnetText}" is not a CIDR`);
  }
  const v4 = subnet.ip.family === 4;
  const hostBits = (v4 ? 32 : 128) - subnet.bits;
  if (hostBits < 2) throw invalidConfig(`${where}.subnet ${formatPrefix(subnet)} is too small to allocate from`);
  const first = addToIP(subnet.ip, 1n);
  // IPv4 keeps the broadcast address out; IPv6 has none.
  const last = v4 ? addToIP(lastIP(subnet), -1n) : lastIP(subnet);
  const start = ipField(obj, 'rangeStart', where) ?? first;
  const end = ipField(obj, 'rangeEnd', where) ?? last;
  const gateway = ipField(obj, 'gateway', where) ?? first;
  for (const [name, ip] of [['rangeStart', start], ['rangeEnd', end], ['gateway', gateway]] as const) {
    if (!contains(subnet, ip)) throw invalidConfig(`${where}.${name} ${formatIP(ip)} is not in ${formatPrefix(subnet)}`);
  }
  if (compareIP(start, first) < 0 || compareIP(end, last) > 0) {
    throw invalidConfig(`${where}: range ${formatIP(start)}-${formatIP(end)} includes the network or broadcast address`);
  }
  if (compareIP(start, end) > 0) throw invalidConfig(`${where}: rangeStart ${formatIP(start)} is after rangeEnd ${formatIP(end)}`);
  return { subnet, start, end, gateway };
}

function rangesOverlap(a: Range, b: Range): boolean {
  return a.start.family === b.start.family && compareIP(a.start, b.end) <= 0 && compareIP(b.start, a.end) <= 0;
}

export function readSubnetFile(path: string): SubnetFile {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new CniError(
        CniCode.TryAgainLater,
        `subnet file ${path} does not exist yet`,
        'the podnet agent writes it once the node has leased its pod subnet; is the agent running?',
      );
    }
    throw new CniError(CniCode.IOFailure, `cannot read subnet file ${path}: ${(err as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new CniError(CniCode.DecodingFailure, `subnet file ${path} is not JSON`);
  }
  if (!isObj(parsed) || typeof parsed.subnet !== 'string') throw invalidConfig(`subnet file ${path} has no "subnet"`);
  return parsed as unknown as SubnetFile;
}

export function parseResolvConf(path: string): CniDNS {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new CniError(CniCode.IOFailure, `cannot read resolvConf ${path}: ${(err as Error).message}`);
  }
  const dns: CniDNS = {};
  for (const line of text.split('\n')) {
    const [key, ...rest] = line.trim().split(/\s+/);
    if (!key || key.startsWith('#') || key.startsWith(';')) continue;
    if (key === 'nameserver' && rest[0]) (dns.nameservers ??= []).push(rest[0]);
    else if (key === 'domain' && rest[0]) dns.domain = rest[0];
    else if (key === 'search') dns.search = rest;
    else if (key === 'options') (dns.options ??= []).push(...rest);
  }
  return dns;
}

function requestedIPs(top: Record<string, unknown>, args: CniArgs | undefined): IP[] {
  const texts: string[] = [];
  const ipArg = args?.args.get('IP');
  if (ipArg) texts.push(...ipArg.split(','));
  const rc = top.runtimeConfig;
  if (isObj(rc) && Array.isArray(rc.ips)) texts.push(...rc.ips.map(String));
  const a = top.args;
  if (isObj(a) && isObj(a.cni) && Array.isArray(a.cni.ips)) texts.push(...a.cni.ips.map(String));
  return texts.map((t) => {
    try {
      // Requests may come as a bare address or with a prefix length.
      return t.includes('/') ? parsePrefix(t, false).ip : parseIP(t);
    } catch {
      throw invalidConfig(`requested IP "${t}" is not an address`);
    }
  });
}

/**
 * Parses the IPAM section of a network configuration. `top` is the whole plugin config (the
 * network name, runtimeConfig and args live there).
 */
export function parseIpamConf(top: Record<string, unknown>, args: CniArgs | undefined): IpamConf {
  const ipam = top.ipam;
  if (!isObj(ipam)) throw invalidConfig('the configuration has no "ipam" section');
  let rangeSets: Range[][] = [];
  if (ipam.ranges !== undefined) {
    if (!Array.isArray(ipam.ranges) || ipam.ranges.length === 0) throw invalidConfig('ipam.ranges must be a non-empty list of range sets');
    rangeSets = ipam.ranges.map((set, i) => {
      if (!Array.isArray(set) || set.length === 0) throw invalidConfig(`ipam.ranges[${i}] must be a non-empty list of ranges`);
      return set.map((r, j) => {
        if (!isObj(r)) throw invalidConfig(`ipam.ranges[${i}][${j}] must be an object`);
        return parseRange(r, `ipam.ranges[${i}][${j}]`);
      });
    });
  } else if (ipam.subnet !== undefined) {
    rangeSets = [[parseRange(ipam, 'ipam')]];
  } else if (typeof ipam.subnetFile === 'string') {
    // Absolute, like dataDir: a relative path would depend on the working directory of whoever
    // runs the plugin (the runtime's, or podnet cni-server's).
    if (!ipam.subnetFile.startsWith('/')) throw invalidConfig(`ipam.subnetFile "${ipam.subnetFile}" must be an absolute path`);
    const sf = readSubnetFile(ipam.subnetFile);
    rangeSets = [[parseRange({ subnet: sf.subnet }, `subnetFile ${ipam.subnetFile}`)]];
  } else {
    throw invalidConfig('ipam needs "ranges", "subnet" or "subnetFile"');
  }
  const all = rangeSets.flat();
  for (let i = 0; i < all.length; i++) {
    for (let j = i + 1; j < all.length; j++) {
      const a = all[i]!;
      const b = all[j]!;
      if (rangesOverlap(a, b) || (overlaps(a.subnet, b.subnet) && a.subnet.bits !== b.subnet.bits)) {
        throw invalidConfig(`ipam ranges overlap: ${formatPrefix(a.subnet)} and ${formatPrefix(b.subnet)}`);
      }
    }
  }
  for (const set of rangeSets) {
    const fam = set[0]!.subnet.ip.family;
    if (set.some((r) => r.subnet.ip.family !== fam)) throw invalidConfig('a range set mixes IPv4 and IPv6');
  }
  let routes: CniRoute[] = [];
  if (ipam.routes !== undefined) {
    if (!Array.isArray(ipam.routes)) throw invalidConfig('ipam.routes must be a list');
    routes = ipam.routes.map((r) => parseRoute(r, (m) => invalidConfig(`ipam.routes: ${m}`)));
  }
  const dataDir = field(ipam, 'dataDir', 'ipam') ?? DEFAULT_DATA_DIR;
  if (!dataDir.startsWith('/') || /[\0\n]/.test(dataDir)) throw invalidConfig(`ipam.dataDir "${dataDir}" must be an absolute path`);
  const resolvConf = field(ipam, 'resolvConf', 'ipam');
  if (resolvConf !== undefined && !resolvConf.startsWith('/')) throw invalidConfig(`ipam.resolvConf "${resolvConf}" must be an absolute path`);
  const conf: IpamConf = {
    network: String(top.name),
    rangeSets,
    routes,
    dataDir,
    requested: requestedIPs(top, args),
  };
  if (resolvConf !== undefined) conf.dns = parseResolvConf(resolvConf);
  for (const ip of conf.requested) {
    if (!all.some((r) => contains(r.subnet, ip))) throw invalidConfig(`requested IP ${formatIP(ip)} is in none of the configured ranges`);
  }
  return conf;
}
