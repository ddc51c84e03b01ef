import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { canonDst, parseFdb, parseNeighs, parseRoutes, parseUnderlay, parseVxlanLinks } from './state.ts';

// Captured from iproute2 6.1 in a test namespace.
const ADDR_ETH0 = `[{"ifindex":3,"link":"peer0","ifname":"eth0","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],"mtu":1500,"qdisc":"noqueue","operstate":"UP","group":"default","txqlen":1000,"link_type":"ether","address":"06:d7:bc:82:77:a3","broadcast":"ff:ff:ff:ff:ff:ff","addr_info":[{"family":"inet","local":"192.168.1.11","prefixlen":24,"scope":"global","label":"eth0","valid_life_time":4294967295,"preferred_life_time":4294967295},{"family":"inet6","local":"fe80::4d7:bcff:fe82:77a3","prefixlen":64,"scope":"link","tentative":true,"valid_life_time":4294967295,"preferred_life_time":4294967295}]}]`;
const ROUTES = `[{"dst":"10.244.2.0/24","gateway":"192.168.1.12","dev":"eth0","flags":[]},{"dst":"10.244.3.0/24","gateway":"10.244.3.0","dev":"podnet.1","flags":["onlink"]},{"dst":"10.244.9.9","gateway":"192.168.1.19","dev":"eth0","flags":[]}]`;
const VXLAN = `[{"ifindex":4,"ifname":"podnet.1","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],"mtu":1450,"qdisc":"noqueue","operstate":"UNKNOWN","group":"default","txqlen":1000,"link_type":"ether","address":"02:11:22:33:44:55","broadcast":"ff:ff:ff:ff:ff:ff","promiscuity":0,"allmulti":0,"min_mtu":68,"max_mtu":65535,"linkinfo":{"info_kind":"vxlan","info_data":{"id":1,"local":"192.168.1.11","link":"eth0","port_range":{"low":0,"high":0},"port":4789,"learning":false,"ttl":0,"df":"unset","ageing":300,"udp_csum":true,"udp_zero_csum6_tx":false,"udp_zero_csum6_rx":false}},"num_tx_queues":1,"num_rx_queues":1,"addr_info":[{"family":"inet","local":"10.244.1.0","prefixlen":32,"scope":"global","label":"podnet.1","valid_life_time":4294967295,"preferred_life_time":4294967295},{"family":"inet6","local":"fe80::11:22ff:fe33:4455","prefixlen":64,"scope":"link","tentative":true,"valid_life_time":4294967295,"preferred_life_time":4294967295}]},{"ifindex":5,"ifname":"flannel.1","flags":["UP"],"mtu":1450,"address":"02:00:00:00:00:09","linkinfo":{"info_kind":"vxlan","info_data":{"id":1}}},{"ifindex":6,"ifname":"podnet.9","flags":["BROADCAST"],"mtu":1500,"address":"02:00:00:00:00:0A","linkinfo":{"info_kind":"vxlan","info_data":{"id":9,"group":"239.1.1.1","link":"eth0","port":8472}}}]`;
const NEIGH = `[{"dst":"10.244.3.0","lladdr":"02:AA:bb:cc:dd:ee","state":["PERMANENT"]},{"dst":"10.244.4.0","lladdr":"02:aa:bb:cc:dd:ef","state":["STALE"]},{"dst":"10.244.5.0","state":["FAILED"]}]`;
const FDB = `[{"mac":"02:aa:bb:cc:dd:ee","dst":"192.168.1.13","flags":["self"],"state":"permanent"},{"mac":"33:33:00:00:00:01","flags":["self"],"state":"permanent"}]`;

describe('reading the kernel', () => {
  test('the underlay: name, MTU and global addresses only', () => {
    assert.deepEqual(parseUnderlay(ADDR_ETH0), { name: 'eth0', mtu: 1500, addresses: ['192.168.1.11/24'] });
    assert.equal(parseUnderlay('[]'), undefined);
    assert.equal(parseUnderlay(''), undefined);
  });

  test('routes: host routes get their /32 back, onlink is a flag', () => {
    assert.deepEqual(parseRoutes(ROUTES), [
      { dst: '10.244.2.0/24', via: '192.168.1.12', dev: 'eth0', onlink: false },
      { dst: '10.244.3.0/24', via: '10.244.3.0', dev: 'podnet.1', onlink: true },
      { dst: '10.244.9.9/32', via: '192.168.1.19', dev: 'eth0', onlink: false },
    ]);
  });

  test('VXLAN devices: only podnet.<vni>, with the attributes that decide re-creation', () => {
    const links = parseVxlanLinks(VXLAN);
    assert.deepEqual(links, [
      {
        name: 'podnet.1',
        ifindex: 4,
        up: true,
        mtu: 1450,
        mac: '02:11:22:33:44:55',
        vni: 1,
        port: 4789,
        local: '192.168.1.11',
        dev: 'eth0',
        learning: false,
        flooding: false,
        addresses: ['10.244.1.0/32'],
      },
      {
        name: 'podnet.9',
        ifindex: 6,
        up: false,
        mtu: 1500,
        mac: '02:00:00:00:00:0a',
        vni: 9,
        port: 8472,
        local: undefined,
        dev: 'eth0',
        learning: true,
        flooding: true,
        addresses: [],
      },
    ]);
  });

  test('neighbours: permanent entries only, MACs lowercased', () => {
    assert.deepEqual(parseNeighs(NEIGH, 'podnet.1'), [{ ip: '10.244.3.0', mac: '02:aa:bb:cc:dd:ee', dev: 'podnet.1' }]);
  });

  test('FDB: entries with a remote VTEP only', () => {
    assert.deepEqual(parseFdb(FDB, 'podnet.1'), [{ mac: '02:aa:bb:cc:dd:ee', dst: '192.168.1.13', dev: 'podnet.1' }]);
  });

  const dsts: Array<[string, string]> = [
    ['10.244.2.0/24', '10.244.2.0/24'],
    ['10.244.2.7', '10.244.2.7/32'],
    ['fd00:0:0::/64', 'fd00::/64'],
    ['fd00::7', 'fd00::7/128'],
  ];
  for (const [raw, want] of dsts) test(`destination ${raw} reads as ${want}`, () => assert.equal(canonDst(raw), want));
});
