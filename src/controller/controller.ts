/**
 * The controller: the part of kube-controller-manager (and the scheduler) that a cluster
 * without the Kubernetes API needs. It runs in the control plane and only reads and writes
 * the datastore:
 *
 * - Deployments → Pods (planDeployment), and pods of deleted Deployments removed;
 * - scheduling: a pod without spec.nodeName is bound to the least-loaded ready node;
 * - pods on a node that no longer exists are removed (their kubelet is gone);
 * - graceful deletion: a scheduled pod is marked with deletionTimestamp and its kubelet
 *   finishes the job; an unscheduled one is deleted at once;
 * - Services: ClusterIP, NodePort and LoadBalancer allocation, and EndpointSlices from the
 *   pods a Service selects (services.ts; the planners in alloc.ts and endpointslices.ts).
 *
 * Reconciliation is level-based: every change queues a full pass (debounced), and a periodic
 * resync repeats it, so a missed event costs at most one period.
 */
import { describe } from '../errors/index.ts';
import { type Datastore, type EndpointSlice, type Informer, type Node, type Pod, type Service, createInformer, isNotFound, isConflict } from '../datastore/index.ts';
import { type DeploymentLike, planDeployment, pickNode } from './plan.ts';
import { ServiceController, type ServiceControllerOptions } from './services.ts';

export interface ControllerLog {
  info(obj: Record<string, unknown>, msg: string): void;
  error(obj: Record<string, unknown>, msg: string): void;
}

export interface ControllerOptions {
  resyncMs?: number;
  debounceMs?: number;
  /** Service CIDR, node port range, LoadBalancer pool, slice size. */
  services?: ServiceControllerOptions;
}

export class Controller {
  readonly ds: Datastore;
  private readonly log: ControllerLog;
  private pods!: Informer<Pod>;
  private nodes!: Informer<Node>;
  private deployments!: Informer<DeploymentLike>;
  private services!: Informer<Service>;
  private slices!: Informer<EndpointSlice>;
  /** Allocation and EndpointSlices; set once started. */
  serviceController!: ServiceController;
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private again = false;
  private readonly opts: Required<ControllerOptions>;
  /** Counts for metrics and tests. */
  readonly stats = { passes: 0, podsCreated: 0, podsRemoved: 0, podsBound: 0, errors: 0 };

  constructor(ds: Datastore, log: ControllerLog, opts: ControllerOptions = {}) {
    this.ds = ds;
    this.log = log;
    this.opts = { resyncMs: opts.resyncMs ?? 10_000, debounceMs: opts.debounceMs ?? 20, services: opts.services ?? {} };
  }

  async start(signal: AbortSignal): Promise<void> {
    this.pods = createInformer(this.ds, 'Pod');
    this.nodes = createInformer(this.ds, 'Node');
    this.deployments = createInformer(this.ds, 'Deployment') as unknown as Informer<DeploymentLike>;
    this.services = createInformer(this.ds, 'Service');
    this.slices = createInformer(this.ds, 'EndpointSlice');
    const sources = { services: this.services, slices: this.slices, pods: this.pods, nodes: this.nodes };
    this.serviceController = new ServiceController(this.ds, this.log, sources, this.opts.services);
    const informers = [this.pods, this.nodes, this.deployments, this.services, this.slices] as Array<Informer<unknown>>;
    for (const inf of informers) {
      inf.addEventHandler({ onAdd: () => this.queue(), onUpdate: () => this.queue(), onDelete: () => this.queue() });
    }
    await Promise.all(informers.map((inf) => inf.start(signal)));
    const resync = setInterval(() => this.queue(), this.opts.resyncMs);
    signal.addEventListener(
      'abort',
      () => {
        clearInterval(resync);
        clearTimeout(this.timer);
      },
      { once: true },
    );
    this.queue();
  }

  private queue(): void {
    if (this.running) {
      this.again = true;
      return;
    }
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.pass(), this.opts.debounceMs);
  }

  /** One reconciliation pass over everything. */
  async pass(): Promise<void> {
    this.running = true;
    this.stats.passes++;
    try {
      await this.reconcileDeployments();
      await this.reconcileOrphans();
      await this.schedule();
      await this.serviceController.reconcile();
    } catch (err) {
      this.stats.errors++;
      this.log.error({ err: describe(err) }, 'reconcile pass failed');
    } finally {
      this.running = false;
      if (this.again) {
        this.again = false;
        this.queue();
      }
    }
  }

  private async reconcileDeployments(): Promise<void> {
    const pods = this.pods.list();
    for (const d of this.deployments.list()) {
      const owned = pods.filter((p) => p.metadata.namespace === d.metadata.namespace && p.metadata.ownerReferences?.some((o) => o.uid === d.metadata.uid));
      const plan = planDeployment(d, owned);
      for (const p of plan.create) {
        await this.ds.create(p);
        this.stats.podsCreated++;
      }
      for (const p of plan.remove) await this.removePod(p);
      if (plan.create.length || plan.remove.length) {
        this.log.info({ deployment: `${d.metadata.namespace}/${d.metadata.name}`, created: plan.create.length, removed: plan.remove.length }, 'deployment reconciled');
      }
      const ready = owned.filter((p) => p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True')).length;
      const status = { replicas: owned.length, readyReplicas: ready, availableReplicas: ready, observedGeneration: 1 };
      if (JSON.stringify((d as { status?: unknown }).status) !== JSON.stringify(status)) {
        await this.ds.updateStatus({ ...(d as object), status } as unknown as Pod).catch((err) => {
          if (!isConflict(err) && !isNotFound(err)) throw err;
        });
      }
    }
  }

  /** Pods whose Deployment or node is gone. */
  private async reconcileOrphans(): Promise<void> {
    const deployUids = new Set(this.deployments.list().map((d) => d.metadata.uid));
    const nodeNames = new Set(this.nodes.list().map((n) => n.metadata.name));
    for (const p of this.pods.list()) {
      const owner = p.metadata.ownerReferences?.find((o) => o.kind === 'Deployment');
      if (owner && !deployUids.has(owner.uid)) await this.removePod(p);
      else if (p.spec?.nodeName && !nodeNames.has(p.spec.nodeName)) {
        // Its kubelet is gone with its node: nobody else would finish a graceful deletion.
        await this.ds.delete('Pod', { namespace: p.metadata.namespace, name: p.metadata.name }).catch((err) => {
          if (!isNotFound(err)) throw err;
        });
        this.stats.podsRemoved++;
      }
    }
  }

  private async schedule(): Promise<void> {
    const nodes = this.nodes.list();
    const pods = [...this.pods.list()];
    for (const p of pods) {
      if (p.spec?.nodeName || p.metadata.deletionTimestamp) continue;
      const node = pickNode(p, nodes, pods);
      if (!node) continue; // Stays Pending until a node is ready.
      try {
        await this.ds.update({ ...p, spec: { ...p.spec!, nodeName: node } });
        p.spec = { ...p.spec!, nodeName: node }; // counts for the next pick in this pass
        this.stats.podsBound++;
      } catch (err) {
        if (!isConflict(err) && !isNotFound(err)) throw err;
      }
    }
  }

  /** Graceful for scheduled pods (the kubelet finishes), immediate for the rest. */
  async removePod(p: Pod): Promise<void> {
    if (p.metadata.deletionTimestamp) return;
    try {
      if (p.spec?.nodeName) {
        await this.ds.update({ ...p, metadata: { ...p.metadata, deletionTimestamp: new Date().toISOString() } });
      } else {
        await this.ds.delete('Pod', { namespace: p.metadata.namespace, name: p.metadata.name });
      }
      this.stats.podsRemoved++;
    } catch (err) {
      if (!isNotFound(err) && !isConflict(err)) throw err;
    }
  }
}
