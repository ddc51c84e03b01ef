/**
 * The `podnet` command. Sub-commands are a table so that each capability adds its own; each
 * error a user can meet is a PodnetError whose message says what to do, printed without a
 * stack trace, with exit code 1 (2 for a command line that does not parse).
 */
import { parseArgs } from 'node:util';
import { PodnetError } from '../errors/index.ts';
import { runDemo } from '../demo/index.ts';
import { labCommand } from '../lab/index.ts';

const VERSION = '0.1.0';

interface Command {
  summary: string;
  run(argv: string[]): Promise<void>;
}

const commands: Record<string, Command> = {
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
  version: {
    summary: 'print the version',
    async run() {
      console.log(`podnet ${VERSION}`);
    },
  },
};

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
    return 0;
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
