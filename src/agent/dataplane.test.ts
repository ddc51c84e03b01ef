import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { CommandError, type RunOptions, type Runner } from '../kernel/index.ts';
import { Dataplane, batchFailures, planNode, tableChains } from './dataplane.ts';
import type { DataplaneSpec, DesiredState } from './types.ts';
import { vtepMac } from './vxlan.ts';

const spec = (backend: 'host-gw' | 'vxlan'): DataplaneSpec => ({
  self: { name: 'node1', nodeIP: '192.168.1.11', subnet: '10.244.1.0/24' },
  peers: [{ name: 'node2', nodeIP: '192.168.1.12', subnet: '10.244.2.0/24', vtepMac: '02:00:00:00:00:02' }],
  clusterCIDR: '10.244.0.0/16',
  backend,
  underlayIface: 'eth0',
});

const ETH0 = JSON.stringify([{ ifname: 'eth0', mtu: 1500, flags: ['UP'], addr_info: [{ family: 'inet', local: '192.168.1.11', prefixlen: 24, scope: 'global' }] }]);
/** `nft list table inet podnet` as a plan leaves it: the masquerade chain, and the notrack chains with vxlan. */
function tableOf(d: DesiredState): string {
  const chains = [...(d.masq ? [['egress-masq', d.masq.listing] as const] : []), ...Object.entries(d.notrack?.chains ?? {})];
  return `table inet podnet {\n${chains.map(([name, lines]) => `\tchain ${name} {\n${lines.map((l) => `\t\t${l}`).join('\n')}\n\t}\n`).join('\n')}}\n`;
}
const underlay = { name: 'eth0', mtu: 1500, addresses: ['192.168.1.11/24'] };
const TABLE_HG = tableOf(planNode(spec('host-gw'), underlay));
const TABLE_VX = tableOf(planNode(spec('vxlan'), underlay));
const DEVICE = JSON.stringify([
  {
    ifindex: 7,
    ifname: 'podnet.1',
    flags: ['UP'],
    mtu: 1450,
    address: vtepMac('node1'),
    linkinfo: { info_kind: 'vxlan', info_data: { id: 1, local: '192.168.1.11', link: 'eth0', port: 4789, learning: false } },
    addr_info: [{ family: 'inet', local: '10.244.1.0', prefixlen: 32, scope: 'global' }],
  },
]);

interface Call {
  cmd: string;
  input: string | undefined;
  netns: string | undefined;
}

/** A recording fake kernel: answers by command line; a missing answer is a CommandError. */
function fake(answers: Record<string, string | ((input: string | undefined) => string)>): { runner: Runner; calls: Call[] } {
  const calls: Call[] = [];
  const runner: Runner = async (file, args, opts: RunOptions = {}) => {
    const cmd = [file, ...args].join(' ');
    calls.push({ cmd, input: opts.input, netns: opts.netns });
    const a = answers[cmd];
    if (a === undefined) throw new CommandError([file, ...args], 1, 'Error: does not exist');
    return { stdout: typeof a === 'function' ? a(opts.input) : a, stderr: '' };
  };
  return { runner, calls };
}

const reads = {
  'ip -j addr show dev eth0': ETH0,
  'ip -j -4 route show table main proto 112': '[]',
  'ip -d -j addr show type vxlan': '[]',
  'ip -j neigh show dev podnet.1': '[]',
  'bridge -j fdb show dev podnet.1': '[]',
};
const steadyVxlan = {
  ...reads,
  'ip -j -4 route show table main proto 112': '[{"dst":"10.244.2.0/24","gateway":"10.244.2.0","dev":"podnet.1","flags":["onlink"]}]',
  'ip -d -j addr show type vxlan': DEVICE,
  'ip -j neigh show dev podnet.1': '[{"dst":"10.244.2.0","lladdr":"02:00:00:00:00:02","state":["PERMANENT"]}]',
  'bridge -j fdb show dev podnet.1': '[{"mac":"02:00:00:00:00:02","dst":"192.168.1.12","flags":["self"],"state":"permanent"}]',
  'nft list table inet podnet': TABLE_VX,
  'ethtool -K podnet.1 tx off': '',
};
const writes = (calls: Call[]) => calls.filter((c) => !/ (show|list) |^ethtool -k /.test(c.cmd)).map((c) => c.cmd);
/** A kernel with the NAT checksum bug, and one without (this decides `auto`). */
const OLD_KERNEL = '5.4.0-42-generic';
const NEW_KERNEL = '6.18.44-fc-v669';
const FEATURES = (tx: 'on' | 'off') => `Features for podnet.1:\nrx-checksumming: on\ntx-checksumming: ${tx}\n\ttx-checksum-ip-generic: ${tx}\n`;

describe('Dataplane (executor) against a fake kernel', () => {
  test('a resync with nothing changed only reads (after the first ethtool)', async () => {
    const { runner, calls } = fake(steadyVxlan);
    const dp = new Dataplane({ runner, vxlanTxChecksum: 'off' });
    const first = await dp.apply(spec('vxlan'));
    assert.deepEqual(writes(calls), ['ethtool -K podnet.1 tx off']);
    assert.equal(first.changed, false);
    calls.length = 0;
    const r = await dp.apply(spec('vxlan'));
    assert.deepEqual(writes(calls), []);
    assert.equal(r.writes, 0);
    assert.equal(r.reads, 6);
    assert.equal(r.changed, false);
    assert.deepEqual(r.errors, []);
    assert.equal(r.podMTU, 1450);
  });

  test('an empty node gets one ip batch, ethtool, one bridge batch, one nft script, in that order', async () => {
    const { runner, calls } = fake({ ...reads, 'ip -force -batch -': '', 'bridge -force -batch -': '', 'nft -f -': '', 'ethtool -K podnet.1 tx off': '' });
    const r = await new Dataplane({ runner, netns: '/var/run/netns/pnt-x', kernelRelease: OLD_KERNEL }).apply(spec('vxlan'));
    assert.deepEqual(writes(calls), ['ip -force -batch -', 'ethtool -K podnet.1 tx off', 'bridge -force -batch -', 'nft -f -']);
    assert.match(calls.find((c) => c.cmd === 'ip -force -batch -')!.input!, /^link add podnet\.1 .*\nlink set dev podnet\.1 up\n/);
    assert.ok(calls.every((c) => c.netns === '/var/run/netns/pnt-x'), 'every command runs in the given namespace');
    assert.equal(r.device, 'created');
    assert.deepEqual(r.routes, { added: 1, changed: 0, removed: 0 });
    assert.deepEqual(r.fdb, { added: 1, changed: 0, removed: 0 });
    assert.deepEqual(r.neighs, { added: 1, changed: 0, removed: 0 });
    assert.equal(r.masq, 'write');
    assert.equal(r.notrack, 'write');
    assert.equal(r.changed, true);
    // The masquerade and both notrack chains in one transaction.
    assert.match(calls.find((c) => c.cmd === 'nft -f -')!.input!, /chain inet podnet egress-masq[^]*chain inet podnet vxlan-notrack-in [^]*chain inet podnet vxlan-notrack-out /);
  });

  test('notrack chains: a hand-deleted one is rewritten, and host-gw removes them', async () => {
    let table = TABLE_VX.replace(/\tchain vxlan-notrack-out \{[^}]*\}\n/, '');
    const { runner, calls } = fake({ ...steadyVxlan, 'nft list table inet podnet': () => table, 'nft -f -': (input) => ((table = TABLE_VX), input ?? '') });
    const dp = new Dataplane({ runner, vxlanTxChecksum: 'on' });
    const r = await dp.apply(spec('vxlan'));
    assert.equal(r.notrack, 'write');
    assert.equal(r.masq, 'unchanged');
    assert.deepEqual(writes(calls), ['nft -f -']);
    assert.match(calls.find((c) => c.cmd === 'nft -f -')!.input!, /^add table inet podnet\nadd chain inet podnet vxlan-notrack-in /);
    calls.length = 0;
    const again = await dp.apply(spec('vxlan'));
    assert.deepEqual([again.writes, again.notrack, again.changed], [0, 'unchanged', false]);
    const { runner: r2, calls: c2 } = fake({ ...reads, 'ip -j -4 route show table main proto 112': steadyVxlan['ip -j -4 route show table main proto 112'], 'ip -d -j addr show type vxlan': DEVICE, 'nft list table inet podnet': TABLE_VX, 'ip -force -batch -': '', 'nft -f -': '' });
    const hg = await new Dataplane({ runner: r2 }).apply(spec('host-gw'));
    assert.equal(hg.notrack, 'remove');
    assert.equal(c2.find((c) => c.cmd === 'nft -f -')!.input, 'delete chain inet podnet vxlan-notrack-in\ndelete chain inet podnet vxlan-notrack-out\n');
  });

  test('notrack chains still missing after a write whose read-back failed are written again', async () => {
    let listed = 0;
    const table = () => {
      // The read-back right after the first write fails; every other read finds an empty table.
      if (listed++ === 1) throw new CommandError(['nft', 'list', 'table', 'inet', 'podnet'], 1, 'Error: Could not process rule');
      return 'table inet podnet {\n}\n';
    };
    const { runner } = fake({ ...steadyVxlan, 'nft list table inet podnet': table, 'nft -f -': '' });
    const dp = new Dataplane({ runner, vxlanTxChecksum: 'on', kernelRelease: NEW_KERNEL });
    assert.equal((await dp.apply(spec('vxlan'))).notrack, 'write');
    assert.equal((await dp.apply(spec('vxlan'))).notrack, 'write', 'still missing: written again');
  });

  test('teardown deletes the masquerade and notrack chains in one transaction, then the empty table', async () => {
    let table = TABLE_VX;
    const { runner, calls } = fake({
      'ip -d -j addr show type vxlan': '[]',
      'ip -4 route flush table main proto 112': '',
      'ip -6 route flush table main proto 112': '',
      'nft list table inet podnet': () => table,
      'nft -f -': (input) => ((table = 'table inet podnet {\n}\n'), input ?? ''),
      'nft delete table inet podnet': '',
    });
    assert.deepEqual(await new Dataplane({ runner }).teardown(), []);
    assert.equal(calls.find((c) => c.cmd === 'nft -f -')!.input, 'delete chain inet podnet egress-masq\ndelete chain inet podnet vxlan-notrack-in\ndelete chain inet podnet vxlan-notrack-out\n');
    assert.ok(calls.some((c) => c.cmd === 'nft delete table inet podnet'));
  });

  test('without ethtool the error says so, and the rest is applied', async () => {
    const answers: Record<string, string> = { ...steadyVxlan };
    delete answers['ethtool -K podnet.1 tx off'];
    const base = fake(answers);
    const runner: Runner = async (file, args, opts) => {
      if (file === 'ethtool') throw new CommandError([file, ...args], null, 'spawn ethtool ENOENT', Object.assign(new Error('spawn ethtool ENOENT'), { code: 'ENOENT' }));
      return base.runner(file, args, opts);
    };
    const r = await new Dataplane({ runner, vxlanTxChecksum: 'off' }).apply(spec('vxlan'));
    assert.equal(r.errors.length, 1);
    assert.equal(r.errors[0]!.code, 'PODNET_ETHTOOL_MISSING');
    assert.match(r.errors[0]!.message, /ethtool is not installed/);
    // With offload wanted on, a missing ethtool is no problem: nothing needs setting.
    const on = await new Dataplane({ runner, vxlanTxChecksum: 'on' }).apply(spec('vxlan'));
    assert.deepEqual(on.errors, []);
  });

  describe('TX checksum offload of the VXLAN device', () => {
    const empty = () => ({ ...reads, 'ip -force -batch -': '', 'bridge -force -batch -': '', 'nft -f -': '', 'ethtool -K podnet.1 tx off': '' });
    const cases: Array<{ name: string; opts: { vxlanTxChecksum?: 'auto' | 'off' | 'on'; kernelRelease: string }; answers: Record<string, string>; writes: string[]; reads: string[] }> = [
      {
        name: 'auto on a kernel with the bug: a new device gets tx off',
        opts: { kernelRelease: OLD_KERNEL },
        answers: empty(),
        writes: ['ip -force -batch -', 'ethtool -K podnet.1 tx off', 'bridge -force -batch -', 'nft -f -'],
        reads: [],
      },
      {
        name: 'auto on a fixed kernel: a new device keeps the default, no ethtool at all',
        opts: { kernelRelease: NEW_KERNEL },
        answers: empty(),
        writes: ['ip -force -batch -', 'bridge -force -batch -', 'nft -f -'],
        reads: [],
      },
      {
        name: 'on: a device found with offload on is read once and left alone',
        opts: { vxlanTxChecksum: 'on', kernelRelease: OLD_KERNEL },
        answers: { ...steadyVxlan, 'ethtool -k podnet.1': FEATURES('on') },
        writes: [],
        reads: ['ethtool -k podnet.1'],
      },
      {
        name: 'auto on a fixed kernel: a device an earlier run left with tx off gets it back on',
        opts: { kernelRelease: NEW_KERNEL },
        answers: { ...steadyVxlan, 'ethtool -k podnet.1': FEATURES('off'), 'ethtool -K podnet.1 tx on': '' },
        writes: ['ethtool -K podnet.1 tx on'],
        reads: ['ethtool -k podnet.1'],
      },
      {
        name: 'off on a fixed kernel: tx off all the same',
        opts: { vxlanTxChecksum: 'off', kernelRelease: NEW_KERNEL },
        answers: { ...steadyVxlan },
        writes: ['ethtool -K podnet.1 tx off'],
        reads: [],
      },
    ];
    for (const c of cases) {
      test(c.name, async () => {
        const { runner, calls } = fake(c.answers);
        const dp = new Dataplane({ runner, ...c.opts });
        const r = await dp.apply(spec('vxlan'));
        assert.deepEqual(r.errors, []);
        assert.deepEqual(writes(calls), c.writes);
        assert.deepEqual(calls.filter((x) => x.cmd.startsWith('ethtool -k')).map((x) => x.cmd), c.reads);
        calls.length = 0;
        Object.assign(c.answers, steadyVxlan); // the kernel now has what the first apply made
        const again = await dp.apply(spec('vxlan'));
        assert.equal(calls.filter((x) => x.cmd.startsWith('ethtool')).length, 0, 'once per device per process');
        assert.equal(again.errors.length, 0);
      });
    }

    test('the decision is exposed for logs and metrics', () => {
      assert.equal(new Dataplane({ kernelRelease: NEW_KERNEL }).txChecksum.offload, true);
      assert.deepEqual(
        { ...new Dataplane({ kernelRelease: OLD_KERNEL }).txChecksum, reason: '' },
        { mode: 'auto', offload: false, kernel: OLD_KERNEL, reason: '' },
      );
    });
  });

  test('a lasting plan problem is new once; it is new again when it changes or comes back', async () => {
    const behind = { name: 'node3', nodeIP: '192.168.2.13', subnet: '10.244.3.0/24' };
    const s = { ...spec('host-gw'), peers: [...spec('host-gw').peers, behind] };
    const { runner } = fake({ ...reads, 'nft list table inet podnet': TABLE_HG, 'ip -force -batch -': '' });
    const dp = new Dataplane({ runner });
    const codes = (r: { newErrors: Array<{ code: string; peer?: string }> }) => r.newErrors.map((e) => `${e.code} ${e.peer}`);
    const first = await dp.apply(s);
    assert.deepEqual(codes(first), ['PODNET_PEER_UNREACHABLE node3']);
    const second = await dp.apply(s);
    assert.equal(second.errors.length, 1, 'still counted');
    assert.deepEqual(codes(second), [], 'but not new');
    const moved = await dp.apply({ ...s, peers: [...spec('host-gw').peers, { ...behind, nodeIP: '192.168.3.13' }] });
    assert.deepEqual(codes(moved), ['PODNET_PEER_UNREACHABLE node3'], 'a changed message is new');
    await dp.apply(spec('host-gw'));
    assert.deepEqual(codes(await dp.apply(s)), ['PODNET_PEER_UNREACHABLE node3'], 'gone and back is new');
  });

  test('a read that fails changes nothing and says why', async () => {
    const { runner, calls } = fake({ 'ip -j addr show dev eth0': ETH0 });
    const r = await new Dataplane({ runner }).apply(spec('host-gw'));
    assert.deepEqual(writes(calls), []);
    assert.equal(r.errors[0]!.code, 'PODNET_READ_FAILED');
  });

  test('a missing underlay leaves routes alone and is reported', async () => {
    const { runner, calls } = fake({ ...reads, 'ip -j addr show dev eth0': '', 'nft list table inet podnet': TABLE_HG });
    const wrapped: Runner = async (file, args, opts) => {
      if (args.join(' ') === '-j addr show dev eth0') throw new CommandError([file, ...args], 1, 'Device "eth0" does not exist.');
      return runner(file, args, opts);
    };
    const r = await new Dataplane({ runner: wrapped }).apply(spec('host-gw'));
    assert.deepEqual(writes(calls), []);
    assert.equal(r.errors[0]!.code, 'PODNET_NO_UNDERLAY');
  });

  test('a failed batch line is reported with its reason, and counts are what really changed', async () => {
    let routes = '[]';
    const { runner } = fake({
      ...reads,
      'nft list table inet podnet': TABLE_HG,
      'ip -j -4 route show table main proto 112': () => routes,
    });
    const wrapped: Runner = async (file, args, opts) => {
      if (args.join(' ') === '-force -batch -') {
        routes = '[]';
        throw new CommandError([file, ...args], 2, 'RTNETLINK answers: Network is unreachable\nCommand failed -:1\n');
      }
      return runner(file, args, opts);
    };
    const r = await new Dataplane({ runner: wrapped }).apply(spec('host-gw'));
    assert.deepEqual(r.routes, { added: 0, changed: 0, removed: 0 });
    assert.equal(r.errors.length, 1);
    assert.equal(
      r.errors[0]!.message,
      'ip -batch: 1 of 1 commands failed: "route replace 10.244.2.0/24 via 192.168.1.12 dev eth0 proto 112": RTNETLINK answers: Network is unreachable',
    );
  });
});

describe('batchFailures', () => {
  const cases: Array<{ name: string; stderr: string; want: string[] }> = [
    { name: 'pairs each failure with its line', stderr: 'RTNETLINK answers: File exists\nCommand failed -:2\n', want: ['"b": RTNETLINK answers: File exists'] },
    { name: 'keeps a reason without a line number', stderr: 'RTNETLINK answers: No such file or directory\n', want: ['RTNETLINK answers: No such file or directory'] },
    { name: 'says something when stderr is empty', stderr: '', want: ['ip -batch failed'] },
  ];
  for (const c of cases) test(c.name, () => assert.deepEqual(batchFailures('ip', ['a', 'b', 'c'], c.stderr), c.want));
});

describe('tableChains', () => {
  test('splits `nft list table` into its chains; sets and quoted braces do not derail it', () => {
    const listing = [
      'table inet podnet {',
      '\tset peers {',
      '\t\ttype ipv4_addr',
      '\t\telements = { 192.168.1.12,',
      '\t\t\t     192.168.1.13 }',
      '\t}',
      '',
      '\tchain egress-masq {',
      '\t\ttype nat hook postrouting priority srcnat; policy accept;',
      '\t\tip saddr { 10.0.0.1, 10.0.0.2 } accept comment "a } brace"',
      '\t}',
      '',
      '\tchain "vxlan-notrack-in" {',
      '\t\tudp dport 4789 notrack',
      '\t}',
      '}',
      '',
    ].join('\n');
    const chains = tableChains(listing);
    assert.deepEqual([...chains.keys()], ['egress-masq', 'vxlan-notrack-in']);
    assert.equal(chains.get('egress-masq'), '\tchain egress-masq {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n\t\tip saddr { 10.0.0.1, 10.0.0.2 } accept comment "a } brace"\n\t}\n');
    assert.equal(chains.get('vxlan-notrack-in'), '\tchain "vxlan-notrack-in" {\n\t\tudp dport 4789 notrack\n\t}\n');
    assert.deepEqual([...tableChains('').keys()], []);
  });
});
