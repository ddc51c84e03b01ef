/**
 * The dispatcher every podnet CNI plugin runs through: it reads the environment and stdin
 * as SPEC.md "Protocol" describes, validates both before any handler touches the system,
 * calls one handler per verb, and prints either the result or exactly one error object.
 * Handlers never print and never exit; they return a value or throw.
 */
import { readFileSync } from 'node:fs';
import { CniCode, CniError } from './errors.ts';
import type { Attachment, CniArgs, CniCommand, CniResult, NetConf } from './types.ts';
import { LATEST, SUPPORTED_VERSIONS, assertSupported, compareVersions, formatResult, isSupported } from './version.ts';
import { isValidIfName } from '../kernel/index.ts';
import { PodnetError, describe } from '../errors/index.ts';

export interface CniPlugin<C extends NetConf = NetConf> {
  /** Validates the configuration: throws a CniError (7 invalid, 2 unsupported field). */
  parseConfig(raw: Record<string, unknown>, args: CniArgs | undefined): C;
  add(args: CniArgs, conf: C): Promise<CniResult>;
  del(args: CniArgs, conf: C): Promise<void>;
  check(args: CniArgs, conf: C): Promise<void>;
  status(args: CniArgs, conf: C): Promise<void>;
  gc(args: CniArgs, conf: C, valid: Attachment[]): Promise<void>;
  /** A line for VERSION's human readers (stderr), like the reference plugins print. */
  about: string;
}

const COMMANDS: readonly CniCommand[] = ['ADD', 'DEL', 'CHECK', 'STATUS', 'GC', 'VERSION'];
const CONTAINER_ID = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;
const NETWORK_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

const envError = (msg: string): CniError => new CniError(CniCode.InvalidEnvironment, msg);

/** Parses CNI_ARGS ("K1=V1;K2=V2"). */
export function parseCniArgs(text: string | undefined): Map<string, string> {
  const out = new Map<string, string>();
  if (!text) return out;
  for (const pair of text.split(';')) {
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    if (eq <= 0) throw envError(`CNI_ARGS: "${pair}" is not KEY=VALUE`);
    out.set(pair.slice(0, eq), pair.slice(eq + 1));
  }
  return out;
}

/** Reads and checks the CNI_* variables that `command` needs. */
export function parseEnv(env: NodeJS.ProcessEnv, stdin: Buffer): CniArgs {
  const command = env.CNI_COMMAND as CniCommand | undefined;
  if (!command) throw envError('CNI_COMMAND is not set');
  if (!COMMANDS.includes(command)) throw envError(`unknown CNI_COMMAND "${command}"`);
  // VERSION needs nothing but CNI_COMMAND, and libcni's config validation (podman, for one)
  // sends it with placeholders such as CNI_NETNS=dummy: the other variables are ignored.
  if (command === 'VERSION') return { command, containerId: '', netns: '', ifName: '', args: new Map(), path: [], stdin, env };
  const needs = (name: string, cmds: readonly CniCommand[]): string => {
    const v = env[name] ?? '';
    if (cmds.includes(command) && v === '') throw envError(`${name} is required for ${command}`);
    return v;
  };
  const containerId = needs('CNI_CONTAINERID', ['ADD', 'DEL', 'CHECK']);
  const netns = needs('CNI_NETNS', ['ADD', 'CHECK']);
  const ifName = needs('CNI_IFNAME', ['ADD', 'DEL', 'CHECK']);
  const path = needs('CNI_PATH', ['ADD', 'DEL', 'CHECK']);
  if (containerId && !CONTAINER_ID.test(containerId)) {
    throw envError(`CNI_CONTAINERID "${containerId}" must be letters, digits, '_', '.' or '-', starting with a letter or digit`);
  }
  if (ifName && !isValidIfName(ifName)) throw envError(`CNI_IFNAME "${ifName}" is not a valid interface name`);
  if (netns && (!netns.startsWith('/') || /[\0\n]/.test(netns))) throw envError(`CNI_NETNS "${netns}" must be an absolute path`);
  return {
    command,
    containerId,
    netns,
    ifName,
    args: parseCniArgs(env.CNI_ARGS),
    path: path.split(':').filter((p) => p !== ''),
    stdin,
    env,
  };
}

/** Parses the stdin configuration far enough to know its version and name. */
export function parseNetConf(stdin: Buffer): Record<string, unknown> {
  let raw: unknown;
  try {
    raw = JSON.parse(stdin.toString('utf8'));
  } catch (err) {
    throw new CniError(CniCode.DecodingFailure, 'the network configuration on stdin is not valid JSON', describe(err));
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new CniError(CniCode.DecodingFailure, 'the network configuration on stdin is not a JSON object');
  }
  return raw as Record<string, unknown>;
}

/** Checks the fields common to every plugin config; the plugin checks its own. */
export function checkCommonConf(raw: Record<string, unknown>): void {
  assertSupported(raw.cniVersion);
  if (typeof raw.name !== 'string' || !NETWORK_NAME.test(raw.name)) {
    throw new CniError(CniCode.InvalidConfig, `network name ${JSON.stringify(raw.name ?? null)} is missing or invalid`);
  }
  if (typeof raw.type !== 'string' || raw.type === '') {
    throw new CniError(CniCode.InvalidConfig, 'the configuration has no plugin "type"');
  }
}

/** The `cni.dev/valid-attachments` list of a GC call. */
export function validAttachments(raw: Record<string, unknown>): Attachment[] {
  const list = raw['cni.dev/valid-attachments'] ?? raw['cni.dev/attachments'] ?? [];
  if (!Array.isArray(list)) throw new CniError(CniCode.InvalidConfig, 'cni.dev/valid-attachments must be a list');
  return list.map((a) => {
    if (typeof a !== 'object' || a === null || typeof a.containerID !== 'string' || typeof a.ifname !== 'string') {
      throw new CniError(CniCode.InvalidConfig, 'each valid attachment needs a containerID and an ifname');
    }
    return { containerID: a.containerID, ifname: a.ifname };
  });
}

export interface Outcome {
  stdout: string;
  exitCode: number;
}

/** Turns anything thrown into the spec's error object. */
export function toCniError(err: unknown): CniError {
  if (err instanceof CniError) return err;
  if (err instanceof PodnetError && (err.code === 'PODNET_BAD_NAME' || err.code === 'PODNET_BAD_ADDRESS')) {
    return new CniError(CniCode.InvalidConfig, err.message);
  }
  if (err instanceof PodnetError && err.code === 'PODNET_COMMAND_FAILED') {
    return new CniError(CniCode.IOFailure, err.message);
  }
  if (err instanceof Error && 'code' in err && typeof err.code === 'string' && /^E[A-Z]+$/.test(err.code)) {
    return new CniError(CniCode.IOFailure, err.message);
  }
  return new CniError(CniCode.Internal, `internal error: ${describe(err)}`);
}

/** Runs one CNI invocation and returns what to print and the exit code. */
export async function dispatch<C extends NetConf>(plugin: CniPlugin<C>, env: NodeJS.ProcessEnv, stdin: Buffer): Promise<Outcome> {
  let version = LATEST;
  try {
    const args = parseEnv(env, stdin);
    if (args.command === 'VERSION') {
      let asked: unknown = LATEST;
      try {
        asked = (JSON.parse(stdin.toString('utf8') || '{}') as { cniVersion?: unknown }).cniVersion ?? LATEST;
      } catch {
        // VERSION may come with no or odd stdin; it still answers.
      }
      const cniVersion = isSupported(asked) ? asked : LATEST;
      return { stdout: JSON.stringify({ cniVersion, supportedVersions: SUPPORTED_VERSIONS }) + '\n', exitCode: 0 };
    }
    const raw = parseNetConf(stdin);
    if (isSupported(raw.cniVersion)) version = raw.cniVersion;
    checkCommonConf(raw);
    if ((args.command === 'STATUS' || args.command === 'GC') && compareVersions(version, '1.1.0') < 0) {
      throw new CniError(CniCode.IncompatibleVersion, `${args.command} needs cniVersion 1.1.0 or later, the config says ${version}`);
    }
    const conf = plugin.parseConfig(raw, args);
    switch (args.command) {
      case 'ADD': {
        const result = await plugin.add(args, conf);
        return { stdout: JSON.stringify(formatResult(result, version)) + '\n', exitCode: 0 };
      }
      case 'DEL':
        await plugin.del(args, conf);
        break;
      case 'CHECK':
        await plugin.check(args, conf);
        break;
      case 'STATUS':
        await plugin.status(args, conf);
        break;
      case 'GC':
        await plugin.gc(args, conf, validAttachments(raw));
        break;
    }
    return { stdout: '', exitCode: 0 };
  } catch (err) {
    const e = toCniError(err);
    return { stdout: JSON.stringify(e.toJSON(version)) + '\n', exitCode: 1 };
  }
}

/** What a plugin run by hand (no CNI_COMMAND) says on stderr, like the reference plugins. */
export function greeting(plugin: Pick<CniPlugin, 'about'>, env: NodeJS.ProcessEnv): string {
  return env.CNI_COMMAND ? '' : `${plugin.about}\nCNI protocol versions supported: ${SUPPORTED_VERSIONS.join(', ')}\n`;
}

/** The process entry: stdin/env in, stdout/exit code out (cni-server in server.ts does the same per call). */
export async function main<C extends NetConf>(plugin: CniPlugin<C>): Promise<void> {
  let stdin: Buffer;
  try {
    stdin = process.env.CNI_COMMAND === 'VERSION' && process.stdin.isTTY ? Buffer.alloc(0) : readFileSync(0);
  } catch {
    stdin = Buffer.alloc(0);
  }
  process.stderr.write(greeting(plugin, process.env));
  const out = await dispatch(plugin, process.env, stdin);
  process.stdout.write(out.stdout);
  process.exitCode = out.exitCode;
}
