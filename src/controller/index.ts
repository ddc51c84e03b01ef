export { Controller } from './controller.ts';
export type { ControllerLog, ControllerOptions } from './controller.ts';
export { planDeployment, pickNode, podFromTemplate, templateHash, nodeReady, TEMPLATE_HASH } from './plan.ts';
export type { DeploymentLike, DeploymentPlan } from './plan.ts';
export {
  CONDITION,
  DEFAULT_SERVICE_NETWORK,
  LOAD_BALANCER_CLASS,
  ServiceConfigError,
  isHeadless,
  keepAllocatedValues,
  planAllocations,
  serviceKey,
  serviceName,
  serviceNetwork,
  serviceType,
  validateService,
} from './alloc.ts';
export type { AllocationPlan, Holdings, ProblemReason, ServiceAllocation, ServiceNetworkConfig, ServiceProblem, ServiceType } from './alloc.ts';
export {
  HEADLESS_LABEL,
  MANAGED_BY,
  MANAGED_BY_LABEL,
  MAX_ENDPOINTS_PER_SLICE,
  SERVICE_NAME_LABEL,
  ZONE_LABEL,
  desiredEndpoints,
  endpointPorts,
  isManagedSlice,
  planEndpointSlices,
  podEndpoint,
  podIPv4,
  podReady,
  portsKey,
  selectsPods,
  sliceName,
  targetPortOf,
} from './endpointslices.ts';
export type { SliceInput, SlicePlan } from './endpointslices.ts';
export { ServiceController } from './services.ts';
export type { ServiceControllerLog, ServiceControllerOptions, ServiceSources } from './services.ts';
export { runController } from './daemon.ts';
