/**
 * The in-memory index DNS answers from: slim records by name and by address, updated one
 * object at a time (from informer events in the daemon, from plain objects in tests).
 *
 * Lookups are map reads: a service by namespace and name, a cluster IP, an endpoint or pod
 * address (for PTR). Records are kept by reference (namespace → name → record; address →
 * record), so an index entry costs a map slot rather than a key string, and equal strings
 * and port lists are shared between records: with 10,000 services the index is a fraction
 * of what the informers' object caches take. A service with several slices has its
 * endpoints joined once, on the first query after a change, not once per query.
 * `generation` counts changes, for anything that must know the cluster changed.
 */
import type { EndpointSlice, Pod, Service } from '../datastore/index.ts';
import { podRecord, serviceRecord, sliceRecord } from './translate.ts';
import type { EndpointAddress, PodRecord, PortRecord, RecordSource, ServiceRecord, SliceRecord } from './types.ts';

/**
 * A value or several: most addresses belong to one slice, most services have one slice, so
 * the common case stores the record itself and only a collision pays for an array.
 */
type OneOrMore<T> = T | T[];

function addOne<K, V extends object>(m: Map<K, OneOrMore<V>>, k: K, v: V): void {
  const cur = m.get(k);
  if (cur === undefined) m.set(k, v);
  else if (Array.isArray(cur)) {
    if (!cur.includes(v)) cur.push(v);
  } else if (cur !== v) m.set(k, [cur, v]);
}

function removeOne<K, V extends object>(m: Map<K, OneOrMore<V>>, k: K, v: V): void {
  const cur = m.get(k);
  if (cur === undefined) return;
  if (!Array.isArray(cur)) {
    if (cur === v) m.delete(k);
    return;
  }
  const rest = cur.filter((x) => x !== v);
  if (rest.length === 0) m.delete(k);
  else m.set(k, rest.length === 1 ? (rest[0] as V) : rest);
}

function all<V extends object>(v: OneOrMore<V> | undefined): readonly V[] {
  return v === undefined ? [] : Array.isArray(v) ? v : [v];
}

/** namespace → name → record: no per-object key strings, and a namespace's emptiness for free. */
class Namespaced<V> {
  readonly #m = new Map<string, Map<string, V>>();
  size = 0;

  get(ns: string, name: string): V | undefined {
    return this.#m.get(ns)?.get(name);
  }

  set(ns: string, name: string, v: V): void {
    let inner = this.#m.get(ns);
    if (!inner) this.#m.set(ns, (inner = new Map()));
    if (!inner.has(name)) this.size++;
    inner.set(name, v);
  }

  delete(ns: string, name: string): V | undefined {
    const inner = this.#m.get(ns);
    const v = inner?.get(name);
    if (!inner || v === undefined) return undefined;
    inner.delete(name);
    this.size--;
    if (inner.size === 0) this.#m.delete(ns);
    return v;
  }

  hasNamespace(ns: string): boolean {
    return this.#m.has(ns);
  }
}

const EMPTY_PORTS: readonly PortRecord[] = Object.freeze([]);
const NO_ENDPOINTS = Object.freeze({ addresses: Object.freeze([]) as readonly EndpointAddress[], ports: EMPTY_PORTS });

export interface StoreContents {
  services?: Service[];
  endpointSlices?: EndpointSlice[];
  pods?: Pod[];
}

export interface StoreCounts {
  services: number;
  endpointSlices: number;
  endpointAddresses: number;
  pods: number;
}

export class RecordStore implements RecordSource {
  #services = new Namespaced<ServiceRecord>();
  #slices = new Namespaced<SliceRecord>();
  #pods = new Namespaced<PodRecord>();
  /** namespace → service → its slices */
  #slicesOf = new Namespaced<OneOrMore<SliceRecord>>();
  /** Joined endpoints of services with more than one slice (dropped when one of them changes). */
  #joined = new Namespaced<{ addresses: EndpointAddress[]; ports: PortRecord[] }>();
  #serviceIPs = new Map<string, ServiceRecord>();
  #endpointIPs = new Map<string, OneOrMore<SliceRecord>>();
  #podIPs = new Map<string, OneOrMore<PodRecord>>();
  /** Shared copies of equal strings and port lists (namespaces, `http/tcp/80`), which repeat across thousands of records. */
  #interned = new Map<string, string>();
  #portLists = new Map<string, readonly PortRecord[]>();
  #addresses = 0;
  #serial: number;
  #synced: () => boolean;
  #now: () => number;
  #generation = 0;

  constructor(opts: { synced?: () => boolean; now?: () => number } = {}) {
    this.#synced = opts.synced ?? (() => true);
    this.#now = opts.now ?? Date.now;
    this.#serial = Math.floor(this.#now() / 1000);
  }

  /** A store holding these objects, for tests and tools. */
  static from(contents: StoreContents, opts: { now?: () => number } = {}): RecordStore {
    const s = new RecordStore(opts);
    for (const svc of contents.services ?? []) s.applyService(svc);
    for (const slice of contents.endpointSlices ?? []) s.applySlice(slice);
    for (const pod of contents.pods ?? []) s.applyPod(pod);
    return s;
  }

  /** Hands over who decides `synced()` (the informers, in the daemon). */
  setSynced(fn: () => boolean): void {
    this.#synced = fn;
  }

  /** Counts every change; answer caches compare it to know they are stale. */
  get generation(): number {
    return this.#generation;
  }

  counts(): StoreCounts {
    return { services: this.#services.size, endpointSlices: this.#slices.size, endpointAddresses: this.#addresses, pods: this.#pods.size };
  }

  #changed(): void {
    this.#generation++;
    const now = Math.floor(this.#now() / 1000);
    // The time of the last change, as CoreDNS does; it never moves back, even if the clock does.
    this.#serial = Math.max(this.#serial, now);
  }

  // ---------------------------------------------------------------------------------------
  // Updates, from API objects (what informer handlers call) or from records.

  applyService(svc: Service): void {
    const rec = serviceRecord(svc);
    if (rec) this.setService(rec);
    else this.deleteService(svc.metadata.namespace ?? 'default', svc.metadata.name);
  }

  applySlice(slice: EndpointSlice): void {
    const rec = sliceRecord(slice);
    if (rec) this.setSlice(rec);
    else this.deleteSlice(slice.metadata.namespace ?? 'default', slice.metadata.name);
  }

  applyPod(pod: Pod): void {
    const rec = podRecord(pod);
    if (rec) this.setPod(rec);
    else this.deletePod(pod.metadata.namespace ?? 'default', pod.metadata.name);
  }

  #intern(text: string): string {
    const seen = this.#interned.get(text);
    if (seen !== undefined) return seen;
    this.#interned.set(text, text);
    return text;
  }

  #ports(ports: readonly PortRecord[]): readonly PortRecord[] {
    if (ports.length === 0) return EMPTY_PORTS;
    const k = ports.map((p) => `${p.name}/${p.protocol}/${p.port}`).join(' ');
    let shared = this.#portLists.get(k);
    if (!shared) this.#portLists.set(k, (shared = Object.freeze(ports.map((p) => Object.freeze({ ...p })))));
    return shared;
  }

  setService(rec: ServiceRecord): void {
    const slim: ServiceRecord = { ...rec, namespace: this.#intern(rec.namespace), ports: this.#ports(rec.ports) };
    const old = this.#services.get(slim.namespace, slim.name);
    if (old) this.#unindexService(old);
    this.#services.set(slim.namespace, slim.name, slim);
    for (const ip of slim.ips) this.#serviceIPs.set(ip, slim);
    this.#changed();
  }

  deleteService(namespace: string, name: string): void {
    const old = this.#services.delete(namespace.toLowerCase(), name.toLowerCase());
    if (!old) return;
    this.#unindexService(old);
    this.#changed();
  }

  #unindexService(old: ServiceRecord): void {
    for (const ip of old.ips) if (this.#serviceIPs.get(ip) === old) this.#serviceIPs.delete(ip);
  }

  setSlice(rec: SliceRecord): void {
    const slim: SliceRecord = { ...rec, namespace: this.#intern(rec.namespace), ports: this.#ports(rec.ports) };
    this.#removeSlice(slim.namespace, slim.name);
    this.#slices.set(slim.namespace, slim.name, slim);
    const of = this.#slicesOf.get(slim.namespace, slim.service);
    this.#slicesOf.set(slim.namespace, slim.service, of === undefined ? slim : [...all(of), slim]);
    this.#joined.delete(slim.namespace, slim.service);
    for (const a of slim.addresses) addOne(this.#endpointIPs, a.ip, slim);
    this.#addresses += slim.addresses.length;
    this.#changed();
  }

  deleteSlice(namespace: string, name: string): void {
    if (this.#removeSlice(namespace.toLowerCase(), name.toLowerCase())) this.#changed();
  }

  #removeSlice(namespace: string, name: string): boolean {
    const old = this.#slices.delete(namespace, name);
    if (!old) return false;
    const rest = all(this.#slicesOf.get(namespace, old.service)).filter((x) => x !== old);
    if (rest.length === 0) this.#slicesOf.delete(namespace, old.service);
    else this.#slicesOf.set(namespace, old.service, rest.length === 1 ? (rest[0] as SliceRecord) : rest);
    this.#joined.delete(namespace, old.service);
    for (const a of old.addresses) removeOne(this.#endpointIPs, a.ip, old);
    this.#addresses -= old.addresses.length;
    return true;
  }

  setPod(rec: PodRecord): void {
    const slim: PodRecord = { ...rec, namespace: this.#intern(rec.namespace) };
    const old = this.#pods.get(slim.namespace, slim.name);
    if (old) for (const ip of old.ips) removeOne(this.#podIPs, ip, old);
    this.#pods.set(slim.namespace, slim.name, slim);
    for (const ip of slim.ips) addOne(this.#podIPs, ip, slim);
    this.#changed();
  }

  deletePod(namespace: string, name: string): void {
    const old = this.#pods.delete(namespace.toLowerCase(), name.toLowerCase());
    if (!old) return;
    for (const ip of old.ips) removeOne(this.#podIPs, ip, old);
    this.#changed();
  }

  // ---------------------------------------------------------------------------------------
  // RecordSource

  synced(): boolean {
    return this.#synced();
  }

  serial(): number {
    return this.#serial;
  }

  service(namespace: string, name: string): ServiceRecord | undefined {
    return this.#services.get(namespace, name);
  }

  serviceByIP(ip: string): ServiceRecord | undefined {
    return this.#serviceIPs.get(ip);
  }

  #join(namespace: string, service: string): { addresses: readonly EndpointAddress[]; ports: readonly PortRecord[] } {
    const of = this.#slicesOf.get(namespace, service);
    if (of === undefined) return NO_ENDPOINTS;
    if (!Array.isArray(of)) return of; // One slice: its own lists, no copy.
    let j = this.#joined.get(namespace, service);
    if (j) return j;
    const byHostIP = new Map<string, EndpointAddress>();
    const ports = new Map<string, PortRecord>();
    // Slices in name order, so answers keep a stable order between changes.
    for (const slice of [...of].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
      for (const a of slice.addresses) {
        // The same address may sit in two slices while it moves: ready wins.
        const hk = `${a.host} ${a.ip}`;
        const seen = byHostIP.get(hk);
        if (!seen || (!seen.ready && a.ready)) byHostIP.set(hk, a);
      }
      for (const p of slice.ports) if (!ports.has(`${p.name}/${p.protocol}`)) ports.set(`${p.name}/${p.protocol}`, p);
    }
    j = { addresses: [...byHostIP.values()], ports: [...ports.values()] };
    this.#joined.set(namespace, service, j);
    return j;
  }

  endpoints(namespace: string, service: string): readonly EndpointAddress[] {
    return this.#join(namespace, service).addresses;
  }

  endpointPorts(namespace: string, service: string): readonly PortRecord[] {
    return this.#join(namespace, service).ports;
  }

  endpointsByIP(ip: string): ReadonlyArray<{ service: ServiceRecord; address: EndpointAddress }> {
    const out: Array<{ service: ServiceRecord; address: EndpointAddress }> = [];
    for (const slice of all(this.#endpointIPs.get(ip))) {
      const service = this.#services.get(slice.namespace, slice.service);
      if (!service) continue;
      for (const address of slice.addresses) {
        if (address.ip === ip && !out.some((o) => o.service === service && o.address.host === address.host)) out.push({ service, address });
      }
    }
    return out;
  }

  podsByIP(ip: string): readonly PodRecord[] {
    return all(this.#podIPs.get(ip));
  }

  hasServices(namespace: string): boolean {
    return this.#services.hasNamespace(namespace);
  }

  hasPods(namespace: string): boolean {
    return this.#pods.hasNamespace(namespace);
  }
}
