/**
 * The iptables planner: the same behaviour as the nftables planner (the decisions come from
 * the same `layoutService`), written as `iptables-restore` input, for kernels without
 * nftables NAT and as the benchmark baseline. The shape is kube-proxy's iptables mode:
 *
 *   nat PREROUTING, OUTPUT  → PODNET-SERVICES   one rule per service address and port
 *                                                 (a linear list: the cost nftables' maps avoid),
 *                                                 then LOCAL destinations → PODNET-NODEPORTS
 *   PODNET-SVC-… / PODNET-SVL-…   [-m recent --rcheck (affinity)], -m statistic --mode random
 *                                 --probability 1/n, 1/(n-1), …, last unconditional
 *   PODNET-EXT-…                  masquerade / short-circuit, as the nft ext- chain
 *   PODNET-SEP-…                  hairpin and remote masquerade marks, [-m recent --set], DNAT
 *   nat POSTROUTING → PODNET-POSTROUTING   marked packets → MASQUERADE --random-fully
 *   filter INPUT, FORWARD, OUTPUT (ctstate NEW) → PODNET-EP-CHECK   REJECT / DROP
 *
 * It is applied with `iptables-restore --noflush`: only chains declared in the input
 * (every one starts with PODNET-) are flushed and refilled; other chains are never named.
 * The jumps from the built-in chains cannot be part of a --noflush restore (they would be
 * appended again on every sync), so they are returned separately, to be ensured with
 * `iptables -C` / `-I`. Stale PODNET- service chains (found by pattern in `iptables-save`)
 * are declared (emptied) and deleted with -X in the same restore.
 */
import { formatPrefix, parseSubnet } from '../netaddr/index.ts';
import { layoutService } from './layout.ts';
import { IPT_PREFIX, IPT_SERVICE_CHAIN_PATTERN, iptEndpointChain, iptServiceChain } from './names.ts';
import { type EndpointInfo, type EndpointsMap, MASQ_MARK, type NodeContext, type ServiceInfo, type ServicePortMap, hostPort } from './types.ts';

export const IPT_SERVICES = `${IPT_PREFIX}SERVICES`;
export const IPT_NODEPORTS = `${IPT_PREFIX}NODEPORTS`;
export const IPT_POSTROUTING = `${IPT_PREFIX}POSTROUTING`;
export const IPT_MARK_MASQ = `${IPT_PREFIX}MARK-MASQ`;
export const IPT_EP_CHECK = `${IPT_PREFIX}EP-CHECK`;

export type IptTable = 'nat' | 'filter';

export interface IptJump {
  table: IptTable;
  /** A built-in chain. */
  chain: string;
  /** The rule's arguments (after `-A CHAIN`). */
  rule: string[];
}

export interface IptablesPlan {
  /** iptables-restore --noflush input. */
  restore: string;
  /** Jumps from built-in chains, to ensure with `-C` then `-I` (see the module comment). */
  jumps: IptJump[];
  counts: { chains: number; rules: number; staleChains: number };
}

const MARK = `0x${MASQ_MARK.toString(16)}`;

export function iptablesJumps(): IptJump[] {
  const portals = ['-m', 'comment', '--comment', 'podnet service portals', '-j', IPT_SERVICES];
  const check = ['-m', 'conntrack', '--ctstate', 'NEW', '-m', 'comment', '--comment', 'podnet service endpoints check', '-j', IPT_EP_CHECK];
  return [
    { table: 'nat', chain: 'PREROUTING', rule: portals },
    { table: 'nat', chain: 'OUTPUT', rule: portals },
    { table: 'nat', chain: 'POSTROUTING', rule: ['-m', 'comment', '--comment', 'podnet postrouting rules', '-j', IPT_POSTROUTING] },
    { table: 'filter', chain: 'INPUT', rule: check },
    { table: 'filter', chain: 'FORWARD', rule: check },
    { table: 'filter', chain: 'OUTPUT', rule: check },
  ];
}

/** One argument as iptables-restore reads it (quoted when it has spaces). */
function arg(a: string): string {
  return /^[A-Za-z0-9_./:!,=+-]+$/.test(a) ? a : `"${a.replace(/(["\\])/g, '\\$1')}"`;
}

class Chains {
  readonly order: string[] = [];
  readonly rules = new Map<string, string[][]>();

  chain(name: string): void {
    if (!this.rules.has(name)) {
      this.order.push(name);
      this.rules.set(name, []);
    }
  }

  add(name: string, ...args: string[]): void {
    this.chain(name);
    this.rules.get(name)!.push(args);
  }
}

/** Pure: the restore input and the built-in jumps for a whole model. */
export function planIptables(
  services: ServicePortMap,
  endpoints: EndpointsMap,
  node: NodeContext,
  existing: { nat: readonly string[]; filter: readonly string[] } = { nat: [], filter: [] },
): IptablesPlan {
  const v6 = node.family === 6;
  const host = v6 ? '/128' : '/32';
  const cidr = formatPrefix(parseSubnet(node.clusterCIDR));
  const loopback = v6 ? '::1/128' : '127.0.0.0/8';
  const nat = new Chains();
  const filter = new Chains();
  for (const c of [IPT_SERVICES, IPT_NODEPORTS, IPT_POSTROUTING, IPT_MARK_MASQ]) nat.chain(c);
  filter.chain(IPT_EP_CHECK);
  nat.add(IPT_MARK_MASQ, '-j', 'MARK', '--or-mark', MARK);
  nat.add(IPT_POSTROUTING, '-m', 'mark', '!', '--mark', `${MARK}/${MARK}`, '-j', 'RETURN');
  nat.add(IPT_POSTROUTING, '-j', 'MARK', '--xor-mark', MARK);
  nat.add(IPT_POSTROUTING, '-m', 'comment', '--comment', 'podnet service traffic requiring SNAT', '-j', 'MASQUERADE', '--random-fully');

  const sorted = [...services.values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  const nodePortRules: string[][] = [];
  for (const svc of sorted) {
    const eps = endpoints.get(svc.key) ?? [];
    const L = layoutService(svc, eps);
    const p = svc.protocol.toLowerCase();
    const svcChain = iptServiceChain('SVC', svc);
    const svlChain = iptServiceChain('SVL', svc);
    const extChain = iptServiceChain('EXT', svc);
    const affinity = svc.sessionAffinity === 'ClientIP';
    const sep = new Map<EndpointInfo, string>();
    for (const ep of L.endpoints) {
      const name = iptEndpointChain(svc, ep);
      sep.set(ep, name);
      const c = ['-m', 'comment', '--comment', svc.key];
      nat.add(name, '-s', `${ep.ip}${host}`, ...c, '-j', IPT_MARK_MASQ);
      if (!ep.isLocal) nat.add(name, '!', '-s', cidr, ...c, '-j', IPT_MARK_MASQ);
      nat.add(name, '-p', p, ...c, ...(affinity ? ['-m', 'recent', '--name', name, '--set', '--mask', v6 ? 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff' : '255.255.255.255', '--rsource'] : []), '-m', p, '-j', 'DNAT', '--to-destination', hostPort(ep.ip, ep.port));
    }
    const policy = (chain: string, list: readonly EndpointInfo[]) => {
      nat.chain(chain);
      if (affinity) {
        for (const ep of list) {
          nat.add(chain, '-m', 'comment', '--comment', `${svc.key} -> ${hostPort(ep.ip, ep.port)}`, '-m', 'recent', '--name', sep.get(ep)!, '--rcheck', '--seconds', String(svc.affinityTimeoutSeconds), '--reap', '-j', sep.get(ep)!);
        }
      }
      list.forEach((ep, i) => {
        const stat = i < list.length - 1 ? ['-m', 'statistic', '--mode', 'random', '--probability', (1 / (list.length - i)).toFixed(10)] : [];
        nat.add(chain, '-m', 'comment', '--comment', `${svc.key} -> ${hostPort(ep.ip, ep.port)}`, ...stat, '-j', sep.get(ep)!);
      });
    };
    if (L.usesCluster) policy(svcChain, L.cluster);
    if (L.usesLocal) policy(svlChain, L.local);

    const match = (ip: string) => ['-d', `${ip}${host}`, '-p', p];
    const portMatch = ['-m', p, '--dport', String(svc.port)];
    const rejectArgs = svc.protocol === 'TCP' ? ['-j', 'REJECT', '--reject-with', 'tcp-reset'] : ['-j', 'REJECT'];
    const verdictArgs = (v: 'reject' | 'drop') => (v === 'reject' ? rejectArgs : ['-j', 'DROP']);
    for (const ip of svc.clusterIPs) {
      const c = ['-m', 'comment', '--comment', `${svc.key} cluster IP`];
      if (L.internal.verdict === 'endpoints') nat.add(IPT_SERVICES, ...match(ip), ...c, ...portMatch, '-j', L.internal.set === 'local' ? svlChain : svcChain);
      else filter.add(IPT_EP_CHECK, ...match(ip), ...c, ...portMatch, ...verdictArgs(L.internal.verdict));
    }
    const ext = L.external;
    if (ext) {
      const addrs = [...svc.externalIPs.map((ip) => [ip, 'external IP'] as const), ...svc.loadBalancerIPs.map((ip) => [ip, 'load balancer IP'] as const)];
      const nodePort = svc.nodePort !== undefined ? ['-p', p, '-m', 'comment', '--comment', `${svc.key} node port`, '-m', p, '--dport', String(svc.nodePort)] : undefined;
      const localDst = ['!', '-d', loopback, '-m', 'addrtype', '--dst-type', 'LOCAL'];
      if (ext.verdict === 'reject') {
        for (const [ip, what] of addrs) filter.add(IPT_EP_CHECK, ...match(ip), '-m', 'comment', '--comment', `${svc.key} ${what} has no endpoints`, ...portMatch, ...rejectArgs);
        if (nodePort) filter.add(IPT_EP_CHECK, ...localDst, ...nodePort, ...rejectArgs);
      } else {
        nat.chain(extChain);
        if (ext.policy === 'Cluster') {
          nat.add(extChain, '!', '-s', cidr, '-m', 'comment', '--comment', `masquerade traffic to ${svc.key} from outside the cluster`, '-j', IPT_MARK_MASQ);
          nat.add(extChain, '-j', svcChain);
        } else {
          nat.add(extChain, '-s', cidr, '-m', 'comment', '--comment', 'pod traffic goes to any endpoint', '-j', svcChain);
          nat.add(extChain, '-m', 'addrtype', '--src-type', 'LOCAL', '-m', 'comment', '--comment', 'masquerade traffic from the node', '-j', IPT_MARK_MASQ);
          nat.add(extChain, '-m', 'addrtype', '--src-type', 'LOCAL', '-m', 'comment', '--comment', 'node traffic goes to any endpoint', '-j', svcChain);
          if (ext.verdict === 'endpoints') nat.add(extChain, '-j', svlChain);
        }
        for (const [ip, what] of addrs) {
          nat.add(IPT_SERVICES, ...match(ip), '-m', 'comment', '--comment', `${svc.key} ${what}`, ...portMatch, '-j', extChain);
          if (ext.verdict === 'drop') filter.add(IPT_EP_CHECK, ...match(ip), '-m', 'comment', '--comment', `${svc.key} ${what} has no local endpoints`, ...portMatch, '-j', 'DROP');
        }
        if (nodePort) {
          nodePortRules.push([...nodePort, '-j', extChain]);
          if (ext.verdict === 'drop') filter.add(IPT_EP_CHECK, ...localDst, ...nodePort, '-j', 'DROP');
        }
      }
    }
  }
  nat.add(IPT_SERVICES, '!', '-d', loopback, '-m', 'addrtype', '--dst-type', 'LOCAL', '-m', 'comment', '--comment', 'podnet node ports; this must be the last rule', '-j', IPT_NODEPORTS);
  for (const r of nodePortRules) nat.add(IPT_NODEPORTS, ...r);

  const stale = {
    nat: existing.nat.filter((c) => IPT_SERVICE_CHAIN_PATTERN.test(c) && !nat.rules.has(c)),
    filter: existing.filter.filter((c) => IPT_SERVICE_CHAIN_PATTERN.test(c) && !filter.rules.has(c)),
  };
  const lines: string[] = [];
  let rules = 0;
  const emit = (table: IptTable, chains: Chains, old: readonly string[]) => {
    lines.push(`*${table}`);
    for (const c of [...chains.order, ...old]) lines.push(`:${c} - [0:0]`);
    for (const c of chains.order) {
      for (const r of chains.rules.get(c)!) lines.push(['-A', c, ...r].map(arg).join(' '));
      rules += chains.rules.get(c)!.length;
    }
    for (const c of old) lines.push(`-X ${c}`);
    lines.push('COMMIT');
  };
  emit('nat', nat, stale.nat);
  emit('filter', filter, stale.filter);
  return {
    restore: lines.join('\n') + '\n',
    jumps: iptablesJumps(),
    counts: { chains: nat.order.length + filter.order.length, rules, staleChains: stale.nat.length + stale.filter.length },
  };
}

/** The chain names in `iptables-save` output. */
export function parseSaveChains(save: string): string[] {
  const out: string[] = [];
  for (const line of save.split('\n')) {
    const m = /^:(\S+) /.exec(line);
    if (m) out.push(m[1]!);
  }
  return out;
}
