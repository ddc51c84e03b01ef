export { labCommand } from './cli.ts';
export { up, down, status, distPaths, nodeComponents, controlPlaneComponents } from './lab.ts';
export { ADDRESS_PLAN, DEFAULT_OPTIONS, planLab, planNode, nsName, nsPrefix, validateOptions, LabError } from './plan.ts';
export type { LabOptions, LabPlan, NodePlan, Backend, Topology, ProxyMode } from './plan.ts';
export { readState, stateDir } from './state.ts';
export type { LabState } from './state.ts';
