/**
 * IP address and prefix arithmetic for IPv4 and IPv6.
 *
 * Addresses are kept as bigint so that one code path serves both families: IPAM walks a
 * range by adding one, the agent carves /24s out of a /16 by shifting. Parsing is strict
 * (no leading zeros in IPv4 octets, no zone ids) because every value here ends up in a
 * kernel command or a lease file, and a lenient parser would let two spellings of one
 * address exist side by side.
 */

export type Family = 4 | 6;

export interface IP {
  readonly family: Family;
  readonly value: bigint;
}

export interface Prefix {
  /** The network address (host bits zero). */
  readonly ip: IP;
  readonly bits: number;
}

export class AddressError extends Error {
  readonly code = 'PODNET_BAD_ADDRESS';
  override readonly name = 'AddressError';
}

const V4_BITS = 32;
const V6_BITS = 128;

export function familyBits(family: Family): number {
  return family === 4 ? V4_BITS : V6_BITS;
}

function parseV4(text: string): bigint | undefined {
  const parts = text.split('.');
  if (parts.length !== 4) return undefined;
  let value = 0n;
  for (const part of parts) {
    if (!/^(0|[1-9][0-9]{0,2})$/.test(part)) return undefined;
    const octet = Number(part);
    if (octet > 255) return undefined;
    value = (value << 8n) | BigInt(octet);
  }
  return value;
}

function parseV6(text: string): bigint | undefined {
  if (!/^[0-9a-fA-F:.]+$/.test(text)) return undefined;
  let head = text;
  let tailV4: bigint | undefined;
  // An embedded IPv4 tail (::ffff:1.2.3.4) stands for the last two groups.
  const lastColon = text.lastIndexOf(':');
  if (text.includes('.')) {
    tailV4 = parseV4(text.slice(lastColon + 1));
    if (tailV4 === undefined) return undefined;
    head = text.slice(0, lastColon + 1) + '0:0';
  }
  const halves = head.split('::');
  if (halves.length > 2) return undefined;
  const groupsOf = (s: string): string[] => (s === '' ? [] : s.split(':'));
  const left = groupsOf(halves[0] ?? '');
  const right = halves.length === 2 ? groupsOf(halves[1] ?? '') : [];
  const missing = 8 - left.length - right.length;
  if (halves.length === 2 ? missing < 1 : missing !== 0) return undefined;
  const groups = [...left, ...Array<string>(halves.length === 2 ? missing : 0).fill('0'), ...right];
  let value = 0n;
  for (const g of groups) {
    if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return undefined;
    value = (value << 16n) | BigInt(parseInt(g, 16));
  }
  if (tailV4 !== undefined) value = (value & ~0xffffffffn) | tailV4;
  return value;
}

/** Parses an IPv4 or IPv6 address; throws AddressError on anything else. */
export function parseIP(text: string): IP {
  if (typeof text !== 'string') throw new AddressError(`not an IP address: ${String(text)}`);
  const v4 = parseV4(text);
  if (v4 !== undefined) return { family: 4, value: v4 };
  const v6 = text.includes(':') ? parseV6(text) : undefined;
  if (v6 !== undefined) return { family: 6, value: v6 };
  throw new AddressError(`not an IP address: "${text}"`);
}

export function isIP(text: string): boolean {
  try {
    parseIP(text);
    return true;
  } catch {
    return false;
  }
}

export function formatIP(ip: IP): string {
  if (ip.family === 4) {
    const v = ip.value;
    return [24n, 16n, 8n, 0n].map((s) => String((v >> s) & 0xffn)).join('.');
  }
  const groups: number[] = [];
  for (let i = 7; i >= 0; i--) groups.push(Number((ip.value >> BigInt(i * 16)) & 0xffffn));
  // RFC 5952: compress the longest run (of two or more) of zero groups.
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}

function mask(family: Family, bits: number): bigint {
  const total = familyBits(family);
  return ((1n << BigInt(bits)) - 1n) << BigInt(total - bits);
}

/**
 * Parses "addr/bits". With `strict`, host bits must be zero (a subnet); without it the
 * address keeps its host bits (an interface address such as 10.244.1.5/24).
 */
export function parsePrefix(text: string, strict = true): { ip: IP; prefix: Prefix } {
  if (typeof text !== 'string') throw new AddressError(`not a CIDR: ${String(text)}`);
  const slash = text.indexOf('/');
  if (slash < 0) throw new AddressError(`not a CIDR (no /bits): "${text}"`);
  const ip = parseIP(text.slice(0, slash));
  const bitsText = text.slice(slash + 1);
  if (!/^(0|[1-9][0-9]{0,2})$/.test(bitsText)) throw new AddressError(`bad prefix length in "${text}"`);
  const bits = Number(bitsText);
  if (bits > familyBits(ip.family)) throw new AddressError(`prefix length too long in "${text}"`);
  const net: IP = { family: ip.family, value: ip.value & mask(ip.family, bits) };
  if (strict && net.value !== ip.value) {
    throw new AddressError(`"${text}" has host bits set; the network is ${formatIP(net)}/${bits}`);
  }
  return { ip, prefix: { ip: net, bits } };
}

export function parseSubnet(text: string): Prefix {
  return parsePrefix(text, true).prefix;
}

export function formatPrefix(p: Prefix): string {
  return `${formatIP(p.ip)}/${p.bits}`;
}

export function contains(p: Prefix, ip: IP): boolean {
  return p.ip.family === ip.family && (ip.value & mask(ip.family, p.bits)) === p.ip.value;
}

export function overlaps(a: Prefix, b: Prefix): boolean {
  if (a.ip.family !== b.ip.family) return false;
  const bits = Math.min(a.bits, b.bits);
  const m = mask(a.ip.family, bits);
  return (a.ip.value & m) === (b.ip.value & m);
}

export function lastIP(p: Prefix): IP {
  const hostBits = BigInt(familyBits(p.ip.family) - p.bits);
  return { family: p.ip.family, value: p.ip.value | ((1n << hostBits) - 1n) };
}

export function addToIP(ip: IP, n: bigint): IP {
  return { family: ip.family, value: ip.value + n };
}

export function compareIP(a: IP, b: IP): number {
  if (a.family !== b.family) return a.family - b.family;
  return a.value < b.value ? -1 : a.value > b.value ? 1 : 0;
}

export function sameIP(a: IP, b: IP): boolean {
  return a.family === b.family && a.value === b.value;
}

/** The number of addresses in a prefix. */
export function size(p: Prefix): bigint {
  return 1n << BigInt(familyBits(p.ip.family) - p.bits);
}

/**
 * The i-th subnet of `bits` length inside `parent` (for example the 3rd /24 of 10.244.0.0/16
 * is 10.244.3.0/24).
 */
export function nthSubnet(parent: Prefix, bits: number, i: bigint): Prefix {
  if (bits < parent.bits || bits > familyBits(parent.ip.family)) {
    throw new AddressError(`cannot cut /${bits} subnets out of ${formatPrefix(parent)}`);
  }
  const count = 1n << BigInt(bits - parent.bits);
  if (i < 0n || i >= count) throw new AddressError(`subnet index ${i} out of range for ${formatPrefix(parent)}`);
  const shift = BigInt(familyBits(parent.ip.family) - bits);
  return { ip: { family: parent.ip.family, value: parent.ip.value + (i << shift) }, bits };
}
