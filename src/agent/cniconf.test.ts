import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readSubnetFile } from '../ipam/index.ts';
import { planConflist, renderSubnetFile, writeConflist, writeSubnetFile } from './cniconf.ts';

describe('the subnet file', () => {
  test('is the JSON podnet-ipam reads', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'podnet-agent-'));
    try {
      const path = join(dir, 'run', 'podnet', 'subnet.json');
      assert.equal(await writeSubnetFile(path, { network: '10.244.0.0/16', subnet: '10.244.1.0/24', mtu: 1450 }), true);
      assert.deepEqual(JSON.parse(readFileSync(path, 'utf8')), { network: '10.244.0.0/16', subnet: '10.244.1.0/24', mtu: 1450 });
      assert.deepEqual(readSubnetFile(path), { network: '10.244.0.0/16', subnet: '10.244.1.0/24', mtu: 1450 });
      const mtime = statSync(path).mtimeMs;
      assert.equal(await writeSubnetFile(path, { network: '10.244.0.0/16', subnet: '10.244.1.0/24', mtu: 1450 }), false, 'unchanged content is not rewritten');
      assert.equal(statSync(path).mtimeMs, mtime);
      assert.equal(await writeSubnetFile(path, { network: '10.244.0.0/16', subnet: '10.244.1.0/24', mtu: 1500 }), true);
      assert.equal(readSubnetFile(path).mtu, 1500);
      assert.deepEqual(readdirSync(join(dir, 'run', 'podnet')), ['subnet.json'], 'no temporary file is left');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
  const bad: Array<[string, { network: string; subnet: string; mtu: number }]> = [
    ['a subnet with host bits', { network: '10.244.0.0/16', subnet: '10.244.1.1/24', mtu: 1450 }],
    ['a zero MTU', { network: '10.244.0.0/16', subnet: '10.244.1.0/24', mtu: 0 }],
  ];
  for (const [name, c] of bad) test(`refuses ${name}`, () => assert.throws(() => renderSubnetFile(c)));
});

describe('the conflist', () => {
  test('podnet-bridge on cni0 as default gateway, pod MTU, podnet-ipam from the subnet file, then portmap', () => {
    assert.deepEqual(planConflist({ mtu: 1450, subnetFile: '/run/podnet/subnet.json', dataDir: '/var/lib/cni/networks' }), {
      cniVersion: '1.0.0',
      name: 'podnet',
      plugins: [
        {
          type: 'podnet-bridge',
          bridge: 'cni0',
          isGateway: true,
          isDefaultGateway: true,
          hairpinMode: true,
          ipMasq: false,
          mtu: 1450,
          ipam: { type: 'podnet-ipam', subnetFile: '/run/podnet/subnet.json', dataDir: '/var/lib/cni/networks' },
        },
        { type: 'portmap', capabilities: { portMappings: true } },
      ],
    });
  });
  test('portmap can be left out, name and version chosen', () => {
    const c = planConflist({ mtu: 1500, subnetFile: '/s', portmap: false, name: 'lab', cniVersion: '1.1.0' }) as { plugins: unknown[]; name: string; cniVersion: string };
    assert.equal(c.plugins.length, 1);
    assert.equal(c.name, 'lab');
    assert.equal(c.cniVersion, '1.1.0');
  });
  test('refuses a bridge name that is not an interface name', () => {
    assert.throws(() => planConflist({ mtu: 1500, subnetFile: '/s', bridge: 'a/b' }), /bridge name/);
  });
  test('is written atomically and only when it changes', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'podnet-agent-'));
    try {
      const path = join(dir, '10-podnet.conflist');
      assert.equal(await writeConflist(path, { mtu: 1450, subnetFile: '/s' }), true);
      assert.equal(await writeConflist(path, { mtu: 1450, subnetFile: '/s' }), false);
      assert.equal(JSON.parse(readFileSync(path, 'utf8')).plugins[0].mtu, 1450);
      assert.deepEqual(readdirSync(dir), ['10-podnet.conflist']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
