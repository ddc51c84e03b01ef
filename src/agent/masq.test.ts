import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { contains, parseIP, parsePrefix, parseSubnet } from '../netaddr/index.ts';
import { chainBody, masqMatches, planEgressMasq, planEgressMasqRemoval } from './masq.ts';
import type { MasqPlan } from './types.ts';

const v4 = planEgressMasq(parseSubnet('10.244.0.0/16'));
const v6 = planEgressMasq(parseSubnet('fd00:10:244::/48'));

describe('planEgressMasq', () => {
  test('one transaction: own table and chain, flushed and refilled', () => {
    assert.equal(
      v4.script,
      [
        'add table inet podnet',
        'add chain inet podnet egress-masq { type nat hook postrouting priority srcnat; policy accept; }',
        'flush chain inet podnet egress-masq',
        'add rule inet podnet egress-masq ip saddr 10.244.0.0/16 ip daddr 10.244.0.0/16 return',
        'add rule inet podnet egress-masq ip saddr 10.244.0.0/16 ip daddr 224.0.0.0/4 return',
        'add rule inet podnet egress-masq ip saddr 10.244.0.0/16 masquerade fully-random',
        '',
      ].join('\n'),
    );
    // Never a table or chain of anyone else, and never deleting the table (others share it).
    for (const line of v4.script.trim().split('\n')) assert.match(line, /^(add|flush) (table|chain|rule) inet podnet\b/);
  });

  test('an IPv6 cluster gets ip6 matches and the IPv6 multicast range', () => {
    assert.deepEqual(v6.listing.slice(1), [
      'ip6 saddr fd00:10:244::/48 ip6 daddr fd00:10:244::/48 return',
      'ip6 saddr fd00:10:244::/48 ip6 daddr ff00::/8 return',
      'ip6 saddr fd00:10:244::/48 masquerade fully-random',
    ]);
  });

  test('removal deletes only the chain', () => {
    assert.equal(planEgressMasqRemoval(), 'delete chain inet podnet egress-masq\n');
  });
});

describe('masqMatches against `nft list chain`', () => {
  const listed = (body: string[]) => ['table inet podnet {', '\tchain egress-masq {', ...body.map((l) => `\t\t${l}`), '\t}', '}', ''].join('\n');
  const cases: Array<{ name: string; listing: string | undefined; match: boolean }> = [
    { name: 'the planned chain matches', listing: listed(v4.listing), match: true },
    { name: 'a missing chain does not', listing: undefined, match: false },
    { name: 'a hand-deleted rule does not', listing: listed(v4.listing.slice(0, 3)), match: false },
    { name: 'an extra rule does not', listing: listed([...v4.listing, 'ip saddr 10.0.0.0/8 accept']), match: false },
    { name: 'another cluster CIDR does not', listing: listed(planEgressMasq(parseSubnet('10.245.0.0/16')).listing), match: false },
  ];
  for (const c of cases) test(c.name, () => assert.equal(masqMatches(v4, c.listing), c.match));
  test('chainBody strips the framing', () => assert.deepEqual(chainBody(listed(['a b;', 'c'])), ['a b;', 'c']));
});

/**
 * A packet tracer for the masquerade chain: walks the planned rules for a packet and says
 * which verdict it meets. It understands exactly the rule forms the planner writes.
 */
function trace(plan: MasqPlan, src: string, dst: string): 'masquerade' | 'return' | 'accept' {
  const s = parseIP(src);
  const d = parseIP(dst);
  for (const rule of plan.listing.slice(1)) {
    const m = /^ip6? saddr (\S+)(?: ip6? daddr (\S+))? (return|masquerade)/.exec(rule);
    assert.ok(m, `tracer does not understand "${rule}"`);
    if (!contains(parsePrefix(m[1]!).prefix, s)) continue;
    if (m[2] !== undefined && !contains(parsePrefix(m[2]).prefix, d)) continue;
    return m[3] as 'masquerade' | 'return';
  }
  return 'accept';
}

describe('packets through the masquerade chain', () => {
  const flows: Array<{ name: string; src: string; dst: string; masq: boolean }> = [
    { name: 'pod to pod on another node keeps its address', src: '10.244.1.5', dst: '10.244.2.7', masq: false },
    { name: 'pod to pod on the same node keeps its address', src: '10.244.1.5', dst: '10.244.1.9', masq: false },
    { name: 'pod to the internet is masqueraded', src: '10.244.1.5', dst: '203.0.113.10', masq: true },
    { name: 'pod to another node is masqueraded', src: '10.244.1.5', dst: '192.168.1.12', masq: true },
    { name: 'pod to a multicast group is not', src: '10.244.1.5', dst: '239.1.2.3', masq: false },
    { name: 'the node itself is not', src: '192.168.1.11', dst: '203.0.113.10', masq: false },
    { name: 'outside traffic to a pod is not', src: '203.0.113.10', dst: '10.244.1.5', masq: false },
  ];
  for (const f of flows) test(f.name, () => assert.equal(trace(v4, f.src, f.dst) === 'masquerade', f.masq));
  test('IPv6 pod to the internet is masqueraded, pod to pod is not', () => {
    assert.equal(trace(v6, 'fd00:10:244:1::5', '2001:db8::1'), 'masquerade');
    assert.equal(trace(v6, 'fd00:10:244:1::5', 'fd00:10:244:2::5'), 'return');
  });
});
