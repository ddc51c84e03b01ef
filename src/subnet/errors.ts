import { PodnetError } from '../errors/index.ts';

export const SubnetCode = {
  /** Every subnet of the cluster CIDR is leased. */
  Exhausted: 'PODNET_SUBNET_EXHAUSTED',
  /** The cluster CIDR or subnet length is malformed or does not fit. */
  Invalid: 'PODNET_SUBNET_INVALID',
  /** This agent's network config differs from the one the cluster was started with. */
  ConfigMismatch: 'PODNET_SUBNET_CONFIG_MISMATCH',
  /** The lease attributes (node name, node IP, backend) are malformed. */
  BadAttrs: 'PODNET_SUBNET_BAD_ATTRS',
} as const;

export type SubnetCode = (typeof SubnetCode)[keyof typeof SubnetCode];

export class SubnetError extends PodnetError {
  override readonly name: string = 'SubnetError';
  declare readonly code: SubnetCode;

  constructor(code: SubnetCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}
