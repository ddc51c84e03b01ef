/**
 * CNI versions and the conversion of results between them.
 *
 * A plugin answers in the version its configuration names. 0.3.x and 0.4.0 results carry a
 * `version` field on each IP; 1.0.0 dropped it; 1.1.0 added interface MTU, socket path,
 * PCI id and route MTU/advmss/priority/table/scope. We parse any of them into the 1.1.0
 * shape and print the requested one.
 */
import { CniCode, CniError } from './errors.ts';
import type { CniIPConfig, CniInterface, CniResult, CniRoute } from './types.ts';
import { parsePrefix, parseIP } from '../netaddr/index.ts';

export const LATEST = '1.1.0';
export const SUPPORTED_VERSIONS = ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] as const;

export function isSupported(v: unknown): v is string {
  return typeof v === 'string' && (SUPPORTED_VERSIONS as readonly string[]).includes(v);
}

export function assertSupported(v: unknown): string {
  if (!isSupported(v)) {
    throw new CniError(
      CniCode.IncompatibleVersion,
      `incompatible CNI version ${JSON.stringify(v ?? null)}`,
      `this plugin supports ${SUPPORTED_VERSIONS.join(', ')}`,
    );
  }
  return v;
}

/** Numeric comparison of two dotted versions. */
export function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < 3; i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function bad(msg: string): CniError {
  return new CniError(CniCode.DecodingFailure, `malformed CNI result: ${msg}`);
}

/** Parses a result of any supported version into the 1.1.0 shape. */
export function parseResult(raw: unknown): CniResult {
  if (!isObj(raw)) throw bad('not an object');
  const version = assertSupported(raw.cniVersion);
  const out: CniResult = { cniVersion: version };
  if (raw.interfaces !== undefined) {
    if (!Array.isArray(raw.interfaces)) throw bad('interfaces is not a list');
    out.interfaces = raw.interfaces.map((i): CniInterface => {
      if (!isObj(i) || typeof i.name !== 'string') throw bad('interface without a name');
      const iface: CniInterface = { name: i.name };
      if (typeof i.mac === 'string') iface.mac = i.mac;
      if (typeof i.mtu === 'number') iface.mtu = i.mtu;
      if (typeof i.sandbox === 'string') iface.sandbox = i.sandbox;
      if (typeof i.socketPath === 'string') iface.socketPath = i.socketPath;
      if (typeof i.pciID === 'string') iface.pciID = i.pciID;
      return iface;
    });
  }
  if (raw.ips !== undefined) {
    if (!Array.isArray(raw.ips)) throw bad('ips is not a list');
    out.ips = raw.ips.map((ip): CniIPConfig => {
      if (!isObj(ip) || typeof ip.address !== 'string') throw bad('ip without an address');
      try {
        parsePrefix(ip.address, false);
      } catch {
        throw bad(`bad address ${ip.address}`);
      }
      const c: CniIPConfig = { address: ip.address };
      if (typeof ip.gateway === 'string') {
        try {
          parseIP(ip.gateway);
        } catch {
          throw bad(`bad gateway ${ip.gateway}`);
        }
        c.gateway = ip.gateway;
      }
      if (typeof ip.interface === 'number') c.interface = ip.interface;
      return c;
    });
  }
  if (raw.routes !== undefined) {
    if (!Array.isArray(raw.routes)) throw bad('routes is not a list');
    out.routes = raw.routes.map((r): CniRoute => parseRoute(r, bad));
  }
  if (isObj(raw.dns)) out.dns = raw.dns as CniResult['dns'];
  return out;
}

export function parseRoute(r: unknown, fail: (m: string) => Error): CniRoute {
  if (!isObj(r) || typeof r.dst !== 'string') throw fail('route without a dst');
  try {
    parsePrefix(r.dst, false);
    if (r.gw !== undefined) parseIP(String(r.gw));
  } catch {
    throw fail(`bad route ${JSON.stringify(r)}`);
  }
  const route: CniRoute = { dst: r.dst };
  if (typeof r.gw === 'string') route.gw = r.gw;
  for (const k of ['mtu', 'advmss', 'priority', 'table', 'scope'] as const) {
    const v = r[k];
    if (v !== undefined) {
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw fail(`route ${k} must be a whole number`);
      route[k] = v;
    }
  }
  return route;
}

/** Renders a result in the requested version. */
export function formatResult(result: CniResult, version: string): Record<string, unknown> {
  // An unknown version would be printed in some other version's shape under its name.
  assertSupported(version);
  const legacy = compareVersions(version, '1.0.0') < 0;
  const v11 = compareVersions(version, '1.1.0') >= 0;
  const out: Record<string, unknown> = { cniVersion: version };
  if (result.interfaces) {
    out.interfaces = result.interfaces.map((i) => {
      const o: Record<string, unknown> = { name: i.name };
      if (i.mac !== undefined) o.mac = i.mac;
      if (v11 && i.mtu !== undefined) o.mtu = i.mtu;
      if (i.sandbox !== undefined) o.sandbox = i.sandbox;
      if (v11 && i.socketPath !== undefined) o.socketPath = i.socketPath;
      if (v11 && i.pciID !== undefined) o.pciID = i.pciID;
      return o;
    });
  }
  out.ips = (result.ips ?? []).map((ip) => {
    const o: Record<string, unknown> = {};
    if (legacy) o.version = parsePrefix(ip.address, false).ip.family === 4 ? '4' : '6';
    o.address = ip.address;
    if (ip.gateway !== undefined) o.gateway = ip.gateway;
    if (ip.interface !== undefined) o.interface = ip.interface;
    return o;
  });
  if (result.routes && result.routes.length > 0) {
    out.routes = result.routes.map((r) => {
      const o: Record<string, unknown> = { dst: r.dst };
      if (r.gw !== undefined) o.gw = r.gw;
      if (v11) for (const k of ['mtu', 'advmss', 'priority', 'table', 'scope'] as const) if (r[k] !== undefined) o[k] = r[k];
      return o;
    });
  }
  out.dns = result.dns ?? {};
  return out;
}
