/**
 * podnet-bridge: the CNI main plugin that joins a pod to its node through a Linux bridge,
 * a drop-in for the reference `bridge` plugin (same configuration fields).
 *
 * What ADD does is what the tutorials do by hand: a veth pair with one end in the pod as
 * `eth0`, the other on the bridge; the pod's address and routes; the gateway address on the
 * bridge. It is planned as plain lists of `ip` batch lines (see plan*), and applied by two
 * `ip -batch` processes: one on the node side, which creates the pair already on the bridge
 * and up, with its pod end made directly in the pod's namespace, and then one inside the
 * pod's namespace for the pod end's addresses and routes. Both processes are started before
 * the IPAM work and wait for their lines, so their start-up (most of what they cost) overlaps
 * it and each other. Each side effect registers its undo; a failure runs them in reverse, so
 * a failed ADD leaves no veth, no lease and no masquerade entry behind.
 *
 * Design notes:
 * - The host-side veth name is derived from container ID and interface name, so DEL needs
 *   no state and no pod namespace: deleting the host end removes the pair, and GC can find
 *   veths on the bridge that no valid attachment accounts for.
 * - Both MAC addresses are chosen here and set at creation, so the result needs no read-back.
 * - The pod's namespace is opened once, here, and the node-side ip(8) names it through this
 *   process's descriptor (`netns /proc/<pid>/fd/<n>`): no path from the runtime ever becomes
 *   a word of a batch line. (Nothing else in the plugins depends on the process: the earlier
 *   `netns <process.pid>` for the node end is gone with the pair now made on the node side.)
 * - The node-side batches go through startIpBatch(): in podnet cni-server that is one
 *   long-running ip(8) (kernel/ip-session.ts), so a warm call starts only the pod-side one.
 * - When the IPAM type is podnet-ipam, its code runs in this process instead of a second
 *   executable; any other IPAM (the reference host-local, say) is executed as the spec says.
 */
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, openSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { CniCode, CniError, invalidConfig } from './errors.ts';
import type { CniPlugin } from './skel.ts';
import type { Attachment, CniArgs, CniDNS, CniInterface, CniResult, CniRoute, NetConf } from './types.ts';
import { parseResult } from './version.ts';
import { delegate } from './delegate.ts';
import { ipamAdd, ipamCheck, ipamDel, ipamGc, ipamStatus } from '../ipam/index.ts';
import { CommandError, type StartedCommand, isValidIfName, run, start, startIpBatch } from '../kernel/index.ts';
import { type Family, formatIP, formatPrefix, parsePrefix } from '../netaddr/index.ts';
import { type MasqEntry, planMasq } from './masq.ts';

export interface BridgeConf extends NetConf {
  bridge: string;
  isGateway: boolean;
  isDefaultGateway: boolean;
  forceAddress: boolean;
  ipMasq: boolean;
  mtu?: number;
  hairpinMode: boolean;
  promiscMode: boolean;
  portIsolation: boolean;
  enableDad: boolean;
  disableContainerInterface: boolean;
  /** A MAC for the pod's interface asked for by the runtime (runtimeConfig.mac, args, CNI_ARGS MAC). */
  mac?: string;
  ipamType: string;
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const MAC = /^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$/;

function bool(raw: Record<string, unknown>, key: string): boolean {
  const v = raw[key];
  if (v === undefined || v === null) return false;
  if (typeof v !== 'boolean') throw invalidConfig(`"${key}" must be true or false, not ${JSON.stringify(v)}`);
  return v;
}

export function parseBridgeConf(raw: Record<string, unknown>, args: CniArgs | undefined): BridgeConf {
  const bridge = raw.bridge ?? 'cni0';
  if (typeof bridge !== 'string' || !isValidIfName(bridge)) throw invalidConfig(`"bridge" ${JSON.stringify(bridge)} is not a valid interface name`);
  if (!isObj(raw.ipam) || typeof raw.ipam.type !== 'string' || raw.ipam.type === '') {
    throw invalidConfig('"ipam" with a "type" is required (podnet-bridge does not run without address management)');
  }
  if (!/^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/.test(raw.ipam.type)) throw invalidConfig(`ipam type "${raw.ipam.type}" is not a plugin name`);
  // Fields of the reference plugin that podnet does not implement: say so rather than ignore them.
  for (const key of ['vlan', 'vlanTrunk', 'macspoofchk'] as const) {
    const v = raw[key];
    if (v !== undefined && v !== null && v !== 0 && v !== false && !(Array.isArray(v) && v.length === 0)) {
      throw new CniError(CniCode.UnsupportedField, `unsupported field "${key}": ${JSON.stringify(v)}`, 'podnet-bridge does not implement VLANs or MAC spoof checking');
    }
  }
  if (raw.ipMasqBackend !== undefined && raw.ipMasqBackend !== 'nftables') {
    throw new CniError(CniCode.UnsupportedField, `unsupported field "ipMasqBackend": ${JSON.stringify(raw.ipMasqBackend)}`, 'podnet-bridge masquerades with nftables only');
  }
  let mtu: number | undefined;
  if (raw.mtu !== undefined && raw.mtu !== 0) {
    if (typeof raw.mtu !== 'number' || !Number.isInteger(raw.mtu) || raw.mtu < 68 || raw.mtu > 65535) {
      throw invalidConfig(`"mtu" must be a whole number from 68 to 65535, not ${JSON.stringify(raw.mtu)}`);
    }
    mtu = raw.mtu;
  }
  const isDefaultGateway = bool(raw, 'isDefaultGateway');
  let mac: string | undefined;
  const rc = raw.runtimeConfig;
  const a = raw.args;
  const candidates = [
    isObj(rc) ? rc.mac : undefined,
    isObj(a) && isObj(a.cni) ? a.cni.mac : undefined,
    args?.args.get('MAC'),
  ];
  for (const m of candidates) {
    if (m === undefined || m === '') continue;
    if (typeof m !== 'string' || !MAC.test(m)) throw invalidConfig(`requested MAC ${JSON.stringify(m)} is not a MAC address`);
    mac = m.toLowerCase();
    break;
  }
  const conf: BridgeConf = {
    ...(raw as NetConf),
    bridge,
    isGateway: bool(raw, 'isGateway') || isDefaultGateway,
    isDefaultGateway,
    forceAddress: bool(raw, 'forceAddress'),
    ipMasq: bool(raw, 'ipMasq'),
    hairpinMode: bool(raw, 'hairpinMode'),
    promiscMode: bool(raw, 'promiscMode'),
    portIsolation: bool(raw, 'portIsolation'),
    enableDad: bool(raw, 'enabledad'),
    disableContainerInterface: bool(raw, 'disableContainerInterface'),
    ipamType: raw.ipam.type,
  };
  // Set or cleared explicitly: the spread of `raw` above would otherwise carry an unchecked
  // "mtu": 0 (written as `mtu 0`) or a top-level "mac" (which the reference plugin ignores).
  if (mtu !== undefined) conf.mtu = mtu;
  else delete conf.mtu;
  if (mac !== undefined) conf.mac = mac;
  else delete conf.mac;
  return conf;
}

/** The node-side veth name: stable for a container and interface, 15 characters. */
export function hostVethName(containerId: string, ifName: string): string {
  return 'pnv' + createHash('sha256').update(`${containerId}\0${ifName}`).digest('hex').slice(0, 12);
}

export function randomMac(): string {
  const b = randomBytes(6);
  // Locally administered, unicast.
  b[0] = ((b[0] ?? 0) & 0xfe) | 0x02;
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');
}

interface Addr {
  address: string; // with prefix length
  family: Family;
  gateway?: string;
}

export interface AddPlan {
  /** `ip -batch` lines run in the node namespace first: the bridge, and the pair made on it. */
  node: string[];
  /** `ip -batch` lines run inside the pod namespace after the node side: addresses, routes. */
  pod: string[];
  routes: CniRoute[];
}

/**
 * Pure: the ip(8) batch lines of an ADD, from config, IPAM result and names. `podNetns` is
 * how the node-side ip(8) names the pod's namespace (a path; add() gives /proc/<pid>/fd/<n>).
 */
export function planAdd(
  conf: BridgeConf,
  ipam: CniResult,
  names: { ifName: string; hostVeth: string; containerMac: string; hostMac: string; podNetns: string },
): AddPlan {
  const mtu = conf.mtu !== undefined ? ` mtu ${conf.mtu}` : '';
  const addrs: Addr[] = (ipam.ips ?? []).map((ipc) => {
    const { ip } = parsePrefix(ipc.address, false);
    const a: Addr = { address: ipc.address, family: ip.family };
    if (ipc.gateway) a.gateway = ipc.gateway;
    return a;
  });
  const pod: string[] = [];
  for (const a of addrs) pod.push(`addr add ${a.address} dev ${names.ifName}${a.family === 6 && !conf.enableDad ? ' nodad' : ''}`);
  if (!conf.disableContainerInterface) pod.push(`link set ${names.ifName} up`);
  const routes: CniRoute[] = (ipam.routes ?? []).map((r) => ({ ...r }));
  if (conf.isDefaultGateway) {
    for (const a of addrs) {
      const dst = a.family === 4 ? '0.0.0.0/0' : '::/0';
      if (a.gateway && !routes.some((r) => r.dst === dst)) routes.push({ dst, gw: a.gateway });
    }
  }
  if (!conf.disableContainerInterface) {
    for (const r of routes) {
      const fam = parsePrefix(r.dst, false).ip.family;
      const gw = r.gw ?? addrs.find((a) => a.family === fam)?.gateway;
      let line = `route add ${r.dst}${gw ? ` via ${gw}` : ''} dev ${names.ifName}`;
      if (r.mtu) line += ` mtu ${r.mtu}`;
      if (r.advmss) line += ` advmss ${r.advmss}`;
      if (r.priority) line += ` metric ${r.priority}`;
      if (r.table) line += ` table ${r.table}`;
      pod.push(line);
    }
  }
  const node = [`link set ${conf.bridge} up`];
  if (conf.promiscMode) node.push(`link set ${conf.bridge} promisc on`);
  if (conf.isGateway) {
    for (const a of addrs) {
      if (!a.gateway) continue;
      const bits = parsePrefix(a.address, false).prefix.bits;
      node.push(`addr replace ${a.gateway}/${bits} dev ${conf.bridge}${a.family === 6 ? ' nodad' : ''}`);
    }
  }
  // One step makes the pair: the node end on the bridge and up, the pod end in the pod.
  node.push(
    `link add ${names.hostVeth} address ${names.hostMac}${mtu} master ${conf.bridge} up type veth peer name ${names.ifName} address ${names.containerMac}${mtu} netns ${names.podNetns}`,
  );
  if (conf.hairpinMode) node.push(`link set dev ${names.hostVeth} type bridge_slave hairpin on`);
  if (conf.portIsolation) node.push(`link set dev ${names.hostVeth} type bridge_slave isolated on`);
  node.push(`link show ${conf.bridge}`);
  return { node, pod, routes };
}

/** Interfaces present in this process's network namespace (/proc/net/dev is per namespace). */
function linkExists(name: string): boolean {
  const text = readFileSync('/proc/net/dev', 'utf8');
  return text.split('\n').some((line) => line.trimStart().startsWith(`${name}:`));
}

async function ensureBridge(conf: BridgeConf): Promise<void> {
  if (linkExists(conf.bridge)) return;
  const mtu = conf.mtu !== undefined ? ['mtu', String(conf.mtu)] : [];
  try {
    // An explicit MAC: otherwise the bridge takes the lowest MAC of its ports and changes it as
    // pods come and go, and every pod's gateway ARP entry goes stale.
    await run('ip', ['link', 'add', conf.bridge, 'address', randomMac(), ...mtu, 'type', 'bridge']);
  } catch (err) {
    // Another ADD may have made it a moment ago: that is fine.
    if (!(err instanceof CommandError && /File exists/.test(err.stderr))) throw err;
  }
}

function enableForwarding(families: Set<Family>): void {
  const paths = [...families].map((f) => (f === 4 ? '/proc/sys/net/ipv4/ip_forward' : '/proc/sys/net/ipv6/conf/all/forwarding'));
  for (const p of paths) {
    if (readFileSync(p, 'utf8').trim() !== '1') writeFileSync(p, '1');
  }
}

async function ipamCall(cmd: 'ADD' | 'DEL' | 'CHECK' | 'STATUS' | 'GC', args: CniArgs, conf: BridgeConf, valid: Attachment[] = []): Promise<CniResult | undefined> {
  if (conf.ipamType === 'podnet-ipam') {
    switch (cmd) {
      case 'ADD':
        return ipamAdd(conf, args);
      case 'DEL':
        ipamDel(conf, args);
        return undefined;
      case 'CHECK':
        ipamCheck(conf, args);
        return undefined;
      case 'STATUS':
        ipamStatus(conf);
        return undefined;
      case 'GC':
        ipamGc(conf, valid);
        return undefined;
    }
  }
  const out = await delegate(conf.ipamType, cmd, args);
  return out === undefined ? undefined : parseResult(out);
}

function masqEntries(conf: BridgeConf, ips: string[]): MasqEntry[] {
  return ips.map((address) => {
    const { ip, prefix } = parsePrefix(address, false);
    return { ip: formatIP(ip), subnet: formatPrefix(prefix), family: ip.family };
  });
}

async function applyMasq(conf: BridgeConf, entries: MasqEntry[], op: 'add' | 'delete'): Promise<void> {
  if (entries.length === 0) return;
  await run('nft', ['-f', '-'], { input: planMasq(conf.name, entries, op) });
}

async function add(args: CniArgs, conf: BridgeConf): Promise<CniResult> {
  // The pod's namespace, opened once: the node-side ip(8) makes the pod end of the pair in it.
  let podNs = -1;
  try {
    podNs = openSync(args.netns, 'r');
  } catch {
    throw new CniError(CniCode.InvalidEnvironment, `CNI_NETNS ${args.netns} does not exist`);
  }
  const undo: Array<() => Promise<unknown>> = [];
  // Started processes not yet given their lines: finished empty on the way out if need be.
  const started = new Set<StartedCommand>();
  const finish = (c: StartedCommand, lines: string[]): Promise<{ stdout: string }> => {
    started.delete(c);
    return c.finish(lines.length > 0 ? lines.join('\n') + '\n' : '');
  };
  try {
    await ensureBridge(conf);
    // Both ip(8) batches start now and wait for their lines while IPAM runs.
    const node = startIpBatch();
    started.add(node);
    const pod = start('ip', ['-batch', '-'], { netns: args.netns });
    started.add(pod);
    const ipam = await ipamCall('ADD', args, conf);
    undo.push(() => ipamCall('DEL', args, conf));
    if (!ipam || !ipam.ips || ipam.ips.length === 0) throw new CniError(CniCode.Internal, `IPAM plugin ${conf.ipamType} returned no addresses`);
    const names = {
      ifName: args.ifName,
      hostVeth: hostVethName(args.containerId, args.ifName),
      containerMac: conf.mac ?? randomMac(),
      hostMac: randomMac(),
      // This process as /proc numbers it (process.pid may differ, in a PID namespace without its own /proc).
      podNetns: `/proc/${readlinkSync('/proc/self')}/fd/${podNs}`,
    };
    const plan = planAdd(conf, ipam, names);
    const families = new Set(ipam.ips.map((i) => parsePrefix(i.address, false).ip.family));
    if (conf.isGateway) enableForwarding(families);
    let stdout: string;
    try {
      ({ stdout } = await finish(node, plan.node));
    } catch (err) {
      // Lines after the one that made the pair may have failed: then the pair exists and must go.
      await run('ip', ['link', 'del', names.hostVeth]).catch(() => undefined);
      const create = plan.node.findIndex((l) => l.startsWith('link add ')) + 1;
      if (err instanceof CommandError && /File exists/.test(err.stderr) && new RegExp(`failed -:${create}\\b`).test(err.stderr)) {
        throw new CniError(CniCode.InvalidConfig, `interface ${args.ifName} already exists in ${args.netns}, or ${names.hostVeth} on the node`);
      }
      throw err;
    }
    undo.push(() => run('ip', ['link', 'del', names.hostVeth]));
    await finish(pod, plan.pod);
    const bridgeInfo = JSON.parse(stdout.trim().split('\n').pop() ?? '[]') as Array<{ address?: string }>;
    if (conf.ipMasq) {
      const entries = masqEntries(conf, ipam.ips.map((i) => i.address));
      await applyMasq(conf, entries, 'add');
      undo.push(() => applyMasq(conf, entries, 'delete'));
    }
    const interfaces: CniInterface[] = [
      { name: conf.bridge, mac: bridgeInfo[0]?.address ?? '' },
      { name: names.hostVeth, mac: names.hostMac },
      { name: args.ifName, mac: names.containerMac, sandbox: args.netns },
    ];
    if (conf.mtu !== undefined) for (const i of interfaces.slice(1)) i.mtu = conf.mtu;
    const dns: CniDNS | undefined = conf.dns && Object.keys(conf.dns).length > 0 ? conf.dns : ipam.dns;
    const result: CniResult = {
      cniVersion: conf.cniVersion,
      interfaces,
      ips: ipam.ips.map((i) => ({ ...i, interface: 2 })),
      routes: plan.routes,
    };
    if (dns) result.dns = dns;
    return result;
  } catch (err) {
    for (const c of started) await c.finish('').catch(() => undefined);
    for (const u of undo.reverse()) await u().catch(() => undefined);
    throw err;
  } finally {
    if (podNs >= 0) closeSync(podNs);
  }
}

async function del(args: CniArgs, conf: BridgeConf): Promise<void> {
  // Addresses for the masquerade clean-up: the previous result knows them, and so does our IPAM.
  let ips: string[] = [];
  if (conf.ipMasq && conf.prevResult !== undefined) {
    try {
      ips = (parseResult(conf.prevResult).ips ?? []).map((i) => i.address);
    } catch {
      ips = [];
    }
  }
  // Removing the node end removes the pair, wherever the pod end is (or if its namespace is
  // gone). Started first: the kernel takes longest over it, and the leases go meanwhile.
  const unlink = startIpBatch().finish(`link del ${hostVethName(args.containerId, args.ifName)}\n`);
  if (conf.ipamType === 'podnet-ipam') {
    const released = ipamDel(conf, args);
    if (ips.length === 0) ips = released.map((ip) => `${ip}/${ip.includes(':') ? 128 : 32}`);
  } else {
    await ipamCall('DEL', args, conf);
  }
  try {
    await unlink;
  } catch (err) {
    if (!(err instanceof CommandError && /Cannot find device|does not exist/.test(err.stderr))) throw err;
  }
  if (conf.ipMasq && ips.length > 0) await applyMasq(conf, masqEntries(conf, ips), 'delete');
}

interface IpAddrJson {
  ifname?: string;
  master?: string;
  operstate?: string;
  addr_info?: Array<{ local: string; prefixlen: number }>;
}

async function check(args: CniArgs, conf: BridgeConf): Promise<void> {
  if (conf.prevResult === undefined) throw invalidConfig('CHECK needs a prevResult');
  const prev = parseResult(conf.prevResult);
  await ipamCall('CHECK', args, conf);
  const hostVeth = hostVethName(args.containerId, args.ifName);
  let podLinks: IpAddrJson[];
  try {
    podLinks = JSON.parse((await run('ip', ['-j', 'addr', 'show', 'dev', args.ifName], { netns: args.netns })).stdout) as IpAddrJson[];
  } catch {
    throw new CniError(CniCode.CheckFailed, `interface ${args.ifName} is missing in ${args.netns}`);
  }
  const have = new Set((podLinks[0]?.addr_info ?? []).map((a) => `${a.local}/${a.prefixlen}`));
  for (const ipc of prev.ips ?? []) {
    const { ip, prefix } = parsePrefix(ipc.address, false);
    const want = `${formatIP(ip)}/${prefix.bits}`;
    if (!have.has(want)) throw new CniError(CniCode.CheckFailed, `interface ${args.ifName} in ${args.netns} lacks address ${want}`);
  }
  let hostLinks: IpAddrJson[];
  try {
    hostLinks = JSON.parse((await run('ip', ['-j', 'link', 'show', 'dev', hostVeth])).stdout) as IpAddrJson[];
  } catch {
    throw new CniError(CniCode.CheckFailed, `node-side veth ${hostVeth} of container ${args.containerId} is missing`);
  }
  if (hostLinks[0]?.master !== conf.bridge) {
    throw new CniError(CniCode.CheckFailed, `node-side veth ${hostVeth} is not attached to bridge ${conf.bridge}`);
  }
}

async function gc(args: CniArgs, conf: BridgeConf, valid: Attachment[]): Promise<void> {
  await ipamCall('GC', args, conf, valid);
  // Veths of ours on this bridge that no valid attachment accounts for.
  const keep = new Set(valid.map((a) => hostVethName(a.containerID, a.ifname)));
  let links: IpAddrJson[] = [];
  try {
    links = JSON.parse((await run('ip', ['-j', 'link', 'show', 'master', conf.bridge])).stdout) as IpAddrJson[];
  } catch {
    return; // No bridge, nothing to collect.
  }
  const stale = links.map((l) => l.ifname ?? '').filter((n) => /^pnv[0-9a-f]{12}$/.test(n) && !keep.has(n));
  if (stale.length > 0) await run('ip', ['-force', '-batch', '-'], { input: stale.map((n) => `link del ${n}`).join('\n') + '\n' }).catch(() => undefined);
}

async function status(args: CniArgs, conf: BridgeConf): Promise<void> {
  await ipamCall('STATUS', args, conf);
}

export const bridgePlugin: CniPlugin<BridgeConf> = {
  about: 'podnet-bridge: bridge CNI plugin (podnet)',
  parseConfig: parseBridgeConf,
  add,
  del,
  check,
  status,
  gc,
};
