/**
 * The thick plugin: the native shim (dist/cni-bin/podnet-bridge) forwarding calls to a warm
 * `podnet cni-server` in the node namespace, compared with the standalone single-executable
 * path it falls back to. Real namespaces, real `ip`, real TCP between pods.
 *
 * To know which path a call took, the forwarding tests run a copy of the shim from a
 * directory without the `.sea` files: that copy can only succeed through the server.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { CNI_BIN, type CniCall, type CniOutcome, type Netns, ROOT, TestBed, isRoot, leases, links, runPlugin, sweepLeftovers, tcpExchange } from './support/netns.ts';

const SHIM = join(CNI_BIN, 'podnet-bridge');
const SEA = join(CNI_BIN, 'podnet-bridge.sea');
const PODNET = join(ROOT, 'dist', 'podnet.mjs');
const skip = isRoot() ? false : 'needs root for network namespaces';

interface RunningServer {
  child: ChildProcess;
  socket: string;
  /** The server's stderr so far (its structured log lines). */
  log: () => string;
}

/** Starts `podnet cni-server` inside `ns` and waits for its start-up line. */
async function startServer(bed: TestBed, ns: Netns, socket: string): Promise<RunningServer> {
  // `ip netns exec` execs the command, so the child's PID is the server's.
  const child = bed.track(spawn('ip', ['netns', 'exec', ns.name, process.execPath, PODNET, 'cni-server', '--socket', socket], { stdio: ['ignore', 'pipe', 'pipe'] }));
  let stderr = '';
  child.stdout?.resume();
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`cni-server did not start within 10 s: ${stderr}`)), 10_000);
    child.stderr?.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
      if (/"msg":"cni-server listening"/.test(stderr)) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`cni-server exited (${code}) at start: ${stderr}`));
    });
  });
  return { child, socket, log: () => stderr };
}

/** Stops a server by its PID with SIGTERM and waits for it to exit; returns its exit code. */
async function stopServer(s: RunningServer | undefined): Promise<number | null> {
  if (!s || s.child.exitCode !== null || s.child.signalCode !== null) return s?.child.exitCode ?? null;
  const exited = new Promise<number | null>((resolve) => s.child.on('exit', (code) => resolve(code)));
  process.kill(s.child.pid!, 'SIGTERM');
  const timer = setTimeout(() => s.child.kill('SIGKILL'), 10_000);
  const code = await exited;
  clearTimeout(timer);
  return code;
}

function bridgeConf(bed: TestBed, bridge: string, subnet: string): Record<string, any> {
  return {
    cniVersion: '1.1.0',
    name: 'podnet',
    type: 'podnet-bridge',
    bridge,
    isGateway: true,
    isDefaultGateway: true,
    ipam: { type: 'podnet-ipam', subnet, dataDir: join(bed.dir, `ipam-${bridge}`) },
  };
}

/** A result with the values that differ per pod (MACs, addresses, names) replaced by what they are. */
function shape(result: unknown): unknown {
  return JSON.parse(JSON.stringify(result), (key: string, v: unknown) => {
    if (key === 'mac') return typeof v === 'string' && /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/.test(v) ? 'MAC' : v;
    if (key === 'address') return typeof v === 'string' && /^10\.\d+\.\d+\.\d+\/24$/.test(v) ? 'ADDRESS' : v;
    if (key === 'sandbox') return typeof v === 'string' && v.startsWith('/var/run/netns/') ? 'NETNS' : v;
    if (key === 'name') return typeof v === 'string' && /^pnv[0-9a-f]{12}$/.test(v) ? 'VETH' : v;
    return v;
  });
}

/** An outcome as a runtime sees it: exit code, parsed stdout (or the raw text), stderr. */
const seen = (o: CniOutcome) => ({ code: o.code, stdout: o.json ?? o.stdout, stderr: o.stderr });

describe('podnet-bridge as a thick plugin: the shim and a warm podnet cni-server', { skip, concurrency: false }, () => {
  let bed: TestBed;
  let node: Netns;
  /** A copy of the shim with no .sea beside it: it works through the server or not at all. */
  let thick: string;
  before(async () => {
    await sweepLeftovers();
    bed = new TestBed('cniserver');
    node = await bed.netns('node');
    const dir = join(bed.dir, 'thick-bin');
    mkdirSync(dir);
    thick = join(dir, 'podnet-bridge');
    copyFileSync(SHIM, thick);
    copyFileSync(join(CNI_BIN, 'podnet-ipam'), join(dir, 'podnet-ipam'));
    assert.equal(existsSync(join(dir, 'podnet-bridge.sea')), false);
  });
  after(async () => bed?.cleanup());

  test('ADD, CHECK and DEL of two pods go through the server and answer as the standalone plugin does', async () => {
    const socket = join(bed.dir, 'run', 'cni.sock');
    let server: RunningServer | undefined;
    let exitCode: number | null = null;
    try {
      server = await startServer(bed, node, socket);
      const env = { PODNET_CNI_SOCKET: socket };
      const conf = bridgeConf(bed, 'cni0', '10.244.40.0/24');
      const pods = [await bed.netns('a'), await bed.netns('b')];
      const adds: CniOutcome[] = [];
      for (const [i, pod] of pods.entries()) {
        const out = await runPlugin(node, thick, { command: 'ADD', containerId: `thick${i}`, netns: pod.path, ifName: 'eth0', env }, conf);
        assert.equal(out.code, 0, out.stdout + out.stderr);
        assert.equal(out.stderr, '');
        assert.equal(out.json.interfaces[2].sandbox, pod.path);
        adds.push(out);
      }
      const ips = adds.map((o) => String(o.json.ips[0].address).split('/')[0]!);
      assert.notEqual(ips[0], ips[1]);
      assert.equal(await tcpExchange(pods[0]!, pods[1]!, ips[1]!, 7201, 'thick a to b'), 'thick a to b');
      assert.equal(await tcpExchange(pods[1]!, pods[0]!, ips[0]!, 7202, 'thick b to a'), 'thick b to a');

      // The same calls on the standalone executable (the .sea itself), in pods of their own.
      const solo = [await bed.netns('c'), await bed.netns('d')];
      const soloAdds: CniOutcome[] = [];
      for (const [i, pod] of solo.entries()) {
        const out = await runPlugin(node, SEA, { command: 'ADD', containerId: `solo${i}`, netns: pod.path, ifName: 'eth0' }, conf);
        assert.equal(out.code, 0, out.stdout + out.stderr);
        soloAdds.push(out);
      }
      for (const k of [0, 1]) assert.deepEqual(shape(seen(adds[k]!)), shape(seen(soloAdds[k]!)));

      const calls = async (plugin: string, containerId: string, pod: Netns, prev: unknown, command: string, extra: Record<string, string> = {}) =>
        runPlugin(node, plugin, { command, containerId, netns: pod.path, ifName: 'eth0', env: extra }, { ...conf, prevResult: prev });
      for (const k of [0, 1]) {
        const check = await calls(thick, `thick${k}`, pods[k]!, adds[k]!.json, 'CHECK', env);
        assert.deepEqual(seen(check), seen(await calls(SEA, `solo${k}`, solo[k]!, soloAdds[k]!.json, 'CHECK')));
        assert.deepEqual(seen(check), { code: 0, stdout: '', stderr: '' });
      }
      for (const k of [0, 1]) {
        const del = await calls(thick, `thick${k}`, pods[k]!, adds[k]!.json, 'DEL', env);
        assert.deepEqual(seen(del), seen(await calls(SEA, `solo${k}`, solo[k]!, soloAdds[k]!.json, 'DEL')));
        assert.deepEqual(seen(del), { code: 0, stdout: '', stderr: '' });
        // DEL again: still fine, as DEL must be.
        assert.equal((await calls(thick, `thick${k}`, pods[k]!, adds[k]!.json, 'DEL', env)).code, 0);
      }
      assert.deepEqual(leases(conf.ipam.dataDir, 'podnet'), []);
      assert.deepEqual((await links(node)).filter((l) => l.startsWith('pnv')), []);
      for (const pod of pods) assert.deepEqual(await links(pod), ['lo']);
      assert.doesNotMatch(server.log(), /declined|malformed/);
    } finally {
      exitCode = await stopServer(server);
    }
    assert.equal(exitCode, 0, 'SIGTERM ends the server cleanly');
    assert.equal(existsSync(socket), false, 'the server removes its socket');
  });

  test('bad input gets the same CNI error object, stderr and exit code through the server as standalone', async () => {
    const socket = join(bed.dir, 'bad.sock');
    let server: RunningServer | undefined;
    try {
      server = await startServer(bed, node, socket);
      const pod = await bed.netns('bad');
      const conf = bridgeConf(bed, 'cni1', '10.244.41.0/24');
      const cases: Array<[string, string | object, Partial<CniCall>?]> = [
        ['not JSON', '{"cniVersion": "1.0.0", "name": '],
        ['unknown version', { ...conf, cniVersion: '9.9.9' }],
        ['bridge name too long', { ...conf, bridge: 'averyveryverylongname' }],
        ['vlan (unsupported, code 2)', { ...conf, vlan: 5 }],
        ['relative dataDir', { ...conf, ipam: { ...conf.ipam, dataDir: 'rel' } }],
        ['netns that does not exist', conf, { netns: '/var/run/netns/nope-nope' }],
        ['interface name with a slash', conf, { ifName: 'eth/0' }],
        ['unknown command', conf, { command: 'FROB' }],
        ['CHECK without prevResult', conf, { command: 'CHECK' }],
        ['STATUS with cniVersion 1.0.0', { ...conf, cniVersion: '1.0.0' }, { command: 'STATUS' }],
        ['no CNI_COMMAND (greeting on stderr)', conf, { env: { CNI_COMMAND: '' } }],
      ];
      for (const [label, stdin, over] of cases) {
        const call: CniCall = { command: 'ADD', containerId: 'bad', netns: pod.path, ifName: 'eth0', ...over };
        const viaServer = await runPlugin(node, thick, { ...call, env: { ...call.env, PODNET_CNI_SOCKET: socket } }, stdin);
        const standalone = await runPlugin(node, SEA, call, stdin);
        assert.notEqual(viaServer.code, 0, label);
        assert.ok(viaServer.json, `${label}: one JSON object, got ${JSON.stringify(viaServer.stdout)}`);
        assert.deepEqual(seen(viaServer), seen(standalone), label);
      }
      assert.deepEqual(await links(pod), ['lo']);
      // VERSION, the other call that needs no system at all, answers the same too.
      const version = { command: 'VERSION' };
      assert.deepEqual(seen(await runPlugin(node, thick, { ...version, env: { PODNET_CNI_SOCKET: socket } }, { cniVersion: '0.4.0' })), seen(await runPlugin(node, SEA, version, { cniVersion: '0.4.0' })));
    } finally {
      await stopServer(server);
    }
  });

  test('with no server answering, the installed shim runs the standalone plugin and works', async () => {
    // A stale socket: bound by a process killed before it could remove it, so connect is refused.
    const stale = join(bed.dir, 'stale.sock');
    const killed = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(stale)}, () => process.kill(process.pid, 'SIGKILL'))`]);
    await new Promise((r) => killed.on('exit', r));
    assert.ok(existsSync(stale));
    const conf = bridgeConf(bed, 'cni2', '10.244.42.0/24');
    const cases = [
      ['no socket file', join(bed.dir, 'absent.sock')],
      ['a stale socket', stale],
    ] as const;
    for (const [n, [label, socket]] of cases.entries()) {
      const pods = [await bed.netns(`fb${n}a`), await bed.netns(`fb${n}b`)];
      const env = { PODNET_CNI_SOCKET: socket };
      const outs: CniOutcome[] = [];
      for (const [i, pod] of pods.entries()) {
        const out = await runPlugin(node, SHIM, { command: 'ADD', containerId: `fb${n}${i}`, netns: pod.path, ifName: 'eth0', env }, conf);
        assert.equal(out.code, 0, `${label}: ${out.stdout}${out.stderr}`);
        outs.push(out);
      }
      const ipB = String(outs[1]!.json.ips[0].address).split('/')[0]!;
      assert.equal(await tcpExchange(pods[0]!, pods[1]!, ipB, 7203 + n, label), label);
      for (const [i, pod] of pods.entries()) {
        const del = await runPlugin(node, SHIM, { command: 'DEL', containerId: `fb${n}${i}`, netns: pod.path, ifName: 'eth0', env }, conf);
        assert.equal(del.code, 0, del.stdout);
      }
      // And the copy without a .sea says so in one error object rather than hanging or crashing.
      const lone = await runPlugin(node, thick, { command: 'VERSION', env }, { cniVersion: '1.0.0' });
      assert.equal(lone.code, 1);
      assert.equal(lone.json.code, 999);
      assert.match(lone.json.msg, /podnet-bridge\.sea cannot run/);
    }
    assert.deepEqual(leases(conf.ipam.dataDir, 'podnet'), []);
  });

  test('a server in another network namespace declines, and the shim sets the pod up from the caller’s namespace', async () => {
    const elsewhere = await bed.netns('elsewhere');
    const socket = join(bed.dir, 'elsewhere.sock');
    let server: RunningServer | undefined;
    try {
      server = await startServer(bed, elsewhere, socket);
      const pod = await bed.netns('ns');
      const conf = bridgeConf(bed, 'cni3', '10.244.43.0/24');
      const env = { PODNET_CNI_SOCKET: socket };
      const add = await runPlugin(node, SHIM, { command: 'ADD', containerId: 'nsx', netns: pod.path, ifName: 'eth0', env }, conf);
      assert.equal(add.code, 0, add.stdout + add.stderr);
      const veth = String(add.json.interfaces[1].name);
      const inNode = await links(node);
      assert.ok(inNode.includes('cni3') && inNode.includes(veth), `bridge and ${veth} in the caller's namespace: ${inNode.join(' ')}`);
      const inServer = await links(elsewhere);
      assert.ok(!inServer.includes('cni3') && !inServer.includes(veth), `nothing in the server's namespace: ${inServer.join(' ')}`);
      assert.match(server.log(), /call from another network namespace declined/);
      // The copy without a .sea cannot fall back: it fails in one error object, and nothing happened.
      const lone = await runPlugin(node, thick, { command: 'ADD', containerId: 'nsy', netns: pod.path, ifName: 'eth1', env }, conf);
      assert.equal(lone.code, 1);
      assert.match(lone.json.msg, /\.sea cannot run/);
      assert.equal(lone.json.cniVersion, '1.1.0');
      const del = await runPlugin(node, SHIM, { command: 'DEL', containerId: 'nsx', netns: pod.path, ifName: 'eth0', env }, conf);
      assert.equal(del.code, 0, del.stdout);
      assert.deepEqual((await links(node)).filter((l) => l.startsWith('pnv')), []);
      assert.deepEqual(leases(conf.ipam.dataDir, 'podnet'), []);
    } finally {
      await stopServer(server);
    }
  });
});
