import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { minMTU, podMTU } from './mtu.ts';
import type { Backend } from './types.ts';

describe('podMTU', () => {
  const cases: Array<[Backend, number, 4 | 6, number]> = [
    ['host-gw', 1500, 4, 1500],
    ['host-gw', 9001, 4, 9001],
    ['vxlan', 1500, 4, 1450],
    ['vxlan', 9001, 4, 8951],
    ['vxlan', 1450, 4, 1400],
    ['vxlan', 1500, 6, 1430],
  ];
  for (const [backend, underlay, family, want] of cases) {
    test(`${backend} over an IPv${family} underlay of ${underlay} gives pods ${want}`, () => {
      assert.equal(podMTU(backend, underlay, family), want);
    });
  }
  test('the minimum is 576 for IPv4 and 1280 for IPv6', () => {
    assert.equal(minMTU(4), 576);
    assert.equal(minMTU(6), 1280);
  });
});
