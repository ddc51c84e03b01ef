/**
 * Subnet leasing in memory, for the unit tests of the agent and of leasing itself: the same
 * algorithm as on etcd (manager.ts) over MemoryKV, with leases that behave like etcd's: a
 * lease no longer renewed expires after its TTL (a real timer) and its keys are deleted;
 * `expire(nodeName)` makes that happen now.
 */
import { DatastoreCode, DatastoreError, MemoryKV } from '../datastore/index.ts';
import { KVSubnetManager, type KVSubnetManagerOptions, type LeaseStore, type StoreLease } from './manager.ts';

interface MemoryLease {
  alive: boolean;
  listeners: Array<(err: Error) => void>;
  timer?: NodeJS.Timeout;
}

export class MemoryLeaseStore implements LeaseStore {
  readonly kv = new MemoryKV('memory');
  #leases = new Map<string, MemoryLease>();
  #next = 1;

  async grant(ttlSeconds: number): Promise<StoreLease> {
    const id = String(this.#next++);
    const l: MemoryLease = { alive: true, listeners: [] };
    this.#leases.set(id, l);
    return {
      id,
      onLost: (fn) => void l.listeners.push(fn),
      revoke: async () => {
        clearTimeout(l.timer);
        l.listeners = [];
        this.#end(id);
      },
      stopRenewing: () => {
        l.listeners = [];
        l.timer = setTimeout(() => this.#end(id), ttlSeconds * 1000);
        l.timer.unref();
      },
    };
  }

  #end(id: string): void {
    const l = this.#leases.get(id);
    if (!l?.alive) return;
    l.alive = false;
    this.kv.revokeLease(id);
    const err = new DatastoreError(DatastoreCode.Failed, `lease ${id} expired`);
    for (const fn of l.listeners.splice(0)) fn(err);
  }

  /** Ends a lease as if its TTL ran out: its keys go, its holder is told. */
  expire(id: string): void {
    this.#end(id);
  }

  async txn(expect: Array<{ key: string; modRevision: number }>, writes: Array<{ key: string; value?: string }>, lease?: StoreLease): Promise<number | undefined> {
    if (lease && !this.#leases.get(lease.id)?.alive) {
      throw new DatastoreError(DatastoreCode.Failed, `lease ${lease.id} not found (expired)`);
    }
    return this.kv.commitIf(
      expect,
      writes.map((w) => (w.value === undefined ? { key: w.key } : { key: w.key, value: w.value, ...(lease ? { lease: lease.id } : {}) })),
    );
  }

  async close(): Promise<void> {
    for (const l of this.#leases.values()) clearTimeout(l.timer);
    await this.kv.close();
  }
}

export class MemorySubnetManager extends KVSubnetManager {
  declare readonly store: MemoryLeaseStore;

  /** Pass `store` to let several managers (agents) share one cluster. */
  constructor(opts: KVSubnetManagerOptions & { store?: MemoryLeaseStore } = {}) {
    super(opts.store ?? new MemoryLeaseStore(), { watchRetry: { initialMs: 5, maxMs: 50 }, ownsStore: opts.store === undefined, ...opts });
  }

  /** Lets a node's lease expire now, as if its agent had died a TTL ago. False if it held none. */
  async expire(nodeName: string): Promise<boolean> {
    const owner = await this.store.kv.get(`${this.prefix}/owners/${nodeName}`);
    if (!owner?.lease) return false;
    this.store.expire(owner.lease);
    return true;
  }
}
