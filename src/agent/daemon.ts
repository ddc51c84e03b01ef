/**
 * `podnet agent`: the per-node daemon. Start-up order, each step waiting for the one before:
 *
 *   1. underlay: the node's address on --iface (the agent runs inside the node's namespace);
 *   2. datastore, then the node's subnet lease (the same subnet as last time, if it can);
 *   3. peers: every other node's lease, then a watch that follows them;
 *   4. data plane: routes or VXLAN entries to every peer, egress masquerade (one sync);
 *   5. CNI: the subnet file and the conflist, written only now, so that no pod starts on a
 *      node whose network is not there yet;
 *   6. services: the service proxy (nftables or iptables), LoadBalancer address announcement
 *      and health-check node ports (services.ts);
 *   7. drift repair: the same sync every --resync, which writes nothing when nothing changed.
 *
 * Stopping (SIGTERM) stops renewing the lease without giving it back and leaves the kernel
 * state alone, so a restarted agent finds its subnet and its routes and no connection drops.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Counter, Gauge, Histogram } from 'prom-client';
import { createDaemon, every } from '../daemon/index.ts';
import { type Datastore, EtcdDatastore, isNotFound, updateWithRetry } from '../datastore/index.ts';
import { describe } from '../errors/index.ts';
import { run } from '../kernel/index.ts';
import type { HeldLease, SubnetLease, SubnetManager } from '../subnet/index.ts';
import { Dataplane, type ApplyResult } from './dataplane.ts';
import { writeConflist, writeSubnetFile } from './cniconf.ts';
import { vtepMac } from './vxlan.ts';
import { startServiceAgent } from './services.ts';
import { startCniServer } from '../cni/index.ts';
import type { Backend, DataplaneSpec, NodeSpec, TxChecksumMode } from './types.ts';

export interface AgentOptions {
  nodeName: string;
  etcd: string;
  backend: Backend;
  clusterCIDR: string;
  subnetLen: number;
  iface: string;
  cniConfDir: string;
  subnetFile: string;
  ipamDataDir?: string;
  /** The subnet to ask for when the node has none yet (the one it had last time wins). */
  preferredSubnet?: string;
  metricsHost: string;
  metricsPort: number;
  resyncMs: number;
  /**
   * Where the warm CNI server listens: the installed plugins (a small shim) hand each call to
   * this process instead of starting Node (see docs/cni.md); absent: no server.
   */
  cniSocket?: string;
  /** The service proxy: nftables (default) or iptables; 'none' leaves services to someone else. */
  proxyMode: 'nftables' | 'iptables' | 'none';
  /** TX checksum offload on the VXLAN device (default auto: off only on kernels with the bug). */
  vxlanTxChecksum?: TxChecksumMode;
  /** Builds the subnet manager over the datastore (etcd or, later, the Kubernetes API). */
  subnets: (ds: Datastore, cfg: { clusterCIDR: string; subnetLen: number }) => SubnetManager;
}

/** The node's first global IPv4 address on the underlay interface. */
export async function underlayAddress(iface: string): Promise<string> {
  const { stdout } = await run('ip', ['-j', '-4', 'addr', 'show', 'dev', iface]);
  const info = JSON.parse(stdout) as Array<{ addr_info?: Array<{ local: string; scope?: string }> }>;
  const addr = info[0]?.addr_info?.find((a) => a.scope === 'global')?.local;
  if (!addr) throw new Error(`interface ${iface} has no IPv4 address: give the agent the node's underlay interface with --iface`);
  return addr;
}

function previousSubnet(file: string): string | undefined {
  try {
    return (JSON.parse(readFileSync(file, 'utf8')) as { subnet?: string }).subnet;
  } catch {
    return undefined;
  }
}

function toNodeSpec(l: SubnetLease): NodeSpec {
  const spec: NodeSpec = { name: l.nodeName, nodeIP: l.nodeIP, subnet: l.subnet };
  const mac = l.backendData?.vtepMAC;
  if (typeof mac === 'string') spec.vtepMac = mac;
  return spec;
}

export async function runAgent(o: AgentOptions): Promise<void> {
  const d = createDaemon('agent', { node: o.nodeName });
  const m = {
    peers: new Gauge({ name: 'podnet_agent_peers', help: 'Other nodes this node connects to', registers: [d.registry] }),
    routes: new Gauge({ name: 'podnet_agent_routes_programmed', help: 'Routes/FDB/neighbour entries added in the last sync', labelNames: ['kind'], registers: [d.registry] }),
    syncs: new Counter({ name: 'podnet_agent_syncs_total', help: 'Data plane syncs', labelNames: ['result', 'changed'], registers: [d.registry] }),
    syncSeconds: new Histogram({ name: 'podnet_agent_sync_duration_seconds', help: 'Duration of a data plane sync', buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5], registers: [d.registry] }),
    errors: new Counter({ name: 'podnet_agent_errors_total', help: 'Errors, by kind', labelNames: ['kind'], registers: [d.registry] }),
    lease: new Gauge({ name: 'podnet_agent_lease_held', help: '1 while the node holds its subnet lease', labelNames: ['subnet'], registers: [d.registry] }),
    txChecksum: new Gauge({ name: 'podnet_agent_vxlan_tx_checksum_offload', help: '1: the VXLAN device keeps TX checksum offload, 0: turned off (by --vxlan-tx-checksum and the kernel)', labelNames: ['mode', 'kernel'], registers: [d.registry] }),
  };
  await d.serve(o.metricsHost, o.metricsPort);

  // 1. Underlay.
  const nodeIP = await underlayAddress(o.iface);
  d.log.info({ nodeIP, iface: o.iface, backend: o.backend }, 'underlay');

  // 2. Datastore and lease.
  const ds = new EtcdDatastore({ endpoints: o.etcd });
  d.onShutdown(() => ds.close());
  const subnets = o.subnets(ds, { clusterCIDR: o.clusterCIDR, subnetLen: o.subnetLen });
  const attrs = { nodeName: o.nodeName, nodeIP, backendType: o.backend, backendData: { vtepMAC: vtepMac(o.nodeName), vni: 1 } };
  const preferred = previousSubnet(o.subnetFile) ?? o.preferredSubnet;
  let held: HeldLease | undefined;
  let leaseOK = false;
  held = await subnets.acquireLease(attrs, {
    ...(preferred ? { preferredSubnet: preferred } : {}),
    signal: d.signal,
    onChange: (c) => {
      if (c.type === 'lost') {
        leaseOK = false;
        m.lease.reset();
        m.errors.inc({ kind: 'lease' });
        d.log.error({ subnet: c.subnet, err: c.error.message }, 'subnet lease lost; forwarding goes on, re-acquiring');
      } else {
        leaseOK = true;
        m.lease.set({ subnet: c.lease.subnet }, 1);
        d.log.info({ subnet: c.lease.subnet, same: c.sameSubnet }, 'subnet lease re-acquired');
        queueSync();
      }
    },
  });
  leaseOK = true;
  m.lease.set({ subnet: held.lease.subnet }, 1);
  d.onShutdown(() => held?.detach());
  d.log.info({ subnet: held.lease.subnet, ttl: held.ttlSeconds }, 'subnet leased');
  d.addHealthCheck('lease', () => leaseOK);

  // 3. Peers.
  const peers = new Map<string, SubnetLease>();
  const list = await subnets.listLeases();
  for (const l of list.leases) peers.set(l.nodeName, l);
  const watch = subnets.watchLeases({ fromRevision: list.revision, signal: d.signal });
  void (async () => {
    try {
      for await (const ev of watch) {
        if (ev.type === 'DELETED') peers.delete(ev.object.nodeName);
        else peers.set(ev.object.nodeName, ev.object);
        d.log.info({ peer: ev.object.nodeName, event: ev.type, subnet: ev.object.subnet }, 'peer lease changed');
        queueSync();
      }
    } catch (err) {
      if (!d.signal.aborted) {
        m.errors.inc({ kind: 'watch' });
        d.log.error({ err: describe(err) }, 'lease watch ended');
      }
    }
  })();

  // The warm CNI server, before the CNI config exists: the first pod's ADD already uses it.
  if (o.cniSocket) {
    const cniServer = await startCniServer({ socketPath: o.cniSocket, signal: d.signal, log: (e) => d.log.info(e, 'cni server') });
    // Calls in progress finish and the server's kept `ip` processes end before the agent exits.
    d.onShutdown(() => cniServer.closed);
    d.log.info({ socket: o.cniSocket }, 'CNI server listening');
  }

  // 4. Data plane.
  const dataplane = new Dataplane(o.vxlanTxChecksum ? { vxlanTxChecksum: o.vxlanTxChecksum } : {});
  if (o.backend === 'vxlan') {
    const tx = dataplane.txChecksum;
    m.txChecksum.set({ mode: tx.mode, kernel: tx.kernel }, tx.offload ? 1 : 0);
    d.log.info({ mode: tx.mode, offload: tx.offload ? 'on' : 'off', kernel: tx.kernel }, `VXLAN TX checksum offload: ${tx.reason}`);
  }
  let lastOK = false;
  let syncing: Promise<ApplyResult | undefined> | undefined;
  let pending = false;
  let cniWritten = false;
  const spec = (): DataplaneSpec => ({
    self: { name: o.nodeName, nodeIP, subnet: held!.lease.subnet, vtepMac: vtepMac(o.nodeName) },
    peers: [...peers.values()].filter((l) => l.nodeName !== o.nodeName).map(toNodeSpec),
    clusterCIDR: o.clusterCIDR,
    backend: o.backend,
    underlayIface: o.iface,
  });
  const sync = async (why: string): Promise<ApplyResult | undefined> => {
    const end = m.syncSeconds.startTimer();
    try {
      const r = await dataplane.apply(spec());
      end();
      lastOK = r.errors.length === 0;
      m.syncs.inc({ result: lastOK ? 'ok' : 'partial', changed: String(r.changed) });
      m.peers.set(spec().peers.length);
      m.routes.set({ kind: 'routes' }, r.routes.added);
      m.routes.set({ kind: 'fdb' }, r.fdb.added);
      m.routes.set({ kind: 'neigh' }, r.neighs.added);
      for (const e of r.errors) m.errors.inc({ kind: e.code });
      // A lasting problem (a peer behind a router) is logged once, not at every resync.
      for (const e of r.newErrors) d.log.warn({ code: e.code, peer: e.peer }, e.message);
      if (r.changed) d.log.info({ why, routes: r.routes, fdb: r.fdb, neighs: r.neighs, masq: r.masq, device: r.device }, 'data plane synced');
      // 5. CNI: after the first sync, and whenever the pod MTU might change.
      if (r.podMTU !== undefined) {
        const wroteSubnet = await writeSubnetFile(o.subnetFile, { network: o.clusterCIDR, subnet: held!.lease.subnet, mtu: r.podMTU });
        const conf = { mtu: r.podMTU, subnetFile: o.subnetFile, cniVersion: '1.1.0', portmap: false, ...(o.ipamDataDir ? { dataDir: o.ipamDataDir } : {}) };
        const wroteConf = await writeConflist(join(o.cniConfDir, '10-podnet.conflist'), conf);
        if (wroteSubnet || wroteConf || !cniWritten) d.log.info({ subnet: held!.lease.subnet, mtu: r.podMTU, dir: o.cniConfDir }, 'CNI configuration written');
        cniWritten = true;
      }
      return r;
    } catch (err) {
      end();
      lastOK = false;
      m.syncs.inc({ result: 'error', changed: 'false' });
      m.errors.inc({ kind: 'sync' });
      d.log.error({ err: describe(err), why }, 'data plane sync failed');
      return undefined;
    }
  };
  // Syncs never overlap; a change during a sync queues exactly one more.
  function queueSync(why = 'peers changed'): void {
    if (syncing) {
      pending = true;
      return;
    }
    syncing = sync(why).finally(() => {
      syncing = undefined;
      if (pending) {
        pending = false;
        queueSync(why);
      }
    });
  }
  queueSync('start');
  await syncing;
  d.addHealthCheck('dataplane', () => lastOK);

  // The Node object carries the node's pod CIDR (kubectl get nodes shows it; DNS and policy use it).
  /** True once the Node carries the subnet; false while the kubelet has not registered it. */
  const publishPodCIDR = async (): Promise<boolean> => {
    try {
      await updateWithRetry(ds, 'Node', { name: o.nodeName }, (n) => {
        if (n.spec?.podCIDR === held!.lease.subnet) return n;
        n.spec = { ...(n.spec ?? {}), podCIDR: held!.lease.subnet, podCIDRs: [held!.lease.subnet] };
      });
      return true;
    } catch (err) {
      if (!isNotFound(err)) throw err;
      return false;
    }
  };
  // The kubelet registers the Node once the CNI configuration is there, so usually just
  // after this point: publish as soon as it appears, not a resync period later (a Ready node
  // without a pod CIDR is what `get nodes` would show meanwhile).
  void (async () => {
    for (let i = 0; i < 40 && !d.signal.aborted; i++) {
      if (await publishPodCIDR().catch((err) => void d.log.warn({ err: describe(err) }, 'could not publish podCIDR yet'))) return;
      await new Promise((r) => setTimeout(r, 250));
    }
  })();

  // 6. Services: the proxy's rules, LoadBalancer announcements, health-check node ports.
  if (o.proxyMode !== 'none') {
    const svc = await startServiceAgent(ds, { nodeName: o.nodeName, nodeIP, clusterCIDR: o.clusterCIDR, iface: o.iface, mode: o.proxyMode, fullSyncMs: 60_000 }, d.log, d.registry, d.signal);
    d.addHealthCheck('proxy', svc.healthy);
  }

  // 7. Drift repair.
  every(o.resyncMs, d.signal, d.log, 'resync', async () => {
    if (!syncing) queueSync('resync');
    await publishPodCIDR();
  });
  d.log.info({ node: o.nodeName, subnet: held.lease.subnet, peers: peers.size - 1 }, 'agent running');
  await d.runUntilStopped();
}
