import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { diffSnapshots } from './diff.ts';

interface Obj {
  rv: string;
}

const snap = (entries: Record<string, string>): Map<string, Obj> => new Map(Object.entries(entries).map(([k, rv]) => [k, { rv }]));
const brief = (changes: ReturnType<typeof diffSnapshots<Obj>>): string[] => changes.map((c) => `${c.type} ${c.key}@${c.object.rv}${c.old ? ` (was ${c.old.rv})` : ''}`);

describe('diffSnapshots', () => {
  const cases: Array<{ name: string; before: Record<string, string>; after: Record<string, string>; want: string[] }> = [
    { name: 'two empty snapshots give no events', before: {}, after: {}, want: [] },
    { name: 'identical snapshots give no events', before: { a: '1', b: '2' }, after: { a: '1', b: '2' }, want: [] },
    { name: 'everything new is ADDED, in key order', before: {}, after: { b: '3', a: '2' }, want: ['ADDED a@2', 'ADDED b@3'] },
    { name: 'everything gone is DELETED with its last state', before: { a: '1', b: '2' }, after: {}, want: ['DELETED a@1 (was 1)', 'DELETED b@2 (was 2)'] },
    { name: 'a new version is MODIFIED with the old one', before: { a: '1' }, after: { a: '5' }, want: ['MODIFIED a@5 (was 1)'] },
    {
      name: 'deletions come before additions and modifications',
      before: { a: '1', c: '1', z: '1' },
      after: { b: '9', c: '7', z: '1' },
      want: ['DELETED a@1 (was 1)', 'ADDED b@9', 'MODIFIED c@7 (was 1)'],
    },
    {
      name: 'a key deleted and created again (new version) is one MODIFIED',
      before: { '/registry/pods/default/web': '4' },
      after: { '/registry/pods/default/web': '12' },
      want: ['MODIFIED /registry/pods/default/web@12 (was 4)'],
    },
  ];
  for (const c of cases) {
    test(c.name, () => {
      assert.deepEqual(brief(diffSnapshots(snap(c.before), snap(c.after), (o) => o.rv)), c.want);
    });
  }

  test('applying the events to the old snapshot gives the new one', () => {
    const before = snap({ a: '1', b: '2', c: '3', d: '4' });
    const after = snap({ b: '2', c: '9', e: '10', f: '11' });
    const state = new Map(before);
    for (const ch of diffSnapshots(before, after, (o) => o.rv)) {
      if (ch.type === 'DELETED') state.delete(ch.key);
      else state.set(ch.key, ch.object);
    }
    assert.deepEqual(state, after);
  });

  test('the inputs are not changed', () => {
    const before = snap({ a: '1' });
    const after = snap({ b: '2' });
    diffSnapshots(before, after, (o) => o.rv);
    assert.deepEqual([...before.keys()], ['a']);
    assert.deepEqual([...after.keys()], ['b']);
  });
});
