/**
 * Subnet leasing on etcd: the LeaseStore of manager.ts over an EtcdClient, with etcd leases
 * (granted with the TTL, renewed by the etcd3 client's keep-alive stream) and transactions
 * that compare create/mod revisions. See manager.ts for the key layout and the reasoning.
 */
import type { Lease } from 'etcd3';
import { EtcdClient, type EtcdOptions } from '../datastore/index.ts';
import { KVSubnetManager, type KVSubnetManagerOptions, type LeaseStore, type StoreLease } from './manager.ts';

export class EtcdLeaseStore implements LeaseStore {
  readonly kv: EtcdClient;
  readonly #owns: boolean;

  constructor(client: EtcdClient, owns = false) {
    this.kv = client;
    this.#owns = owns;
  }

  async grant(ttlSeconds: number): Promise<StoreLease> {
    const lease: Lease = this.kv.etcd.lease(ttlSeconds);
    const listeners: Array<(err: Error) => void> = [];
    let lost: Error | undefined;
    lease.on('lost', (err) => {
      if (lost) return;
      lost = err;
      for (const fn of listeners.splice(0)) fn(err);
    });
    const id = await this.kv.call(`grant a ${ttlSeconds} s lease`, () => lease.grant());
    return {
      id,
      onLost: (fn) => {
        if (lost) fn(lost);
        else listeners.push(fn);
      },
      revoke: () => this.kv.call(`revoke lease ${id}`, () => lease.revoke()),
      stopRenewing: () => lease.release(),
    };
  }

  async txn(expect: Array<{ key: string; modRevision: number }>, writes: Array<{ key: string; value?: string }>, lease?: StoreLease): Promise<number | undefined> {
    const res = await this.kv.call(`write ${writes.map((w) => w.key).join(', ')}`, () =>
      this.kv.etcd.kv.txn({
        compare: expect.map((e) =>
          e.modRevision === 0
            ? { key: Buffer.from(e.key), target: 'Create' as const, result: 'Equal' as const, create_revision: 0 }
            : { key: Buffer.from(e.key), target: 'Mod' as const, result: 'Equal' as const, mod_revision: e.modRevision },
        ),
        success: writes.map((w) =>
          w.value === undefined
            ? { request_delete_range: { key: Buffer.from(w.key) } }
            : { request_put: { key: Buffer.from(w.key), value: Buffer.from(w.value), ...(lease ? { lease: lease.id } : {}) } },
        ),
      }),
    );
    return res.succeeded ? Number(res.header.revision) : undefined;
  }

  async close(): Promise<void> {
    if (this.#owns) await this.kv.close();
  }
}

export type EtcdSubnetManagerOptions = KVSubnetManagerOptions & ({ client: EtcdClient } | (EtcdOptions & { client?: undefined }));

/** Subnet leases in etcd (pass a shared `client`, or endpoints to make one). */
export class EtcdSubnetManager extends KVSubnetManager {
  declare readonly store: EtcdLeaseStore;

  constructor(opts: EtcdSubnetManagerOptions) {
    const owns = opts.client === undefined;
    const client = opts.client ?? new EtcdClient(opts as EtcdOptions);
    super(new EtcdLeaseStore(client, owns), opts);
  }
}
