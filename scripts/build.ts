/**
 * Builds podnet: the CLI as one ESM bundle (dist/podnet.mjs), and each CNI plugin twice over in
 * dist/cni-bin: the native shim under the plugin's name (podnet-bridge, podnet-ipam: one
 * binary, hard-linked) and the standalone single-file executable beside it (<name>.sea).
 *
 * Why a shim: a runtime starts a plugin per call, and Node's start-up (~30 ms) dominated ADD.
 * The shim (native/cni-shim.c) starts in well under a millisecond and forwards the call to a
 * warm `podnet cni-server`; when none answers it execs <name>.sea, so a node without the
 * server works exactly as before.
 *
 * Why single-file executables: a plugin runs on a node that has no podnet checkout and maybe
 * no Node.js, exactly like the reference Go binaries. A Node SEA is the Node 24 binary with
 * our bundle and its V8 code cache injected, so it needs nothing else on the machine and
 * starts as fast as `node` itself (measured in BENCHMARKS.md). `--plain` writes plain bundled
 * scripts as <name>.sea instead (for a quick edit-test loop); the shim is built either way.
 *
 * The shim is linked statically when the C library's static archive is there (libc6-dev), so
 * it needs no libc on the node either; otherwise dynamically.
 */
import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, linkSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(root, 'dist');
const cniBin = join(dist, 'cni-bin');
const plain = process.argv.includes('--plain');

/** True when `cc` can link statically: it knows where libc.a is (it prints the bare name if not). */
function hasStaticLibc(): boolean {
  try {
    const file = execFileSync('cc', ['-print-file-name=libc.a'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    return file.startsWith('/') && existsSync(file);
  } catch {
    return false;
  }
}

const plugins = [
  { name: 'podnet-bridge', entry: 'src/cni/main-bridge.ts' },
  { name: 'podnet-ipam', entry: 'src/ipam/main.ts' },
];

mkdirSync(cniBin, { recursive: true });
mkdirSync(join(dist, 'sea'), { recursive: true });

await build({
  entryPoints: [join(root, 'src/cli/main.ts')],
  outfile: join(dist, 'podnet.mjs'),
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node22',
  sourcemap: 'linked',
  // etcd3 reads its .proto files from its own directory at run time, so it stays a package
  // (resolved from node_modules) rather than being bundled.
  external: ['etcd3'],
  banner: { js: "#!/usr/bin/env node\nimport { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
  logLevel: 'warning',
});
chmodSync(join(dist, 'podnet.mjs'), 0o755);

for (const p of plugins) {
  // SEA mains are CommonJS scripts; top-level await is wrapped by esbuild's iife-less cjs output.
  const js = join(dist, 'sea', `${p.name}.cjs`);
  await build({
    entryPoints: [join(root, p.entry)],
    outfile: js,
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node22',
    minify: true,
    logLevel: 'warning',
    supported: { 'top-level-await': false },
    // Top-level await is not allowed in CJS: the entries' `await main()` becomes a plain call.
    plugins: [
      {
        name: 'tla',
        setup(b) {
          b.onLoad({ filter: /main(-bridge)?\.ts$/ }, async (args) => {
            const { readFileSync } = await import('node:fs');
            return { contents: readFileSync(args.path, 'utf8').replace(/^await main\(/m, 'void main('), loader: 'ts' };
          });
        },
      },
    ],
  });
  // Each executable is made under a temporary name and renamed into place: a plugin that is
  // running meanwhile keeps its old file (no ETXTBSY) and nobody ever runs a half-written one.
  const out = join(cniBin, `${p.name}.sea`);
  const tmp = `${out}.tmp-${process.pid}`;
  rmSync(tmp, { force: true });
  if (plain) {
    writeFileSync(tmp, `#!/usr/bin/env node\nawait import(${JSON.stringify(js)});\n`);
    chmodSync(tmp, 0o755);
    renameSync(tmp, out);
    continue;
  }
  const blob = join(dist, 'sea', `${p.name}.blob`);
  const cfg = join(dist, 'sea', `${p.name}.json`);
  writeFileSync(cfg, JSON.stringify({ main: js, output: blob, disableExperimentalSEAWarning: true, useCodeCache: true }));
  execFileSync(process.execPath, ['--experimental-sea-config', cfg], { stdio: 'pipe' });
  copyFileSync(process.execPath, tmp);
  execFileSync(
    process.execPath,
    [join(root, 'node_modules/postject/dist/cli.js'), tmp, 'NODE_SEA_BLOB', blob, '--sentinel-fuse', 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2'],
    { stdio: 'pipe' },
  );
  chmodSync(tmp, 0o755);
  renameSync(tmp, out);
}
// The shim: compiled once, then hard-linked under each plugin's name (it reads its name from
// argv[0]). Same temporary-name-then-rename as above, for each name.
const shim = join(dist, 'sea', `cni-shim.tmp-${process.pid}`);
const staticLibc = hasStaticLibc();
try {
  // Compiler warnings go to stderr as they come.
  execFileSync('cc', ['-Wall', '-Wextra', '-O2', ...(staticLibc ? ['-static'] : []), '-s', '-o', shim, join(root, 'native', 'cni-shim.c')], { stdio: ['ignore', 'inherit', 'inherit'] });
} catch (err) {
  const why = (err as { code?: string }).code === 'ENOENT' ? 'there is no C compiler `cc` (Debian packages gcc and libc6-dev; scripts/setup.sh installs them)' : 'see the compiler output above';
  throw new Error(`building native/cni-shim.c failed: ${why}`);
}
chmodSync(shim, 0o755);
for (const p of plugins) {
  const out = join(cniBin, p.name);
  const tmp = `${out}.tmp-${process.pid}`;
  rmSync(tmp, { force: true });
  linkSync(shim, tmp);
  renameSync(tmp, out);
}
rmSync(shim, { force: true });
console.log(
  `built dist/podnet.mjs, ${plugins.map((p) => `dist/cni-bin/${p.name}`).join(', ')} (shim, ${staticLibc ? 'static' : 'dynamic'}) and their .sea files${plain ? ' (plain scripts)' : ''}`,
);
