/**
 * Benchmark dispatcher: `node scripts/bench.ts NAME [options]` (or `npm run bench -- NAME`,
 * which runs scripts/setup.sh first). Each benchmark lives in bench/NAME.ts, exports `run`,
 * prints its figures and writes its own "## NAME" section of BENCHMARKS.md.
 * An unknown or missing NAME lists the benchmarks and exits with status 2.
 */
interface Benchmark {
  description: string;
  load: () => Promise<{ run: (args: string[]) => Promise<void> }>;
}

const BENCHMARKS: Record<string, Benchmark> = {
  cni: {
    description: 'CNI ADD/DEL latency and start-up: podnet-bridge/podnet-ipam against the reference bridge/host-local (root; ~3 min)',
    load: () => import('../bench/cni.ts'),
  },
};

const [name, ...rest] = process.argv.slice(2);
const bench = name === undefined ? undefined : BENCHMARKS[name];
if (!bench) {
  if (name !== undefined) console.error(`unknown benchmark "${name}"`);
  console.error('usage: node scripts/bench.ts NAME [options]   (npm run bench -- NAME)\nbenchmarks:');
  for (const [n, b] of Object.entries(BENCHMARKS)) console.error(`  ${n.padEnd(8)} ${b.description}`);
  process.exit(2);
}
try {
  const mod = await bench.load();
  await mod.run(rest);
} catch (err) {
  console.error(`bench ${name}: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
}
