/**
 * `podnet lab …`: the command line of shared/DESIGN.md ("The command-line contract"). Each
 * sub-command parses its own options strictly, so a typo is an error, not a silent default.
 */
import { parseArgs } from 'node:util';
import { DEFAULT_OPTIONS, LabError, type LabOptions, validateOptions } from './plan.ts';
import { down, status, up } from './lab.ts';

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
