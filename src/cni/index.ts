export { bridgePlugin, parseBridgeConf, planAdd, hostVethName } from './bridge.ts';
export type { BridgeConf, AddPlan } from './bridge.ts';
export { dispatch, main, parseEnv, parseCniArgs, toCniError } from './skel.ts';
export type { CniPlugin, Outcome } from './skel.ts';
export { CniError, CniCode } from './errors.ts';
export { formatResult, parseResult, SUPPORTED_VERSIONS, LATEST } from './version.ts';
export { planMasq, MASQ_TABLE } from './masq.ts';
export type * from './types.ts';
