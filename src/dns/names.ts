/**
 * Domain names and the addresses spelled inside them: reverse names (`4.3.2.1.in-addr.arpa`,
 * the 32-nibble `ip6.arpa` form), the dashed form of pod and endpoint names (`10-244-1-5`,
 * `fd00--1`), and the checks that keep a name encodable.
 *
 * Every name in this module is lower-case and has no trailing dot; the wire library adds the
 * root label. Kubernetes object names are already lower-case DNS labels, and DNS compares
 * names case-insensitively, so lowering once at the edges keeps every index lookup exact.
 */
import { formatIP, parseIP, type IP } from '../netaddr/index.ts';

/** Lower-case, no trailing dot (the root itself becomes ""). */
export function canonicalName(name: string): string {
  const lower = name.toLowerCase();
  return lower.endsWith('.') ? lower.slice(0, -1) : lower;
}

/** The address in its one canonical spelling (RFC 5952 for IPv6), or undefined if it is none. */
export function canonicalIP(text: string): string | undefined {
  const ip = tryParseIP(text);
  if (!ip) return undefined;
  const canonical = formatIP(ip);
  // Keep the caller's string when it is already canonical: one copy in memory, not two.
  return canonical === text ? text : canonical;
}

function tryParseIP(text: string): IP | undefined {
  try {
    return parseIP(text);
  } catch {
    return undefined;
  }
}

export function ipFamily(ip: string): 4 | 6 {
  return ip.includes(':') ? 6 : 4;
}

/**
 * `10.244.1.5` → `10-244-1-5`; `fd00::1` → `fd00--1`: the label a pod record and an endpoint
 * without a hostname are known by (what kube-dns and CoreDNS use). An IPv6 address that
 * starts or ends with `::` gets a leading or trailing `0` so the label never starts or ends
 * with a dash.
 */
export function dashedIP(ip: string): string {
  if (!ip.includes(':')) return ip.replaceAll('.', '-');
  let s = ip;
  if (s.startsWith('::')) s = '0' + s;
  if (s.endsWith('::')) s = s + '0';
  return s.replaceAll(':', '-');
}

/** The inverse of dashedIP: the canonical address a dashed label names, or undefined. */
export function undashIP(label: string): string | undefined {
  if (/^[0-9]{1,3}(-[0-9]{1,3}){3}$/.test(label)) return canonicalIP(label.replaceAll('-', '.'));
  if (/^[0-9a-f-]+$/.test(label) && label.includes('-')) return canonicalIP(label.replaceAll('-', ':'));
  return undefined;
}

/** `10.96.0.10` → `10.0.96.10.in-addr.arpa`; IPv6 → the 32 nibbles under `ip6.arpa`. */
export function reverseName(ip: string): string {
  const parsed = parseIP(ip);
  if (parsed.family === 4) return `${formatIP(parsed).split('.').reverse().join('.')}.in-addr.arpa`;
  const hex = parsed.value.toString(16).padStart(32, '0');
  return `${[...hex].reverse().join('.')}.ip6.arpa`;
}

/**
 * The address a full reverse name stands for (`4.3.2.1.in-addr.arpa` → `1.2.3.4`), or
 * undefined for anything else, including the names of reverse zones (`96.10.in-addr.arpa`).
 */
export function parseReverseName(name: string): string | undefined {
  if (name.endsWith('.in-addr.arpa')) {
    const parts = name.slice(0, -'.in-addr.arpa'.length).split('.');
    if (parts.length !== 4) return undefined;
    return canonicalIP(parts.reverse().join('.'));
  }
  if (name.endsWith('.ip6.arpa')) {
    const parts = name.slice(0, -'.ip6.arpa'.length).split('.');
    if (parts.length !== 32 || !parts.every((p) => /^[0-9a-f]$/.test(p))) return undefined;
    const hex = parts.reverse().join('');
    const groups: string[] = [];
    for (let i = 0; i < 32; i += 4) groups.push(hex.slice(i, i + 4));
    return canonicalIP(groups.join(':'));
  }
  return undefined;
}

export function isReverseName(name: string): boolean {
  return name.endsWith('.in-addr.arpa') || name.endsWith('.ip6.arpa') || name === 'in-addr.arpa' || name === 'ip6.arpa';
}

/**
 * True if `name` can go on the wire: labels of 1..63 octets, 253 octets in all. The wire
 * library writes whatever it is given, so a label longer than 63 would corrupt the packet;
 * names from the API (an ExternalName most of all) are checked here before they are indexed.
 */
export function isEncodableName(name: string): boolean {
  if (name === '') return true;
  if (Buffer.byteLength(name) > 253) return false;
  for (const label of name.split('.')) {
    const n = Buffer.byteLength(label);
    if (n < 1 || n > 63) return false;
  }
  return true;
}

/** True if `name` is `zone` or below it. */
export function inZone(name: string, zone: string): boolean {
  if (zone === '') return true;
  return name === zone || name.endsWith('.' + zone);
}
