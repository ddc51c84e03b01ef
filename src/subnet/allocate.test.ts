import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { formatPrefix, parseSubnet } from '../netaddr/index.ts';
import { checkAttrs, chooseSubnet, decodeRecord, encodeRecord, exhausted, parseConfig, parseSubnetKey, subnetKey, subnetOf } from './allocate.ts';

describe('parseConfig', () => {
  const good: Array<[string, Parameters<typeof parseConfig>[0], { clusterCIDR: string; subnetLen: number; count: bigint }]> = [
    ['defaults', {}, { clusterCIDR: '10.244.0.0/16', subnetLen: 24, count: 256n }],
    ['a /22 of /24s', { clusterCIDR: '10.244.0.0/22' }, { clusterCIDR: '10.244.0.0/22', subnetLen: 24, count: 4n }],
    ['one subnet', { clusterCIDR: '10.1.0.0/24', subnetLen: 24 }, { clusterCIDR: '10.1.0.0/24', subnetLen: 24, count: 1n }],
    ['/26 per node', { subnetLen: 26 }, { clusterCIDR: '10.244.0.0/16', subnetLen: 26, count: 1024n }],
    ['IPv6', { clusterCIDR: 'fd00:10:244::/56', subnetLen: 64 }, { clusterCIDR: 'fd00:10:244::/56', subnetLen: 64, count: 256n }],
  ];
  for (const [name, input, want] of good) {
    test(`accepts ${name}`, () => {
      const c = parseConfig(input);
      assert.deepEqual({ ...c.config, count: c.count }, want);
    });
  }
  const bad: Array<[string, Parameters<typeof parseConfig>[0], RegExp]> = [
    ['host bits set', { clusterCIDR: '10.244.1.0/16' }, /has host bits set/],
    ['not a CIDR', { clusterCIDR: '10.244.0.0' }, /is not a network/],
    ['a node prefix shorter than the cluster', { clusterCIDR: '10.244.0.0/16', subnetLen: 8 }, /\/8 does not fit cluster CIDR 10\.244\.0\.0\/16: use a length from \/16 to \/30/],
    ['a node prefix too long to hold pods', { subnetLen: 31 }, /\/31 does not fit/],
    ['a fractional length', { subnetLen: 24.5 }, /does not fit/],
  ];
  for (const [name, input, msg] of bad) {
    test(`refuses ${name} with PODNET_SUBNET_INVALID`, () => {
      assert.throws(() => parseConfig(input), { code: 'PODNET_SUBNET_INVALID', message: msg });
    });
  }
});

describe('subnet keys', () => {
  for (const cidr of ['10.244.1.0/24', '10.244.0.0/24', 'fd00:10:244:1::/64', '10.0.0.64/26']) {
    test(`${cidr} round-trips through its key`, () => {
      const key = subnetKey(parseSubnet(cidr));
      assert.ok(!key.includes('/'));
      assert.equal(formatPrefix(parseSubnetKey(key)!), cidr);
    });
  }
  test('the key of 10.244.1.0/24 is 10.244.1.0-24, as flannel writes it', () => {
    assert.equal(subnetKey(parseSubnet('10.244.1.0/24')), '10.244.1.0-24');
  });
  for (const junk of ['', '10.244.1.0', '10.244.1.0-', 'x-24', '10.244.1.5-24']) {
    test(`${JSON.stringify(junk)} is not a subnet key`, () => assert.equal(parseSubnetKey(junk), undefined));
  }
});

describe('subnetOf', () => {
  const cfg = parseConfig();
  const cases: Array<[string, boolean]> = [
    ['10.244.7.0/24', true],
    ['10.244.0.0/24', true],
    ['10.244.7.0/25', false],
    ['10.245.7.0/24', false],
    ['10.244.7.1/24', false],
    ['junk', false],
  ];
  for (const [text, ok] of cases) test(`${text} is ${ok ? '' : 'not '}one of the cluster's subnets`, () => assert.equal(subnetOf(cfg, text) !== undefined, ok));
});

describe('chooseSubnet', () => {
  const keys = (...subnets: string[]): Set<string> => new Set(subnets.map((s) => s.replace('/', '-')));
  const pick = (cfg: ReturnType<typeof parseConfig>, taken: Set<string>, opts = {}) => {
    const p = chooseSubnet(cfg, taken, opts);
    return p && formatPrefix(p);
  };
  const def = parseConfig();
  const small = parseConfig({ clusterCIDR: '10.244.0.0/22' });
  const cases: Array<{ name: string; cfg: ReturnType<typeof parseConfig>; taken: Set<string>; opts?: Parameters<typeof chooseSubnet>[2]; want: string | undefined }> = [
    { name: 'the first node gets 10.244.1.0/24', cfg: def, taken: keys(), want: '10.244.1.0/24' },
    { name: 'the lowest free one', cfg: def, taken: keys('10.244.1.0/24', '10.244.2.0/24', '10.244.4.0/24'), want: '10.244.3.0/24' },
    { name: 'the .0 block comes last', cfg: small, taken: keys('10.244.1.0/24', '10.244.2.0/24', '10.244.3.0/24'), want: '10.244.0.0/24' },
    { name: 'none when all are taken', cfg: small, taken: keys('10.244.0.0/24', '10.244.1.0/24', '10.244.2.0/24', '10.244.3.0/24'), want: undefined },
    { name: 'a free preferred subnet', cfg: def, taken: keys('10.244.1.0/24'), opts: { preferred: '10.244.9.0/24' }, want: '10.244.9.0/24' },
    { name: 'not a taken preferred subnet', cfg: def, taken: keys('10.244.1.0/24'), opts: { preferred: '10.244.1.0/24' }, want: '10.244.2.0/24' },
    { name: 'not a preferred subnet outside the cluster', cfg: def, taken: keys(), opts: { preferred: '10.9.9.0/24' }, want: '10.244.1.0/24' },
    { name: 'not a preferred subnet of the wrong size', cfg: def, taken: keys(), opts: { preferred: '10.244.8.0/23' }, want: '10.244.1.0/24' },
    { name: 'a random one of the next few when spreading', cfg: def, taken: keys('10.244.1.0/24'), opts: { spread: 4, random: () => 0.99 }, want: '10.244.5.0/24' },
    { name: 'the only one in a single-subnet cluster', cfg: parseConfig({ clusterCIDR: '10.1.0.0/24' }), taken: keys(), want: '10.1.0.0/24' },
    { name: 'IPv6', cfg: parseConfig({ clusterCIDR: 'fd00::/48', subnetLen: 64 }), taken: keys(), want: 'fd00:0:0:1::/64' },
  ];
  for (const c of cases) test(c.name, () => assert.equal(pick(c.cfg, c.taken, c.opts), c.want));

  test('a huge cluster CIDR costs nothing: only taken + spread candidates are walked', () => {
    const cfg = parseConfig({ clusterCIDR: 'fd00::/32', subnetLen: 64 });
    assert.equal(cfg.count, 1n << 32n);
    const started = performance.now();
    assert.equal(pick(cfg, keys()), 'fd00:0:0:1::/64');
    assert.ok(performance.now() - started < 50);
  });
});

describe('exhausted', () => {
  test('names the CIDR, the number of subnets and nodes, the holders, and what to do', () => {
    const err = exhausted(parseConfig({ clusterCIDR: '10.244.0.0/22' }), ['a', 'b', 'c', 'd'], 300);
    assert.equal(err.code, 'PODNET_SUBNET_EXHAUSTED');
    assert.equal(
      err.message,
      'no free /24 left in cluster CIDR 10.244.0.0/22: all 4 subnets are leased, held by 4 nodes (a, b, c, d). ' +
        'Remove nodes that are gone (their subnet is freed at once by releasing it or when its lease runs out (TTL 300 s)), ' +
        'or give the cluster a larger CIDR or the nodes a longer prefix (e.g. /25).',
    );
  });
});

describe('checkAttrs', () => {
  const ok = { nodeName: 'node1', nodeIP: '192.168.1.11', backendType: 'host-gw' };
  const cases: Array<[string, object, RegExp | undefined]> = [
    ['good attributes', ok, undefined],
    ['an IPv6 node IP', { ...ok, nodeIP: 'fd00::11' }, undefined],
    ['backend data', { ...ok, backendData: { vtepMAC: '0e:00:00:00:00:01' } }, undefined],
    ['an upper-case node name', { ...ok, nodeName: 'Node1' }, /DNS subdomain/],
    ['a node name with a slash', { ...ok, nodeName: 'a/b' }, /DNS subdomain/],
    ['a bad node IP', { ...ok, nodeIP: '192.168.1.256' }, /not an IP address/],
    ['no backend type', { ...ok, backendType: '' }, /no backend type/],
    ['backend data that is a list', { ...ok, backendData: [1] }, /must be an object/],
  ];
  for (const [name, a, err] of cases) {
    test(`${err ? 'refuses' : 'accepts'} ${name}`, () => {
      if (err) assert.throws(() => checkAttrs(a as never), { code: 'PODNET_SUBNET_BAD_ATTRS', message: err });
      else checkAttrs(a as never);
    });
  }
});

describe('lease records', () => {
  test('round-trip, with the revision stamped on reading', () => {
    const text = encodeRecord(parseSubnet('10.244.3.0/24'), { nodeName: 'node3', nodeIP: '192.168.1.13', backendType: 'vxlan', backendData: { vtepMAC: 'aa' } });
    assert.deepEqual(decodeRecord(text, 42), { subnet: '10.244.3.0/24', nodeName: 'node3', nodeIP: '192.168.1.13', backendType: 'vxlan', backendData: { vtepMAC: 'aa' }, revision: '42' });
  });
  for (const junk of ['', 'null', '[]', '{"subnet":"10.244.3.0/24"}', '{not json']) {
    test(`${JSON.stringify(junk)} is not a record`, () => assert.equal(decodeRecord(junk, 1), undefined));
  }
});
