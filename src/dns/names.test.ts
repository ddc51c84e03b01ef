import { test } from 'node:test';
import assert from 'node:assert/strict';
import { canonicalIP, dashedIP, isEncodableName, parseReverseName, reverseName, undashIP } from './names.ts';

test('dashed labels round-trip for both families', () => {
  const table: Array<[string, string]> = [
    ['10.244.1.5', '10-244-1-5'],
    ['fd00::1', 'fd00--1'],
    ['::1', '0--1'],
    ['fd00::', 'fd00--0'],
    ['2001:db8:0:1:2:3:4:5', '2001-db8-0-1-2-3-4-5'],
  ];
  for (const [ip, label] of table) {
    assert.equal(dashedIP(ip), label);
    assert.equal(undashIP(label), ip, label);
  }
  for (const bad of ['10-244-1', 'web', '10-244-1-256', 'fd00', 'g-1']) assert.equal(undashIP(bad), undefined, bad);
});

test('reverse names round-trip; partial reverse names are no address', () => {
  for (const ip of ['10.96.0.10', '192.168.1.2', 'fd00:10:96::a', '2001:db8::1']) assert.equal(parseReverseName(reverseName(ip)), ip, ip);
  assert.equal(reverseName('10.96.0.10'), '10.0.96.10.in-addr.arpa');
  assert.equal(reverseName('fd00::1'), '1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa');
  for (const bad of ['96.10.in-addr.arpa', 'x.0.96.10.in-addr.arpa', '1.2.ip6.arpa', 'example.com']) assert.equal(parseReverseName(bad), undefined, bad);
});

test('addresses have one spelling; names that cannot be encoded are caught', () => {
  assert.equal(canonicalIP('FD00:0:0::1'), 'fd00::1');
  assert.equal(canonicalIP('010.1.1.1'), undefined);
  assert.equal(isEncodableName('www.example.com'), true);
  assert.equal(isEncodableName(`${'a'.repeat(64)}.com`), false);
  assert.equal(isEncodableName('a..b'), false);
});
