/**
 * The lab's container runtime: what containerd + the kubelet do for a pod on a real node,
 * done with namespaces and processes.
 *
 * - Sandbox: a network namespace `pnl.<lab>.p.<pod-uid>`, connected by running the node's CNI
 *   conflist exactly as libcni does (each plugin in order, the previous result handed on as
 *   `prevResult`; DEL in reverse order; GC with the valid attachments at start).
 * - Containers: each container's command/args run as processes inside the pod's namespace
 *   through `ip netns exec`, which also bind-mounts /etc/netns/<ns>/resolv.conf over
 *   /etc/resolv.conf, so the pod's processes see the pod's own resolv.conf (as the kubelet
 *   writes it). The host's file system is shared; `image` only picks a built-in helper when
 *   a container has no command.
 * - Probes: tcpSocket and httpGet are tried from the node namespace (where the runtime runs),
 *   exec runs inside the pod's namespace.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { accessSync, constants, mkdirSync, openSync, closeSync, readFileSync, rmSync, statSync, writeFileSync, existsSync, readdirSync } from 'node:fs';
import { request } from 'node:http';
import { connect } from 'node:net';
import { join } from 'node:path';
import { run, runPluginIn, type PluginRun } from '../kernel/index.ts';
import { LabError } from './plan.ts';

export interface RuntimeConfig {
  lab: string;
  node: string;
  /** The node's namespace name (the runtime runs there; the plugins too). */
  nodeNetns: string;
  cniBin: string;
  cniConfDir: string;
  /** Per-node state: pod logs. */
  dir: string;
  /** The podnet CLI bundle, for built-in images. */
  cli: string;
  /** Extra environment for the plugins (e.g. PODNET_CNI_SOCKET for the warm server). */
  pluginEnv?: Record<string, string>;
}

export interface CniNetwork {
  cniVersion: string;
  name: string;
  plugins: Array<Record<string, unknown>>;
}

export function podNetns(lab: string, uid: string): string {
  return `pnl.${lab}.p.${uid.slice(0, 13)}`;
}

/** The conflist the agent wrote (the first *.conflist in lexical order, as libcni picks it). */
export function loadConflist(dir: string): CniNetwork {
  const files = existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.conflist')).sort() : [];
  if (files.length === 0) throw new LabError('PODNET_NO_CNI_CONFIG', `no CNI network configuration in ${dir} yet: the node's agent writes it once the node has a subnet`);
  const net = JSON.parse(readFileSync(join(dir, files[0]!), 'utf8')) as CniNetwork;
  if (!Array.isArray(net.plugins) || net.plugins.length === 0) throw new LabError('PODNET_BAD_CNI_CONFIG', `${files[0]} has no plugins`);
  return net;
}

export interface Attachment {
  containerId: string;
  netnsPath: string;
  ifName: string;
  args: string;
}

async function invoke(cfg: RuntimeConfig, net: CniNetwork, plugin: Record<string, unknown>, command: string, att: Attachment | undefined, prevResult?: unknown, extra: Record<string, unknown> = {}): Promise<PluginRun> {
  const conf = { ...plugin, cniVersion: net.cniVersion, name: net.name, ...extra } as Record<string, unknown>;
  if (prevResult !== undefined) conf.prevResult = prevResult;
  const env: Record<string, string> = { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', CNI_COMMAND: command, CNI_PATH: cfg.cniBin, ...(cfg.pluginEnv ?? {}) };
  if (att) {
    env.CNI_CONTAINERID = att.containerId;
    env.CNI_NETNS = att.netnsPath;
    env.CNI_IFNAME = att.ifName;
    env.CNI_ARGS = att.args;
  }
  const type = String(plugin.type ?? '');
  if (!/^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/.test(type)) throw new LabError('PODNET_BAD_CNI_CONFIG', `plugin type "${type}" is not a plugin name`);
  // The runtime already runs in the node's namespace: no netns switch for the plugin itself.
  return runPluginIn(cfg.nodeNetns, join(cfg.cniBin, type), env, JSON.stringify(conf));
}

function cniFailure(what: string, out: PluginRun): LabError {
  const msg = out.json?.msg ? `${out.json.msg}${out.json.details ? ` (${out.json.details})` : ''} [CNI error ${out.json.code}]` : out.stderr.trim() || `exit ${out.code}`;
  return new LabError('PODNET_CNI_FAILED', `${what}: ${msg}`);
}

/** ADD through the whole conflist; on failure, DEL of what was added. Returns the final result. */
export async function cniAdd(cfg: RuntimeConfig, att: Attachment): Promise<any> {
  const net = loadConflist(cfg.cniConfDir);
  let prev: unknown;
  for (const p of net.plugins) {
    const out = await invoke(cfg, net, p, 'ADD', att, prev);
    if (out.code !== 0) {
      await cniDel(cfg, att, prev).catch(() => undefined);
      throw cniFailure(`CNI ADD (${String(p.type)})`, out);
    }
    prev = out.json;
  }
  return prev;
}

/** DEL through the conflist in reverse; every plugin is asked even if one fails. */
export async function cniDel(cfg: RuntimeConfig, att: Attachment, prevResult?: unknown): Promise<void> {
  const net = loadConflist(cfg.cniConfDir);
  const errors: string[] = [];
  for (const p of [...net.plugins].reverse()) {
    const out = await invoke(cfg, net, p, 'DEL', att, prevResult);
    if (out.code !== 0) errors.push(cniFailure(`CNI DEL (${String(p.type)})`, out).message);
  }
  if (errors.length > 0) throw new LabError('PODNET_CNI_FAILED', errors.join('; '));
}

/** GC: every attachment not in `valid` is released by the plugins. */
export async function cniGc(cfg: RuntimeConfig, valid: Array<{ containerID: string; ifname: string }>): Promise<void> {
  const net = loadConflist(cfg.cniConfDir);
  if (net.cniVersion !== '1.1.0') return; // GC is a 1.1.0 verb.
  for (const p of net.plugins) await invoke(cfg, net, p, 'GC', undefined, undefined, { 'cni.dev/valid-attachments': valid });
}

export interface ContainerSpec {
  name: string;
  image?: string;
  command?: Array<string | number>;
  args?: Array<string | number>;
  env?: Array<{ name: string; value?: string }>;
  readinessProbe?: Probe;
}

export interface Probe {
  tcpSocket?: { port: number | string };
  httpGet?: { port: number | string; path?: string };
  exec?: { command: string[] };
  initialDelaySeconds?: number;
  periodSeconds?: number;
  timeoutSeconds?: number;
  failureThreshold?: number;
  successThreshold?: number;
}

/**
 * Built-in images for containers without a command. Everything else runs the host's programs.
 * - `podnet/echo` (also any image whose name contains "echo", "http" or "nginx"): an HTTP
 *   server on $PORT (default 8080, 80 for nginx) answering with the pod's name and address.
 * - anything else: `sleep infinity`.
 */
export function containerArgv(c: ContainerSpec, cli: string): string[] {
  const cmd = (c.command ?? []).map(String);
  const args = (c.args ?? []).map(String);
  if (cmd.length > 0) return [...cmd, ...args];
  const image = c.image ?? '';
  if (/echo|http|nginx/.test(image)) return [process.execPath, cli, 'serve-echo', ...args];
  if (args.length > 0) return args;
  return ['sleep', 'infinity'];
}

/**
 * Why `cmd` cannot be executed (the runtime's "executable file not found" before it starts
 * anything), or undefined when it can: a path must name an executable file, a bare name
 * must be found in `path` (the container's PATH).
 */
export function missingExecutable(cmd: string, path: string): string | undefined {
  const executable = (file: string): boolean => {
    try {
      accessSync(file, constants.X_OK);
      return statSync(file).isFile();
    } catch {
      return false;
    }
  };
  if (cmd === '') return 'exec: no command given';
  if (cmd.includes('/')) return executable(cmd) ? undefined : `exec: "${cmd}": ${existsSync(cmd) ? 'not an executable file' : 'no such file or directory'}`;
  if (path.split(':').some((dir) => dir !== '' && executable(join(dir, cmd)))) return undefined;
  return `exec: "${cmd}": executable file not found in $PATH (${path})`;
}

export function resolvConfPath(netns: string): string {
  return `/etc/netns/${netns}/resolv.conf`;
}

export function writeResolvConf(netns: string, text: string): void {
  mkdirSync(`/etc/netns/${netns}`, { recursive: true });
  writeFileSync(resolvConfPath(netns), text);
}

export function removeResolvConf(netns: string): void {
  rmSync(`/etc/netns/${netns}`, { recursive: true, force: true });
}

/** Starts one container's process in the pod's namespace; output goes to `log`. */
export function startContainer(netns: string, argv: string[], env: Record<string, string>, log: string): ChildProcess {
  mkdirSync(join(log, '..'), { recursive: true });
  const fd = openSync(log, 'a');
  try {
    const child = spawn('ip', ['netns', 'exec', netns, ...argv], { env, stdio: ['ignore', fd, fd], detached: true });
    // Containers outlive their kubelet (as under containerd): they must not keep a stopping
    // kubelet alive, which then hung on SIGTERM until it was killed.
    child.unref();
    return child;
  } finally {
    closeSync(fd);
  }
}

function resolvePort(port: number | string, c: { ports?: Array<{ name?: string; containerPort: number }> }): number {
  if (typeof port === 'number') return port;
  const named = c.ports?.find((p) => p.name === port);
  if (named) return named.containerPort;
  const n = Number(port);
  if (Number.isInteger(n)) return n;
  throw new LabError('PODNET_BAD_PROBE', `probe port "${port}" is not a number or a named container port`);
}

/**
 * One probe attempt: true when it passes. An exec probe runs in the pod's namespace with the
 * container's environment `env` (as a kubelet runs it inside the container), so a probe can
 * say `test -f /tmp/ready-$POD_NAME`.
 */
export async function probeOnce(probe: Probe, podIP: string, netns: string, container: { ports?: Array<{ name?: string; containerPort: number }> }, env?: Record<string, string>): Promise<boolean> {
  const timeoutMs = (probe.timeoutSeconds ?? 1) * 1000;
  if (probe.tcpSocket) {
    const port = resolvePort(probe.tcpSocket.port, container);
    return new Promise((resolve) => {
      const s = connect({ host: podIP, port, timeout: timeoutMs });
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('timeout', () => {
        s.destroy();
        resolve(false);
      });
      s.once('error', () => resolve(false));
    });
  }
  if (probe.httpGet) {
    const port = resolvePort(probe.httpGet.port, container);
    return new Promise((resolve) => {
      const req = request({ host: podIP, port, path: probe.httpGet!.path ?? '/', timeout: timeoutMs }, (res) => {
        res.resume();
        resolve((res.statusCode ?? 0) >= 200 && (res.statusCode ?? 0) < 400);
      });
      req.once('timeout', () => {
        req.destroy();
        resolve(false);
      });
      req.once('error', () => resolve(false));
      req.end();
    });
  }
  if (probe.exec) {
    try {
      const withEnv = env ? ['env', '-i', '--', ...Object.entries(env).map(([k, v]) => `${k}=${v}`)] : [];
      await run('ip', ['netns', 'exec', netns, ...withEnv, ...probe.exec.command.map(String)], { timeoutMs });
      return true;
    } catch {
      return false;
    }
  }
  return true;
}
