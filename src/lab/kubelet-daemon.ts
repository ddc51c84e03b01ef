/**
 * `podnet kubelet`: the lab kubelet as a daemon in a node's namespace. Start-up order:
 * datastore → register the Node (addresses, Ready heartbeat) → wait for the agent's CNI
 * configuration → GC of sandboxes no pod accounts for → watch and run the node's pods.
 */
import { existsSync } from 'node:fs';
import { hostname } from 'node:os';
import { Gauge } from 'prom-client';
import { createDaemon, every } from '../daemon/index.ts';
import { type Datastore, type Node, type Pod, EtcdDatastore, createInformer, isAlreadyExists, isNotFound, updateWithRetry } from '../datastore/index.ts';
import { describe } from '../errors/index.ts';
import { Kubelet, type KubeletStore, type PodObject } from './kubelet.ts';
import { podServiceEnv } from './envvars.ts';
import { loadConflist, type RuntimeConfig } from './runtime.ts';
import { waitFor } from './procs.ts';

export interface KubeletDaemonOptions {
  etcd: string;
  lab: string;
  node: string;
  nodeIP: string;
  nodeNetns: string;
  cniBin: string;
  cniConfDir: string;
  dir: string;
  cli: string;
  metricsPort: number;
  cniSocket?: string;
}

function datastoreStore(ds: Datastore): KubeletStore {
  return {
    async watchPods(node, onChange, onDelete, signal) {
      const inf = createInformer(ds, 'Pod');
      const mine = (p: Pod): boolean => p.spec?.nodeName === node;
      inf.addEventHandler({
        onAdd: (p) => mine(p) && onChange(p as unknown as PodObject),
        onUpdate: (_o, p) => mine(p) && onChange(p as unknown as PodObject),
        onDelete: (p) => mine(p) && onDelete(p as unknown as PodObject),
      });
      await inf.start(signal);
    },
    async updatePodStatus(pod, status) {
      await updateWithRetry(
        ds,
        'Pod',
        { namespace: pod.metadata.namespace, name: pod.metadata.name },
        (p) => {
          if (p.metadata.uid !== pod.metadata.uid) return p; // a new pod of the same name: not ours to touch
          p.status = { ...(p.status ?? {}), ...status } as Pod['status'];
        },
        { status: true },
      ).catch((err) => {
        if (!isNotFound(err)) throw err;
      });
    },
    async serviceEnv(pod) {
      const services = await ds.list('Service');
      return podServiceEnv(pod as unknown as Pod, services.items);
    },
    async removePod(pod) {
      await ds.delete('Pod', { namespace: pod.metadata.namespace, name: pod.metadata.name }, { uid: pod.metadata.uid }).catch((err) => {
        if (!isNotFound(err)) throw err;
      });
    },
  };
}

function nodeObject(o: KubeletDaemonOptions, ready: boolean, message: string): Node {
  const now = new Date().toISOString();
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name: o.node, labels: { 'kubernetes.io/hostname': o.node, 'kubernetes.io/os': 'linux', 'podnet.dev/lab': o.lab } },
    spec: {},
    status: {
      addresses: [
        { type: 'InternalIP', address: o.nodeIP },
        { type: 'Hostname', address: o.node },
      ],
      conditions: [{ type: 'Ready', status: ready ? 'True' : 'False', reason: ready ? 'KubeletReady' : 'NetworkNotReady', message, lastHeartbeatTime: now, lastTransitionTime: now }],
      nodeInfo: { kubeletVersion: 'podnet-lab', osImage: `netns on ${hostname()}` },
    },
  };
}

export async function runKubelet(o: KubeletDaemonOptions): Promise<void> {
  const d = createDaemon('kubelet', { node: o.node });
  const ds = new EtcdDatastore({ endpoints: o.etcd });
  d.onShutdown(() => ds.close());
  const running = new Gauge({ name: 'podnet_kubelet_pods', help: 'Pods this kubelet runs', registers: [d.registry] });
  await d.serve('0.0.0.0', o.metricsPort);

  // The node is Ready once the agent has written the CNI configuration (its subnet is leased).
  const networkReady = (): boolean => {
    try {
      loadConflist(o.cniConfDir);
      return true;
    } catch {
      return false;
    }
  };
  const register = async (): Promise<void> => {
    const ready = networkReady();
    const msg = ready ? 'kubelet is posting ready status' : 'waiting for the podnet agent to write the CNI configuration';
    try {
      await ds.create(nodeObject(o, ready, msg));
    } catch (err) {
      if (!isAlreadyExists(err)) throw err;
      await updateWithRetry(ds, 'Node', { name: o.node }, (n) => {
        n.status = { ...(n.status ?? {}), ...nodeObject(o, ready, msg).status };
      }, { status: true });
    }
  };
  await register();
  every(2000, d.signal, d.log, 'node heartbeat', register);
  d.addHealthCheck('datastore', () => true);
  await waitFor('the CNI configuration', () => d.signal.aborted || networkReady(), 60_000, `the podnet agent on ${o.node} writes ${o.cniConfDir}`);
  await register();

  const cfg: RuntimeConfig = { lab: o.lab, node: o.node, nodeNetns: o.nodeNetns, cniBin: o.cniBin, cniConfDir: o.cniConfDir, dir: o.dir, cli: o.cli };
  if (o.cniSocket && existsSync(o.cniSocket)) cfg.pluginEnv = { PODNET_CNI_SOCKET: o.cniSocket };
  const kubelet = new Kubelet(cfg, datastoreStore(ds), {
    info: (msg, f) => d.log.info(f ?? {}, msg),
    error: (msg, f) => d.log.error(f ?? {}, msg),
  });
  const pods = await ds.list('Pod');
  await kubelet.collectGarbage(pods.items.filter((p) => p.spec?.nodeName === o.node) as unknown as PodObject[]);
  await kubelet.run(d.signal);
  every(2000, d.signal, d.log, 'pod count', async () => running.set(kubelet.running().length));
  d.onShutdown(() => kubelet.stopAll());
  d.log.info({ node: o.node }, 'kubelet running');
  await d.runUntilStopped().catch((err) => d.log.error({ err: describe(err) }, 'shutdown failed'));
}
