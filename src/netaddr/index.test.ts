import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import {
  AddressError,
  addToIP,
  compareIP,
  contains,
  formatIP,
  formatPrefix,
  isIP,
  lastIP,
  nthSubnet,
  overlaps,
  parseIP,
  parsePrefix,
  parseSubnet,
  size,
} from './index.ts';

describe('parseIP and formatIP', () => {
  const cases: Array<{ name: string; input: string; family: 4 | 6; value: bigint; formatted: string }> = [
    { name: 'an ordinary IPv4 address', input: '10.244.1.5', family: 4, value: 0x0af40105n, formatted: '10.244.1.5' },
    { name: 'the all-zeros IPv4 address', input: '0.0.0.0', family: 4, value: 0n, formatted: '0.0.0.0' },
    { name: 'the IPv4 broadcast address', input: '255.255.255.255', family: 4, value: 0xffffffffn, formatted: '255.255.255.255' },
    { name: 'the IPv6 unspecified address', input: '::', family: 6, value: 0n, formatted: '::' },
    { name: 'the IPv6 loopback', input: '::1', family: 6, value: 1n, formatted: '::1' },
    {
      name: 'a full IPv6 address is compressed and lower-cased',
      input: '2001:0DB8:0000:0000:0000:0000:0000:0001',
      family: 6,
      value: 0x20010db8000000000000000000000001n,
      formatted: '2001:db8::1',
    },
    {
      name: 'a single zero group is not compressed (RFC 5952 4.2.2)',
      input: '2001:db8:0:1:1:1:1:1',
      family: 6,
      value: 0x20010db8000000010001000100010001n,
      formatted: '2001:db8:0:1:1:1:1:1',
    },
    {
      name: 'the longest run of zeros is the one compressed (RFC 5952 4.2.3)',
      input: '2001:0:0:1:0:0:0:1',
      family: 6,
      value: 0x20010000000000010000000000000001n,
      formatted: '2001:0:0:1::1',
    },
    {
      name: 'of two equal runs the first is compressed (RFC 5952 4.2.3)',
      input: '2001:db8:0:0:1:0:0:1',
      family: 6,
      value: 0x20010db8000000000001000000000001n,
      formatted: '2001:db8::1:0:0:1',
    },
    { name: 'a trailing run of zeros is compressed', input: 'fd00:1:2:3::', family: 6, value: 0xfd000001000200030000000000000000n, formatted: 'fd00:1:2:3::' },
    { name: ':: may stand for a single group', input: '1:2:3:4:5:6:7::', family: 6, value: 0x00010002000300040005000600070000n, formatted: '1:2:3:4:5:6:7:0' },
    { name: 'leading zeros within a group are dropped', input: 'fd00::00ab', family: 6, value: 0xfd0000000000000000000000000000abn, formatted: 'fd00::ab' },
    {
      name: 'an embedded IPv4 tail fills the last two groups',
      input: '::ffff:10.1.2.3',
      family: 6,
      value: 0xffff0a010203n,
      formatted: '::ffff:a01:203',
    },
    {
      name: 'an embedded IPv4 tail after six explicit groups is accepted',
      input: '64:ff9b:0:0:0:0:192.0.2.33',
      family: 6,
      value: 0x0064ff9b0000000000000000c0000221n,
      formatted: '64:ff9b::c000:221',
    },
  ];
  for (const c of cases) {
    test(`parses and formats ${c.name}`, () => {
      const ip = parseIP(c.input);
      assert.equal(ip.family, c.family);
      assert.equal(ip.value, c.value);
      assert.equal(formatIP(ip), c.formatted);
      // The formatted text parses back to the same address.
      assert.deepEqual(parseIP(c.formatted), ip);
    });
  }

  test('an embedded IPv4 tail means the same address as its hex spelling', () => {
    assert.deepEqual(parseIP('::ffff:1.2.3.4'), parseIP('::ffff:102:304'));
  });

  const invalid: Array<{ name: string; input: string }> = [
    { name: 'the empty string', input: '' },
    { name: 'an IPv4 octet with a leading zero', input: '10.01.0.1' },
    { name: 'an IPv4 octet written 00', input: '10.00.0.1' },
    { name: 'an IPv4 octet above 255', input: '10.256.0.1' },
    { name: 'a four-digit IPv4 octet', input: '10.1000.0.1' },
    { name: 'an IPv4 address with three octets', input: '10.0.1' },
    { name: 'an IPv4 address with five octets', input: '10.0.0.1.2' },
    { name: 'an IPv4 address with an empty octet', input: '10..0.1' },
    { name: 'a negative IPv4 octet', input: '10.-1.0.1' },
    { name: 'an IPv4 address with surrounding space', input: ' 10.0.0.1' },
    { name: 'an IPv4 address with a prefix length', input: '10.0.0.1/24' },
    { name: 'an IPv6 address with nine groups', input: '1:2:3:4:5:6:7:8:9' },
    { name: 'an IPv6 address with seven groups and no ::', input: '1:2:3:4:5:6:7' },
    { name: 'an IPv6 address with :: and eight groups', input: '1:2:3:4::5:6:7:8' },
    { name: 'an IPv6 address with two ::', input: '1::2::3' },
    { name: 'an IPv6 group of five digits', input: '12345::1' },
    { name: 'an IPv6 group with a non-hex digit', input: 'fg00::1' },
    { name: 'an IPv6 address with a leading single colon', input: ':1::2' },
    { name: 'an IPv6 address with a trailing single colon', input: '1::2:' },
    { name: 'three colons', input: ':::' },
    { name: 'an IPv6 address with a zone id', input: 'fe80::1%eth0' },
    { name: 'an embedded IPv4 tail with a bad octet', input: '::ffff:1.2.3.256' },
    { name: 'an embedded IPv4 tail with a leading zero', input: '::ffff:1.2.3.04' },
    { name: 'an embedded IPv4 part that is not at the end', input: '::1.2.3.4:1' },
    { name: 'an embedded IPv4 tail after seven groups (nine in all)', input: '1:2:3:4:5:6:7:1.2.3.4' },
    { name: 'a host name', input: 'localhost' },
  ];
  for (const c of invalid) {
    test(`rejects ${c.name}`, () => {
      assert.throws(() => parseIP(c.input), AddressError);
      assert.equal(isIP(c.input), false);
    });
  }

  test('the error names the rejected text and carries a stable code', () => {
    assert.throws(
      () => parseIP('10.01.0.1'),
      (err: unknown) => err instanceof AddressError && err.code === 'PODNET_BAD_ADDRESS' && err.message.includes('10.01.0.1'),
    );
  });
});

describe('parsePrefix', () => {
  test('strict parsing accepts a network address', () => {
    const { ip, prefix } = parsePrefix('10.244.0.0/16');
    assert.equal(formatIP(ip), '10.244.0.0');
    assert.equal(formatPrefix(prefix), '10.244.0.0/16');
  });

  test('strict parsing rejects host bits and names the network instead', () => {
    assert.throws(() => parsePrefix('10.244.1.5/24'), /host bits set; the network is 10\.244\.1\.0\/24/);
    assert.throws(() => parseSubnet('fd00::1/64'), /the network is fd00::\/64/);
  });

  test('lenient parsing keeps the interface address and masks the prefix', () => {
    const { ip, prefix } = parsePrefix('10.244.1.5/24', false);
    assert.equal(formatIP(ip), '10.244.1.5');
    assert.equal(formatPrefix(prefix), '10.244.1.0/24');
    const v6 = parsePrefix('fd00:0:0:1::5/64', false);
    assert.equal(formatIP(v6.ip), 'fd00:0:0:1::5');
    assert.equal(formatPrefix(v6.prefix), 'fd00:0:0:1::/64');
  });

  const valid: Array<{ input: string; formatted: string }> = [
    { input: '0.0.0.0/0', formatted: '0.0.0.0/0' },
    { input: '10.0.0.1/32', formatted: '10.0.0.1/32' },
    { input: '::/0', formatted: '::/0' },
    { input: '2001:db8::1/128', formatted: '2001:db8::1/128' },
  ];
  for (const c of valid) {
    test(`accepts the edge prefix length in ${c.input}`, () => {
      assert.equal(formatPrefix(parsePrefix(c.input).prefix), c.formatted);
    });
  }

  const invalid: Array<{ name: string; input: string }> = [
    { name: 'no prefix length', input: '10.0.0.0' },
    { name: 'an empty prefix length', input: '10.0.0.0/' },
    { name: 'an IPv4 prefix length of 33', input: '10.0.0.0/33' },
    { name: 'an IPv6 prefix length of 129', input: 'fd00::/129' },
    { name: 'a prefix length with a leading zero', input: '10.0.0.0/08' },
    { name: 'a negative prefix length', input: '10.0.0.0/-1' },
    { name: 'a non-numeric prefix length', input: '10.0.0.0/abc' },
    { name: 'a prefix length with a sign', input: '10.0.0.0/+8' },
    { name: 'two slashes', input: '10.0.0.0/8/8' },
    { name: 'a bad address', input: '10.0.0.256/24' },
  ];
  for (const c of invalid) {
    test(`rejects ${c.name}`, () => {
      assert.throws(() => parsePrefix(c.input), AddressError);
      assert.throws(() => parsePrefix(c.input, false), AddressError);
    });
  }
});

describe('prefix arithmetic', () => {
  const p = (text: string) => parseSubnet(text);
  const ip = (text: string) => parseIP(text);

  const containsCases: Array<{ prefix: string; ip: string; want: boolean }> = [
    { prefix: '10.244.0.0/16', ip: '10.244.255.255', want: true },
    { prefix: '10.244.0.0/16', ip: '10.245.0.0', want: false },
    { prefix: '10.244.1.0/24', ip: '10.244.1.0', want: true },
    { prefix: '0.0.0.0/0', ip: '192.168.1.1', want: true },
    { prefix: '0.0.0.0/0', ip: '::1', want: false },
    { prefix: '::/0', ip: '10.0.0.1', want: false },
    { prefix: 'fd00::/64', ip: 'fd00::ffff', want: true },
    { prefix: 'fd00::/64', ip: 'fd00:0:0:1::', want: false },
    { prefix: '10.0.0.5/32', ip: '10.0.0.5', want: true },
    { prefix: '10.0.0.5/32', ip: '10.0.0.6', want: false },
  ];
  for (const c of containsCases) {
    test(`${c.prefix} ${c.want ? 'contains' : 'does not contain'} ${c.ip}`, () => {
      assert.equal(contains(p(c.prefix), ip(c.ip)), c.want);
    });
  }

  const overlapCases: Array<{ a: string; b: string; want: boolean }> = [
    { a: '10.244.0.0/16', b: '10.244.3.0/24', want: true },
    { a: '10.244.3.0/24', b: '10.244.0.0/16', want: true },
    { a: '10.244.3.0/24', b: '10.244.4.0/24', want: false },
    { a: '10.0.0.0/8', b: '10.0.0.0/8', want: true },
    { a: '0.0.0.0/0', b: '::/0', want: false },
    { a: 'fd00::/48', b: 'fd00:0:0:7::/64', want: true },
    { a: 'fd00::/64', b: 'fd01::/64', want: false },
  ];
  for (const c of overlapCases) {
    test(`${c.a} ${c.want ? 'overlaps' : 'does not overlap'} ${c.b}`, () => {
      assert.equal(overlaps(p(c.a), p(c.b)), c.want);
    });
  }

  const nthCases: Array<{ parent: string; bits: number; i: bigint; want: string }> = [
    { parent: '10.244.0.0/16', bits: 24, i: 0n, want: '10.244.0.0/24' },
    { parent: '10.244.0.0/16', bits: 24, i: 3n, want: '10.244.3.0/24' },
    { parent: '10.244.0.0/16', bits: 24, i: 255n, want: '10.244.255.0/24' },
    { parent: '10.244.0.0/16', bits: 16, i: 0n, want: '10.244.0.0/16' },
    { parent: '10.244.0.0/16', bits: 26, i: 5n, want: '10.244.1.64/26' },
    { parent: 'fd00:10::/56', bits: 64, i: 2n, want: 'fd00:10:0:2::/64' },
  ];
  for (const c of nthCases) {
    test(`subnet ${c.i} of length /${c.bits} in ${c.parent} is ${c.want}`, () => {
      assert.equal(formatPrefix(nthSubnet(p(c.parent), c.bits, c.i)), c.want);
    });
  }

  const nthInvalid: Array<{ name: string; parent: string; bits: number; i: bigint }> = [
    { name: 'an index past the last subnet', parent: '10.244.0.0/16', bits: 24, i: 256n },
    { name: 'a negative index', parent: '10.244.0.0/16', bits: 24, i: -1n },
    { name: 'a subnet shorter than its parent', parent: '10.244.0.0/16', bits: 8, i: 0n },
    { name: 'a subnet longer than the family allows', parent: '10.244.0.0/16', bits: 33, i: 0n },
  ];
  for (const c of nthInvalid) {
    test(`nthSubnet rejects ${c.name}`, () => {
      assert.throws(() => nthSubnet(p(c.parent), c.bits, c.i), AddressError);
    });
  }

  const lastCases: Array<{ prefix: string; want: string; size: bigint }> = [
    { prefix: '10.244.1.0/24', want: '10.244.1.255', size: 256n },
    { prefix: '10.0.0.0/8', want: '10.255.255.255', size: 1n << 24n },
    { prefix: '10.0.0.7/32', want: '10.0.0.7', size: 1n },
    { prefix: '0.0.0.0/0', want: '255.255.255.255', size: 1n << 32n },
    { prefix: 'fd00::/64', want: 'fd00::ffff:ffff:ffff:ffff', size: 1n << 64n },
  ];
  for (const c of lastCases) {
    test(`the last address of ${c.prefix} is ${c.want}`, () => {
      assert.equal(formatIP(lastIP(p(c.prefix))), c.want);
      assert.equal(size(p(c.prefix)), c.size);
    });
  }

  test('addToIP steps across an octet boundary', () => {
    assert.equal(formatIP(addToIP(ip('10.0.0.255'), 1n)), '10.0.1.0');
    assert.equal(formatIP(addToIP(ip('10.0.1.0'), -1n)), '10.0.0.255');
  });

  test('compareIP orders by family first, then by value', () => {
    assert.ok(compareIP(ip('10.0.0.1'), ip('10.0.0.2')) < 0);
    assert.ok(compareIP(ip('10.0.0.2'), ip('10.0.0.1')) > 0);
    assert.equal(compareIP(ip('10.0.0.1'), ip('10.0.0.1')), 0);
    assert.ok(compareIP(ip('255.255.255.255'), ip('::')) < 0);
  });
});
