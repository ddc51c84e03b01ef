/**
 * The cache of forwarded answers, by (name, type, class), honouring the answers' own TTLs.
 *
 * Positive answers live for their smallest TTL; negative ones (NXDOMAIN, NODATA) for the
 * SOA's negative TTL, min(SOA TTL, SOA minimum), as RFC 2308 says; an answer without a
 * usable TTL (no SOA, TTL 0, SERVFAIL) is not kept. Both are capped (an hour and half an hour
 * by default, as CoreDNS's cache plugin does). An entry handed out again has its TTLs
 * lowered by the time it spent here, so a client never keeps a record longer than its owner
 * allowed. Size is bounded: a Map kept in least-recently-used order, oldest dropped first.
 */
import type { Answer } from 'dns-packet';

export interface CachedMessage {
  /** The upstream's rcode mnemonic (NOERROR, NXDOMAIN). */
  rcode: string;
  answers: Answer[];
  authorities: Answer[];
  additionals: Answer[];
}

export interface AnswerCacheOptions {
  maxEntries?: number;
  maxTtl?: number;
  maxNegativeTtl?: number;
  now?: () => number;
}

interface Entry {
  msg: CachedMessage;
  stored: number;
  expires: number;
}

export function cacheKey(name: string, type: string, klass = 'IN'): string {
  return `${name.toLowerCase().replace(/\.$/, '')}|${type}|${klass}`;
}

function minTtl(rrs: readonly Answer[]): number {
  let min = Infinity;
  for (const r of rrs) if (r.type !== 'OPT' && r.ttl !== undefined) min = Math.min(min, r.ttl);
  return min;
}

/** How long an answer may be cached, in seconds (0: not at all). */
export function cacheTtl(msg: CachedMessage, maxTtl = 3600, maxNegativeTtl = 1800): number {
  if (msg.rcode === 'NOERROR' && msg.answers.length > 0) {
    const t = minTtl(msg.answers);
    return Number.isFinite(t) ? Math.max(0, Math.min(t, maxTtl)) : 0;
  }
  if (msg.rcode === 'NOERROR' || msg.rcode === 'NXDOMAIN') {
    const soa = msg.authorities.find((r) => r.type === 'SOA');
    if (!soa || soa.type !== 'SOA') return 0;
    return Math.max(0, Math.min(soa.ttl ?? 0, soa.data.minimum ?? 0, maxNegativeTtl));
  }
  return 0;
}

function aged(rrs: readonly Answer[], by: number): Answer[] {
  return by === 0 ? [...rrs] : rrs.map((r) => (r.type === 'OPT' ? r : { ...r, ttl: Math.max(0, (r.ttl ?? 0) - by) }));
}

export class AnswerCache {
  readonly maxEntries: number;
  readonly #maxTtl: number;
  readonly #maxNegativeTtl: number;
  readonly #now: () => number;
  #entries = new Map<string, Entry>();

  constructor(opts: AnswerCacheOptions = {}) {
    this.maxEntries = opts.maxEntries ?? 10_000;
    this.#maxTtl = opts.maxTtl ?? 3600;
    this.#maxNegativeTtl = opts.maxNegativeTtl ?? 1800;
    this.#now = opts.now ?? Date.now;
  }

  get size(): number {
    return this.#entries.size;
  }

  /** The answer with its TTLs lowered by its age, or undefined (missing or expired). */
  get(key: string): CachedMessage | undefined {
    const e = this.#entries.get(key);
    if (!e) return undefined;
    const now = this.#now();
    this.#entries.delete(key);
    if (now >= e.expires) return undefined;
    this.#entries.set(key, e); // most recently used
    const age = Math.floor((now - e.stored) / 1000);
    return { rcode: e.msg.rcode, answers: aged(e.msg.answers, age), authorities: aged(e.msg.authorities, age), additionals: aged(e.msg.additionals, age) };
  }

  /** Keeps `msg` for as long as its TTLs allow; returns that time in seconds (0: not kept). */
  set(key: string, msg: CachedMessage): number {
    const ttl = cacheTtl(msg, this.#maxTtl, this.#maxNegativeTtl);
    if (ttl <= 0 || this.maxEntries <= 0) return 0;
    const now = this.#now();
    this.#entries.delete(key);
    this.#entries.set(key, { msg, stored: now, expires: now + ttl * 1000 });
    while (this.#entries.size > this.maxEntries) {
      const oldest = this.#entries.keys().next().value;
      if (oldest === undefined) break;
      this.#entries.delete(oldest);
    }
    return ttl;
  }

  clear(): void {
    this.#entries.clear();
  }
}
