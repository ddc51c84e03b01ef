/**
 * What the datastore knows about each kind, the key layout, and the object rules shared by
 * every backend (validation, what create sets, what update keeps).
 *
 * Key layout (etcd, and the memory backend mirrors it):
 *
 *     <prefix>/<plural>/<namespace>/<name>     namespaced kinds   /registry/pods/default/web-1
 *     <prefix>/<plural>/<name>                 cluster-scoped     /registry/nodes/node1
 *
 * with prefix `/registry` (kube-apiserver's default) and plurals nodes, pods, namespaces,
 * services, endpointslices, networkpolicies. The value is the object as JSON, without
 * `metadata.resourceVersion`: that is the key's etcd mod revision, filled in on every read,
 * so it can never disagree with the store (kube-apiserver does the same).
 *
 * Listing a kind is a prefix range (`/registry/pods/`), one namespace a longer prefix
 * (`/registry/pods/default/`); the trailing slash keeps `default` from matching `default2`.
 * Names and namespaces may not contain '/', so a key always splits back into its parts.
 */
import { randomUUID } from 'node:crypto';
import { DatastoreCode, DatastoreError } from './errors.ts';
import type { AnyObject, Kind, KubeObject, ObjectRef } from './types.ts';

export interface KindInfo {
  readonly kind: Kind;
  readonly apiVersion: string;
  readonly plural: string;
  readonly namespaced: boolean;
  /** Has a status subresource: `update` keeps status, `updateStatus` writes only status. */
  readonly hasStatus: boolean;
}

export const KINDS: Readonly<Record<Kind, KindInfo>> = {
  Node: { kind: 'Node', apiVersion: 'v1', plural: 'nodes', namespaced: false, hasStatus: true },
  Pod: { kind: 'Pod', apiVersion: 'v1', plural: 'pods', namespaced: true, hasStatus: true },
  Namespace: { kind: 'Namespace', apiVersion: 'v1', plural: 'namespaces', namespaced: false, hasStatus: true },
  Service: { kind: 'Service', apiVersion: 'v1', plural: 'services', namespaced: true, hasStatus: true },
  EndpointSlice: { kind: 'EndpointSlice', apiVersion: 'discovery.k8s.io/v1', plural: 'endpointslices', namespaced: true, hasStatus: false },
  NetworkPolicy: { kind: 'NetworkPolicy', apiVersion: 'networking.k8s.io/v1', plural: 'networkpolicies', namespaced: true, hasStatus: false },
  Deployment: { kind: 'Deployment', apiVersion: 'apps/v1', plural: 'deployments', namespaced: true, hasStatus: true },
};

export const DEFAULT_PREFIX = '/registry';

export function kindInfo(kind: string): KindInfo {
  const info = (KINDS as Record<string, KindInfo | undefined>)[kind];
  if (!info) {
    throw new DatastoreError(DatastoreCode.Invalid, `podnet does not store kind "${kind}"; it stores ${Object.keys(KINDS).join(', ')}`);
  }
  return info;
}

// A DNS-1123 subdomain (what Kubernetes requires of most names), which has no '/'.
const NAME_RE = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

export function validName(name: string): boolean {
  return typeof name === 'string' && NAME_RE.test(name);
}

function checkName(what: string, kind: string, value: unknown): asserts value is string {
  if (typeof value !== 'string' || !validName(value)) {
    throw new DatastoreError(
      DatastoreCode.Invalid,
      `${kind}: ${what} ${JSON.stringify(value)} is not valid: use lower-case letters, digits, '-' and '.', starting and ending with a letter or digit (at most 253 characters)`,
    );
  }
}

/** The namespace a ref means for this kind: '' for cluster-scoped kinds. */
export function namespaceOf(info: KindInfo, namespace: string | undefined): string {
  if (!info.namespaced) return '';
  const ns = namespace || 'default';
  checkName('namespace', info.kind, ns);
  return ns;
}

export function objectKey(prefix: string, info: KindInfo, ref: ObjectRef): string {
  checkName('name', info.kind, ref.name);
  const ns = namespaceOf(info, ref.namespace);
  return info.namespaced ? `${prefix}/${info.plural}/${ns}/${ref.name}` : `${prefix}/${info.plural}/${ref.name}`;
}

/** The key prefix of a kind, or of one namespace of it. Ends in '/'. */
export function rangePrefix(prefix: string, info: KindInfo, namespace?: string): string {
  if (info.namespaced && namespace) {
    checkName('namespace', info.kind, namespace);
    return `${prefix}/${info.plural}/${namespace}/`;
  }
  return `${prefix}/${info.plural}/`;
}

/** "default/web-1" or "node1": the informer's cache key (client-go's MetaNamespaceKeyFunc). */
export function cacheKey(obj: { metadata: { namespace?: string; name: string } }): string {
  return obj.metadata.namespace ? `${obj.metadata.namespace}/${obj.metadata.name}` : obj.metadata.name;
}

function clone<T>(v: T): T {
  return structuredClone(v);
}

const GENERATE_ALPHABET = 'bcdfghjklmnpqrstvwxz2456789';

function randomSuffix(n = 5): string {
  let s = '';
  for (let i = 0; i < n; i++) s += GENERATE_ALPHABET[Math.floor(Math.random() * GENERATE_ALPHABET.length)];
  return s;
}

/** Checks an object's kind, apiVersion, name and namespace; returns its KindInfo. */
export function checkObject(obj: unknown): KindInfo {
  if (typeof obj !== 'object' || obj === null) throw new DatastoreError(DatastoreCode.Invalid, 'not an object');
  const o = obj as Partial<KubeObject>;
  const info = kindInfo(String(o.kind));
  if (o.apiVersion !== undefined && o.apiVersion !== info.apiVersion) {
    throw new DatastoreError(DatastoreCode.Invalid, `${info.kind} has apiVersion ${info.apiVersion}, not ${String(o.apiVersion)}`);
  }
  if (typeof o.metadata !== 'object' || o.metadata === null) {
    throw new DatastoreError(DatastoreCode.Invalid, `${info.kind} has no metadata`);
  }
  return info;
}

/**
 * The object as create stores it: apiVersion filled in, a name made from generateName if
 * needed, the namespace defaulted (namespaced kinds) or dropped (cluster-scoped), uid and
 * creationTimestamp set, resourceVersion removed.
 */
export function prepareCreate<T extends AnyObject>(input: T, now: Date = new Date()): { info: KindInfo; obj: T } {
  const info = checkObject(input);
  const obj = clone(input);
  obj.apiVersion = info.apiVersion;
  const meta = obj.metadata;
  if (!meta.name && meta.generateName) {
    checkName('generateName', info.kind, `${meta.generateName}x`);
    meta.name = `${meta.generateName}${randomSuffix()}`;
  }
  checkName('name', info.kind, meta.name);
  if (info.namespaced) meta.namespace = namespaceOf(info, meta.namespace);
  else delete meta.namespace;
  meta.uid = randomUUID();
  meta.creationTimestamp = now.toISOString().replace(/\.\d{3}Z$/, 'Z');
  delete meta.resourceVersion;
  return { info, obj };
}

/**
 * The object an update stores, given what is stored now: identity fields (uid,
 * creationTimestamp, namespace, name) always come from the stored object; for kinds with a
 * status subresource, `update` keeps the stored status and `updateStatus` keeps everything
 * but the status.
 */
export function prepareUpdate<T extends AnyObject>(info: KindInfo, input: T, stored: T, statusOnly: boolean): T {
  let obj: T;
  if (statusOnly && info.hasStatus) {
    obj = clone(stored);
    const status = (input as KubeObject).status;
    if (status === undefined) delete (obj as KubeObject).status;
    else (obj as KubeObject).status = clone(status);
  } else {
    obj = clone(input);
    if (info.hasStatus) {
      const status = (stored as KubeObject).status;
      if (status === undefined) delete (obj as KubeObject).status;
      else (obj as KubeObject).status = clone(status);
    }
  }
  obj.apiVersion = info.apiVersion;
  const meta = obj.metadata;
  meta.name = stored.metadata.name;
  if (info.namespaced) meta.namespace = stored.metadata.namespace;
  else delete meta.namespace;
  if (stored.metadata.uid !== undefined) meta.uid = stored.metadata.uid;
  if (stored.metadata.creationTimestamp !== undefined) meta.creationTimestamp = stored.metadata.creationTimestamp;
  delete meta.resourceVersion;
  return obj;
}

/** The JSON that is stored (resourceVersion never is). */
export function encodeObject(obj: AnyObject): string {
  if (obj.metadata.resourceVersion === undefined) return JSON.stringify(obj);
  const copy = { ...obj, metadata: { ...obj.metadata } };
  delete copy.metadata.resourceVersion;
  return JSON.stringify(copy);
}

/** Parses a stored value and stamps its resourceVersion. Returns undefined for junk. */
export function decodeObject(value: string, revision: number): AnyObject | undefined {
  let obj: unknown;
  try {
    obj = JSON.parse(value);
  } catch {
    return undefined;
  }
  if (typeof obj !== 'object' || obj === null) return undefined;
  const o = obj as AnyObject;
  if (typeof o.metadata !== 'object' || o.metadata === null) return undefined;
  o.metadata.resourceVersion = String(revision);
  return o;
}

/** Parses a revision given by a caller (a resourceVersion or list revision). */
export function parseRevision(text: string | undefined, what: string): number | undefined {
  if (text === undefined || text === '') return undefined;
  if (!/^(0|[1-9][0-9]{0,15})$/.test(text)) {
    throw new DatastoreError(DatastoreCode.Invalid, `${what} "${text}" is not a revision (a decimal number)`);
  }
  return Number(text);
}
