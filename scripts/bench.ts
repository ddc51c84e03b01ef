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
  dataplane: {
    description: 'TCP throughput (iperf3) pod → pod: same node, host-gw, vxlan, against bare bridge/routed/VXLAN baselines (root; ~4.5 min)',
    load: () => import('../bench/dataplane.ts'),
  },
  lab: {
    description: 'lab up (3 and 20 nodes), 500 pods to Ready, lab down (root; ~3 min)',
    load: () => import('../bench/lab.ts'),
  },
  dns: {
    description: 'podnet dns with 10,000 services: dnsperf QPS and latency (internal, NXDOMAIN, search-path mixes), memory per 10,000 services (~2 min)',
    load: () => import('../bench/dns.ts'),
  },
  proxy: {
    description: 'service proxy: nftables vs iptables rule sync at 1,000/10,000 services × 25 endpoints (full, one change, memory), first-connection latency vs service count (root; ~10 min)',
    load: () => import('../bench/proxy.ts'),
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
