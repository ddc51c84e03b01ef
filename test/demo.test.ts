// `npm start` runs `podnet demo`: it must show three pods talking and leave nothing behind.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, isRoot } from './support/netns.ts';

test('podnet demo connects three pods, exchanges TCP and cleans up', { skip: isRoot() ? false : 'needs root' }, () => {
  const out = execFileSync(process.execPath, [join(ROOT, 'dist', 'podnet.mjs'), 'demo'], { encoding: 'utf8', timeout: 60_000 });
  assert.equal((out.match(/ADD pod\d: eth0 10\.244\.1\.\d+\/24/g) ?? []).length, 3, out);
  assert.match(out, /TCP pod1 -> 10\.244\.1\.\d+:8080: "pod3 got: hello from pod1/);
  assert.match(out, /TCP pod2 -> 10\.244\.1\.\d+:8080: "pod3 got: hello from pod2/);
  assert.match(out, /cleaned up/);
  const left = readdirSync('/var/run/netns').filter((n) => n.startsWith('podnet-demo-'));
  assert.deepEqual(left, []);
});
