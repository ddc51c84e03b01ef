/**
 * Builds podnet: the CLI as one ESM bundle (dist/podnet.mjs), and each CNI plugin as a
 * single-file executable (dist/cni-bin/podnet-bridge, podnet-ipam).
 *
 * Why single-file executables: a plugin runs on a node that has no podnet checkout and maybe
 * no Node.js, exactly like the reference Go binaries. A Node SEA is the Node 24 binary with
 * our bundle and its V8 code cache injected, so it needs nothing else on the machine and
 * starts as fast as `node` itself (measured in BENCHMARKS.md). `--plain` writes plain bundled
 * scripts instead (for a quick edit-test loop).
 */
import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(root, 'dist');
const cniBin = join(dist, 'cni-bin');
const plain = process.argv.includes('--plain');

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
  const out = join(cniBin, p.name);
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
console.log(`built dist/podnet.mjs and ${plugins.map((p) => `dist/cni-bin/${p.name}`).join(', ')}${plain ? ' (plain scripts)' : ''}`);
