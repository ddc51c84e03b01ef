import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CniError } from '../cni/errors.ts';
import type { CniArgs } from '../cni/types.ts';
import { formatIP, formatPrefix } from '../netaddr/index.ts';
import { DEFAULT_DATA_DIR, parseIpamConf, type Range } from './config.ts';

const top = (ipam: unknown, extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  cniVersion: '1.1.0',
  name: 'podnet',
  type: 'podnet-bridge',
  ipam,
  ...extra,
});

/** A range as text, to compare in one assertion. */
const show = (r: Range) => ({
  subnet: formatPrefix(r.subnet),
  start: formatIP(r.start),
  end: formatIP(r.end),
  gateway: r.gateway ? formatIP(r.gateway) : undefined,
});

describe('parseIpamConf rejects invalid configurations with code 7', () => {
  const v4 = { subnet: '10.244.1.0/24' };
  const cases: Array<{ name: string; top: Record<string, unknown>; msg: RegExp }> = [
    { name: 'no ipam section', top: { name: 'podnet' }, msg: /no "ipam" section/ },
    { name: 'neither ranges, subnet nor subnetFile', top: top({ type: 'podnet-ipam' }), msg: /needs "ranges", "subnet" or "subnetFile"/ },
    { name: 'a relative subnetFile', top: top({ subnetFile: 'subnet.json' }), msg: /subnetFile "subnet\.json" must be an absolute path/ },
    { name: 'a relative resolvConf', top: top({ ...v4, resolvConf: 'resolv.conf' }), msg: /resolvConf "resolv\.conf" must be an absolute path/ },
    { name: 'an empty list of range sets', top: top({ ranges: [] }), msg: /ipam\.ranges must be a non-empty list/ },
    { name: 'an empty range set', top: top({ ranges: [[]] }), msg: /ipam\.ranges\[0\] must be a non-empty list/ },
    { name: 'a range that is not an object', top: top({ ranges: [['10.0.0.0/24']] }), msg: /ipam\.ranges\[0\]\[0\] must be an object/ },
    { name: 'a range without a subnet', top: top({ ranges: [[{ rangeStart: '10.0.0.2' }]] }), msg: /ipam\.ranges\[0\]\[0\]\.subnet is required/ },
    { name: 'a subnet that is not a CIDR', top: top({ ranges: [[{ subnet: '10.0.0.0' }]] }), msg: /"10\.0\.0\.0" is not a CIDR/ },
    { name: 'a subnet that is a number', top: top({ ranges: [[{ subnet: 24 }]] }), msg: /subnet must be a string/ },
    { name: 'a /31 subnet', top: top({ ranges: [[{ subnet: '10.0.0.0/31' }]] }), msg: /too small to allocate from/ },
    {
      name: 'a rangeStart outside the subnet',
      top: top({ ranges: [[{ ...v4, rangeStart: '10.244.2.10' }]] }),
      msg: /rangeStart 10\.244\.2\.10 is not in 10\.244\.1\.0\/24/,
    },
    {
      name: 'a rangeEnd outside the subnet',
      top: top({ ranges: [[{ ...v4, rangeEnd: '10.244.2.10' }]] }),
      msg: /rangeEnd 10\.244\.2\.10 is not in 10\.244\.1\.0\/24/,
    },
    {
      name: 'a gateway outside the subnet',
      top: top({ ranges: [[{ ...v4, gateway: '10.244.0.1' }]] }),
      msg: /gateway 10\.244\.0\.1 is not in/,
    },
    { name: 'an IPv6 gateway for an IPv4 subnet', top: top({ ranges: [[{ ...v4, gateway: 'fd00::1' }]] }), msg: /gateway fd00::1 is not in/ },
    { name: 'a rangeStart that is not an address', top: top({ ranges: [[{ ...v4, rangeStart: '10.244.1.x' }]] }), msg: /rangeStart "10\.244\.1\.x" is not an IP address/ },
    {
      name: 'a range that starts at the network address',
      top: top({ ranges: [[{ ...v4, rangeStart: '10.244.1.0' }]] }),
      msg: /includes the network or broadcast address/,
    },
    {
      name: 'a range that ends at the broadcast address',
      top: top({ ranges: [[{ ...v4, rangeEnd: '10.244.1.255' }]] }),
      msg: /includes the network or broadcast address/,
    },
    {
      name: 'a rangeStart after rangeEnd',
      top: top({ ranges: [[{ ...v4, rangeStart: '10.244.1.200', rangeEnd: '10.244.1.100' }]] }),
      msg: /rangeStart 10\.244\.1\.200 is after rangeEnd 10\.244\.1\.100/,
    },
    {
      name: 'two overlapping ranges in one subnet',
      top: top({
        ranges: [
          [
            { ...v4, rangeStart: '10.244.1.10', rangeEnd: '10.244.1.100' },
            { ...v4, rangeStart: '10.244.1.50', rangeEnd: '10.244.1.150' },
          ],
        ],
      }),
      msg: /ranges overlap: 10\.244\.1\.0\/24 and 10\.244\.1\.0\/24/,
    },
    {
      name: 'a subnet inside another',
      top: top({ ranges: [[{ subnet: '10.244.0.0/16', rangeEnd: '10.244.0.200' }, { subnet: '10.244.3.0/24' }]] }),
      msg: /ranges overlap: 10\.244\.0\.0\/16 and 10\.244\.3\.0\/24/,
    },
    {
      name: 'the same subnet in two range sets',
      top: top({ ranges: [[v4], [v4]] }),
      msg: /ranges overlap/,
    },
    {
      name: 'a range set that mixes IPv4 and IPv6',
      top: top({ ranges: [[v4, { subnet: 'fd00::/64' }]] }),
      msg: /mixes IPv4 and IPv6/,
    },
    { name: 'a relative dataDir', top: top({ ranges: [[v4]], dataDir: 'var/lib/cni' }), msg: /dataDir "var\/lib\/cni" must be an absolute path/ },
    { name: 'a dataDir with a newline', top: top({ ranges: [[v4]], dataDir: '/var/lib\n/cni' }), msg: /must be an absolute path/ },
    { name: 'routes that are not a list', top: top({ ranges: [[v4]], routes: { dst: '0.0.0.0/0' } }), msg: /ipam\.routes must be a list/ },
    { name: 'a route without a dst', top: top({ ranges: [[v4]], routes: [{ gw: '10.244.1.1' }] }), msg: /ipam\.routes: route without a dst/ },
    { name: 'a route whose dst is not a CIDR', top: top({ ranges: [[v4]], routes: [{ dst: 'default' }] }), msg: /ipam\.routes: bad route/ },
    { name: 'a route with a bad gw', top: top({ ranges: [[v4]], routes: [{ dst: '0.0.0.0/0', gw: '10.244.1.256' }] }), msg: /ipam\.routes: bad route/ },
    {
      name: 'a route with a negative metric',
      top: top({ ranges: [[v4]], routes: [{ dst: '0.0.0.0/0', priority: -1 }] }),
      msg: /ipam\.routes: route priority must be a whole number/,
    },
    {
      name: 'a requested IP in none of the ranges',
      top: top({ ranges: [[v4]] }, { runtimeConfig: { ips: ['10.245.0.5'] } }),
      msg: /requested IP 10\.245\.0\.5 is in none of the configured ranges/,
    },
    {
      name: 'a requested IP that is not an address',
      top: top({ ranges: [[v4]] }, { runtimeConfig: { ips: ['pod-5'] } }),
      msg: /requested IP "pod-5" is not an address/,
    },
  ];
  for (const c of cases) {
    test(`${c.name} is refused with a message that says what is wrong`, () => {
      assert.throws(
        () => parseIpamConf(c.top, undefined),
        (err: unknown) => {
          assert.ok(err instanceof CniError, `expected a CniError, got ${String(err)}`);
          assert.equal(err.cniCode, 7, err.message);
          assert.match(err.message, c.msg);
          return true;
        },
      );
    });
  }
});

describe('parseIpamConf fills in defaults', () => {
  const cases: Array<{ name: string; range: Record<string, unknown>; want: ReturnType<typeof show> }> = [
    {
      name: 'an IPv4 /24 allocates from network+1 to broadcast-1 with the gateway at network+1',
      range: { subnet: '10.244.1.0/24' },
      want: { subnet: '10.244.1.0/24', start: '10.244.1.1', end: '10.244.1.254', gateway: '10.244.1.1' },
    },
    {
      name: 'an IPv4 /30 keeps its two host addresses',
      range: { subnet: '192.168.0.4/30' },
      want: { subnet: '192.168.0.4/30', start: '192.168.0.5', end: '192.168.0.6', gateway: '192.168.0.5' },
    },
    {
      name: 'an IPv6 range runs to the last address (there is no broadcast)',
      range: { subnet: 'fd00:10:244:1::/64' },
      want: { subnet: 'fd00:10:244:1::/64', start: 'fd00:10:244:1::1', end: 'fd00:10:244:1:ffff:ffff:ffff:ffff', gateway: 'fd00:10:244:1::1' },
    },
    {
      name: 'a subnet with host bits set is masked, as host-local does',
      range: { subnet: '10.244.1.7/24' },
      want: { subnet: '10.244.1.0/24', start: '10.244.1.1', end: '10.244.1.254', gateway: '10.244.1.1' },
    },
    {
      name: 'explicit start, end and gateway are kept',
      range: { subnet: '10.10.0.0/16', rangeStart: '10.10.1.20', rangeEnd: '10.10.3.50', gateway: '10.10.0.254' },
      want: { subnet: '10.10.0.0/16', start: '10.10.1.20', end: '10.10.3.50', gateway: '10.10.0.254' },
    },
    {
      name: 'an explicit rangeStart leaves the gateway at network+1',
      range: { subnet: '10.244.1.0/24', rangeStart: '10.244.1.100' },
      want: { subnet: '10.244.1.0/24', start: '10.244.1.100', end: '10.244.1.254', gateway: '10.244.1.1' },
    },
    {
      name: 'empty strings count as unset',
      range: { subnet: '10.244.1.0/24', rangeStart: '', gateway: '' },
      want: { subnet: '10.244.1.0/24', start: '10.244.1.1', end: '10.244.1.254', gateway: '10.244.1.1' },
    },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const conf = parseIpamConf(top({ type: 'podnet-ipam', ranges: [[c.range]] }), undefined);
      assert.equal(conf.rangeSets.length, 1);
      assert.deepEqual(conf.rangeSets[0]?.map(show), [c.want]);
    });
  }

  test('the network name, default dataDir, no routes and no requests are filled in', () => {
    const conf = parseIpamConf(top({ ranges: [[{ subnet: '10.244.1.0/24' }]] }), undefined);
    assert.equal(conf.network, 'podnet');
    assert.equal(conf.dataDir, DEFAULT_DATA_DIR);
    assert.deepEqual(conf.routes, []);
    assert.deepEqual(conf.requested, []);
    assert.equal(conf.dns, undefined);
  });

  test('routes and dataDir are taken as given', () => {
    const conf = parseIpamConf(
      top({ ranges: [[{ subnet: '10.244.1.0/24' }]], routes: [{ dst: '0.0.0.0/0' }, { dst: '10.96.0.0/12', gw: '10.244.1.254' }], dataDir: '/run/podnet/ipam' }),
      undefined,
    );
    assert.deepEqual(conf.routes, [{ dst: '0.0.0.0/0' }, { dst: '10.96.0.0/12', gw: '10.244.1.254' }]);
    assert.equal(conf.dataDir, '/run/podnet/ipam');
  });

  test('two range sets (IPv4 and IPv6) and several ranges in one set are kept in order', () => {
    const conf = parseIpamConf(
      top({
        ranges: [
          [{ subnet: '10.244.1.0/24', rangeEnd: '10.244.1.100' }, { subnet: '10.244.1.0/24', rangeStart: '10.244.1.101' }, { subnet: '172.16.5.0/24' }],
          [{ subnet: 'fd00::/64' }],
        ],
      }),
      undefined,
    );
    assert.deepEqual(
      conf.rangeSets.map((set) => set.map((r) => `${formatIP(r.start)}-${formatIP(r.end)}`)),
      [['10.244.1.1-10.244.1.100', '10.244.1.101-10.244.1.254', '172.16.5.1-172.16.5.254'], ['fd00::1-fd00::ffff:ffff:ffff:ffff']],
    );
  });

  test('the legacy top-level subnet form gives one range set of one range', () => {
    const conf = parseIpamConf(
      top({ type: 'host-local', subnet: '10.10.0.0/16', rangeStart: '10.10.1.20', rangeEnd: '10.10.3.50', gateway: '10.10.0.254', routes: [{ dst: '0.0.0.0/0' }] }),
      undefined,
    );
    assert.deepEqual(conf.rangeSets.map((set) => set.map(show)), [
      [{ subnet: '10.10.0.0/16', start: '10.10.1.20', end: '10.10.3.50', gateway: '10.10.0.254' }],
    ]);
    assert.deepEqual(conf.routes, [{ dst: '0.0.0.0/0' }]);
  });

  test('errors in the legacy form name the ipam section', () => {
    assert.throws(() => parseIpamConf(top({ subnet: '10.10.0.0/16', rangeStart: '10.11.0.1' }), undefined), /ipam\.rangeStart 10\.11\.0\.1 is not in/);
  });

  test('requested IPs are gathered from CNI_ARGS, runtimeConfig.ips and args.cni.ips', () => {
    const args: CniArgs = {
      command: 'ADD',
      containerId: 'c1',
      netns: '/var/run/netns/c1',
      ifName: 'eth0',
      args: new Map([['IP', '10.244.1.10,fd00::10']]),
      path: [],
      stdin: Buffer.alloc(0),
      env: {},
    };
    const conf = parseIpamConf(
      top({ ranges: [[{ subnet: '10.244.1.0/24' }], [{ subnet: 'fd00::/64' }]] }, { runtimeConfig: { ips: ['10.244.1.11/24'] }, args: { cni: { ips: ['10.244.1.12'] } } }),
      args,
    );
    assert.deepEqual(conf.requested.map(formatIP), ['10.244.1.10', 'fd00::10', '10.244.1.11', '10.244.1.12']);
  });
});

describe('parseIpamConf with a subnetFile', () => {
  let dir = '';
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'podnet-ipam-config-'));
  });
  after(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  test('takes the node subnet from the file the agent wrote', () => {
    const path = join(dir, 'subnet.json');
    writeFileSync(path, JSON.stringify({ subnet: '10.244.3.0/24' }));
    const conf = parseIpamConf(top({ type: 'podnet-ipam', subnetFile: path }), undefined);
    assert.deepEqual(conf.rangeSets.map((set) => set.map(show)), [
      [{ subnet: '10.244.3.0/24', start: '10.244.3.1', end: '10.244.3.254', gateway: '10.244.3.1' }],
    ]);
  });

  test('a missing file asks the runtime to try again later (code 11)', () => {
    assert.throws(
      () => parseIpamConf(top({ subnetFile: join(dir, 'absent.json') }), undefined),
      (err: unknown) => err instanceof CniError && err.cniCode === 11 && /does not exist yet/.test(err.message) && /agent/.test(err.details),
    );
  });

  test('a file that is not JSON is a decoding failure (code 6)', () => {
    const path = join(dir, 'garbled.json');
    writeFileSync(path, '{"subnet": ');
    assert.throws(() => parseIpamConf(top({ subnetFile: path }), undefined), (err: unknown) => err instanceof CniError && err.cniCode === 6);
  });

  test('a file without a subnet is invalid (code 7)', () => {
    const path = join(dir, 'empty.json');
    writeFileSync(path, JSON.stringify({ network: '10.244.0.0/16' }));
    assert.throws(() => parseIpamConf(top({ subnetFile: path }), undefined), (err: unknown) => err instanceof CniError && err.cniCode === 7 && /has no "subnet"/.test(err.message));
  });

  test('a bad subnet in the file names the file', () => {
    const path = join(dir, 'bad.json');
    writeFileSync(path, JSON.stringify({ subnet: '10.244.3.0' }));
    assert.throws(() => parseIpamConf(top({ subnetFile: path }), undefined), (err: unknown) => err instanceof CniError && err.cniCode === 7 && err.message.includes(path));
  });
});
