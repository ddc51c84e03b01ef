/**
 * Read-modify-write with optimistic concurrency: client-go's RetryOnConflict around a get
 * and an update, the way every controller should change an object it does not own alone.
 */
import { DatastoreCode, DatastoreError, isConflict } from './errors.ts';
import type { Datastore, Kind, ObjectOf, ObjectRef } from './types.ts';

export interface UpdateWithRetryOptions {
  /** Write with updateStatus instead of update. */
  status?: boolean;
  /** Give up after this many conflicts (default 10). */
  attempts?: number;
}

/**
 * Reads the object, lets `mutate` change it (in place, or by returning a new one), and
 * writes it back with its resourceVersion; on CONFLICT reads again and repeats.
 */
export async function updateWithRetry<K extends Kind>(
  ds: Datastore,
  kind: K,
  ref: ObjectRef,
  mutate: (obj: ObjectOf<K>) => ObjectOf<K> | void | Promise<ObjectOf<K> | void>,
  opts: UpdateWithRetryOptions = {},
): Promise<ObjectOf<K>> {
  const attempts = opts.attempts ?? 10;
  let last: unknown;
  for (let i = 0; i < attempts; i++) {
    const current = await ds.get(kind, ref);
    const next = (await mutate(current)) ?? current;
    try {
      return opts.status ? await ds.updateStatus(next) : await ds.update(next);
    } catch (err) {
      if (!isConflict(err)) throw err;
      last = err;
    }
  }
  throw new DatastoreError(DatastoreCode.Conflict, `${kind} ${ref.namespace ? `${ref.namespace}/` : ''}${ref.name}: still conflicting after ${attempts} attempts`, {
    cause: last,
  });
}
