/**
 * The node agent's data plane: pure planners (host-gw routes, VXLAN device and entries,
 * egress masquerade, pod MTU), a pure diff against the kernel's state, and one thin executor
 * that reads, diffs and writes in a few batched commands. The daemon loop lives elsewhere
 * and calls `Dataplane.apply` on every lease change and on its resync timer.
 */
export type {
  Backend,
  DataplaneError,
  DataplaneSpec,
  DesiredState,
  FdbEntry,
  KernelState,
  MasqPlan,
  NeighEntry,
  NodeSpec,
  RouteEntry,
  Underlay,
  VxlanDevice,
  VxlanLink,
} from './types.ts';
export { BACKENDS } from './types.ts';
export { DEFAULT_VNI, DEFAULT_VXLAN_PORT, SpecError, checkSpec, isUnicastMac } from './spec.ts';
export type { CheckedSpec } from './spec.ts';
export { planDataplane } from './plan.ts';
export { UNREACHABLE, isDirectNeighbour, planHostGw, unreachableMessage } from './hostgw.ts';
export { VXLAN_PREFIX, isVxlanDeviceName, planVxlan, vtepMac, vxlanDeviceName } from './vxlan.ts';
export { EGRESS_CHAIN, EGRESS_TABLE, chainBody, masqMatches, planEgressMasq, planEgressMasqRemoval } from './masq.ts';
export { VXLAN_OVERHEAD_V4, VXLAN_OVERHEAD_V6, minMTU, overhead, podMTU } from './mtu.ts';
export { PODNET_RT_PROTO, diffDataplane, isEmpty } from './diff.ts';
export type { Changes, Counts, DeviceAction, DiffOptions, MasqAction } from './diff.ts';
export { parseFdb, parseNeighs, parseRoutes, parseUnderlay, parseVxlanLinks } from './state.ts';
export { Dataplane, applyDataplane, batchFailures } from './dataplane.ts';
export type { ApplyResult, DataplaneOptions } from './dataplane.ts';
export { planConflist, renderSubnetFile, writeConflist, writeFileAtomic, writeSubnetFile } from './cniconf.ts';
export type { ConflistOptions, SubnetFileContent } from './cniconf.ts';
export { agentCommand } from './cli.ts';
export { runAgent, underlayAddress } from './daemon.ts';
export type { AgentOptions } from './daemon.ts';
