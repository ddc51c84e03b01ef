/**
 * An in-process KV with etcd's semantics (one revision counter, mod/create revisions,
 * compare-and-swap, a change history that watches replay and `compact()` trims), for the
 * memory datastore and for tests of everything built on KV.
 *
 * It also plays the failures a real etcd has: `disconnect()` breaks every watch session
 * (as an etcd restart does), `setAvailable(false)` makes every call fail with
 * PODNET_DATASTORE_UNAVAILABLE, and `compact()` forgets history so resuming watches must
 * relist. Deliveries to watch sessions are asynchronous (microtasks), as over a socket.
 */
import { DatastoreCode, DatastoreError } from './errors.ts';
import type { KV, KVChange, KVItem, KVRange, KVSession, KVSink, KVWrite } from './kv.ts';

interface LogEntry {
  change: KVChange;
  /** The item before the change, to rebuild old revisions. */
  prev: KVItem | undefined;
}

/** A put (with `value`, optionally attached to a lease) or a delete (without). */
export interface MemoryWrite {
  key: string;
  value?: string;
  lease?: string;
}

interface Session {
  prefix: string;
  sink: KVSink;
  closed: boolean;
}

export class MemoryKV implements KV {
  readonly endpoint: string;
  #data = new Map<string, KVItem>();
  #revision = 1;
  #compacted = 0;
  #log: LogEntry[] = [];
  #sessions = new Set<Session>();
  #available = true;

  constructor(endpoint = 'memory') {
    this.endpoint = endpoint;
  }

  /** The current store revision. */
  get revision(): number {
    return this.#revision;
  }

  #check(): void {
    if (!this.#available) {
      throw new DatastoreError(DatastoreCode.Unavailable, `${this.endpoint} is unavailable (simulated outage)`);
    }
  }

  async get(key: string): Promise<KVItem | undefined> {
    this.#check();
    const item = this.#data.get(key);
    return item && { ...item };
  }

  async range(prefix: string, atRevision?: number): Promise<KVRange> {
    this.#check();
    let view = this.#data;
    if (atRevision !== undefined && atRevision !== this.#revision) {
      if (atRevision < this.#compacted) {
        throw new DatastoreError(DatastoreCode.Expired, `revision ${atRevision} has been compacted (compacted up to ${this.#compacted})`);
      }
      if (atRevision > this.#revision) {
        throw new DatastoreError(DatastoreCode.Invalid, `revision ${atRevision} is in the future (the store is at ${this.#revision})`);
      }
      view = new Map(this.#data);
      for (let i = this.#log.length - 1; i >= 0; i--) {
        const e = this.#log[i] as LogEntry;
        if (e.change.revision <= atRevision) break;
        if (e.prev) view.set(e.change.key, e.prev);
        else view.delete(e.change.key);
      }
    }
    const items = [...view.values()].filter((i) => i.key.startsWith(prefix)).sort((a, b) => (a.key < b.key ? -1 : 1));
    return { items: items.map((i) => ({ ...i })), revision: this.#revision };
  }

  async create(key: string, value: string): Promise<KVWrite> {
    this.#check();
    const current = this.#data.get(key);
    if (current) return { ok: false, current: { ...current } };
    return { ok: true, revision: this.#commit([{ key, value }]) };
  }

  async replace(key: string, value: string, modRevision: number): Promise<KVWrite> {
    this.#check();
    const current = this.#data.get(key);
    if (!current || current.modRevision !== modRevision) return { ok: false, current: current && { ...current } };
    return { ok: true, revision: this.#commit([{ key, value }]) };
  }

  async remove(key: string, modRevision?: number): Promise<KVWrite> {
    this.#check();
    const current = this.#data.get(key);
    if (!current || (modRevision !== undefined && current.modRevision !== modRevision)) {
      return { ok: false, current: current && { ...current } };
    }
    return { ok: true, revision: this.#commit([{ key }]) };
  }

  /**
   * Applies writes (value: put, none: delete) atomically at one new revision, as an etcd
   * transaction does. A put may attach the key to a lease (see `revokeLease`).
   */
  commit(writes: MemoryWrite[]): number {
    this.#check();
    return this.#commit(writes);
  }

  /**
   * An etcd transaction: applies `writes` only if every key in `expect` is at the given mod
   * revision (0: the key must not exist). Returns the new revision, or undefined.
   */
  async commitIf(expect: Array<{ key: string; modRevision: number }>, writes: MemoryWrite[]): Promise<number | undefined> {
    this.#check();
    for (const e of expect) {
      if ((this.#data.get(e.key)?.modRevision ?? 0) !== e.modRevision) return undefined;
    }
    return this.#commit(writes);
  }

  /** Deletes every key attached to `lease` (an etcd lease expiring or revoked). */
  revokeLease(lease: string): number | undefined {
    const keys = [...this.#data.values()].filter((i) => i.lease === lease).map((i) => ({ key: i.key }));
    return keys.length > 0 ? this.#commit(keys) : undefined;
  }

  #commit(writes: MemoryWrite[]): number {
    const revision = ++this.#revision;
    const batch: KVChange[] = [];
    for (const w of writes) {
      const prev = this.#data.get(w.key);
      let change: KVChange;
      if (w.value === undefined) {
        if (!prev) continue;
        this.#data.delete(w.key);
        change = { type: 'delete', key: w.key, revision };
      } else {
        const item: KVItem = { key: w.key, value: w.value, createRevision: prev?.createRevision ?? revision, modRevision: revision };
        if (w.lease !== undefined) item.lease = w.lease;
        this.#data.set(w.key, item);
        change = { type: 'put', key: w.key, value: w.value, revision };
      }
      this.#log.push({ change, prev });
      batch.push(change);
    }
    for (const s of this.#sessions) {
      const mine = batch.filter((c) => c.key.startsWith(s.prefix));
      if (mine.length > 0) queueMicrotask(() => !s.closed && s.sink.changes(mine));
    }
    return revision;
  }

  watch(prefix: string, fromRevision: number, sink: KVSink): KVSession {
    const s: Session = { prefix, sink, closed: false };
    const session: KVSession = {
      close: async () => {
        s.closed = true;
        this.#sessions.delete(s);
      },
    };
    if (!this.#available) {
      queueMicrotask(() => !s.closed && sink.broken(new DatastoreError(DatastoreCode.Unavailable, `${this.endpoint} is unavailable (simulated outage)`), false));
      return session;
    }
    if (fromRevision < this.#compacted) {
      queueMicrotask(() => !s.closed && sink.broken(new DatastoreError(DatastoreCode.Expired, `revision ${fromRevision} has been compacted`), true));
      return session;
    }
    // Replay the history, one batch per revision, then go live.
    const replay: KVChange[][] = [];
    for (const e of this.#log) {
      if (e.change.revision < fromRevision || !e.change.key.startsWith(prefix)) continue;
      const last = replay.at(-1);
      if (last && last[0]?.revision === e.change.revision) last.push(e.change);
      else replay.push([e.change]);
    }
    this.#sessions.add(s);
    queueMicrotask(() => {
      if (s.closed) return;
      sink.opened();
      for (const batch of replay) if (!s.closed) sink.changes(batch);
    });
    return session;
  }

  /** Forgets the history before `revision` (default: now), as etcd's compaction does. */
  compact(revision = this.#revision): void {
    this.#compacted = Math.max(this.#compacted, revision);
    this.#log = this.#log.filter((e) => e.change.revision >= this.#compacted);
  }

  /** Breaks every watch session, as an etcd restart does. */
  disconnect(): void {
    const err = new DatastoreError(DatastoreCode.Unavailable, `${this.endpoint}: connection dropped (simulated)`);
    for (const s of this.#sessions) {
      this.#sessions.delete(s);
      s.closed = true;
      queueMicrotask(() => s.sink.broken(err, false));
    }
  }

  /** Simulates an outage: calls fail and watch sessions break until made available again. */
  setAvailable(available: boolean): void {
    this.#available = available;
    if (!available) this.disconnect();
  }

  async close(): Promise<void> {
    for (const s of this.#sessions) s.closed = true;
    this.#sessions.clear();
  }
}
