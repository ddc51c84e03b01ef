import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { CommandError } from '../kernel/index.ts';
import { FakeNft, parsePriority } from './fake-nft.ts';
import { NftSyntaxError, parseRule } from './nft-rules.ts';

const T = 'ip podnet-proxy';
const setup = [
  `add table ${T}`,
  `add chain ${T} a`,
  `add chain ${T} b`,
  `add map ${T} m { type ipv4_addr . inet_proto . inet_service : verdict ; }`,
  `add rule ${T} a jump b`,
  `add element ${T} m { 10.0.0.1 . tcp . 80 : goto b }`,
].join('\n');

describe('FakeNft: the kernel rules that matter to the proxy', () => {
  test('a transaction is atomic: one bad line and nothing changes', () => {
    const f = new FakeNft();
    f.apply(setup);
    const before = f.listTable('ip', 'podnet-proxy');
    assert.throws(() => f.apply(`add chain ${T} c\nadd rule ${T} c jump nowhere`), /-:2: No such file or directory: chain nowhere/);
    assert.equal(f.listTable('ip', 'podnet-proxy'), before);
  });

  test('add is idempotent; an element with another value is EEXIST; deleting a missing one is ENOENT', () => {
    const f = new FakeNft();
    f.apply(setup);
    f.apply(`add table ${T}\nadd chain ${T} a\nadd element ${T} m { 10.0.0.1 . tcp . 80 : goto b }`);
    assert.throws(() => f.apply(`add element ${T} m { 10.0.0.1 . tcp . 80 : goto a }`), /File exists/);
    assert.throws(() => f.apply(`delete element ${T} m { 10.0.0.2 . tcp . 80 }`), /No such file/);
  });

  test('a referenced chain or set cannot be deleted until the references go, in the same transaction', () => {
    const f = new FakeNft();
    f.apply(setup);
    assert.throws(() => f.apply(`delete chain ${T} b`), /busy/);
    f.apply(`flush chain ${T} a\ndelete element ${T} m { 10.0.0.1 . tcp . 80 }\ndelete chain ${T} b`);
    assert.ok(!f.table('ip', 'podnet-proxy')!.chains.has('b'));
    f.apply(`add set ${T} s { type ipv4_addr ; flags dynamic,timeout ; timeout 10s ; }\nadd rule ${T} a ip saddr @s accept`);
    assert.throws(() => f.apply(`delete set ${T} s`), /busy/);
    f.apply(`flush chain ${T} a\ndelete set ${T} s`);
  });

  test('rules must parse', () => {
    const f = new FakeNft();
    f.apply(setup);
    assert.throws(() => f.apply(`add rule ${T} a ip daddr 10.0.0.1 snat to 1.2.3.4`), /syntax error/);
  });

  test('runner: nft -f -, list, delete table; failNext; unknown tables are ENOENT', async () => {
    const f = new FakeNft();
    await f.runner('nft', ['-f', '-'], { input: setup });
    assert.match((await f.runner('nft', ['list', 'tables'])).stdout, /^table ip podnet-proxy$/m);
    assert.match((await f.runner('nft', ['-t', 'list', 'table', 'ip', 'podnet-proxy'])).stdout, /^\tchain a \{$/m);
    f.failNext = 'Error: Could not process rule: No buffer space available';
    await assert.rejects(f.runner('nft', ['-f', '-'], { input: `add chain ${T} z` }), CommandError);
    assert.ok(!f.table('ip', 'podnet-proxy')!.chains.has('z'));
    await f.runner('nft', ['delete', 'table', 'ip', 'podnet-proxy']);
    await assert.rejects(f.runner('nft', ['list', 'table', 'ip', 'podnet-proxy']), /No such file or directory/);
  });

  test('priorities by name and number', () => {
    assert.equal(parsePriority('dstnat'), -100);
    assert.equal(parsePriority('srcnat'), 100);
    assert.equal(parsePriority('filter - 10'), -10);
    assert.equal(parsePriority('-90'), -90);
  });
});

describe('parseRule: the rule forms the planner writes', () => {
  const ok = [
    'ip daddr . meta l4proto . th dport vmap @service-ips',
    'fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports',
    'meta mark set meta mark or 0x4000',
    'meta mark & 0x4000 == 0 return',
    'masquerade fully-random',
    'meta l4proto tcp reject with tcp reset',
    'reject',
    'ct state new jump endpoints-check',
    'ip saddr != 10.244.0.0/16 jump mark-for-masquerade',
    'ip saddr @aff-X goto ep-X',
    'update @aff-X { ip saddr }',
    'numgen random mod 3 vmap { 0 : goto a, 1 : goto b, 2 : goto c }',
    'numgen random mod 3 == 0 goto a',
    'numgen random mod 3 0 goto a',
    'meta l4proto sctp dnat to 10.244.1.5:8080',
    'meta l4proto tcp dnat to [fd00::5]:8080',
    'fib saddr type local goto svc-X',
  ];
  for (const r of ok) test(`parses: ${r}`, () => assert.doesNotThrow(() => parseRule(r)));

  const bad = [
    'ip daddr 10.0.0.300 accept',
    'numgen random mod 2 vmap { 0 : goto a }',
    'numgen random mod 2 == 2 goto a',
    'dnat to 10.0.0.1',
    'accept drop',
    'ip6 daddr 10.0.0.1 accept',
    'tcp dport 80 accept',
  ];
  for (const r of bad) test(`refuses: ${r}`, () => assert.throws(() => parseRule(r), NftSyntaxError));
});
