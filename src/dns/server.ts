/**
 * The DNS server: UDP and TCP on one address and port, each message handed to a
 * transport-free handler that decodes it (dns-packet), answers the cluster zone from the
 * resolver or forwards the rest, and encodes the reply to fit the transport.
 *
 * Sizes: a UDP reply fits 512 octets, or the size the client advertises in EDNS0 (capped by
 * ours, 4096 by default); what does not fit loses its additional section, then its answer
 * with TC set, and the client asks again over TCP, where up to 64 KiB fit. Flags: AA on
 * answers from the cluster zone (and PTRs of cluster addresses), RA always (we recurse by
 * forwarding), RD and CD copied, and the DO bit echoed in our OPT record (RFC 3225).
 *
 * Concurrency is Node's: every socket is read by the event loop, zone answers are computed
 * synchronously from in-memory maps, and forwarded questions wait on their upstream without
 * holding anything else up. TCP connections may pipeline several queries (RFC 7766); replies
 * go out as they are ready, and an idle connection is closed after 10 s.
 *
 * The hot path. A zone answer, once encoded, is kept in the reply cache (replies.ts) until the
 * record store changes, and the same query is then answered by copying it and patching in the
 * ID, RD and CD: no dns-packet, no resolver, no promise. What remains per UDP query is mostly
 * Node's and the kernel's (the datagram, its rinfo, the send and the wake-up of the client).
 *
 * One thread, on purpose. SO_REUSEPORT workers were weighed against the benchmark, where the
 * server and dnsperf each keep one of the two CPUs busy: a second worker could only take CPU
 * from the load generator, and one client socket hashes to one worker anyway. A cluster runs
 * more replicas behind the Service instead (BENCHMARKS.md, docs/dns.md).
 */
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { lookup as dnsLookup, type LookupOneOptions } from 'node:dns';
import { createServer, isIP, type Server, type Socket } from 'node:net';
import * as packet from 'dns-packet';
import type { Answer, DecodedPacket, OptAnswer, Packet } from 'dns-packet';
import { AnswerCache } from './cache.ts';
import { Forwarder, type ForwardEvent } from './forward.ts';
import { ReplyCache, scanQuery, type ReplyMeta } from './replies.ts';
import { Resolver, type Question } from './resolve.ts';
import type { Upstream } from './resolvconf.ts';
import { DEFAULT_TTL, DEFAULT_ZONE, type PodsMode, type RecordSource } from './types.ts';
import {
  BADVERS,
  CLASSIC_UDP_SIZE,
  FLAG_AA,
  FLAG_CD,
  FLAG_RA,
  FLAG_RD,
  FrameReader,
  MAX_MESSAGE,
  OPCODE_QUERY,
  RCODES,
  encodeWithin,
  frame,
  headerOnlyReply,
  optRecord,
  rawHeader,
} from './wire.ts';

export type Transport = 'udp' | 'tcp';

/** Where an answer came from. */
export type AnswerSource = 'cluster' | 'cache' | 'forward' | 'invalid';

/**
 * Told of every query once its reply is ready: the transport; the question's type mnemonic
 * ('A', 'SRV', …, or 'none' when the message had none); the rcode mnemonic; where the answer
 * came from; the seconds from reading the query to having its reply; whether it was cut to
 * fit (TC). Positional rather than an event object, so reporting allocates nothing per query.
 */
export type QueryReporter = (proto: Transport, qtype: string, rcode: string, source: AnswerSource, seconds: number, truncated: boolean) => void;

export interface HandlerOptions {
  resolver: Resolver;
  /** Without one, names outside the zone are SERVFAIL. */
  forwarder?: Forwarder;
  /** The largest UDP reply we send and advertise (EDNS0). Default 4096. */
  maxUdpSize?: number;
  onQuery?: QueryReporter;
  /** Entries of the reply cache for zone answers (0: none). Default 50,000. */
  replyCacheSize?: number;
}

const RCODE_NUMBERS: Record<string, number> = { ...RCODES, YXDOMAIN: 6, YXRRSET: 7, NXRRSET: 8, NOTAUTH: 9, NOTZONE: 10 };

function rcodeNumber(rcode: string): number {
  return RCODE_NUMBERS[rcode] ?? (Number(/^RCODE_(\d+)$/.exec(rcode)?.[1] ?? RCODES.SERVFAIL) & 0xf);
}

/** Zone transfers and other meta-queries a cluster DNS does not serve. */
const REFUSED_TYPES = new Set(['AXFR', 'IXFR']);

type Reply = Buffer | undefined;

/**
 * Decodes a query, answers it, encodes the reply: no sockets, so tests and benchmarks can call
 * it directly. Zone answers are computed synchronously and kept, encoded, in a reply cache
 * (replies.ts) until the store changes; `respond` returns them at once, and a promise only
 * when an upstream must be asked.
 */
export class DnsHandler {
  readonly resolver: Resolver;
  readonly forwarder: Forwarder | undefined;
  readonly maxUdpSize: number;
  /** Encoded zone replies (undefined when disabled). */
  readonly replies: ReplyCache | undefined;
  readonly #onQuery: QueryReporter | undefined;

  constructor(opts: HandlerOptions) {
    this.resolver = opts.resolver;
    this.forwarder = opts.forwarder;
    this.maxUdpSize = Math.max(CLASSIC_UDP_SIZE, Math.min(opts.maxUdpSize ?? 4096, MAX_MESSAGE));
    this.replies = opts.replyCacheSize === 0 ? undefined : new ReplyCache(opts.replyCacheSize !== undefined ? { maxEntries: opts.replyCacheSize } : {});
    this.#onQuery = opts.onQuery;
  }

  /** The reply to `msg`, or undefined when there must be none (a response, a runt). */
  async handle(msg: Buffer, proto: Transport): Promise<Reply> {
    return this.respond(msg, proto);
  }

  /**
   * The same, synchronously when it can be: from the reply cache, or computed from the zone;
   * a promise only for what waits on an upstream. The sockets call this, so the common case
   * costs no promise and no extra turn of the event loop.
   */
  respond(msg: Buffer, proto: Transport): Reply | Promise<Reply> {
    const t0 = performance.now();
    const replies = this.replies;
    const key = replies ? scanQuery(msg) : undefined;
    if (replies && key !== undefined) {
      const hit = replies.get(key, proto, this.resolver.generation);
      if (hit) {
        this.#report(proto, hit.qtype, hit.rcode, 'cluster', t0, hit.truncated);
        return replies.replyTo(hit, msg);
      }
    }
    return this.#slow(msg, proto, t0, key);
  }

  /** Everything the reply cache does not have: dns-packet, the resolver, the forwarder. */
  #slow(msg: Buffer, proto: Transport, t0: number, key: string | undefined): Reply | Promise<Reply> {
    const hdr = rawHeader(msg);
    if (!hdr || hdr.qr) return undefined;
    const rd = (hdr.flags & FLAG_RD) !== 0;
    const bare = (rcode: number, qtype = 'none'): Buffer => {
      this.#report(proto, qtype, rcode === RCODES.FORMERR ? 'FORMERR' : 'NOTIMP', 'invalid', t0, false);
      return headerOnlyReply(hdr.id, hdr.opcode, rd, rcode);
    };
    if (hdr.opcode !== OPCODE_QUERY) return bare(RCODES.NOTIMP);
    let query: DecodedPacket;
    try {
      query = packet.decode(msg);
    } catch {
      return bare(RCODES.FORMERR);
    }
    const questions = query.questions ?? [];
    const opts = (query.additionals ?? []).filter((a): a is OptAnswer => a.type === 'OPT');
    const wq = questions[0];
    if (questions.length !== 1 || !wq || opts.length > 1) return bare(RCODES.FORMERR);
    const opt = opts[0];
    const limit = proto === 'tcp' ? MAX_MESSAGE : opt ? Math.max(CLASSIC_UDP_SIZE, Math.min(opt.udpPayloadSize, this.maxUdpSize)) : CLASSIC_UDP_SIZE;
    const flags = FLAG_RA | (hdr.flags & (FLAG_RD | FLAG_CD));
    const reply = (rcode: number, aa: boolean, sections: { answers: Answer[]; authorities: Answer[]; additionals: Answer[] }, source: AnswerSource): { buf: Buffer; meta: ReplyMeta } => {
      const p: Packet = {
        type: 'response',
        id: hdr.id,
        flags: flags | (aa ? FLAG_AA : 0) | (rcode & 0xf),
        questions: [wq],
        answers: sections.answers,
        authorities: sections.authorities,
        additionals: opt ? [...sections.additionals, optRecord(this.maxUdpSize, rcode >> 4, opt.flag_do)] : sections.additionals,
      };
      let out: { buf: Buffer; truncated: boolean };
      try {
        out = encodeWithin(p, limit);
      } catch {
        // Something in the sections cannot be encoded (an odd upstream record): say so, plainly.
        out = encodeWithin({ ...p, flags: flags | RCODES.SERVFAIL, answers: [], authorities: [], additionals: opt ? [optRecord(this.maxUdpSize)] : [] }, limit);
        rcode = RCODES.SERVFAIL;
      }
      const meta: ReplyMeta = { qtype: wq.type, rcode: rcode === BADVERS ? 'BADVERS' : rcodeName(rcode), truncated: out.truncated };
      this.#report(proto, meta.qtype, meta.rcode, source, t0, meta.truncated);
      return { buf: out.buf, meta };
    };
    const none = { answers: [], authorities: [], additionals: [] };
    if (opt && opt.ednsVersion !== 0) return reply(BADVERS, false, none, 'invalid').buf;
    if (REFUSED_TYPES.has(wq.type)) return reply(RCODES.REFUSED, false, none, 'invalid').buf;

    const q: Question = { name: wq.name, type: wq.type, class: wq.class ?? 'IN' };
    const generation = this.resolver.generation;
    const outcome = this.resolver.resolve(q);
    if (outcome !== 'forward') {
      // An ExternalName whose target lies outside the zone: stub resolvers (glibc, musl) do
      // not chase a CNAME themselves, they expect the recursive server to, so the target is
      // resolved through the upstreams and its records follow the CNAME (as CoreDNS does).
      const last = outcome.answers[outcome.answers.length - 1];
      if (this.forwarder && this.forwarder.upstreams.length > 0 && outcome.rcode === 'NOERROR' && last?.type === 'CNAME' && q.type !== 'CNAME' && q.type !== 'ANY' && !this.resolver.isClusterName(String(last.data))) {
        return this.forwarder.query({ name: String(last.data), type: q.type, class: q.class }).then((f) => {
          if (f.rcode === 'NOERROR' || f.rcode === 'NXDOMAIN') {
            return reply(rcodeNumber(f.rcode), outcome.authoritative, { answers: [...outcome.answers, ...f.answers], authorities: f.answers.length > 0 ? [] : f.authorities, additionals: [] }, 'cluster').buf;
          }
          return reply(rcodeNumber(outcome.rcode), outcome.authoritative, outcome, 'cluster').buf;
        });
      }
      const { buf, meta } = reply(rcodeNumber(outcome.rcode), outcome.authoritative, outcome, 'cluster');
      // Computed from the store alone, synchronously: the same query gets the same bytes until
      // the store changes. Not before the informers synced (those answers are SERVFAIL).
      if (key !== undefined && this.replies && this.resolver.synced) this.replies.set(key, proto, generation, buf, meta);
      return buf;
    }
    if (!this.forwarder || this.forwarder.upstreams.length === 0) return reply(RCODES.SERVFAIL, false, none, 'forward').buf;
    return this.forwarder.query(q).then((f) => reply(rcodeNumber(f.rcode), false, f, f.cached ? 'cache' : 'forward').buf);
  }

  #report(proto: Transport, qtype: string, rcode: string, source: AnswerSource, t0: number, truncated: boolean): void {
    this.#onQuery?.(proto, qtype, rcode, source, (performance.now() - t0) / 1000, truncated);
  }
}

const RCODE_NAMES: string[] = [];
for (const [name, v] of Object.entries(RCODE_NUMBERS)) RCODE_NAMES[v] = name;

function rcodeName(n: number): string {
  return RCODE_NAMES[n] ?? `RCODE_${n}`;
}

export interface DnsServerOptions {
  source: RecordSource;
  zone?: string;
  ttl?: number;
  pods?: PodsMode;
  /** Default 0.0.0.0 and 53; port 0 picks a free port (the same for UDP and TCP). */
  host?: string;
  port?: number;
  /** Where names outside the zone go; none: they are SERVFAIL. */
  upstreams?: readonly Upstream[];
  forwardTimeoutMs?: number;
  /** Entries of the forward cache (0: no cache). Default 10,000. */
  cacheSize?: number;
  /** Entries of the reply cache of encoded zone answers (0: none). Default 50,000. */
  replyCacheSize?: number;
  maxUdpSize?: number;
  /** Close TCP connections idle this long. Default 10 s. */
  tcpIdleMs?: number;
  onQuery?: QueryReporter;
  onForward?: (e: ForwardEvent) => void;
  /** Told of socket errors that do not stop the server. */
  onError?: (err: Error) => void;
}

export interface DnsServer {
  readonly host: string;
  readonly port: number;
  readonly handler: DnsHandler;
  readonly forwarder: Forwarder;
  close(): Promise<void>;
}

function bindUdp(sock: UdpSocket, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    sock.once('error', onError);
    sock.bind({ address: host, port, exclusive: true }, () => {
      sock.off('error', onError);
      resolve();
    });
  });
}

function listenTcp(server: Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    server.once('error', onError);
    server.listen({ host, port, exclusive: true }, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

/**
 * The UDP socket's lookup: replies go to the address a query came from, always an IP literal,
 * and dgram would otherwise pass it through dns.lookup, which answers a literal only on the
 * next tick; answered at once, a reply is handed to the kernel in the same turn as its query.
 */
function literalLookup(host: string, opts: LookupOneOptions, cb: (err: NodeJS.ErrnoException | null, address: string, family: number) => void): void {
  const family = isIP(host);
  if (family !== 0) cb(null, host, family);
  else dnsLookup(host, opts, cb);
}

export async function startDnsServer(opts: DnsServerOptions): Promise<DnsServer> {
  const host = opts.host ?? '0.0.0.0';
  const resolver = new Resolver(opts.source, { zone: opts.zone ?? DEFAULT_ZONE, ttl: opts.ttl ?? DEFAULT_TTL, pods: opts.pods ?? 'verified' });
  const forwarder = new Forwarder({
    upstreams: opts.upstreams ?? [],
    ...(opts.forwardTimeoutMs !== undefined ? { timeoutMs: opts.forwardTimeoutMs } : {}),
    cache: opts.cacheSize === 0 ? false : new AnswerCache({ maxEntries: opts.cacheSize ?? 10_000 }),
    ...(opts.onForward ? { onForward: opts.onForward } : {}),
  });
  const handler = new DnsHandler({
    resolver,
    forwarder,
    ...(opts.maxUdpSize ? { maxUdpSize: opts.maxUdpSize } : {}),
    ...(opts.replyCacheSize !== undefined ? { replyCacheSize: opts.replyCacheSize } : {}),
    ...(opts.onQuery ? { onQuery: opts.onQuery } : {}),
  });
  const onError = opts.onError ?? (() => undefined);
  const idleMs = opts.tcpIdleMs ?? 10_000;
  const family = host.includes(':') ? 'udp6' : 'udp4';

  /** Hands `msg`'s reply to `send`: at once when the handler has it, else when its promise settles. */
  const answer = (msg: Buffer, proto: Transport, send: (out: Buffer | undefined) => void): void => {
    let out: Buffer | undefined | Promise<Buffer | undefined>;
    try {
      out = handler.respond(msg, proto);
    } catch (err) {
      onError(err instanceof Error ? err : new Error(String(err)));
      return;
    }
    if (out instanceof Promise) out.then(send, (err: Error) => onError(err));
    else send(out);
  };

  const conns = new Set<Socket>();
  const serveConn = (sock: Socket): void => {
    conns.add(sock);
    sock.setNoDelay(true);
    sock.setTimeout(idleMs, () => sock.destroy());
    const reader = new FrameReader();
    sock.on('data', (chunk) => {
      for (const msg of reader.push(chunk)) {
        const send = (out: Buffer | undefined): void => {
          if (out && !sock.destroyed) sock.write(frame(out));
        };
        answer(msg, 'tcp', send);
      }
    });
    sock.on('error', () => undefined); // A client that goes away: nothing to do.
    sock.on('close', () => conns.delete(sock));
  };

  // UDP first (port 0 picks one), then TCP on the same port; if TCP finds it taken, try again.
  let udp: UdpSocket | undefined;
  let tcp: Server | undefined;
  let port = opts.port ?? 53;
  for (let attempt = 0; ; attempt++) {
    const u = createSocket({ type: family, recvBufferSize: 4 << 20, sendBufferSize: 4 << 20, lookup: literalLookup });
    await bindUdp(u, host, port);
    const t = createServer(serveConn);
    try {
      await listenTcp(t, host, u.address().port);
      udp = u;
      tcp = t;
      port = u.address().port;
      break;
    } catch (err) {
      u.close();
      if ((opts.port ?? 53) !== 0 || attempt >= 10) throw err;
    }
  }
  const udpSock = udp;
  const tcpServer = tcp;
  udpSock.on('error', onError);
  udpSock.on('message', (msg, rinfo) => {
    // Written out rather than through answer(): no closure per datagram when the reply is
    // ready at once (the common case). No send callback either: it would cost a tick per
    // reply, and a reply the kernel refuses is a lost datagram like any other on UDP (the
    // client asks again).
    let out: Buffer | undefined | Promise<Buffer | undefined>;
    try {
      out = handler.respond(msg, 'udp');
    } catch (err) {
      onError(err instanceof Error ? err : new Error(String(err)));
      return;
    }
    if (out instanceof Promise) {
      out.then(
        (late) => {
          if (late) udpSock.send(late, rinfo.port, rinfo.address);
        },
        (err: Error) => onError(err),
      );
    } else if (out) udpSock.send(out, rinfo.port, rinfo.address);
  });
  tcpServer.on('error', onError);

  let closed: Promise<void> | undefined;
  return {
    host,
    port,
    handler,
    forwarder,
    close() {
      closed ??= (async () => {
        forwarder.close();
        await new Promise<void>((r) => udpSock.close(() => r()));
        const done = new Promise<void>((r) => tcpServer.close(() => r()));
        for (const c of conns) c.destroy();
        await done;
      })();
      return closed;
    },
  };
}
