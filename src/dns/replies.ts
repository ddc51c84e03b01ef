/**
 * The reply cache: encoded replies to questions about the cluster zone, handed out again
 * without dns-packet, the resolver or the encoder.
 *
 * Why. Answering a zone question the slow way (decode with dns-packet, resolve, build answer
 * objects, encode them, fit them to the transport) costs several microseconds and a few dozen
 * short-lived objects per query; a query served from here costs a header check, one pass over
 * the question's labels, a map read and a copy of a hundred octets. In a cluster most queries
 * are the same few names asked again and again by every pod.
 *
 * What makes it exact. An entry is not a second implementation of the answer: it is the slow
 * path's own output, memoised. The slow path's reply to a query is a function of
 *   - the octets after the header: the question (the name exactly as asked, so its case is
 *     echoed as the slow path echoes it; the type; the class) and the OPT record if there is
 *     one (the EDNS0 size the reply must fit, the DO bit),
 *   - the transport (which sets the size limit),
 *   - the query's ID and its RD and CD bits, which the reply copies,
 *   - and the record store.
 * The key is the first (the octets themselves, as a latin1 string: no parsing, no case
 * folding, nothing to get wrong), one map per transport is the second; the ID, RD and CD are
 * patched into a copy of the cached bytes; the store is covered by its generation counter,
 * bumped on every change: an entry is only ever served for the generation it was made in, so
 * an answer changes as soon as the store does. Anything else goes the slow way and is not
 * cached: more than one question, records in the answer or authority sections, an opcode other
 * than QUERY, a compressed or over-long name, an OPT record with options or an EDNS version
 * other than 0, trailing octets. Only answers computed from the store alone are kept (not
 * forwarded ones, which age, nor an ExternalName whose target was resolved upstream, nor
 * anything before the informers synced).
 *
 * Memory: entries are copied into 64 KiB slabs (so a cached reply does not pin the 8 KiB
 * pool chunk its Buffer was cut from), and the whole cache is dropped at once when the
 * generation moves or when it reaches its size bound, which is the simplest policy that
 * keeps it bounded (a flood of distinct names makes it useless, not large).
 */
export type ReplyTransport = 'udp' | 'tcp';

const TYPE_OPT = 41;
/** Longest name on the wire (RFC 1035 3.1), root label included. */
const MAX_NAME = 255;

/**
 * The cache key of a plain query (see the module comment): its octets after the header, as a
 * latin1 string; undefined for anything else, which then takes the slow path. Reads only the
 * header, the question and the OPT record; allocates the one string.
 */
export function scanQuery(msg: Buffer): string | undefined {
  const len = msg.length;
  // Header (12) + the root name (1) + type and class (4).
  if (len < 17) return undefined;
  // QR clear, opcode QUERY (0): the top five bits of the third octet.
  if (((msg[2] as number) & 0xf8) !== 0) return undefined;
  // One question, no answers, no authorities, no additional records but perhaps one OPT.
  if (msg[4] !== 0 || msg[5] !== 1 || msg[6] !== 0 || msg[7] !== 0 || msg[8] !== 0 || msg[9] !== 0 || msg[10] !== 0) return undefined;
  const additionals = msg[11] as number;
  if (additionals > 1) return undefined;
  let off = 12;
  for (;;) {
    if (off >= len) return undefined;
    const label = msg[off] as number;
    if (label === 0) break;
    // Above 63: a compression pointer or an extended label type; neither belongs in a plain question.
    if (label > 63) return undefined;
    off += label + 1;
    if (off - 12 >= MAX_NAME) return undefined;
  }
  const qEnd = off + 1 + 4;
  if (additionals === 0) {
    if (qEnd !== len) return undefined;
  } else {
    // A plain OPT ending the message: root owner, type 41, class = UDP size, TTL = extended
    // rcode, version 0 and flags, RDLENGTH 0 (no options).
    if (qEnd + 11 !== len || msg[qEnd] !== 0 || msg[qEnd + 1] !== 0 || msg[qEnd + 2] !== TYPE_OPT) return undefined;
    if (msg[qEnd + 6] !== 0 || msg[qEnd + 9] !== 0 || msg[qEnd + 10] !== 0) return undefined;
  }
  return msg.toString('latin1', 12, len);
}

/** What the handler reports for a query (its metrics), kept with the bytes. */
export interface ReplyMeta {
  qtype: string;
  rcode: string;
  truncated: boolean;
}

interface Entry extends ReplyMeta {
  /** The reply, a view into a slab. */
  bytes: Uint8Array;
}

export interface ReplyCacheOptions {
  /** Entries before the cache is dropped and starts again. Default 50,000. */
  maxEntries?: number;
}

const SLAB = 64 * 1024;
/** RD is the low bit of the third octet, CD the 0x10 bit of the fourth. */
const RD_BIT = 0x01;
const CD_BIT = 0x10;

export class ReplyCache {
  readonly maxEntries: number;
  /** The store generation the entries were made in. */
  #generation = -1;
  #udp = new Map<string, Entry>();
  #tcp = new Map<string, Entry>();
  #slab: Buffer = Buffer.alloc(0);
  #used = 0;
  hits = 0;
  misses = 0;

  constructor(opts: ReplyCacheOptions = {}) {
    this.maxEntries = Math.max(1, opts.maxEntries ?? 50_000);
  }

  get size(): number {
    return this.#udp.size + this.#tcp.size;
  }

  /** The entry for `key` (from scanQuery) made in `generation`, if any (counted as a hit or a miss). */
  get(key: string, proto: ReplyTransport, generation: number): ReplyMeta | undefined {
    if (generation !== this.#generation) this.#reset(generation);
    const e = (proto === 'udp' ? this.#udp : this.#tcp).get(key);
    if (e) this.hits++;
    else this.misses++;
    return e;
  }

  /** A reply for `query` from a cached entry: its bytes with the query's ID, RD and CD. */
  replyTo(entry: ReplyMeta, query: Buffer): Buffer {
    const bytes = (entry as Entry).bytes;
    // A copy: the socket may still hold it when the next query for the same name comes.
    const out = Buffer.allocUnsafe(bytes.length);
    out.set(bytes);
    out[0] = query[0] as number;
    out[1] = query[1] as number;
    out[2] = ((out[2] as number) & ~RD_BIT) | ((query[2] as number) & RD_BIT);
    out[3] = ((out[3] as number) & ~CD_BIT) | ((query[3] as number) & CD_BIT);
    return out;
  }

  /** Keeps `reply`, the slow path's answer to the query with this key, made in `generation`. */
  set(key: string, proto: ReplyTransport, generation: number, reply: Buffer, meta: ReplyMeta): void {
    if (generation !== this.#generation || this.size >= this.maxEntries) this.#reset(generation);
    const map = proto === 'udp' ? this.#udp : this.#tcp;
    if (map.has(key)) return;
    let bytes: Uint8Array;
    if (reply.length > SLAB / 4) {
      // Large (a long TCP answer): its own buffer rather than most of a slab.
      bytes = new Uint8Array(reply);
    } else {
      if (this.#used + reply.length > this.#slab.length) {
        this.#slab = Buffer.allocUnsafeSlow(SLAB);
        this.#used = 0;
      }
      bytes = this.#slab.subarray(this.#used, this.#used + reply.length);
      bytes.set(reply);
      this.#used += reply.length;
    }
    map.set(key, { bytes, qtype: meta.qtype, rcode: meta.rcode, truncated: meta.truncated });
  }

  clear(): void {
    this.#reset(this.#generation);
  }

  #reset(generation: number): void {
    this.#generation = generation;
    this.#udp = new Map();
    this.#tcp = new Map();
    // The current slab's entries are gone: start a new one rather than leave its tail unused.
    this.#slab = Buffer.alloc(0);
    this.#used = 0;
  }
}
