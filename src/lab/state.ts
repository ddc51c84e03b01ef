/**
 * What a lab remembers between commands: its options and the daemons it started. Kept in
 * /run/podnet-lab/<name>/ (a tmpfs: a reboot forgets labs, as it forgets their namespaces),
 * together with the daemons' logs, etcd's data and each node's CNI directories.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Daemon } from './procs.ts';
import type { LabOptions } from './plan.ts';

export const STATE_ROOT = process.env.PODNET_LAB_STATE ?? '/run/podnet-lab';

export interface LabState {
  options: LabOptions;
  createdAt: string;
  daemons: Daemon[];
  /** Node indexes now in the lab (after node add/remove); absent means 1..options.nodes. */
  nodes?: number[];
  /** How the CLI reaches etcd: a unix socket in the state directory (no traffic in the root namespace). */
  etcdSocket: string;
  /** How the nodes reach etcd: over the underlay. */
  etcdURL: string;
}

export function stateDir(lab: string): string {
  return join(STATE_ROOT, lab);
}

export function readState(lab: string): LabState | undefined {
  try {
    return JSON.parse(readFileSync(join(stateDir(lab), 'state.json'), 'utf8')) as LabState;
  } catch {
    return undefined;
  }
}

export function writeState(lab: string, state: LabState): void {
  const dir = stateDir(lab);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const tmp = join(dir, `.state.json.${process.pid}`);
  writeFileSync(tmp, JSON.stringify(state, null, 2));
  renameSync(tmp, join(dir, 'state.json'));
}

export function removeState(lab: string): void {
  rmSync(stateDir(lab), { recursive: true, force: true });
}

export function stateExists(lab: string): boolean {
  return existsSync(stateDir(lab));
}
