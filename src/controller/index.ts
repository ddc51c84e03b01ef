export { Controller } from './controller.ts';
export type { ControllerLog, ControllerOptions } from './controller.ts';
export { planDeployment, pickNode, podFromTemplate, templateHash, nodeReady, TEMPLATE_HASH } from './plan.ts';
export type { DeploymentLike, DeploymentPlan } from './plan.ts';
export { runController } from './daemon.ts';
