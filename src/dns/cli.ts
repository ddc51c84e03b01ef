/** `podnet dns …`: flags → DnsDaemonOptions. */
import { parseArgs } from 'node:util';
import { PodnetError } from '../errors/index.ts';
import { runDns } from './daemon.ts';
import { canonicalIP } from './names.ts';
import { parseUpstream } from './resolvconf.ts';
import { DEFAULT_TTL, DEFAULT_ZONE, type PodsMode } from './types.ts';

export const DNS_USAGE =
  'usage: podnet dns --etcd URL [--listen 0.0.0.0:53] [--zone cluster.local] [--ttl 5] [--upstream IP[:PORT] ...] [--resolv-conf /etc/resolv.conf] [--pods verified|insecure|disabled] [--cache-size 10000] [--metrics-address 0.0.0.0:9153] [--lameduck SECONDS]';

/** `HOST:PORT` or `[IPv6]:PORT`; the host must be an IP address. */
export function parseListen(text: string, flag: string): { host: string; port: number } {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(text) ?? /^([^:]*):(\d+)$/.exec(text);
  const host = m ? (m[1] === '' ? '0.0.0.0' : canonicalIP(m[1] as string)) : undefined;
  const port = m ? Number(m[2]) : NaN;
  if (host === undefined || !Number.isInteger(port) || port < 0 || port > 65535) throw new PodnetError('PODNET_USAGE', `${flag} "${text}" is not IP:PORT or [IPv6]:PORT`);
  return { host, port };
}

export async function dnsCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      etcd: { type: 'string' },
      listen: { type: 'string', default: '0.0.0.0:53' },
      zone: { type: 'string', default: DEFAULT_ZONE },
      ttl: { type: 'string', default: String(DEFAULT_TTL) },
      upstream: { type: 'string', multiple: true },
      'resolv-conf': { type: 'string' },
      pods: { type: 'string', default: 'verified' },
      'cache-size': { type: 'string' },
      'metrics-address': { type: 'string', default: '0.0.0.0:9153' },
      lameduck: { type: 'string', default: '0' },
    },
    strict: true,
  });
  if (!values.etcd) throw new PodnetError('PODNET_USAGE', DNS_USAGE);
  const listen = parseListen(values.listen, '--listen');
  const metrics = parseListen(values['metrics-address'], '--metrics-address');
  const ttl = Number(values.ttl);
  if (!Number.isInteger(ttl) || ttl < 0 || ttl > 2147483647) throw new PodnetError('PODNET_USAGE', `--ttl "${values.ttl}" is not a number of seconds`);
  const pods = values.pods as PodsMode;
  if (!['verified', 'insecure', 'disabled'].includes(pods)) throw new PodnetError('PODNET_USAGE', `--pods must be verified, insecure or disabled, not "${values.pods}"`);
  const zone = values.zone.toLowerCase().replace(/\.$/, '');
  if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/.test(zone)) throw new PodnetError('PODNET_USAGE', `--zone "${values.zone}" is not a domain name`);
  const lameduck = Number(values.lameduck.replace(/s$/, ''));
  if (!Number.isFinite(lameduck) || lameduck < 0 || lameduck > 300) throw new PodnetError('PODNET_USAGE', `--lameduck "${values.lameduck}" is not a number of seconds (0–300)`);
  let cacheSize: number | undefined;
  if (values['cache-size'] !== undefined) {
    cacheSize = Number(values['cache-size']);
    if (!Number.isInteger(cacheSize) || cacheSize < 0) throw new PodnetError('PODNET_USAGE', `--cache-size "${values['cache-size']}" is not a count`);
  }
  await runDns({
    etcd: values.etcd,
    host: listen.host,
    port: listen.port,
    zone,
    ttl,
    pods,
    ...(values.upstream?.length ? { upstreams: values.upstream.map(parseUpstream) } : {}),
    ...(values['resolv-conf'] ? { resolvConf: values['resolv-conf'] } : {}),
    ...(cacheSize !== undefined ? { cacheSize } : {}),
    metricsHost: metrics.host,
    metricsPort: metrics.port,
    lameduckMs: Math.round(lameduck * 1000),
  });
}
