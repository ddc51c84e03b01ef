import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CniError } from '../cni/errors.ts';
import type { CniResult } from '../cni/types.ts';
import { formatIP, parseIP } from '../netaddr/index.ts';
import { allocate, collectGarbage, release, walk } from './allocator.ts';
import { parseIpamConf, type IpamConf } from './config.ts';
import { DiskStore, MemoryStore, type Owner } from './store.ts';

/** An IpamConf built the way the plugin builds it. */
function confOf(ipam: Record<string, unknown>, extra: Record<string, unknown> = {}): IpamConf {
  return parseIpamConf({ cniVersion: '1.1.0', name: 'podnet', type: 'podnet-bridge', ipam: { type: 'podnet-ipam', ...ipam }, ...extra }, undefined);
}

const pod = (containerId: string, ifName = 'eth0'): Owner => ({ containerId, ifName });
const addresses = (r: CniResult): string[] => (r.ips ?? []).map((i) => i.address);
const cniCode = (code: number, msg?: RegExp) => (err: unknown) => err instanceof CniError && err.cniCode === code && (!msg || msg.test(err.message));

/** A /24 with the default gateway at .1 and a small range. */
const small = (start: number, end: number): IpamConf => confOf({ ranges: [[{ subnet: '10.244.1.0/24', rangeStart: `10.244.1.${start}`, rangeEnd: `10.244.1.${end}` }]] });

describe('allocate', () => {
  test('the first address skips the gateway at network+1', () => {
    const store = new MemoryStore();
    const result = allocate(store, confOf({ ranges: [[{ subnet: '10.244.1.0/24' }]] }), pod('a'));
    assert.deepEqual(result.ips, [{ address: '10.244.1.2/24', gateway: '10.244.1.1' }]);
    assert.deepEqual([...store.leased()], ['10.244.1.2']);
  });

  test('addresses are handed out in order, skipping a gateway in the middle of the range', () => {
    const store = new MemoryStore();
    const conf = confOf({ ranges: [[{ subnet: '10.244.1.0/24', rangeStart: '10.244.1.10', rangeEnd: '10.244.1.13', gateway: '10.244.1.11' }]] });
    const got = ['a', 'b', 'c'].map((id) => addresses(allocate(store, conf, pod(id)))[0]);
    assert.deepEqual(got, ['10.244.1.10/24', '10.244.1.12/24', '10.244.1.13/24']);
  });

  test('round-robin continues after the last reserved address, so a freed one is not reused at once', () => {
    const store = new MemoryStore();
    const conf = small(2, 10);
    assert.deepEqual(addresses(allocate(store, conf, pod('a'))), ['10.244.1.2/24']);
    assert.deepEqual(addresses(allocate(store, conf, pod('b'))), ['10.244.1.3/24']);
    release(store, pod('a'));
    assert.deepEqual(addresses(allocate(store, conf, pod('c'))), ['10.244.1.4/24']);
  });

  test('the walk wraps around to the start of the range when it reaches the end', () => {
    const store = new MemoryStore();
    const conf = small(2, 4);
    for (const id of ['a', 'b', 'c']) allocate(store, conf, pod(id));
    release(store, pod('a'));
    assert.deepEqual(addresses(allocate(store, conf, pod('d'))), ['10.244.1.2/24']);
  });

  test('a last-reserved address outside the ranges (after a config change) restarts at the beginning', () => {
    const store = new MemoryStore();
    store.setLastReserved(0, '10.9.9.9');
    assert.deepEqual(addresses(allocate(store, small(2, 4), pod('a'))), ['10.244.1.2/24']);
  });

  test('the ranges of one set are used one after the other, each with its own prefix and gateway', () => {
    const store = new MemoryStore();
    const conf = confOf({
      ranges: [
        [
          { subnet: '10.244.1.0/24', rangeStart: '10.244.1.2', rangeEnd: '10.244.1.3' },
          { subnet: '172.16.5.0/28', rangeStart: '172.16.5.2', rangeEnd: '172.16.5.3' },
        ],
      ],
    });
    const got = ['a', 'b', 'c', 'd'].map((id) => allocate(store, conf, pod(id)).ips?.[0]);
    assert.deepEqual(got, [
      { address: '10.244.1.2/24', gateway: '10.244.1.1' },
      { address: '10.244.1.3/24', gateway: '10.244.1.1' },
      { address: '172.16.5.2/28', gateway: '172.16.5.1' },
      { address: '172.16.5.3/28', gateway: '172.16.5.1' },
    ]);
  });

  test('two range sets (IPv4 and IPv6) give one address from each, with the routes and dns', () => {
    const store = new MemoryStore();
    const conf = confOf({
      ranges: [[{ subnet: '10.244.1.0/24' }], [{ subnet: 'fd00:10:244:1::/64' }]],
      routes: [{ dst: '0.0.0.0/0' }, { dst: '::/0' }],
    });
    const result = allocate(store, conf, pod('a'));
    assert.deepEqual(result, {
      cniVersion: '1.1.0',
      ips: [
        { address: '10.244.1.2/24', gateway: '10.244.1.1' },
        { address: 'fd00:10:244:1::2/64', gateway: 'fd00:10:244:1::1' },
      ],
      routes: [{ dst: '0.0.0.0/0' }, { dst: '::/0' }],
    });
    assert.deepEqual(store.owned(pod('a')).sort(), ['10.244.1.2', 'fd00:10:244:1::2']);
    assert.equal(store.lastReserved(0), '10.244.1.2');
    assert.equal(store.lastReserved(1), 'fd00:10:244:1::2');
  });

  test('a requested IP is honoured and does not move the round-robin position', () => {
    const store = new MemoryStore();
    const conf = confOf({ ranges: [[{ subnet: '10.244.1.0/24' }]] }, { runtimeConfig: { ips: ['10.244.1.50'] } });
    assert.deepEqual(addresses(allocate(store, conf, pod('a'))), ['10.244.1.50/24']);
    assert.equal(store.lastReserved(0), undefined);
    assert.deepEqual(addresses(allocate(store, small(2, 254), pod('b'))), ['10.244.1.2/24']);
  });

  test('a requested IP that is taken is refused with code 7 and nothing is claimed', () => {
    const store = new MemoryStore();
    allocate(store, small(2, 254), pod('a'));
    const conf = confOf({ ranges: [[{ subnet: '10.244.1.0/24' }]] }, { runtimeConfig: { ips: ['10.244.1.2'] } });
    assert.throws(() => allocate(store, conf, pod('b')), cniCode(7, /10\.244\.1\.2 is already allocated/));
    assert.deepEqual(store.all(), [{ ip: '10.244.1.2', owner: pod('a') }]);
    assert.equal(store.hasAttachment(pod('b')), false);
  });

  test('a requested IP inside the subnet but outside the range is refused with code 7', () => {
    const store = new MemoryStore();
    const conf = confOf({ ranges: [[{ subnet: '10.244.1.0/24', rangeStart: '10.244.1.100' }]] }, { runtimeConfig: { ips: ['10.244.1.50'] } });
    assert.throws(() => allocate(store, conf, pod('a')), cniCode(7, /outside the allocatable range 10\.244\.1\.100-10\.244\.1\.254/));
    assert.equal(store.leased().size, 0);
    assert.equal(store.hasAttachment(pod('a')), false);
  });

  test('a requested IP that is the gateway is refused with code 7, as host-local does', () => {
    const store = new MemoryStore();
    const conf = confOf({ ranges: [[{ subnet: '10.244.1.0/24' }]] }, { runtimeConfig: { ips: ['10.244.1.1'] } });
    assert.throws(() => allocate(store, conf, pod('a')), cniCode(7, /10\.244\.1\.1 is the gateway/));
    assert.equal(store.leased().size, 0);
    assert.equal(store.hasAttachment(pod('a')), false);
  });

  test('a second ADD for the same container and interface is refused and leaves the first intact', () => {
    const store = new MemoryStore();
    const conf = small(2, 254);
    allocate(store, conf, pod('a'));
    assert.throws(() => allocate(store, conf, pod('a')), cniCode(7, /already has addresses/));
    assert.deepEqual(store.all(), [{ ip: '10.244.1.2', owner: pod('a') }]);
    assert.equal(store.hasAttachment(pod('a')), true);
    assert.equal(store.lastReserved(0), '10.244.1.2');
  });

  test('the same container may get addresses on a second interface', () => {
    const store = new MemoryStore();
    const conf = small(2, 254);
    allocate(store, conf, pod('a', 'eth0'));
    assert.deepEqual(addresses(allocate(store, conf, pod('a', 'net1'))), ['10.244.1.3/24']);
  });

  test('an exhausted range gives code 100 and leaves nothing claimed', () => {
    const store = new MemoryStore();
    const conf = small(2, 3);
    allocate(store, conf, pod('a'));
    allocate(store, conf, pod('b'));
    const before = store.all();
    assert.throws(() => allocate(store, conf, pod('c')), cniCode(100, /no IP addresses left in range set 10\.244\.1\.2-10\.244\.1\.3 of network podnet/));
    assert.deepEqual(store.all(), before);
    assert.equal(store.hasAttachment(pod('c')), false);
  });

  test('when the second range set is exhausted the address from the first is given back', () => {
    const store = new MemoryStore();
    const conf = confOf({ ranges: [[{ subnet: '10.244.1.0/24' }], [{ subnet: 'fd00::/64', rangeStart: 'fd00::2', rangeEnd: 'fd00::2' }]] });
    allocate(store, conf, pod('a'));
    assert.throws(() => allocate(store, conf, pod('b')), cniCode(100));
    assert.deepEqual(store.owned(pod('b')), []);
    assert.equal(store.hasAttachment(pod('b')), false);
    // And the container may try again once there is room.
    release(store, pod('a'));
    const retry = addresses(allocate(store, conf, pod('b')));
    assert.equal(retry.length, 2);
    assert.match(retry[0] ?? '', /^10\.244\.1\.\d+\/24$/);
    assert.equal(retry[1], 'fd00::2/64');
  });
});

describe('release', () => {
  test('frees the owner’s addresses and is harmless to repeat', () => {
    const store = new MemoryStore();
    const conf = confOf({ ranges: [[{ subnet: '10.244.1.0/24' }], [{ subnet: 'fd00::/64' }]] });
    allocate(store, conf, pod('a'));
    allocate(store, conf, pod('b'));
    assert.deepEqual(release(store, pod('a')).sort(), ['10.244.1.2', 'fd00::2']);
    assert.deepEqual(release(store, pod('a')), []);
    assert.equal(store.hasAttachment(pod('a')), false);
    assert.deepEqual(store.all().map((l) => l.owner.containerId), ['b', 'b']);
  });

  test('of a container that never had addresses returns nothing', () => {
    assert.deepEqual(release(new MemoryStore(), pod('ghost')), []);
  });

  test('does not free another interface of the same container', () => {
    const store = new MemoryStore();
    const conf = small(2, 254);
    allocate(store, conf, pod('a', 'eth0'));
    allocate(store, conf, pod('a', 'net1'));
    assert.deepEqual(release(store, pod('a', 'net1')), ['10.244.1.3']);
    assert.deepEqual(store.owned(pod('a', 'eth0')), ['10.244.1.2']);
  });
});

describe('collectGarbage', () => {
  test('keeps the valid attachments and frees everything else', () => {
    const store = new MemoryStore();
    const conf = small(2, 254);
    allocate(store, conf, pod('keep'));
    allocate(store, conf, pod('gone'));
    allocate(store, conf, pod('keep', 'net1'));
    const freed = collectGarbage(store, [pod('keep')]);
    assert.deepEqual(freed.sort(), ['10.244.1.3', '10.244.1.4']);
    assert.deepEqual(store.all(), [{ ip: '10.244.1.2', owner: pod('keep') }]);
    assert.deepEqual(store.attachments(), [pod('keep')]);
  });

  test('keeps an old-format lease without an interface name if its container is valid', () => {
    const store = new MemoryStore();
    store.claim('10.244.1.9', pod('old', ''));
    store.claim('10.244.1.10', pod('older', ''));
    assert.deepEqual(collectGarbage(store, [pod('old')]), ['10.244.1.10']);
  });

  test('with no valid attachments frees everything', () => {
    const store = new MemoryStore();
    allocate(store, small(2, 254), pod('a'));
    assert.deepEqual(collectGarbage(store, []), ['10.244.1.2']);
    assert.equal(store.leased().size, 0);
    assert.deepEqual(store.attachments(), []);
  });
});

describe('walk', () => {
  const set = confOf({
    ranges: [
      [
        { subnet: '10.0.0.0/24', rangeStart: '10.0.0.1', rangeEnd: '10.0.0.3' },
        { subnet: '10.0.1.0/24', rangeStart: '10.0.1.2', rangeEnd: '10.0.1.3' },
      ],
    ],
  }).rangeSets[0]!;
  const cases: Array<{ name: string; after?: string; want: string[] }> = [
    { name: 'from the start when nothing was reserved', want: ['10.0.0.2', '10.0.0.3', '10.0.1.2', '10.0.1.3'] },
    { name: 'after the last reserved address, once round', after: '10.0.0.2', want: ['10.0.0.3', '10.0.1.2', '10.0.1.3', '10.0.0.2'] },
    { name: 'into the next range from the end of one', after: '10.0.0.3', want: ['10.0.1.2', '10.0.1.3', '10.0.0.2', '10.0.0.3'] },
    { name: 'back to the first range from the end of the last', after: '10.0.1.3', want: ['10.0.0.2', '10.0.0.3', '10.0.1.2', '10.0.1.3'] },
  ];
  for (const c of cases) {
    test(`visits every address but the gateway ${c.name}`, () => {
      const after = c.after === undefined ? undefined : parseIP(c.after);
      assert.deepEqual([...walk(set, after)].map((x) => formatIP(x.ip)), c.want);
    });
  }
});

describe('DiskStore', () => {
  /** Runs `body` with a store in a fresh temporary directory, removed afterwards. */
  function withStore(body: (store: DiskStore, dataDir: string) => void): void {
    const dataDir = mkdtempSync(join(tmpdir(), 'podnet-ipam-'));
    try {
      body(new DiskStore(dataDir, 'podnet'), dataDir);
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  }

  test('an address can be claimed only once', () => {
    withStore((store) => {
      assert.equal(store.claim('10.244.1.2', pod('a')), true);
      assert.equal(store.claim('10.244.1.2', pod('b')), false);
      assert.equal(store.claim('10.244.1.2', pod('a')), false);
      assert.deepEqual(store.all(), [{ ip: '10.244.1.2', owner: pod('a') }]);
    });
  });

  test('a lease file holds "containerID\\r\\nifname" as host-local writes it', () => {
    withStore((store, dataDir) => {
      store.claim('10.244.1.2', pod('abc123', 'eth0'));
      store.claim('fd00::2', pod('abc123', 'eth0'));
      assert.equal(readFileSync(join(dataDir, 'podnet', '10.244.1.2'), 'utf8'), 'abc123\r\neth0');
      assert.equal(readFileSync(join(dataDir, 'podnet', 'fd00::2'), 'utf8'), 'abc123\r\neth0');
      assert.deepEqual([...store.leased()].sort(), ['10.244.1.2', 'fd00::2']);
    });
  });

  test('only the owner can release a lease', () => {
    withStore((store, dataDir) => {
      const file = join(dataDir, 'podnet', '10.244.1.2');
      store.claim('10.244.1.2', pod('a', 'eth0'));
      store.release('10.244.1.2', pod('b', 'eth0'));
      store.release('10.244.1.2', pod('a', 'net1'));
      assert.equal(existsSync(file), true);
      store.release('10.244.1.2', pod('a', 'eth0'));
      assert.equal(existsSync(file), false);
      store.release('10.244.1.2', pod('a', 'eth0'));
    });
  });

  test('a second attachment for the same owner is refused until the first ends', () => {
    withStore((store) => {
      assert.equal(store.beginAttachment(pod('a')), true);
      assert.equal(store.beginAttachment(pod('a')), false);
      assert.equal(store.beginAttachment(pod('a', 'net1')), true);
      store.endAttachment(pod('a'));
      assert.equal(store.beginAttachment(pod('a')), true);
    });
  });

  test('allocate, release and collectGarbage work the same over the disk', () => {
    withStore((store, dataDir) => {
      const conf = confOf({ ranges: [[{ subnet: '10.244.1.0/24' }]], dataDir });
      assert.deepEqual(addresses(allocate(store, conf, pod('a'))), ['10.244.1.2/24']);
      assert.deepEqual(addresses(allocate(store, conf, pod('b'))), ['10.244.1.3/24']);
      assert.throws(() => allocate(store, conf, pod('a')), cniCode(7));
      assert.equal(readFileSync(join(dataDir, 'podnet', 'last_reserved_ip.0'), 'utf8'), '10.244.1.3');
      assert.deepEqual(store.owned(pod('a')), ['10.244.1.2']);
      assert.deepEqual(release(store, pod('a')), ['10.244.1.2']);
      assert.deepEqual(release(store, pod('a')), []);
      assert.deepEqual(addresses(allocate(store, conf, pod('c'))), ['10.244.1.4/24']);
      assert.deepEqual(collectGarbage(store, [pod('c')]), ['10.244.1.3']);
      assert.deepEqual([...store.leased()], ['10.244.1.4']);
      assert.deepEqual(store.attachments(), [pod('c')]);
    });
  });

  test('a lease written by old host-local (container ID only) belongs to every interface of that container', () => {
    withStore((store) => {
      store.claim('10.244.1.2', { containerId: 'abc', ifName: '' });
      assert.deepEqual(store.owned(pod('abc', 'eth0')), ['10.244.1.2']);
      assert.deepEqual(store.owned(pod('xyz', 'eth0')), []);
    });
  });
});
