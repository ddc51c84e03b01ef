/**
 * The Service half of the controller: allocation (alloc.ts) and EndpointSlices
 * (endpointslices.ts) applied to the datastore. The planners decide; this file only reads the
 * informers, writes the answers and reports.
 *
 * Design notes
 *
 * - Race-free allocation needs two things: one allocator (one controller, whose passes are
 *   serialised here) and a cache that is never older than the controller's own last write. Each pass
 *   therefore starts by waiting until the Service and EndpointSlice informers have seen the
 *   revision of the last write made (read-your-writes); otherwise a pass could hand an address
 *   out again before the write that took it is visible.
 * - Every write carries the resourceVersion the decision was based on; if the object changed
 *   meanwhile the write fails with CONFLICT and the next pass (queued by that very change)
 *   decides again.
 * - Status before spec: when a requested value is refused, the condition that records the
 *   refusal is stored before the value is taken out of the spec, so a crash in between never
 *   leaves a Service that looks as if it had asked for nothing.
 * - Problems are logged when a condition changes, not on every pass.
 */
import { describe } from '../errors/index.ts';
import { type Datastore, type EndpointSlice, type Informer, type Node, type Pod, type Service, isAlreadyExists, isConflict, isNotFound } from '../datastore/index.ts';
import { type Holdings, type ServiceAllocation, type ServiceNetworkConfig, planAllocations, serviceName, serviceNetwork } from './alloc.ts';
import { SERVICE_NAME_LABEL, ZONE_LABEL, isManagedSlice, planEndpointSlices } from './endpointslices.ts';

export interface ServiceControllerLog {
  info(obj: Record<string, unknown>, msg: string): void;
  error(obj: Record<string, unknown>, msg: string): void;
}

export interface ServiceControllerOptions {
  /** Service CIDR, node port range, LoadBalancer pool (defaults: DEFAULT_SERVICE_NETWORK). */
  network?: Partial<ServiceNetworkConfig>;
  maxEndpointsPerSlice?: number;
  /** How long a pass waits for the informers to see the controller's last write. */
  syncTimeoutMs?: number;
  now?: () => Date;
}

export interface ServiceSources {
  services: Informer<Service>;
  slices: Informer<EndpointSlice>;
  pods: Informer<Pod>;
  nodes: Informer<Node>;
}

export class ServiceController {
  readonly network: ServiceNetworkConfig;
  readonly stats = { allocationWrites: 0, problems: 0, slicesCreated: 0, slicesUpdated: 0, slicesDeleted: 0, errors: 0 };
  private readonly ds: Datastore;
  private readonly log: ServiceControllerLog;
  private readonly src: ServiceSources;
  private readonly opts: ServiceControllerOptions;
  private holdings: Holdings = new Map();
  private lastWrite = { services: 0, slices: 0 };
  private queue: Promise<void> = Promise.resolve();

  constructor(ds: Datastore, log: ServiceControllerLog, sources: ServiceSources, opts: ServiceControllerOptions = {}) {
    this.ds = ds;
    this.log = log;
    this.src = sources;
    this.opts = opts;
    this.network = serviceNetwork(opts.network);
  }

  /** One pass: allocate, then EndpointSlices. Passes never overlap, however they are called. */
  reconcile(): Promise<void> {
    const run = this.queue.then(() => this.run());
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async run(): Promise<void> {
    const timeout = this.opts.syncTimeoutMs ?? 5000;
    await this.src.services.waitForRevision(String(this.lastWrite.services), timeout);
    await this.src.slices.waitForRevision(String(this.lastWrite.slices), timeout);
    const services = await this.allocate(this.src.services.list());
    await this.syncSlices(services);
  }

  /** Returns the Services as stored after this pass's writes. */
  private async allocate(services: Service[]): Promise<Service[]> {
    const now = (this.opts.now?.() ?? new Date()).toISOString();
    const plan = planAllocations(services, this.network, this.holdings, now);
    this.holdings = plan.holdings;
    const out: Service[] = [];
    for (const r of plan.results) {
      if (!r.specChanged && !r.statusChanged) {
        out.push(r.service);
        continue;
      }
      try {
        out.push(await this.write(r));
      } catch (err) {
        out.push(r.service);
        if (isConflict(err) || isNotFound(err)) continue; // changed or gone meanwhile: the next pass decides again
        this.stats.errors++;
        this.log.error({ service: serviceName(r.service), err: describe(err) }, 'cannot store the allocation of a Service');
      }
    }
    return out;
  }

  private async write(r: ServiceAllocation): Promise<Service> {
    let svc = r.service;
    if (r.statusChanged) {
      svc = await this.ds.updateStatus({ ...svc, status: r.desired.status ?? {} });
      this.noteWrite('services', svc);
    }
    if (r.specChanged) {
      svc = await this.ds.update({ ...svc, spec: r.desired.spec });
      this.noteWrite('services', svc);
    }
    this.stats.allocationWrites++;
    const name = serviceName(r.service);
    if (r.problems.length > 0 && r.statusChanged) {
      this.stats.problems++;
      for (const p of r.problems) this.log.error({ service: name, field: p.field, reason: p.reason }, p.message);
    } else {
      const s = r.desired.spec;
      const ports = (s?.ports ?? []).map((p) => p.nodePort).filter((n) => n !== undefined);
      const lb = r.desired.status?.loadBalancer?.ingress?.map((i) => i.ip);
      this.log.info({ service: name, clusterIP: s?.clusterIP, ...(ports.length ? { nodePorts: ports } : {}), ...(lb?.length ? { loadBalancer: lb } : {}) }, 'service allocated');
    }
    return svc;
  }

  private noteWrite(kind: 'services' | 'slices', obj: { metadata: { resourceVersion?: string } }): void {
    const rv = Number(obj.metadata.resourceVersion);
    if (Number.isFinite(rv) && rv > this.lastWrite[kind]) this.lastWrite[kind] = rv;
  }

  private async syncSlices(services: Service[]): Promise<void> {
    const podsByNs = new Map<string, Pod[]>();
    for (const p of this.src.pods.list()) {
      const ns = p.metadata.namespace ?? 'default';
      const list = podsByNs.get(ns);
      if (list) list.push(p);
      else podsByNs.set(ns, [p]);
    }
    const zones = new Map<string, string>();
    for (const n of this.src.nodes.list()) {
      const z = n.metadata.labels?.[ZONE_LABEL];
      if (z) zones.set(n.metadata.name, z);
    }
    const all = this.src.slices.list();
    const namesByNs = new Map<string, Set<string>>();
    const managed = new Map<string, EndpointSlice[]>();
    for (const s of all) {
      const ns = s.metadata.namespace ?? 'default';
      if (!namesByNs.has(ns)) namesByNs.set(ns, new Set());
      namesByNs.get(ns)?.add(s.metadata.name);
      if (!isManagedSlice(s)) continue;
      const key = `${ns}/${s.metadata.labels?.[SERVICE_NAME_LABEL]}`;
      const list = managed.get(key);
      if (list) list.push(s);
      else managed.set(key, [s]);
    }
    for (const svc of services) {
      const key = serviceName(svc);
      const slices = managed.get(key) ?? [];
      managed.delete(key);
      const plan = planEndpointSlices({
        service: svc,
        pods: podsByNs.get(svc.metadata.namespace ?? 'default') ?? [],
        slices,
        usedNames: namesByNs.get(svc.metadata.namespace ?? 'default') ?? new Set(),
        zones,
        ...(this.opts.maxEndpointsPerSlice ? { maxEndpointsPerSlice: this.opts.maxEndpointsPerSlice } : {}),
      });
      await this.applySlices(key, plan.create, plan.update, plan.delete);
    }
    // Slices whose Service is gone.
    for (const [key, slices] of managed) await this.applySlices(key, [], [], slices);
  }

  /** Creates first, deletes last, so an endpoint that moves between slices never disappears. */
  private async applySlices(service: string, create: EndpointSlice[], update: EndpointSlice[], remove: EndpointSlice[]): Promise<void> {
    const attempt = async (what: string, fn: () => Promise<EndpointSlice>): Promise<boolean> => {
      try {
        this.noteWrite('slices', await fn());
        return true;
      } catch (err) {
        if (isConflict(err) || isNotFound(err) || isAlreadyExists(err)) return false; // a stale cache: the next pass sees more
        this.stats.errors++;
        this.log.error({ service, err: describe(err) }, `cannot ${what} an EndpointSlice`);
        return false;
      }
    };
    for (const s of create) if (await attempt('create', () => this.ds.create(s))) this.stats.slicesCreated++;
    for (const s of update) if (await attempt('update', () => this.ds.update(s))) this.stats.slicesUpdated++;
    for (const s of remove) {
      const ref = { namespace: s.metadata.namespace ?? 'default', name: s.metadata.name };
      const opts = s.metadata.uid ? { uid: s.metadata.uid } : {};
      if (await attempt('delete', () => this.ds.delete('EndpointSlice', ref, opts))) this.stats.slicesDeleted++;
    }
    if (create.length + update.length + remove.length > 0) {
      this.log.info({ service, created: create.length, updated: update.length, deleted: remove.length }, 'endpointslices reconciled');
    }
  }
}
