/**
 * The pure part of subnet leasing: the network config, subnet keys, and which free subnet
 * a node should ask for. No I/O, so every rule is unit-tested on its own.
 *
 * Order. Subnets are handed out lowest first, starting at index 1: the lab's first node gets
 * 10.244.1.0/24, as in the tutorials, and the .0 block, whose network address is the
 * cluster's own, is handed out last rather than never (so a /22 still serves four nodes).
 * Lowest-first makes the common case (nodes joining one by one) predictable; when a
 * compare-and-swap is lost to another joining node, the next try picks at random among the
 * next few free subnets so that a crowd of joiners spreads out instead of colliding again.
 */
import { contains, familyBits, formatIP, formatPrefix, isIP, nthSubnet, parsePrefix, parseSubnet, type Prefix } from '../netaddr/index.ts';
import { SubnetCode, SubnetError } from './errors.ts';
import type { LeaseAttrs, SubnetConfig, SubnetLease } from './types.ts';

export const DEFAULT_CONFIG: Readonly<SubnetConfig> = { clusterCIDR: '10.244.0.0/16', subnetLen: 24 };

export interface ParsedConfig {
  config: SubnetConfig;
  cluster: Prefix;
  subnetLen: number;
  /** How many subnets the cluster CIDR holds. */
  count: bigint;
}

/** Validates a config (defaults filled in). Throws PODNET_SUBNET_INVALID. */
export function parseConfig(input: Partial<SubnetConfig> = {}): ParsedConfig {
  const clusterCIDR = input.clusterCIDR ?? DEFAULT_CONFIG.clusterCIDR;
  const subnetLen = input.subnetLen ?? DEFAULT_CONFIG.subnetLen;
  let cluster: Prefix;
  try {
    cluster = parseSubnet(clusterCIDR);
  } catch (err) {
    throw new SubnetError(SubnetCode.Invalid, `cluster CIDR ${JSON.stringify(clusterCIDR)} is not a network: ${(err as Error).message}`, { cause: err });
  }
  const maxLen = familyBits(cluster.ip.family) - 2;
  if (!Number.isInteger(subnetLen) || subnetLen < cluster.bits || subnetLen > maxLen) {
    throw new SubnetError(
      SubnetCode.Invalid,
      `the per-node prefix length /${subnetLen} does not fit cluster CIDR ${formatPrefix(cluster)}: use a length from /${cluster.bits} to /${maxLen}`,
    );
  }
  return { config: { clusterCIDR: formatPrefix(cluster), subnetLen }, cluster, subnetLen, count: 1n << BigInt(subnetLen - cluster.bits) };
}

/** "10.244.1.0/24" → "10.244.1.0-24" (a key segment without '/'), as flannel names them. */
export function subnetKey(p: Prefix): string {
  return `${formatIP(p.ip)}-${p.bits}`;
}

export function parseSubnetKey(key: string): Prefix | undefined {
  const dash = key.lastIndexOf('-');
  if (dash < 0) return undefined;
  try {
    return parseSubnet(`${key.slice(0, dash)}/${key.slice(dash + 1)}`);
  } catch {
    return undefined;
  }
}

/** Is `text` one of this config's subnets (right length, aligned, inside the cluster CIDR)? */
export function subnetOf(cfg: ParsedConfig, text: string): Prefix | undefined {
  let p: Prefix;
  try {
    p = parsePrefix(text, true).prefix;
  } catch {
    return undefined;
  }
  return p.bits === cfg.subnetLen && contains(cfg.cluster, p.ip) ? p : undefined;
}

/** The i-th subnet in hand-out order: 1, 2, …, count-1, then 0. */
function inOrder(cfg: ParsedConfig, i: bigint): Prefix {
  return nthSubnet(cfg.cluster, cfg.subnetLen, cfg.count === 1n ? 0n : (i + 1n) % cfg.count);
}

export interface ChooseOptions {
  /** Asked for first, if free and valid. */
  preferred?: string;
  /** Pick at random among this many free subnets (1: the lowest free). */
  spread?: number;
  random?: () => number;
}

/**
 * A free subnet, given the keys of the taken ones; undefined when all are taken. Walks at
 * most `taken.size + spread` candidates, so a huge cluster CIDR costs nothing.
 */
export function chooseSubnet(cfg: ParsedConfig, taken: ReadonlySet<string>, opts: ChooseOptions = {}): Prefix | undefined {
  if (opts.preferred !== undefined) {
    const p = subnetOf(cfg, opts.preferred);
    if (p && !taken.has(subnetKey(p))) return p;
  }
  const spread = Math.max(1, opts.spread ?? 1);
  const free: Prefix[] = [];
  for (let i = 0n; i < cfg.count && free.length < spread; i++) {
    const p = inOrder(cfg, i);
    if (!taken.has(subnetKey(p))) free.push(p);
  }
  if (free.length === 0) return undefined;
  return free[Math.floor((opts.random ?? Math.random)() * free.length)] ?? free[0];
}

/** The PODNET_SUBNET_EXHAUSTED error: which CIDR, who holds it, what to do. */
export function exhausted(cfg: ParsedConfig, holders: string[], ttlSeconds?: number): SubnetError {
  const shown = holders.slice(0, 8).join(', ') + (holders.length > 8 ? `, … (${holders.length - 8} more)` : '');
  const expiry = ttlSeconds !== undefined ? ` or when its lease runs out (TTL ${ttlSeconds} s)` : '';
  return new SubnetError(
    SubnetCode.Exhausted,
    `no free /${cfg.subnetLen} left in cluster CIDR ${cfg.config.clusterCIDR}: all ${cfg.count} subnets are leased, held by ${holders.length} nodes (${shown}). ` +
      `Remove nodes that are gone (their subnet is freed at once by releasing it${expiry}), ` +
      `or give the cluster a larger CIDR or the nodes a longer prefix (e.g. /${Math.min(cfg.subnetLen + 1, familyBits(cfg.cluster.ip.family) - 2)}).`,
  );
}

const NODE_NAME_RE = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

/** Validates lease attributes. Throws PODNET_SUBNET_BAD_ATTRS. */
export function checkAttrs(attrs: LeaseAttrs): void {
  const bad = (msg: string): never => {
    throw new SubnetError(SubnetCode.BadAttrs, `lease for node ${JSON.stringify(attrs?.nodeName)}: ${msg}`);
  };
  if (typeof attrs !== 'object' || attrs === null) bad('no attributes');
  if (typeof attrs.nodeName !== 'string' || !NODE_NAME_RE.test(attrs.nodeName)) bad('the node name must be a DNS subdomain (lower-case letters, digits, "-" and ".")');
  if (typeof attrs.nodeIP !== 'string' || !isIP(attrs.nodeIP)) bad(`node IP ${JSON.stringify(attrs.nodeIP)} is not an IP address`);
  if (typeof attrs.backendType !== 'string' || attrs.backendType === '') bad('no backend type');
  if (attrs.backendData !== undefined && (typeof attrs.backendData !== 'object' || attrs.backendData === null || Array.isArray(attrs.backendData))) {
    bad('backend data must be an object');
  }
}

/** The stored form of a lease record (JSON), flannel's lease attributes plus the subnet. */
export function encodeRecord(subnet: Prefix, attrs: LeaseAttrs): string {
  return JSON.stringify({
    subnet: formatPrefix(subnet),
    nodeName: attrs.nodeName,
    nodeIP: attrs.nodeIP,
    backendType: attrs.backendType,
    backendData: attrs.backendData ?? {},
  });
}

/** Parses a stored lease record; undefined for anything malformed. */
export function decodeRecord(value: string, revision: number): SubnetLease | undefined {
  let o: unknown;
  try {
    o = JSON.parse(value);
  } catch {
    return undefined;
  }
  if (typeof o !== 'object' || o === null) return undefined;
  const r = o as Record<string, unknown>;
  if (typeof r.subnet !== 'string' || typeof r.nodeName !== 'string' || typeof r.nodeIP !== 'string' || typeof r.backendType !== 'string') return undefined;
  const backendData = typeof r.backendData === 'object' && r.backendData !== null && !Array.isArray(r.backendData) ? (r.backendData as Record<string, unknown>) : {};
  return { subnet: r.subnet, nodeName: r.nodeName, nodeIP: r.nodeIP, backendType: r.backendType, backendData, revision: String(revision) };
}
