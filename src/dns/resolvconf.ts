/**
 * The upstream nameservers: `--upstream` values, or the `nameserver` lines of the DNS
 * server's own /etc/resolv.conf (the node's, not a pod's: a cluster DNS forwards what it
 * does not own to whatever the machine it runs on uses).
 */
import { readFileSync } from 'node:fs';
import { PodnetError } from '../errors/index.ts';
import { canonicalIP } from './names.ts';

export interface Upstream {
  host: string;
  port: number;
}

export const RESOLV_CONF = '/etc/resolv.conf';

/** `nameserver` addresses from resolv.conf text, in order (zone ids and junk skipped). */
export function parseResolvConf(text: string): Upstream[] {
  const out: Upstream[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*nameserver\s+(\S+)/.exec(line);
    const ip = m ? canonicalIP((m[1] as string).split('%')[0] as string) : undefined;
    if (ip !== undefined && !out.some((u) => u.host === ip)) out.push({ host: ip, port: 53 });
  }
  return out;
}

export function readResolvConf(path = RESOLV_CONF): Upstream[] {
  try {
    return parseResolvConf(readFileSync(path, 'utf8'));
  } catch {
    return [];
  }
}

/** `IP`, `IP:PORT`, `[IPv6]:PORT` or a bare IPv6 address. */
export function parseUpstream(text: string): Upstream {
  const bracket = /^\[([^\]]+)\](?::(\d+))?$/.exec(text);
  let host: string | undefined;
  let port = 53;
  if (bracket) {
    host = bracket[1];
    if (bracket[2] !== undefined) port = Number(bracket[2]);
  } else if ((text.match(/:/g) ?? []).length === 1) {
    const [h, p] = text.split(':');
    host = h;
    port = Number(p);
  } else {
    host = text;
  }
  const ip = host === undefined ? undefined : canonicalIP(host);
  if (ip === undefined || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new PodnetError('PODNET_USAGE', `upstream "${text}" is not IP, IP:PORT or [IPv6]:PORT`);
  }
  return { host: ip, port };
}

export function formatUpstream(u: Upstream): string {
  return u.host.includes(':') ? `[${u.host}]:${u.port}` : `${u.host}:${u.port}`;
}
