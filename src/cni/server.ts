/**
 * The warm side of podnet's "thick plugin": `podnet cni-server` listens on a unix socket and
 * runs CNI calls that the native shim (native/cni-shim.c, installed as podnet-bridge and
 * podnet-ipam) forwards to it, so a call costs no Node.js start-up (~30 ms).
 *
 * Design notes:
 * - The server runs the same code as the standalone executables: `dispatch()` from skel.ts
 *   with the plugin named by the shim, the shim's whole environment and its stdin; the reply
 *   is what the executable would have printed and its exit code. The plugins keep no state
 *   between calls, and what they take from the process itself is the same in both places:
 *   its network namespace, which is the caller's (next note), and relative paths, which the
 *   configuration may not contain (dataDir, subnetFile and resolvConf must be absolute). Two
 *   things do differ: `ip`, `nft` and `nsenter` are looked up in the server's PATH rather than
 *   the runtime's, and files are created under the server's umask.
 * - A call is only served in the namespace it was made in: the shim sends the identity
 *   (st_dev, st_ino) of its /proc/self/ns/net, and on a mismatch the server answers "wrong
 *   namespace" and does nothing, and the shim runs the standalone build instead.
 * - The socket's directory is made 0700 when missing and the socket is 0600: whoever can
 *   connect can make the server act as root, as whoever can run the plugin could. The socket
 *   is bound under a temporary name, chmod-ed, then renamed into place, so it is never
 *   reachable with looser permissions and a stale socket is replaced atomically; a socket
 *   that answers belongs to a live server and is left alone.
 * - Every request is validated strictly before anything runs; a malformed one closes the
 *   connection. An idle or slow client is dropped after 120 s.
 * - Being warm is also what lets the node-side ip(8) batches of the plugins run on a few
 *   long-running ip processes (kernel/ip-session.ts) instead of one started per call: the
 *   server installs that session while it runs. The batches behave the same either way.
 *
 * Wire format, version 1 (the same text is in native/cni-shim.c: keep the two in step).
 * Integers are little-endian; "str" is a u32 length followed by that many bytes.
 *
 *   request:  "PNCQ"  u32 version (1)  u32 body length (at most 64 MiB), then the body:
 *             u64 st_dev, u64 st_ino   of stat("/proc/self/ns/net") in the shim
 *             str  plugin name          basename(argv[0]), 1..255 bytes
 *             u32  environment count    at most 65536, then that many:
 *             str  "KEY=VALUE"           each entry of environ (entries without '=' skipped)
 *             str  stdin                the configuration bytes, at most 16 MiB
 *             The body must end exactly there; anything else makes the server close.
 *   reply:    "PNCR"  u32 version (1)  u32 status  u32 exit code  str stdout  str stderr
 *             status 0: the call ran: print stdout and stderr, exit with the exit code
 *             status 1: wrong network namespace: fall back to the SEA
 *             status 2: request version not spoken by this server: fall back to the SEA
 *             (for statuses 1 and 2 the exit code is 0 and both strings are empty)
 */
import { chmodSync, lstatSync, mkdirSync, renameSync, statSync, unlinkSync } from 'node:fs';
import { type Server, type Socket, createConnection, createServer } from 'node:net';
import { randomBytes } from 'node:crypto';
import { dirname, join } from 'node:path';
import { CniCode, CniError } from './errors.ts';
import { type CniPlugin, dispatch, greeting } from './skel.ts';
import { LATEST, isSupported } from './version.ts';
import type { NetConf } from './types.ts';
import { bridgePlugin } from './bridge.ts';
import { ipamPlugin } from '../ipam/plugin.ts';
import { PodnetError, describe } from '../errors/index.ts';
import { IpSession, useIpSession } from '../kernel/index.ts';

export const DEFAULT_CNI_SOCKET = '/run/podnet/cni.sock';

export const PROTOCOL_VERSION = 1;
const REQUEST_MAGIC = Buffer.from('PNCQ');
const REPLY_MAGIC = Buffer.from('PNCR');
const MAX_BODY = 64 << 20;
const MAX_NAME = 255;
const MAX_ENV_ENTRIES = 65536;
const MAX_STDIN = 16 << 20;
const IO_TIMEOUT_MS = 120_000;

export const Status = { Ran: 0, WrongNamespace: 1, UnsupportedVersion: 2 } as const;

/** The plugins the server runs, by the name the shim is installed under. */
const PLUGINS: ReadonlyMap<string, CniPlugin<NetConf>> = new Map<string, CniPlugin<NetConf>>([
  ['podnet-bridge', bridgePlugin],
  ['podnet-ipam', ipamPlugin],
]);

export interface NetnsId {
  dev: bigint;
  ino: bigint;
}

export interface CniRequest {
  version: number;
  netns: NetnsId;
  plugin: string;
  env: Record<string, string>;
  stdin: Buffer;
}

export interface CniReply {
  status: number;
  exitCode: number;
  stdout: Buffer;
  stderr: Buffer;
}

export class FrameError extends PodnetError {
  override readonly name = 'FrameError';
  constructor(message: string) {
    super('PODNET_BAD_FRAME', message);
  }
}

/** Reads the fixed envelope: magic, version, body length. Throws FrameError. */
export function decodeEnvelope(head: Buffer): { version: number; length: number } {
  if (head.length !== 12 || !head.subarray(0, 4).equals(REQUEST_MAGIC)) throw new FrameError('not a podnet CNI request');
  const version = head.readUInt32LE(4);
  const length = head.readUInt32LE(8);
  if (length > MAX_BODY) throw new FrameError(`request body of ${length} bytes is over the limit of ${MAX_BODY}`);
  return { version, length };
}

/** Decodes a version 1 body, strictly: every length checked, nothing left over. Throws FrameError. */
export function decodeBody(body: Buffer): Omit<CniRequest, 'version'> {
  let at = 0;
  const need = (n: number, what: string): void => {
    if (body.length - at < n) throw new FrameError(`request cut short in ${what}`);
  };
  const u32 = (what: string): number => {
    need(4, what);
    const v = body.readUInt32LE(at);
    at += 4;
    return v;
  };
  const str = (what: string, max: number): Buffer => {
    const n = u32(what);
    if (n > max) throw new FrameError(`${what} of ${n} bytes is over the limit of ${max}`);
    need(n, what);
    const b = body.subarray(at, at + n);
    at += n;
    return b;
  };
  need(16, 'namespace identity');
  const netns = { dev: body.readBigUInt64LE(0), ino: body.readBigUInt64LE(8) };
  at = 16;
  const plugin = str('plugin name', MAX_NAME).toString('utf8');
  if (!/^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/.test(plugin)) throw new FrameError(`plugin name ${JSON.stringify(plugin)} is not a plugin name`);
  const count = u32('environment count');
  if (count > MAX_ENV_ENTRIES) throw new FrameError(`${count} environment entries is over the limit of ${MAX_ENV_ENTRIES}`);
  // No prototype: a variable called __proto__ is just a variable.
  const env = Object.create(null) as Record<string, string>;
  for (let i = 0; i < count; i++) {
    const entry = str('environment entry', MAX_BODY);
    const eq = entry.indexOf(0x3d); // '='
    if (eq <= 0 || entry.includes(0)) throw new FrameError('an environment entry is not KEY=VALUE');
    const key = entry.subarray(0, eq).toString('utf8');
    // The first of duplicate entries wins, as getenv(3) and Node's process.env see it.
    if (!(key in env)) env[key] = entry.subarray(eq + 1).toString('utf8');
  }
  const stdin = Buffer.from(str('stdin', MAX_STDIN));
  if (at !== body.length) throw new FrameError(`${body.length - at} bytes after the end of the request`);
  return { netns, plugin, env, stdin };
}

/** Encodes a request (the shim's side; used by tests and benchmarks). */
export function encodeRequest(req: Omit<CniRequest, 'version'> & { version?: number }): Buffer {
  const parts: Buffer[] = [];
  const u32 = (v: number): void => {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v);
    parts.push(b);
  };
  const str = (b: Buffer): void => {
    u32(b.length);
    parts.push(b);
  };
  const id = Buffer.alloc(16);
  id.writeBigUInt64LE(req.netns.dev, 0);
  id.writeBigUInt64LE(req.netns.ino, 8);
  parts.push(id);
  str(Buffer.from(req.plugin));
  const entries = Object.entries(req.env);
  u32(entries.length);
  for (const [k, v] of entries) str(Buffer.from(`${k}=${v}`));
  str(req.stdin);
  const body = Buffer.concat(parts);
  const head = Buffer.alloc(12);
  REQUEST_MAGIC.copy(head, 0);
  head.writeUInt32LE(req.version ?? PROTOCOL_VERSION, 4);
  head.writeUInt32LE(body.length, 8);
  return Buffer.concat([head, body]);
}

export function encodeReply(r: CniReply): Buffer {
  const head = Buffer.alloc(20);
  REPLY_MAGIC.copy(head, 0);
  head.writeUInt32LE(PROTOCOL_VERSION, 4);
  head.writeUInt32LE(r.status, 8);
  head.writeUInt32LE(r.exitCode, 12);
  head.writeUInt32LE(r.stdout.length, 16);
  const errLen = Buffer.alloc(4);
  errLen.writeUInt32LE(r.stderr.length);
  return Buffer.concat([head, r.stdout, errLen, r.stderr]);
}

const declined = (status: number): CniReply => ({ status, exitCode: 0, stdout: Buffer.alloc(0), stderr: Buffer.alloc(0) });

/** The identity of this process's network namespace. */
export function ownNetns(): NetnsId {
  const st = statSync('/proc/self/ns/net', { bigint: true });
  return { dev: st.dev, ino: st.ino };
}

/**
 * Runs one decoded request: the namespace check, then exactly what the standalone executable
 * of that name does (skel.ts main(): the greeting on stderr when run by hand, then dispatch).
 */
export async function serve(req: CniRequest, here: NetnsId): Promise<CniReply> {
  if (req.version !== PROTOCOL_VERSION) return declined(Status.UnsupportedVersion);
  if (req.netns.dev !== here.dev || req.netns.ino !== here.ino) return declined(Status.WrongNamespace);
  const plugin = PLUGINS.get(req.plugin);
  if (!plugin) {
    let version = LATEST;
    try {
      const asked = (JSON.parse(req.stdin.toString('utf8')) as { cniVersion?: unknown }).cniVersion;
      if (isSupported(asked)) version = asked;
    } catch {
      // Not JSON: the error object says so in the latest version.
    }
    const err = new CniError(CniCode.Internal, `podnet cni-server has no plugin named "${req.plugin}" (it serves ${[...PLUGINS.keys()].join(', ')})`);
    return { status: Status.Ran, exitCode: 1, stdout: Buffer.from(JSON.stringify(err.toJSON(version)) + '\n'), stderr: Buffer.alloc(0) };
  }
  const out = await dispatch(plugin, req.env, req.stdin);
  return { status: Status.Ran, exitCode: out.exitCode, stdout: Buffer.from(out.stdout), stderr: Buffer.from(greeting(plugin, req.env)) };
}

/** Collects a connection's bytes and hands out exact amounts; fails on close, error or timeout. */
class Reader {
  private chunks: Buffer[] = [];
  private have = 0;
  /** Bytes received in all. */
  received = 0;
  private failure: Error | undefined;
  private wake: (() => void) | undefined;

  constructor(sock: Socket, limit: number) {
    sock.on('data', (c: Buffer) => {
      this.chunks.push(c);
      this.have += c.length;
      this.received += c.length;
      if (this.have > limit) this.fail(new FrameError('more bytes than any request may hold'));
      this.wake?.();
    });
    sock.on('end', () => this.fail(new FrameError('connection closed mid-request')));
    sock.on('close', () => this.fail(new FrameError('connection closed mid-request')));
    sock.on('error', (err) => this.fail(err));
    sock.on('timeout', () => this.fail(new FrameError(`no complete request within ${IO_TIMEOUT_MS / 1000} s`)));
  }

  fail(err: Error): void {
    this.failure ??= err;
    this.wake?.();
  }

  /** Bytes received that no take() has consumed. */
  get pending(): number {
    return this.have;
  }

  async take(n: number): Promise<Buffer> {
    while (this.have < n) {
      if (this.failure) throw this.failure;
      await new Promise<void>((resolve) => (this.wake = resolve));
      this.wake = undefined;
    }
    const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    const out = all.subarray(0, n);
    const rest = all.subarray(n);
    this.chunks = rest.length > 0 ? [rest] : [];
    this.have = rest.length;
    return out;
  }
}

export interface CniServerOptions {
  socketPath: string;
  signal: AbortSignal;
  /** Structured log lines (start, stop, refused and malformed requests). */
  log?: (event: Record<string, unknown>) => void;
}

export interface CniServer {
  socketPath: string;
  /** Settles once the signal aborted, the calls in progress finished and the socket is gone. */
  closed: Promise<void>;
}

/** Connections whose call is running (not to be dropped at shutdown). */
const running = new WeakSet<Socket>();

/** True when something accepts connections on the socket at `path`. */
function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = createConnection(path);
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
}

/**
 * Starts the server; resolves once it accepts calls. Throws a PodnetError when the path is
 * taken by a live server or by something that is not a socket.
 */
export async function startCniServer(opts: CniServerOptions): Promise<CniServer> {
  const { socketPath, signal } = opts;
  const log = opts.log ?? (() => undefined);
  if (!socketPath.startsWith('/')) throw new PodnetError('PODNET_BAD_PATH', `socket path "${socketPath}" must be absolute`);
  if (Buffer.byteLength(socketPath) > 107) throw new PodnetError('PODNET_BAD_PATH', `socket path "${socketPath}" is longer than a unix socket address allows (107 bytes)`);
  signal.throwIfAborted();
  const here = ownNetns();
  mkdirSync(dirname(socketPath), { recursive: true, mode: 0o700 });
  try {
    const st = lstatSync(socketPath);
    if (!st.isSocket()) throw new PodnetError('PODNET_SOCKET_IN_USE', `${socketPath} exists and is not a socket; not replacing it`);
    if (await answers(socketPath)) throw new PodnetError('PODNET_SOCKET_IN_USE', `another server answers on ${socketPath}; stop it first`);
    // A stale socket of a server that is gone: the rename below replaces it.
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }

  const inFlight = new Set<Promise<void>>();
  const sockets = new Set<Socket>();
  const server: Server = createServer({ allowHalfOpen: true }, (sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    const call = handle(sock, here, log).finally(() => inFlight.delete(call));
    inFlight.add(call);
  });

  const tmp = join(dirname(socketPath), `.${randomBytes(6).toString('hex')}.tmp`);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(tmp, () => {
      server.off('error', reject);
      resolve();
    });
  });
  let ino: bigint;
  try {
    chmodSync(tmp, 0o600);
    renameSync(tmp, socketPath);
    ino = statSync(socketPath, { bigint: true }).ino;
  } catch (err) {
    server.close();
    throw err;
  }
  server.on('error', (err) => log({ level: 'error', msg: 'cni-server socket error', error: describe(err) }));
  const ipSession = new IpSession();
  const unuseIpSession = useIpSession(ipSession);

  const closed = new Promise<void>((resolve) => {
    const stop = async (): Promise<void> => {
      // No new connections; requests still being read are dropped, calls already running finish.
      server.close();
      try {
        // Only our own socket: a newer server may have replaced it meanwhile.
        if (statSync(socketPath, { bigint: true }).ino === ino) unlinkSync(socketPath);
      } catch {
        // Gone already.
      }
      for (const s of sockets) if (!running.has(s)) s.destroy();
      await Promise.allSettled([...inFlight]);
      unuseIpSession();
      await ipSession.close();
      resolve();
    };
    if (signal.aborted) void stop();
    else signal.addEventListener('abort', () => void stop(), { once: true });
  });
  return { socketPath, closed };
}

async function handle(sock: Socket, here: NetnsId, log: (event: Record<string, unknown>) => void): Promise<void> {
  sock.setTimeout(IO_TIMEOUT_MS);
  const reader = new Reader(sock, 12 + MAX_BODY);
  let req: CniRequest;
  try {
    const env = decodeEnvelope(await reader.take(12));
    const body = await reader.take(env.length);
    if (reader.pending > 0) throw new FrameError('bytes after the end of the request');
    if (env.version !== PROTOCOL_VERSION) {
      req = { version: env.version, netns: { dev: 0n, ino: 0n }, plugin: '', env: {}, stdin: Buffer.alloc(0) };
    } else {
      req = { version: env.version, ...decodeBody(body) };
    }
  } catch (err) {
    // A connection closed before sending anything is a probe (another server starting): no noise.
    if (err instanceof FrameError && reader.received > 0) log({ level: 'warn', msg: 'cni-server: malformed request, connection closed', error: err.message });
    sock.destroy();
    return;
  }
  // A shim sends nothing after its request: stop reading, so nothing more piles up meanwhile.
  sock.pause();
  running.add(sock);
  let reply: CniReply;
  try {
    reply = await serve(req, here);
  } catch (err) {
    // dispatch() turns every failure into an error object; this is the last line of defence.
    const e = new CniError(CniCode.Internal, `internal error: ${describe(err)}`);
    reply = { status: Status.Ran, exitCode: 1, stdout: Buffer.from(JSON.stringify(e.toJSON(LATEST)) + '\n'), stderr: Buffer.alloc(0) };
  }
  if (reply.status === Status.WrongNamespace) {
    log({ level: 'info', msg: 'cni-server: call from another network namespace declined (the shim runs the standalone plugin)', plugin: req.plugin, command: req.env.CNI_COMMAND });
  } else if (reply.status === Status.UnsupportedVersion) {
    log({ level: 'warn', msg: 'cni-server: request of an unsupported protocol version declined', version: req.version });
  }
  // The shim may have given up (its deadline, or it was killed): nothing to do about that.
  sock.on('error', () => undefined);
  sock.end(encodeReply(reply));
}
