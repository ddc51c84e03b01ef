import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { MASQ_TABLE, networkChain, planMasq, type MasqEntry } from './masq.ts';

const chain = networkChain('podnet');
const t = `inet ${MASQ_TABLE}`;

/** The lines every script starts with: the table, the maps and the hook, created if missing. */
const preamble = [
  `add table ${t}`,
  `add map ${t} masq4 { type ipv4_addr : verdict; }`,
  `add map ${t} masq6 { type ipv6_addr : verdict; }`,
  `add chain ${t} postrouting { type nat hook postrouting priority srcnat; }`,
  `flush chain ${t} postrouting`,
  `add rule ${t} postrouting ip saddr vmap @masq4`,
  `add rule ${t} postrouting ip6 saddr vmap @masq6`,
  `add chain ${t} ${chain}`,
];

const v4: MasqEntry = { ip: '10.244.1.5', subnet: '10.244.1.0/24', family: 4 };
const v6: MasqEntry = { ip: 'fd00:10:244:1::5', subnet: 'fd00:10:244:1::/64', family: 6 };

describe('planMasq', () => {
  const cases: Array<{ name: string; entries: MasqEntry[]; op: 'add' | 'delete'; body: string[] }> = [
    {
      name: 'adding an IPv4 pod rebuilds the network chain and maps the pod to it',
      entries: [v4],
      op: 'add',
      body: [
        `flush chain ${t} ${chain}`,
        `add rule ${t} ${chain} ip daddr 10.244.1.0/24 return`,
        `add rule ${t} ${chain} ip daddr 224.0.0.0/4 return`,
        `add rule ${t} ${chain} ip6 daddr ff00::/8 return`,
        `add rule ${t} ${chain} masquerade`,
        `add element ${t} masq4 { 10.244.1.5 : jump ${chain} }`,
      ],
    },
    {
      name: 'adding a dual-stack pod exempts both subnets and maps both addresses',
      entries: [v4, v6],
      op: 'add',
      body: [
        `flush chain ${t} ${chain}`,
        `add rule ${t} ${chain} ip daddr 10.244.1.0/24 return`,
        `add rule ${t} ${chain} ip6 daddr fd00:10:244:1::/64 return`,
        `add rule ${t} ${chain} ip daddr 224.0.0.0/4 return`,
        `add rule ${t} ${chain} ip6 daddr ff00::/8 return`,
        `add rule ${t} ${chain} masquerade`,
        `add element ${t} masq4 { 10.244.1.5 : jump ${chain} }`,
        `add element ${t} masq6 { fd00:10:244:1::5 : jump ${chain} }`,
      ],
    },
    {
      name: 'deleting a pod adds each element before deleting it, so repeating the delete is harmless',
      entries: [v4, v6],
      op: 'delete',
      body: [
        `add element ${t} masq4 { 10.244.1.5 : jump ${chain} }`,
        `delete element ${t} masq4 { 10.244.1.5 : jump ${chain} }`,
        `add element ${t} masq6 { fd00:10:244:1::5 : jump ${chain} }`,
        `delete element ${t} masq6 { fd00:10:244:1::5 : jump ${chain} }`,
      ],
    },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const script = planMasq('podnet', c.entries, c.op);
      assert.ok(script.endsWith('\n'), 'the script ends with a newline');
      assert.deepEqual(script.trimEnd().split('\n'), [...preamble, ...c.body]);
    });
  }

  test('deleting leaves the network chain and its rules alone (other pods still jump to it)', () => {
    const script = planMasq('podnet', [v4], 'delete');
    assert.doesNotMatch(script, /flush chain [^\n]* net-/);
    assert.doesNotMatch(script, /masquerade/);
    assert.doesNotMatch(script, /delete (chain|table|map)/);
  });

  test('the script for a delete is the same each time, so running it twice does the same thing', () => {
    assert.equal(planMasq('podnet', [v4], 'delete'), planMasq('podnet', [v4], 'delete'));
  });
});

describe('networkChain', () => {
  test('is a stable name per network, distinct between networks', () => {
    assert.equal(networkChain('podnet'), networkChain('podnet'));
    assert.notEqual(networkChain('podnet'), networkChain('other'));
    assert.match(networkChain('podnet'), /^net-[0-9a-f]{12}$/);
  });
});
