export { run, start, CommandError, isValidIfName, assertIfName, assertPath } from './exec.ts';
export type { Runner, RunOptions, RunResult, StartedCommand } from './exec.ts';
export { IpSession, startIpBatch, useIpSession } from './ip-session.ts';
export { NftSession, joinTransaction, splitAtMarker } from './nft-session.ts';
export type { NftSessionOptions } from './nft-session.ts';
export { isAlive, runPluginIn } from './process.ts';
export type { PluginRun } from './process.ts';
