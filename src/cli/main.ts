/**
 * The `podnet` command. Sub-commands are a table so that each capability adds its own; each
 * error a user can meet is a PodnetError whose message says what to do, printed without a
 * stack trace, with exit code 1 (2 for a command line that does not parse).
 */
import { parseArgs } from 'node:util';
import { PodnetError } from '../errors/index.ts';
import { runDemo } from '../demo/index.ts';
import { DEFAULT_CNI_SOCKET, startCniServer } from '../cni/index.ts';
import { labCommand, quickstart, runKubelet, serveEcho, serveZone } from '../lab/index.ts';
import { runController } from '../controller/index.ts';
import { agentCommand } from '../agent/index.ts';
import { dnsCommand } from '../dns/index.ts';

const VERSION = '0.1.0';

interface Command {
  summary: string;
  run(argv: string[]): Promise<void>;
}

const commands: Record<string, Command> = {
  quickstart: {
    summary: 'what `npm start` runs: a 3-node lab with a sample app, and what to try',
    async run(argv) {
      parseArgs({ args: argv, options: {}, strict: true });
      await quickstart();
    },
  },
  demo: {
    summary: 'connect three pods with the CNI plugins in throw-away namespaces, show them talking, clean up',
    async run(argv) {
      parseArgs({ args: argv, options: {}, strict: true });
      await runDemo();
    },
  },
  lab: {
    summary: 'a whole cluster on this host, in network namespaces: up, down, status, apply, get, exec',
    run: labCommand,
  },
  agent: {
    summary: 'the node agent: subnet lease, routes or VXLAN to peers, egress masquerade, CNI config',
    run: agentCommand,
  },
  dns: {
    summary: 'cluster DNS (Kubernetes DNS spec 1.1.0) from the datastore, forwarding other names',
    run: dnsCommand,
  },
  controller: {
    summary: 'the controller daemon: Deployments to Pods, scheduling (runs in the control plane)',
    async run(argv) {
      const { values } = parseArgs({ args: argv, options: { etcd: { type: 'string' }, 'metrics-address': { type: 'string', default: '0.0.0.0:10257' } }, strict: true });
      if (!values.etcd) throw new PodnetError('PODNET_USAGE', 'usage: podnet controller --etcd URL [--metrics-address HOST:PORT]');
      const [host, port] = splitHostPort(values['metrics-address']);
      await runController({ etcd: values.etcd, metricsHost: host, metricsPort: port });
    },
  },
  kubelet: {
    summary: "the lab's kubelet: runs the pods bound to one node (runs in that node's namespace)",
    async run(argv) {
      const { values } = parseArgs({
        args: argv,
        options: {
          etcd: { type: 'string' },
          lab: { type: 'string' },
          node: { type: 'string' },
          'node-ip': { type: 'string' },
          'node-netns': { type: 'string' },
          'cni-bin-dir': { type: 'string' },
          'cni-conf-dir': { type: 'string' },
          'state-dir': { type: 'string' },
          'cni-socket': { type: 'string' },
          'metrics-port': { type: 'string', default: '10250' },
        },
        strict: true,
      });
      const need = ['etcd', 'lab', 'node', 'node-ip', 'node-netns', 'cni-bin-dir', 'cni-conf-dir', 'state-dir'] as const;
      const missing = need.filter((k) => !values[k]);
      if (missing.length > 0) throw new PodnetError('PODNET_USAGE', `podnet kubelet needs --${missing.join(', --')}`);
      const opts = {
        etcd: values.etcd!,
        lab: values.lab!,
        node: values.node!,
        nodeIP: values['node-ip']!,
        nodeNetns: values['node-netns']!,
        cniBin: values['cni-bin-dir']!,
        cniConfDir: values['cni-conf-dir']!,
        dir: values['state-dir']!,
        cli: process.argv[1] ?? '',
        metricsPort: Number(values['metrics-port']),
      };
      await runKubelet(values['cni-socket'] ? { ...opts, cniSocket: values['cni-socket'] } : opts);
    },
  },
  'serve-zone': {
    summary: "the lab's upstream DNS zone (example.test) on the external host",
    async run(argv) {
      const { values } = parseArgs({ args: argv, options: { port: { type: 'string', default: '53' }, address: { type: 'string', default: '203.0.113.10' } }, strict: true });
      const ac = new AbortController();
      for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => ac.abort());
      await serveZone(values.address, Number(values.port), ac.signal);
    },
  },
  'serve-echo': {
    summary: "the lab's built-in echo image: HTTP server that tells which pod answered and who asked",
    async run(argv) {
      // As a pod's container (the kubelet sets POD_NAME) it keeps serving for a second after
      // SIGTERM, while the proxies withdraw its endpoint; elsewhere it stops at once.
      const { values } = parseArgs({
        args: argv,
        options: { port: { type: 'string', default: process.env.PORT ?? '8080' }, name: { type: 'string' }, 'drain-ms': { type: 'string', default: process.env.POD_NAME ? '1000' : '0' } },
        strict: true,
      });
      const ac = new AbortController();
      // A second signal (an impatient operator) stops at once.
      for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => (ac.signal.aborted ? process.exit(0) : ac.abort()));
      await serveEcho(Number(values.port), ac.signal, values.name, Number(values['drain-ms']));
    },
  },
  'cni-server': {
    summary: `serve CNI calls from the podnet-bridge/podnet-ipam shims warm (--socket PATH, default ${DEFAULT_CNI_SOCKET})`,
    async run(argv) {
      const { values } = parseArgs({ args: argv, options: { socket: { type: 'string', default: DEFAULT_CNI_SOCKET } }, strict: true });
      const ac = new AbortController();
      const stop = (): void => ac.abort();
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      // Structured log lines on stderr, one JSON object each.
      const log = (event: Record<string, unknown>): void => void process.stderr.write(JSON.stringify({ time: new Date().toISOString(), ...event }) + '\n');
      try {
        const server = await startCniServer({ socketPath: values.socket, signal: ac.signal, log });
        log({ level: 'info', msg: 'cni-server listening', socket: server.socketPath, pid: process.pid, plugins: ['podnet-bridge', 'podnet-ipam'] });
        await server.closed;
      } finally {
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
      }
    },
  },
  version: {
    summary: 'print the version',
    async run() {
      console.log(`podnet ${VERSION}`);
    },
  },
};

function splitHostPort(s: string): [string, number] {
  const i = s.lastIndexOf(':');
  const port = Number(s.slice(i + 1));
  if (i < 0 || !Number.isInteger(port) || port < 1 || port > 65535) throw new PodnetError('PODNET_USAGE', `"${s}" is not HOST:PORT`);
  return [s.slice(0, i) || '0.0.0.0', port];
}

function usage(): string {
  const lines = ['usage: podnet COMMAND [OPTIONS]', '', 'commands:'];
  for (const [name, c] of Object.entries(commands)) lines.push(`  ${name.padEnd(10)} ${c.summary}`);
  return lines.join('\n');
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === 'help' || name === '--help' || name === '-h') {
    console.log(usage());
    return name ? 0 : 2;
  }
  const cmd = commands[name];
  if (!cmd) {
    console.error(`podnet: unknown command "${name}"\n\n${usage()}`);
    return 2;
  }
  try {
    await cmd.run(rest);
    // A command that passes on a child's exit status (lab exec) sets process.exitCode.
    return Number(process.exitCode ?? 0);
  } catch (err) {
    if (err instanceof PodnetError) {
      console.error(`podnet ${name}: ${err.message} [${err.code}]`);
      return 1;
    }
    if (err instanceof TypeError && 'code' in err && String(err.code).startsWith('ERR_PARSE_ARGS')) {
      console.error(`podnet ${name}: ${err.message}`);
      return 2;
    }
    throw err;
  }
}

process.exitCode = await main(process.argv.slice(2));
