/** `podnet controller`: the controller as a daemon (in the lab, in the control-plane namespace). */
import { Gauge } from 'prom-client';
import { createDaemon, every } from '../daemon/index.ts';
import { EtcdDatastore, isAlreadyExists } from '../datastore/index.ts';
import { Controller } from './controller.ts';

export async function runController(opts: { etcd: string; metricsHost: string; metricsPort: number }): Promise<void> {
  const d = createDaemon('controller');
  const ds = new EtcdDatastore({ endpoints: opts.etcd });
  d.onShutdown(() => ds.close());
  await d.serve(opts.metricsHost, opts.metricsPort);
  // The namespaces every cluster starts with.
  for (const name of ['default', 'kube-system']) {
    await ds.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name } }).catch((err) => {
      if (!isAlreadyExists(err)) throw err;
    });
  }
  const c = new Controller(ds, { info: (o, m) => d.log.info(o, m), error: (o, m) => d.log.error(o, m) });
  await c.start(d.signal);
  const passes = new Gauge({ name: 'podnet_controller_passes', help: 'Reconciliation passes', registers: [d.registry] });
  const errors = new Gauge({ name: 'podnet_controller_errors', help: 'Failed reconciliation passes', registers: [d.registry] });
  every(1000, d.signal, d.log, 'metrics', async () => {
    passes.set(c.stats.passes);
    errors.set(c.stats.errors);
  });
  d.addHealthCheck('reconcile', () => c.stats.passes > 0);
  d.log.info({ etcd: opts.etcd }, 'controller running');
  await d.runUntilStopped();
}
