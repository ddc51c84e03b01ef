import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { hostVethName, parseBridgeConf, planAdd, randomMac, type BridgeConf } from './bridge.ts';
import { CniError } from './errors.ts';
import type { CniArgs, CniResult } from './types.ts';

const base = { cniVersion: '1.1.0', name: 'podnet', type: 'podnet-bridge', ipam: { type: 'podnet-ipam', subnet: '10.244.1.0/24' } };
const raw = (over: Record<string, unknown> = {}): Record<string, unknown> => ({ ...base, ...over });

function argsWith(cniArgs: Record<string, string>): CniArgs {
  return {
    command: 'ADD',
    containerId: 'abc123',
    netns: '/var/run/netns/pod1',
    ifName: 'eth0',
    args: new Map(Object.entries(cniArgs)),
    path: [],
    stdin: Buffer.alloc(0),
    env: {},
  };
}

describe('parseBridgeConf', () => {
  test('fills in the reference plugin’s defaults', () => {
    const conf = parseBridgeConf(raw(), undefined);
    assert.equal(conf.bridge, 'cni0');
    assert.equal(conf.isGateway, false);
    assert.equal(conf.isDefaultGateway, false);
    assert.equal(conf.ipMasq, false);
    assert.equal(conf.hairpinMode, false);
    assert.equal(conf.enableDad, false);
    assert.equal(conf.mtu, undefined);
    assert.equal(conf.mac, undefined);
    assert.equal(conf.ipamType, 'podnet-ipam');
    assert.equal(conf.name, 'podnet');
  });

  const good: Array<{ name: string; over: Record<string, unknown>; args?: CniArgs; want: Partial<BridgeConf> }> = [
    { name: 'isDefaultGateway implies isGateway', over: { isDefaultGateway: true }, want: { isGateway: true, isDefaultGateway: true } },
    { name: 'isGateway alone does not make a default gateway', over: { isGateway: true }, want: { isGateway: true, isDefaultGateway: false } },
    { name: 'a named bridge is kept', over: { bridge: 'podnet0' }, want: { bridge: 'podnet0' } },
    { name: 'an mtu is kept', over: { mtu: 1450 }, want: { mtu: 1450 } },
    { name: 'an mtu of 0 means the default', over: { mtu: 0 }, want: { mtu: undefined } },
    { name: 'a top-level "mac" is ignored, as the reference plugin ignores it', over: { mac: 'x\nlink del cni0' }, want: { mac: undefined } },
    { name: 'enabledad is read with the reference plugin’s spelling', over: { enabledad: true }, want: { enableDad: true } },
    { name: 'vlan 0 means no VLAN', over: { vlan: 0 }, want: { bridge: 'cni0' } },
    { name: 'an empty vlanTrunk is accepted', over: { vlanTrunk: [] }, want: { bridge: 'cni0' } },
    { name: 'the nftables masquerade backend is accepted', over: { ipMasq: true, ipMasqBackend: 'nftables' }, want: { ipMasq: true } },
    { name: 'runtimeConfig.mac is honoured and lower-cased', over: { runtimeConfig: { mac: '0A:58:0A:F4:01:05' } }, want: { mac: '0a:58:0a:f4:01:05' } },
    { name: 'args.cni.mac is honoured', over: { args: { cni: { mac: '0a:58:00:00:00:02' } } }, want: { mac: '0a:58:00:00:00:02' } },
    { name: 'CNI_ARGS MAC is honoured', over: {}, args: argsWith({ MAC: '0a:58:00:00:00:03' }), want: { mac: '0a:58:00:00:00:03' } },
    {
      name: 'runtimeConfig.mac wins over CNI_ARGS MAC',
      over: { runtimeConfig: { mac: '0a:58:00:00:00:01' } },
      args: argsWith({ MAC: '0a:58:00:00:00:03' }),
      want: { mac: '0a:58:00:00:00:01' },
    },
  ];
  for (const c of good) {
    test(c.name, () => {
      const conf = parseBridgeConf(raw(c.over), c.args);
      for (const [key, value] of Object.entries(c.want)) assert.deepEqual(conf[key as keyof BridgeConf], value, key);
    });
  }

  const bad: Array<{ name: string; over: Record<string, unknown>; args?: CniArgs; code: number; msg: RegExp }> = [
    { name: 'an mtu below 68', over: { mtu: 67 }, code: 7, msg: /"mtu" must be a whole number from 68 to 65535/ },
    { name: 'an mtu above 65535', over: { mtu: 65536 }, code: 7, msg: /"mtu"/ },
    { name: 'a fractional mtu', over: { mtu: 1450.5 }, code: 7, msg: /"mtu"/ },
    { name: 'an mtu given as a string', over: { mtu: '1450' }, code: 7, msg: /"mtu"/ },
    { name: 'a vlan', over: { vlan: 100 }, code: 2, msg: /unsupported field "vlan"/ },
    { name: 'a vlanTrunk', over: { vlanTrunk: [{ id: 100 }] }, code: 2, msg: /unsupported field "vlanTrunk"/ },
    { name: 'macspoofchk', over: { macspoofchk: true }, code: 2, msg: /unsupported field "macspoofchk"/ },
    { name: 'the iptables masquerade backend', over: { ipMasqBackend: 'iptables' }, code: 2, msg: /ipMasqBackend/ },
    { name: 'a bridge name longer than 15 bytes', over: { bridge: 'averylongbridge0' }, code: 7, msg: /"bridge" "averylongbridge0" is not a valid interface name/ },
    { name: 'a bridge name with a slash', over: { bridge: 'br/0' }, code: 7, msg: /"bridge"/ },
    { name: 'a bridge name with a space', over: { bridge: 'br 0' }, code: 7, msg: /"bridge"/ },
    { name: 'an empty bridge name', over: { bridge: '' }, code: 7, msg: /"bridge"/ },
    { name: 'a bridge name that is not a string', over: { bridge: 7 }, code: 7, msg: /"bridge"/ },
    { name: 'a missing ipam section', over: { ipam: undefined }, code: 7, msg: /"ipam" with a "type" is required/ },
    { name: 'an ipam section without a type', over: { ipam: { subnet: '10.244.1.0/24' } }, code: 7, msg: /"ipam" with a "type" is required/ },
    { name: 'an ipam type that is a path', over: { ipam: { type: '../../bin/sh' } }, code: 7, msg: /is not a plugin name/ },
    { name: 'a boolean given as a string', over: { isGateway: 'true' }, code: 7, msg: /"isGateway" must be true or false/ },
    { name: 'a runtimeConfig.mac that is not a MAC', over: { runtimeConfig: { mac: '0a:58:0a:f4:01' } }, code: 7, msg: /requested MAC "0a:58:0a:f4:01" is not a MAC address/ },
    { name: 'a runtimeConfig.mac that is a number', over: { runtimeConfig: { mac: 42 } }, code: 7, msg: /requested MAC 42/ },
    { name: 'a CNI_ARGS MAC with dashes', over: {}, args: argsWith({ MAC: '0a-58-0a-f4-01-05' }), code: 7, msg: /is not a MAC address/ },
  ];
  for (const c of bad) {
    test(`${c.name} is refused with code ${c.code}`, () => {
      assert.throws(
        () => parseBridgeConf(raw(c.over), c.args),
        (err: unknown) => {
          assert.ok(err instanceof CniError, `expected a CniError, got ${String(err)}`);
          assert.equal(err.cniCode, c.code, err.message);
          assert.match(err.message, c.msg);
          return true;
        },
      );
    });
  }
});

describe('planAdd', () => {
  const names = {
    ifName: 'eth0',
    hostVeth: 'pnv0123456789ab',
    containerMac: '0a:58:0a:f4:01:05',
    hostMac: '0a:58:00:00:00:01',
    podNetns: '/proc/self/fd/3',
  };
  const v4: CniResult = { cniVersion: '1.1.0', ips: [{ address: '10.244.1.5/24', gateway: '10.244.1.1' }] };
  const v6: CniResult = { cniVersion: '1.1.0', ips: [{ address: 'fd00:10:244:1::5/64', gateway: 'fd00:10:244:1::1' }] };

  const cases: Array<{ name: string; over: Record<string, unknown>; ipam: CniResult; pod: string[]; node: string[]; routes: CniResult['routes'] }> = [
    {
      name: 'an IPv4 pod with isDefaultGateway gets its address, a default route and the gateway on the bridge',
      over: { isDefaultGateway: true },
      ipam: v4,
      pod: ['addr add 10.244.1.5/24 dev eth0', 'link set eth0 up', 'route add 0.0.0.0/0 via 10.244.1.1 dev eth0'],
      node: [
        'link set cni0 up',
        'addr replace 10.244.1.1/24 dev cni0',
        'link add pnv0123456789ab address 0a:58:00:00:00:01 master cni0 up type veth peer name eth0 address 0a:58:0a:f4:01:05 netns /proc/self/fd/3',
        'link show cni0',
      ],
      routes: [{ dst: '0.0.0.0/0', gw: '10.244.1.1' }],
    },
    {
      name: 'without isGateway the bridge gets no address and the pod no default route',
      over: {},
      ipam: v4,
      pod: ['addr add 10.244.1.5/24 dev eth0', 'link set eth0 up'],
      node: [
        'link set cni0 up',
        'link add pnv0123456789ab address 0a:58:00:00:00:01 master cni0 up type veth peer name eth0 address 0a:58:0a:f4:01:05 netns /proc/self/fd/3',
        'link show cni0',
      ],
      routes: [],
    },
    {
      name: 'an mtu is set on both ends of the pair at creation',
      over: { mtu: 1450, bridge: 'podnet0' },
      ipam: v4,
      pod: ['addr add 10.244.1.5/24 dev eth0', 'link set eth0 up'],
      node: [
        'link set podnet0 up',
        'link add pnv0123456789ab address 0a:58:00:00:00:01 mtu 1450 master podnet0 up type veth peer name eth0 address 0a:58:0a:f4:01:05 mtu 1450 netns /proc/self/fd/3',
        'link show podnet0',
      ],
      routes: [],
    },
    {
      name: 'an mtu of 0 puts no mtu on the pair',
      over: { mtu: 0 },
      ipam: v4,
      pod: ['addr add 10.244.1.5/24 dev eth0', 'link set eth0 up'],
      node: [
        'link set cni0 up',
        'link add pnv0123456789ab address 0a:58:00:00:00:01 master cni0 up type veth peer name eth0 address 0a:58:0a:f4:01:05 netns /proc/self/fd/3',
        'link show cni0',
      ],
      routes: [],
    },
    {
      name: 'hairpin mode, port isolation and promiscuous mode are set on the node side',
      over: { hairpinMode: true, portIsolation: true, promiscMode: true },
      ipam: v4,
      pod: ['addr add 10.244.1.5/24 dev eth0', 'link set eth0 up'],
      node: [
        'link set cni0 up',
        'link set cni0 promisc on',
        'link add pnv0123456789ab address 0a:58:00:00:00:01 master cni0 up type veth peer name eth0 address 0a:58:0a:f4:01:05 netns /proc/self/fd/3',
        'link set dev pnv0123456789ab type bridge_slave hairpin on',
        'link set dev pnv0123456789ab type bridge_slave isolated on',
        'link show cni0',
      ],
      routes: [],
    },
    {
      name: 'an IPv6 address is added without duplicate address detection, on the pod and on the bridge',
      over: { isDefaultGateway: true },
      ipam: v6,
      pod: ['addr add fd00:10:244:1::5/64 dev eth0 nodad', 'link set eth0 up', 'route add ::/0 via fd00:10:244:1::1 dev eth0'],
      node: [
        'link set cni0 up',
        'addr replace fd00:10:244:1::1/64 dev cni0 nodad',
        'link add pnv0123456789ab address 0a:58:00:00:00:01 master cni0 up type veth peer name eth0 address 0a:58:0a:f4:01:05 netns /proc/self/fd/3',
        'link show cni0',
      ],
      routes: [{ dst: '::/0', gw: 'fd00:10:244:1::1' }],
    },
    {
      name: 'enabledad keeps duplicate address detection on the pod’s IPv6 address',
      over: { enabledad: true },
      ipam: v6,
      pod: ['addr add fd00:10:244:1::5/64 dev eth0', 'link set eth0 up'],
      node: [
        'link set cni0 up',
        'link add pnv0123456789ab address 0a:58:00:00:00:01 master cni0 up type veth peer name eth0 address 0a:58:0a:f4:01:05 netns /proc/self/fd/3',
        'link show cni0',
      ],
      routes: [],
    },
    {
      name: 'IPAM routes go via the gateway of their family unless they name one, and are not duplicated by the default route',
      over: { isDefaultGateway: true },
      ipam: {
        cniVersion: '1.1.0',
        ips: [{ address: '10.244.1.5/24', gateway: '10.244.1.1' }],
        routes: [{ dst: '0.0.0.0/0' }, { dst: '10.96.0.0/12', gw: '10.244.1.254', mtu: 1400, priority: 10 }],
      },
      pod: [
        'addr add 10.244.1.5/24 dev eth0',
        'link set eth0 up',
        'route add 0.0.0.0/0 via 10.244.1.1 dev eth0',
        'route add 10.96.0.0/12 via 10.244.1.254 dev eth0 mtu 1400 metric 10',
      ],
      node: [
        'link set cni0 up',
        'addr replace 10.244.1.1/24 dev cni0',
        'link add pnv0123456789ab address 0a:58:00:00:00:01 master cni0 up type veth peer name eth0 address 0a:58:0a:f4:01:05 netns /proc/self/fd/3',
        'link show cni0',
      ],
      routes: [{ dst: '0.0.0.0/0' }, { dst: '10.96.0.0/12', gw: '10.244.1.254', mtu: 1400, priority: 10 }],
    },
    {
      name: 'disableContainerInterface leaves the pod interface down and without routes',
      over: { isDefaultGateway: true, disableContainerInterface: true },
      ipam: v4,
      pod: ['addr add 10.244.1.5/24 dev eth0'],
      node: [
        'link set cni0 up',
        'addr replace 10.244.1.1/24 dev cni0',
        'link add pnv0123456789ab address 0a:58:00:00:00:01 master cni0 up type veth peer name eth0 address 0a:58:0a:f4:01:05 netns /proc/self/fd/3',
        'link show cni0',
      ],
      routes: [{ dst: '0.0.0.0/0', gw: '10.244.1.1' }],
    },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const plan = planAdd(parseBridgeConf(raw(c.over), undefined), c.ipam, names);
      assert.deepEqual(plan.node, c.node);
      assert.deepEqual(plan.pod, c.pod);
      assert.deepEqual(plan.routes, c.routes);
    });
  }

  test('a dual-stack pod gets both addresses and both default routes', () => {
    const ipam: CniResult = { cniVersion: '1.1.0', ips: [...(v4.ips ?? []), ...(v6.ips ?? [])] };
    const plan = planAdd(parseBridgeConf(raw({ isDefaultGateway: true }), undefined), ipam, names);
    assert.deepEqual(plan.pod, [
      'addr add 10.244.1.5/24 dev eth0',
      'addr add fd00:10:244:1::5/64 dev eth0 nodad',
      'link set eth0 up',
      'route add 0.0.0.0/0 via 10.244.1.1 dev eth0',
      'route add ::/0 via fd00:10:244:1::1 dev eth0',
    ]);
    assert.deepEqual(plan.routes, [
      { dst: '0.0.0.0/0', gw: '10.244.1.1' },
      { dst: '::/0', gw: 'fd00:10:244:1::1' },
    ]);
  });

  test('does not change the IPAM result it was given', () => {
    const ipam: CniResult = { cniVersion: '1.1.0', ips: [{ address: '10.244.1.5/24', gateway: '10.244.1.1' }], routes: [{ dst: '10.96.0.0/12' }] };
    const copy = structuredClone(ipam);
    planAdd(parseBridgeConf(raw({ isDefaultGateway: true }), undefined), ipam, names);
    assert.deepEqual(ipam, copy);
  });
});

describe('hostVethName', () => {
  test('is 15 characters, the longest interface name Linux allows', () => {
    assert.equal(hostVethName('abc123', 'eth0').length, 15);
    assert.match(hostVethName('abc123', 'eth0'), /^pnv[0-9a-f]{12}$/);
  });

  test('is the same every time for the same container and interface', () => {
    assert.equal(hostVethName('abc123', 'eth0'), hostVethName('abc123', 'eth0'));
  });

  test('differs for different interfaces of one container and for different containers', () => {
    const names = new Set([hostVethName('abc123', 'eth0'), hostVethName('abc123', 'net1'), hostVethName('abc124', 'eth0')]);
    assert.equal(names.size, 3);
  });

  test('keeps the container ID and interface name apart (no "ab"+"c" = "a"+"bc")', () => {
    assert.notEqual(hostVethName('ab', 'ceth0'), hostVethName('abc', 'eth0'));
  });
});

describe('randomMac', () => {
  test('is a locally administered unicast address', () => {
    for (let i = 0; i < 20; i++) {
      const mac = randomMac();
      assert.match(mac, /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/);
      const first = parseInt(mac.slice(0, 2), 16);
      assert.equal(first & 0x01, 0, 'unicast');
      assert.equal(first & 0x02, 0x02, 'locally administered');
    }
  });
});
