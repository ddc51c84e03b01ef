/**
 * The external host's small authoritative zone (`example.test`), so the cluster DNS can show
 * forwarding without leaving the lab: `www.example.test` and `example.test` are the external
 * host itself, `api.example.test` a CNAME to www; anything else in the zone is NXDOMAIN, and
 * names outside it are REFUSED (it is nobody's recursive resolver).
 */
import { createSocket } from 'node:dgram';
import { createServer } from 'node:net';
import * as packet from 'dns-packet';

export const UPSTREAM_ZONE = 'example.test';

type Answer = packet.Answer;

export function answerFor(name: string, type: string, hostIP: string): { rcode: 'NOERROR' | 'NXDOMAIN' | 'REFUSED'; answers: Answer[] } {
  const n = name.toLowerCase().replace(/\.$/, '');
  if (n !== UPSTREAM_ZONE && !n.endsWith(`.${UPSTREAM_ZONE}`)) return { rcode: 'REFUSED', answers: [] };
  const a = (owner: string): Answer => ({ type: 'A', name: owner, ttl: 30, class: 'IN', data: hostIP });
  if (n === UPSTREAM_ZONE || n === `www.${UPSTREAM_ZONE}`) return { rcode: 'NOERROR', answers: type === 'A' ? [a(n)] : [] };
  if (n === `api.${UPSTREAM_ZONE}`) {
    const cname: Answer = { type: 'CNAME', name: n, ttl: 30, class: 'IN', data: `www.${UPSTREAM_ZONE}` };
    return { rcode: 'NOERROR', answers: type === 'A' ? [cname, a(`www.${UPSTREAM_ZONE}`)] : [cname] };
  }
  return { rcode: 'NXDOMAIN', answers: [] };
}

function reply(query: packet.Packet, hostIP: string): Buffer {
  const q = query.questions?.[0];
  const { rcode, answers } = q ? answerFor(q.name, q.type, hostIP) : { rcode: 'REFUSED' as const, answers: [] };
  const flags = (rcode === 'REFUSED' ? 0 : packet.AUTHORITATIVE_ANSWER) | { NOERROR: 0, NXDOMAIN: 3, REFUSED: 5 }[rcode];
  return packet.encode({ id: query.id ?? 0, type: 'response', flags, questions: query.questions ?? [], answers });
}

export function serveZone(hostIP: string, port: number, signal: AbortSignal): Promise<void> {
  const udp = createSocket('udp4');
  udp.on('message', (msg, rinfo) => {
    try {
      udp.send(reply(packet.decode(msg), hostIP), rinfo.port, rinfo.address);
    } catch {
      // Not DNS: ignore.
    }
  });
  const tcp = createServer((sock) => {
    let buf = Buffer.alloc(0);
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const len = buf.readUInt16BE(0);
        try {
          const out = reply(packet.decode(buf.subarray(2, 2 + len)), hostIP);
          const framed = Buffer.alloc(2 + out.length);
          framed.writeUInt16BE(out.length, 0);
          out.copy(framed, 2);
          sock.write(framed);
        } catch {
          sock.destroy();
        }
        buf = buf.subarray(2 + len);
      }
    });
    sock.on('error', () => undefined);
  });
  udp.bind(port);
  tcp.listen(port);
  console.log(`zone ${UPSTREAM_ZONE} served on :${port} (A ${hostIP})`);
  return new Promise((resolve) => {
    signal.addEventListener('abort', () => {
      udp.close();
      tcp.close(() => resolve());
    });
  });
}
