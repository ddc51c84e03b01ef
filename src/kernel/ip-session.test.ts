import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { CommandError } from './exec.ts';
import { IpSession, startIpBatch, useIpSession } from './ip-session.ts';

// Read-only ip(8) commands: they need no privileges and change nothing.
const SHOW_ROUTES = 'route show table local';

describe('IpSession', () => {
  test('runs batches one after the other on one process, each with its own output', async () => {
    const s = new IpSession({ size: 1 });
    try {
      const a = await s.run(['rule show', SHOW_ROUTES]);
      const b = await s.run([SHOW_ROUTES]);
      assert.equal(a.stdout.trim().split('\n').length, 2, a.stdout);
      assert.equal(b.stdout.trim().split('\n').length, 1, b.stdout);
      assert.deepEqual(JSON.parse(b.stdout), JSON.parse(a.stdout.trim().split('\n')[1]!));
    } finally {
      await s.close();
    }
  });

  test('a failing line stops its batch with the error a process of its own would give, and the next batch runs', async () => {
    const s = new IpSession({ size: 1 });
    try {
      await s.run([SHOW_ROUTES, SHOW_ROUTES]);
      await assert.rejects(s.run([SHOW_ROUTES, 'link show dev pnvnosuchdevice', SHOW_ROUTES]), (err: unknown) => {
        assert.ok(err instanceof CommandError);
        assert.match(err.stderr, /Device "pnvnosuchdevice" does not exist/);
        // Line 2 of this batch, whatever ran on the process before.
        assert.match(err.stderr, /Command failed -:2\b/);
        return true;
      });
      const after = await s.run([SHOW_ROUTES]);
      assert.ok(JSON.parse(after.stdout));
    } finally {
      await s.close();
    }
  });

  test('concurrent batches all complete, on at most `size` processes', async () => {
    const s = new IpSession({ size: 2 });
    try {
      const outs = await Promise.all(Array.from({ length: 10 }, () => s.run([SHOW_ROUTES])));
      for (const o of outs) assert.equal(o.stdout.trim().split('\n').length, 1);
    } finally {
      await s.close();
    }
    await assert.rejects(s.run([SHOW_ROUTES]), /closed/);
  });

  test('refuses lines that would be mistaken for its end marker', async () => {
    const s = new IpSession();
    try {
      await assert.rejects(s.run(['link show dev lo']), /must not name lo/);
      await assert.rejects(s.run(['link show\nlink show']), /one line/);
    } finally {
      await s.close();
    }
  });

  test('startIpBatch runs on the installed session, and on a process of its own otherwise', async () => {
    const own = await startIpBatch().finish(`${SHOW_ROUTES}\n`);
    const s = new IpSession();
    const unuse = useIpSession(s);
    try {
      const shared = await startIpBatch().finish(`${SHOW_ROUTES}\n`);
      assert.deepEqual(JSON.parse(shared.stdout), JSON.parse(own.stdout));
      assert.deepEqual(await startIpBatch().finish(''), { stdout: '', stderr: '' });
    } finally {
      unuse();
      await s.close();
    }
  });
});
