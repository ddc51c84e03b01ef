/**
 * The lab kubelet: one per node, in the node's namespace. It watches the pods bound to its
 * node and makes them real with the lab runtime (runtime.ts): sandbox through CNI, container
 * processes, readiness probes; it reports each pod's IP, phase, conditions and container
 * states back to the datastore, and finishes deletions (processes stopped, CNI DEL, sandbox
 * removed, object deleted), as a kubelet does.
 *
 * The store is a small interface (KubeletStore) so this logic is tested without etcd.
 */
import type { ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { appendFileSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { isAlive, run } from '../kernel/index.ts';
import { describe } from '../errors/index.ts';
import {
  type ContainerSpec,
  type RuntimeConfig,
  cniAdd,
  cniDel,
  cniGc,
  containerArgv,
  missingExecutable,
  podNetns,
  probeOnce,
  removeResolvConf,
  startContainer,
  writeResolvConf,
} from './runtime.ts';
import { ADDRESS_PLAN } from './plan.ts';

export interface PodObject {
  apiVersion?: string;
  kind?: string;
  metadata: { name: string; namespace: string; uid: string; labels?: Record<string, string>; deletionTimestamp?: string; resourceVersion?: string; [k: string]: unknown };
  spec: {
    nodeName?: string;
    containers: Array<ContainerSpec & { ports?: Array<{ name?: string; containerPort: number; protocol?: string }> }>;
    restartPolicy?: 'Always' | 'OnFailure' | 'Never';
    dnsPolicy?: 'ClusterFirst' | 'Default' | 'None';
    dnsConfig?: { nameservers?: string[]; searches?: string[]; options?: Array<{ name: string; value?: string }> };
    hostname?: string;
    subdomain?: string;
    terminationGracePeriodSeconds?: number;
    enableServiceLinks?: boolean;
    [k: string]: unknown;
  };
  status?: any;
}

export interface KubeletStore {
  /** Calls `onChange` for every pod bound to `node` now and at every later change; `onDelete` when gone. */
  watchPods(node: string, onChange: (pod: PodObject) => void, onDelete: (pod: PodObject) => void, signal: AbortSignal): Promise<void>;
  updatePodStatus(pod: PodObject, status: Record<string, unknown>): Promise<void>;
  /** Removes the object for good (after the kubelet has torn the pod down). */
  removePod(pod: PodObject): Promise<void>;
  /** Extra environment for a pod's containers (service links); empty by default. */
  serviceEnv?(pod: PodObject): Promise<Record<string, string>>;
}

export interface KubeletLog {
  info(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

/**
 * A container process that an earlier kubelet of this node started (this one restarted):
 * not our child, so it is watched by PID and reported as an exit (status unknown) when gone.
 */
class AdoptedProcess extends EventEmitter {
  readonly pid: number;
  readonly #timer: NodeJS.Timeout;

  constructor(pid: number) {
    super();
    this.pid = pid;
    this.#timer = setInterval(() => {
      if (isAlive(this.pid)) return;
      clearInterval(this.#timer);
      this.emit('exit', null, null);
    }, 200);
    this.#timer.unref();
  }
}

/** The inode of a process's (or a named) network namespace, or undefined. */
function netnsInode(path: string): number | undefined {
  try {
    return statSync(path).ino;
  } catch {
    return undefined;
  }
}

interface ContainerState {
  spec: ContainerSpec & { ports?: Array<{ name?: string; containerPort: number }> };
  proc?: ChildProcess | AdoptedProcess;
  restarts: number;
  startedAt?: string;
  lastExit?: { exitCode: number | null; signal: string | null; finishedAt: string };
  ready: boolean;
  /** The environment the container runs with (exec probes get it too). */
  env?: Record<string, string>;
  /** Consecutive probe results, for the thresholds. */
  probeOk: number;
  probeFail: number;
  backoffTimer?: NodeJS.Timeout;
}

interface PodState {
  pod: PodObject;
  netns: string;
  ip?: string;
  cniResult?: unknown;
  containers: ContainerState[];
  phase: 'Pending' | 'Running' | 'Succeeded' | 'Failed';
  message?: string;
  reason?: string;
  stopping: boolean;
  probeTimer?: NodeJS.Timeout;
  statusKey?: string;
}

export function resolvConfFor(pod: PodObject): string {
  const policy = pod.spec.dnsPolicy ?? 'ClusterFirst';
  const lines: string[] = [];
  let nameservers: string[] = [];
  let searches: string[] = [];
  let options: string[] = [];
  if (policy === 'ClusterFirst') {
    nameservers = [ADDRESS_PLAN.dnsServiceIP];
    searches = [`${pod.metadata.namespace}.svc.cluster.local`, 'svc.cluster.local', 'cluster.local'];
    options = ['ndots:5'];
  } else if (policy === 'Default') {
    // The node's resolver: in the lab, the router (which forwards nothing) stands for it.
    nameservers = [ADDRESS_PLAN.router];
  }
  const dc = pod.spec.dnsConfig;
  if (dc) {
    nameservers = [...nameservers, ...(dc.nameservers ?? [])];
    searches = [...searches, ...(dc.searches ?? [])];
    for (const o of dc.options ?? []) {
      options = options.filter((x) => x.split(':')[0] !== o.name);
      options.push(o.value !== undefined ? `${o.name}:${o.value}` : o.name);
    }
  }
  for (const n of nameservers.slice(0, 3)) lines.push(`nameserver ${n}`);
  if (searches.length > 0) lines.push(`search ${searches.slice(0, 32).join(' ')}`);
  if (options.length > 0) lines.push(`options ${options.join(' ')}`);
  return lines.join('\n') + '\n';
}

export class Kubelet {
  private readonly pods = new Map<string, PodState>();
  private readonly cfg: RuntimeConfig;
  private readonly store: KubeletStore;
  private readonly log: KubeletLog;

  constructor(cfg: RuntimeConfig, store: KubeletStore, log: KubeletLog) {
    this.cfg = cfg;
    this.store = store;
    this.log = log;
  }

  /** Releases what a previous kubelet of this node left behind: sandboxes of pods that are gone. */
  async collectGarbage(valid: PodObject[]): Promise<void> {
    await cniGc(
      this.cfg,
      valid.map((p) => ({ containerID: p.metadata.uid, ifname: 'eth0' })),
    ).catch((err) => this.log.error('CNI GC failed', { error: describe(err) }));
  }

  async run(signal: AbortSignal): Promise<void> {
    await this.store.watchPods(
      this.cfg.node,
      (pod) => void this.sync(pod).catch((err) => this.log.error('pod sync failed', { pod: key(pod), error: describe(err) })),
      (pod) => void this.teardown(pod.metadata.uid).catch((err) => this.log.error('pod teardown failed', { pod: key(pod), error: describe(err) })),
      signal,
    );
  }

  async stopAll(): Promise<void> {
    // On shutdown the pods keep running (as containers outlive a kubelet restart); only timers stop.
    for (const st of this.pods.values()) {
      clearInterval(st.probeTimer);
      for (const c of st.containers) clearTimeout(c.backoffTimer);
    }
  }

  async sync(pod: PodObject): Promise<void> {
    const uid = pod.metadata.uid;
    const existing = this.pods.get(uid);
    if (pod.metadata.deletionTimestamp) {
      await this.teardown(uid, pod);
      await this.store.removePod(pod);
      return;
    }
    if (existing) {
      existing.pod = pod;
      return;
    }
    const netns = podNetns(this.cfg.lab, uid);
    const st: PodState = { pod, netns, containers: pod.spec.containers.map((spec) => ({ spec, restarts: 0, ready: false, probeOk: 0, probeFail: 0 })), phase: 'Pending', stopping: false };
    this.pods.set(uid, st);
    try {
      if (await this.adopt(st)) {
        await this.report(st);
        this.startProbes(st);
        return;
      }
      await run('ip', ['netns', 'add', netns]).catch(async (err) => {
        // A sandbox left by an earlier kubelet of this node: reuse it only if it is empty.
        if (!/File exists/.test(describe(err))) throw err;
      });
      await run('ip', ['-n', netns, 'link', 'set', 'lo', 'up']);
      const result = await cniAdd(this.cfg, this.attachment(pod, netns));
      st.cniResult = result;
      st.ip = String(result?.ips?.[0]?.address ?? '').split('/')[0];
      writeResolvConf(netns, resolvConfFor(pod));
      const extraEnv = (await this.store.serviceEnv?.(pod)) ?? {};
      for (const c of st.containers) this.startOne(st, c, extraEnv);
      st.phase = 'Running';
      this.log.info('pod started', { pod: key(pod), ip: st.ip, netns });
    } catch (err) {
      st.phase = 'Failed';
      st.reason = 'SandboxFailed';
      st.message = describe(err);
      this.log.error('pod sandbox failed', { pod: key(pod), error: st.message });
    }
    await this.report(st);
    this.startProbes(st);
  }

  /**
   * Takes over a pod whose sandbox an earlier kubelet of this node made (this kubelet
   * restarted): its network stays as it is (a second CNI ADD would be refused, and would
   * break the pod's connections if it were not), its containers that still run are watched
   * by PID, the others start again. False when there is no attached sandbox to take over.
   */
  private async adopt(st: PodState): Promise<boolean> {
    const nsPath = `/var/run/netns/${st.netns}`;
    if (!existsSync(nsPath)) return false;
    let ip: string | undefined;
    try {
      const { stdout } = await run('ip', ['-n', st.netns, '-j', '-4', 'addr', 'show', 'dev', 'eth0']);
      ip = (JSON.parse(stdout) as Array<{ addr_info?: Array<{ local: string; scope?: string }> }>)[0]?.addr_info?.find((a) => a.scope === 'global')?.local;
    } catch {
      return false; // No eth0: a sandbox an earlier kubelet did not finish; made again.
    }
    if (!ip) return false;
    st.ip = ip;
    const nsInode = netnsInode(nsPath);
    const extraEnv = (await this.store.serviceEnv?.(st.pod)) ?? {};
    for (const c of st.containers) {
      const prev = (st.pod.status?.containerStatuses ?? []).find((x: any) => x.name === c.spec.name);
      c.restarts = prev?.restartCount ?? 0;
      let pid = 0;
      try {
        pid = Number(readFileSync(this.pidFile(st.pod, c), 'utf8'));
      } catch {
        // Never started, or by a kubelet that kept no PID file.
      }
      if (pid > 0 && isAlive(pid) && nsInode !== undefined && netnsInode(`/proc/${pid}/ns/net`) === nsInode) {
        c.startedAt = prev?.state?.running?.startedAt ?? new Date().toISOString();
        c.ready = prev?.ready === true;
        c.env = this.containerEnv(st, c, extraEnv);
        this.watch(st, c, new AdoptedProcess(pid), extraEnv);
      } else {
        this.startOne(st, c, extraEnv);
      }
    }
    st.phase = 'Running';
    this.log.info('pod adopted', { pod: key(st.pod), ip, netns: st.netns });
    return true;
  }

  private pidFile(pod: PodObject, c: ContainerState): string {
    return join(this.cfg.dir, 'pods', `${pod.metadata.namespace}_${pod.metadata.name}`, `${c.spec.name}.pid`);
  }

  private attachment(pod: PodObject, netns: string) {
    return {
      containerId: pod.metadata.uid,
      netnsPath: `/var/run/netns/${netns}`,
      ifName: 'eth0',
      args: `IgnoreUnknown=1;K8S_POD_NAMESPACE=${pod.metadata.namespace};K8S_POD_NAME=${pod.metadata.name};K8S_POD_INFRA_CONTAINER_ID=${pod.metadata.uid}`,
    };
  }

  /** The container's environment: the pod's identity, service links, then its own `env`. */
  private containerEnv(st: PodState, c: ContainerState, extraEnv: Record<string, string>): Record<string, string> {
    const pod = st.pod;
    const env: Record<string, string> = {
      PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
      HOSTNAME: pod.spec.hostname ?? pod.metadata.name,
      POD_NAME: pod.metadata.name,
      POD_NAMESPACE: pod.metadata.namespace,
      POD_IP: st.ip ?? '',
      NODE_NAME: this.cfg.node,
      ...extraEnv,
    };
    for (const e of c.spec.env ?? []) if (e.value !== undefined) env[e.name] = String(e.value);
    return env;
  }

  private startOne(st: PodState, c: ContainerState, extraEnv: Record<string, string>): void {
    const pod = st.pod;
    const env = this.containerEnv(st, c, extraEnv);
    c.env = env;
    const argv = containerArgv(c.spec, this.cfg.cli);
    const log = join(this.cfg.dir, 'pods', `${pod.metadata.namespace}_${pod.metadata.name}`, `${c.spec.name}.log`);
    const missing = missingExecutable(argv[0] ?? '', env.PATH ?? '');
    if (missing) {
      // As a real runtime reports a failed exec at start: the container never runs (and so
      // is never Ready for a moment), its log says why, and it is retried with back-off.
      mkdirSync(dirname(log), { recursive: true });
      appendFileSync(log, `${missing}\n`);
      c.startedAt = new Date().toISOString();
      this.exited(st, c, 127, null, extraEnv);
      return;
    }
    const proc = startContainer(st.netns, argv, env, log);
    c.startedAt = new Date().toISOString();
    // For a restarted kubelet, which takes the running containers over (adopt).
    if (proc.pid !== undefined) writeFileSync(this.pidFile(pod, c), String(proc.pid));
    this.watch(st, c, proc, extraEnv);
  }

  /** Follows a container process: its exit, the restart policy, the back-off. */
  private watch(st: PodState, c: ContainerState, proc: ChildProcess | AdoptedProcess, extraEnv: Record<string, string>): void {
    const pod = st.pod;
    c.proc = proc;
    proc.once('error', (err: Error) => {
      c.lastExit = { exitCode: 127, signal: null, finishedAt: new Date().toISOString() };
      st.message = `container ${c.spec.name}: ${err.message}`;
    });
    proc.once('exit', (code: number | null, signal: NodeJS.Signals | null) => this.exited(st, c, code, signal, extraEnv));
  }

  /** A container ended (or could not start): the restart policy, the back-off, the pod's phase. */
  private exited(st: PodState, c: ContainerState, code: number | null, signal: NodeJS.Signals | null, extraEnv: Record<string, string>): void {
    const pod = st.pod;
    c.proc = undefined;
    c.ready = false;
    c.lastExit = { exitCode: code, signal, finishedAt: new Date().toISOString() };
    if (st.stopping) return;
    const policy = pod.spec.restartPolicy ?? 'Always';
    const failed = code !== 0;
    if (policy === 'Always' || (policy === 'OnFailure' && failed)) {
      // Back off like the kubelet: 1 s, 2 s, 4 s … capped at 30 s here (300 s there).
      const delay = Math.min(30_000, 1000 * 2 ** Math.min(c.restarts, 5));
      c.restarts++;
      c.backoffTimer = setTimeout(() => {
        if (!st.stopping) this.startOne(st, c, extraEnv);
        void this.report(st);
      }, delay);
    } else if (st.containers.every((x) => !x.proc)) {
      st.phase = st.containers.every((x) => x.lastExit?.exitCode === 0) ? 'Succeeded' : 'Failed';
    }
    this.log.info('container exited', { pod: key(pod), container: c.spec.name, code, signal, restarts: c.restarts });
    void this.report(st);
  }

  private startProbes(st: PodState): void {
    const period = Math.min(...st.containers.map((c) => (c.spec.readinessProbe?.periodSeconds ?? 1) * 1000), 10_000);
    const tick = async (): Promise<void> => {
      if (st.stopping || !st.ip) return;
      let changed = false;
      for (const c of st.containers) {
        const probe = c.spec.readinessProbe;
        let ready: boolean;
        if (!c.proc) ready = false;
        else if (!probe) ready = true;
        else {
          const started = c.startedAt ? Date.parse(c.startedAt) : Date.now();
          if (Date.now() - started < (probe.initialDelaySeconds ?? 0) * 1000) continue;
          const ok = await probeOnce(probe, st.ip, st.netns, c.spec, c.env);
          if (ok) {
            c.probeOk++;
            c.probeFail = 0;
          } else {
            c.probeFail++;
            c.probeOk = 0;
          }
          ready = c.ready;
          if (c.probeOk >= (probe.successThreshold ?? 1)) ready = true;
          if (c.probeFail >= (probe.failureThreshold ?? 3)) ready = false;
        }
        if (ready !== c.ready) {
          c.ready = ready;
          changed = true;
        }
      }
      if (changed) await this.report(st);
    };
    void tick();
    st.probeTimer = setInterval(() => void tick().catch(() => undefined), period);
  }

  /** Writes the pod's status if it changed. */
  private async report(st: PodState): Promise<void> {
    const now = new Date().toISOString();
    const allReady = st.phase === 'Running' && st.containers.every((c) => c.ready);
    const containerStatuses = st.containers.map((c) => {
      let state: Record<string, unknown>;
      if (c.proc) state = { running: { startedAt: c.startedAt } };
      else if (c.backoffTimer && c.lastExit) state = { waiting: { reason: 'CrashLoopBackOff', message: `exit code ${c.lastExit.exitCode ?? c.lastExit.signal}` } };
      else if (c.lastExit) state = { terminated: { exitCode: c.lastExit.exitCode ?? 137, reason: c.lastExit.exitCode === 0 ? 'Completed' : 'Error', finishedAt: c.lastExit.finishedAt } };
      else state = { waiting: { reason: st.phase === 'Failed' ? st.reason ?? 'Error' : 'ContainerCreating' } };
      return { name: c.spec.name, ready: c.ready, restartCount: c.restarts, started: Boolean(c.proc), state, image: c.spec.image ?? '' };
    });
    const status: Record<string, unknown> = {
      phase: st.phase,
      hostIP: undefined,
      conditions: [
        { type: 'PodScheduled', status: 'True' },
        { type: 'Initialized', status: 'True' },
        { type: 'ContainersReady', status: allReady ? 'True' : 'False' },
        { type: 'Ready', status: allReady ? 'True' : 'False' },
      ],
      containerStatuses,
    };
    if (st.ip) {
      status.podIP = st.ip;
      status.podIPs = [{ ip: st.ip }];
    }
    if (st.message) status.message = st.message;
    if (st.reason) status.reason = st.reason;
    const k = JSON.stringify(status);
    if (k === st.statusKey) return;
    st.statusKey = k;
    (status.conditions as Array<Record<string, unknown>>).forEach((c) => (c.lastTransitionTime = now));
    try {
      await this.store.updatePodStatus(st.pod, status);
    } catch (err) {
      // Not written: forget it so that a later report writes it again, and retry soon, or a
      // pod whose Ready write failed (etcd busy) would stay not-Ready for good.
      if (st.statusKey === k) st.statusKey = undefined;
      this.log.error('status update failed; retrying', { pod: key(st.pod), error: describe(err) });
      if (!st.stopping) setTimeout(() => void this.report(st), 1000).unref();
    }
  }

  /** Stops the pod's processes, detaches it from the network and removes its sandbox. */
  async teardown(uid: string, pod?: PodObject): Promise<void> {
    const st = this.pods.get(uid);
    const p = st?.pod ?? pod;
    if (!p) return;
    const netns = st?.netns ?? podNetns(this.cfg.lab, uid);
    if (st) {
      st.stopping = true;
      clearInterval(st.probeTimer);
      const grace = (p.spec.terminationGracePeriodSeconds ?? 2) * 1000;
      for (const c of st.containers) {
        clearTimeout(c.backoffTimer);
        if (c.proc?.pid) killGroup(c.proc.pid, 'SIGTERM');
      }
      const deadline = Date.now() + grace;
      while (Date.now() < deadline && st.containers.some((c) => c.proc)) await new Promise((r) => setTimeout(r, 50));
      for (const c of st.containers) if (c.proc?.pid) killGroup(c.proc.pid, 'SIGKILL');
    }
    // Anything else still inside the sandbox belongs to the pod.
    const { stdout } = await run('ip', ['netns', 'pids', netns]).catch(() => ({ stdout: '' }));
    for (const pid of stdout.split(/\s+/).filter(Boolean)) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        // Gone.
      }
    }
    await cniDel(this.cfg, this.attachment(p, netns), st?.cniResult).catch((err) => this.log.error('CNI DEL failed', { pod: key(p), error: describe(err) }));
    await run('ip', ['netns', 'del', netns]).catch(() => undefined);
    removeResolvConf(netns);
    this.pods.delete(uid);
    this.log.info('pod removed', { pod: key(p) });
  }

  running(): string[] {
    return [...this.pods.keys()];
  }
}

function killGroup(pid: number, sig: NodeJS.Signals): void {
  try {
    // Containers are started detached: their process group holds whatever they spawned.
    process.kill(-pid, sig);
  } catch {
    try {
      process.kill(pid, sig);
    } catch {
      // Gone.
    }
  }
}

function key(pod: PodObject): string {
  return `${pod.metadata.namespace}/${pod.metadata.name}`;
}
