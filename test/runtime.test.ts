/**
 * podnet-bridge and podnet-ipam under real CNI clients: podman 4.3 (its CNI backend, libcni
 * 1.1) and containerd 1.6 (`ctr run --cni`, go-cni). Each runtime runs inside a node network
 * namespace the test makes, never in the root one; the test checks that the root namespace's
 * links and nftables tables are the same afterwards. docs/runtimes.md is the user's version of
 * these steps.
 *
 * The container image is a directory: the host's /usr bind-mounted read-only under symlinks
 * like the host's own (/bin -> usr/bin on a merged-/usr Debian), so no image is pulled.
 *
 * Why `nsenter --net` and not `ip netns exec`: the latter also remounts /sys for the new
 * namespace, which hides the cgroup mounts under /sys/fs/cgroup, and runc then fails with
 * "no cgroup mount found in mountinfo".
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, readlinkSync, rmdirSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { isAlive, run } from '../src/kernel/index.ts';
import { CNI_BIN, REF_BIN, type Netns, TestBed, isRoot, leases, links, sweepLeftovers } from './support/netns.ts';

const NOT_ROOT = 'needs root: network namespaces, podman and containerd run as root';

/** The root namespace as seen from outside any runtime: what must not change. */
async function rootState(): Promise<{ links: string; tables: string }> {
  const [l, t] = await Promise.all([run('ip', ['-br', 'link']), run('nft', ['list', 'tables'])]);
  return { links: l.stdout, tables: t.stdout };
}

/** Host paths a runtime may create outside its own directories (libcni's cache, runc's root). */
const HOST_PATHS = ['/var/lib/cni/results', '/var/lib/cni', '/run/runc', '/opt/containerd'];

/** What only a runtime test makes; /var/lib/cni is left out, as other tests may create it meanwhile. */
function assertNoHostLeftovers(before: Set<string>): void {
  const made = [...existing(HOST_PATHS)].filter((p) => !before.has(p) && p !== '/var/lib/cni');
  assert.deepEqual(made, [], 'host directories left behind');
}

function existing(paths: readonly string[]): Set<string> {
  return new Set(paths.filter((p) => existsSync(p)));
}

/** Removes a cgroup directory tree (cgroupfs allows rmdir of a group with no tasks). */
function rmCgroup(dir: string): void {
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return;
  }
  for (const e of entries) if (e.isDirectory()) rmCgroup(join(dir, e.name));
  try {
    rmdirSync(dir);
  } catch {
    // Still has a task: the namespace-pid sweep in cleanup ends it; a later run sweeps the group.
  }
}

/** Cgroups named `name` at the top of any hierarchy (v1 controllers or the v2 root). */
function cgroupDirs(match: (name: string) => boolean): string[] {
  const out: string[] = [];
  const root = '/sys/fs/cgroup';
  const scan = (dir: string): void => {
    for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory() && match(e.name)) out.push(join(dir, e.name));
  };
  try {
    scan(root);
    for (const e of readdirSync(root, { withFileTypes: true })) if (e.isDirectory() && !match(e.name)) scan(join(root, e.name));
  } catch {
    // No cgroupfs here.
  }
  return out;
}

/** Leftovers of crashed runs of this file: cgroups and libcni cache entries named pnt-<deadpid>-. */
function sweepRuntimeLeftovers(): void {
  const dead = (name: string): boolean => {
    const m = /^pnt-(\d+)-/.exec(name);
    return m !== null && !isAlive(Number(m[1]));
  };
  for (const dir of cgroupDirs(dead)) rmCgroup(dir);
  try {
    for (const f of readdirSync('/var/lib/cni/results')) if (dead(f)) unlinkSync(join('/var/lib/cni/results', f));
  } catch {
    // No cache directory.
  }
}

/**
 * Everything a runtime test leaves outside its TestBed directory, undone: mounts under the
 * directory, cgroups named after the bed, libcni cache files of its network, host
 * directories the runtime created that were not there before, container namespaces podman
 * made in /run/netns. Then the bed itself (namespaces, processes in them, the directory).
 */
async function cleanupRuntime(bed: TestBed, node: Netns | undefined, opts: { hostBefore: Set<string>; netnsBefore: Set<string>; network: string }): Promise<void> {
  // Give processes still in the node namespace (conmon running its exit command) a moment to end.
  if (node) {
    for (let i = 0; i < 50; i++) {
      const { stdout } = await run('ip', ['netns', 'pids', node.name]).catch(() => ({ stdout: '' }));
      if (stdout.trim() === '') break;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4] ?? '')
    .filter((m) => m.startsWith(bed.dir + '/'))
    .sort((a, b) => b.length - a.length);
  for (const m of mounts) await run('umount', ['-l', m]).catch(() => undefined);
  for (const name of readdirSync('/var/run/netns')) {
    if (/^netns-[0-9a-f-]+$/.test(name) && !opts.netnsBefore.has(name)) await run('ip', ['netns', 'del', name]).catch(() => undefined);
  }
  await bed.cleanup();
  for (const dir of cgroupDirs((n) => n === bed.id)) rmCgroup(dir);
  try {
    for (const f of readdirSync('/var/lib/cni/results')) if (f.startsWith(`${opts.network}-`)) unlinkSync(join('/var/lib/cni/results', f));
  } catch {
    // No cache directory.
  }
  // Only directories this test brought into being, and only when empty (another test may use them).
  for (const p of HOST_PATHS) {
    if (opts.hostBefore.has(p) || !existsSync(p)) continue;
    try {
      rmdirSync(p);
    } catch {
      // Not empty or not a directory: /opt/containerd holds two empty dirs.
      if (p === '/opt/containerd') {
        for (const d of ['bin', 'lib']) rmdirIfEmpty(join(p, d));
        rmdirIfEmpty(p);
      }
    }
  }
}

function rmdirIfEmpty(p: string): void {
  try {
    rmdirSync(p);
  } catch {
    // Kept.
  }
}

/**
 * A root filesystem directory from the host's own files: /usr bind-mounted read-only at run
 * time, and /bin, /sbin, /lib, /lib64 as the same symlinks the host has (merged /usr). Host
 * top-level directories that are not symlinks into /usr are returned to be bind-mounted too.
 */
function makeRootfs(dir: string): string[] {
  for (const d of ['usr', 'etc', 'proc', 'sys', 'dev', 'tmp', 'run']) mkdirSync(join(dir, d), { recursive: true });
  const binds = ['/usr'];
  for (const top of ['bin', 'sbin', 'lib', 'lib32', 'lib64', 'libx32']) {
    const host = `/${top}`;
    if (!existsSync(host)) continue;
    if (lstatSync(host).isSymbolicLink()) symlinkSync(readlinkSync(host), join(dir, top));
    else {
      mkdirSync(join(dir, top));
      binds.push(host);
    }
  }
  return binds;
}

function conflist(name: string, subnet: string, dataDir: string): object {
  return {
    // 1.0.0, not 1.1.0: the libcni in podman 4.3 and containerd 1.6 refuses 1.1.0 results
    // ('unsupported CNI result version "1.1.0"'), and the reference portmap v1.1.1 tops at 1.0.0.
    cniVersion: '1.0.0',
    name,
    plugins: [
      {
        type: 'podnet-bridge',
        bridge: 'pnbr0',
        isGateway: true,
        ipam: { type: 'podnet-ipam', subnet, routes: [{ dst: '0.0.0.0/0' }], dataDir },
      },
      { type: 'portmap', capabilities: { portMappings: true } },
    ],
  };
}

/** Starts a process and collects its output; `done` resolves with the exit code. */
function start(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): { child: ChildProcess; out: () => string; done: Promise<number> } {
  const child = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const done = new Promise<number>((r) => child.on('close', (code) => r(code ?? -1)));
  return { child, out: () => out, done };
}

/** `p`, or `fallback` after `ms` (the timer does not outlive the wait). */
async function within<T, F>(p: Promise<T>, ms: number, fallback: F): Promise<T | F> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<F>((r) => (timer = setTimeout(() => r(fallback), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs: number, detail: () => string = () => ''): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}\n${detail()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A one-shot TCP listener in the node namespace, on all of its addresses. */
function nodeListener(node: Netns, port: number): { got: () => string; child: ChildProcess } {
  const child = spawn('ip', ['netns', 'exec', node.name, 'timeout', '30', 'nc', '-l', String(port)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let got = '';
  child.stdout!.on('data', (d) => (got += d));
  return { got: () => got, child };
}

const pnvs = async (node: Netns): Promise<string[]> => (await links(node)).filter((l) => /^pnv[0-9a-f]{12}$/.test(l));

test('podman 4.3 (CNI backend) runs a container on podnet-bridge + podnet-ipam, with portmap', { timeout: 60_000 }, async (t) => {
  if (!isRoot()) {
    t.skip(NOT_ROOT);
    return;
  }
  await sweepLeftovers();
  sweepRuntimeLeftovers();
  const rootBefore = await rootState();
  const hostBefore = existing(HOST_PATHS);
  const netnsBefore = new Set(readdirSync('/var/run/netns'));
  const bed = new TestBed('podman');
  const network = bed.id; // pnt-<pid>-podman: names the CNI network, its lease directory and the cgroup parent
  const dataDir = join(bed.dir, 'ipam');
  let node: Netns | undefined;
  let podman: ReturnType<typeof start> | undefined;
  let podmanDo: ((...args: string[]) => Promise<{ code: number; out: string }>) | undefined;
  const env = {
    ...process.env,
    CONTAINERS_CONF: join(bed.dir, 'containers.conf'),
    CONTAINERS_STORAGE_CONF: join(bed.dir, 'storage.conf'),
  };
  try {
    node = await bed.netns('node');
    const confDir = join(bed.dir, 'net.d');
    mkdirSync(confDir);
    writeFileSync(join(confDir, `${network}.conflist`), JSON.stringify(conflist(network, '10.88.7.0/24', dataDir), null, 2));
    // Everything podman keeps goes under the bed: storage, state, locks (file locks, not /dev/shm).
    writeFileSync(
      env.CONTAINERS_CONF,
      [
        '[containers]',
        // Podman's default RLIMIT_NOFILE/NPROC (1048576) need CAP_SYS_RESOURCE, which a
        // sandbox may lack ("error setting rlimit type 7: operation not permitted").
        'default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]',
        '[network]',
        'network_backend = "cni"',
        `cni_plugin_dirs = [${JSON.stringify(CNI_BIN)}, ${JSON.stringify(REF_BIN)}]`,
        `network_config_dir = ${JSON.stringify(confDir)}`,
        '[engine]',
        'cgroup_manager = "cgroupfs"',
        'events_logger = "none"',
        'runtime = "runc"',
        'lock_type = "file"',
        `tmp_dir = ${JSON.stringify(join(bed.dir, 'libpod-tmp'))}`,
        '',
      ].join('\n'),
    );
    writeFileSync(
      env.CONTAINERS_STORAGE_CONF,
      ['[storage]', 'driver = "vfs"', `graphroot = ${JSON.stringify(join(bed.dir, 'storage'))}`, `runroot = ${JSON.stringify(join(bed.dir, 'run'))}`, ''].join('\n'),
    );
    const rootfs = join(bed.dir, 'rootfs');
    const binds = makeRootfs(rootfs);
    const podmanArgs = (...args: string[]): string[] => [`--net=${node!.path}`, '--', 'podman', ...args];
    podmanDo = async (...args: string[]) => {
      const p = start('nsenter', podmanArgs(...args), env);
      return { code: await p.done, out: p.out() };
    };

    // podman loads our conflist. One that fails libcni's validation (which runs each plugin's
    // VERSION with CNI_NETNS=dummy) is skipped with a warning, and were it named as
    // default_network podman would make up a reference-bridge network of that name instead.
    const ls = await podmanDo('network', 'ls', '--format', '{{.Name}} {{.Driver}}');
    assert.equal(ls.code, 0, ls.out);
    assert.doesNotMatch(ls.out, /Error validating CNI config/);
    assert.match(ls.out, new RegExp(`^${network} podnet-bridge$`, 'm'), ls.out);

    const fromPod = nodeListener(node, 7070);
    bed.track(fromPod.child);
    const script = [
      'set -e',
      'ip -4 -o addr show dev eth0',
      'echo hello-from-pod | nc.openbsd -N -w 5 10.88.7.1 7070',
      'echo sent-to-gateway',
      'timeout 20 nc.openbsd -l 80',
    ].join('\n');
    podman = start(
      'nsenter',
      podmanArgs(
        'run', '--rm', '--network', network, '--cgroup-parent', `/${bed.id}`, '-p', '8080:80',
        ...binds.flatMap((b) => ['-v', `${b}:${b}:ro`]),
        '--rootfs', rootfs, '/usr/bin/sh', '-c', script,
      ),
      env,
    );
    bed.track(podman.child);
    const exited = (): boolean => podman!.child.exitCode !== null;

    // The pod reaches the node's bridge address (the gateway podnet-bridge put there) over TCP.
    await until('the pod to reach the gateway', () => fromPod.got().includes('hello-from-pod') || exited(), 30_000, () => podman!.out());
    assert.ok(!exited(), `podman ended early:\n${podman.out()}`);
    assert.equal(fromPod.got().trim(), 'hello-from-pod');

    // While it runs: one lease in our data directory, one pnv veth on the bridge, a portmap DNAT chain.
    assert.equal(leases(dataDir, network).length, 1, `leases: ${leases(dataDir, network)}`);
    const veths = await pnvs(node);
    assert.equal(veths.length, 1, `veths: ${veths}`);
    const master = JSON.parse((await node.exec('ip', ['-j', 'link', 'show', 'dev', veths[0]!])).stdout) as Array<{ master?: string }>;
    assert.equal(master[0]?.master, 'pnbr0');
    assert.match((await node.exec('iptables-save', ['-t', 'nat'])).stdout, /CNI-DN-/);

    // The reference portmap, chained after podnet-bridge, forwards node port 8080 to the pod's 80.
    let sent = false;
    for (let i = 0; i < 100 && !sent && !exited(); i++) {
      sent = await node
        .exec('nc', ['-N', '-w', '2', '10.88.7.1', '8080'], { input: 'hello-via-portmap\n', timeoutMs: 5000 })
        .then(() => true, () => false);
      if (!sent) await new Promise((r) => setTimeout(r, 100));
    }
    const code = await within(podman.done, 25_000, -2);
    const out = podman.out();
    assert.equal(code, 0, `podman run exited ${code}:\n${out}`);
    const addr = /inet (10\.88\.7\.(\d+))\/24/.exec(out);
    assert.ok(addr, `no address from 10.88.7.0/24 on eth0:\n${out}`);
    assert.ok(Number(addr[2]) >= 2 && Number(addr[2]) <= 254, addr[1]);
    assert.match(out, /sent-to-gateway/);
    assert.match(out, /hello-via-portmap/, out);

    // After --rm: podman ran DEL through the chain; the lease is released, the veth and DNAT are gone.
    assert.deepEqual(leases(dataDir, network), []);
    assert.deepEqual(await pnvs(node), []);
    assert.doesNotMatch((await node.exec('iptables-save', ['-t', 'nat'])).stdout, /CNI-DN-/);
    const ps = await podmanDo('ps', '-aq');
    assert.equal(ps.code, 0, ps.out);
    assert.equal(ps.out.trim(), '');
    assert.deepEqual(
      existsSync('/var/lib/cni/results') ? readdirSync('/var/lib/cni/results').filter((f) => f.startsWith(`${network}-`)) : [],
      [],
      'libcni result cache entry left behind',
    );

    // cniVersion 1.1.0: podman 4.3's libcni cannot read a 1.1.0 result. Whether it refuses
    // (as here) or a newer podman accepts it, our ADD must leave no lease and no veth behind.
    const v11 = `${network}-v11`;
    const v11Data = join(bed.dir, 'ipam-v11');
    const v11Conf = { cniVersion: '1.1.0', name: v11, plugins: [(conflist(v11, '10.88.6.0/24', v11Data) as { plugins: object[] }).plugins[0]] };
    (v11Conf.plugins[0] as { bridge: string }).bridge = 'pnbr1';
    writeFileSync(join(confDir, `${v11}.conflist`), JSON.stringify(v11Conf));
    const r11 = await podmanDo('run', '--rm', '--network', v11, '--cgroup-parent', `/${bed.id}`, ...binds.flatMap((b) => ['-v', `${b}:${b}:ro`]), '--rootfs', rootfs, '/usr/bin/true');
    if (r11.code !== 0) assert.match(r11.out, /unsupported CNI result version "1\.1\.0"/, r11.out);
    assert.deepEqual(leases(v11Data, v11), []);
    assert.deepEqual(await pnvs(node), []);
  } finally {
    if (podman && podman.child.exitCode === null) podman.child.kill('SIGKILL');
    // Anything podman still has (a failed run): removing it runs CNI DEL through our plugins.
    if (podmanDo) await within(podmanDo('rm', '--force', '--all', '--time', '0'), 30_000, undefined);
    await cleanupRuntime(bed, node, { hostBefore, netnsBefore, network });
  }
  assert.deepEqual(await rootState(), rootBefore, 'the root network namespace changed');
  assertNoHostLeftovers(hostBefore);
});

test('containerd 1.6 `ctr run --cni` runs a container on podnet-bridge + podnet-ipam', { timeout: 60_000 }, async (t) => {
  if (!isRoot()) {
    t.skip(NOT_ROOT);
    return;
  }
  await sweepLeftovers();
  sweepRuntimeLeftovers();
  const rootBefore = await rootState();
  const hostBefore = existing(HOST_PATHS);
  const netnsBefore = new Set(readdirSync('/var/run/netns'));
  const bed = new TestBed('ctr');
  const network = bed.id;
  const dataDir = join(bed.dir, 'ipam');
  const pidFile = join(bed.dir, 'containerd.pid');
  let node: Netns | undefined;
  let ctr: ReturnType<typeof start> | undefined;
  try {
    node = await bed.netns('node');
    // ctr reads /etc/cni/net.d and its plugin directory, fixed paths: the run below binds our
    // own over them in a private mount namespace, so the host's files are neither read nor changed.
    assert.ok(existsSync('/etc/cni/net.d'), '/etc/cni/net.d is needed as a mount point');
    const confDir = join(bed.dir, 'net.d');
    const binDir = join(bed.dir, 'cni-bin');
    mkdirSync(confDir);
    mkdirSync(binDir);
    writeFileSync(join(confDir, '10-podnet.conflist'), JSON.stringify(conflist(network, '10.88.8.0/24', dataDir), null, 2));
    for (const p of ['podnet-bridge', 'podnet-ipam']) symlinkSync(join(CNI_BIN, p), join(binDir, p));
    // go-cni also runs `loopback` for lo; both are copied, since the directory they come from is covered.
    for (const p of ['portmap', 'loopback']) copyFileSync(join(REF_BIN, p), join(binDir, p));
    const ctd = join(bed.dir, 'containerd');
    const sock = join(ctd, 'containerd.sock');
    mkdirSync(ctd);
    writeFileSync(
      join(ctd, 'config.toml'),
      [
        'version = 2',
        `root = ${JSON.stringify(join(ctd, 'root'))}`,
        `state = ${JSON.stringify(join(ctd, 'state'))}`,
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
        '[grpc]',
        `  address = ${JSON.stringify(sock)}`,
        '[plugins."io.containerd.internal.v1.opt"]',
        `  path = ${JSON.stringify(join(ctd, 'opt'))}`,
        '',
      ].join('\n'),
    );
    const rootfs = join(bed.dir, 'rootfs');
    const binds = makeRootfs(rootfs);
    const pluginDirs = [REF_BIN, '/opt/cni/bin'].filter((d) => existsSync(d));
    const script = [
      'ip -4 -o addr show dev eth0',
      'echo hello-from-pod | nc.openbsd -N -w 5 10.88.8.1 7070 && echo sent-to-gateway',
    ].join('; ');
    // Inside: a private /run (shim sockets, fifos, runc state) and /var/lib (libcni's cache),
    // our conf and plugin directories over the fixed ones, then containerd and one ctr run.
    const wrapper = [
      'set -u',
      'mount -n -t tmpfs tmpfs /run',
      'mount -n -t tmpfs tmpfs /var/lib',
      `mount -n --bind ${JSON.stringify(confDir)} /etc/cni/net.d`,
      ...pluginDirs.map((d) => `mount -n --bind ${JSON.stringify(binDir)} ${d}`),
      `containerd --config ${JSON.stringify(join(ctd, 'config.toml'))} >${JSON.stringify(join(ctd, 'log'))} 2>&1 &`,
      'CONTAINERD=$!',
      `echo $CONTAINERD >${JSON.stringify(pidFile)}`,
      'trap \'kill $CONTAINERD 2>/dev/null; wait $CONTAINERD\' EXIT',
      `for i in $(seq 100); do [ -S ${JSON.stringify(sock)} ] && break; sleep 0.1; done`,
      `ctr -a ${JSON.stringify(sock)} -n ${bed.id} run --rm --cni --cgroup /${bed.id}/c1 --rootfs ` +
        binds.map((b) => `--mount type=bind,src=${b},dst=${b},options=rbind:ro `).join('') +
        `${JSON.stringify(rootfs)} c1 /usr/bin/sh -c '${script}'`,
    ].join('\n');
    const wrapperPath = join(bed.dir, 'run-ctr.sh');
    writeFileSync(wrapperPath, wrapper);

    const fromPod = nodeListener(node, 7070);
    bed.track(fromPod.child);
    ctr = start('unshare', ['--mount', '--propagation', 'private', '--', 'nsenter', `--net=${node.path}`, '--', 'bash', wrapperPath]);
    bed.track(ctr.child);
    const code = await within(ctr.done, 40_000, -2);
    const out = ctr.out();
    const log = (): string => (existsSync(join(ctd, 'log')) ? readFileSync(join(ctd, 'log'), 'utf8').split('\n').filter((l) => /level=(error|warn)/.test(l)).slice(-10).join('\n') : '');
    assert.equal(code, 0, `ctr run exited ${code}:\n${out}\ncontainerd:\n${log()}`);
    const addr = /inet (10\.88\.8\.\d+)\/24/.exec(out);
    assert.ok(addr, `no address from 10.88.8.0/24 on eth0:\n${out}`);
    assert.match(out, /sent-to-gateway/);
    assert.equal(fromPod.got().trim(), 'hello-from-pod');
    // ctr ran DEL after the task ended: the lease is released and the veth is gone.
    assert.deepEqual(leases(dataDir, network), []);
    assert.deepEqual(await pnvs(node), []);
    assert.ok((await links(node)).includes('pnbr0'));
  } finally {
    if (ctr && ctr.child.exitCode === null) ctr.child.kill('SIGKILL');
    // containerd by its PID, if the wrapper did not get to stop it.
    const pid = existsSync(pidFile) ? Number(readFileSync(pidFile, 'utf8').trim()) : 0;
    if (pid > 0 && isAlive(pid)) {
      process.kill(pid, 'SIGTERM');
      for (let i = 0; i < 30 && isAlive(pid); i++) await new Promise((r) => setTimeout(r, 100));
      if (isAlive(pid)) process.kill(pid, 'SIGKILL');
    }
    await cleanupRuntime(bed, node, { hostBefore, netnsBefore, network });
  }
  assert.deepEqual(await rootState(), rootBefore, 'the root network namespace changed');
  assertNoHostLeftovers(hostBefore);
});
