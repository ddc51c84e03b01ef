import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type CniReply, FrameError, PROTOCOL_VERSION, Status, decodeBody, decodeEnvelope, encodeRequest, ownNetns, serve, startCniServer } from './server.ts';
import { PodnetError } from '../errors/index.ts';

const here = ownNetns();
const request = (over: Partial<Parameters<typeof encodeRequest>[0]> = {}) => ({
  netns: here,
  plugin: 'podnet-bridge',
  env: { CNI_COMMAND: 'VERSION', PATH: '/usr/bin' },
  stdin: Buffer.from('{"cniVersion":"1.0.0"}'),
  ...over,
});

/** The body of an encoded request (after the 12-byte envelope). */
const bodyOf = (buf: Buffer): Buffer => buf.subarray(12);

/** Parses a reply as the shim does. */
function parseReply(b: Buffer): CniReply {
  assert.equal(b.subarray(0, 4).toString(), 'PNCR');
  assert.equal(b.readUInt32LE(4), PROTOCOL_VERSION);
  const outLen = b.readUInt32LE(16);
  const stdout = b.subarray(20, 20 + outLen);
  const errLen = b.readUInt32LE(20 + outLen);
  const stderr = b.subarray(24 + outLen, 24 + outLen + errLen);
  assert.equal(b.length, 24 + outLen + errLen, 'nothing after the reply');
  return { status: b.readUInt32LE(8), exitCode: b.readUInt32LE(12), stdout, stderr };
}

/** One request over the socket; the raw reply (empty if the server just closed). */
function call(path: string, bytes: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const c = createConnection(path);
    c.on('data', (d) => chunks.push(d));
    c.on('close', () => resolve(Buffer.concat(chunks)));
    c.on('error', (err) => ((err as NodeJS.ErrnoException).code === 'ECONNRESET' ? undefined : reject(err)));
    c.write(bytes);
  });
}

describe('cni-server request frames', () => {
  test('a request decodes to what was encoded', () => {
    const bytes = encodeRequest(request({ env: { A: '1', B: 'x=y', EMPTY: '' } }));
    assert.deepEqual(decodeEnvelope(bytes.subarray(0, 12)), { version: 1, length: bytes.length - 12 });
    const got = decodeBody(bodyOf(bytes));
    assert.deepEqual(got.netns, here);
    assert.equal(got.plugin, 'podnet-bridge');
    assert.deepEqual({ ...got.env }, { A: '1', B: 'x=y', EMPTY: '' });
    assert.equal(got.stdin.toString(), '{"cniVersion":"1.0.0"}');
  });

  const body = bodyOf(encodeRequest(request()));
  const bad: Array<[string, Buffer]> = [
    ['a body cut short', body.subarray(0, body.length - 1)],
    ['a byte too many', Buffer.concat([body, Buffer.from([0])])],
    ['no namespace identity', body.subarray(0, 10)],
    ['a plugin name with a slash', bodyOf(encodeRequest(request({ plugin: '../bin/sh' })))],
    ['an empty plugin name', bodyOf(encodeRequest(request({ plugin: '' })))],
    ['an environment entry without "="', bodyOf(encodeRequest(request({ env: { '': 'novalue' } })))],
  ];
  for (const [name, b] of bad) {
    test(`${name} is a FrameError`, () => {
      assert.throws(() => decodeBody(b), FrameError);
    });
  }

  test('an envelope with the wrong magic or an oversized body is a FrameError', () => {
    const head = encodeRequest(request()).subarray(0, 12);
    assert.throws(() => decodeEnvelope(Buffer.concat([Buffer.from('XXXX'), head.subarray(4)])), FrameError);
    const big = Buffer.from(head);
    big.writeUInt32LE(0xffffffff, 8);
    assert.throws(() => decodeEnvelope(big), /over the limit/);
  });

  test('a lying environment count is a FrameError, not a huge allocation', () => {
    const b = Buffer.from(body);
    const countAt = 16 + 4 + 'podnet-bridge'.length;
    b.writeUInt32LE(65537, countAt);
    assert.throws(() => decodeBody(b), /over the limit/);
    b.writeUInt32LE(3, countAt);
    assert.throws(() => decodeBody(b), FrameError);
  });
});

describe('cni-server serve()', () => {
  test('runs the named plugin as its executable would (VERSION)', async () => {
    const r = await serve({ version: 1, ...request() }, here);
    assert.equal(r.status, Status.Ran);
    assert.equal(r.exitCode, 0);
    assert.deepEqual(JSON.parse(r.stdout.toString()).supportedVersions, ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0']);
    assert.equal(r.stderr.length, 0);
  });

  test('without CNI_COMMAND: the greeting on stderr and error 4 on stdout', async () => {
    const r = await serve({ version: 1, ...request({ plugin: 'podnet-ipam', env: {} }) }, here);
    assert.equal(r.exitCode, 1);
    assert.equal(JSON.parse(r.stdout.toString()).code, 4);
    assert.match(r.stderr.toString(), /^podnet-ipam: .*\nCNI protocol versions supported: /);
  });

  test('declines a call from another network namespace, and does nothing', async () => {
    const r = await serve({ version: 1, ...request({ netns: { dev: here.dev, ino: here.ino + 1n } }) }, here);
    assert.deepEqual(r, { status: Status.WrongNamespace, exitCode: 0, stdout: Buffer.alloc(0), stderr: Buffer.alloc(0) });
  });

  test('declines a protocol version it does not speak', async () => {
    const r = await serve({ version: 2, ...request() }, here);
    assert.equal(r.status, Status.UnsupportedVersion);
  });

  test('an unknown plugin name gets one CNI error object in the config version', async () => {
    const r = await serve({ version: 1, ...request({ plugin: 'bridge', env: { CNI_COMMAND: 'ADD' } }) }, here);
    assert.equal(r.status, Status.Ran);
    assert.equal(r.exitCode, 1);
    const e = JSON.parse(r.stdout.toString());
    assert.equal(e.cniVersion, '1.0.0');
    assert.equal(e.code, 999);
    assert.match(e.msg, /no plugin named "bridge"/);
  });
});

describe('cni-server on a socket', () => {
  let dir = '';
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'podnet-cni-server-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('serves calls, closes on a malformed request, and removes its socket when aborted', async () => {
    const path = join(dir, 'run', 'cni.sock');
    const ac = new AbortController();
    const logs: Array<Record<string, unknown>> = [];
    const server = await startCniServer({ socketPath: path, signal: ac.signal, log: (e) => logs.push(e) });
    try {
      assert.equal(statSync(join(dir, 'run')).mode & 0o777, 0o700);
      assert.equal(statSync(path).mode & 0o777, 0o600);
      const replies = await Promise.all([1, 2, 3].map(() => call(path, encodeRequest(request()))));
      for (const raw of replies) assert.equal(JSON.parse(parseReply(raw).stdout.toString()).cniVersion, '1.0.0');
      const garbage = await call(path, Buffer.from('GET / HTTP/1.0\r\n\r\n'));
      assert.equal(garbage.length, 0, 'no reply to garbage');
      assert.ok(logs.some((l) => l.level === 'warn' && /malformed/.test(String(l.msg))));
      const other = parseReply(await call(path, encodeRequest(request({ netns: { dev: 1n, ino: 2n } }))));
      assert.equal(other.status, Status.WrongNamespace);
    } finally {
      ac.abort();
      await server.closed;
    }
    assert.equal(existsSync(path), false);
  });

  test('replaces a stale socket, but not a live server or a file that is not a socket', async () => {
    const path = join(dir, 'stale.sock');
    // A stale socket: its process was killed, so nothing unlinked it.
    const killed = spawnSync(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(path)}, () => process.kill(process.pid, 'SIGKILL'))`]);
    assert.equal(killed.signal, 'SIGKILL');
    assert.ok(statSync(path).isSocket());
    const ac = new AbortController();
    const server = await startCniServer({ socketPath: path, signal: ac.signal });
    try {
      assert.equal(parseReply(await call(path, encodeRequest(request()))).exitCode, 0);
      // While it runs, a second server on the same path is refused.
      await assert.rejects(startCniServer({ socketPath: path, signal: new AbortController().signal }), (e: unknown) => e instanceof PodnetError && e.code === 'PODNET_SOCKET_IN_USE');
    } finally {
      ac.abort();
      await server.closed;
    }
    const notSocket = join(dir, 'file.sock');
    writeFileSync(notSocket, 'keep me');
    await assert.rejects(startCniServer({ socketPath: notSocket, signal: new AbortController().signal }), /not a socket/);
    assert.equal(existsSync(notSocket), true);
  });
});
