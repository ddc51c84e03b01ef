/**
 * Address leases on disk, in the reference host-local layout so that the two plugins can
 * share a data directory: `<dataDir>/<network>/<ip>` holds "containerID\r\nifname", and
 * `last_reserved_ip.<set>` remembers where the round-robin walk stopped.
 *
 * Why no lock: the reference serialises allocations with flock(2), which Node lacks. We do
 * not need one. A lease is claimed by link(2)-ing a fully written temporary file to the
 * address's name, which is atomic and fails with EEXIST when the address is taken, so no
 * address can ever be handed out twice, whoever races (other podnet processes or the
 * reference plugin, which creates with O_EXCL). Because nothing is ever held, a process
 * killed at any instant leaves no lock behind; what it may leave is a lease file (reclaimed
 * by DEL or GC, as for any pod) or a temporary file (swept by GC).
 *
 * A second allocation for the same container and interface is refused through an
 * attachment record, also claimed exclusively, which also lets DEL find its addresses
 * without reading every lease.
 */
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, constants, ftruncateSync, linkSync, mkdirSync, openSync, readFileSync, readdirSync, renameSync, statSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { isIP } from '../netaddr/index.ts';

export interface Owner {
  containerId: string;
  ifName: string;
}

/** The storage an allocator needs; `MemoryStore` implements it for unit tests. */
export interface LeaseStore {
  /** Addresses (as text) currently leased. */
  leased(): Set<string>;
  /** Claims `ip` for `owner`; false when somebody holds it already. */
  claim(ip: string, owner: Owner): boolean;
  /** Releases one address if `owner` holds it. */
  release(ip: string, owner: Owner): void;
  /** The addresses `owner` holds. */
  owned(owner: Owner): string[];
  /** Every lease with its owner. */
  all(): Array<{ ip: string; owner: Owner }>;
  lastReserved(set: number): string | undefined;
  setLastReserved(set: number, ip: string): void;
  /** Starts an attachment; false if the owner already has one (a duplicate ADD). */
  beginAttachment(owner: Owner): boolean;
  /** Records the addresses of a finished attachment. */
  completeAttachment(owner: Owner, ips: string[]): void;
  endAttachment(owner: Owner): void;
  hasAttachment(owner: Owner): boolean;
  attachments(): Owner[];
}

const LAST_RESERVED = 'last_reserved_ip.';

function encodeOwner(o: Owner): string {
  return `${o.containerId}\r\n${o.ifName}`;
}

/** Reads a lease file's owner; the oldest host-local format holds only the container ID. */
function decodeOwner(text: string): Owner {
  const [containerId = '', ifName = ''] = text.trim().split(/\r?\n/);
  return { containerId: containerId.trim(), ifName: ifName.trim() };
}

export function sameOwner(lease: Owner, who: Owner): boolean {
  return lease.containerId === who.containerId && (lease.ifName === '' || lease.ifName === who.ifName);
}

function attachmentKey(o: Owner): string {
  return createHash('sha256').update(`${o.containerId}\0${o.ifName}`).digest('hex').slice(0, 40);
}

/** Removes a file that may be gone already (unlink(2) directly: rmSync costs several calls more). */
function removeFile(path: string): void {
  try {
    unlinkSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

export class DiskStore implements LeaseStore {
  readonly dir: string;
  /** podnet's own bookkeeping lives beside, not inside, the reference layout. */
  readonly attachDir: string;
  readonly tmpDir: string;

  constructor(dataDir: string, network: string) {
    this.dir = join(dataDir, network);
    this.attachDir = join(dataDir, '.podnet', network, 'attachments');
    this.tmpDir = join(dataDir, '.podnet', 'tmp');
    mkdirSync(this.dir, { recursive: true, mode: 0o755 });
    mkdirSync(this.attachDir, { recursive: true, mode: 0o755 });
    mkdirSync(this.tmpDir, { recursive: true, mode: 0o755 });
  }

  private names(): string[] {
    try {
      return readdirSync(this.dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
  }

  leased(): Set<string> {
    return new Set(this.names().filter((n) => isIP(n)));
  }

  /** Writes `content` to `path` only if it does not exist, never leaving a partial file there. */
  private createExclusive(path: string, content: string): boolean {
    const tmp = join(this.tmpDir, `${process.pid}.${randomBytes(6).toString('hex')}`);
    writeFileSync(tmp, content, { mode: 0o644 });
    try {
      linkSync(tmp, path);
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw err;
    } finally {
      unlinkSync(tmp);
    }
  }

  claim(ip: string, owner: Owner): boolean {
    return this.createExclusive(join(this.dir, ip), encodeOwner(owner));
  }

  private ownerOf(ip: string): Owner | undefined {
    try {
      return decodeOwner(readFileSync(join(this.dir, ip), 'utf8'));
    } catch {
      return undefined;
    }
  }

  release(ip: string, owner: Owner): void {
    const held = this.ownerOf(ip);
    if (held && sameOwner(held, owner)) removeFile(join(this.dir, ip));
  }

  owned(owner: Owner): string[] {
    // Fast path: the attachment record lists the addresses once ADD has finished.
    try {
      const rec = JSON.parse(readFileSync(join(this.attachDir, attachmentKey(owner)), 'utf8')) as { ips?: string[] };
      if (Array.isArray(rec.ips) && rec.ips.length > 0) {
        const mine = rec.ips.filter((ip) => {
          const held = this.ownerOf(ip);
          return held !== undefined && sameOwner(held, owner);
        });
        if (mine.length === rec.ips.length) return mine;
      }
    } catch {
      // No record (made by the reference plugin, or ADD died early): read every lease.
    }
    return this.all()
      .filter((l) => sameOwner(l.owner, owner))
      .map((l) => l.ip);
  }

  all(): Array<{ ip: string; owner: Owner }> {
    const out: Array<{ ip: string; owner: Owner }> = [];
    for (const name of this.names()) {
      if (!isIP(name)) continue;
      const owner = this.ownerOf(name);
      if (owner) out.push({ ip: name, owner });
    }
    return out;
  }

  lastReserved(set: number): string | undefined {
    try {
      const text = readFileSync(join(this.dir, LAST_RESERVED + set), 'utf8').trim();
      return isIP(text) ? text : undefined;
    } catch {
      return undefined;
    }
  }

  setLastReserved(set: number, ip: string): void {
    // Only a hint for where the next walk starts, so it is overwritten in place: a rename over
    // the old file would make ext4 flush the new one (auto_da_alloc) on every ADD, and a torn
    // or lost update only moves where the next walk starts (claims stay exclusive).
    const fd = openSync(join(this.dir, LAST_RESERVED + set), constants.O_RDWR | constants.O_CREAT, 0o644);
    try {
      writeSync(fd, ip, 0);
      ftruncateSync(fd, Buffer.byteLength(ip));
    } finally {
      closeSync(fd);
    }
  }

  beginAttachment(owner: Owner): boolean {
    return this.createExclusive(join(this.attachDir, attachmentKey(owner)), JSON.stringify({ ...owner, ips: [] }));
  }

  completeAttachment(owner: Owner, ips: string[]): void {
    const tmp = join(this.tmpDir, `${process.pid}.${randomBytes(6).toString('hex')}`);
    writeFileSync(tmp, JSON.stringify({ ...owner, ips }));
    renameSync(tmp, join(this.attachDir, attachmentKey(owner)));
  }

  endAttachment(owner: Owner): void {
    removeFile(join(this.attachDir, attachmentKey(owner)));
  }

  hasAttachment(owner: Owner): boolean {
    try {
      statSync(join(this.attachDir, attachmentKey(owner)));
      return true;
    } catch {
      return false;
    }
  }

  attachments(): Owner[] {
    const out: Owner[] = [];
    for (const name of readdirSync(this.attachDir)) {
      try {
        const rec = JSON.parse(readFileSync(join(this.attachDir, name), 'utf8')) as Owner;
        out.push({ containerId: rec.containerId, ifName: rec.ifName });
      } catch {
        // A record cut short by a crash has no owner to keep: drop it.
        removeFile(join(this.attachDir, name));
      }
    }
    return out;
  }

  /** Removes temporary files older than `ageMs` (left by a process killed mid-write). */
  sweepTemp(ageMs = 60_000): number {
    let n = 0;
    const now = Date.now();
    for (const name of readdirSync(this.tmpDir)) {
      const p = join(this.tmpDir, name);
      try {
        if (now - statSync(p).mtimeMs > ageMs) {
          unlinkSync(p);
          n++;
        }
      } catch {
        // Gone already.
      }
    }
    return n;
  }
}

/** An in-memory store with the same semantics, for unit tests of the allocator. */
export class MemoryStore implements LeaseStore {
  leases = new Map<string, Owner>();
  last = new Map<number, string>();
  attached = new Map<string, Owner>();

  leased(): Set<string> {
    return new Set(this.leases.keys());
  }
  claim(ip: string, owner: Owner): boolean {
    if (this.leases.has(ip)) return false;
    this.leases.set(ip, owner);
    return true;
  }
  release(ip: string, owner: Owner): void {
    const held = this.leases.get(ip);
    if (held && sameOwner(held, owner)) this.leases.delete(ip);
  }
  owned(owner: Owner): string[] {
    return [...this.leases].filter(([, o]) => sameOwner(o, owner)).map(([ip]) => ip);
  }
  all(): Array<{ ip: string; owner: Owner }> {
    return [...this.leases].map(([ip, owner]) => ({ ip, owner }));
  }
  lastReserved(set: number): string | undefined {
    return this.last.get(set);
  }
  setLastReserved(set: number, ip: string): void {
    this.last.set(set, ip);
  }
  beginAttachment(owner: Owner): boolean {
    const k = attachmentKey(owner);
    if (this.attached.has(k)) return false;
    this.attached.set(k, owner);
    return true;
  }
  completeAttachment(): void {
    // The map already links owner and addresses.
  }
  endAttachment(owner: Owner): void {
    this.attached.delete(attachmentKey(owner));
  }
  hasAttachment(owner: Owner): boolean {
    return this.attached.has(attachmentKey(owner));
  }
  attachments(): Owner[] {
    return [...this.attached.values()];
  }
}
