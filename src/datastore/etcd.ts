/**
 * The etcd v3 backend: `EtcdClient` is the KV (kv.ts) over the `etcd3` package (gRPC), and
 * `EtcdDatastore` the Datastore on top of it. One EtcdClient can serve the datastore and the
 * subnet manager at once (it exposes the raw `etcd3` client for leases and transactions).
 *
 * Endpoints are etcd client URLs: `unix:///run/podnet/etcd.sock` (what the lab and the
 * tests use: no TCP at all), `http://192.168.1.2:2379`, `https://…` (with `tls`).
 *
 * Fault handling is ours, not etcd3's: its default circuit breaker refuses every call for
 * five seconds after three failures, which turns a one-second etcd restart into a
 * five-second outage. Reads are retried a few times with a short backoff; writes are not
 * (a write that timed out may have happened, and a blind retry would turn our own success
 * into CONFLICT): callers that loop anyway (controllers, the subnet manager) re-read first.
 * Failures to reach etcd become PODNET_DATASTORE_UNAVAILABLE naming the endpoint.
 *
 * Watches are opened one session at a time from an explicit revision, and a broken session
 * is dropped (not left to etcd3's own reconnect, which resumes from the response header's
 * revision): the watch engine (watch-engine.ts) decides where to resume.
 */
import { noop } from 'cockatiel';
import {
  ClientClosedError,
  Etcd3,
  EtcdWatchStreamEnded,
  GRPCCancelledError,
  GRPCDeadlineExceededError,
  GRPCUnavailableError,
  isRecoverableError,
  type IKeyValue,
  type IOptions,
  type ITxnResponse,
} from 'etcd3';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe } from '../errors/index.ts';
import { DatastoreCode, DatastoreError } from './errors.ts';
import type { KV, KVItem, KVRange, KVSession, KVSink, KVWrite } from './kv.ts';
import { KVDatastore, type KVDatastoreOptions } from './store.ts';

export interface EtcdOptions {
  /** etcd client URLs (unix://, http://, https://). */
  endpoints: string | string[];
  /** Deadline of each request (ms, default 5000). */
  timeoutMs?: number;
  /** How many times a read is retried when etcd does not answer (default 2). */
  readRetries?: number;
  /** PEM-encoded TLS material for https:// endpoints. */
  tls?: { ca: Buffer; cert?: Buffer; key?: Buffer };
  auth?: { username: string; password: string };
}

/** Keys per page when listing: keeps each gRPC message far below its 4 MiB limit. */
const PAGE = 500;

/** The end of etcd's range for a prefix: the prefix with its last byte incremented. */
export function prefixEnd(prefix: string): Buffer {
  const b = Buffer.from(prefix);
  for (let i = b.length - 1; i >= 0; i--) {
    if ((b[i] as number) < 0xff) {
      const end = Buffer.from(b.subarray(0, i + 1));
      end[i] = (b[i] as number) + 1;
      return end;
    }
  }
  return Buffer.from([0]); // all 0xff: to the end of the keyspace
}

function toItem(kv: IKeyValue): KVItem {
  const item: KVItem = {
    key: kv.key.toString(),
    value: kv.value.toString(),
    createRevision: Number(kv.create_revision),
    modRevision: Number(kv.mod_revision),
  };
  if (kv.lease && kv.lease !== '0') item.lease = String(kv.lease);
  return item;
}

function unreachable(err: unknown): boolean {
  if (
    err instanceof GRPCUnavailableError ||
    err instanceof GRPCDeadlineExceededError ||
    err instanceof GRPCCancelledError ||
    err instanceof ClientClosedError ||
    err instanceof EtcdWatchStreamEnded
  ) {
    return true;
  }
  if (err instanceof Error && isRecoverableError(err)) return true;
  const text = describe(err);
  return /UNAVAILABLE|ECONNREFUSED|ENOENT|ECONNRESET|EPIPE|No connection established|Connection dropped|circuit/i.test(text);
}

export class EtcdClient implements KV {
  readonly etcd: Etcd3;
  readonly endpoints: readonly string[];
  readonly endpoint: string;
  readonly #readRetries: number;
  #closed = false;

  constructor(opts: EtcdOptions) {
    this.endpoints = typeof opts.endpoints === 'string' ? [opts.endpoints] : [...opts.endpoints];
    if (this.endpoints.length === 0) throw new DatastoreError(DatastoreCode.Invalid, 'no etcd endpoints given');
    this.endpoint = this.endpoints.join(',');
    this.#readRetries = opts.readRetries ?? 2;
    const timeoutMs = opts.timeoutMs ?? 5000;
    const options: IOptions = {
      hosts: [...this.endpoints],
      dialTimeout: timeoutMs,
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + timeoutMs }),
      faultHandling: { host: () => noop, global: noop },
      grpcOptions: {
        // Reconnect quickly after an etcd restart (gRPC's default backoff grows to 120 s).
        'grpc.initial_reconnect_backoff_ms': 100,
        'grpc.max_reconnect_backoff_ms': 1000,
        // Notice a peer that vanished without closing the connection (TCP endpoints).
        'grpc.keepalive_time_ms': 10_000,
        'grpc.keepalive_timeout_ms': 5000,
        'grpc.keepalive_permit_without_calls': 1,
      },
    };
    if (opts.tls) {
      options.credentials = {
        rootCertificate: opts.tls.ca,
        ...(opts.tls.key ? { privateKey: opts.tls.key } : {}),
        ...(opts.tls.cert ? { certChain: opts.tls.cert } : {}),
      };
    }
    if (opts.auth) options.auth = { username: opts.auth.username, password: opts.auth.password };
    this.etcd = new Etcd3(options);
  }

  /** What to check when etcd does not answer, for the endpoint(s) at hand. */
  #advice(): string {
    const unix = this.endpoints.filter((e) => e.startsWith('unix:'));
    const checks = ['that etcd is running and serves clients at that address'];
    if (unix.length > 0) checks.push(`that the socket file exists (${unix.map((e) => e.replace(/^unix:\/\//, '')).join(', ')})`);
    if (this.endpoints.some((e) => !e.startsWith('unix:'))) checks.push('that the port is reachable and TLS settings match the URL scheme');
    return `Check ${checks.join(', ')}; \`etcdctl --endpoints=${this.endpoints[0]} endpoint health\` tells whether it is up.`;
  }

  /** Maps an etcd3/gRPC error to a DatastoreError that says what failed where. */
  mapError(err: unknown, what: string): Error {
    if (err instanceof DatastoreError) return err;
    const text = describe(err);
    if (/required revision has been compacted/.test(text)) {
      return new DatastoreError(DatastoreCode.Expired, `${what}: etcd at ${this.endpoint} has compacted that revision away (${text})`, { cause: err });
    }
    if (/required revision is a future revision/.test(text)) {
      return new DatastoreError(DatastoreCode.Invalid, `${what}: etcd at ${this.endpoint} has not reached that revision yet (${text})`, { cause: err });
    }
    if (this.#closed) {
      return new DatastoreError(DatastoreCode.Unavailable, `${what}: the etcd client for ${this.endpoint} has been closed`, { cause: err });
    }
    if (unreachable(err)) {
      return new DatastoreError(DatastoreCode.Unavailable, `etcd at ${this.endpoint} is not answering (${what}: ${text}). ${this.#advice()}`, { cause: err });
    }
    return new DatastoreError(DatastoreCode.Failed, `etcd at ${this.endpoint} refused to ${what}: ${text}`, { cause: err });
  }

  /**
   * Runs one etcd request, mapping its errors. `read`: safe to repeat, so it is retried
   * (briefly) while etcd does not answer.
   */
  async call<R>(what: string, fn: () => Promise<R>, read = false): Promise<R> {
    const attempts = read ? this.#readRetries + 1 : 1;
    for (let attempt = 1; ; attempt++) {
      if (this.#closed) throw this.mapError(new ClientClosedError('KV'), what);
      try {
        return await fn();
      } catch (err) {
        const mapped = this.mapError(err, what);
        if (attempt >= attempts || !(mapped instanceof DatastoreError) || mapped.code !== DatastoreCode.Unavailable) throw mapped;
        await sleep(100 * 3 ** (attempt - 1));
      }
    }
  }

  async get(key: string): Promise<KVItem | undefined> {
    const res = await this.call(`read ${key}`, () => this.etcd.kv.range({ key: Buffer.from(key) }), true);
    const kv = res.kvs[0];
    return kv && toItem(kv);
  }

  async range(prefix: string, atRevision?: number): Promise<KVRange> {
    const end = prefixEnd(prefix);
    const items: KVItem[] = [];
    let start = Buffer.from(prefix);
    // Every page is read at the revision of the first, so the list is one consistent snapshot.
    let revision = atRevision ?? 0;
    for (;;) {
      const res = await this.call(
        `list ${prefix}`,
        () => this.etcd.kv.range({ key: start, range_end: end, limit: PAGE, ...(revision ? { revision } : {}) }),
        true,
      );
      if (!revision) revision = Number(res.header.revision);
      for (const kv of res.kvs) items.push(toItem(kv));
      const last = res.kvs.at(-1);
      if (!res.more || !last) break;
      start = Buffer.concat([last.key, Buffer.from([0])]);
    }
    return { items, revision };
  }

  #written(res: ITxnResponse): KVWrite {
    if (res.succeeded) return { ok: true, revision: Number(res.header.revision) };
    const kv = res.responses[0]?.response_range?.kvs[0];
    return { ok: false, current: kv && toItem(kv) };
  }

  async create(key: string, value: string): Promise<KVWrite> {
    const k = Buffer.from(key);
    const res = await this.call(`create ${key}`, () =>
      this.etcd.kv.txn({
        compare: [{ key: k, target: 'Create', result: 'Equal', create_revision: 0 }],
        success: [{ request_put: { key: k, value: Buffer.from(value) } }],
        failure: [{ request_range: { key: k } }],
      }),
    );
    return this.#written(res);
  }

  async replace(key: string, value: string, modRevision: number): Promise<KVWrite> {
    const k = Buffer.from(key);
    const res = await this.call(`update ${key}`, () =>
      this.etcd.kv.txn({
        compare: [{ key: k, target: 'Mod', result: 'Equal', mod_revision: modRevision }],
        success: [{ request_put: { key: k, value: Buffer.from(value) } }],
        failure: [{ request_range: { key: k } }],
      }),
    );
    return this.#written(res);
  }

  async remove(key: string, modRevision?: number): Promise<KVWrite> {
    const k = Buffer.from(key);
    const compare =
      modRevision === undefined
        ? { key: k, target: 'Create' as const, result: 'Greater' as const, create_revision: 0 }
        : { key: k, target: 'Mod' as const, result: 'Equal' as const, mod_revision: modRevision };
    const res = await this.call(`delete ${key}`, () =>
      this.etcd.kv.txn({ compare: [compare], success: [{ request_delete_range: { key: k } }], failure: [{ request_range: { key: k } }] }),
    );
    return this.#written(res);
  }

  watch(prefix: string, fromRevision: number, sink: KVSink): KVSession {
    let done = false;
    const watcher = this.etcd.watch().prefix(prefix).startRevision(String(fromRevision)).watcher();
    const finish = async (): Promise<void> => {
      // Cancelling a connected watcher waits for etcd to confirm; never wait long for that.
      await Promise.race([watcher.cancel().catch(() => undefined), sleep(1000, undefined, { ref: false })]);
    };
    watcher.on('connected', () => {
      if (!done) sink.opened();
    });
    watcher.on('data', (res) => {
      if (done) return;
      if (res.events.length === 0) {
        sink.progress(Number(res.header.revision));
        return;
      }
      sink.changes(
        res.events.map((ev) => {
          const revision = Number(ev.kv.mod_revision);
          const key = ev.kv.key.toString();
          return String(ev.type).toLowerCase() === 'delete'
            ? { type: 'delete' as const, key, revision }
            : { type: 'put' as const, key, value: ev.kv.value.toString(), revision };
        }),
      );
    });
    watcher.on('disconnected', (err) => {
      if (done) return;
      done = true;
      // Detach now (the manager would otherwise resubscribe it from its own idea of the
      // revision); the engine opens the next session.
      void finish();
      sink.broken(this.mapError(err, `watch ${prefix}`), false);
    });
    watcher.on('error', (err) => {
      // etcd cancelled the watch: compacted history (its usual reason) or refused range.
      if (done) return;
      done = true;
      void finish();
      sink.broken(this.mapError(err, `watch ${prefix}`), true);
    });
    return {
      close: async () => {
        if (done) return;
        done = true;
        await finish();
      },
    };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.etcd.close();
  }
}

export interface EtcdDatastoreOptions extends KVDatastoreOptions {
  /** Share an existing client (the caller closes it) instead of making one. */
  client?: EtcdClient;
}

/** The Datastore on etcd v3. */
export class EtcdDatastore extends KVDatastore {
  declare readonly kv: EtcdClient;
  readonly #ownsClient: boolean;

  constructor(opts: (EtcdOptions & EtcdDatastoreOptions) | (Partial<EtcdOptions> & EtcdDatastoreOptions & { client: EtcdClient })) {
    const client = opts.client ?? new EtcdClient(opts as EtcdOptions);
    super('etcd', client, opts);
    this.#ownsClient = opts.client === undefined;
  }

  get client(): EtcdClient {
    return this.kv;
  }

  override async close(): Promise<void> {
    await this.stopWatches();
    if (this.#ownsClient) await this.kv.close();
  }
}
