/**
 * What the agent hands to the CNI plugins: the subnet file (the node's leased subnet and the
 * pod MTU, read by podnet-ipam on every ADD) and the conflist the runtime loads.
 *
 * Both are written atomically: the whole text goes to a temporary file in the same directory,
 * is flushed, and is renamed over the old one, so a plugin or a runtime that reads at any
 * instant sees either the old file or the new, never half of one. A file whose content is
 * already right is not rewritten, because runtimes watch their configuration directory and
 * reload on every change.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { assertIfName } from '../kernel/index.ts';
import { parseSubnet } from '../netaddr/index.ts';
import { SpecError } from './spec.ts';

/** Writes `text` to `path` atomically; returns false (and writes nothing) if it is already there. */
export async function writeFileAtomic(path: string, text: string, mode = 0o644): Promise<boolean> {
  const old = await readFile(path, 'utf8').catch(() => undefined);
  if (old === text) return false;
  const dir = dirname(path);
  await mkdir(dir, { recursive: true });
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    const fh = await open(tmp, 'wx', mode);
    try {
      await fh.writeFile(text);
      await fh.datasync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  return true;
}

export interface SubnetFileContent {
  /** The cluster's pod network (clusterCIDR). */
  network: string;
  /** This node's pod subnet. */
  subnet: string;
  /** The pod MTU (ApplyResult.podMTU). */
  mtu: number;
}

function checkMTU(mtu: number): void {
  if (!Number.isInteger(mtu) || mtu < 68 || mtu > 65535) throw new SpecError(`MTU ${mtu} is not in 68-65535`);
}

/** Pure: the subnet file's text, `{"network": …, "subnet": …, "mtu": …}`. */
export function renderSubnetFile(c: SubnetFileContent): string {
  parseSubnet(c.network);
  parseSubnet(c.subnet);
  checkMTU(c.mtu);
  return JSON.stringify({ network: c.network, subnet: c.subnet, mtu: c.mtu }, null, 2) + '\n';
}

/** Writes the subnet file for podnet-ipam (`ipam.subnetFile`); true if it changed. */
export function writeSubnetFile(path: string, c: SubnetFileContent): Promise<boolean> {
  return writeFileAtomic(path, renderSubnetFile(c));
}

export interface ConflistOptions {
  /** The pod MTU (ApplyResult.podMTU). */
  mtu: number;
  /** Where the agent writes the subnet file. */
  subnetFile: string;
  /** podnet-ipam's lease directory (default /var/lib/cni/networks, as host-local's). */
  dataDir?: string;
  /** The network name (default podnet). */
  name?: string;
  /** The conflist's CNI version (default 1.0.0, the newest podman 4.3 and containerd 1.6 know). */
  cniVersion?: string;
  /** The node's pod bridge (default cni0). */
  bridge?: string;
  /** Chain the reference portmap plugin for hostPort (default true). */
  portmap?: boolean;
}

/**
 * Pure: the conflist. Pods hang on bridge cni0, whose address (.1 of the node subnet) is
 * their default gateway. The bridge plugin's own ipMasq stays off: the agent masquerades
 * egress for the whole cluster CIDR in one place (masq.ts), which the plugin cannot do, as
 * it only knows the node's subnet and would NAT pod-to-pod traffic across nodes. Hairpin
 * mode lets a pod reach itself through a Service address.
 */
export function planConflist(o: ConflistOptions): Record<string, unknown> {
  checkMTU(o.mtu);
  const bridge = o.bridge ?? 'cni0';
  assertIfName(bridge, 'bridge name');
  const ipam: Record<string, unknown> = { type: 'podnet-ipam', subnetFile: o.subnetFile };
  if (o.dataDir !== undefined) ipam.dataDir = o.dataDir;
  const plugins: Record<string, unknown>[] = [
    {
      type: 'podnet-bridge',
      bridge,
      isGateway: true,
      isDefaultGateway: true,
      hairpinMode: true,
      ipMasq: false,
      mtu: o.mtu,
      ipam,
    },
  ];
  if (o.portmap !== false) plugins.push({ type: 'portmap', capabilities: { portMappings: true } });
  return { cniVersion: o.cniVersion ?? '1.0.0', name: o.name ?? 'podnet', plugins };
}

/** Writes the conflist (e.g. /etc/cni/net.d/10-podnet.conflist); true if it changed. */
export function writeConflist(path: string, o: ConflistOptions): Promise<boolean> {
  return writeFileAtomic(path, JSON.stringify(planConflist(o), null, 2) + '\n');
}
