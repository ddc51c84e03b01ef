import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { IptablesProxyDataplane } from './dataplane.ts';
import { CLUSTER_CIDR, fixtureCluster, fixtureModel } from './fixtures.ts';
import { FakeIptables, splitArgs } from './iptables-tracer.ts';
import { IPT_EP_CHECK, IPT_SERVICES, planIptables } from './iptables.ts';
import { translate } from './translate.ts';

describe('planIptables: iptables-restore input', () => {
  const m = fixtureModel('node1');
  const plan = planIptables(m.services, m.endpoints, m.node);
  const lines = plan.restore.trim().split('\n');

  test('declares and fills only PODNET- chains, in nat and filter, never a built-in one', () => {
    assert.deepEqual(lines.filter((l) => l.startsWith('*') || l === 'COMMIT'), ['*nat', 'COMMIT', '*filter', 'COMMIT']);
    for (const l of lines.filter((x) => x.startsWith(':'))) assert.match(l, /^:PODNET-[A-Z0-9-]+ - \[0:0\]$/);
    for (const l of lines.filter((x) => x.startsWith('-A'))) assert.match(l, /^-A PODNET-/);
  });

  test('table-driven rule shapes', () => {
    const cases: Array<[string, RegExp]> = [
      ['cluster IP', /^-A PODNET-SERVICES -d 10\.96\.0\.10\/32 -p tcp -m comment --comment "default\/web:http cluster IP" -m tcp --dport 80 -j PODNET-SVC-[A-Z2-7]{16}$/],
      ['load balancer IP', /^-A PODNET-SERVICES -d 192\.168\.1\.200\/32 -p tcp -m comment --comment "default\/lb:http load balancer IP" -m tcp --dport 80 -j PODNET-EXT-[A-Z2-7]{16}$/],
      ['node ports last', /^-A PODNET-SERVICES ! -d 127\.0\.0\.0\/8 -m addrtype --dst-type LOCAL -m comment --comment "podnet node ports; this must be the last rule" -j PODNET-NODEPORTS$/],
      ['node port', /^-A PODNET-NODEPORTS -p tcp -m comment --comment "default\/np:http node port" -m tcp --dport 30080 -j PODNET-EXT-/],
      ['random 1/2', /^-A PODNET-SVC-\S+ -m comment --comment "default\/web:http -> 10\.244\.1\.2:8080" -m statistic --mode random --probability 0\.5000000000 -j PODNET-SEP-/],
      ['last endpoint unconditional', /^-A PODNET-SVC-\S+ -m comment --comment "default\/web:http -> 10\.244\.2\.2:8080" -j PODNET-SEP-[A-Z2-7]{16}$/],
      ['hairpin', /^-A PODNET-SEP-\S+ -s 10\.244\.1\.2\/32 -m comment --comment default\/web:http -j PODNET-MARK-MASQ$/],
      ['remote endpoint, outside source', /^-A PODNET-SEP-\S+ ! -s 10\.244\.0\.0\/16 -m comment --comment default\/web:http -j PODNET-MARK-MASQ$/],
      ['DNAT', /^-A PODNET-SEP-\S+ -p sctp -m comment --comment default\/sctp:assoc -m sctp -j DNAT --to-destination 10\.244\.2\.10:9999$/],
      ['affinity check', /^-A PODNET-SVC-\S+ -m comment --comment "default\/sticky:http -> 10\.244\.1\.11:8080" -m recent --name PODNET-SEP-\S+ --rcheck --seconds 600 --reap -j PODNET-SEP-/],
      ['affinity set', /^-A PODNET-SEP-\S+ -p tcp -m comment --comment default\/sticky:http -m recent --name PODNET-SEP-\S+ --set --mask 255\.255\.255\.255 --rsource -m tcp -j DNAT/],
      ['reject TCP', /^-A PODNET-EP-CHECK -d 10\.96\.0\.99\/32 -p tcp -m comment --comment "default\/empty:http cluster IP" -m tcp --dport 80 -j REJECT --reject-with tcp-reset$/],
      ['reject UDP', /^-A PODNET-EP-CHECK -d 10\.96\.0\.98\/32 -p udp -m comment --comment "default\/empty-udp:dns cluster IP" -m udp --dport 53 -j REJECT$/],
      ['drop for iTP Local', /^-A PODNET-EP-CHECK -d 10\.96\.0\.81\/32 .* -j DROP$/],
      ['masquerade', /^-A PODNET-POSTROUTING -m comment --comment "podnet service traffic requiring SNAT" -j MASQUERADE --random-fully$/],
    ];
    for (const [name, re] of cases) assert.ok(lines.some((l) => re.test(l)), name);
  });

  test('the jumps from built-in chains are separate (a --noflush restore would append them again)', () => {
    assert.deepEqual(
      plan.jumps.map((j) => `${j.table}/${j.chain} -> ${j.rule.at(-1)}`),
      ['nat/PREROUTING -> PODNET-SERVICES', 'nat/OUTPUT -> PODNET-SERVICES', 'nat/POSTROUTING -> PODNET-POSTROUTING', 'filter/INPUT -> PODNET-EP-CHECK', 'filter/FORWARD -> PODNET-EP-CHECK', 'filter/OUTPUT -> PODNET-EP-CHECK'],
    );
  });

  test('stale service chains are emptied and deleted; others are not named', () => {
    const stale = 'PODNET-SVC-AAAAAAAAAAAAAAAA';
    const p = planIptables(m.services, m.endpoints, m.node, { nat: [stale, 'KUBE-SERVICES', 'PREROUTING'], filter: [] });
    assert.ok(p.restore.includes(`:${stale} - [0:0]\n`));
    assert.ok(p.restore.includes(`-X ${stale}\nCOMMIT`));
    assert.ok(!p.restore.includes('KUBE-SERVICES'));
    assert.equal(p.counts.staleChains, 1);
  });

  test('quoted comments survive the restore parser', () => {
    assert.deepEqual(splitArgs('-A X -m comment --comment "a b \\"c\\"" -j Y'), ['-A', 'X', '-m', 'comment', '--comment', 'a b "c"', '-j', 'Y']);
  });
});

describe('IptablesProxyDataplane (fake iptables)', () => {
  const model = (c = fixtureCluster()) => translate({ services: c.services, endpointSlices: c.slices, nodeName: 'node1', nodeIPs: ['192.168.1.11'], clusterCIDR: CLUSTER_CIDR });

  test('sync: restore --noflush, jumps inserted once, other rules untouched', async () => {
    const fake = new FakeIptables();
    fake.tables.nat.get('PREROUTING')!.push({ text: '-j SOMEONE-ELSE', args: ['-j', 'SOMEONE-ELSE'] });
    fake.tables.nat.set('SOMEONE-ELSE', [{ text: '-j RETURN', args: ['-j', 'RETURN'] }]);
    const dp = new IptablesProxyDataplane({ runner: fake.runner });
    const m = model();
    const r1 = await dp.sync(m.services, m.endpoints, m.node);
    assert.equal(r1.ok, true, JSON.stringify(r1.problems));
    assert.equal(r1.counts.jumpsAdded, 6);
    const r2 = await dp.sync(m.services, m.endpoints, m.node);
    assert.equal(r2.counts.jumpsAdded, 0);
    assert.equal(fake.tables.nat.get('PREROUTING')!.length, 2);
    assert.deepEqual(fake.tables.nat.get('SOMEONE-ELSE'), [{ text: '-j RETURN', args: ['-j', 'RETURN'] }]);
    assert.ok(fake.calls.filter((c) => c.file === 'iptables-restore').every((c) => c.args.includes('--noflush')));
    assert.ok(fake.tables.nat.get(IPT_SERVICES)!.length > 10);
  });

  test('a removed service: its chains are deleted at the next sync', async () => {
    const fake = new FakeIptables();
    const dp = new IptablesProxyDataplane({ runner: fake.runner });
    const c = fixtureCluster();
    let m = model(c);
    await dp.sync(m.services, m.endpoints, m.node);
    const before = [...fake.tables.nat.keys()].filter((k) => k.startsWith('PODNET-SEP-')).length;
    c.services = c.services.filter((s) => s.metadata.name !== 'web');
    m = model(c);
    const r = await dp.sync(m.services, m.endpoints, m.node);
    assert.equal(r.counts.staleChains, 3, 'one SVC and two SEP chains');
    assert.equal([...fake.tables.nat.keys()].filter((k) => k.startsWith('PODNET-SEP-')).length, before - 2);
  });

  test('remove: jumps and PODNET- chains go, the rest stays', async () => {
    const fake = new FakeIptables();
    fake.tables.filter.get('INPUT')!.push({ text: '-j ACCEPT', args: ['-j', 'ACCEPT'] });
    const dp = new IptablesProxyDataplane({ runner: fake.runner });
    const m = model();
    await dp.sync(m.services, m.endpoints, m.node);
    assert.deepEqual(await dp.remove(), []);
    for (const t of ['nat', 'filter'] as const) assert.ok(![...fake.tables[t].keys()].some((k) => k.startsWith('PODNET-')), t);
    assert.deepEqual(fake.tables.filter.get('INPUT'), [{ text: '-j ACCEPT', args: ['-j', 'ACCEPT'] }]);
    assert.equal(fake.tables.nat.get('PREROUTING')!.length, 0);
    assert.ok(!fake.tables.filter.has(IPT_EP_CHECK));
  });

  test('a failed restore is a problem value, not a throw', async () => {
    const fake = new FakeIptables();
    fake.failNext = 'iptables-restore: line 3 failed';
    const dp = new IptablesProxyDataplane({ runner: fake.runner });
    const m = model();
    const r = await dp.sync(m.services, m.endpoints, m.node);
    assert.equal(r.ok, false);
    assert.match(r.problems[0]!.message, /line 3 failed/);
  });
});
