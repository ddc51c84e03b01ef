import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { missingExecutable } from './runtime.ts';

test('missingExecutable: paths must be executable files, bare names are looked up in PATH', () => {
  assert.equal(missingExecutable('/bin/sh', ''), undefined);
  assert.equal(missingExecutable('sh', '/nonexistent-dir:/bin'), undefined);
  assert.match(missingExecutable('/nonexistent', '/bin') ?? '', /"\/nonexistent": no such file or directory/);
  const dir = mkdtempSync(join(tmpdir(), 'podnet-exec-'));
  try {
    writeFileSync(join(dir, 'data'), 'x', { mode: 0o644 });
    assert.match(missingExecutable(join(dir, 'data'), '/bin') ?? '', /not an executable file/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  assert.match(missingExecutable('/bin', '/bin') ?? '', /not an executable file/);
  assert.match(missingExecutable('no-such-command-here', '/bin:/usr/bin') ?? '', /executable file not found in \$PATH \(\/bin:\/usr\/bin\)/);
  assert.match(missingExecutable('', '/bin') ?? '', /no command/);
});
