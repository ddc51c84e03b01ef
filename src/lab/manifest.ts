/**
 * Reading the ordinary Kubernetes YAML that `lab apply -f` takes: multi-document files of
 * Namespace, Pod, Deployment, Service and NetworkPolicy. Every document is checked before
 * anything is stored, so a bad file changes nothing; errors name the document (its index,
 * kind and name) and the field.
 */
import { parseAllDocuments } from 'yaml';
import { LabError } from './plan.ts';

export const KINDS = ['Namespace', 'Pod', 'Deployment', 'Service', 'NetworkPolicy'] as const;
export type ManifestKind = (typeof KINDS)[number];

const API_VERSIONS: Record<ManifestKind, string[]> = {
  Namespace: ['v1'],
  Pod: ['v1'],
  Service: ['v1'],
  Deployment: ['apps/v1'],
  NetworkPolicy: ['networking.k8s.io/v1'],
};

export interface Manifest {
  apiVersion: string;
  kind: ManifestKind;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string>; [k: string]: unknown };
  spec?: any;
  [k: string]: unknown;
}

/** DNS-1123 label (namespaces, services) and subdomain (pods, deployments) rules. */
const LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const SUBDOMAIN = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;

const isObj = (v: unknown): v is Record<string, any> => typeof v === 'object' && v !== null && !Array.isArray(v);

function fail(where: string, msg: string): never {
  throw new LabError('PODNET_BAD_MANIFEST', `${where}: ${msg}`);
}

function checkContainers(where: string, spec: any): void {
  if (!isObj(spec)) fail(where, 'spec is missing');
  if (!Array.isArray(spec.containers) || spec.containers.length === 0) fail(where, 'spec.containers must list at least one container');
  spec.containers.forEach((c: any, i: number) => {
    const w = `${where} spec.containers[${i}]`;
    if (!isObj(c) || typeof c.name !== 'string' || !LABEL.test(c.name)) fail(w, 'needs a name (lowercase letters, digits, -)');
    for (const k of ['command', 'args'] as const) {
      if (c[k] !== undefined && (!Array.isArray(c[k]) || c[k].some((a: unknown) => typeof a !== 'string' && typeof a !== 'number'))) {
        fail(w, `${k} must be a list of strings`);
      }
    }
    if (c.ports !== undefined && !Array.isArray(c.ports)) fail(w, 'ports must be a list');
    for (const p of c.ports ?? []) {
      if (!isObj(p) || !Number.isInteger(p.containerPort) || p.containerPort < 1 || p.containerPort > 65535) fail(w, 'each port needs a containerPort from 1 to 65535');
    }
  });
}

function checkSelector(where: string, sel: unknown): void {
  if (!isObj(sel)) fail(where, 'selector is missing');
  if (sel.matchLabels !== undefined && !isObj(sel.matchLabels)) fail(where, 'selector.matchLabels must be a map');
}

/** Checks one document; returns it with defaults applied (namespace "default" for namespaced kinds). */
export function validateManifest(doc: unknown, index: number): Manifest {
  const where0 = `document ${index + 1}`;
  if (!isObj(doc)) fail(where0, 'is not a mapping');
  const kind = doc.kind;
  if (typeof kind !== 'string') fail(where0, 'has no kind');
  if (!(KINDS as readonly string[]).includes(kind)) fail(where0, `kind "${kind}" is not supported here (use ${KINDS.join(', ')})`);
  const k = kind as ManifestKind;
  if (!API_VERSIONS[k].includes(String(doc.apiVersion))) fail(where0, `${k} needs apiVersion ${API_VERSIONS[k].join(' or ')}, not "${doc.apiVersion}"`);
  const md = doc.metadata;
  if (!isObj(md) || typeof md.name !== 'string') fail(where0, `${k} has no metadata.name`);
  const name = md.name as string;
  const where = `${where0} (${k} ${name})`;
  const nameRule = k === 'Pod' || k === 'Deployment' ? SUBDOMAIN : LABEL;
  if (name.length > 63 || !nameRule.test(name)) fail(where, 'metadata.name must be lowercase letters, digits and - (at most 63)');
  if (md.labels !== undefined && (!isObj(md.labels) || Object.values(md.labels).some((v) => typeof v !== 'string'))) fail(where, 'metadata.labels must map strings to strings');
  const out = { ...(doc as Record<string, unknown>) } as Manifest;
  out.metadata = { ...md, name };
  if (k !== 'Namespace') {
    const ns = md.namespace ?? 'default';
    if (typeof ns !== 'string' || !LABEL.test(ns)) fail(where, `metadata.namespace "${ns}" is not a valid namespace name`);
    out.metadata.namespace = ns;
  } else {
    delete out.metadata.namespace;
  }
  switch (k) {
    case 'Pod':
      checkContainers(where, doc.spec);
      break;
    case 'Deployment': {
      if (!isObj(doc.spec)) fail(where, 'spec is missing');
      const r = doc.spec.replicas ?? 1;
      if (!Number.isInteger(r) || r < 0 || r > 1000) fail(where, 'spec.replicas must be a whole number from 0 to 1000');
      checkSelector(where, doc.spec.selector);
      if (!isObj(doc.spec.template)) fail(where, 'spec.template is missing');
      checkContainers(`${where} template`, doc.spec.template.spec);
      const labels = doc.spec.template.metadata?.labels ?? {};
      for (const [lk, lv] of Object.entries(doc.spec.selector.matchLabels ?? {})) {
        if (labels[lk] !== lv) fail(where, `spec.selector.matchLabels ${lk}=${lv} does not match the template's labels`);
      }
      break;
    }
    case 'Service':
      if (!isObj(doc.spec)) fail(where, 'spec is missing');
      if (doc.spec.type !== 'ExternalName' && doc.spec.clusterIP !== 'None' && (!Array.isArray(doc.spec.ports) || doc.spec.ports.length === 0)) {
        fail(where, 'spec.ports must list at least one port');
      }
      break;
    case 'NetworkPolicy':
      if (!isObj(doc.spec) || !isObj(doc.spec.podSelector)) fail(where, 'spec.podSelector is required (use {} for every pod)');
      break;
    case 'Namespace':
      break;
  }
  return out;
}

/** Parses multi-document YAML into checked manifests; empty documents are skipped. */
export function parseManifests(text: string): Manifest[] {
  const docs = parseAllDocuments(text);
  const out: Manifest[] = [];
  let i = 0;
  for (const d of Array.isArray(docs) ? docs : [docs]) {
    if (d.errors.length > 0) {
      throw new LabError('PODNET_BAD_YAML', `document ${i + 1}: ${d.errors[0]!.message.split('\n')[0]!.replace(/:$/, '')}`);
    }
    const value = d.toJS();
    if (value === null || value === undefined) continue;
    if (isObj(value) && value.kind === 'List' && Array.isArray(value.items)) {
      for (const item of value.items) out.push(validateManifest(item, i++));
      continue;
    }
    out.push(validateManifest(value, i++));
  }
  return out;
}
