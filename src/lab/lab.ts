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
import { linkSync, copyFileSync, mkdirSync, existsSync } from 'node:fs';
import { connect } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isAlive } from '../kernel/index.ts';
import { ADDRESS_PLAN, LabError, type LabOptions, type LabPlan, planLab } from './plan.ts';
import { type Daemon, startDaemon, stopPids, waitFor } from './procs.ts';
import { type LabState, readState, removeState, stateDir, writeState } from './state.ts';
import { createNetwork, deleteNamespaces, labNamespaces, namespacePids } from './topology.ts';

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

export const nodeComponents: NodeComponent[] = [];
export const controlPlaneComponents: Array<Omit<NodeComponent, 'argv'> & { argv(ctx: { plan: LabPlan; dir: string; cli: string; etcdURL: string; etcdSocket: string }): string[] }> = [];

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
      await Promise.all(
        plan.nodes.map(async (node) => {
          const nodeDir = join(dir, 'nodes', node.name);
          track(startDaemon(`${c.role}/${node.name}`, node.netns, c.argv({ plan, node, dir: nodeDir, cli, etcdURL }), join(dir, 'logs', `${c.role}-${node.name}.log`)));
          await c.ready?.({ dir: nodeDir });
        }),
      );
      progress(`nodes: ${c.role} on ${plan.nodes.length} node(s)`);
    }
    progress(`lab "${lab}" is up in ${((performance.now() - t0) / 1000).toFixed(1)}s`);
    return state;
  } catch (err) {
    progress(`lab up failed; removing what was made`);
    await down(lab);
    throw err;
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
