/**
 * Names outside the cluster go to the upstream nameservers: over UDP with a timeout, again
 * over TCP when the upstream sets TC, the next upstream when one times out or fails
 * (SERVFAIL, REFUSED), and SERVFAIL when none answers. Answers are cached (cache.ts), and
 * concurrent questions for the same (name, type) share one upstream exchange.
 *
 * Every UDP exchange uses its own socket, so each query leaves from a fresh random port
 * with a random ID and only the upstream's reply, from the upstream's address, matching
 * ID and question, is taken (the usual defence against spoofed answers, RFC 5452).
 */
import { randomInt } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';
import { connect } from 'node:net';
import * as packet from 'dns-packet';
import type { DecodedPacket, Packet, RecordClass, RecordType } from 'dns-packet';
import { AnswerCache, cacheKey, type CachedMessage } from './cache.ts';
import type { Question } from './resolve.ts';
import { formatUpstream, type Upstream } from './resolvconf.ts';
import { FLAG_RD, FrameReader, frame, optRecord } from './wire.ts';

/** The UDP size we ask upstreams for (the DNS flag day 2020 value: no IP fragmentation). */
export const UPSTREAM_UDP_SIZE = 1232;

export type ForwardResult = 'ok' | 'timeout' | 'error' | 'servfail';

export interface ForwardEvent {
  upstream: string;
  transport: 'udp' | 'tcp';
  result: ForwardResult;
  seconds: number;
}

export interface ForwarderOptions {
  upstreams: readonly Upstream[];
  /** Per upstream and transport. Default 2000 ms. */
  timeoutMs?: number;
  /** The answer cache; `false` for none. Default: a fresh AnswerCache. */
  cache?: AnswerCache | false;
  onForward?: (e: ForwardEvent) => void;
}

export interface Forwarded extends CachedMessage {
  /** Answered from the cache. */
  cached: boolean;
}

class ExchangeError extends Error {
  readonly result: ForwardResult;
  constructor(result: ForwardResult, message: string) {
    super(message);
    this.result = result;
  }
}

export class Forwarder {
  readonly upstreams: readonly Upstream[];
  readonly cache: AnswerCache | undefined;
  readonly #timeoutMs: number;
  readonly #onForward: ((e: ForwardEvent) => void) | undefined;
  readonly #inflight = new Map<string, Promise<Forwarded>>();
  readonly #open = new Set<{ close(): void }>();
  #closed = false;

  constructor(opts: ForwarderOptions) {
    this.upstreams = opts.upstreams;
    this.cache = opts.cache === false ? undefined : (opts.cache ?? new AnswerCache());
    this.#timeoutMs = opts.timeoutMs ?? 2000;
    this.#onForward = opts.onForward;
  }

  /** The answer to `q` from the cache or an upstream; SERVFAIL when no upstream gives one. */
  query(q: Question): Promise<Forwarded> {
    const key = cacheKey(q.name, q.type, q.class);
    const hit = this.cache?.get(key);
    if (hit) return Promise.resolve({ ...hit, cached: true });
    let p = this.#inflight.get(key);
    if (!p) {
      p = this.#ask(q).then((msg) => {
        this.cache?.set(key, msg);
        return { ...msg, cached: false };
      });
      const done = (): void => void this.#inflight.delete(key);
      p.then(done, done);
      this.#inflight.set(key, p);
    }
    return p;
  }

  /** Closes open exchanges; later queries get SERVFAIL. */
  close(): void {
    this.#closed = true;
    for (const o of this.#open) o.close();
    this.#open.clear();
  }

  async #ask(q: Question): Promise<CachedMessage> {
    let last: CachedMessage = { rcode: 'SERVFAIL', answers: [], authorities: [], additionals: [] };
    for (const up of this.upstreams) {
      if (this.#closed) break;
      const name = formatUpstream(up);
      let transport: 'udp' | 'tcp' = 'udp';
      const t0 = performance.now();
      try {
        let res = await this.#udp(up, q);
        if (res.flag_tc) {
          transport = 'tcp';
          res = await this.#tcp(up, q);
        }
        const rcode = String((res as { rcode?: string }).rcode ?? 'NOERROR');
        const msg: CachedMessage = {
          rcode,
          answers: res.answers ?? [],
          authorities: res.authorities ?? [],
          additionals: (res.additionals ?? []).filter((a) => a.type !== 'OPT'),
        };
        const failed = rcode === 'SERVFAIL' || rcode === 'REFUSED' || rcode === 'NOTIMP';
        this.#onForward?.({ upstream: name, transport, result: failed ? 'servfail' : 'ok', seconds: (performance.now() - t0) / 1000 });
        if (!failed) return msg;
        last = msg.rcode === 'SERVFAIL' ? msg : { ...msg, rcode: 'SERVFAIL' };
      } catch (err) {
        const result = err instanceof ExchangeError ? err.result : 'error';
        this.#onForward?.({ upstream: name, transport, result, seconds: (performance.now() - t0) / 1000 });
      }
    }
    return last;
  }

  #query(q: Question, id: number): Buffer {
    const p: Packet = {
      type: 'query',
      id,
      flags: FLAG_RD,
      questions: [{ name: q.name, type: q.type as RecordType, class: (q.class ?? 'IN') as RecordClass }],
      additionals: [optRecord(UPSTREAM_UDP_SIZE)],
    };
    return packet.encode(p);
  }

  /** True if `res` is the reply to our query `id` for `q`. */
  #matches(res: DecodedPacket, id: number, q: Question): boolean {
    const rq = res.questions?.[0];
    return res.id === id && res.flag_qr && rq !== undefined && rq.name.toLowerCase() === q.name.toLowerCase().replace(/\.$/, '') && rq.type === q.type;
  }

  #udp(up: Upstream, q: Question): Promise<DecodedPacket> {
    return new Promise((resolve, reject) => {
      const id = randomInt(65536);
      const sock: Socket = createSocket(up.host.includes(':') ? 'udp6' : 'udp4');
      const handle = { close: () => finish(new ExchangeError('error', 'forwarder closed')) };
      const timer = setTimeout(() => finish(new ExchangeError('timeout', `no answer from ${formatUpstream(up)} in ${this.#timeoutMs} ms`)), this.#timeoutMs);
      let done = false;
      const finish = (err: Error | undefined, res?: DecodedPacket): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        this.#open.delete(handle);
        try {
          sock.close();
        } catch {
          // Already closed.
        }
        if (err) reject(err);
        else resolve(res as DecodedPacket);
      };
      this.#open.add(handle);
      sock.on('error', (err) => finish(new ExchangeError('error', err.message)));
      sock.on('message', (msg, rinfo) => {
        if (rinfo.address !== up.host || rinfo.port !== up.port) return;
        let res: DecodedPacket;
        try {
          res = packet.decode(msg);
        } catch {
          return; // Not a DNS message: keep waiting for the real one.
        }
        if (this.#matches(res, id, q)) finish(undefined, res);
      });
      sock.send(this.#query(q, id), up.port, up.host, (err) => {
        if (err) finish(new ExchangeError('error', err.message));
      });
    });
  }

  #tcp(up: Upstream, q: Question): Promise<DecodedPacket> {
    return new Promise((resolve, reject) => {
      const id = randomInt(65536);
      const sock = connect({ host: up.host, port: up.port });
      const reader = new FrameReader();
      const handle = { close: () => finish(new ExchangeError('error', 'forwarder closed')) };
      const timer = setTimeout(() => finish(new ExchangeError('timeout', `no TCP answer from ${formatUpstream(up)} in ${this.#timeoutMs} ms`)), this.#timeoutMs);
      let done = false;
      const finish = (err: Error | undefined, res?: DecodedPacket): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        this.#open.delete(handle);
        sock.destroy();
        if (err) reject(err);
        else resolve(res as DecodedPacket);
      };
      this.#open.add(handle);
      sock.on('error', (err) => finish(new ExchangeError('error', err.message)));
      sock.on('close', () => finish(new ExchangeError('error', `${formatUpstream(up)} closed the TCP connection`)));
      sock.on('connect', () => sock.write(frame(this.#query(q, id))));
      sock.on('data', (chunk) => {
        for (const msg of reader.push(chunk)) {
          let res: DecodedPacket;
          try {
            res = packet.decode(msg);
          } catch {
            finish(new ExchangeError('error', `${formatUpstream(up)} sent a message that does not decode`));
            return;
          }
          if (this.#matches(res, id, q)) {
            finish(undefined, res);
            return;
          }
        }
      });
    });
  }
}
