/**
 * The difference between two snapshots of a key range, as the watch events that would turn
 * the first into the second. A watch that fell behind a compaction (or an informer whose
 * watch expired) lists again and feeds its old state and the fresh list through this, so
 * its consumers see ordinary ADDED/MODIFIED/DELETED events and never a "start over".
 * flannel does the same for subnet leases (pkg/subnet/watch.go).
 *
 * Pure: no I/O, no clock. Order is fixed: first every DELETED, then ADDED and MODIFIED, each
 * sorted by key. Deletions go first so that a consumer never holds two owners of one thing
 * at once (a subnet leased by a node that left and then by one that joined, an IP of a
 * deleted pod and of its replacement).
 */
import type { WatchEventType } from './types.ts';

export interface SnapshotChange<T> {
  type: WatchEventType;
  key: string;
  /** The new object (ADDED, MODIFIED) or the last known one (DELETED). */
  object: T;
  /** The previous object (MODIFIED, DELETED). */
  old?: T;
}

/**
 * Events from `before` to `after`. An entry present in both counts as MODIFIED when its
 * `version` differs (a resourceVersion, a mod revision).
 */
export function diffSnapshots<T>(
  before: ReadonlyMap<string, T>,
  after: ReadonlyMap<string, T>,
  version: (obj: T) => string | number | undefined,
): SnapshotChange<T>[] {
  const deleted: SnapshotChange<T>[] = [];
  const changed: SnapshotChange<T>[] = [];
  for (const [key, old] of before) {
    if (!after.has(key)) deleted.push({ type: 'DELETED', key, object: old, old });
  }
  for (const [key, obj] of after) {
    const old = before.get(key);
    if (old === undefined && !before.has(key)) changed.push({ type: 'ADDED', key, object: obj });
    else if (version(old as T) !== version(obj)) changed.push({ type: 'MODIFIED', key, object: obj, old: old as T });
  }
  const byKey = (a: SnapshotChange<T>, b: SnapshotChange<T>): number => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0);
  return [...deleted.sort(byKey), ...changed.sort(byKey)];
}
