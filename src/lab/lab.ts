/**
 * `podnet lab up | down | status`: the whole cluster on one host.
 *
 * Start-up order (each step waits for the one before): network (namespaces, switch, router,
 * external host) → etcd in the control plane → the controller → per node: the CNI plugins
 * and the agent, then the lab kubelet. A failure at any step tears down everything made so
 * far. `down` ends the daemons the lab started (by PID), every process left inside the lab's
 * namespaces, deletes the namespaces and the state directory; it also cleans up a lab whose
 * CLI or daemons were killed, since it works from the namespace prefix and the state file,
 * not from anything in memory.
 */
import { linkSync, copyFileSync, mkdirSync, existsSync, readdirSync } from 'node:fs';
import { connect } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isAlive } from '../kernel/index.ts';
import { EtcdDatastore } from '../datastore/index.ts';
import { ADDRESS_PLAN, LabError, type LabOptions, type LabPlan, nsName, nsPrefix, planLab } from './plan.ts';
import { type Daemon, startDaemon, stopPids, waitFor } from './procs.ts';
import { type LabState, readState, removeState, stateDir, writeState } from './state.ts';
import { addNamespace, createNetwork, deleteNamespaces, labNamespaces, namespacePids, plugHost } from './topology.ts';
import { podNetns, removeResolvConf } from './runtime.ts';
import { dnsAddon } from './addons.ts';
import { applyManifests, waitForPods } from './commands.ts';
import { EtcdSubnetManager } from '../subnet/index.ts';
import { run } from '../kernel/index.ts';

/** The podnet bundle (dist/podnet.mjs) and the plugin directory next to it. */
export function distPaths(): { cli: string; cniBin: string } {
  const here = dirname(fileURLToPath(import.meta.url));
  for (const dist of [here, join(here, '..', '..', 'dist')]) {
    if (existsSync(join(dist, 'podnet.mjs')) && existsSync(join(dist, 'cni-bin'))) return { cli: join(dist, 'podnet.mjs'), cniBin: join(dist, 'cni-bin') };
  }
  throw new LabError('PODNET_NOT_BUILT', 'podnet is not built: run `npm run build` (or `npm start`)');
}

export type Progress = (msg: string) => void;

/** A per-lab hook: what to start after etcd, per node. Filled in by the capabilities that exist. */
export interface NodeComponent {
  role: string;
  argv(ctx: { plan: LabPlan; node: LabPlan['nodes'][number]; dir: string; cli: string; etcdURL: string }): string[];
  /** Resolves when the component is ready. */
  ready?(ctx: { dir: string }): Promise<void>;
}

/** The control plane's daemons after etcd: the controller (its metrics on 10257). */
export const controlPlaneComponents: Array<Omit<NodeComponent, 'argv'> & { argv(ctx: { plan: LabPlan; dir: string; cli: string; etcdURL: string; etcdSocket: string }): string[] }> = [
  { role: 'controller', argv: ({ cli, etcdURL }) => [process.execPath, cli, 'controller', '--etcd', etcdURL] },
];

/**
 * Each node's daemons, in order: the agent (subnet, routes/VXLAN, masquerade, then the CNI
 * config), and the lab kubelet (registers the Node, runs its pods once the CNI config exists).
 */
export const nodeComponents: NodeComponent[] = [
  {
    role: 'agent',
    argv: ({ plan, node, dir, cli, etcdURL }) => [
      process.execPath, cli, 'agent',
      '--node-name', node.name,
      '--etcd', etcdURL,
      '--backend', plan.options.backend,
      '--cluster-cidr', ADDRESS_PLAN.clusterCIDR,
      '--iface', 'eth0',
      '--cni-conf-dir', join(dir, 'net.d'),
      '--subnet-file', join(dir, 'subnet.json'),
      '--ipam-data-dir', join(dir, 'ipam'),
      // The address plan gives node i the subnet 10.244.i.0/24; the agent takes it if free.
      '--preferred-subnet', `10.244.${node.index}.0/24`,
      '--proxy-mode', plan.options.proxy,
      // The warm CNI server the node's plugins hand their calls to.
      '--cni-socket', join(dir, 'cni.sock'),
    ],
  },
  {
    role: 'kubelet',
    argv: ({ plan, node, dir, cli, etcdURL }) => [
      process.execPath, cli, 'kubelet',
      '--etcd', etcdURL,
      '--lab', plan.options.name,
      '--node', node.name,
      '--node-ip', node.ip,
      '--node-netns', node.netns,
      '--cni-bin-dir', join(dir, 'cni-bin'),
      '--cni-conf-dir', join(dir, 'net.d'),
      '--state-dir', dir,
      '--cni-socket', join(dir, 'cni.sock'),
    ],
  },
];

function canConnect(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** Installs the plugins into a node's CNI bin directory (hard links: a node keeps its copy). */
function installPlugins(from: string, to: string): void {
  mkdirSync(to, { recursive: true });
  for (const f of ['podnet-bridge', 'podnet-ipam', 'podnet-bridge.sea', 'podnet-ipam.sea']) {
    const src = join(from, f);
    if (!existsSync(src)) continue;
    try {
      linkSync(src, join(to, f));
    } catch {
      copyFileSync(src, join(to, f));
    }
  }
}

async function startNodeComponent(c: NodeComponent, plan: LabPlan, node: LabPlan['nodes'][number], dir: string, cli: string, etcdURL: string, track: (d: Daemon) => Daemon): Promise<void> {
  const nodeDir = join(dir, 'nodes', node.name);
  track(startDaemon(`${c.role}/${node.name}`, node.netns, c.argv({ plan, node, dir: nodeDir, cli, etcdURL }), join(dir, 'logs', `${c.role}-${node.name}.log`)));
  await c.ready?.({ dir: nodeDir });
}

/** The lab's nodes now (node add/remove change them). */
export function labNodes(state: LabState): number[] {
  return state.nodes ?? Array.from({ length: state.options.nodes }, (_, k) => k + 1);
}

/** `lab node add`: one more node, wired, with its agent and kubelet; resolves once it is Ready. */
export async function addNode(lab: string, progress: Progress = () => undefined): Promise<string> {
  const state = readState(lab);
  if (!state) throw new LabError('PODNET_LAB_NOT_UP', `lab "${lab}" is not up`);
  const existing = labNodes(state);
  const index = Math.max(0, ...existing) + 1;
  const plan = planLab({ ...state.options, nodes: index });
  const node = plan.nodes[index - 1]!;
  const { cli, cniBin } = distPaths();
  const dir = stateDir(lab);
  await addNamespace(node.netns);
  await plugHost(plan.sw, node);
  await run('ip', ['netns', 'exec', node.netns, 'sysctl', '-q', '-w', 'net.ipv4.ip_forward=1']);
  const nodeDir = join(dir, 'nodes', node.name);
  installPlugins(cniBin, join(nodeDir, 'cni-bin'));
  mkdirSync(join(nodeDir, 'net.d'), { recursive: true });
  state.nodes = [...existing, index];
  const track = (d: Daemon): Daemon => {
    state.daemons.push(d);
    writeState(lab, state);
    return d;
  };
  for (const c of nodeComponents) await startNodeComponent(c, plan, node, dir, cli, state.etcdURL, track);
  await waitForNodes(state, [node.name]);
  progress(`${node.name} (${node.ip}) joined`);
  return node.name;
}

/** `lab node remove NODE`: its daemons and pods stop, its namespace goes, its subnet is freed. */
export async function removeNode(lab: string, name: string, progress: Progress = () => undefined): Promise<void> {
  const state = readState(lab);
  if (!state) throw new LabError('PODNET_LAB_NOT_UP', `lab "${lab}" is not up`);
  const m = /^node(\d+)$/.exec(name);
  const index = m ? Number(m[1]) : NaN;
  if (!labNodes(state).includes(index)) throw new LabError('PODNET_NOT_FOUND', `node "${name}" is not in lab "${lab}" (nodes: ${labNodes(state).map((i) => `node${i}`).join(', ')})`);
  const mine = state.daemons.filter((d) => d.role.endsWith(`/${name}`));
  await stopPids(mine.map((d) => d.pid));
  const ds = new EtcdDatastore({ endpoints: `unix://${state.etcdSocket}` });
  try {
    const pods = (await ds.list('Pod')).items.filter((p) => p.spec?.nodeName === name);
    const sandboxes = pods.map((p) => podNetns(lab, p.metadata.uid ?? '')).filter((n) => existsSync(`/var/run/netns/${n}`));
    const inside = (await Promise.all([nsName(lab, name), ...sandboxes].map(namespacePids))).flat();
    await stopPids(inside, 1000);
    await deleteNamespaces([nsName(lab, name), ...sandboxes]);
    for (const n of sandboxes) removeResolvConf(n);
    await ds.delete('Node', { name }).catch(() => undefined);
    const subnets = new EtcdSubnetManager({ client: ds.client, clusterCIDR: ADDRESS_PLAN.clusterCIDR, subnetLen: ADDRESS_PLAN.nodeSubnetBits });
    await subnets.releaseLease(name);
    await subnets.close();
  } finally {
    await ds.close();
  }
  state.daemons = state.daemons.filter((d) => !mine.includes(d));
  state.nodes = labNodes(state).filter((i) => i !== index);
  writeState(lab, state);
  progress(`${name} removed`);
}

function labDaemon(lab: string, role: string): Daemon {
  const state = readState(lab);
  if (!state) throw new LabError('PODNET_LAB_NOT_UP', `lab "${lab}" is not up`);
  const daemon = state.daemons.find((d) => d.role === role);
  if (!daemon) throw new LabError('PODNET_NOT_FOUND', `lab "${lab}" has no daemon "${role}" (daemons: ${state.daemons.map((d) => d.role).join(', ')})`);
  return daemon;
}

/** Stops one of the lab's daemons (SIGTERM, then SIGKILL after a grace period); it stays in the state, stopped. */
export async function stopDaemon(lab: string, role: string): Promise<Daemon> {
  const daemon = labDaemon(lab, role);
  await stopPids([daemon.pid]);
  return daemon;
}

/** Stops a daemon if it runs and starts it again with the same command, in the same namespace. */
export async function restartDaemon(lab: string, role: string): Promise<Daemon> {
  const daemon = labDaemon(lab, role);
  if (!daemon.argv) throw new LabError('PODNET_LAB_CANNOT_RESTART', `${role} was started by an older podnet that did not record its command; run \`podnet lab down --name ${lab}\` and up again`);
  await stopPids([daemon.pid]);
  const again = startDaemon(role, daemon.netns, daemon.argv, daemon.log, daemon.cwd);
  // The state as it is now (another daemon may have been restarted meanwhile), read and
  // written with nothing in between.
  const state = readState(lab);
  if (state) {
    state.daemons = state.daemons.map((d) => (d.role === role ? again : d));
    writeState(lab, state);
  }
  return again;
}

export async function up(options: LabOptions, progress: Progress = () => undefined): Promise<LabState> {
  const t0 = performance.now();
  const plan = planLab(options);
  const lab = options.name;
  const existing = readState(lab);
  if (existing && existing.daemons.some((d) => isAlive(d.pid))) {
    throw new LabError('PODNET_LAB_EXISTS', `lab "${lab}" is already up; run \`podnet lab down --name ${lab}\` first, or pick another --name`);
  }
  if (existing || labNamespaces(lab).length > 0) {
    progress(`cleaning up what a previous lab "${lab}" left behind`);
    await down(lab);
  }
  const { cli, cniBin } = distPaths();
  const dir = stateDir(lab);
  mkdirSync(join(dir, 'logs'), { recursive: true, mode: 0o700 });
  const etcdDir = join(dir, 'etcd');
  mkdirSync(etcdDir, { recursive: true, mode: 0o700 });
  const etcdURL = `http://${ADDRESS_PLAN.controlPlane}:${ADDRESS_PLAN.etcdPort}`;
  const state: LabState = {
    options,
    createdAt: new Date().toISOString(),
    daemons: [],
    etcdSocket: join(etcdDir, 'etcd.sock:0'),
    etcdURL,
  };
  writeState(lab, state);
  const track = (d: Daemon): Daemon => {
    state.daemons.push(d);
    writeState(lab, state);
    return d;
  };
  try {
    await createNetwork(plan, (m) => progress(`network: ${m}`));
    // The "internet": a web server on the external host that tells who asked (masquerade shows).
    track(startDaemon('ext-web', plan.ext, [process.execPath, cli, 'serve-echo', '--port', '80', '--name', 'external-host'], join(dir, 'logs', 'ext-web.log')));
    // …and a DNS zone (example.test) the cluster DNS forwards to.
    track(startDaemon('ext-dns', plan.ext, [process.execPath, cli, 'serve-zone', '--port', '53', '--address', ADDRESS_PLAN.externalHost], join(dir, 'logs', 'ext-dns.log')));
    // etcd: the nodes reach it over the underlay; the CLI through a unix socket in the state
    // directory, so the root namespace's network carries nothing.
    track(
      startDaemon(
        'etcd',
        plan.cp.netns,
        [
          'etcd',
          '--name',
          'cp',
          '--data-dir',
          join(etcdDir, 'data'),
          '--listen-client-urls',
          `${etcdURL},unix://etcd.sock:0`,
          '--advertise-client-urls',
          etcdURL,
          '--listen-peer-urls',
          'unix://peer.sock:0',
          '--initial-advertise-peer-urls',
          'unix://peer.sock:0',
          '--initial-cluster',
          'cp=unix://peer.sock:0',
          '--log-level',
          'warn',
        ],
        join(dir, 'logs', 'etcd.log'),
        etcdDir,
      ),
    );
    await waitFor('etcd', () => canConnect(state.etcdSocket), 20000, `see ${join(dir, 'logs', 'etcd.log')}`);
    progress('control plane: etcd');
    for (const c of controlPlaneComponents) {
      track(startDaemon(c.role, plan.cp.netns, c.argv({ plan, dir, cli, etcdURL, etcdSocket: state.etcdSocket }), join(dir, 'logs', `${c.role}.log`)));
      await c.ready?.({ dir });
      progress(`control plane: ${c.role}`);
    }
    for (const node of plan.nodes) {
      const nodeDir = join(dir, 'nodes', node.name);
      installPlugins(cniBin, join(nodeDir, 'cni-bin'));
      mkdirSync(join(nodeDir, 'net.d'), { recursive: true });
    }
    for (const c of nodeComponents) {
      await Promise.all(plan.nodes.map((node) => startNodeComponent(c, plan, node, dir, cli, etcdURL, track)));
      progress(`nodes: ${c.role} on ${plan.nodes.length} node(s)`);
    }
    await waitForNodes(state, plan.nodes.map((n) => n.name));
    progress(`nodes: ${plan.nodes.length} Ready`);
    await installAddons(state, cli);
    progress(`add-ons: cluster DNS at ${ADDRESS_PLAN.dnsServiceIP} ready`);
    progress(`lab "${lab}" is up in ${((performance.now() - t0) / 1000).toFixed(1)}s`);
    return state;
  } catch (err) {
    progress(`lab up failed; removing what was made`);
    await down(lab);
    throw err;
  }
}

/** Waits until every named node is registered and Ready (its agent wrote the CNI config). */
export async function waitForNodes(state: LabState, names: string[], timeoutMs = 60_000): Promise<void> {
  const ds = new EtcdDatastore({ endpoints: `unix://${state.etcdSocket}` });
  try {
    let notReady = names;
    await waitFor(
      `node(s) ${names.join(', ')}`,
      async () => {
        const nodes = await ds.list('Node').catch(() => ({ items: [] }));
        // Ready (its kubelet runs, its agent wrote the CNI configuration) and carrying its pod CIDR.
        const ready = new Set(nodes.items.filter((n) => n.spec?.podCIDR && n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True')).map((n) => n.metadata.name));
        notReady = names.filter((n) => !ready.has(n));
        return notReady.length === 0;
      },
      timeoutMs,
      `see the agent and kubelet logs in ${join(stateDir(state.options.name), 'logs')}`,
    );
  } finally {
    await ds.close();
  }
}

/** Installs the add-ons (the cluster DNS) and waits until they serve. */
export async function installAddons(state: LabState, cli: string): Promise<void> {
  const ds = new EtcdDatastore({ endpoints: `unix://${state.etcdSocket}` });
  try {
    const addons = dnsAddon(cli, state.etcdURL);
    // The controller makes kube-system when it starts; on a busy machine the nodes can be Ready first.
    await waitFor(
      'namespace kube-system',
      () => ds.get('Namespace', { name: 'kube-system' }).then(() => true, () => false),
      30_000,
      `the controller creates it: see ${join(stateDir(state.options.name), 'logs', 'controller.log')}`,
    );
    await applyManifests(ds, addons, () => undefined);
    await waitForPods(state.options.name, ds, addons, 60_000);
  } finally {
    await ds.close();
  }
}

export interface DownReport {
  daemons: number;
  processes: number;
  namespaces: number;
}

export async function down(lab: string): Promise<DownReport> {
  const state = readState(lab);
  const daemonPids = state?.daemons.map((d) => d.pid) ?? [];
  await stopPids(daemonPids);
  const namespaces = labNamespaces(lab);
  // Whatever still runs inside the lab's namespaces was started by the lab (pods' processes).
  const inside = (await Promise.all(namespaces.map(namespacePids))).flat();
  await stopPids(inside, 1000);
  await deleteNamespaces(namespaces);
  // The pods' resolv.conf files (ip netns exec reads /etc/netns/<namespace>/).
  if (existsSync('/etc/netns')) for (const n of readdirSync('/etc/netns')) if (n.startsWith(nsPrefix(lab))) removeResolvConf(n);
  removeState(lab);
  return { daemons: daemonPids.length, processes: inside.length, namespaces: namespaces.length };
}

export interface LabStatus {
  name: string;
  up: boolean;
  options?: LabOptions;
  createdAt?: string;
  namespaces: number;
  daemons: Array<Daemon & { running: boolean }>;
}

export function status(lab: string): LabStatus {
  const state = readState(lab);
  const daemons = (state?.daemons ?? []).map((d) => ({ ...d, running: isAlive(d.pid) }));
  const st: LabStatus = { name: lab, up: daemons.length > 0 && daemons.every((d) => d.running), namespaces: labNamespaces(lab).length, daemons };
  if (state) {
    st.options = state.options;
    st.createdAt = state.createdAt;
  }
  return st;
}

export type { LabPlan };
