import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatUpstream, parseResolvConf, parseUpstream } from './resolvconf.ts';

test('nameserver lines of resolv.conf, in order, deduplicated', () => {
  const text = ['# comment', 'search example.com', 'nameserver 192.0.2.53', 'nameserver fe80::1%eth0', '  nameserver 192.0.2.53', 'nameserver bogus', 'options ndots:5'].join('\n');
  assert.deepEqual(parseResolvConf(text), [
    { host: '192.0.2.53', port: 53 },
    { host: 'fe80::1', port: 53 },
  ]);
});

test('--upstream forms: IP, IP:PORT, [IPv6]:PORT, bare IPv6', () => {
  assert.deepEqual(parseUpstream('127.0.0.1'), { host: '127.0.0.1', port: 53 });
  assert.deepEqual(parseUpstream('127.0.0.1:5353'), { host: '127.0.0.1', port: 5353 });
  assert.deepEqual(parseUpstream('[::1]:5353'), { host: '::1', port: 5353 });
  assert.deepEqual(parseUpstream('fd00::53'), { host: 'fd00::53', port: 53 });
  for (const bad of ['example.com', '127.0.0.1:0', '127.0.0.1:x', '[::1]:99999']) assert.throws(() => parseUpstream(bad), /PODNET_USAGE|not IP/, bad);
  assert.equal(formatUpstream({ host: '::1', port: 53 }), '[::1]:53');
});
