/**
 * `podnet demo`: the CNI plugins at work, the way the tutorials show pod networking by hand.
 * A node namespace, three pod namespaces, each connected by podnet-bridge + podnet-ipam run
 * exactly as a container runtime runs them; then their addresses, a TCP exchange between
 * pods, DEL of every pod, and the removal of everything the demo made.
 *
 * All of it lives in namespaces named `podnet-demo-<pid>-*`; the root namespace is never
 * touched, and leftovers of a demo that was killed are swept at the next start.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { type PluginRun, isAlive, run, runPluginIn } from '../kernel/index.ts';
import { PodnetError } from '../errors/index.ts';

const PREFIX = 'podnet-demo-';

async function sweep(): Promise<void> {
  const names = existsSync('/var/run/netns') ? readdirSync('/var/run/netns') : [];
  for (const n of names) {
    const m = new RegExp(`^${PREFIX}(\\d+)-`).exec(n);
    if (m && !isAlive(Number(m[1]))) await run('ip', ['netns', 'del', n]).catch(() => undefined);
  }
}

function cni(node: string, plugin: string, env: Record<string, string>, conf: object): Promise<PluginRun> {
  return runPluginIn(node, plugin, { PATH: process.env.PATH ?? '', ...env }, JSON.stringify(conf));
}

/** Finds dist/cni-bin next to the running bundle (dist/podnet.mjs) or from the source tree. */
export function pluginDir(): string {
  const here = dirname(new URL(import.meta.url).pathname);
  for (const c of [join(here, 'cni-bin'), join(here, '..', '..', 'dist', 'cni-bin')]) if (existsSync(join(c, 'podnet-bridge'))) return c;
  throw new PodnetError('PODNET_NOT_BUILT', 'the CNI plugins are not built: run `npm run build` (or `npm start`, which builds)');
}

export async function runDemo(log: (line: string) => void = (l) => console.log(l)): Promise<void> {
  if (process.getuid?.() !== 0) throw new PodnetError('PODNET_NEEDS_ROOT', 'the demo makes network namespaces: run it as root');
  await sweep();
  const bin = pluginDir();
  const id = `${PREFIX}${process.pid}`;
  const node = `${id}-node`;
  const pods = [1, 2, 3].map((i) => `${id}-pod${i}`);
  const dataDir = mkdtempSync(join(tmpdir(), `${id}-`));
  const made: string[] = [];
  const conf = {
    cniVersion: '1.1.0',
    name: 'podnet-demo',
    type: 'podnet-bridge',
    bridge: 'cni0',
    isGateway: true,
    isDefaultGateway: true,
    ipMasq: true,
    ipam: { type: 'podnet-ipam', subnet: '10.244.1.0/24', dataDir },
  };
  const envFor = (cmd: string, i: number): Record<string, string> => ({
    CNI_COMMAND: cmd,
    CNI_CONTAINERID: `demo-pod${i + 1}`,
    CNI_NETNS: `/var/run/netns/${pods[i]}`,
    CNI_IFNAME: 'eth0',
    CNI_PATH: bin,
  });
  try {
    log(`podnet demo: the CNI plugins in ${bin}`);
    for (const ns of [node, ...pods]) {
      await run('ip', ['netns', 'add', ns]);
      made.push(ns);
    }
    log(`  made a node namespace (${node}) and three pod namespaces`);
    const ips: string[] = [];
    for (let i = 0; i < pods.length; i++) {
      const t0 = performance.now();
      const out = await cni(node, join(bin, 'podnet-bridge'), envFor('ADD', i), conf);
      if (out.code !== 0) throw new PodnetError('PODNET_DEMO_FAILED', `ADD of pod${i + 1} failed: ${JSON.stringify(out.json) ?? out.stderr}`);
      const ip = String(out.json.ips[0].address);
      ips.push(ip.split('/')[0]!);
      log(`  ADD pod${i + 1}: eth0 ${ip} via ${out.json.ips[0].gateway} on bridge ${out.json.interfaces[0].name}, host veth ${out.json.interfaces[1].name} (${Math.round(performance.now() - t0)} ms)`);
    }
    // A TCP exchange: pod3 serves, pod1 and pod2 send.
    const server = spawn(
      'ip',
      ['netns', 'exec', pods[2]!, process.execPath, '-e', "require('net').createServer(s=>s.on('data',d=>{s.end('pod3 got: '+d)})).listen(8080,()=>console.log('ready'))"],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    await new Promise<void>((r) => server.stdout.once('data', () => r()));
    for (const i of [0, 1]) {
      const { stdout } = await run('ip', [
        'netns',
        'exec',
        pods[i]!,
        process.execPath,
        '-e',
        `const s=require('net').connect(8080,'${ips[2]}',()=>s.write('hello from pod${i + 1} (${ips[i]})'));s.on('data',d=>{process.stdout.write(String(d));s.end()})`,
      ]);
      log(`  TCP pod${i + 1} -> ${ips[2]}:8080: "${stdout.trim()}"`);
    }
    server.kill();
    const route = await run('ip', ['netns', 'exec', pods[0]!, 'ip', 'route']);
    log(`  pod1's routes: ${route.stdout.trim().replaceAll('\n', '; ')}`);
    for (let i = 0; i < pods.length; i++) {
      const out = await cni(node, join(bin, 'podnet-bridge'), envFor('DEL', i), conf);
      if (out.code !== 0) throw new PodnetError('PODNET_DEMO_FAILED', `DEL of pod${i + 1} failed: ${JSON.stringify(out.json)}`);
    }
    log('  DEL of every pod: addresses released, veths gone');
  } finally {
    for (const ns of made.reverse()) await run('ip', ['netns', 'del', ns]).catch(() => undefined);
    rmSync(dataDir, { recursive: true, force: true });
    log('  cleaned up: every namespace and file the demo made is gone');
  }
}
