import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { CniError } from './errors.ts';
import type { CniResult } from './types.ts';
import { compareVersions, formatResult, parseResult, SUPPORTED_VERSIONS } from './version.ts';

/** A 1.1.0 result with every optional field that some version drops. */
const full: CniResult = {
  cniVersion: '1.1.0',
  interfaces: [
    { name: 'cni0', mac: '0a:58:0a:f4:01:01' },
    { name: 'pnv0123456789ab', mac: '0a:58:0a:f4:01:02', mtu: 1450 },
    { name: 'eth0', mac: '0a:58:0a:f4:01:05', mtu: 1450, sandbox: '/var/run/netns/pod1', socketPath: '/run/sock', pciID: '0000:00:1f.6' },
  ],
  ips: [
    { address: '10.244.1.5/24', gateway: '10.244.1.1', interface: 2 },
    { address: 'fd00:10:244:1::5/64', gateway: 'fd00:10:244:1::1', interface: 2 },
  ],
  routes: [{ dst: '0.0.0.0/0', gw: '10.244.1.1', mtu: 1400, advmss: 1360, priority: 100, table: 254, scope: 0 }],
  dns: { nameservers: ['10.96.0.10'], search: ['default.svc.cluster.local'] },
};

/** Is CniError with the given spec code. */
const cniCode = (code: number) => (err: unknown) => err instanceof CniError && err.cniCode === code;

describe('formatResult', () => {
  test('for 0.4.0 each IP gets a version field of "4" or "6"', () => {
    const out = formatResult(full, '0.4.0');
    assert.equal(out.cniVersion, '0.4.0');
    assert.deepEqual(out.ips, [
      { version: '4', address: '10.244.1.5/24', gateway: '10.244.1.1', interface: 2 },
      { version: '6', address: 'fd00:10:244:1::5/64', gateway: 'fd00:10:244:1::1', interface: 2 },
    ]);
  });

  for (const version of ['0.3.0', '0.3.1', '0.4.0', '1.0.0']) {
    test(`for ${version} interfaces lose mtu, socketPath and pciID and routes lose their 1.1.0 attributes`, () => {
      const out = formatResult(full, version);
      assert.deepEqual(out.interfaces, [
        { name: 'cni0', mac: '0a:58:0a:f4:01:01' },
        { name: 'pnv0123456789ab', mac: '0a:58:0a:f4:01:02' },
        { name: 'eth0', mac: '0a:58:0a:f4:01:05', sandbox: '/var/run/netns/pod1' },
      ]);
      assert.deepEqual(out.routes, [{ dst: '0.0.0.0/0', gw: '10.244.1.1' }]);
    });
  }

  test('for 1.0.0 IPs carry no version field', () => {
    const out = formatResult(full, '1.0.0');
    assert.equal(out.cniVersion, '1.0.0');
    assert.deepEqual(out.ips, [
      { address: '10.244.1.5/24', gateway: '10.244.1.1', interface: 2 },
      { address: 'fd00:10:244:1::5/64', gateway: 'fd00:10:244:1::1', interface: 2 },
    ]);
  });

  test('for 1.1.0 interface mtu, socketPath, pciID and every route attribute are kept', () => {
    const out = formatResult(full, '1.1.0');
    assert.deepEqual(out, {
      cniVersion: '1.1.0',
      interfaces: full.interfaces,
      ips: full.ips,
      routes: full.routes,
      dns: full.dns,
    });
  });

  test('a result without routes or dns prints no routes and an empty dns object', () => {
    const out = formatResult({ cniVersion: '1.1.0', ips: [{ address: '10.0.0.2/24' }] }, '1.1.0');
    assert.deepEqual(out, { cniVersion: '1.1.0', ips: [{ address: '10.0.0.2/24' }], dns: {} });
  });

  for (const version of ['0.2.0', '2.0.0', '', '1.1']) {
    test(`refuses to print a result as unsupported version ${JSON.stringify(version)} with code 1`, () => {
      assert.throws(() => formatResult(full, version), cniCode(1));
    });
  }
});

describe('parseResult', () => {
  const cases: Array<{ name: string; raw: Record<string, unknown>; want: CniResult }> = [
    {
      name: 'a 0.3.1 result, ignoring the per-IP version field',
      raw: {
        cniVersion: '0.3.1',
        interfaces: [{ name: 'eth0', mac: '0a:58:00:00:00:01', sandbox: '/var/run/netns/x' }],
        ips: [{ version: '4', address: '10.1.0.2/24', gateway: '10.1.0.1', interface: 0 }],
        routes: [{ dst: '0.0.0.0/0' }],
        dns: {},
      },
      want: {
        cniVersion: '0.3.1',
        interfaces: [{ name: 'eth0', mac: '0a:58:00:00:00:01', sandbox: '/var/run/netns/x' }],
        ips: [{ address: '10.1.0.2/24', gateway: '10.1.0.1', interface: 0 }],
        routes: [{ dst: '0.0.0.0/0' }],
        dns: {},
      },
    },
    {
      name: 'a 0.4.0 result with an IPv6 address',
      raw: { cniVersion: '0.4.0', ips: [{ version: '6', address: 'fd00::2/64', gateway: 'fd00::1' }] },
      want: { cniVersion: '0.4.0', ips: [{ address: 'fd00::2/64', gateway: 'fd00::1' }] },
    },
    {
      name: 'a 1.0.0 result',
      raw: { cniVersion: '1.0.0', ips: [{ address: '10.1.0.2/24' }], routes: [{ dst: '10.96.0.0/12', gw: '10.1.0.1' }] },
      want: { cniVersion: '1.0.0', ips: [{ address: '10.1.0.2/24' }], routes: [{ dst: '10.96.0.0/12', gw: '10.1.0.1' }] },
    },
    {
      name: 'a 1.1.0 result with interface mtu and route attributes',
      raw: {
        cniVersion: '1.1.0',
        interfaces: [{ name: 'eth0', mtu: 1450, socketPath: '/s', pciID: '0000:01:00.0' }],
        ips: [{ address: '10.1.0.2/24', interface: 0 }],
        routes: [{ dst: '0.0.0.0/0', gw: '10.1.0.1', mtu: 1400, advmss: 1360, priority: 5, table: 100, scope: 0 }],
        dns: { nameservers: ['10.96.0.10'] },
      },
      want: {
        cniVersion: '1.1.0',
        interfaces: [{ name: 'eth0', mtu: 1450, socketPath: '/s', pciID: '0000:01:00.0' }],
        ips: [{ address: '10.1.0.2/24', interface: 0 }],
        routes: [{ dst: '0.0.0.0/0', gw: '10.1.0.1', mtu: 1400, advmss: 1360, priority: 5, table: 100, scope: 0 }],
        dns: { nameservers: ['10.96.0.10'] },
      },
    },
  ];
  for (const c of cases) {
    test(`reads ${c.name}`, () => {
      assert.deepEqual(parseResult(c.raw), c.want);
    });
  }

  for (const version of SUPPORTED_VERSIONS) {
    test(`what formatResult prints for ${version} parses back`, () => {
      const back = parseResult(JSON.parse(JSON.stringify(formatResult(full, version))));
      assert.equal(back.cniVersion, version);
      assert.deepEqual(back.ips, full.ips);
    });
  }

  const unsupported: unknown[] = ['0.2.0', '0.1.0', '2.0.0', '1.1', 110, undefined, null];
  for (const v of unsupported) {
    test(`rejects cniVersion ${JSON.stringify(v) ?? 'undefined'} with code 1`, () => {
      assert.throws(() => parseResult({ cniVersion: v, ips: [] }), cniCode(1));
    });
  }

  const malformed: Array<{ name: string; raw: unknown }> = [
    { name: 'a result that is not an object', raw: [] },
    { name: 'ips that are not a list', raw: { cniVersion: '1.0.0', ips: {} } },
    { name: 'an IP without an address', raw: { cniVersion: '1.0.0', ips: [{ gateway: '10.0.0.1' }] } },
    { name: 'an IP address without a prefix length', raw: { cniVersion: '1.0.0', ips: [{ address: '10.0.0.2' }] } },
    { name: 'a bad gateway', raw: { cniVersion: '1.0.0', ips: [{ address: '10.0.0.2/24', gateway: '10.0.0.300' }] } },
    { name: 'an interface without a name', raw: { cniVersion: '1.0.0', interfaces: [{ mac: 'x' }] } },
    { name: 'a route without a dst', raw: { cniVersion: '1.0.0', routes: [{ gw: '10.0.0.1' }] } },
    { name: 'a route with a bad gw', raw: { cniVersion: '1.0.0', routes: [{ dst: '0.0.0.0/0', gw: 'nope' }] } },
    { name: 'a route with a fractional mtu', raw: { cniVersion: '1.1.0', routes: [{ dst: '0.0.0.0/0', mtu: 1.5 }] } },
  ];
  for (const c of malformed) {
    test(`rejects ${c.name} as a decoding failure (code 6)`, () => {
      assert.throws(() => parseResult(c.raw), cniCode(6));
    });
  }
});

describe('compareVersions', () => {
  test('compares dotted versions numerically', () => {
    assert.ok(compareVersions('0.4.0', '1.0.0') < 0);
    assert.ok(compareVersions('1.1.0', '1.0.0') > 0);
    assert.ok(compareVersions('0.10.0', '0.4.0') > 0);
    assert.equal(compareVersions('1.0.0', '1.0.0'), 0);
  });
});
