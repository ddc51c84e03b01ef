/**
 * Keeps a RecordStore current from a datastore: one informer per kind DNS reads (Services,
 * EndpointSlices and, unless pod records are disabled, Pods), each event applied to the
 * store as it arrives, so an answer reflects a change as soon as the watch delivers it.
 * `synced()` is true once every informer has its first list: before that the resolver
 * answers SERVFAIL for the zone rather than a false NXDOMAIN.
 */
import { createInformer, type Datastore, type Informer } from '../datastore/index.ts';
import { RecordStore } from './store.ts';

export interface ClusterWatchOptions {
  /** Watch Pods too (pod records and pod PTRs). Default true. */
  pods?: boolean;
  onError?: (err: unknown) => void;
}

export interface ClusterWatch {
  readonly store: RecordStore;
  /** Resolves once every informer has its first list in the store. */
  start(signal?: AbortSignal): Promise<void>;
  stop(): Promise<void>;
  synced(): boolean;
}

export function watchCluster(ds: Datastore, opts: ClusterWatchOptions = {}): ClusterWatch {
  const store = new RecordStore();
  const informerOpts = opts.onError ? { onError: opts.onError } : {};
  const services = createInformer(ds, 'Service', informerOpts);
  services.addEventHandler({
    onAdd: (o) => store.applyService(o),
    onUpdate: (_, o) => store.applyService(o),
    onDelete: (o) => store.deleteService(o.metadata.namespace ?? 'default', o.metadata.name),
  });
  const slices = createInformer(ds, 'EndpointSlice', informerOpts);
  slices.addEventHandler({
    onAdd: (o) => store.applySlice(o),
    onUpdate: (_, o) => store.applySlice(o),
    onDelete: (o) => store.deleteSlice(o.metadata.namespace ?? 'default', o.metadata.name),
  });
  const informers: Array<Pick<Informer<unknown>, 'start' | 'stop' | 'hasSynced'>> = [services, slices];
  if (opts.pods !== false) {
    const pods = createInformer(ds, 'Pod', informerOpts);
    pods.addEventHandler({
      onAdd: (o) => store.applyPod(o),
      onUpdate: (_, o) => store.applyPod(o),
      onDelete: (o) => store.deletePod(o.metadata.namespace ?? 'default', o.metadata.name),
    });
    informers.push(pods);
  }
  const synced = (): boolean => informers.every((i) => i.hasSynced());
  store.setSynced(synced);

  return {
    store,
    synced,
    async start(signal) {
      await Promise.all(informers.map((i) => i.start(signal)));
    },
    async stop() {
      await Promise.all(informers.map((i) => i.stop()));
    },
  };
}
