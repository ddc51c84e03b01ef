/**
 * The datastore in memory: the same code as the etcd backend (store.ts) over an in-process
 * KV with etcd's semantics, for the unit tests of everything that reads cluster state
 * (agent, DNS, controller, proxy). `kv` lets a test play an etcd restart
 * (`kv.disconnect()`), an outage (`kv.setAvailable(false)`) or a compaction (`kv.compact()`).
 */
import { MemoryKV } from './memory-kv.ts';
import { KVDatastore, type KVDatastoreOptions } from './store.ts';
import type { AnyObject } from './types.ts';

export class MemoryDatastore extends KVDatastore {
  declare readonly kv: MemoryKV;

  constructor(opts: KVDatastoreOptions = {}) {
    super('memory', new MemoryKV(), { watchRetry: { initialMs: 5, maxMs: 50 }, ...opts });
  }

  /** A datastore holding `objects` (created in order). */
  static async with(objects: AnyObject[], opts: KVDatastoreOptions = {}): Promise<MemoryDatastore> {
    const ds = new MemoryDatastore(opts);
    for (const o of objects) await ds.create(o);
    return ds;
  }
}
