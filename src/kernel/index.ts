export { run, CommandError, isValidIfName, assertIfName, assertPath } from './exec.ts';
export type { Runner, RunOptions, RunResult } from './exec.ts';
export { isAlive, runPluginIn } from './process.ts';
export type { PluginRun } from './process.ts';
