import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { EndpointSlice, Service } from '../datastore/types.ts';
import { CommandError, type Runner } from '../kernel/index.ts';
import { ProxyDataplane, parseTableNames, removeProxyTable } from './dataplane.ts';
import { FakeNft } from './fake-nft.ts';
import { CLUSTER_CIDR, dump, fixtureCluster } from './fixtures.ts';
import { planNftables } from './nftables.ts';
import { translate } from './translate.ts';

const AGENT_TABLE = [
  'add table inet podnet',
  'add chain inet podnet egress-masq { type nat hook postrouting priority srcnat; policy accept; }',
  'add rule inet podnet egress-masq ip saddr 10.244.0.0/16 ip daddr 10.244.0.0/16 return',
  'add rule inet podnet egress-masq ip saddr 10.244.0.0/16 masquerade fully-random',
].join('\n');

function model(c: { services: Service[]; slices: EndpointSlice[] }, nodeName = 'node1') {
  return translate({ services: c.services, endpointSlices: c.slices, nodeName, nodeIPs: ['192.168.1.11'], clusterCIDR: CLUSTER_CIDR });
}

function setup(opts: { now?: () => number } = {}) {
  const fake = new FakeNft();
  fake.apply(AGENT_TABLE);
  const dp = new ProxyDataplane({ runner: fake.runner, ...(opts.now ? { now: opts.now } : {}) });
  const c = fixtureCluster();
  const sync = (nodeName = 'node1') => {
    const m = model(c, nodeName);
    return dp.sync(m.services, m.endpoints, m.node);
  };
  const fresh = () => {
    const m = model(c);
    const f = new FakeNft();
    f.apply(planNftables(m.services, m.endpoints, m.node).script);
    return dump(f.table('ip', 'podnet-proxy'));
  };
  return { fake, dp, c, sync, fresh };
}

const nftWrites = (f: FakeNft) => f.calls.filter((x) => x.file === 'nft' && x.args[0] === '-f').length;

describe('ProxyDataplane.sync', () => {
  test('first sync: full, one transaction, the agent’s table untouched', async () => {
    const { fake, sync, fresh } = setup();
    const agentBefore = dump(fake.table('inet', 'podnet'));
    const r = await sync();
    assert.equal(r.ok, true, JSON.stringify(r.problems));
    assert.equal(r.mode, 'full');
    assert.equal(r.applied, true);
    assert.equal(r.services, 18);
    assert.equal(r.changedServices, 18);
    assert.deepEqual(
      fake.calls.map((x) => `${x.file} ${x.args.join(' ')}`),
      ['nft -t list chains ip ; list sets ip ; list maps ip', 'nft -f -'],
    );
    assert.deepEqual(dump(fake.table('ip', 'podnet-proxy')), fresh());
    assert.deepEqual(dump(fake.table('inet', 'podnet')), agentBefore);
    assert.ok(r.timings.totalMs >= 0 && r.timings.planMs >= 0 && r.timings.applyMs >= 0);
    assert.equal(r.conntrack.commands, 0, 'no conntrack cleanup on the first sync');
  });

  test('nothing changed: a partial sync that runs nothing', async () => {
    const { fake, sync } = setup();
    await sync();
    const r = await sync();
    assert.equal(r.mode, 'partial');
    assert.equal(r.applied, false);
    assert.equal(r.changedServices, 0);
    assert.equal(nftWrites(fake), 1);
  });

  test('a change: a partial sync of just that service, and the UDP conntrack cleanup', async () => {
    const { fake, c, sync, fresh } = setup();
    await sync();
    c.slices.find((s) => s.metadata.name === 'dns-abc')!.endpoints.pop();
    const r = await sync();
    assert.equal(r.mode, 'partial');
    assert.equal(r.changedServices, 2, 'the dns service has a UDP and a TCP port');
    assert.deepEqual({ written: r.counts.chainsWritten, deleted: r.counts.chainsDeleted, elements: r.counts.elementsAdded + r.counts.elementsDeleted }, { written: 2, deleted: 0, elements: 2 });
    const script = fake.calls.at(-2)!.input!;
    // The two service chains (now mod 1) and the last key of each one's endpoint map slot.
    for (const line of script.trim().split('\n')) assert.match(line, /default-dns-dns(-tcp)?|^delete element ip podnet-proxy endpoints-(udp|tcp)-\d+ \{ \d+ \}$/);
    assert.deepEqual(fake.calls.at(-1)!.args, ['-D', '-p', 'udp', '--orig-dst', '10.96.0.53', '--orig-port-dst', '53', '--reply-src', '10.244.2.9']);
    assert.deepEqual(r.conntrack, { commands: 1, failed: 0 }, '"0 flow entries" is not a failure');
    assert.deepEqual(dump(fake.table('ip', 'podnet-proxy')), fresh());
  });

  test('a failed write: reported, needFullSync set, the next sync is full and repairs', async () => {
    const { fake, dp, c, sync, fresh } = setup();
    await sync();
    c.services = c.services.filter((s) => s.metadata.name !== 'web');
    fake.failNext = 'Error: Could not process rule: No buffer space available';
    const bad = await sync();
    assert.equal(bad.ok, false);
    assert.equal(bad.problems[0]!.code, 'PODNET_PROXY_APPLY_FAILED');
    assert.equal(dp.needFullSync, true);
    // Meanwhile somebody damages the table.
    fake.apply('flush map ip podnet-proxy service-ips');
    const good = await sync();
    assert.equal(good.ok, true);
    assert.equal(good.mode, 'full');
    assert.equal(dp.needFullSync, false);
    assert.deepEqual(dump(fake.table('ip', 'podnet-proxy')), fresh());
  });

  test('a full sync every interval, and whenever the node context changes', async () => {
    let now = 0;
    const { sync } = setup({ now: () => now });
    assert.equal((await sync()).mode, 'full');
    now = 59 * 60_000;
    assert.equal((await sync()).mode, 'partial');
    now = 61 * 60_000;
    assert.equal((await sync()).mode, 'full');
    assert.equal((await sync()).mode, 'partial');
    assert.equal((await sync('node2')).mode, 'full', 'another node name: everything is re-planned');
  });

  test('requestFullSync', async () => {
    const { dp, sync } = setup();
    await sync();
    dp.requestFullSync();
    assert.equal((await sync()).mode, 'full');
  });

  test('a full sync deletes leftovers found by name in its own table only', async () => {
    const { fake, dp, sync, fresh } = setup();
    await sync();
    fake.apply(
      [
        'add chain ip podnet-proxy svc-AAAAAAAA-old',
        'add chain ip podnet-proxy keep-me',
        'add set ip podnet-proxy aff-AAAAAAAA-old { type ipv4_addr ; flags dynamic,timeout ; timeout 60s ; }',
        'add table ip other',
        'add chain ip other svc-BBBBBBBB-theirs',
      ].join('\n'),
    );
    dp.requestFullSync();
    const r = await sync();
    assert.equal(r.ok, true, JSON.stringify(r.problems));
    assert.equal(r.counts.chainsDeleted, 1);
    assert.equal(r.counts.setsDeleted, 1);
    const t = fake.table('ip', 'podnet-proxy')!;
    assert.ok(!t.chains.has('svc-AAAAAAAA-old') && !t.sets.has('aff-AAAAAAAA-old'));
    assert.ok(t.chains.has('keep-me'), 'chains of other names are left alone');
    assert.ok(fake.table('ip', 'other')!.chains.has('svc-BBBBBBBB-theirs'), 'other tables are never touched');
    t.chains.delete('keep-me');
    assert.deepEqual(dump(t), fresh());
  });

  test('a failed read of the table: nothing written, reported', async () => {
    const fake = new FakeNft();
    const runner: Runner = async (file, args, opts) => {
      if (args.includes('list')) throw new CommandError([file, ...args], 1, 'Error: Operation not permitted\n');
      return fake.runner(file, args, opts);
    };
    const dp = new ProxyDataplane({ runner });
    const m = model(fixtureCluster());
    const r = await dp.sync(m.services, m.endpoints, m.node);
    assert.equal(r.ok, false);
    assert.equal(r.problems[0]!.code, 'PODNET_PROXY_READ_FAILED');
    assert.equal(fake.tables.size, 0);
  });

  test('overlapping calls are queued, not interleaved', async () => {
    const { fake, dp, c } = setup();
    const m1 = model(c);
    c.slices.find((s) => s.metadata.name === 'web-abc')!.endpoints.pop();
    const m2 = model(c);
    const [r1, r2] = await Promise.all([dp.sync(m1.services, m1.endpoints, m1.node), dp.sync(m2.services, m2.endpoints, m2.node)]);
    assert.deepEqual([r1.mode, r2.mode], ['full', 'partial']);
    assert.equal(r2.changedServices, 1);
    assert.equal(nftWrites(fake), 2);
  });

  test('conntrack missing: one problem, the sync still succeeds', async () => {
    const fake = new FakeNft();
    const runner: Runner = async (file, args, opts) => {
      if (file === 'conntrack') throw new CommandError([file, ...args], null, 'spawn conntrack ENOENT', Object.assign(new Error('ENOENT'), { code: 'ENOENT' }));
      return fake.runner(file, args, opts);
    };
    const dp = new ProxyDataplane({ runner });
    const c = fixtureCluster();
    let m = model(c);
    await dp.sync(m.services, m.endpoints, m.node);
    c.slices.find((s) => s.metadata.name === 'dns-abc')!.endpoints = [];
    m = model(c);
    const r = await dp.sync(m.services, m.endpoints, m.node);
    assert.equal(r.ok, true);
    assert.deepEqual(r.conntrack, { commands: 2, failed: 2 });
    assert.deepEqual(r.problems.map((p) => p.code), ['PODNET_CONNTRACK_MISSING']);
  });

  test('commands go through the namespace option when given', async () => {
    const fake = new FakeNft();
    const dp = new ProxyDataplane({ runner: fake.runner, netns: '/var/run/netns/x' });
    const m = model(fixtureCluster());
    await dp.sync(m.services, m.endpoints, m.node);
    assert.ok(fake.calls.every((x) => x.netns === '/var/run/netns/x'));
  });
});

describe('removing the proxy', () => {
  test('deletes its table only; a second time is fine', async () => {
    const { fake, dp, sync } = setup();
    await sync();
    assert.deepEqual(await dp.remove(), []);
    assert.equal(fake.table('ip', 'podnet-proxy'), undefined);
    assert.ok(fake.table('inet', 'podnet'));
    assert.deepEqual(await removeProxyTable({ runner: fake.runner }), []);
    assert.equal((await sync()).mode, 'full');
  });
});

test('parseTableNames reads chain, set and map names from a listing', () => {
  const listing = 'table ip podnet-proxy {\n\tmap service-ips {\n\t\ttype x\n\t}\n\n\tset aff-A {\n\t}\n\tchain svc-A {\n\t\tgoto ep-A\n\t}\n}\n';
  assert.deepEqual(parseTableNames(listing), { chains: ['svc-A'], sets: ['service-ips', 'aff-A'] });
  // `list chains ip ; list sets ip`: two blocks per table, and other tables of the family left out.
  const two = 'table ip other {\n\tchain svc-B {\n\t}\n}\ntable ip podnet-proxy {\n\tchain svc-A {\n\t}\n}\ntable ip other {\n\tset aff-B {\n\t}\n}\ntable ip podnet-proxy {\n\tset aff-A {\n\t}\n}\n';
  assert.deepEqual(parseTableNames(two, 'ip podnet-proxy'), { chains: ['svc-A'], sets: ['aff-A'] });
  assert.deepEqual(parseTableNames(two), { chains: ['svc-B', 'svc-A'], sets: ['aff-B', 'aff-A'] });
});
