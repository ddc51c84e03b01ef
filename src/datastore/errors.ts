/**
 * Datastore errors. Callers match on `code` (stable), never on message text; the helpers
 * below read better in the usual `catch`.
 */
import { PodnetError } from '../errors/index.ts';

export const DatastoreCode = {
  /** The backend did not answer: etcd down, wrong endpoint, socket missing. Retry later. */
  Unavailable: 'PODNET_DATASTORE_UNAVAILABLE',
  NotFound: 'PODNET_DATASTORE_NOT_FOUND',
  /** An update or delete carried a resourceVersion (or uid) that is no longer current. */
  Conflict: 'PODNET_DATASTORE_CONFLICT',
  AlreadyExists: 'PODNET_DATASTORE_ALREADY_EXISTS',
  /** The object is malformed (no name, a kind podnet does not store, a bad label selector). */
  Invalid: 'PODNET_DATASTORE_INVALID',
  /** A watch was asked to start from a revision the datastore has compacted away. */
  Expired: 'PODNET_DATASTORE_EXPIRED',
  /** The backend answered with an error podnet did not expect (permission denied, …). */
  Failed: 'PODNET_DATASTORE_FAILED',
} as const;

export type DatastoreCode = (typeof DatastoreCode)[keyof typeof DatastoreCode];

export class DatastoreError extends PodnetError {
  override readonly name: string = 'DatastoreError';
  declare readonly code: DatastoreCode;

  constructor(code: DatastoreCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

function hasCode(err: unknown, code: DatastoreCode): boolean {
  return err instanceof PodnetError && err.code === code;
}

export const isNotFound = (err: unknown): boolean => hasCode(err, DatastoreCode.NotFound);
export const isConflict = (err: unknown): boolean => hasCode(err, DatastoreCode.Conflict);
export const isAlreadyExists = (err: unknown): boolean => hasCode(err, DatastoreCode.AlreadyExists);
export const isUnavailable = (err: unknown): boolean => hasCode(err, DatastoreCode.Unavailable);
export const isExpired = (err: unknown): boolean => hasCode(err, DatastoreCode.Expired);

/** "Pod default/web-1", "Node node1". */
export function describeRef(kind: string, namespace: string | undefined, name: string): string {
  return namespace ? `${kind} ${namespace}/${name}` : `${kind} ${name}`;
}
