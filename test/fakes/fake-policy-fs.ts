/** A file system in memory for host policy tests: files, directories, links, devices, FIFOs. */
import { dirname, posix } from 'node:path';
import type { FileKind, PolicyFs } from '../../src/policy/policy-fs.js';

export type FakeEntry =
  | { readonly kind: 'file'; readonly bytes?: Uint8Array }
  | { readonly kind: 'symlink'; readonly target: string }
  | { readonly kind: Exclude<FileKind, 'file' | 'symlink'> };

/** Paths map to entries; every parent directory of an entry exists. Links resolve like the kernel's (40 hops at most). */
export class FakePolicyFs implements PolicyFs {
  private readonly entries = new Map<string, FakeEntry>([['/', { kind: 'directory' }]]);
  /** Every path readHead opened (a device, FIFO or link must never appear here as opened). */
  readonly opened: string[] = [];

  constructor(entries: Record<string, FakeEntry> = {}) {
    for (const [path, entry] of Object.entries(entries)) this.add(path, entry);
  }

  add(path: string, entry: FakeEntry): this {
    for (let dir = dirname(path); !this.entries.has(dir); dir = dirname(dir)) this.entries.set(dir, { kind: 'directory' });
    this.entries.set(path, entry);
    return this;
  }

  realpath(path: string): Promise<string | undefined> {
    return Promise.resolve(this.resolve(path, 0));
  }

  kindOf(path: string): Promise<FileKind | undefined> {
    return Promise.resolve(this.entries.get(posix.normalize(path))?.kind);
  }

  readHead(path: string, length: number): Promise<{ kind: FileKind; bytes: Uint8Array }> {
    const entry = this.entries.get(posix.normalize(path));
    if (entry === undefined) return Promise.reject(Object.assign(new Error(`ENOENT: ${path}`), { code: 'ENOENT' }));
    if (entry.kind !== 'file') return Promise.resolve({ kind: entry.kind, bytes: new Uint8Array(0) });
    this.opened.push(path);
    return Promise.resolve({ kind: 'file', bytes: (entry.bytes ?? new Uint8Array(0)).subarray(0, length) });
  }

  private resolve(path: string, hops: number): string | undefined {
    if (hops > 40) return undefined;
    let current = '/';
    const parts = posix.normalize(path).split('/').filter((p) => p !== '');
    for (let i = 0; i < parts.length; i++) {
      const next = posix.join(current, parts[i] ?? '');
      const entry = this.entries.get(next);
      if (entry === undefined) return undefined;
      if (entry.kind === 'symlink') {
        const target = posix.isAbsolute(entry.target) ? entry.target : posix.join(current, entry.target);
        return this.resolve(posix.join(target, ...parts.slice(i + 1)), hops + 1);
      }
      if (i < parts.length - 1 && entry.kind !== 'directory') return undefined;
      current = next;
    }
    return current;
  }
}

/** A qcow2 header: version 2 or 3, an optional backing file name and (v3) an external data file name. */
export function qcow2Bytes(options: { version?: 2 | 3; backing?: string; dataFile?: string } = {}): Uint8Array {
  const version = options.version ?? 3;
  const buf = Buffer.alloc(4096);
  buf.writeUInt32BE(0x514649fb, 0);
  buf.writeUInt32BE(version, 4);
  buf.writeUInt32BE(16, 20); // cluster_bits
  const headerLength = version === 3 ? 112 : 72;
  if (version === 3) buf.writeUInt32BE(headerLength, 100);
  let offset = headerLength;
  if (options.dataFile !== undefined && version === 3) {
    const name = Buffer.from(options.dataFile);
    buf.writeUInt32BE(0x44415441, offset);
    buf.writeUInt32BE(name.length, offset + 4);
    name.copy(buf, offset + 8);
    offset += 8 + Math.ceil(name.length / 8) * 8;
  }
  offset += 8; // end-of-extensions marker (type 0)
  if (options.backing !== undefined) {
    const name = Buffer.from(options.backing);
    buf.writeBigUInt64BE(BigInt(offset), 8);
    buf.writeUInt32BE(name.length, 16);
    name.copy(buf, offset);
  }
  return new Uint8Array(buf);
}
