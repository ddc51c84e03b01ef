/**
 * Services in the lab, end to end, as a user sees them: YAML in through `podnet lab apply`,
 * requests with curl (or a small UDP client) from pods, from the nodes and from the external
 * host, and what the built-in echo image reports (which pod answered, which client address it
 * saw). Covered:
 *
 *   ClusterIP from every pod and every node (all endpoints reached, pod clients not NATed),
 *   multi-port with a named target port, UDP; NodePort and LoadBalancer from outside, and the
 *   LoadBalancer address moving when its node leaves; externalTrafficPolicy Local (client kept,
 *   only the endpoint's node answers, health-check node port 200/503) and Cluster (any node,
 *   masqueraded); sessionAffinity ClientIP; hairpin; no endpoints → refused at once; scaling
 *   2→5→1 and a readiness flip under a running client without one failed request; a pinned UDP
 *   flow that moves when its endpoint goes (and one that starts before there is an endpoint);
 *   and the same basics with `--proxy iptables`.
 *
 * Needs root (namespaces) and a build (dist/podnet.mjs). Each describe has its own lab and
 * always takes it down; files the tests make are /tmp/<lab>-*, removed at the end.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { CLI, Lab, docs, eventually, isRoot, sleep } from './support/lab.ts';

const skip = !isRoot() ? 'needs root (network namespaces)' : !existsSync(CLI) ? 'needs a build: run `node scripts/build.ts`' : false;
const base = `s${process.pid % 100000}`;
const NODE = process.execPath;
const EXT = '203.0.113.10';
const nodeIP = (i: number): string => `192.168.1.${10 + i}`;

// ---------------------------------------------------------------------------------------------
// Manifests

/** An echo pod pinned to a node; `alt` adds a second container: HTTP on 9090 (port name `alt`). */
function echoPod(name: string, node: string, app: string, opts: { alt?: boolean } = {}): string {
  const alt = `require('http').createServer((q,r)=>r.end(JSON.stringify({pod:process.env.POD_NAME,port:9090})+'\\n')).listen(9090)`;
  return `apiVersion: v1
kind: Pod
metadata:
  name: ${name}
  labels: {app: ${app}}
spec:
  nodeName: ${node}
  containers:
  - name: echo
    image: podnet/echo
    ports: [{containerPort: 8080, name: http}]
    readinessProbe: {httpGet: {port: 8080, path: /}, periodSeconds: 1}
${
  opts.alt
    ? `  - name: alt
    image: busybox
    command: ${JSON.stringify([NODE, '-e', alt])}
    ports: [{containerPort: 9090, name: alt}]
`
    : ''
}`;
}

/** A UDP echo pod: answers every datagram with "<pod> <client address> <datagram>". */
function udpPod(name: string, node: string, app: string): string {
  const js = `const s=require('dgram').createSocket('udp4');s.on('message',(m,r)=>s.send(process.env.POD_NAME+' '+r.address+' '+m,r.port,r.address));s.bind(5353)`;
  return `apiVersion: v1
kind: Pod
metadata:
  name: ${name}
  labels: {app: ${app}}
spec:
  nodeName: ${node}
  containers:
  - name: udp
    image: busybox
    command: ${JSON.stringify([NODE, '-e', js])}
    ports: [{containerPort: 5353, protocol: UDP}]
`;
}

function clientPod(name: string, node: string): string {
  return `apiVersion: v1
kind: Pod
metadata: {name: ${name}}
spec:
  nodeName: ${node}
  containers:
  - {name: main, image: busybox, command: [sleep, infinity]}
`;
}

function service(name: string, selector: string, extra: Record<string, unknown> = {}, ports = '[{port: 80, targetPort: 8080}]'): string {
  const lines = Object.entries(extra).map(([k, v]) => `  ${k}: ${JSON.stringify(v)}\n`).join('');
  return `apiVersion: v1
kind: Service
metadata: {name: ${name}}
spec:
  selector: {app: ${selector}}
  ports: ${ports}
${lines}`;
}

function deployment(name: string, replicas: number): string {
  return `apiVersion: apps/v1
kind: Deployment
metadata: {name: ${name}}
spec:
  replicas: ${replicas}
  selector: {matchLabels: {app: ${name}}}
  template:
    metadata: {labels: {app: ${name}}}
    spec:
      containers:
      - name: echo
        image: podnet/echo
        ports: [{containerPort: 8080}]
        readinessProbe: {httpGet: {port: 8080, path: /}, periodSeconds: 1}
`;
}

// ---------------------------------------------------------------------------------------------
// Driving the lab

async function mustApply(lab: Lab, yaml: string): Promise<void> {
  const r = await lab.apply(yaml);
  assert.equal(r.code, 0, `lab apply failed:\n${r.stdout}\n${r.stderr}`);
}

async function mustDelete(lab: Lab, yaml: string): Promise<void> {
  const r = await lab.delete(yaml);
  assert.equal(r.code, 0, `lab delete failed:\n${r.stdout}\n${r.stderr}`);
}

/** `sh -c SCRIPT` in a pod, a node (`node/NODE`) or on the external host; stdout. */
async function sh(lab: Lab, target: string, script: string, timeoutMs = 60_000): Promise<string> {
  const r = await lab.exec(target, ['sh', '-c', script], { timeoutMs });
  assert.equal(r.code, 0, `lab exec ${target} -- sh -c '${script}' exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

interface Hits {
  ok: Array<Record<string, any>>;
  failed: string[];
}

/** `n` HTTP requests from `target` in one exec (curl each): parsed answers and failures. */
async function hits(lab: Lab, target: string, url: string, n: number, timeoutS = 2): Promise<Hits> {
  const out = await sh(lab, target, `for i in $(seq ${n}); do curl -sS -m ${timeoutS} ${url} 2>/dev/null || echo "FAIL exit $?"; echo; done`);
  const res: Hits = { ok: [], failed: [] };
  for (const line of out.split('\n').map((l) => l.trim()).filter(Boolean)) {
    if (line.startsWith('FAIL')) res.failed.push(line);
    else res.ok.push(JSON.parse(line));
  }
  return res;
}

/** One HTTP request: status code (0 = no answer), body, curl's exit code and the time it took. */
async function once(lab: Lab, target: string, url: string, timeoutS = 2): Promise<{ code: number; exit: number; body: string; seconds: number }> {
  const out = await sh(lab, target, `curl -sS -m ${timeoutS} -o /tmp/${lab.name}-body.$$ -w '%{http_code} %{time_total}' ${url} 2>/dev/null; rc=$?; echo " $rc"; cat /tmp/${lab.name}-body.$$ 2>/dev/null; rm -f /tmp/${lab.name}-body.$$`);
  const [first = '', ...rest] = out.split('\n');
  const [code = '0', seconds = '0', exit = '1'] = first.trim().split(/\s+/);
  return { code: Number(code), exit: Number(exit), seconds: Number(seconds), body: rest.join('\n').trim() };
}

/** `n` UDP requests from `target`, each from a new socket (a new source port): the answers. */
async function udpHits(lab: Lab, target: string, host: string, port: number, n: number): Promise<string[]> {
  const js = `const d=require('dgram');let i=0;const one=()=>{if(i++>=${n})return;const s=d.createSocket('udp4');const t=setTimeout(()=>{console.log('TIMEOUT');s.close();one()},1000);s.on('message',(m)=>{clearTimeout(t);console.log(String(m));s.close();one()});s.send('q'+i,${port},'${host}')};one()`;
  const r = await lab.exec(target, [NODE, '-e', js], { timeoutMs: 60_000 });
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.split('\n').filter(Boolean);
}

/** A Service once the controller has given it a ClusterIP. */
async function serviceNamed(lab: Lab, name: string): Promise<any> {
  return eventually(`service ${name} has a ClusterIP`, async () => (await lab.getJson('services')).find((s) => s.metadata.name === name && s.spec?.clusterIP));
}

/** Fills `into` with the lab's Services once `names` have their ClusterIP (and `lbs` their LoadBalancer address). */
async function allocated(lab: Lab, into: Record<string, any>, names: string[], lbs: string[]): Promise<void> {
  await eventually(`Services ${names.join(', ')} allocated`, async () => {
    for (const s of await lab.getJson('services')) into[s.metadata.name] = s;
    return names.every((n) => into[n]?.spec?.clusterIP) && lbs.every((n) => into[n]?.status?.loadBalancer?.ingress?.[0]?.ip);
  });
}

/** The endpoints of a Service, from its EndpointSlices. */
async function endpointsOf(lab: Lab, svc: string): Promise<Array<{ ip: string; pod: string; node: string; ready: boolean; terminating: boolean }>> {
  const slices = (await lab.getJson('endpointslices')).filter((s) => s.metadata.labels?.['kubernetes.io/service-name'] === svc);
  return slices.flatMap((s) =>
    (s.endpoints ?? []).map((e: any) => ({ ip: e.addresses[0], pod: e.targetRef?.name ?? '', node: e.nodeName ?? '', ready: e.conditions?.ready !== false, terminating: e.conditions?.terminating === true })),
  );
}

async function readyEndpoints(lab: Lab, svc: string): Promise<string[]> {
  return (await endpointsOf(lab, svc)).filter((e) => e.ready).map((e) => e.pod).sort();
}

/** Every IPv4 address of every node (what a masqueraded packet from a node can carry). */
async function nodeAddresses(lab: Lab, nodes: number[]): Promise<Set<string>> {
  const out = new Set<string>();
  for (const i of nodes) {
    const text = await sh(lab, `node/node${i}`, 'ip -4 -o addr show');
    for (const m of text.matchAll(/inet (\d+\.\d+\.\d+\.\d+)\//g)) out.add(m[1]!);
  }
  return out;
}

/** The nodes whose eth0 holds `ip` (a LoadBalancer address is announced by one). */
async function holders(lab: Lab, nodes: number[], ip: string): Promise<number[]> {
  const out: number[] = [];
  for (const i of nodes) {
    const text = await sh(lab, `node/node${i}`, 'ip -4 -o addr show dev eth0');
    if (text.includes(` ${ip}/`)) out.push(i);
  }
  return out;
}

const tally = (xs: string[]): Record<string, number> => Object.fromEntries([...new Set(xs)].sort().map((x) => [x, xs.filter((y) => y === x).length]));

function removeTmpFiles(name: string): void {
  for (const f of readdirSync('/tmp')) if (f.startsWith(`${name}-`)) rmSync(`/tmp/${f}`, { force: true, recursive: true });
}

/** A lab for the describe: up before its tests, always down (and its /tmp files gone) after. */
function withLab(name: string, upArgs: string[]): Lab {
  const lab = new Lab(name);
  before(async () => {
    removeTmpFiles(name);
    await lab.must('up', upArgs, { timeoutMs: 120_000 });
  });
  after(async () => {
    try {
      const r = await lab.down();
      assert.equal(r.code, 0, `lab down: ${r.stderr}`);
    } finally {
      removeTmpFiles(name);
    }
  });
  return lab;
}

// ---------------------------------------------------------------------------------------------

describe('services (nftables proxy, 3 nodes)', { skip, timeout: 360_000 }, () => {
  const NODES = [1, 2, 3];
  const lab = withLab(base, ['--nodes', '3']);
  const pods: Record<string, { ip: string; node: string }> = {};
  const svc: Record<string, any> = {};

  before(async () => {
    await mustApply(
      lab,
      docs(
        ...NODES.map((i) => echoPod(`web${i}`, `node${i}`, 'web', { alt: true })),
        ...NODES.map((i) => clientPod(`client${i}`, `node${i}`)),
        echoPod('loc', 'node2', 'loc'),
        echoPod('hp', 'node3', 'hp'),
        udpPod('udpa', 'node1', 'udp'),
        udpPod('udpb', 'node2', 'udp'),
        service('web', 'web', {}, '[{name: http, port: 80, targetPort: 8080}, {name: alt, port: 81, targetPort: alt}]'),
        service('weblb', 'web', { type: 'LoadBalancer' }),
        service('webnp', 'web', { type: 'NodePort' }),
        service('aff', 'web', { sessionAffinity: 'ClientIP' }),
        service('loclb', 'loc', { type: 'LoadBalancer', externalTrafficPolicy: 'Local' }),
        service('hp', 'hp'),
        service('none', 'nothing-has-this-label'),
        service('udp', 'udp', {}, '[{port: 53, targetPort: 5353, protocol: UDP}]'),
      ),
    );
    for (const p of await lab.pods()) pods[p.name] = { ip: p.ip, node: p.node };
    await allocated(lab, svc, ['web', 'weblb', 'webnp', 'aff', 'loclb', 'hp', 'none', 'udp'], ['weblb', 'loclb']);
    // Every endpoint ready in its slice, and the LoadBalancer addresses announced.
    await eventually('all endpoints ready', async () => (await readyEndpoints(lab, 'web')).length === 3 && (await readyEndpoints(lab, 'udp')).length === 2 && (await readyEndpoints(lab, 'loclb')).length === 1 && (await readyEndpoints(lab, 'hp')).length === 1, 30_000);
    for (const name of ['weblb', 'loclb']) {
      const ip = svc[name].status?.loadBalancer?.ingress?.[0]?.ip;
      assert.ok(ip, `${name} got a LoadBalancer address: ${JSON.stringify(svc[name].status)}`);
      await eventually(`${name}'s address ${ip} announced by one node`, async () => (await holders(lab, NODES, ip)).length === 1, 15_000);
    }
  });

  test('the controller allocated ClusterIPs, node ports, LoadBalancer addresses and a health-check port', () => {
    for (const s of Object.values(svc).filter((x) => x.metadata.name !== 'kubernetes')) assert.match(s.spec.clusterIP, /^10\.96\.1\.\d+$/, `${s.metadata.name}: ${s.spec.clusterIP}`);
    for (const name of ['weblb', 'webnp', 'loclb']) assert.ok(svc[name].spec.ports[0].nodePort >= 30086, `${name} has a node port: ${JSON.stringify(svc[name].spec.ports)}`);
    assert.match(svc.weblb.status.loadBalancer.ingress[0].ip, /^192\.168\.1\.2\d\d$/);
    assert.ok(svc.loclb.spec.healthCheckNodePort > 0, 'eTP Local LoadBalancer has a healthCheckNodePort');
  });

  test('ClusterIP from a pod on every node: every endpoint answers, the client address is the pod\'s own', async () => {
    const ip = svc.web.spec.clusterIP;
    for (const i of NODES) {
      const r = await hits(lab, `client${i}`, `http://${ip}/`, 30);
      assert.deepEqual(r.failed, [], `client${i} → ${ip}`);
      assert.deepEqual([...new Set(r.ok.map((b) => b.pod))].sort(), ['web1', 'web2', 'web3'], `client${i} → ${ip}: answered by ${JSON.stringify(tally(r.ok.map((b) => b.pod)))}`);
      const clients = [...new Set(r.ok.map((b) => b.client))];
      assert.deepEqual(clients, [pods[`client${i}`]!.ip], `client${i} (${pods[`client${i}`]!.ip}) → ${ip}: the echo pods saw ${clients.join(', ')} (pod-to-pod through a Service must not be masqueraded)`);
    }
  });

  test('ClusterIP from every node itself reaches every endpoint', async () => {
    const ip = svc.web.spec.clusterIP;
    for (const i of NODES) {
      const r = await hits(lab, `node/node${i}`, `http://${ip}/`, 30);
      assert.deepEqual(r.failed, [], `node${i} → ${ip}`);
      assert.deepEqual([...new Set(r.ok.map((b) => b.pod))].sort(), ['web1', 'web2', 'web3'], `node${i} → ${ip}: answered by ${JSON.stringify(tally(r.ok.map((b) => b.pod)))}`);
    }
  });

  test('multi-port Service: port 80 → container port 8080, port 81 → the container port named "alt" (9090)', async () => {
    const ip = svc.web.spec.clusterIP;
    const p80 = await hits(lab, 'client1', `http://${ip}:80/`, 6);
    const p81 = await hits(lab, 'client1', `http://${ip}:81/`, 12);
    assert.deepEqual(p80.failed, []);
    assert.deepEqual(p81.failed, []);
    assert.ok(p80.ok.every((b) => b.client === pods.client1!.ip && b.port === undefined), `port 80 is the echo server: ${JSON.stringify(p80.ok)}`);
    assert.ok(p81.ok.every((b) => b.port === 9090), `port 81 is the alt server: ${JSON.stringify(p81.ok)}`);
    assert.ok(new Set(p81.ok.map((b) => b.pod)).size >= 2, `port 81 is balanced too: ${JSON.stringify(tally(p81.ok.map((b) => b.pod)))}`);
  });

  test('UDP through a ClusterIP: both endpoints answer, the client address is kept', async () => {
    const ip = svc.udp.spec.clusterIP;
    const answers = await udpHits(lab, 'client3', ip, 53, 20);
    assert.ok(!answers.includes('TIMEOUT'), `UDP ${ip}:53 from client3: ${answers.join(' | ')}`);
    assert.equal(answers.length, 20);
    assert.deepEqual([...new Set(answers.map((a) => a.split(' ')[0]))].sort(), ['udpa', 'udpb'], answers.join(' | '));
    assert.deepEqual([...new Set(answers.map((a) => a.split(' ')[1]))], [pods.client3!.ip]);
  });

  test('NodePort on every node from the external host (eTP Cluster: every node answers, the client seen is a node address)', async () => {
    const port = svc.webnp.spec.ports[0].nodePort;
    const addrs = await nodeAddresses(lab, NODES);
    for (const i of NODES) {
      const r = await hits(lab, 'ext', `http://${nodeIP(i)}:${port}/`, 9);
      assert.deepEqual(r.failed, [], `ext → node${i} ${nodeIP(i)}:${port}`);
      assert.ok(new Set(r.ok.map((b) => b.pod)).size >= 2, `ext → node${i}:${port} is balanced over the cluster: ${JSON.stringify(tally(r.ok.map((b) => b.pod)))}`);
      for (const b of r.ok) {
        assert.notEqual(b.client, EXT, `eTP Cluster must masquerade: ${JSON.stringify(b)}`);
        assert.ok(addrs.has(b.client), `the client ${b.pod} saw (${b.client}) is an address of a node (${[...addrs].join(', ')})`);
      }
    }
  });

  test('LoadBalancer address from the external host reaches every endpoint', async () => {
    const ip = svc.weblb.status.loadBalancer.ingress[0].ip;
    const r = await hits(lab, 'ext', `http://${ip}/`, 30);
    assert.deepEqual(r.failed, [], `ext → ${ip}`);
    assert.deepEqual([...new Set(r.ok.map((b) => b.pod))].sort(), ['web1', 'web2', 'web3'], JSON.stringify(tally(r.ok.map((b) => b.pod))));
    assert.ok(r.ok.every((b) => b.client !== EXT), 'eTP Cluster LoadBalancer traffic is masqueraded');
  });

  test('externalTrafficPolicy Local: only the endpoint\'s node answers, with the client address kept; health check 200 there, 503 elsewhere', async () => {
    const s = svc.loclb;
    const port = s.spec.ports[0].nodePort;
    const hc = s.spec.healthCheckNodePort;
    const lb = s.status.loadBalancer.ingress[0].ip;
    assert.equal(pods.loc!.node, 'node2');
    // The node with the endpoint: answers, and the echo saw the external host itself.
    const here = await hits(lab, 'ext', `http://${nodeIP(2)}:${port}/`, 5);
    assert.deepEqual(here.failed, []);
    assert.deepEqual([...new Set(here.ok.map((b) => `${b.pod} ${b.client}`))], [`loc ${EXT}`], 'eTP Local keeps the client address');
    // The LoadBalancer address: announced by the endpoint's node, client kept.
    assert.deepEqual(await holders(lab, NODES, lb), [2], `${lb} is announced by node2, which has the endpoint`);
    const viaLb = await hits(lab, 'ext', `http://${lb}/`, 5);
    assert.deepEqual(viaLb.failed, []);
    assert.deepEqual([...new Set(viaLb.ok.map((b) => `${b.pod} ${b.client}`))], [`loc ${EXT}`]);
    // Nodes without a local endpoint: nothing (dropped, so curl times out).
    for (const i of [1, 3]) {
      const r = await once(lab, 'ext', `http://${nodeIP(i)}:${port}/`, 1);
      assert.equal(r.code, 0, `node${i} has no endpoint of an eTP Local service, yet ${nodeIP(i)}:${port} answered ${r.code} ${r.body}`);
    }
    // The health-check node port: 200 with the count of local endpoints, 503 elsewhere.
    for (const i of NODES) {
      const r = await once(lab, 'ext', `http://${nodeIP(i)}:${hc}/`);
      const want = i === 2 ? 200 : 503;
      assert.equal(r.code, want, `health check node${i} ${nodeIP(i)}:${hc}: ${r.code} ${r.body}`);
      assert.equal(JSON.parse(r.body).localEndpoints, i === 2 ? 1 : 0);
    }
  });

  test('sessionAffinity ClientIP: every request of one client goes to the same pod', async () => {
    const ip = svc.aff.spec.clusterIP;
    for (const c of ['client1', 'client2']) {
      const r = await hits(lab, c, `http://${ip}/`, 10);
      assert.deepEqual(r.failed, []);
      assert.equal(new Set(r.ok.map((b) => b.pod)).size, 1, `${c} → ${ip} (ClientIP affinity): ${JSON.stringify(tally(r.ok.map((b) => b.pod)))}`);
    }
  });

  test('hairpin: a pod reaches its own Service (itself the only endpoint)', async () => {
    const ip = svc.hp.spec.clusterIP;
    const r = await hits(lab, 'hp', `http://${ip}/`, 5);
    assert.deepEqual(r.failed, [], `hp → ${ip} (its own Service)`);
    assert.ok(r.ok.every((b) => b.pod === 'hp'));
    // Hairpin is masqueraded: the pod sees its node (the bridge address), not itself.
    const addrs = await nodeAddresses(lab, [3]);
    assert.ok(r.ok.every((b) => addrs.has(b.client)), `hp saw ${[...new Set(r.ok.map((b) => b.client))].join(', ')}; node3 has ${[...addrs].join(', ')}`);
  });

  test('a Service without endpoints refuses at once (TCP reset, not a timeout), from a pod and from a node', async () => {
    const ip = svc.none.spec.clusterIP;
    for (const from of ['client1', 'node/node2']) {
      const r = await once(lab, from, `http://${ip}/`, 5);
      assert.equal(r.exit, 7, `curl from ${from} to ${ip} (no endpoints) should fail with "connection refused" (exit 7), got exit ${r.exit} after ${r.seconds}s`);
      assert.ok(r.seconds < 1, `refused in ${r.seconds}s`);
    }
  });

  test('scaling 2→5→1 and a readiness flip under a running client: no request fails', async (t) => {
    // flip's readiness: an exec probe, run (as a kubelet does) with the container's environment.
    const flipFile = `/tmp/${lab.name}-ready-flip`;
    const stopFile = `/tmp/${lab.name}-loop-stop`;
    writeFileSync(flipFile, '');
    const flip = `apiVersion: v1
kind: Pod
metadata:
  name: flip
  labels: {app: sc}
spec:
  nodeName: node3
  containers:
  - name: echo
    image: podnet/echo
    ports: [{containerPort: 8080}]
    readinessProbe: {exec: {command: [sh, -c, 'test -f /tmp/${lab.name}-ready-$POD_NAME']}, periodSeconds: 1, failureThreshold: 1}
`;
    await mustApply(lab, docs(deployment('sc', 2), flip, service('sc', 'sc')));
    await eventually('3 ready endpoints (2 replicas + flip)', async () => (await readyEndpoints(lab, 'sc')).length === 3, 30_000);
    const ip = (await serviceNamed(lab, 'sc')).spec.clusterIP;
    // The clients, one on every node: a request every 50 ms, each must succeed within 2 s;
    // what answered is printed.
    const loop = `ok=0; fail=0; while [ ! -f ${stopFile} ]; do
      out=$(curl -sS -m 2 http://${ip}/ 2>&1); rc=$?
      if [ $rc -eq 0 ]; then ok=$((ok+1)); echo "OK $(echo "$out" | sed -n 's/.*"pod":"\\([^"]*\\)".*/\\1/p')";
      else fail=$((fail+1)); echo "FAIL $(date +%T.%N) exit=$rc $out"; fi
      sleep 0.05; done; echo "TOTAL $ok $fail"`;
    const clients = NODES.map((i) => ({ name: `client${i}`, run: lab.spawnExec(`client${i}`, ['bash', '-c', loop]) }));
    const steps: string[] = [];
    const step = (s: string): void => void steps.push(`${new Date().toISOString().slice(11, 23)} ${s}`);
    try {
      await eventually('the client loops run', () => clients.every((c) => c.run.output().includes('OK ')), 10_000);
      step('scale to 5');
      await mustApply(lab, deployment('sc', 5));
      await eventually('6 ready endpoints', async () => (await readyEndpoints(lab, 'sc')).length === 6, 30_000);
      await sleep(1000);
      step('flip not ready');
      rmSync(flipFile);
      await eventually('flip not ready', async () => !(await readyEndpoints(lab, 'sc')).includes('flip'), 15_000);
      await sleep(1000);
      step('flip ready');
      writeFileSync(flipFile, '');
      await eventually('flip ready again', async () => (await readyEndpoints(lab, 'sc')).includes('flip'), 15_000);
      await sleep(1000);
      step('scale to 1');
      await mustApply(lab, deployment('sc', 1));
      await eventually('one replica left (and flip)', async () => (await lab.pods()).filter((p) => p.name.startsWith('sc-')).length === 1 && (await endpointsOf(lab, 'sc')).length === 2, 30_000);
      await sleep(1000);
      step('stop');
    } finally {
      writeFileSync(stopFile, '');
      await Promise.all(clients.map((c) => c.run.done));
    }
    const failures: string[] = [];
    const seen: string[] = [];
    for (const c of clients) {
      const out = c.run.output();
      const total = /TOTAL (\d+) (\d+)/.exec(out);
      assert.ok(total, `${c.name}'s loop ended with its totals:\n${out.slice(-2000)}`);
      assert.ok(Number(total[1]) > 40, `${c.name} made enough requests: ${total[0]}`);
      seen.push(...[...out.matchAll(/^OK (\S+)/gm)].map((m) => m[1]!));
      failures.push(...out.split('\n').filter((l) => l.startsWith('FAIL')).map((l) => `${c.name}: ${l}`));
    }
    t.diagnostic(`${seen.length} requests from ${clients.length} clients, ${failures.length} failed; answered by ${JSON.stringify(tally(seen))}`);
    assert.deepEqual(failures, [], `failed requests (steps: ${steps.join('; ')}); answered: ${JSON.stringify(tally(seen))}`);
    // They saw the scaled-up replicas and the flipped pod.
    assert.ok(new Set(seen.filter((p) => p.startsWith('sc-'))).size >= 5, `requests reached the 5 replicas: ${JSON.stringify(tally(seen))}`);
    assert.ok(seen.includes('flip'), `requests reached flip: ${JSON.stringify(tally(seen))}`);
  });

  test('UDP from a fixed source port keeps working when its endpoint goes (no stale conntrack blackhole)', async (t) => {
    const ip = svc.udp.spec.clusterIP;
    // client3 sends a datagram every 100 ms from port 40053 for 8 s and prints the answers.
    const js = `const s=require('dgram').createSocket('udp4');let n=0;s.on('message',(m)=>console.log(Date.now(),String(m)));s.bind(40053,()=>{const t=setInterval(()=>s.send('p'+(n++),53,'${ip}'),100);setTimeout(()=>{clearInterval(t);s.close()},8000)})`;
    const client = lab.spawnExec('client3', [NODE, '-e', js]);
    const answers = (): Array<{ t: number; pod: string }> =>
      client
        .output()
        .split('\n')
        .map((l) => /^(\d+) (\S+) /.exec(l))
        .filter((m): m is RegExpExecArray => m !== null)
        .map((m) => ({ t: Number(m[1]), pod: m[2]! }));
    await eventually('the UDP client gets answers', () => answers().length >= 3, 10_000, 100);
    const first = answers()[0]!.pod;
    const other = first === 'udpa' ? 'udpb' : 'udpa';
    assert.ok(answers().every((a) => a.pod === first), `one flow, one endpoint: ${JSON.stringify(tally(answers().map((a) => a.pod)))}`);
    const t0 = Date.now();
    await mustDelete(lab, udpPod(first, first === 'udpa' ? 'node1' : 'node2', 'udp'));
    await eventually(`the flow moves to ${other}`, () => answers().some((a) => a.pod === other), 5000, 100);
    const moved = answers().find((a) => a.pod === other)!.t - t0;
    await client.done;
    const later = answers().filter((a) => a.t > t0 + moved);
    assert.ok(later.length >= 15, `answers kept coming after the move (${later.length})`);
    assert.ok(later.every((a) => a.pod === other), `after the move only ${other} answers: ${JSON.stringify(tally(later.map((a) => a.pod)))}`);
    t.diagnostic(`the pinned UDP flow moved from ${first} to ${other} ${moved} ms after \`lab delete\` returned`);
    assert.ok(moved < 4000, `the flow moved ${moved} ms after the delete`);
  });

  test('UDP from a fixed source port that started before the Service had an endpoint is answered once it has one', async () => {
    await mustApply(lab, service('udp2', 'udp2', {}, '[{port: 53, targetPort: 5353, protocol: UDP}]'));
    const ip = (await serviceNamed(lab, 'udp2')).spec.clusterIP;
    // The controller's placeholder slice (no endpoints) is there, and the proxies had a moment.
    await eventually('udp2 has its (empty) EndpointSlice', async () => (await lab.getJson('endpointslices')).some((s) => s.metadata.labels?.['kubernetes.io/service-name'] === 'udp2'));
    await sleep(1000);
    const js = `const s=require('dgram').createSocket('udp4');let n=0;s.on('message',(m)=>console.log(Date.now(),String(m)));s.on('error',()=>{});s.bind(40054,()=>{const t=setInterval(()=>s.send('p'+(n++),53,'${ip}'),100);setTimeout(()=>{clearInterval(t);s.close()},7000)})`;
    const client = lab.spawnExec('client1', [NODE, '-e', js]);
    await sleep(1500);
    await mustApply(lab, udpPod('udpc', 'node3', 'udp2'));
    const t0 = Date.now();
    await eventually('the pinned flow is answered by the new endpoint', () => client.output().includes(' udpc '), 6000, 100);
    const took = Date.now() - t0;
    await client.done;
    assert.ok(took < 5000, `answered ${took} ms after the endpoint's pod was running`);
  });

  test('LoadBalancer address moves to another node when the announcing node leaves; the outside sees a short outage', async (t) => {
    const ip = svc.weblb.status.loadBalancer.ingress[0].ip;
    const [announcer] = await holders(lab, NODES, ip);
    assert.ok(announcer, `${ip} is announced by a node`);
    const rest = NODES.filter((i) => i !== announcer);
    // The external host asks every 100 ms (1 s timeout each) all along.
    const stopFile = `/tmp/${lab.name}-lb-stop`;
    const ext = lab.spawnExec('ext', ['bash', '-c', `while [ ! -f ${stopFile} ]; do if curl -s -m 1 -o /dev/null http://${ip}/; then echo "OK $(date +%s%3N)"; else echo "FAIL $(date +%s%3N)"; fi; sleep 0.1; done`]);
    let taker: number | undefined;
    const t0 = Date.now();
    try {
      await eventually('the external loop runs', () => ext.output().includes('OK '), 10_000, 100);
      const r = await lab.run('node', ['remove', `node${announcer}`]);
      assert.equal(r.code, 0, r.stderr);
      taker = await eventually(`${ip} taken over by another node`, async () => {
        const h = await holders(lab, rest, ip);
        return h.length === 1 ? h[0] : undefined;
      }, 10_000, 200);
      // Answers again, then a while longer to see that it stays so.
      await eventually(`ext → ${ip} answers again`, () => /OK \d+\s*$/.test(ext.output()), 10_000, 100);
      await sleep(2000);
    } finally {
      writeFileSync(stopFile, '');
      await ext.done;
    }
    const log = [...ext.output().matchAll(/^(OK|FAIL) (\d+)/gm)].map((m) => ({ ok: m[1] === 'OK', t: Number(m[2]) }));
    const fails = log.filter((x) => !x.ok);
    const lastFail = fails.at(-1)?.t ?? t0;
    const outage = fails.length > 0 ? lastFail - fails[0]!.t + 1000 : 0;
    t.diagnostic(`node${announcer} removed, node${taker} took ${ip} over; ${fails.length} failed requests, outage about ${outage} ms`);
    const since = log.filter((x) => x.t > lastFail);
    // At least a handful after the last failure (each request takes longer on a loaded machine), and all fine.
    assert.ok(since.length >= 5 && since.every((x) => x.ok), `requests after the take-over all succeed (${since.length})`);
    assert.ok(outage < 6000, `the outside saw ${ip} fail for about ${outage} ms (${fails.length} requests)`);
    const later = await hits(lab, 'ext', `http://${ip}/`, 10);
    assert.deepEqual(later.failed, []);
    const left = rest.map((i) => `web${i}`);
    assert.ok(later.ok.every((b) => left.includes(b.pod)), `answered by the pods that are left: ${JSON.stringify(tally(later.ok.map((b) => b.pod)))}`);
  });
});

describe('services (iptables proxy, 2 nodes)', { skip, timeout: 180_000 }, () => {
  const lab = withLab(`${base}i`, ['--nodes', '2', '--proxy', 'iptables']);
  const pods: Record<string, { ip: string }> = {};
  const svc: Record<string, any> = {};

  before(async () => {
    await mustApply(lab, docs(echoPod('web1', 'node1', 'web'), echoPod('web2', 'node2', 'web'), clientPod('client1', 'node1'), service('web', 'web'), service('webnp', 'web', { type: 'NodePort' }), service('none', 'nothing-has-this-label')));
    for (const p of await lab.pods()) pods[p.name] = { ip: p.ip };
    await allocated(lab, svc, ['web', 'webnp', 'none'], []);
    await eventually('both endpoints ready', async () => (await readyEndpoints(lab, 'web')).length === 2, 30_000);
  });

  test('the proxy runs in iptables mode (PODNET- chains, no nftables table)', async () => {
    const out = await sh(lab, 'node/node1', 'iptables-save -t nat | grep -c "^:PODNET-" ; nft list table ip podnet-proxy >/dev/null 2>&1 && echo nft || echo no-nft');
    const [chains = '0', nft] = out.trim().split('\n');
    assert.ok(Number(chains) > 3, `PODNET- chains in node1's nat table: ${chains}`);
    assert.equal(nft, 'no-nft');
  });

  test('ClusterIP from a pod reaches both endpoints, client address kept', async () => {
    const r = await hits(lab, 'client1', `http://${svc.web.spec.clusterIP}/`, 24);
    assert.deepEqual(r.failed, []);
    assert.deepEqual([...new Set(r.ok.map((b) => b.pod))].sort(), ['web1', 'web2'], JSON.stringify(tally(r.ok.map((b) => b.pod))));
    assert.deepEqual([...new Set(r.ok.map((b) => b.client))], [pods.client1!.ip]);
  });

  test('NodePort on both nodes from the external host', async () => {
    const port = svc.webnp.spec.ports[0].nodePort;
    for (const i of [1, 2]) {
      const r = await hits(lab, 'ext', `http://${nodeIP(i)}:${port}/`, 16);
      assert.deepEqual(r.failed, [], `ext → node${i}:${port}`);
      assert.deepEqual([...new Set(r.ok.map((b) => b.pod))].sort(), ['web1', 'web2'], JSON.stringify(tally(r.ok.map((b) => b.pod))));
      assert.ok(r.ok.every((b) => b.client !== EXT), 'masqueraded (eTP Cluster)');
    }
  });

  test('a Service without endpoints refuses at once', async () => {
    const r = await once(lab, 'client1', `http://${svc.none.spec.clusterIP}/`, 5);
    assert.equal(r.exit, 7, `exit ${r.exit} after ${r.seconds}s`);
    assert.ok(r.seconds < 1);
  });
});
