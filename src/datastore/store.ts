/**
 * The Datastore interface over a KV (etcd or memory): Kubernetes objects under
 * `/registry/<plural>/…` (layout in kinds.ts), with kube-apiserver's write rules.
 *
 * Every write is one compare-and-swap: create compares the key's create revision with 0,
 * update and delete compare its mod revision with the one just read. An update that names a
 * resourceVersion fails with CONFLICT as soon as the stored one differs; one without a
 * resourceVersion ("whatever is there") re-reads and retries when it loses a race. An update
 * that would store exactly the bytes already stored writes nothing, so watchers see no
 * event for it (as with kube-apiserver).
 */
import { DatastoreCode, DatastoreError, describeRef } from './errors.ts';
import {
  DEFAULT_PREFIX,
  checkObject,
  decodeObject,
  encodeObject,
  kindInfo,
  objectKey,
  parseRevision,
  prepareCreate,
  prepareUpdate,
  rangePrefix,
  type KindInfo,
} from './kinds.ts';
import type { KV, KVItem } from './kv.ts';
import { compileSelector } from './labels.ts';
import { MirrorWatch, type RetryOptions } from './watch-engine.ts';
import type {
  AnyObject,
  Datastore,
  DeleteOptions,
  Kind,
  ListOptions,
  ObjectList,
  ObjectOf,
  ObjectRef,
  Watch,
  WatchOptions,
} from './types.ts';

export interface KVDatastoreOptions {
  /** Key prefix (default `/registry`). */
  prefix?: string;
  /** How watches back off while the store is unreachable. */
  watchRetry?: RetryOptions;
}

/** How often an unconditional update retries when it keeps losing races. */
const UNCONDITIONAL_ATTEMPTS = 16;

export class KVDatastore implements Datastore {
  readonly backend: string;
  readonly kv: KV;
  readonly prefix: string;
  readonly #watchRetry: RetryOptions | undefined;
  readonly #watches = new Set<MirrorWatch<AnyObject>>();
  #closed = false;

  constructor(backend: string, kv: KV, opts: KVDatastoreOptions = {}) {
    this.backend = backend;
    this.kv = kv;
    this.prefix = (opts.prefix ?? DEFAULT_PREFIX).replace(/\/+$/, '');
    this.#watchRetry = opts.watchRetry;
  }

  get endpoint(): string {
    return this.kv.endpoint;
  }

  #decode<K extends Kind>(info: KindInfo, item: KVItem): ObjectOf<K> {
    const obj = decodeObject(item.value, item.modRevision);
    if (!obj || obj.kind !== info.kind) {
      throw new DatastoreError(DatastoreCode.Invalid, `${item.key} in ${this.endpoint} does not hold a ${info.kind} (not podnet's data?)`);
    }
    return obj as ObjectOf<K>;
  }

  async get<K extends Kind>(kind: K, ref: ObjectRef): Promise<ObjectOf<K>> {
    const info = kindInfo(kind);
    const item = await this.kv.get(objectKey(this.prefix, info, ref));
    if (!item) throw this.#notFound(info, ref);
    return this.#decode<K>(info, item);
  }

  async list<K extends Kind>(kind: K, opts: ListOptions = {}): Promise<ObjectList<ObjectOf<K>>> {
    const info = kindInfo(kind);
    const matches = compileSelector(opts.labelSelector);
    const r = await this.kv.range(rangePrefix(this.prefix, info, opts.namespace));
    const items: ObjectOf<K>[] = [];
    for (const item of r.items) {
      const obj = decodeObject(item.value, item.modRevision);
      if (obj && obj.kind === info.kind && matches(obj.metadata.labels)) items.push(obj as ObjectOf<K>);
    }
    return { items, revision: String(r.revision) };
  }

  async create<T extends AnyObject>(input: T): Promise<T> {
    const { info, obj } = prepareCreate(input);
    const ref = { namespace: obj.metadata.namespace, name: obj.metadata.name };
    const r = await this.kv.create(objectKey(this.prefix, info, ref), encodeObject(obj));
    if (!r.ok) {
      throw new DatastoreError(DatastoreCode.AlreadyExists, `${describeRef(info.kind, ref.namespace, ref.name)} already exists`);
    }
    obj.metadata.resourceVersion = String(r.revision);
    return obj;
  }

  update<T extends AnyObject>(obj: T): Promise<T> {
    return this.#write(obj, false);
  }

  updateStatus<T extends AnyObject>(obj: T): Promise<T> {
    return this.#write(obj, true);
  }

  async #write<T extends AnyObject>(input: T, statusOnly: boolean): Promise<T> {
    const info = checkObject(input);
    if (statusOnly && !info.hasStatus) {
      throw new DatastoreError(DatastoreCode.Invalid, `${info.kind} has no status (as in Kubernetes): write it with update`);
    }
    const ref = { namespace: input.metadata.namespace, name: input.metadata.name };
    const key = objectKey(this.prefix, info, ref);
    const expected = parseRevision(input.metadata.resourceVersion, 'metadata.resourceVersion');
    for (let attempt = 0; ; attempt++) {
      const item = await this.kv.get(key);
      if (!item) throw this.#notFound(info, ref);
      if (expected !== undefined && item.modRevision !== expected) throw this.#conflict(info, ref, expected, item.modRevision);
      const stored = this.#decode<Kind>(info, item) as T;
      if (input.metadata.uid && stored.metadata.uid && input.metadata.uid !== stored.metadata.uid) {
        throw new DatastoreError(
          DatastoreCode.Conflict,
          `${describeRef(info.kind, ref.namespace, ref.name)} was deleted and created again (uid ${input.metadata.uid} is now ${stored.metadata.uid}): read it again`,
        );
      }
      const next = prepareUpdate(info, input, stored, statusOnly);
      const value = encodeObject(next);
      if (value === item.value) return stored;
      const r = await this.kv.replace(key, value, item.modRevision);
      if (r.ok) {
        next.metadata.resourceVersion = String(r.revision);
        return next;
      }
      if (!r.current) throw this.#notFound(info, ref);
      if (expected !== undefined) throw this.#conflict(info, ref, expected, r.current.modRevision);
      if (attempt + 1 >= UNCONDITIONAL_ATTEMPTS) throw this.#conflict(info, ref, item.modRevision, r.current.modRevision);
    }
  }

  async delete<K extends Kind>(kind: K, ref: ObjectRef, opts: DeleteOptions = {}): Promise<ObjectOf<K>> {
    const info = kindInfo(kind);
    const key = objectKey(this.prefix, info, ref);
    const expected = parseRevision(opts.resourceVersion, 'resourceVersion precondition');
    for (;;) {
      const item = await this.kv.get(key);
      if (!item) throw this.#notFound(info, ref);
      if (expected !== undefined && item.modRevision !== expected) throw this.#conflict(info, ref, expected, item.modRevision);
      const obj = this.#decode<K>(info, item);
      if (opts.uid !== undefined && obj.metadata.uid !== opts.uid) {
        throw new DatastoreError(
          DatastoreCode.Conflict,
          `${describeRef(info.kind, ref.namespace, ref.name)} has uid ${String(obj.metadata.uid)}, not ${opts.uid}: it was replaced`,
        );
      }
      const r = await this.kv.remove(key, item.modRevision);
      if (r.ok) {
        obj.metadata.resourceVersion = String(r.revision);
        return obj;
      }
      if (!r.current) throw this.#notFound(info, ref);
      if (expected !== undefined) throw this.#conflict(info, ref, expected, r.current.modRevision);
    }
  }

  watch<K extends Kind>(kind: K, opts: WatchOptions = {}): Watch<ObjectOf<K>> {
    const info = kindInfo(kind);
    if (this.#closed) throw new DatastoreError(DatastoreCode.Unavailable, `the datastore (${this.endpoint}) is closed`);
    const matches = compileSelector(opts.labelSelector);
    const fromRevision = parseRevision(opts.fromRevision, 'fromRevision');
    const w: MirrorWatch<AnyObject> = new MirrorWatch<AnyObject>({
      kv: this.kv,
      prefix: rangePrefix(this.prefix, info, opts.namespace),
      decode: (_key, value, revision) => {
        const obj = decodeObject(value, revision);
        return obj && obj.kind === info.kind ? obj : undefined;
      },
      version: (obj) => obj.metadata.resourceVersion,
      deleted: (obj, revision) => ({ ...obj, metadata: { ...obj.metadata, resourceVersion: String(revision) } }) as AnyObject,
      filter: (obj) => matches(obj.metadata.labels),
      ...(fromRevision !== undefined ? { fromRevision } : {}),
      ...(this.#watchRetry ? { retry: this.#watchRetry } : {}),
      ...(opts.signal ? { signal: opts.signal } : {}),
      ...(opts.onStatus ? { onStatus: opts.onStatus } : {}),
      onStop: () => this.#watches.delete(w),
    });
    this.#watches.add(w);
    return w as unknown as Watch<ObjectOf<K>>;
  }

  /** Stops every watch; new ones are refused. */
  protected async stopWatches(): Promise<void> {
    this.#closed = true;
    await Promise.all([...this.#watches].map((w) => w.stop()));
  }

  async close(): Promise<void> {
    await this.stopWatches();
    await this.kv.close();
  }

  #notFound(info: KindInfo, ref: ObjectRef): DatastoreError {
    const ns = info.namespaced ? ref.namespace || 'default' : undefined;
    return new DatastoreError(DatastoreCode.NotFound, `${describeRef(info.kind, ns, ref.name)} not found`);
  }

  #conflict(info: KindInfo, ref: ObjectRef, have: number, now: number): DatastoreError {
    const ns = info.namespaced ? ref.namespace || 'default' : undefined;
    return new DatastoreError(
      DatastoreCode.Conflict,
      `${describeRef(info.kind, ns, ref.name)} was changed by somebody else (you have resourceVersion ${have}, it is now ${now}): read it again, reapply your change and retry`,
    );
  }
}
