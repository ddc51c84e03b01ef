import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { compileSelector, parseSelector, selectorRequirements } from './labels.ts';
import type { LabelSelector } from './types.ts';

describe('parseSelector', () => {
  const cases: Array<{ text: string; want: ReturnType<typeof parseSelector> }> = [
    { text: '', want: [] },
    { text: '  ', want: [] },
    { text: 'app=web', want: [{ key: 'app', operator: 'In', values: ['web'] }] },
    { text: 'app==web', want: [{ key: 'app', operator: 'In', values: ['web'] }] },
    { text: 'app!=web', want: [{ key: 'app', operator: 'NotIn', values: ['web'] }] },
    { text: 'app=', want: [{ key: 'app', operator: 'In', values: [''] }] },
    { text: 'release', want: [{ key: 'release', operator: 'Exists', values: [] }] },
    { text: '!legacy', want: [{ key: 'legacy', operator: 'DoesNotExist', values: [] }] },
    { text: 'env in (a, b)', want: [{ key: 'env', operator: 'In', values: ['a', 'b'] }] },
    { text: 'env notin (c)', want: [{ key: 'env', operator: 'NotIn', values: ['c'] }] },
    {
      text: 'app.kubernetes.io/name=web, tier != db,env in (a,b),!legacy,x',
      want: [
        { key: 'app.kubernetes.io/name', operator: 'In', values: ['web'] },
        { key: 'tier', operator: 'NotIn', values: ['db'] },
        { key: 'env', operator: 'In', values: ['a', 'b'] },
        { key: 'legacy', operator: 'DoesNotExist', values: [] },
        { key: 'x', operator: 'Exists', values: [] },
      ],
    },
  ];
  for (const c of cases) {
    test(`parses ${JSON.stringify(c.text)}`, () => assert.deepEqual(parseSelector(c.text), c.want));
  }

  for (const bad of ['=web', 'app=web,', 'env in a', 'env in (a', 'app ~ web', 'app=web x']) {
    test(`rejects ${JSON.stringify(bad)} with PODNET_DATASTORE_INVALID`, () => {
      assert.throws(() => parseSelector(bad), { code: 'PODNET_DATASTORE_INVALID' });
    });
  }
});

describe('compileSelector', () => {
  const web = { app: 'web', tier: 'front' };
  const db = { app: 'db', tier: 'back', legacy: 'yes' };
  const cases: Array<{ sel: string | LabelSelector | undefined; labels: Record<string, string> | undefined; want: boolean }> = [
    { sel: undefined, labels: web, want: true },
    { sel: '', labels: undefined, want: true },
    { sel: {}, labels: web, want: true },
    { sel: 'app=web', labels: web, want: true },
    { sel: 'app=web', labels: db, want: false },
    { sel: 'app=web', labels: undefined, want: false },
    { sel: 'app!=web', labels: db, want: true },
    { sel: 'app!=web', labels: {}, want: true },
    { sel: 'app in (web,db),!legacy', labels: web, want: true },
    { sel: 'app in (web,db),!legacy', labels: db, want: false },
    { sel: 'tier notin (back)', labels: undefined, want: true },
    { sel: 'legacy', labels: db, want: true },
    { sel: { matchLabels: { app: 'web' } }, labels: web, want: true },
    { sel: { matchLabels: { app: 'web' }, matchExpressions: [{ key: 'tier', operator: 'In', values: ['back'] }] }, labels: web, want: false },
    { sel: { matchExpressions: [{ key: 'legacy', operator: 'DoesNotExist' }] }, labels: web, want: true },
    { sel: { matchExpressions: [{ key: 'legacy', operator: 'Exists' }] }, labels: db, want: true },
    { sel: { matchExpressions: [{ key: 'app', operator: 'NotIn', values: ['db'] }] }, labels: db, want: false },
  ];
  for (const c of cases) {
    test(`${JSON.stringify(c.sel)} on ${JSON.stringify(c.labels)} is ${c.want}`, () => {
      assert.equal(compileSelector(c.sel)(c.labels), c.want);
    });
  }

  test('an In expression without values is refused', () => {
    assert.throws(() => selectorRequirements({ matchExpressions: [{ key: 'a', operator: 'In', values: [] }] }), { code: 'PODNET_DATASTORE_INVALID' });
  });
});
