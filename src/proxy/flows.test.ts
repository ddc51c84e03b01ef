/**
 * Packet-flow tests, kube-proxy style: the fixture cluster is planned for each node, in
 * each mode (nftables — with either endpoint dispatch — through the fake nft, iptables
 * through the fake iptables-restore),
 * and every packet of the table below is traced through the result. Both modes must agree
 * with the table, so they agree with each other.
 *
 * `output` lists the DNAT targets a packet may get (the random choice explored), or
 * ACCEPT (untouched), DROP, REJECT; `masq` is true/false, or the targets that are
 * masqueraded when that depends on the choice.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeNft } from './fake-nft.ts';
import { type NodeName, fixtureModel, localAddresses } from './fixtures.ts';
import { IptablesTracer, applyRestore, emptyIptables } from './iptables-tracer.ts';
import { planIptables } from './iptables.ts';
import { planNftables } from './nftables.ts';
import { NftTracer, type TraceOutcome, type TracePacket, seededRandom, summarize } from './tracer.ts';
import { PROXY_TABLE } from './types.ts';

interface FlowCase {
  name: string;
  node: NodeName;
  src: string;
  proto: 'tcp' | 'udp' | 'sctp';
  dst: string;
  port: number;
  /** Sent by the node itself. */
  local?: true;
  output: string;
  masq: boolean | string[];
}

const POD1 = '10.244.1.100';
const POD2 = '10.244.2.100';
const NODE1 = '192.168.1.11';
const NODE2 = '192.168.1.12';
const EXT = '203.0.113.10';

const WEB = '10.244.1.2:8080, 10.244.2.2:8080';
const NP = '10.244.1.3:8080, 10.244.2.3:8080';
const LB_LOCAL = '10.244.1.5:8080, 10.244.2.5:8080';

const cases: FlowCase[] = [
  // ClusterIP
  { name: 'ClusterIP from a pod on node1', node: 'node1', src: POD1, proto: 'tcp', dst: '10.96.0.10', port: 80, output: WEB, masq: false },
  { name: 'ClusterIP from a pod on node2', node: 'node2', src: POD2, proto: 'tcp', dst: '10.96.0.10', port: 80, output: WEB, masq: false },
  { name: 'ClusterIP from node1 itself: only the remote endpoint is masqueraded', node: 'node1', src: NODE1, proto: 'tcp', dst: '10.96.0.10', port: 80, local: true, output: WEB, masq: ['10.244.2.2:8080'] },
  { name: 'ClusterIP from node2 itself', node: 'node2', src: NODE2, proto: 'tcp', dst: '10.96.0.10', port: 80, local: true, output: WEB, masq: ['10.244.1.2:8080'] },
  { name: 'ClusterIP on a port it does not serve', node: 'node1', src: POD1, proto: 'tcp', dst: '10.96.0.10', port: 81, output: 'ACCEPT', masq: false },
  { name: 'ClusterIP from outside the cluster (a host routing to it)', node: 'node1', src: EXT, proto: 'tcp', dst: '10.96.0.10', port: 80, output: WEB, masq: ['10.244.2.2:8080'] },
  // NodePort
  { name: "NodePort on node1's address from outside", node: 'node1', src: EXT, proto: 'tcp', dst: NODE1, port: 30080, output: NP, masq: true },
  { name: "NodePort on node2's address from outside", node: 'node2', src: EXT, proto: 'tcp', dst: NODE2, port: 30080, output: NP, masq: true },
  { name: "NodePort on node1's bridge address", node: 'node1', src: EXT, proto: 'tcp', dst: '10.244.1.1', port: 30080, output: NP, masq: true },
  { name: 'NodePort from a pod to its own node: not masqueraded', node: 'node1', src: POD1, proto: 'tcp', dst: NODE1, port: 30080, output: NP, masq: false },
  { name: 'NodePort from node1 itself', node: 'node1', src: NODE1, proto: 'tcp', dst: NODE1, port: 30080, local: true, output: NP, masq: true },
  { name: "NodePort of another node's address passes node1 untouched", node: 'node1', src: EXT, proto: 'tcp', dst: NODE2, port: 30080, output: 'ACCEPT', masq: false },
  { name: 'NodePort on loopback is not served', node: 'node1', src: '127.0.0.1', proto: 'tcp', dst: '127.0.0.1', port: 30080, local: true, output: 'ACCEPT', masq: false },
  { name: 'the ClusterIP of a NodePort service', node: 'node1', src: POD1, proto: 'tcp', dst: '10.96.0.20', port: 80, output: NP, masq: false },
  // LoadBalancer, externalTrafficPolicy Cluster
  { name: 'LoadBalancer IP from outside on node1 (remote endpoint)', node: 'node1', src: EXT, proto: 'tcp', dst: '192.168.1.200', port: 80, output: '10.244.2.4:8080', masq: true },
  { name: 'LoadBalancer IP from outside on node2 (local endpoint)', node: 'node2', src: EXT, proto: 'tcp', dst: '192.168.1.200', port: 80, output: '10.244.2.4:8080', masq: true },
  { name: 'LoadBalancer IP from a pod', node: 'node1', src: POD1, proto: 'tcp', dst: '192.168.1.200', port: 80, output: '10.244.2.4:8080', masq: false },
  { name: 'LoadBalancer NodePort from outside', node: 'node1', src: EXT, proto: 'tcp', dst: NODE1, port: 30081, output: '10.244.2.4:8080', masq: true },
  // externalTrafficPolicy Local
  { name: 'eTP Local LB from outside on node1: the local endpoint, client kept', node: 'node1', src: EXT, proto: 'tcp', dst: '192.168.1.201', port: 80, output: '10.244.1.5:8080', masq: false },
  { name: 'eTP Local LB from outside on node2: its local endpoint', node: 'node2', src: EXT, proto: 'tcp', dst: '192.168.1.201', port: 80, output: '10.244.2.5:8080', masq: false },
  { name: 'eTP Local NodePort from outside on node1', node: 'node1', src: EXT, proto: 'tcp', dst: NODE1, port: 30082, output: '10.244.1.5:8080', masq: false },
  { name: 'eTP Local LB from a pod: short-circuited to every endpoint', node: 'node1', src: POD1, proto: 'tcp', dst: '192.168.1.201', port: 80, output: LB_LOCAL, masq: false },
  { name: 'eTP Local LB from node1 itself: every endpoint, masqueraded', node: 'node1', src: NODE1, proto: 'tcp', dst: '192.168.1.201', port: 80, local: true, output: LB_LOCAL, masq: true },
  { name: 'eTP Local service, ClusterIP: every endpoint', node: 'node1', src: POD1, proto: 'tcp', dst: '10.96.0.31', port: 80, output: LB_LOCAL, masq: false },
  { name: 'eTP Local without a local endpoint: outside traffic dropped', node: 'node1', src: EXT, proto: 'tcp', dst: '192.168.1.202', port: 80, output: 'DROP', masq: false },
  { name: 'eTP Local without a local endpoint: NodePort dropped', node: 'node1', src: EXT, proto: 'tcp', dst: NODE1, port: 30083, output: 'DROP', masq: false },
  { name: 'eTP Local without a local endpoint: pods still get through', node: 'node1', src: POD1, proto: 'tcp', dst: '192.168.1.202', port: 80, output: '10.244.2.6:8080', masq: false },
  { name: 'eTP Local without a local endpoint: the node itself too', node: 'node1', src: NODE1, proto: 'tcp', dst: '192.168.1.202', port: 80, local: true, output: '10.244.2.6:8080', masq: true },
  { name: 'eTP Local: on node2 the endpoint is local', node: 'node2', src: EXT, proto: 'tcp', dst: '192.168.1.202', port: 80, output: '10.244.2.6:8080', masq: false },
  // externalIPs
  { name: 'externalIP from outside', node: 'node1', src: EXT, proto: 'tcp', dst: '192.168.1.210', port: 80, output: '10.244.1.7:8080', masq: true },
  { name: 'externalIP from outside on node2', node: 'node2', src: EXT, proto: 'tcp', dst: '192.168.1.210', port: 80, output: '10.244.1.7:8080', masq: true },
  { name: 'externalIP from a pod', node: 'node1', src: POD1, proto: 'tcp', dst: '192.168.1.210', port: 80, output: '10.244.1.7:8080', masq: false },
  // multi-port, UDP, SCTP
  { name: 'multi-port: http', node: 'node1', src: POD1, proto: 'tcp', dst: '10.96.0.50', port: 80, output: '10.244.1.8:8080, 10.244.2.8:8080', masq: false },
  { name: 'multi-port: https', node: 'node1', src: POD1, proto: 'tcp', dst: '10.96.0.50', port: 443, output: '10.244.1.8:8443, 10.244.2.8:8443', masq: false },
  { name: 'UDP port of a two-protocol service', node: 'node1', src: POD1, proto: 'udp', dst: '10.96.0.53', port: 53, output: '10.244.1.9:5353, 10.244.2.9:5353', masq: false },
  { name: 'TCP port of a two-protocol service', node: 'node2', src: POD2, proto: 'tcp', dst: '10.96.0.53', port: 53, output: '10.244.1.9:5353, 10.244.2.9:5353', masq: false },
  { name: 'a protocol the service does not serve', node: 'node1', src: POD1, proto: 'sctp', dst: '10.96.0.53', port: 53, output: 'ACCEPT', masq: false },
  { name: 'SCTP service', node: 'node1', src: POD1, proto: 'sctp', dst: '10.96.0.60', port: 9999, output: '10.244.2.10:9999', masq: false },
  { name: 'TCP to an SCTP service port', node: 'node1', src: POD1, proto: 'tcp', dst: '10.96.0.60', port: 9999, output: 'ACCEPT', masq: false },
  // affinity (a new client; the remembering is tested below)
  { name: 'ClientIP affinity: a new client may get any endpoint', node: 'node1', src: POD1, proto: 'tcp', dst: '10.96.0.70', port: 80, output: '10.244.1.11:8080, 10.244.2.11:8080', masq: false },
  // internalTrafficPolicy Local
  { name: 'iTP Local from a pod on node1: only the local endpoint', node: 'node1', src: POD1, proto: 'tcp', dst: '10.96.0.80', port: 80, output: '10.244.1.12:8080', masq: false },
  { name: 'iTP Local from a pod on node2', node: 'node2', src: POD2, proto: 'tcp', dst: '10.96.0.80', port: 80, output: '10.244.2.12:8080', masq: false },
  { name: 'iTP Local from node1 itself', node: 'node1', src: NODE1, proto: 'tcp', dst: '10.96.0.80', port: 80, local: true, output: '10.244.1.12:8080', masq: false },
  { name: 'iTP Local without a local endpoint: dropped', node: 'node1', src: POD1, proto: 'tcp', dst: '10.96.0.81', port: 80, output: 'DROP', masq: false },
  { name: 'iTP Local without a local endpoint: fine where there is one', node: 'node2', src: POD2, proto: 'tcp', dst: '10.96.0.81', port: 80, output: '10.244.2.13:8080', masq: false },
  // terminating endpoints
  { name: 'no ready endpoint: the serving terminating one is used', node: 'node1', src: POD1, proto: 'tcp', dst: '10.96.0.90', port: 80, output: '10.244.1.14:8080', masq: false },
  { name: 'a ready endpoint beats a terminating one', node: 'node1', src: POD1, proto: 'tcp', dst: '10.96.0.91', port: 80, output: '10.244.2.15:8080', masq: false },
  // no endpoints
  { name: 'no endpoints: TCP rejected', node: 'node1', src: POD1, proto: 'tcp', dst: '10.96.0.99', port: 80, output: 'REJECT', masq: false },
  { name: 'no endpoints: UDP rejected', node: 'node1', src: POD1, proto: 'udp', dst: '10.96.0.98', port: 53, output: 'REJECT', masq: false },
  { name: 'no endpoints: NodePort from outside rejected', node: 'node1', src: EXT, proto: 'tcp', dst: NODE1, port: 30099, output: 'REJECT', masq: false },
  { name: 'no endpoints: from the node itself rejected', node: 'node1', src: NODE1, proto: 'tcp', dst: '10.96.0.99', port: 80, local: true, output: 'REJECT', masq: false },
  { name: 'no endpoints: own NodePort from the node rejected', node: 'node1', src: NODE1, proto: 'tcp', dst: NODE1, port: 30099, local: true, output: 'REJECT', masq: false },
  // hairpin and plain pod traffic
  { name: 'hairpin: a pod reaching itself through the service is masqueraded', node: 'node1', src: '10.244.1.2', proto: 'tcp', dst: '10.96.0.10', port: 80, output: WEB, masq: ['10.244.1.2:8080'] },
  { name: 'hairpin on node2', node: 'node2', src: '10.244.2.2', proto: 'tcp', dst: '10.96.0.10', port: 80, output: WEB, masq: ['10.244.2.2:8080'] },
  { name: 'pod to pod on another node: untouched', node: 'node1', src: POD1, proto: 'tcp', dst: '10.244.2.2', port: 8080, output: 'ACCEPT', masq: false },
  { name: 'pod to pod on the same node: untouched', node: 'node1', src: POD1, proto: 'tcp', dst: '10.244.1.2', port: 8080, output: 'ACCEPT', masq: false },
  { name: 'pod to the internet: not the proxy’s business', node: 'node1', src: POD1, proto: 'tcp', dst: EXT, port: 443, output: 'ACCEPT', masq: false },
];

type Tracer = { trace(p: TracePacket): TraceOutcome[] };

function nftTracer(node: NodeName, random?: () => number, dispatch: 'rules' | 'vmap' = 'rules'): Tracer {
  const m = fixtureModel(node);
  const fake = new FakeNft();
  fake.apply(planNftables(m.services, m.endpoints, m.node, { dispatch }).script);
  return new NftTracer(fake.table('ip', PROXY_TABLE)!, { localAddresses: localAddresses(node), ...(random ? { random } : {}) });
}

function iptTracer(node: NodeName, random?: () => number): Tracer {
  const m = fixtureModel(node);
  const plan = planIptables(m.services, m.endpoints, m.node);
  let tables = applyRestore(emptyIptables(), plan.restore);
  // The built-in jumps, as the executor ensures them.
  for (const j of plan.jumps) tables[j.table].get(j.chain)!.unshift({ text: j.rule.join(' '), args: j.rule });
  tables = { ...tables };
  return new IptablesTracer(tables, { localAddresses: localAddresses(node), ...(random ? { random } : {}) });
}

const MODES: Array<[string, (n: NodeName, r?: () => number) => Tracer]> = [
  ['nftables', (n, r) => nftTracer(n, r)],
  ['nftables, vmap dispatch', (n, r) => nftTracer(n, r, 'vmap')],
  ['iptables', iptTracer],
];

for (const [mode, make] of MODES) {
  describe(`packet flows (${mode})`, () => {
    const tracers = { node1: make('node1'), node2: make('node2') };
    for (const c of cases) {
      test(c.name, () => {
        const outcomes = tracers[c.node].trace({ src: c.src, dst: c.dst, proto: c.proto, dport: c.port, ...(c.local ? { fromLocalNode: true } : {}) });
        assert.ok(outcomes.length > 0);
        assert.deepEqual(summarize(outcomes), { output: c.output, masq: c.masq }, JSON.stringify(outcomes.map((o) => o.matched), null, 1));
      });
    }

    test('ClientIP affinity: a client keeps its endpoint, another may get any', () => {
      const t = make('node1', seededRandom(7));
      const first = t.trace({ src: POD1, dst: '10.96.0.70', proto: 'tcp', dport: 80 });
      assert.equal(first.length, 1);
      const chosen = first[0]!.dnat;
      for (let seed = 0; seed < 20; seed++) {
        const again = t.trace({ src: POD1, dst: '10.96.0.70', proto: 'tcp', dport: 80 });
        assert.equal(again[0]!.dnat, chosen);
      }
      // A different client is free; over a few tries it sees both endpoints.
      const seen = new Set<string>();
      for (let i = 0; i < 40; i++) {
        const fresh = make('node1', seededRandom(100 + i));
        seen.add(fresh.trace({ src: `10.244.1.${150 + (i % 50)}`, dst: '10.96.0.70', proto: 'tcp', dport: 80 })[0]!.dnat!);
      }
      assert.deepEqual([...seen].sort(), ['10.244.1.11:8080', '10.244.2.11:8080']);
    });

    test('random choice is spread over the endpoints', () => {
      const t = make('node1', seededRandom(1));
      const counts = new Map<string, number>();
      for (let i = 0; i < 400; i++) {
        const d = t.trace({ src: POD1, dst: '10.96.0.50', proto: 'tcp', dport: 80 })[0]!.dnat!;
        counts.set(d, (counts.get(d) ?? 0) + 1);
      }
      assert.equal(counts.size, 2);
      for (const n of counts.values()) assert.ok(n > 140 && n < 260, `uneven split ${[...counts]}`);
    });
  });
}

describe('the trace names the rules a packet matched', () => {
  test('ClusterIP through the service-ips map to the service chain and its endpoint map; postrouting checks', () => {
    const [o] = nftTracer('node1', () => 0).trace({ src: POD1, dst: '10.96.0.10', proto: 'tcp', dport: 80 });
    const chains = o!.matched.map((m) => m.split(':')[0]);
    assert.deepEqual(chains.slice(0, 2), ['nat-prerouting', 'services']);
    assert.match(chains[2]!, /^svc-[A-Z2-7]{8}-default-web-http$/);
    assert.match(o!.matched[3]!, /^svc-\S+: meta l4proto tcp dnat ip addr \. port to numgen random mod 2 offset \d+ map @endpoints-tcp-\d+$/);
    assert.ok(o!.matched.includes('services: ip daddr . meta l4proto . th dport vmap @service-ips'));
    assert.ok(o!.matched.includes('masquerading: meta mark & 0x2000 == 0x2000 jump masquerade-check'));
    assert.equal(o!.dnat, '10.244.1.2:8080');
    assert.equal(o!.masquerade, false);
  });

  test('a rejected packet ends in reject-chain, reached from the filter hook', () => {
    const [o] = nftTracer('node1').trace({ src: POD1, dst: '10.96.0.99', proto: 'tcp', dport: 80 });
    assert.equal(o!.verdict, 'reject');
    assert.deepEqual(o!.matched.slice(-3), [
      'filter-forward: ct state new jump endpoints-check',
      'endpoints-check: ip daddr . meta l4proto . th dport vmap @no-endpoint-services',
      'reject-chain: meta l4proto tcp reject with tcp reset',
    ]);
  });

  test('iptables: the statistic rules carry 1/n probabilities', () => {
    const [o] = iptTracer('node1', () => 0).trace({ src: POD1, dst: '10.96.0.10', proto: 'tcp', dport: 80 });
    assert.ok(o!.matched.some((m) => /--probability 0\.5000000000/.test(m)));
    assert.equal(o!.dnat, '10.244.1.2:8080');
  });
});
