/**
 * The watch that survives: a mirror of one key range, kept current from a KV watch session,
 * that turns raw puts and deletes into ADDED/MODIFIED/DELETED events.
 *
 * Why a mirror. Three things need to know what the consumer has already seen: telling
 * ADDED from MODIFIED, turning a label change that leaves the selector into DELETED (and
 * one that enters it into ADDED), and, after a compaction, diffing the old state against a
 * fresh list. So the watch keeps the objects it has delivered, keyed by storage key; the
 * memory cost is one range, which an informer holds anyway.
 *
 * How it resumes. The watch tracks `revision`, the last revision whose changes it has
 * delivered in full (each change's mod revision; also etcd's progress notifications). When
 * a session breaks (etcd restarted, socket gone) it opens a new one from `revision + 1`,
 * after a backoff, for as long as it takes: nothing is skipped, and changes at or below
 * `revision` that a new session replays are dropped, so nothing is repeated. We track the
 * revision ourselves from the events, as etcd's Go client does, rather than trusting the
 * response header, which can run ahead of the events while a watcher is catching up.
 *
 * When it cannot resume. If the history from `revision + 1` has been compacted, etcd
 * cancels the session; the watch then lists the range again and emits the difference
 * between its mirror and the list (events marked `synthetic`), and resumes from the list's
 * revision. Only a `fromRevision` that is already compacted when the watch starts is an
 * error (PODNET_DATASTORE_EXPIRED), because there is no state to diff against.
 */
import { diffSnapshots } from './diff.ts';
import { DatastoreCode, DatastoreError, isExpired, isUnavailable } from './errors.ts';
import type { KV, KVChange, KVSession } from './kv.ts';
import type { Watch, WatchEvent, WatchEventType, WatchStatus } from './types.ts';

export interface RetryOptions {
  /** First delay after a failure (ms). */
  initialMs: number;
  /** Longest delay (ms). */
  maxMs: number;
}

export const DEFAULT_RETRY: RetryOptions = { initialMs: 100, maxMs: 2000 };

export interface MirrorWatchOptions<T> {
  kv: KV;
  /** The key range, a prefix ending in '/'. */
  prefix: string;
  /** Turns a stored value into an object (undefined: not one of ours, skip it). */
  decode(key: string, value: string, revision: number): T | undefined;
  /** The object's version, to tell a change from none when diffing. */
  version(obj: T): string | number | undefined;
  /** The object as a DELETED event carries it, stamped with the deletion's revision. */
  deleted(obj: T, revision: number): T;
  /** Only objects that pass are watched (a label selector). */
  filter?: (obj: T) => boolean;
  fromRevision?: number;
  retry?: RetryOptions;
  signal?: AbortSignal;
  onStatus?: (status: WatchStatus) => void;
  /** Called once when the watch stops. */
  onStop?: () => void;
}

interface Waiter<T> {
  resolve(r: IteratorResult<WatchEvent<T>>): void;
  reject(err: unknown): void;
}

export class MirrorWatch<T> implements Watch<T> {
  readonly #o: MirrorWatchOptions<T>;
  readonly #retry: RetryOptions;
  #mirror = new Map<string, T>();
  #rev = 0;
  #queue: WatchEvent<T>[] = [];
  #waiters: Waiter<T>[] = [];
  #stopped = false;
  #failure: Error | undefined;
  #session: KVSession | undefined;
  #generation = 0;
  #delay: number;
  #timer: NodeJS.Timeout | undefined;
  #state: WatchStatus['state'] | undefined;
  #onAbort = (): void => void this.stop();

  constructor(opts: MirrorWatchOptions<T>) {
    this.#o = opts;
    this.#retry = opts.retry ?? DEFAULT_RETRY;
    this.#delay = this.#retry.initialMs;
    if (opts.signal?.aborted) {
      this.#stopped = true;
      return;
    }
    opts.signal?.addEventListener('abort', this.#onAbort, { once: true });
    void this.#seed();
  }

  get revision(): string {
    return String(this.#rev);
  }

  /** The objects the watch has delivered and not deleted (for tests and informers). */
  get size(): number {
    return this.#mirror.size;
  }

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#o.signal?.removeEventListener('abort', this.#onAbort);
    this.#o.onStop?.();
    clearTimeout(this.#timer);
    this.#generation++;
    const session = this.#session;
    this.#session = undefined;
    for (const w of this.#waiters.splice(0)) w.resolve({ value: undefined, done: true });
    this.#queue = [];
    await session?.close();
  }

  [Symbol.asyncIterator](): AsyncIterator<WatchEvent<T>> {
    return {
      next: () => this.#next(),
      return: async () => {
        await this.stop();
        return { value: undefined, done: true };
      },
    };
  }

  #next(): Promise<IteratorResult<WatchEvent<T>>> {
    if (this.#stopped) return Promise.resolve({ value: undefined, done: true });
    const ev = this.#queue.shift();
    if (ev) return Promise.resolve({ value: ev, done: false });
    if (this.#failure) return Promise.reject(this.#failure);
    return new Promise((resolve, reject) => this.#waiters.push({ resolve, reject }));
  }

  /** Queues an event; `revision` is where a consumer that handled it may resume. */
  #push(type: WatchEventType, object: T, revision: number, synthetic: boolean): void {
    const ev: WatchEvent<T> = { type, object, revision: String(revision) };
    if (synthetic) ev.synthetic = true;
    const w = this.#waiters.shift();
    if (w) w.resolve({ value: ev, done: false });
    else this.#queue.push(ev);
  }

  #fail(err: Error): void {
    if (this.#stopped) return;
    this.#failure = err;
    clearTimeout(this.#timer);
    this.#generation++;
    void this.#session?.close();
    this.#session = undefined;
    for (const w of this.#waiters.splice(0)) w.reject(err);
  }

  /** Reports a change of state ('disconnected' once per outage, not once per retry). */
  #status(state: WatchStatus['state'], error?: Error): void {
    if (state !== 'resynced' && state === this.#state) return;
    this.#state = state;
    try {
      this.#o.onStatus?.(error ? { state, revision: this.revision, error } : { state, revision: this.revision });
    } catch {
      // A status callback must not break the watch.
    }
  }

  #backoff(): number {
    const d = this.#delay;
    this.#delay = Math.min(this.#delay * 2, this.#retry.maxMs);
    return d;
  }

  #later(fn: () => void): void {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(fn, this.#backoff());
  }

  #wanted(obj: T | undefined): obj is T {
    return obj !== undefined && (this.#o.filter === undefined || this.#o.filter(obj));
  }

  /** Reads the range (now, or at `at`) into a map of wanted objects. */
  async #snapshot(at?: number): Promise<{ objects: Map<string, T>; revision: number }> {
    const r = await this.#o.kv.range(this.#o.prefix, at);
    const objects = new Map<string, T>();
    for (const item of r.items) {
      const obj = this.#o.decode(item.key, item.value, item.modRevision);
      if (this.#wanted(obj)) objects.set(item.key, obj);
    }
    return { objects, revision: r.revision };
  }

  /** Retries `step` while the store is unavailable; fails the watch on anything else. */
  async #retrying(step: () => Promise<void>): Promise<void> {
    while (!this.#stopped && !this.#failure) {
      const generation = this.#generation;
      try {
        await step();
        return;
      } catch (err) {
        if (this.#stopped || generation !== this.#generation) return;
        if (!isUnavailable(err)) {
          this.#fail(err instanceof Error ? err : new Error(String(err)));
          return;
        }
        this.#status('disconnected', err as Error);
        await new Promise<void>((resolve) => {
          this.#timer = setTimeout(resolve, this.#backoff());
        });
      }
    }
  }

  async #seed(): Promise<void> {
    const from = this.#o.fromRevision;
    await this.#retrying(async () => {
      if (from === undefined) {
        const snap = await this.#snapshot();
        if (this.#stopped) return;
        this.#mirror = snap.objects;
        this.#rev = snap.revision;
        const keys = [...snap.objects.keys()].sort();
        keys.forEach((key, i) => this.#push('ADDED', snap.objects.get(key) as T, i === keys.length - 1 ? snap.revision : 0, false));
      } else if (from === 0) {
        // Everything after revision 0: the whole history (or, if compacted, a resync
        // against nothing, which gives the same end state).
        this.#mirror = new Map();
        this.#rev = 0;
      } else {
        let snap;
        try {
          snap = await this.#snapshot(from);
        } catch (err) {
          if (isExpired(err)) {
            throw new DatastoreError(
              DatastoreCode.Expired,
              `cannot watch ${this.#o.prefix} from revision ${from}: ${this.#o.kv.endpoint} has compacted its history past it; list again and watch from the list's revision`,
              { cause: err },
            );
          }
          throw err;
        }
        if (this.#stopped) return;
        this.#mirror = snap.objects;
        this.#rev = from;
      }
      this.#open();
    });
  }

  async #resync(): Promise<void> {
    await this.#retrying(async () => {
      const snap = await this.#snapshot();
      if (this.#stopped) return;
      const changes = diffSnapshots(this.#mirror, snap.objects, this.#o.version);
      changes.forEach((c, i) => {
        const obj = c.type === 'DELETED' ? this.#o.deleted(c.object, snap.revision) : c.object;
        this.#push(c.type, obj, i === changes.length - 1 ? snap.revision : this.#rev, true);
      });
      this.#mirror = snap.objects;
      this.#rev = snap.revision;
      this.#status('resynced');
      this.#open();
    });
  }

  #open(): void {
    if (this.#stopped || this.#failure) return;
    const generation = ++this.#generation;
    const live = (): boolean => generation === this.#generation && !this.#stopped;
    this.#session = this.#o.kv.watch(this.#o.prefix, this.#rev + 1, {
      opened: () => {
        if (!live()) return;
        this.#delay = this.#retry.initialMs;
        this.#status('connected');
      },
      changes: (batch) => {
        if (live()) this.#apply(batch);
      },
      progress: (revision) => {
        if (live() && revision > this.#rev) this.#rev = revision;
      },
      broken: (err, resync) => {
        if (!live()) return;
        this.#generation++;
        this.#session = undefined;
        this.#status('disconnected', err);
        if (resync) this.#later(() => void this.#resync());
        else this.#later(() => this.#open());
      },
    });
  }

  #apply(batch: KVChange[]): void {
    const floor = this.#rev;
    batch.forEach((c, i) => {
      if (c.revision <= floor) return; // replayed by a resumed session: already delivered
      // A transaction's changes share a revision: only its last one completes it.
      const resumeAt = batch[i + 1]?.revision === c.revision ? this.#rev : c.revision;
      const old = this.#mirror.get(c.key);
      const obj = c.type === 'put' && c.value !== undefined ? this.#o.decode(c.key, c.value, c.revision) : undefined;
      if (this.#wanted(obj)) {
        this.#mirror.set(c.key, obj);
        this.#push(old === undefined ? 'ADDED' : 'MODIFIED', obj, resumeAt, false);
      } else if (old !== undefined) {
        this.#mirror.delete(c.key);
        this.#push('DELETED', this.#o.deleted(old, c.revision), resumeAt, false);
      }
      if (resumeAt > this.#rev) this.#rev = resumeAt;
    });
  }
}
