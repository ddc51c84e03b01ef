/**
 * Resource records in zone-file presentation form, one line each, as dig prints them
 * (`web.default.svc.cluster.local. 5 IN A 10.96.0.20`): what the tests compare against and
 * what the logs show.
 */
import type { Answer } from 'dns-packet';

const fqdn = (name: string): string => (name === '' || name === '.' ? '.' : name.endsWith('.') ? name : `${name}.`);

function txt(data: unknown): string {
  const parts = Array.isArray(data) ? data : [data];
  return parts.map((p) => JSON.stringify(Buffer.isBuffer(p) ? p.toString() : String(p))).join(' ');
}

export function formatRR(rr: Answer): string {
  if (rr.type === 'OPT') return `. OPT udp=${rr.udpPayloadSize}`;
  const head = `${fqdn(rr.name)} ${rr.ttl ?? 0} ${rr.class ?? 'IN'} ${rr.type}`;
  switch (rr.type) {
    case 'A':
    case 'AAAA':
      return `${head} ${rr.data}`;
    case 'CNAME':
    case 'PTR':
    case 'NS':
    case 'DNAME':
      return `${head} ${fqdn(rr.data)}`;
    case 'SRV':
      return `${head} ${rr.data.priority ?? 0} ${rr.data.weight ?? 0} ${rr.data.port} ${fqdn(rr.data.target)}`;
    case 'TXT':
      return `${head} ${txt(rr.data)}`;
    case 'SOA': {
      const d = rr.data;
      return `${head} ${fqdn(d.mname)} ${fqdn(d.rname)} ${d.serial ?? 0} ${d.refresh ?? 0} ${d.retry ?? 0} ${d.expire ?? 0} ${d.minimum ?? 0}`;
    }
    default:
      return `${head} ${Buffer.isBuffer(rr.data) ? `\\# ${rr.data.length} ${rr.data.toString('hex')}` : JSON.stringify(rr.data)}`;
  }
}
