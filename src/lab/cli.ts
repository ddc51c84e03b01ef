/**
 * `podnet lab …`: the command line of shared/DESIGN.md ("The command-line contract"). Each
 * sub-command parses its own options strictly, so a typo is an error, not a silent default.
 */
import { parseArgs } from 'node:util';
import { DEFAULT_OPTIONS, LabError, type LabOptions, validateOptions } from './plan.ts';
import { addNode, down, removeNode, status, up } from './lab.ts';
import { applyManifests, deleteManifests, execIn, openLab, parseManifests, readManifestInput, waitForPods } from './commands.ts';
import { getResources } from './get.ts';

async function withLab<T>(lab: string, fn: (ds: ReturnType<typeof openLab>['ds']) => Promise<T>): Promise<T> {
  const h = openLab(lab);
  try {
    return await fn(h.ds);
  } finally {
    await h.close();
  }
}

type Sub = (argv: string[]) => Promise<void>;

const nameOption = { name: { type: 'string', default: DEFAULT_OPTIONS.name } } as const;

const subs: Record<string, Sub> = {
  async up(argv) {
    const { values } = parseArgs({
      args: argv,
      options: {
        ...nameOption,
        nodes: { type: 'string', default: String(DEFAULT_OPTIONS.nodes) },
        backend: { type: 'string', default: DEFAULT_OPTIONS.backend },
        topology: { type: 'string', default: DEFAULT_OPTIONS.topology },
        proxy: { type: 'string', default: DEFAULT_OPTIONS.proxy },
      },
      strict: true,
    });
    const options = validateOptions({
      name: values.name,
      nodes: Number(values.nodes),
      backend: values.backend as LabOptions['backend'],
      topology: values.topology as LabOptions['topology'],
      proxy: values.proxy as LabOptions['proxy'],
    });
    await up(options, (m) => console.log(`  ${m}`));
  },
  async down(argv) {
    const { values } = parseArgs({ args: argv, options: nameOption, strict: true });
    const r = await down(values.name);
    console.log(`lab "${values.name}" is down (${r.daemons} daemons, ${r.processes} other processes, ${r.namespaces} namespaces removed)`);
  },
  async apply(argv) {
    const { values } = parseArgs({ args: argv, options: { ...nameOption, filename: { type: 'string', short: 'f' }, wait: { type: 'string', default: '60' } }, strict: true });
    if (!values.filename) throw new LabError('PODNET_LAB_USAGE', 'usage: podnet lab apply -f FILE|-');
    // Parse and check every document before anything is stored.
    const manifests = parseManifests(readManifestInput(values.filename));
    await withLab(values.name, async (ds) => {
      await applyManifests(ds, manifests, (l) => console.log(l));
      const secs = Number(values.wait);
      if (secs > 0) await waitForPods(values.name, ds, manifests, secs * 1000);
    });
  },
  async delete(argv) {
    const { values } = parseArgs({ args: argv, options: { ...nameOption, filename: { type: 'string', short: 'f' } }, strict: true });
    if (!values.filename) throw new LabError('PODNET_LAB_USAGE', 'usage: podnet lab delete -f FILE|-');
    const manifests = parseManifests(readManifestInput(values.filename));
    await withLab(values.name, (ds) => deleteManifests(ds, manifests, (l) => console.log(l)));
  },
  async get(argv) {
    const { values, positionals } = parseArgs({
      args: argv,
      options: { ...nameOption, namespace: { type: 'string', short: 'n' }, 'all-namespaces': { type: 'boolean', short: 'A' }, output: { type: 'string', short: 'o' } },
      allowPositionals: true,
      strict: true,
    });
    if (positionals.length !== 1) throw new LabError('PODNET_LAB_USAGE', 'usage: podnet lab get nodes|pods|services|endpointslices|networkpolicies [-n NS|-A] [-o json|wide]');
    const opts: { namespace?: string; all?: boolean; output?: string } = {};
    if (values.namespace !== undefined) opts.namespace = values.namespace;
    if (values['all-namespaces']) opts.all = true;
    if (values.output !== undefined) opts.output = values.output;
    console.log(await withLab(values.name, (ds) => getResources(ds, positionals[0]!, opts)));
  },
  async exec(argv) {
    const dash = argv.indexOf('--');
    const mine = dash >= 0 ? argv.slice(0, dash) : argv;
    const cmd = dash >= 0 ? argv.slice(dash + 1) : [];
    const { values, positionals } = parseArgs({ args: mine, options: { ...nameOption, namespace: { type: 'string', short: 'n' } }, allowPositionals: true, strict: true });
    if (positionals.length !== 1 || cmd.length === 0) throw new LabError('PODNET_LAB_USAGE', 'usage: podnet lab exec [-n NS] POD|node/NODE|ext -- CMD [ARG…]');
    const t = positionals[0]!;
    const target = t === 'ext' ? { ext: true } : t.startsWith('node/') ? { node: t.slice(5) } : { pod: t, namespace: values.namespace ?? 'default' };
    process.exitCode = await withLab(values.name, (ds) => execIn(values.name, ds, target, cmd));
  },
  async node(argv) {
    const { values, positionals } = parseArgs({ args: argv, options: nameOption, allowPositionals: true, strict: true });
    const [verb, nodeName] = positionals;
    if (verb === 'add' && positionals.length === 1) await addNode(values.name, (m) => console.log(m));
    else if (verb === 'remove' && nodeName && positionals.length === 2) await removeNode(values.name, nodeName, (m) => console.log(m));
    else throw new LabError('PODNET_LAB_USAGE', 'usage: podnet lab node add | podnet lab node remove NODE');
  },
  async status(argv) {
    const { values } = parseArgs({ args: argv, options: { ...nameOption, output: { type: 'string', short: 'o' } }, strict: true });
    const st = status(values.name);
    if (values.output === 'json') {
      console.log(JSON.stringify(st, null, 2));
      return;
    }
    if (values.output !== undefined) throw new LabError('PODNET_BAD_OUTPUT', `-o must be json, not "${values.output}"`);
    if (!st.options) {
      console.log(`lab "${st.name}": not up${st.namespaces ? ` (${st.namespaces} namespaces left over: run \`podnet lab down --name ${st.name}\`)` : ''}`);
      return;
    }
    const o = st.options;
    console.log(`lab "${st.name}": ${st.up ? 'up' : 'DEGRADED'} since ${st.createdAt}; ${o.nodes} node(s), backend ${o.backend}, topology ${o.topology}, proxy ${o.proxy}`);
    for (const d of st.daemons) console.log(`  ${d.running ? 'running' : 'STOPPED'}  ${d.role.padEnd(20)} pid ${String(d.pid).padEnd(8)} ${d.log}`);
  },
};

export async function labCommand(argv: string[]): Promise<void> {
  const [sub, ...rest] = argv;
  const fn = sub ? subs[sub] : undefined;
  if (!fn) {
    throw new LabError('PODNET_LAB_USAGE', `usage: podnet lab ${Object.keys(subs).join('|')} [options]${sub ? ` ("${sub}" is not one of them)` : ''}`);
  }
  await fn(rest);
}
