/**
 * Label selectors, in both Kubernetes forms: the text of `kubectl -l` / `labelSelector=`
 * (`app=web,tier!=db,env in (a,b),env notin (c),release,!legacy`) and the
 * metav1.LabelSelector object of NetworkPolicies and Deployments (matchLabels +
 * matchExpressions). Both compile to the same requirement list and one matcher.
 *
 * Semantics are Kubernetes': all requirements must hold; `!=` and `notin` also match
 * objects without the label; an empty selector matches everything.
 */
import { DatastoreCode, DatastoreError } from './errors.ts';
import type { LabelSelector, LabelSelectorRequirement, Selector } from './types.ts';

export type Labels = Readonly<Record<string, string>> | undefined;

export interface Requirement {
  key: string;
  operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist';
  values: string[];
}

const KEY_CHAR = /[A-Za-z0-9_./-]/;
const VALUE_CHAR = /[A-Za-z0-9_.-]/;

function invalid(text: string, why: string): DatastoreError {
  return new DatastoreError(DatastoreCode.Invalid, `bad label selector "${text}": ${why}`);
}

/** Parses the text form. Throws PODNET_DATASTORE_INVALID. */
export function parseSelector(text: string): Requirement[] {
  const reqs: Requirement[] = [];
  let i = 0;
  const n = text.length;
  const ws = (): void => {
    while (i < n && /\s/.test(text[i] ?? '')) i++;
  };
  const read = (re: RegExp): string => {
    const start = i;
    while (i < n && re.test(text[i] ?? '')) i++;
    return text.slice(start, i);
  };
  ws();
  if (i === n) return reqs;
  for (;;) {
    ws();
    let negated = false;
    if (text[i] === '!') {
      negated = true;
      i++;
      ws();
    }
    const key = read(KEY_CHAR);
    if (!key) throw invalid(text, `expected a label key at position ${i}`);
    ws();
    if (negated) {
      reqs.push({ key, operator: 'DoesNotExist', values: [] });
    } else if (i === n || text[i] === ',') {
      reqs.push({ key, operator: 'Exists', values: [] });
    } else if (text.startsWith('!=', i) || text.startsWith('==', i) || text[i] === '=') {
      const op = text.startsWith('!=', i) ? 'NotIn' : 'In';
      i += text.startsWith('=', i) && !text.startsWith('==', i) ? 1 : 2;
      ws();
      const value = read(VALUE_CHAR);
      reqs.push({ key, operator: op, values: [value] });
    } else {
      const word = read(/[a-z]/);
      if (word !== 'in' && word !== 'notin') throw invalid(text, `unknown operator after "${key}"`);
      ws();
      if (text[i] !== '(') throw invalid(text, `expected "(" after "${key} ${word}"`);
      i++;
      const values: string[] = [];
      for (;;) {
        ws();
        values.push(read(VALUE_CHAR));
        ws();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === ')') {
          i++;
          break;
        }
        throw invalid(text, `expected "," or ")" in the value set of "${key}"`);
      }
      reqs.push({ key, operator: word === 'in' ? 'In' : 'NotIn', values });
    }
    ws();
    if (i === n) return reqs;
    if (text[i] !== ',') throw invalid(text, `unexpected "${text[i]}" at position ${i}`);
    i++;
  }
}

/** The requirements of a metav1.LabelSelector. */
export function selectorRequirements(sel: LabelSelector): Requirement[] {
  const reqs: Requirement[] = [];
  for (const [key, value] of Object.entries(sel.matchLabels ?? {})) reqs.push({ key, operator: 'In', values: [value] });
  for (const e of sel.matchExpressions ?? []) reqs.push(requirementOf(e));
  return reqs;
}

function requirementOf(e: LabelSelectorRequirement): Requirement {
  const values = e.values ?? [];
  switch (e.operator) {
    case 'In':
    case 'NotIn':
      if (values.length === 0) throw new DatastoreError(DatastoreCode.Invalid, `label selector: "${e.key} ${e.operator}" needs at least one value`);
      return { key: e.key, operator: e.operator, values: [...values] };
    case 'Exists':
    case 'DoesNotExist':
      return { key: e.key, operator: e.operator, values: [] };
    default:
      throw new DatastoreError(DatastoreCode.Invalid, `label selector: unknown operator "${String((e as { operator: unknown }).operator)}"`);
  }
}

function holds(r: Requirement, labels: Labels): boolean {
  const has = labels !== undefined && Object.hasOwn(labels, r.key);
  const value = has ? labels[r.key] : undefined;
  switch (r.operator) {
    case 'Exists':
      return has;
    case 'DoesNotExist':
      return !has;
    case 'In':
      return has && r.values.includes(value as string);
    case 'NotIn':
      return !has || !r.values.includes(value as string);
  }
}

/** Compiles a selector (either form; undefined matches everything) into a predicate. */
export function compileSelector(sel: Selector | undefined): (labels: Labels) => boolean {
  if (sel === undefined) return () => true;
  const reqs = typeof sel === 'string' ? parseSelector(sel) : selectorRequirements(sel);
  if (reqs.length === 0) return () => true;
  return (labels) => reqs.every((r) => holds(r, labels));
}

/** One-off match. */
export function matchesSelector(sel: Selector | undefined, labels: Labels): boolean {
  return compileSelector(sel)(labels);
}
