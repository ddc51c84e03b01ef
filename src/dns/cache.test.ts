import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Answer } from 'dns-packet';
import { AnswerCache, cacheKey, cacheTtl, type CachedMessage } from './cache.ts';

const a = (ttl: number, ip = '192.0.2.1'): Answer => ({ name: 'example.com', type: 'A', ttl, class: 'IN', data: ip });
const soa = (ttl: number, minimum: number): Answer => ({
  name: 'example.com',
  type: 'SOA',
  ttl,
  class: 'IN',
  data: { mname: 'ns.example.com', rname: 'h.example.com', serial: 1, refresh: 1, retry: 1, expire: 1, minimum },
});
const msg = (rcode: string, answers: Answer[], authorities: Answer[] = []): CachedMessage => ({ rcode, answers, authorities, additionals: [] });

test('how long an answer may be kept: its smallest TTL; negative answers by the SOA (RFC 2308); failures not at all', () => {
  const table: Array<[string, CachedMessage, number]> = [
    ['positive: the smallest TTL', msg('NOERROR', [a(300), a(60, '192.0.2.2')]), 60],
    ['positive: capped at maxTtl', msg('NOERROR', [a(86400)]), 3600],
    ['TTL 0 is not kept', msg('NOERROR', [a(0)]), 0],
    ['NXDOMAIN: min(SOA TTL, SOA minimum)', msg('NXDOMAIN', [], [soa(60, 30)]), 30],
    ['NODATA: the same', msg('NOERROR', [], [soa(20, 300)]), 20],
    ['negative without SOA: not kept', msg('NXDOMAIN', []), 0],
    ['SERVFAIL: not kept', msg('SERVFAIL', []), 0],
    ['REFUSED: not kept', msg('REFUSED', []), 0],
  ];
  for (const [what, m, ttl] of table) assert.equal(cacheTtl(m), ttl, what);
});

test('entries age: TTLs handed out shrink, and an expired entry is gone', () => {
  let now = 1_000_000;
  const c = new AnswerCache({ now: () => now });
  const k = cacheKey('Example.COM.', 'A');
  assert.equal(k, cacheKey('example.com', 'A'));
  assert.equal(c.set(k, msg('NOERROR', [a(60)])), 60);
  now += 25_500;
  const first = c.get(k)?.answers[0];
  assert.equal(first && first.type !== 'OPT' ? first.ttl : undefined, 35);
  now += 35_000;
  assert.equal(c.get(k), undefined);
  assert.equal(c.size, 0);
});

test('size is bounded; the least recently used entry goes first', () => {
  const c = new AnswerCache({ maxEntries: 2 });
  c.set('a', msg('NOERROR', [a(60)]));
  c.set('b', msg('NOERROR', [a(60)]));
  c.get('a');
  c.set('c', msg('NOERROR', [a(60)]));
  assert.equal(c.size, 2);
  assert.ok(c.get('a'));
  assert.equal(c.get('b'), undefined);
  assert.ok(c.get('c'));
});
