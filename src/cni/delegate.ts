/**
 * Running another CNI plugin (an IPAM plugin) as SPEC.md "Delegated plugins" describes: found
 * by type in CNI_PATH, given the same environment with the command set, the same stdin, and
 * its result or error object read back from stdout.
 */
import { execFile } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { join } from 'node:path';
import { CniCode, CniError } from './errors.ts';
import type { CniArgs } from './types.ts';

export function findPlugin(type: string, path: string[]): string {
  if (!/^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/.test(type)) throw new CniError(CniCode.InvalidConfig, `plugin type "${type}" is not a plugin name`);
  for (const dir of path) {
    const file = join(dir, type);
    try {
      accessSync(file, constants.X_OK);
      return file;
    } catch {
      // Not in this directory.
    }
  }
  throw new CniError(CniCode.InvalidConfig, `plugin "${type}" was not found in CNI_PATH (${path.join(':') || 'empty'})`);
}

/** Runs the delegate; resolves to its parsed stdout (ADD) or undefined, rejects with its CNI error. */
export function delegate(type: string, command: string, args: CniArgs): Promise<unknown> {
  const file = findPlugin(type, args.path);
  return new Promise((resolve, reject) => {
    const child = execFile(
      file,
      [],
      { env: { ...args.env, CNI_COMMAND: command }, encoding: 'utf8', maxBuffer: 16 * 1024 * 1024, timeout: 120_000 },
      (err, stdout, stderr) => {
        let parsed: unknown;
        try {
          parsed = stdout.trim() === '' ? undefined : JSON.parse(stdout);
        } catch {
          parsed = undefined;
        }
        if (err) {
          const e = parsed as { code?: unknown; msg?: unknown; details?: unknown } | undefined;
          if (e && typeof e.code === 'number') {
            reject(new CniError(e.code, `${type}: ${String(e.msg ?? '')}`, typeof e.details === 'string' ? e.details : ''));
          } else {
            reject(new CniError(CniCode.Internal, `${type} failed: ${stderr.trim() || err.message}`));
          }
          return;
        }
        if (stdout.trim() !== '' && parsed === undefined) {
          reject(new CniError(CniCode.DecodingFailure, `${type} printed something that is not JSON`));
          return;
        }
        resolve(parsed);
      },
    );
    child.stdin?.end(args.stdin);
  });
}
