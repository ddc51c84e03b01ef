/**
 * Informers: a kind's objects in a local cache, kept current by list + watch, with
 * handlers for additions, updates and deletions; client-go's SharedInformer in miniature,
 * and what the agent, DNS and controller build on. Works over any Datastore.
 *
 * The loop is the reflector's: list (fills the cache, `onAdd` for each object), then watch
 * from the list's revision. The datastore's watch already resumes across disconnects and
 * resynchronises after compactions, so the informer only sees a watch fail when it could
 * not even begin (its start revision was compacted away) or hit something unexpected; then
 * it lists again and turns the difference between its cache and the list into ordinary
 * handler calls (diffSnapshots), so a consumer never has to "start over".
 *
 * Handlers run synchronously, in event order, one at a time; an exception in one is
 * reported to `onError` and does not stop the informer. Cached objects are shared with
 * every handler: treat them as read-only (structuredClone before changing one).
 */
import { diffSnapshots } from './diff.ts';
import { describe } from '../errors/index.ts';
import { isExpired, isUnavailable } from './errors.ts';
import { cacheKey, kindInfo } from './kinds.ts';
import type { RetryOptions } from './watch-engine.ts';
import { DEFAULT_RETRY } from './watch-engine.ts';
import type { Datastore, Kind, ObjectOf, ObjectRef, Selector, Watch, WatchEvent, WatchStatus } from './types.ts';

export interface EventHandlers<T> {
  /** `initial`: the object came with the first list (or was replayed to a late handler). */
  onAdd?(obj: T, initial: boolean): void;
  onUpdate?(oldObj: T, newObj: T): void;
  onDelete?(obj: T): void;
}

export interface InformerOptions {
  namespace?: string;
  labelSelector?: Selector;
  /** Told of handler exceptions and of failures the informer recovers from. Default: stderr. */
  onError?: (err: unknown) => void;
  /** Told when the underlying watch disconnects, reconnects or resynchronises. */
  onStatus?: (status: WatchStatus) => void;
  retry?: RetryOptions;
}

export interface Informer<T> {
  readonly kind: Kind;
  /** The last revision the cache reflects. */
  readonly revision: string;
  /**
   * Lists, fills the cache and starts watching. Resolves once the first list is in the
   * cache (synced); while the datastore is unreachable it keeps trying.
   */
  start(signal?: AbortSignal): Promise<void>;
  stop(): Promise<void>;
  hasSynced(): boolean;
  /**
   * Adds handlers and returns a function that removes them. A handler added after sync gets
   * `onAdd(obj, true)` for every cached object first, as in client-go.
   */
  addEventHandler(handlers: EventHandlers<T>): () => void;
  get(ref: ObjectRef): T | undefined;
  /** Cached objects (of one namespace, if given), sorted by namespace/name. */
  list(namespace?: string): T[];
  /**
   * Resolves once the cache reflects `revision` (a write's resourceVersion to this kind):
   * read-your-writes for tests and controllers.
   */
  waitForRevision(revision: string, timeoutMs?: number): Promise<void>;
}

export function createInformer<K extends Kind>(ds: Datastore, kind: K, opts: InformerOptions = {}): Informer<ObjectOf<K>> {
  return new DatastoreInformer(ds, kind, opts);
}

class DatastoreInformer<K extends Kind> implements Informer<ObjectOf<K>> {
  readonly kind: K;
  readonly #ds: Datastore;
  readonly #opts: InformerOptions;
  readonly #namespaced: boolean;
  readonly #retry: RetryOptions;
  #cache = new Map<string, ObjectOf<K>>();
  #handlers = new Set<EventHandlers<ObjectOf<K>>>();
  #rev = 0;
  #synced = false;
  #stopped = false;
  #started: Promise<void> | undefined;
  #watch: Watch<ObjectOf<K>> | undefined;
  #waiters: Array<{ revision: number; resolve(): void }> = [];
  #sleep: { timer: NodeJS.Timeout; resolve(): void } | undefined;

  constructor(ds: Datastore, kind: K, opts: InformerOptions) {
    this.#ds = ds;
    this.kind = kind;
    this.#opts = opts;
    this.#namespaced = kindInfo(kind).namespaced;
    this.#retry = opts.retry ?? DEFAULT_RETRY;
  }

  get revision(): string {
    return String(this.#rev);
  }

  hasSynced(): boolean {
    return this.#synced;
  }

  start(signal?: AbortSignal): Promise<void> {
    signal?.addEventListener('abort', () => void this.stop(), { once: true });
    this.#started ??= this.#sync();
    return this.#started;
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#sleep) {
      clearTimeout(this.#sleep.timer);
      this.#sleep.resolve();
    }
    await this.#watch?.stop();
  }

  addEventHandler(handlers: EventHandlers<ObjectOf<K>>): () => void {
    this.#handlers.add(handlers);
    if (this.#synced) for (const obj of this.list()) this.#call(() => handlers.onAdd?.(obj, true));
    return () => this.#handlers.delete(handlers);
  }

  get(ref: ObjectRef): ObjectOf<K> | undefined {
    const key = this.#namespaced ? `${ref.namespace || 'default'}/${ref.name}` : ref.name;
    return this.#cache.get(key);
  }

  list(namespace?: string): ObjectOf<K>[] {
    const keys = [...this.#cache.keys()].sort();
    const out: ObjectOf<K>[] = [];
    for (const k of keys) {
      const obj = this.#cache.get(k) as ObjectOf<K>;
      if (namespace === undefined || obj.metadata.namespace === namespace) out.push(obj);
    }
    return out;
  }

  waitForRevision(revision: string, timeoutMs = 10_000): Promise<void> {
    const target = Number(revision);
    if (this.#rev >= target) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w !== waiter);
        reject(new Error(`${this.kind} informer did not reach revision ${revision} in ${timeoutMs} ms (it is at ${this.#rev})`));
      }, timeoutMs);
      const waiter = {
        revision: target,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      };
      this.#waiters.push(waiter);
    });
  }

  #call(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.#error(err);
    }
  }

  #error(err: unknown): void {
    if (this.#opts.onError) this.#opts.onError(err);
    else console.error(`podnet: ${this.kind} informer: ${describe(err)}`);
  }

  #advance(revision: number): void {
    if (revision > this.#rev) this.#rev = revision;
    if (this.#waiters.length === 0) return;
    const ready = this.#waiters.filter((w) => w.revision <= this.#rev);
    this.#waiters = this.#waiters.filter((w) => w.revision > this.#rev);
    for (const w of ready) w.resolve();
  }

  async #pause(ms: number): Promise<void> {
    await new Promise<void>((resolve) => {
      this.#sleep = { timer: setTimeout(resolve, ms), resolve };
    });
    this.#sleep = undefined;
  }

  /** Lists until it works; replaces the cache, calling handlers for the difference. */
  async #relist(): Promise<boolean> {
    let delay = this.#retry.initialMs;
    while (!this.#stopped) {
      try {
        const listed = await this.#ds.list(this.kind, {
          ...(this.#opts.namespace ? { namespace: this.#opts.namespace } : {}),
          ...(this.#opts.labelSelector !== undefined ? { labelSelector: this.#opts.labelSelector } : {}),
        });
        if (this.#stopped) return false;
        const next = new Map<string, ObjectOf<K>>();
        for (const obj of listed.items) next.set(cacheKey(obj), obj);
        const initial = !this.#synced;
        for (const c of diffSnapshots(this.#cache, next, (o) => o.metadata.resourceVersion)) {
          if (c.type === 'DELETED') this.#cache.delete(c.key);
          else this.#cache.set(c.key, c.object);
          this.#dispatch(c.type, c.object, c.old, initial);
        }
        this.#cache = next;
        this.#synced = true;
        this.#advance(Number(listed.revision));
        return true;
      } catch (err) {
        if (!isUnavailable(err)) this.#error(err);
        await this.#pause(delay);
        delay = Math.min(delay * 2, this.#retry.maxMs);
      }
    }
    return false;
  }

  async #sync(): Promise<void> {
    if (await this.#relist()) void this.#run();
  }

  async #run(): Promise<void> {
    while (!this.#stopped) {
      const watch = this.#ds.watch(this.kind, {
        fromRevision: String(this.#rev),
        ...(this.#opts.namespace ? { namespace: this.#opts.namespace } : {}),
        ...(this.#opts.labelSelector !== undefined ? { labelSelector: this.#opts.labelSelector } : {}),
        ...(this.#opts.onStatus ? { onStatus: this.#opts.onStatus } : {}),
      });
      this.#watch = watch;
      if (this.#stopped) {
        await watch.stop();
        return;
      }
      try {
        for await (const ev of watch) this.#apply(ev);
        return; // stopped
      } catch (err) {
        // The watch could not go on (its start revision was compacted, or worse): list again.
        if (!isUnavailable(err) && !isExpired(err)) this.#error(err);
        if (!(await this.#relist())) return;
      }
    }
  }

  #apply(ev: WatchEvent<ObjectOf<K>>): void {
    const key = cacheKey(ev.object);
    const old = this.#cache.get(key);
    if (ev.type === 'DELETED') this.#cache.delete(key);
    else this.#cache.set(key, ev.object);
    this.#dispatch(ev.type, ev.object, old, false);
    this.#advance(Number(ev.revision));
  }

  #dispatch(type: WatchEvent<unknown>['type'], obj: ObjectOf<K>, old: ObjectOf<K> | undefined, initial: boolean): void {
    for (const h of this.#handlers) {
      if (type === 'DELETED') this.#call(() => h.onDelete?.(old ?? obj));
      else if (old === undefined) this.#call(() => h.onAdd?.(obj, initial));
      else this.#call(() => h.onUpdate?.(old, obj));
    }
  }
}
