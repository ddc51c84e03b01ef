/**
 * CNI errors: the spec's numeric codes (SPEC.md, "Error"), written to stdout as one error
 * object with a non-zero exit. Everything unexpected is turned into one of these by the
 * dispatcher, so a runtime never sees a stack trace where it expects JSON.
 */
import { PodnetError } from '../errors/index.ts';

export const CniCode = {
  IncompatibleVersion: 1,
  UnsupportedField: 2,
  UnknownContainer: 3,
  InvalidEnvironment: 4,
  IOFailure: 5,
  DecodingFailure: 6,
  InvalidConfig: 7,
  TryAgainLater: 11,
  PluginNotAvailable: 50,
  LimitedConnectivity: 51,
  /** Codes 100+ are the plugin's own; podnet uses 100 for an exhausted address range. */
  NoAddressesLeft: 100,
  /** CHECK found the attachment differs from what ADD made. */
  CheckFailed: 101,
  Internal: 999,
} as const;
export type CniCodeValue = (typeof CniCode)[keyof typeof CniCode];

export class CniError extends PodnetError {
  override readonly name = 'CniError';
  readonly cniCode: number;
  readonly details: string;

  constructor(cniCode: number, msg: string, details = '', options?: { cause?: unknown }) {
    super(`CNI_${cniCode}`, msg, options);
    this.cniCode = cniCode;
    this.details = details;
  }

  toJSON(cniVersion: string): Record<string, unknown> {
    const out: Record<string, unknown> = { cniVersion, code: this.cniCode, msg: this.message };
    if (this.details) out.details = this.details;
    return out;
  }
}

export const invalidConfig = (msg: string, details = ''): CniError => new CniError(CniCode.InvalidConfig, msg, details);
