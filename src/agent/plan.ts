/**
 * The planner: a DataplaneSpec and the facts about the underlay in, the whole desired data
 * plane out, as a value. No I/O, so every decision (which peers get routes, what MTU pods get,
 * which peers are reported as unreachable) is covered by table-driven unit tests.
 */
import { formatIP, parsePrefix, sameIP } from '../netaddr/index.ts';
import { planHostGw } from './hostgw.ts';
import { planEgressMasq } from './masq.ts';
import { minMTU, podMTU } from './mtu.ts';
import { checkSpec } from './spec.ts';
import type { DataplaneError, DataplaneSpec, DesiredState, Underlay } from './types.ts';
import { planVxlan } from './vxlan.ts';

/** Pure: the desired data plane. Throws SpecError when the node's own settings are invalid. */
export function planDataplane(spec: DataplaneSpec, underlay: Underlay | undefined): DesiredState {
  const checked = checkSpec(spec);
  const errors: DataplaneError[] = [...checked.errors];
  const masq = spec.masquerade === false ? undefined : planEgressMasq(checked.cluster);
  const base: DesiredState = { backend: spec.backend, podMTU: undefined, hold: false, device: undefined, routes: [], neighs: [], fdb: [], masq, errors };
  if (underlay === undefined) {
    errors.unshift({
      code: 'PODNET_NO_UNDERLAY',
      message: `underlay interface ${spec.underlayIface} does not exist in this network namespace; routes and devices are left as they are`,
    });
    return { ...base, hold: true };
  }
  const own = underlay.addresses.some((a) => sameIP(parsePrefix(a, false).ip, checked.self.ip));
  if (!own) {
    const has = underlay.addresses.length ? underlay.addresses.join(', ') : 'no address';
    errors.unshift({
      code: 'PODNET_NODE_IP_NOT_LOCAL',
      message: `node IP ${formatIP(checked.self.ip)} is not an address of ${underlay.name} (it has ${has})`,
    });
  }
  let desired: DesiredState;
  if (spec.backend === 'host-gw') {
    const p = planHostGw(checked, underlay);
    desired = { ...base, podMTU: podMTU('host-gw', underlay.mtu), routes: p.routes, errors: [...errors, ...p.errors] };
  } else {
    const p = planVxlan(checked, underlay);
    desired = { ...base, podMTU: p.device.mtu, device: p.device, routes: p.routes, neighs: p.neighs, fdb: p.fdb, errors: [...errors, ...p.errors] };
  }
  const family = checked.cluster.ip.family;
  if (desired.podMTU !== undefined && desired.podMTU < minMTU(family)) {
    desired.errors.push({
      code: 'PODNET_MTU_TOO_SMALL',
      message: `the pod MTU would be ${desired.podMTU} (underlay ${underlay.name} has ${underlay.mtu}), below IPv${family}'s minimum ${minMTU(family)}`,
    });
  }
  return desired;
}
