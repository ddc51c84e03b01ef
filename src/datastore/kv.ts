/**
 * The storage underneath the etcd and memory datastores: a revisioned key-value store with
 * compare-and-swap writes and a resumable prefix watch, which is exactly what etcd v3 is and
 * what kube-apiserver's storage.Interface asks of it. Everything Kubernetes-shaped (kinds,
 * keys, status rules, label selectors) sits above it in `store.ts`, so both backends share
 * it and the memory backend's tests cover it.
 *
 * Revisions are etcd's: one counter for the whole store, bumped by every write; a key's
 * `modRevision` is the revision of its last write. Writes compare on it.
 */

export interface KVItem {
  key: string;
  value: string;
  createRevision: number;
  modRevision: number;
  /** The etcd lease the key is attached to ('0' or absent: none). */
  lease?: string;
}

export interface KVRange {
  items: KVItem[];
  /** The store revision the range was read at. */
  revision: number;
}

export interface KVChange {
  type: 'put' | 'delete';
  key: string;
  /** The new value (put). */
  value?: string;
  /** The revision of the write. A transaction's changes share one revision. */
  revision: number;
}

export type KVWrite =
  | { ok: true; revision: number }
  /** The comparison failed; `current` is what is there now (undefined: no such key). */
  | { ok: false; current: KVItem | undefined };

/** Where a watch session delivers. Calls come in order; none after `close()`. */
export interface KVSink {
  /** The session is established (reset any backoff). */
  opened(): void;
  /** Changes, in revision order, each revision complete within one batch. */
  changes(batch: KVChange[]): void;
  /** Every change up to `revision` has been delivered. */
  progress(revision: number): void;
  /**
   * The session ended. `resync`: the history from the requested revision is gone
   * (compacted) or the session was refused: list again instead of resuming.
   */
  broken(err: Error, resync: boolean): void;
}

export interface KVSession {
  close(): Promise<void>;
}

export interface KV {
  /** Where the data lives, for messages. */
  readonly endpoint: string;
  get(key: string): Promise<KVItem | undefined>;
  /**
   * Every key under `prefix`. With `atRevision`, as the store was then (PODNET_DATASTORE_EXPIRED
   * if compacted).
   */
  range(prefix: string, atRevision?: number): Promise<KVRange>;
  /** Writes only if the key does not exist. */
  create(key: string, value: string): Promise<KVWrite>;
  /** Writes only if the key exists at `modRevision`. */
  replace(key: string, value: string, modRevision: number): Promise<KVWrite>;
  /** Deletes only if the key exists (and, if given, is at `modRevision`). */
  remove(key: string, modRevision?: number): Promise<KVWrite>;
  /** Streams the changes under `prefix` from `fromRevision` on (inclusive). */
  watch(prefix: string, fromRevision: number, sink: KVSink): KVSession;
  close(): Promise<void>;
}
