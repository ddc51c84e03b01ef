/**
 * Subnet leasing over a revisioned KV with TTL leases (etcd, or its in-memory twin).
 *
 * Layout, under a prefix (default `/podnet`):
 *
 *     /podnet/config                      {"clusterCIDR":"10.244.0.0/16","subnetLen":24}
 *     /podnet/subnets/10.244.1.0-24       {"subnet":"10.244.1.0/24","nodeName":"node1",
 *                                          "nodeIP":"192.168.1.11","backendType":"vxlan",
 *                                          "backendData":{"vtepMAC":"…"}}      (TTL lease)
 *     /podnet/owners/node1                "10.244.1.0-24"                       (same lease)
 *
 * Why two keys. The subnet key makes "one subnet, one node" a property of the store: a
 * node claims a subnet with a transaction that succeeds only if the key does not exist
 * (create revision 0), so of any number of nodes racing for it exactly one wins. The owner
 * key makes "one node, one subnet" hold the same way, and lets a restarting agent find its
 * subnet by node name in one read. Both are written in the same transaction, attached to the
 * same etcd lease, and vanish together when it expires.
 *
 * Why a TTL lease. A node that disappears without a word (powered off, its agent killed)
 * must give its subnet back; its lease, no longer kept alive, expires after `ttlSeconds` and
 * etcd deletes both keys, which every other node sees as a DELETED event. A clean shutdown
 * (`detach`) stops renewing but does not revoke, so an agent restarted within the TTL finds
 * its owner key and takes the same subnet over with a new lease; after the TTL, the
 * subnet it remembers (`preferredSubnet`, from its subnet file) is tried first.
 *
 * Why the config key. Two agents that disagree on the cluster CIDR would carve overlapping
 * or out-of-range subnets. The first agent writes the config; every later one must match it
 * (PODNET_SUBNET_CONFIG_MISMATCH otherwise).
 */
import { DatastoreCode, DatastoreError, MirrorWatch, type KV, type RetryOptions, type Watch } from '../datastore/index.ts';
import { chooseSubnet, checkAttrs, decodeRecord, encodeRecord, exhausted, parseConfig, parseSubnetKey, subnetKey, subnetOf, type ParsedConfig } from './allocate.ts';
import { SubnetCode, SubnetError } from './errors.ts';
import type { AcquireOptions, HeldLease, LeaseAttrs, LeaseChange, SubnetConfig, SubnetLease, SubnetManager, WatchLeasesOptions } from './types.ts';

/** A TTL lease of the store (an etcd lease), kept alive until revoked or released. */
export interface StoreLease {
  readonly id: string;
  /** Called once if the lease dies while held (expired, revoked by somebody else). */
  onLost(fn: (err: Error) => void): void;
  /** Ends the lease now: the store deletes every key attached to it. */
  revoke(): Promise<void>;
  /** Stops renewing: the lease, and its keys, live out their TTL. */
  stopRenewing(): void;
}

export interface LeaseStore {
  readonly kv: KV;
  grant(ttlSeconds: number): Promise<StoreLease>;
  /**
   * Applies `writes` (a value: put, attached to `lease` if given; none: delete) atomically,
   * only if every key in `expect` is at its mod revision (0: absent). Returns the new
   * revision, or undefined if a comparison failed.
   */
  txn(expect: Array<{ key: string; modRevision: number }>, writes: Array<{ key: string; value?: string }>, lease?: StoreLease): Promise<number | undefined>;
  close(): Promise<void>;
}

export interface KVSubnetManagerOptions extends Partial<SubnetConfig> {
  /** Key prefix (default `/podnet`). */
  prefix?: string;
  /** Lease time-to-live in seconds (default 300). */
  ttlSeconds?: number;
  watchRetry?: RetryOptions;
  /** Close the store when the manager closes (default true). */
  ownsStore?: boolean;
}

export const DEFAULT_TTL_SECONDS = 300;

export class KVSubnetManager implements SubnetManager {
  readonly config: Readonly<SubnetConfig>;
  readonly prefix: string;
  readonly ttlSeconds: number;
  readonly store: LeaseStore;
  readonly #cfg: ParsedConfig;
  readonly #watchRetry: RetryOptions | undefined;
  readonly #ownsStore: boolean;
  readonly #held = new Set<KVHeldLease>();
  readonly #watches = new Set<Watch<SubnetLease>>();
  #configChecked: Promise<void> | undefined;

  constructor(store: LeaseStore, opts: KVSubnetManagerOptions = {}) {
    this.store = store;
    this.#cfg = parseConfig(opts);
    this.config = Object.freeze({ ...this.#cfg.config });
    this.prefix = (opts.prefix ?? '/podnet').replace(/\/+$/, '');
    this.ttlSeconds = opts.ttlSeconds ?? DEFAULT_TTL_SECONDS;
    if (!Number.isInteger(this.ttlSeconds) || this.ttlSeconds < 1) {
      throw new SubnetError(SubnetCode.Invalid, `lease TTL must be a whole number of seconds, at least 1 (got ${this.ttlSeconds})`);
    }
    this.#watchRetry = opts.watchRetry;
    this.#ownsStore = opts.ownsStore ?? true;
  }

  get #subnets(): string {
    return `${this.prefix}/subnets/`;
  }

  #ownerKey(nodeName: string): string {
    return `${this.prefix}/owners/${nodeName}`;
  }

  /** Writes the network config if the cluster has none; checks ours against it otherwise. */
  ensureConfig(): Promise<void> {
    this.#configChecked ??= this.#checkConfig().catch((err: unknown) => {
      this.#configChecked = undefined;
      throw err;
    });
    return this.#configChecked;
  }

  async #checkConfig(): Promise<void> {
    const key = `${this.prefix}/config`;
    const mine = JSON.stringify(this.config);
    const r = await this.store.kv.create(key, mine);
    if (r.ok) return;
    let theirs: Partial<SubnetConfig> = {};
    try {
      theirs = JSON.parse(r.current?.value ?? '{}') as Partial<SubnetConfig>;
    } catch {
      // Malformed: reported as a mismatch below.
    }
    if (theirs.clusterCIDR !== this.config.clusterCIDR || theirs.subnetLen !== this.config.subnetLen) {
      throw new SubnetError(
        SubnetCode.ConfigMismatch,
        `the cluster's network is ${String(theirs.clusterCIDR)} with a /${String(theirs.subnetLen)} per node (key ${key} in ${this.store.kv.endpoint}), ` +
          `but this agent is configured for ${this.config.clusterCIDR} with a /${this.config.subnetLen} per node: give it the cluster's values ` +
          `(or, to re-address the whole cluster, stop every agent and delete ${this.prefix}/ first)`,
      );
    }
  }

  async acquireLease(attrs: LeaseAttrs, opts: AcquireOptions = {}): Promise<HeldLease> {
    checkAttrs(attrs);
    opts.signal?.throwIfAborted();
    const { lease, storeLease } = await this.claimWithNewLease(attrs, opts.preferredSubnet, opts.signal);
    // A lease this manager held for the node before has just been taken over: stop it.
    for (const h of this.#held) if (h.nodeName === attrs.nodeName) await h.detach();
    const held = new KVHeldLease(this, attrs, opts, lease, storeLease);
    this.#held.add(held);
    return held;
  }

  /** @internal Grants a store lease and claims a subnet with it (revoking it on failure). */
  async claimWithNewLease(attrs: LeaseAttrs, preferred: string | undefined, signal?: AbortSignal): Promise<{ lease: SubnetLease; storeLease: StoreLease }> {
    await this.ensureConfig();
    const storeLease = await this.store.grant(this.ttlSeconds);
    try {
      const lease = await this.#claim(attrs, storeLease, preferred, signal);
      return { lease, storeLease };
    } catch (err) {
      await storeLease.revoke().catch(() => undefined);
      throw err;
    }
  }

  /** @internal */
  forget(held: KVHeldLease): void {
    this.#held.delete(held);
  }

  async #claim(attrs: LeaseAttrs, storeLease: StoreLease, preferred: string | undefined, signal?: AbortSignal): Promise<SubnetLease> {
    const kv = this.store.kv;
    const ownerKey = this.#ownerKey(attrs.nodeName);
    // Each lost race is one more node placed, so this bounds the loop generously.
    const maxAttempts = Number(this.#cfg.count < 1000n ? this.#cfg.count : 1000n) + 20;
    let spread = 1;
    for (let attempt = 0; attempt < maxAttempts; attempt++) {
      signal?.throwIfAborted();
      const owner = await kv.get(ownerKey);
      if (owner) {
        // The node holds a subnet already (its agent restarted): take it over with our lease.
        const sKey = this.#subnets + owner.value;
        const rec = await kv.get(sKey);
        const current = rec && decodeRecord(rec.value, rec.modRevision);
        const subnet = parseSubnetKey(owner.value);
        if (rec && current && subnet && current.nodeName === attrs.nodeName && subnetOf(this.#cfg, current.subnet)) {
          const revision = await this.store.txn(
            [
              { key: ownerKey, modRevision: owner.modRevision },
              { key: sKey, modRevision: rec.modRevision },
            ],
            [
              { key: ownerKey, value: owner.value },
              { key: sKey, value: encodeRecord(subnet, attrs) },
            ],
            storeLease,
          );
          if (revision !== undefined) return this.#leaseOf(subnet, attrs, revision);
          continue;
        }
        // An owner key whose subnet record is gone, someone else's, or outside the config:
        // drop it and allocate afresh.
        await this.store.txn([{ key: ownerKey, modRevision: owner.modRevision }], [{ key: ownerKey }]);
        preferred ??= current?.nodeName === attrs.nodeName ? current.subnet : undefined;
        continue;
      }
      const taken = await kv.range(this.#subnets);
      const takenKeys = new Set(taken.items.map((i) => i.key.slice(this.#subnets.length)));
      const choice = chooseSubnet(this.#cfg, takenKeys, { ...(preferred !== undefined ? { preferred } : {}), spread });
      if (!choice) {
        const holders = taken.items.map((i) => decodeRecord(i.value, i.modRevision)?.nodeName ?? '?').sort();
        throw exhausted(this.#cfg, holders, this.ttlSeconds);
      }
      const sKey = this.#subnets + subnetKey(choice);
      const revision = await this.store.txn(
        [
          { key: sKey, modRevision: 0 },
          { key: ownerKey, modRevision: 0 },
        ],
        [
          { key: sKey, value: encodeRecord(choice, attrs) },
          { key: ownerKey, value: subnetKey(choice) },
        ],
        storeLease,
      );
      if (revision !== undefined) return this.#leaseOf(choice, attrs, revision);
      // Lost the race (to another node for this subnet, or to our own node's other agent):
      // look again, and spread out over the free subnets.
      spread = 8;
      preferred = undefined;
    }
    throw new DatastoreError(
      DatastoreCode.Conflict,
      `could not lease a subnet for node ${attrs.nodeName} in ${maxAttempts} attempts: other nodes kept winning the same subnets; try again`,
    );
  }

  #leaseOf(subnet: Parameters<typeof subnetKey>[0], attrs: LeaseAttrs, revision: number): SubnetLease {
    return decodeRecord(encodeRecord(subnet, attrs), revision) as SubnetLease;
  }

  async getLease(nodeName: string): Promise<SubnetLease | undefined> {
    const owner = await this.store.kv.get(this.#ownerKey(nodeName));
    if (!owner) return undefined;
    const rec = await this.store.kv.get(this.#subnets + owner.value);
    const lease = rec && decodeRecord(rec.value, rec.modRevision);
    return lease && lease.nodeName === nodeName ? lease : undefined;
  }

  async listLeases(): Promise<{ leases: SubnetLease[]; revision: string }> {
    const r = await this.store.kv.range(this.#subnets);
    const leases: SubnetLease[] = [];
    for (const i of r.items) {
      const l = decodeRecord(i.value, i.modRevision);
      if (l) leases.push(l);
    }
    return { leases, revision: String(r.revision) };
  }

  watchLeases(opts: WatchLeasesOptions = {}): Watch<SubnetLease> {
    const from = opts.fromRevision;
    if (from !== undefined && !/^(0|[1-9][0-9]{0,15})$/.test(from)) {
      throw new DatastoreError(DatastoreCode.Invalid, `fromRevision "${from}" is not a revision (a decimal number)`);
    }
    const w: MirrorWatch<SubnetLease> = new MirrorWatch<SubnetLease>({
      kv: this.store.kv,
      prefix: this.#subnets,
      decode: (_key, value, revision) => decodeRecord(value, revision),
      version: (l) => l.revision,
      deleted: (l, revision) => ({ ...l, revision: String(revision) }),
      ...(from !== undefined ? { fromRevision: Number(from) } : {}),
      ...(this.#watchRetry ? { retry: this.#watchRetry } : {}),
      ...(opts.signal ? { signal: opts.signal } : {}),
      ...(opts.onStatus ? { onStatus: opts.onStatus } : {}),
      onStop: () => this.#watches.delete(w),
    });
    this.#watches.add(w);
    return w;
  }

  async releaseLease(nodeName: string): Promise<boolean> {
    const ownerKey = this.#ownerKey(nodeName);
    for (let attempt = 0; attempt < 16; attempt++) {
      const owner = await this.store.kv.get(ownerKey);
      if (!owner) return false;
      const sKey = this.#subnets + owner.value;
      const rec = await this.store.kv.get(sKey);
      const ours = rec !== undefined && decodeRecord(rec.value, rec.modRevision)?.nodeName === nodeName;
      const expect = [{ key: ownerKey, modRevision: owner.modRevision }, { key: sKey, modRevision: rec?.modRevision ?? 0 }];
      const writes: Array<{ key: string }> = ours ? [{ key: ownerKey }, { key: sKey }] : [{ key: ownerKey }];
      if ((await this.store.txn(expect, writes)) !== undefined) return ours;
    }
    throw new DatastoreError(DatastoreCode.Conflict, `could not release the subnet of node ${nodeName}: its records kept changing; try again`);
  }

  async close(): Promise<void> {
    await Promise.all([...this.#held].map((h) => h.detach()));
    await Promise.all([...this.#watches].map((w) => w.stop()));
    if (this.#ownsStore) await this.store.close();
  }
}

const RECLAIM_RETRY_MS = { initial: 200, max: 5000 };

/** A lease held by this process: renewed by the store, re-acquired if lost. */
class KVHeldLease implements HeldLease {
  readonly ttlSeconds: number;
  readonly #mgr: KVSubnetManager;
  readonly #attrs: LeaseAttrs;
  readonly #opts: AcquireOptions;
  #lease: SubnetLease;
  #storeLease: StoreLease;
  #done = false;
  #timer: NodeJS.Timeout | undefined;

  constructor(mgr: KVSubnetManager, attrs: LeaseAttrs, opts: AcquireOptions, lease: SubnetLease, storeLease: StoreLease) {
    this.#mgr = mgr;
    this.#attrs = attrs;
    this.#opts = opts;
    this.#lease = lease;
    this.#storeLease = storeLease;
    this.ttlSeconds = mgr.ttlSeconds;
    this.#watchLoss(storeLease);
  }

  get lease(): SubnetLease {
    return this.#lease;
  }

  get nodeName(): string {
    return this.#attrs.nodeName;
  }

  #watchLoss(storeLease: StoreLease): void {
    storeLease.onLost((error) => {
      if (this.#done || storeLease !== this.#storeLease) return;
      this.#notify({ type: 'lost', subnet: this.#lease.subnet, error });
      void this.#reacquire(RECLAIM_RETRY_MS.initial);
    });
  }

  #notify(change: LeaseChange): void {
    try {
      this.#opts.onChange?.(change);
    } catch {
      // A listener's failure must not stop the lease.
    }
  }

  async #reacquire(delay: number): Promise<void> {
    if (this.#done) return;
    try {
      const before = this.#lease.subnet;
      const { lease, storeLease } = await this.#mgr.claimWithNewLease(this.#attrs, before);
      if (this.#done) {
        storeLease.stopRenewing();
        return;
      }
      this.#lease = lease;
      this.#storeLease = storeLease;
      this.#watchLoss(storeLease);
      this.#notify({ type: 'reacquired', lease, sameSubnet: lease.subnet === before });
    } catch {
      if (this.#done) return;
      this.#timer = setTimeout(() => void this.#reacquire(Math.min(delay * 2, RECLAIM_RETRY_MS.max)), delay);
    }
  }

  async release(): Promise<void> {
    if (this.#done) return;
    this.#done = true;
    clearTimeout(this.#timer);
    this.#mgr.forget(this);
    await this.#storeLease.revoke();
  }

  async detach(): Promise<void> {
    if (this.#done) return;
    this.#done = true;
    clearTimeout(this.#timer);
    this.#mgr.forget(this);
    this.#storeLease.stopRenewing();
  }
}
