/**
 * The lab end to end, as a user sees it: `podnet lab up`, YAML in, curl between pods, nodes
 * and the external host, and the failures a user meets (a router between nodes, an agent
 * restart, a node leaving, etcd going away, bad input). Each describe brings up its own lab
 * under a unique name, runs its tests in order, and always takes the lab down, checking that
 * nothing of it is left: no namespace, no state directory, no /etc/netns entry, no process.
 *
 * Needs root (namespaces) and a build (dist/podnet.mjs). The describes run one after another.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { run } from '../src/kernel/index.ts';
import { restartDaemon, stopDaemon } from '../src/lab/lab.ts';
import { CLI, type Lab as LabT, Lab, curl, docs, eventually, isLive, isRoot, pool, podYaml, sleep } from './support/lab.ts';

const skip = !isRoot() ? 'needs root (network namespaces)' : !existsSync(CLI) ? 'needs a build: run `node scripts/build.ts`' : false;
const base = `t${process.pid % 100000}`;

/** Brings a lab up before the describe's tests and always takes it down after them. */
function withLab(suffix: string, opts: Parameters<LabT['up']>[0]): LabT {
  const lab = new Lab(`${base}${suffix}`);
  before(async () => {
    await lab.up(opts);
  });
  after(async () => {
    await lab.down();
  });
  return lab;
}

/** The last test of every describe: `lab down` removes everything the lab made. */
function downLeavesNothing(lab: LabT): void {
  test('lab down leaves no namespace, state, /etc/netns entry or process behind', async () => {
    const pids = await lab.pids();
    assert.ok(pids.length > 0, 'the lab should have processes before down');
    const r = await lab.down();
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`lab "${lab.name}" is down`));
    // Processes get a moment to be reaped.
    const problems = await eventually('nothing left behind', () => (lab.leftovers(pids).length === 0 ? [] : false), 3000).catch(() => lab.leftovers(pids));
    assert.deepEqual(problems, []);
  });
}

const nodeIP = (i: number): string => `192.168.1.${10 + i}`;

/** One echo pod and one client pod per node. */
function perNodePods(nodes: number[]): string {
  return docs(...nodes.flatMap((i) => [podYaml(`echo${i}`, `node${i}`, 'echo'), podYaml(`client${i}`, `node${i}`, 'client')]));
}

/** The external host's HTTP server: answers each request with the address it came from, then exits. */
function startExternalServer(lab: LabT, port: number, requests: number) {
  const js = `let n=0;const s=require('http').createServer((q,r)=>{r.end(JSON.stringify({client:q.socket.remoteAddress.replace(/^::ffff:/,'')}));if(++n>=${requests})s.close()});s.listen(${port},()=>console.log('listening'))`;
  return lab.spawnExec('ext', ['timeout', '60', process.execPath, '-e', js]);
}

/** The whole reachability matrix of a flat lab: pod→pod (no NAT), node→pod, pod→external (masqueraded). */
async function reachabilityMatrix(lab: LabT, nodes: number[]): Promise<void> {
  const pods = await lab.pods();
  const byName = new Map(pods.map((p) => [p.name, p]));
  for (const i of nodes) {
    assert.equal(byName.get(`echo${i}`)?.node, `node${i}`);
    assert.ok(byName.get(`client${i}`)?.ip, `client${i} has an IP`);
  }
  const failures: string[] = [];
  // pod → pod, every client to every echo pod, same node and across nodes.
  const pairs = nodes.flatMap((c) => nodes.map((e) => ({ c, e })));
  await pool(pairs, 3, async ({ c, e }) => {
    const client = byName.get(`client${c}`)!;
    const echo = byName.get(`echo${e}`)!;
    const r = await curl(lab, client.name, `http://${echo.ip}:8080/`);
    if (r.code !== 200) failures.push(`${client.name} (node${c}) → ${echo.name} (node${e}) ${echo.ip}: HTTP ${r.code} ${r.raw}`);
    else if (r.body.pod !== echo.name) failures.push(`${client.name} → ${echo.ip}: answered by ${r.body.pod}`);
    else if (r.body.client !== client.ip) failures.push(`${client.name} (${client.ip}) → ${echo.name} (node${e}): echo saw ${r.body.client}, so the traffic was NATed`);
  });
  // node → pod.
  await pool(pairs, 3, async ({ c, e }) => {
    const echo = byName.get(`echo${e}`)!;
    const r = await curl(lab, `node/node${c}`, `http://${echo.ip}:8080/`);
    if (r.code !== 200 || r.body.pod !== echo.name) failures.push(`node${c} → ${echo.name} (node${e}) ${echo.ip}: HTTP ${r.code} ${r.raw}`);
  });
  // pod → external host: the source it sees is the node's underlay address (masquerade).
  const server = startExternalServer(lab, 9080, nodes.length);
  try {
    await eventually('the external server listens', () => server.output().includes('listening'), 10_000, 100);
    await pool(nodes, 3, async (i) => {
      const r = await curl(lab, `client${i}`, 'http://203.0.113.10:9080/');
      if (r.code !== 200) failures.push(`client${i} → external host 203.0.113.10: HTTP ${r.code} ${r.raw}`);
      else if (r.body.client !== nodeIP(i)) failures.push(`client${i} → external host: it saw ${r.body.client}, not node${i}'s address ${nodeIP(i)} (no masquerade?)`);
    });
  } finally {
    if (server.child.exitCode === null) server.child.kill('SIGKILL');
  }
  assert.deepEqual(failures, []);
}

describe('lab, vxlan backend, flat, 3 nodes', { skip, concurrency: false }, () => {
  const lab = withLab('a', { nodes: 3, backend: 'vxlan', topology: 'flat' });

  test('up: three Ready nodes with the address plan subnets', async () => {
    const nodes = await lab.nodes();
    assert.deepEqual(
      nodes.map((n) => [n.name, n.ready, n.ip, n.podCIDR]),
      [1, 2, 3].map((i) => [`node${i}`, true, nodeIP(i), `10.244.${i}.0/24`]),
    );
  });

  test('apply: an echo and a client pod on each node become Ready', async () => {
    const r = await lab.apply(perNodePods([1, 2, 3]));
    assert.equal(r.code, 0, r.stderr);
    const pods = await lab.pods();
    assert.equal(pods.length, 6);
    for (const p of pods) {
      assert.ok(p.ready, `${p.name} is Ready`);
      assert.ok(p.ip.startsWith(`10.244.${p.node.slice(4)}.`), `${p.name} has an address of ${p.node}'s subnet (${p.ip})`);
    }
  });

  test('reachability: pod→pod without NAT, node→pod, pod→external masqueraded', async () => {
    await reachabilityMatrix(lab, [1, 2, 3]);
  });

  test('drift repair: a deleted FDB entry is back within 8 s', async () => {
    const fdb = async (): Promise<Array<{ mac: string; dst: string }>> => JSON.parse((await lab.exec('node/node1', ['bridge', '-j', 'fdb', 'show', 'dev', 'podnet.1'])).stdout || '[]');
    const entry = (await fdb()).find((e) => e.dst === nodeIP(2));
    assert.ok(entry, `node1 has an FDB entry for node2 (${nodeIP(2)})`);
    const del = await lab.exec('node/node1', ['bridge', 'fdb', 'del', entry.mac, 'dev', 'podnet.1', 'dst', nodeIP(2), 'self']);
    assert.equal(del.code, 0, del.stderr);
    await eventually('the FDB entry for node2 is back', async () => (await fdb()).some((e) => e.mac === entry.mac && e.dst === nodeIP(2)), 8000);
    const client = await lab.pod('client1');
    const echo = await lab.pod('echo2');
    const r = await curl(lab, client.name, `http://${echo.ip}:8080/`);
    assert.equal(r.code, 200, r.raw);
  });

  test('agent restart on both ends: a long-lived TCP connection across nodes loses nothing', async () => {
    const server = await lab.pod('client2');
    const before = [lab.daemon('agent/node1'), lab.daemon('agent/node2')];
    const ifindex = async (): Promise<number> => JSON.parse((await lab.exec('node/node1', ['ip', '-j', 'link', 'show', 'podnet.1'])).stdout)[0].ifindex;
    const routes = async (): Promise<string> => (await lab.exec('node/node1', ['ip', 'route'])).stdout;
    const [devBefore, routesBefore] = [await ifindex(), await routes()];
    const listener = lab.spawnExec('client2', ['timeout', '30', 'nc', '-l', '7000']);
    try {
      await eventually('the listener is up', async () => (await lab.exec('client2', ['ss', '-Hltn', 'sport = :7000'])).stdout.includes('7000'), 10_000, 100);
      const lines = 100;
      const sender = lab.spawnExec('client1', ['sh', '-c', `i=0; while [ $i -lt ${lines} ]; do i=$((i+1)); echo line-$i; sleep 0.1; done | nc -N -w 10 ${server.ip} 7000`]);
      await eventually('the connection carries data before the restarts', () => listener.output().includes('line-2\n'), 15_000, 50);
      const t0 = Date.now();
      // SIGTERM by PID, then the same command again (as `lab up` started it).
      const again = await Promise.all(before.map((d) => restartDaemon(lab.name, d.role)));
      for (const [k, d] of before.entries()) {
        assert.notEqual(again[k]!.pid, d.pid);
        assert.ok(!isLive(d.pid), `the old ${d.role} is gone`);
      }
      assert.ok(sender.child.exitCode === null, 'the restarts happened while the connection was in use');
      const sent = await sender.done;
      assert.equal(sent, 0, `the sender finished cleanly: ${sender.output()}`);
      assert.equal(await listener.done, 0, listener.output());
      const got = listener.output().trim().split('\n');
      assert.deepEqual(got, Array.from({ length: lines }, (_, k) => `line-${k + 1}`), 'every line arrived, in order');
      assert.ok(Date.now() - t0 < 15_000);
    } finally {
      if (listener.child.exitCode === null) listener.child.kill('SIGKILL');
    }
    // The new agent is up, kept the VXLAN device (not re-created) and the routes.
    for (const n of ['node1', 'node2']) {
      await eventually(`the restarted agent of ${n} runs`, () => (lab.log(`agent-${n}.log`).match(/"agent running"/g) ?? []).length >= 2, 15_000);
      assert.ok(isLive(lab.daemon(`agent/${n}`).pid));
    }
    assert.equal(await ifindex(), devBefore, 'the VXLAN device was kept, not re-created');
    assert.equal(await routes(), routesBefore);
    assert.equal((await lab.nodes()).find((n) => n.name === 'node1')?.podCIDR, '10.244.1.0/24', 'node1 kept its subnet');
  });

  test('kubelet restart: it stops at once, and takes its running pods over as they are', async () => {
    const before = (await lab.pods()).filter((p) => p.node === 'node1');
    const old = lab.daemon('kubelet/node1');
    // It exits on SIGTERM by itself (its pods' processes must not keep it alive).
    process.kill(old.pid, 'SIGTERM');
    await eventually('the kubelet exits on SIGTERM', () => !isLive(old.pid), 10_000, 50);
    const again = await restartDaemon(lab.name, 'kubelet/node1');
    assert.notEqual(again.pid, old.pid);
    await eventually('the new kubelet adopted the pods', () => (lab.log('kubelet-node1.log').match(/"pod adopted"/g) ?? []).length >= before.length, 10_000);
    await sleep(1500); // a few probe rounds
    const now = (await lab.pods()).filter((p) => p.node === 'node1');
    assert.deepEqual(
      now.map((p) => [p.name, p.ip, p.ready, p.phase]),
      before.map((p) => [p.name, p.ip, true, 'Running']),
    );
    const pods = await lab.getJson('pods');
    for (const p of pods.filter((x) => x.spec.nodeName === 'node1')) assert.equal(p.status.containerStatuses[0].restartCount, 0, `${p.metadata.name} was not restarted`);
    const [c2, e1] = await lab.podsNamed('client2', 'echo1');
    const r = await curl(lab, c2.name, `http://${e1.ip}:8080/`);
    assert.equal(r.code, 200, r.raw);
  });

  test('node add: the new node is Ready and its pods reach the old ones and back', async () => {
    const r = await lab.must('node', ['add']);
    assert.match(r.stdout, /node4 \(192\.168\.1\.14\) joined/);
    const n4 = (await lab.nodes()).find((n) => n.name === 'node4');
    assert.ok(n4?.ready, 'node4 is Ready');
    assert.equal(n4.podCIDR, '10.244.4.0/24');
    const a = await lab.apply(perNodePods([4]));
    assert.equal(a.code, 0, a.stderr);
    const [c4, e4, c1, e1] = await lab.podsNamed('client4', 'echo4', 'client1', 'echo1');
    const there = await curl(lab, c4.name, `http://${e1.ip}:8080/`);
    assert.equal(there.code, 200, there.raw);
    assert.equal(there.body.client, c4.ip);
    const back = await curl(lab, c1.name, `http://${e4.ip}:8080/`);
    assert.equal(back.code, 200, back.raw);
    assert.equal(back.body.client, c1.ip);
  });

  test('node remove: its subnet, routes, FDB entries and pods go', async () => {
    const subnet = (await lab.nodes()).find((n) => n.name === 'node2')!.podCIDR;
    assert.equal(subnet, '10.244.2.0/24');
    const r = await lab.must('node', ['remove', 'node2']);
    assert.match(r.stdout, /node2 removed/);
    for (const n of ['node1', 'node3', 'node4']) {
      await eventually(`${n} has no route to ${subnet}`, async () => !(await lab.exec(`node/${n}`, ['ip', 'route'])).stdout.includes(subnet), 5000);
      await eventually(`${n} has no FDB entry for node2`, async () => !(await lab.exec(`node/${n}`, ['bridge', 'fdb', 'show', 'dev', 'podnet.1'])).stdout.includes(nodeIP(2)), 5000);
    }
    assert.deepEqual(
      (await lab.nodes()).map((n) => n.name),
      ['node1', 'node3', 'node4'],
    );
    await eventually('node2 pods are gone from `lab get pods`', async () => !(await lab.pods({ all: true })).some((p) => p.node === 'node2'), 10_000);
    assert.ok(!lab.namespaces().includes(`pnl.${lab.name}.node2`), "node2's namespace is gone");
    assert.ok(!lab.state().daemons.some((d) => d.role.endsWith('/node2')), "node2's daemons are gone from the state");
    // The rest still talks.
    const [c1, e3] = await lab.podsNamed('client1', 'echo3');
    assert.equal((await curl(lab, c1.name, `http://${e3.ip}:8080/`)).code, 200);
  });

  downLeavesNothing(lab);
});

describe('lab, host-gw backend, flat, 3 nodes', { skip, concurrency: false }, () => {
  const lab = withLab('b', { nodes: 3, backend: 'host-gw', topology: 'flat' });

  test('apply and reachability: pod→pod without NAT, node→pod, pod→external masqueraded', async () => {
    const r = await lab.apply(perNodePods([1, 2, 3]));
    assert.equal(r.code, 0, r.stderr);
    const routes = (await lab.exec('node/node1', ['ip', 'route'])).stdout;
    assert.match(routes, /10\.244\.2\.0\/24 via 192\.168\.1\.12 dev eth0/);
    assert.match(routes, /10\.244\.3\.0\/24 via 192\.168\.1\.13 dev eth0/);
    await reachabilityMatrix(lab, [1, 2, 3]);
  });

  test('drift repair: a deleted route and a deleted masquerade chain are back within 8 s', async () => {
    const del = await lab.exec('node/node1', ['ip', 'route', 'del', '10.244.2.0/24']);
    assert.equal(del.code, 0, del.stderr);
    const masq = await lab.exec('node/node1', ['nft', 'delete', 'chain', 'inet', 'podnet', 'egress-masq']);
    assert.equal(masq.code, 0, masq.stderr);
    await eventually('the route to node2 is back', async () => /10\.244\.2\.0\/24 via 192\.168\.1\.12/.test((await lab.exec('node/node1', ['ip', 'route'])).stdout), 8000);
    await eventually('the masquerade rule is back', async () => /masquerade/.test((await lab.exec('node/node1', ['nft', 'list', 'chain', 'inet', 'podnet', 'egress-masq'])).stdout), 8000);
  });

  test('etcd away for 30 s: traffic goes on, and afterwards pods and nodes are added as before', async () => {
    const cidrs = (await lab.nodes()).map((n) => `${n.name}=${n.podCIDR}`);
    const pods = await lab.pods();
    const c1 = pods.find((p) => p.name === 'client1')!;
    const targets = pods.filter((p) => p.name.startsWith('echo'));
    // `lab exec` looks pods up in etcd; during the outage the test enters the sandbox itself.
    const probe = async (): Promise<string[]> => {
      const bad: string[] = [];
      for (const e of targets) {
        try {
          const { stdout } = await run('ip', ['netns', 'exec', lab.podNetns(c1.uid), 'curl', '-sS', '-m', '2', `http://${e.ip}:8080/`], { timeoutMs: 10_000 });
          if (JSON.parse(stdout).client !== c1.ip) bad.push(`${e.name}: ${stdout}`);
        } catch (err) {
          bad.push(`${e.name}: ${(err as Error).message}`);
        }
      }
      return bad;
    };
    const t0 = Date.now();
    await stopDaemon(lab.name, 'etcd');
    try {
      assert.ok(!isLive(lab.daemon('etcd').pid), 'etcd is stopped');
      const down = await lab.run('get', ['pods']);
      assert.notEqual(down.code, 0);
      assert.match(down.stderr, /etcd .*is not answering/, 'the CLI says etcd is not answering');
      while (Date.now() - t0 < 30_000) {
        assert.deepEqual(await probe(), [], `pod→pod traffic during the outage (${((Date.now() - t0) / 1000).toFixed(0)} s in)`);
        await sleep(4000);
      }
    } finally {
      await restartDaemon(lab.name, 'etcd');
    }
    // Back: a new pod starts and is reachable, a new node joins, nobody lost a subnet.
    await eventually('the CLI reaches etcd again', async () => (await lab.run('get', ['nodes'])).code === 0, 15_000);
    const t1 = Date.now();
    const a = await lab.apply(podYaml('late3', 'node3', 'echo'), 30);
    assert.equal(a.code, 0, a.stderr);
    assert.ok(Date.now() - t1 < 20_000, `the new pod came up in ${Date.now() - t1} ms (its kubelet's watch resumed)`);
    const late = await lab.pod('late3');
    const r = await curl(lab, 'client1', `http://${late.ip}:8080/`);
    assert.equal(r.code, 200, r.raw);
    assert.equal(r.body.client, c1.ip);
    const add = await lab.must('node', ['add']);
    assert.match(add.stdout, /node4 .*joined/);
    const after = await lab.nodes();
    assert.deepEqual(
      after.filter((n) => n.name !== 'node4').map((n) => `${n.name}=${n.podCIDR}`),
      cidrs,
      'the nodes kept their subnets',
    );
    for (const i of [1, 2, 3]) assert.doesNotMatch(lab.log(`agent-node${i}.log`), /subnet lease lost/, `node${i}'s agent kept its lease`);
    assert.deepEqual(await probe(), []);
  });

  downLeavesNothing(lab);
});

describe('lab, routed topology (a router between the nodes), host-gw', { skip, concurrency: false }, () => {
  const lab = withLab('c', { nodes: 2, backend: 'host-gw', topology: 'routed' });

  test('pods across the router cannot talk, and the agent says why', async () => {
    const nodes = await lab.nodes();
    assert.deepEqual(
      nodes.map((n) => [n.name, n.ip]),
      [
        ['node1', '192.168.1.11'],
        ['node2', '192.168.2.12'],
      ],
    );
    const a = await lab.apply(perNodePods([1, 2]));
    assert.equal(a.code, 0, a.stderr);
    const [c1, e1, e2] = await lab.podsNamed('client1', 'echo1', 'echo2');
    const same = await curl(lab, c1.name, `http://${e1.ip}:8080/`);
    assert.equal(same.code, 200, `same node still works: ${same.raw}`);
    const across = await curl(lab, c1.name, `http://${e2.ip}:8080/`, 2);
    assert.notEqual(across.code, 200, `pod→pod across the router should fail with host-gw: ${across.raw}`);
    const expected = 'host-gw needs nodes on one L2 segment; node2 (192.168.2.12) is behind a router; use --backend vxlan';
    await eventually('node1 agent logs why', () => lab.log('agent-node1.log').includes(expected), 10_000);
    assert.ok(lab.log('agent-node2.log').includes('node1 (192.168.1.11) is behind a router; use --backend vxlan'));
    // No blackhole or bogus route was installed for the unreachable peer.
    assert.doesNotMatch((await lab.exec('node/node1', ['ip', 'route'])).stdout, /10\.244\.2\.0\/24/);
  });

  downLeavesNothing(lab);
});

describe('lab, routed topology, vxlan', { skip, concurrency: false }, () => {
  const lab = withLab('d', { nodes: 2, backend: 'vxlan', topology: 'routed' });

  test('pods across the router talk both ways, without NAT', async () => {
    const a = await lab.apply(perNodePods([1, 2]));
    assert.equal(a.code, 0, a.stderr);
    const [c1, c2, e1, e2] = await lab.podsNamed('client1', 'client2', 'echo1', 'echo2');
    const there = await curl(lab, c1.name, `http://${e2.ip}:8080/`);
    assert.equal(there.code, 200, there.raw);
    assert.equal(there.body.client, c1.ip);
    const back = await curl(lab, c2.name, `http://${e1.ip}:8080/`);
    assert.equal(back.code, 200, back.raw);
    assert.equal(back.body.client, c2.ip);
    // The FDB points at the peer's underlay address on the other segment.
    assert.match((await lab.exec('node/node1', ['bridge', 'fdb', 'show', 'dev', 'podnet.1'])).stdout, /dst 192\.168\.2\.12/);
  });

  downLeavesNothing(lab);
});

describe('lab, errors a user makes', { skip, concurrency: false }, () => {
  const lab = withLab('e', { nodes: 1 });
  const good = podYaml('fine', 'node1', 'client');
  const count = async (): Promise<number> => (await lab.getJson('pods', { all: true })).length + (await lab.getJson('namespaces')).length;

  test('apply of bad YAML: non-zero exit, a message naming the document, nothing created', async () => {
    const before = await count();
    const r = await lab.apply(docs('apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n', good, 'apiVersion: v1\nkind: Pod\nmetadata: {name: broken\n  spec: [\n'));
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /document 3/);
    assert.match(r.stderr, /PODNET_BAD_YAML/);
    assert.doesNotMatch(r.stderr, /^\s+at /m, 'no stack trace');
    assert.equal(await count(), before, 'no object was created');
  });

  test('apply of an unknown kind: non-zero exit, the kinds it knows, nothing created', async () => {
    const before = await count();
    const r = await lab.apply(docs(good, 'apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: web}\nspec: {}\n'));
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /kind "Ingress" is not supported/);
    assert.match(r.stderr, /Namespace, Pod, Deployment, Service, NetworkPolicy/);
    assert.equal(await count(), before, 'no object was created');
  });

  test('apply of a pod whose command does not exist: non-zero exit naming the pod and the command', async () => {
    const r = await lab.apply(podYaml('nocmd', 'node1', 'client', { command: ['/nonexistent'] }), 30);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /pod\/nocmd/);
    assert.match(r.stderr, /\/nonexistent/);
    assert.match(r.stderr, /no such file or directory/i);
    assert.equal((await lab.pod('nocmd')).ready, false, 'it was never Ready');
    // It can be deleted like any pod, and its sandbox goes with it.
    const uid = (await lab.pod('nocmd')).uid;
    const d = await lab.delete(podYaml('nocmd', 'node1', 'client', { command: ['/nonexistent'] }));
    assert.equal(d.code, 0, d.stderr);
    await eventually('the pod is gone', async () => !(await lab.pods()).some((p) => p.name === 'nocmd'), 10_000);
    assert.ok(!lab.namespaces().includes(lab.podNetns(uid)), 'its sandbox is gone');
  });

  test('lab exec passes on the exit status of the command, and names a missing pod', async () => {
    const ok = await lab.apply(podYaml('shell', 'node1', 'client'));
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal((await lab.exec('shell', ['sh', '-c', 'exit 7'])).code, 7);
    assert.equal((await lab.exec('node/node1', ['false'])).code, 1);
    const missing = await lab.exec('nosuchpod', ['true']);
    assert.notEqual(missing.code, 0);
    assert.match(missing.stderr, /pod nosuchpod not found in namespace default/);
  });

  test('lab up of a lab that is already up: a clear error, and the lab still works', async () => {
    const pids = lab.state().daemons.map((d) => d.pid);
    const r = await lab.run('up', ['--nodes', '1']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, new RegExp(`lab "${lab.name}" is already up`));
    assert.match(r.stderr, /lab down --name/);
    assert.deepEqual(
      lab.state().daemons.map((d) => d.pid),
      pids,
    );
    assert.ok(pids.every(isLive), 'the running lab was not touched');
    const ok = await lab.apply(good);
    assert.equal(ok.code, 0, ok.stderr);
  });

  downLeavesNothing(lab);
});
