/**
 * UDP conntrack cleanup. A UDP "connection" lives in conntrack for as long as packets keep
 * coming, and its NAT was decided on the first packet, so a client that keeps talking (a DNS
 * resolver with a fixed source port, a metrics agent) would keep sending to a removed endpoint
 * for ever, or keep reaching nothing after a service got its first endpoint. kube-proxy
 * deletes those entries after each sync; so does this planner's output:
 *
 *   endpoint E no longer usable   conntrack -D -p udp --orig-dst <svc addr> --orig-port-dst <port> --reply-src <E>
 *                                  (every cluster/external/LB address) and, for a NodePort,
 *                                  conntrack -D -p udp --orig-port-dst <nodePort> --reply-src <E>
 *   service went from no usable   conntrack -D -p udp --orig-dst <svc addr> --orig-port-dst <port>
 *   endpoint to some               conntrack -D -p udp --orig-port-dst <nodePort>
 *
 * Pure: returns argument arrays for `conntrack`, deduplicated, in a stable order. TCP needs
 * none of this (a removed endpoint's connections fail and clients reconnect).
 */
import { layoutService } from './layout.ts';
import type { ServiceChange, ServicePortState } from './tracker.ts';

function usableSet(state: ServicePortState | undefined): Map<string, string> {
  const out = new Map<string, string>();
  if (!state) return out;
  for (const e of layoutService(state.service, state.endpoints).endpoints) out.set(`${e.ip}|${e.port}`, e.ip);
  return out;
}

function familyArgs(addr: string): string[] {
  return addr.includes(':') ? ['-f', 'ipv6'] : [];
}

export function planConntrackCleanup(changes: readonly ServiceChange[]): string[][] {
  const out: string[][] = [];
  const seen = new Set<string>();
  const push = (args: string[]) => {
    const k = args.join(' ');
    if (seen.has(k)) return;
    seen.add(k);
    out.push(args);
  };
  for (const ch of changes) {
    const prev = ch.previous;
    const cur = ch.current;
    const svc = (cur ?? prev)?.service;
    if (!svc) continue;
    const before = usableSet(prev);
    const after = usableSet(cur);
    // Entries made through the old service's addresses lead to the removed endpoints.
    if (prev && prev.service.protocol === 'UDP') {
      const p = prev.service;
      const addrs = [...p.clusterIPs, ...p.externalIPs, ...p.loadBalancerIPs];
      const stillThere = cur && cur.service.protocol === 'UDP' ? after : new Map<string, string>();
      const removedIPs = [...new Set([...before].filter(([k]) => !stillThere.has(k)).map(([, ip]) => ip))];
      for (const ip of removedIPs) {
        for (const a of addrs) push([...familyArgs(a), '-D', '-p', 'udp', '--orig-dst', a, '--orig-port-dst', String(p.port), '--reply-src', ip]);
        if (p.nodePort !== undefined) push([...familyArgs(ip), '-D', '-p', 'udp', '--orig-port-dst', String(p.nodePort), '--reply-src', ip]);
      }
    }
    // Entries made while the service had nothing to DNAT to were never NATed.
    if (cur && cur.service.protocol === 'UDP' && after.size > 0 && (before.size === 0 || prev?.service.protocol !== 'UDP')) {
      const c = cur.service;
      for (const a of [...c.clusterIPs, ...c.externalIPs, ...c.loadBalancerIPs]) {
        push([...familyArgs(a), '-D', '-p', 'udp', '--orig-dst', a, '--orig-port-dst', String(c.port)]);
      }
      if (c.nodePort !== undefined) push([...familyArgs(c.clusterIPs[0] ?? ''), '-D', '-p', 'udp', '--orig-port-dst', String(c.nodePort)]);
    }
  }
  return out;
}
