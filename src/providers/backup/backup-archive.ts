/**
 * hyperlet's portable backup archive: one tar stream, compressed with zstd (the system tool,
 * multi-threaded) or gzip (Node's zlib), so `tar -I zstd -xf FILE` or `tar -xzf FILE` opens it
 * anywhere. Its members, in order:
 *   1. `hyperlet-backup.json`: the head of the manifest: format version, kind, host name, the
 *      object as declared, when it was made, and the layout of the data members;
 *   2. the data members, as a tar of the instance made by the provider (container: `config`,
 *      `rootfs/`; VM: `domain.xml`, `disks/NAME.qcow2`);
 *   3. `hyperlet-backup.sha256`: the tail of the manifest: the SHA-256 and length of every byte
 *      of the uncompressed tar before this member's header.
 * Writer and reader are streams in, streams out: no CLI, daemon or hypervisor knowledge, so a
 * node move can send the same stream between agents.
 *
 * Guarantees: the reader checks the head before any data is extracted (a newer format version is
 * refused with nothing written), and reports the archive as good only when the trailer was read
 * and its checksum matches every byte before it; a truncated or altered archive is an error,
 * and the caller removes what was extracted (it extracts into its own staging directory).
 */
import { createHash } from 'node:crypto';
import type { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip, createGzip } from 'node:zlib';
import { TerminalError } from '../../shared/errors.js';
import { TAR_BLOCK, TarScanner, tarFileMember } from './tar-scanner.js';
import { startTool } from './tool-stream.js';

/** The archive format this code writes and the newest it reads. */
export const BACKUP_FORMAT_VERSION = 1;
/** Name of the first member (the manifest's head). */
export const HEAD_MEMBER = 'hyperlet-backup.json';
/** Name of the last member (the manifest's tail: the checksum). */
export const TRAILER_MEMBER = 'hyperlet-backup.sha256';
const HEAD_MAX_BYTES = 1024 * 1024;

/** The manifest's head: what the archive holds. */
export interface BackupHead {
  readonly formatVersion: number;
  readonly kind: string;
  /** The instance's name on the host it came from. */
  readonly hostName: string;
  /** RFC 3339. */
  readonly createdAt: string;
  /** The object as declared (apiVersion, kind, metadata.name/namespace/labels/annotations, spec). */
  readonly object: Record<string, unknown>;
  /** How the data members are laid out: 'lxc-dir' (config, rootfs/) or 'libvirt-qcow2' (domain.xml, disks/). */
  readonly layout: string;
  /** Provider facts restore needs (the old lxcpath, the disks and their pools). */
  readonly details?: Readonly<Record<string, unknown>>;
}

/** The manifest's tail. */
export interface BackupTrailer {
  readonly algorithm: 'sha256';
  /** Hex SHA-256 of the uncompressed tar bytes before the trailer's header. */
  readonly digest: string;
  readonly bytes: number;
}

/** How the archive is compressed. */
export type BackupCompression = 'zstd' | 'gzip';

/** What writeBackup needs. */
export interface WriteBackupOptions {
  readonly head: BackupHead;
  /** A tar stream (GNU or ustar) of the data members; everything after its end-of-archive block is dropped. */
  readonly payload: AsyncIterable<Buffer>;
  readonly out: Writable;
  /** Default zstd. */
  readonly compression?: BackupCompression;
  /** zstd level (default 3) or gzip level (default 3). */
  readonly level?: number;
  /** Called with the uncompressed bytes written so far, at most once per chunk. */
  readonly onProgress?: (bytes: number) => void;
  readonly signal?: AbortSignal;
}

/** What a written or read archive amounted to. */
export interface BackupSummary {
  readonly head: BackupHead;
  readonly trailer: BackupTrailer;
  /** Bytes of the compressed file. */
  readonly compressedBytes: number;
}

/** A compressor or decompressor as a duplex of two streams and an end. */
interface Codec {
  readonly input: Writable;
  readonly output: Readable;
  readonly done: Promise<void>;
  kill(): void;
}

function compressor(compression: BackupCompression, level: number, signal?: AbortSignal): Codec {
  if (compression === 'gzip') {
    const gzip = createGzip({ level });
    return { input: gzip, output: gzip, done: Promise.resolve(), kill: () => gzip.destroy() };
  }
  const tool = startTool('zstd', ['-q', '-c', `-${level}`, '-T0'], signal);
  return { input: tool.stdin, output: tool.stdout, done: tool.exited, kill: () => tool.kill() };
}

function decompressor(compression: BackupCompression, signal?: AbortSignal): Codec {
  if (compression === 'gzip') {
    const gunzip = createGunzip();
    return { input: gunzip, output: gunzip, done: Promise.resolve(), kill: () => gunzip.destroy() };
  }
  const tool = startTool('zstd', ['-q', '-d', '-c'], signal);
  return { input: tool.stdin, output: tool.stdout, done: tool.exited, kill: () => tool.kill() };
}

/** The compression the first bytes of a file say (zstd or gzip magic), or undefined. */
export function compressionOf(head: Buffer): BackupCompression | undefined {
  if (head.length >= 4 && head.readUInt32LE(0) === 0xfd2fb528) return 'zstd';
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  return undefined;
}

/**
 * Writes the archive of `payload` to `out` (see the module comment), streaming: memory stays
 * bounded whatever the size. Rejects when the payload's tool fails, when the payload ends without
 * its end-of-archive block, or when `out` fails; `out` then holds a partial file the caller removes.
 */
export async function writeBackup(options: WriteBackupOptions): Promise<BackupSummary> {
  const codec = compressor(options.compression ?? 'zstd', options.level ?? 3, options.signal);
  const hash = createHash('sha256');
  let bytes = 0;
  let trailer: BackupTrailer | undefined;
  const mtime = Date.parse(options.head.createdAt) / 1000;
  async function* tarBytes(): AsyncGenerator<Buffer> {
    const head = tarFileMember(HEAD_MEMBER, Buffer.from(`${JSON.stringify(options.head, null, 2)}\n`), mtime);
    hash.update(head);
    bytes += head.length;
    yield head;
    const scanner = new TarScanner();
    for await (const chunk of options.payload) {
      if (scanner.done) continue; // tar pads its end to a record: drained, never written
      for (const piece of scanner.push(chunk)) {
        if (piece.type === 'end') break;
        hash.update(piece.bytes);
        bytes += piece.bytes.length;
        yield piece.bytes;
      }
      options.onProgress?.(bytes);
    }
    if (!scanner.done) throw new Error('cannot write backup: the data stream ended before its end-of-archive block');
    trailer = { algorithm: 'sha256', digest: hash.digest('hex'), bytes };
    yield tarFileMember(TRAILER_MEMBER, Buffer.from(`${JSON.stringify(trailer)}\n`), mtime);
    yield Buffer.alloc(2 * TAR_BLOCK);
  }
  let compressedBytes = 0;
  try {
    await Promise.all([
      pipeline(tarBytes, codec.input),
      pipeline(codec.output, async function* count(source: AsyncIterable<Buffer>) {
        for await (const chunk of source) {
          compressedBytes += chunk.length;
          yield chunk;
        }
      }, options.out),
      codec.done,
    ]);
  } catch (err) {
    codec.kill();
    throw err;
  }
  if (trailer === undefined) throw new Error('cannot write backup: the trailer was never written');
  return { head: options.head, trailer, compressedBytes };
}

/** What readBackup needs. */
export interface ReadBackupOptions {
  readonly input: Readable;
  /** An empty directory the data members are extracted into (the caller's staging directory). */
  readonly extractTo: string;
  /** Called with the head before anything is extracted; throw to refuse the archive (a name collision…). */
  readonly check?: (head: BackupHead) => void | Promise<void>;
  /** Called with the uncompressed bytes read so far. */
  readonly onProgress?: (bytes: number) => void;
  readonly signal?: AbortSignal;
  /** Where the archive came from, for messages ("backup.tar.zst"). */
  readonly label?: string;
}

/** Parses and checks the head member's JSON; TerminalError BackupNewerFormat or BackupInvalid. */
export function parseBackupHead(text: string, label: string): BackupHead {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new TerminalError('BackupInvalid', `cannot read backup ${label}: ${HEAD_MEMBER} is not JSON`, { cause: err });
  }
  const head = raw as Partial<BackupHead> | null;
  if (head === null || typeof head !== 'object' || typeof head.formatVersion !== 'number') {
    throw new TerminalError('BackupInvalid', `cannot read backup ${label}: ${HEAD_MEMBER} has no formatVersion`);
  }
  if (head.formatVersion > BACKUP_FORMAT_VERSION) {
    throw new TerminalError('BackupNewerFormat', `cannot read backup ${label}: it has format version ${head.formatVersion}, and this hyperlet reads up to ${BACKUP_FORMAT_VERSION} (upgrade hyperlet)`);
  }
  if (typeof head.kind !== 'string' || typeof head.hostName !== 'string' || typeof head.layout !== 'string'
    || typeof head.createdAt !== 'string' || head.object === null || typeof head.object !== 'object') {
    throw new TerminalError('BackupInvalid', `cannot read backup ${label}: ${HEAD_MEMBER} lacks kind, hostName, layout, createdAt or object`);
  }
  return head as BackupHead;
}

/**
 * Reads an archive: checks the head (and `check`) first, extracts the data members into
 * `extractTo` with tar (owners, modes and extended attributes kept), and resolves once the
 * checksum in the trailer matches. Rejects with TerminalError BackupNotAnArchive, BackupTruncated,
 * BackupChecksumMismatch, BackupNewerFormat or BackupInvalid; `extractTo` may then hold partial
 * data, which the caller removes.
 */
export async function readBackup(options: ReadBackupOptions): Promise<BackupSummary> {
  const label = options.label ?? 'stream';
  const source = options.input[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  const first = await source.next();
  const firstChunk = first.done === true ? Buffer.alloc(0) : first.value;
  const compression = compressionOf(firstChunk);
  if (compression === undefined) {
    options.input.destroy();
    const what = firstChunk.length === 0 ? 'it is empty' : 'it is neither zstd nor gzip';
    throw new TerminalError('BackupNotAnArchive', `cannot read backup ${label}: ${what}`);
  }
  const codec = decompressor(compression, options.signal);
  let compressedBytes = 0;
  async function* raw(): AsyncGenerator<Buffer> {
    compressedBytes += firstChunk.length;
    yield firstChunk;
    for (;;) {
      const next = await source.next();
      if (next.done === true) return;
      compressedBytes += next.value.length;
      yield next.value;
    }
  }
  const feeding = pipeline(raw, codec.input);
  feeding.catch(() => undefined);
  let tar: ReturnType<typeof startTool> | undefined;
  try {
    const result = await scan(codec.output, options, label, (t) => {
      tar = t;
    });
    await feeding;
    await codec.done.catch((err: unknown) => {
      throw new TerminalError('BackupTruncated', `cannot read backup ${label}: the compressed stream is damaged or cut short`, { cause: err });
    });
    return { ...result, compressedBytes };
  } catch (err) {
    codec.kill();
    tar?.kill();
    options.input.destroy();
    throw err;
  }
}

async function writeTo(stream: Writable, bytes: Buffer): Promise<void> {
  if (!stream.write(bytes)) {
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void => reject(err);
      stream.once('error', onError);
      stream.once('drain', () => {
        stream.off('error', onError);
        resolve();
      });
    });
  }
}

/** The member-by-member walk of the decompressed tar (see readBackup). */
async function scan(
  decompressed: Readable, options: ReadBackupOptions, label: string, started: (tar: ReturnType<typeof startTool>) => void,
): Promise<Omit<BackupSummary, 'compressedBytes'>> {
  const hash = createHash('sha256');
  const scanner = new TarScanner();
  let bytes = 0;
  let member: 'none' | 'head' | 'data' | 'trailer' = 'none';
  let headParts: Buffer[] = [];
  let headBytes = 0;
  let trailerBytes = 0;
  let head: BackupHead | undefined;
  let trailerParts: Buffer[] = [];
  let trailer: BackupTrailer | undefined;
  let digest: string | undefined;
  let tar: ReturnType<typeof startTool> | undefined;
  let sawHeader = false;
  let memberBytes = 0;
  try {
    for await (const chunk of decompressed) {
      for (const piece of scanner.push(chunk as Buffer)) {
        if (piece.type === 'end') break;
        if (piece.type === 'header') {
          const name = piece.header.name;
          memberBytes = piece.header.sizeBytes;
          if (!sawHeader) {
            sawHeader = true;
            if (name !== HEAD_MEMBER || piece.header.sizeBytes > HEAD_MAX_BYTES) {
              throw new TerminalError('BackupNotAnArchive', `cannot read backup ${label}: it is a tar archive, but not a hyperlet backup (no ${HEAD_MEMBER} first)`);
            }
            member = 'head';
            headBytes = memberBytes;
          } else if (name === TRAILER_MEMBER) {
            if (head === undefined) throw new TerminalError('BackupInvalid', `cannot read backup ${label}: no head`);
            digest = hash.digest('hex');
            member = 'trailer';
            trailerBytes = memberBytes;
            if (tar !== undefined) {
              tar.stdin.end(Buffer.alloc(2 * TAR_BLOCK));
            }
            continue;
          } else {
            if (member === 'head') head = await finishHead(headParts, headBytes, label, options);
            headParts = [];
            member = 'data';
          }
        }
        if (member === 'trailer') {
          if (piece.type === 'data') trailerParts.push(piece.bytes);
          continue;
        }
        hash.update(piece.bytes);
        bytes += piece.bytes.length;
        if (member === 'head') {
          if (piece.type === 'data') headParts.push(piece.bytes);
          continue;
        }
        if (tar === undefined) {
          tar = startTool('tar', ['--format=gnu', '-x', '-f', '-', '-C', options.extractTo, '--numeric-owner', '--same-owner',
            '--same-permissions', '--xattrs', '--xattrs-include=*'], options.signal);
          started(tar);
        }
        await writeTo(tar.stdin, piece.bytes);
      }
      options.onProgress?.(bytes);
      if (scanner.done) break;
    }
  } catch (err) {
    if ((err as { isTerminalError?: boolean }).isTerminalError === true) throw err;
    if ((err as NodeJS.ErrnoException).code === 'Z_BUF_ERROR') {
      throw new TerminalError('BackupTruncated', `cannot read backup ${label}: it is truncated (${(err as Error).message})`, { cause: err });
    }
    if (!sawHeader) throw new TerminalError('BackupNotAnArchive', `cannot read backup ${label}: ${(err as Error).message}`, { cause: err });
    throw err;
  }
  if (!scanner.done || digest === undefined) {
    throw new TerminalError('BackupTruncated', `cannot read backup ${label}: it is truncated (it ends before its checksum trailer)`);
  }
  try {
    trailer = JSON.parse(Buffer.concat(trailerParts).subarray(0, trailerBytes).toString('utf8')) as BackupTrailer;
  } catch (err) {
    throw new TerminalError('BackupInvalid', `cannot read backup ${label}: ${TRAILER_MEMBER} is not JSON`, { cause: err });
  }
  trailerParts = [];
  if (head === undefined) throw new TerminalError('BackupInvalid', `cannot read backup ${label}: it holds no data`);
  if (trailer.algorithm !== 'sha256' || trailer.digest !== digest || trailer.bytes !== bytes) {
    throw new TerminalError('BackupChecksumMismatch',
      `cannot read backup ${label}: checksum mismatch (the archive says sha256 ${String(trailer.digest)} over ${String(trailer.bytes)} bytes, it holds ${digest} over ${bytes})`);
  }
  if (tar !== undefined) await tar.exited;
  return { head, trailer };
}

async function finishHead(parts: readonly Buffer[], sizeBytes: number, label: string, options: ReadBackupOptions): Promise<BackupHead> {
  const head = parseBackupHead(Buffer.concat(parts).subarray(0, sizeBytes).toString('utf8'), label);
  await options.check?.(head);
  return head;
}

/**
 * Only the head of an archive (format version checked), read from the start of `input`, which is
 * then destroyed: how a caller picks the provider for an archive before restoring it. Throws the
 * reader's TerminalErrors (BackupNotAnArchive, BackupNewerFormat, BackupInvalid, BackupTruncated).
 */
export async function readBackupHead(input: Readable, label: string): Promise<BackupHead> {
  const source = input[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  const first = await source.next();
  const firstChunk = first.done === true ? Buffer.alloc(0) : first.value;
  const compression = compressionOf(firstChunk);
  if (compression === undefined) {
    input.destroy();
    throw new TerminalError('BackupNotAnArchive', `cannot read backup ${label}: ${firstChunk.length === 0 ? 'it is empty' : 'it is neither zstd nor gzip'}`);
  }
  const codec = decompressor(compression);
  async function* raw(): AsyncGenerator<Buffer> {
    yield firstChunk;
    for (;;) {
      const next = await source.next();
      if (next.done === true) return;
      yield next.value;
    }
  }
  pipeline(raw, codec.input).catch(() => undefined);
  const scanner = new TarScanner();
  const parts: Buffer[] = [];
  let sizeBytes: number | undefined;
  let have = 0;
  try {
    for await (const chunk of codec.output) {
      for (const piece of scanner.push(chunk as Buffer)) {
        if (piece.type === 'header') {
          if (sizeBytes !== undefined) break;
          if (piece.header.name !== HEAD_MEMBER || piece.header.sizeBytes > HEAD_MAX_BYTES) {
            throw new TerminalError('BackupNotAnArchive', `cannot read backup ${label}: it is a tar archive, but not a hyperlet backup (no ${HEAD_MEMBER} first)`);
          }
          sizeBytes = piece.header.sizeBytes;
        } else if (piece.type === 'data') {
          parts.push(piece.bytes);
          have += piece.bytes.length;
        }
      }
      if (sizeBytes !== undefined && have >= sizeBytes) return parseBackupHead(Buffer.concat(parts).subarray(0, sizeBytes).toString('utf8'), label);
    }
    throw new TerminalError('BackupTruncated', `cannot read backup ${label}: it ends before its head is complete`);
  } catch (err) {
    if ((err as { isTerminalError?: boolean }).isTerminalError === true) throw err;
    throw new TerminalError('BackupNotAnArchive', `cannot read backup ${label}: ${(err as Error).message}`, { cause: err });
  } finally {
    codec.kill();
    input.destroy();
  }
}
