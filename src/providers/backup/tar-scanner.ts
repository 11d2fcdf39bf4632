/**
 * A streaming reader of tar framing (ustar, GNU and pax): it finds member headers and the
 * end-of-archive block in a byte stream without copying member data, so a tar stream of any size
 * can be passed through, cut at its end marker, or split before a given member.
 *
 * Assumptions: the stream has no old-style GNU sparse members (typeflag 'S' with extension
 * blocks); hyperlet's writers never ask tar for --sparse. Sizes in base-256 (GNU, over 8 GiB) are
 * read, and so is a pax extended header's `size=` record (POSIX, and GNU tar with --xattrs, put a
 * file's size there when it exceeds 8 GiB, with 0 in the ustar field).
 */

/** One member header as it passes by. */
export interface TarHeader {
  /** The name field (at most 100 bytes; GNU long names come as an 'L' member before it). */
  readonly name: string;
  readonly typeflag: string;
  /** Bytes of data after the header, before padding to 512. */
  readonly sizeBytes: number;
}

/** What a scanner reports: a header (with its 512 bytes), member data, or the end-of-archive block. */
export type TarPiece =
  | { readonly type: 'header'; readonly header: TarHeader; readonly bytes: Buffer }
  | { readonly type: 'data'; readonly bytes: Buffer }
  | { readonly type: 'end' };

/** Tar's block size. */
export const TAR_BLOCK = 512;

/** The size field of a header: octal text, or base-256 when its first byte has the high bit set (GNU). */
function sizeOf(block: Buffer): number {
  const field = block.subarray(124, 136);
  if (((field[0] ?? 0) & 0x80) !== 0) {
    let n = 0;
    for (let i = 1; i < field.length; i++) n = n * 256 + (field[i] ?? 0);
    return n;
  }
  const text = field.toString('latin1').replace(/\0.*$/s, '').trim();
  if (text === '') return 0;
  if (!/^[0-7]+$/.test(text)) throw new Error(`cannot read tar header: bad size field ${JSON.stringify(text)}`);
  return parseInt(text, 8);
}

/** Whether the 512-byte block's checksum field matches its bytes (POSIX: sum with the field as spaces). */
function checksumOk(block: Buffer): boolean {
  const text = block.subarray(148, 156).toString('latin1').replace(/\0.*$/s, '').trim();
  if (!/^[0-7]+$/.test(text)) return false;
  let sum = 0;
  for (let i = 0; i < TAR_BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : (block[i] ?? 0);
  return sum === parseInt(text, 8);
}

/** Parses one header block; throws on a block that is not a tar header. */
export function parseTarHeader(block: Buffer): TarHeader {
  if (!checksumOk(block)) throw new Error('cannot read tar stream: a header block has a bad checksum (not a tar archive, or corrupt)');
  return {
    name: block.subarray(0, 100).toString('utf8').replace(/\0.*$/s, ''),
    typeflag: String.fromCharCode(block[156] ?? 0x30) === '\0' ? '0' : String.fromCharCode(block[156] ?? 0x30),
    sizeBytes: sizeOf(block),
  };
}

/**
 * Splits tar bytes into pieces. Push chunks in with `push`, get pieces out; after 'end' every
 * further byte is ignored (tar pads its end to a record size). Not re-entrant.
 */
export class TarScanner {
  private pendingHeader: Buffer[] = [];
  private pendingHeaderBytes = 0;
  /** Data bytes (with padding) left in the current member; the first `dataLeft` of them are real data. */
  private padLeft = 0;
  private dataLeft = 0;
  private ended = false;
  /** The current member's data when it is a pax extended header ('x'), to read its size record. */
  private paxParts: Buffer[] | undefined;
  /** The size a pax header gave the next member. */
  private paxSize: number | undefined;

  /** Whether the end-of-archive block has been seen. */
  get done(): boolean {
    return this.ended;
  }

  /** Whether the scanner sits between members (no header half-read, no member data owed). */
  get atBoundary(): boolean {
    return this.pendingHeaderBytes === 0 && this.dataLeft === 0 && this.padLeft === 0;
  }

  /** The pieces `chunk` holds, in order; member data is sliced, never copied. */
  push(chunk: Buffer): TarPiece[] {
    const out: TarPiece[] = [];
    let at = 0;
    while (at < chunk.length && !this.ended) {
      if (this.dataLeft > 0 || this.padLeft > 0) {
        const take = Math.min(chunk.length - at, this.dataLeft + this.padLeft);
        out.push({ type: 'data', bytes: chunk.subarray(at, at + take) });
        const fromData = Math.min(take, this.dataLeft);
        this.paxParts?.push(chunk.subarray(at, at + fromData));
        this.dataLeft -= fromData;
        this.padLeft -= take - fromData;
        at += take;
        continue;
      }
      const take = Math.min(chunk.length - at, TAR_BLOCK - this.pendingHeaderBytes);
      this.pendingHeader.push(chunk.subarray(at, at + take));
      this.pendingHeaderBytes += take;
      at += take;
      if (this.pendingHeaderBytes < TAR_BLOCK) break;
      const block = Buffer.concat(this.pendingHeader, TAR_BLOCK);
      this.pendingHeader = [];
      this.pendingHeaderBytes = 0;
      if (block.every((b) => b === 0)) {
        this.ended = true;
        out.push({ type: 'end' });
        break;
      }
      if (this.paxParts !== undefined) {
        this.paxSize = paxSizeOf(Buffer.concat(this.paxParts));
        this.paxParts = undefined;
      } else {
        this.paxSize = undefined;
      }
      let header = parseTarHeader(block);
      if (this.paxSize !== undefined && header.typeflag !== 'x' && header.typeflag !== 'g') header = { ...header, sizeBytes: this.paxSize };
      if (header.typeflag === 'x') {
        if (header.sizeBytes > 1024 * 1024) throw new Error(`cannot read tar stream: a pax header of ${header.sizeBytes} bytes`);
        this.paxParts = [];
      }
      this.dataLeft = header.sizeBytes;
      this.padLeft = (TAR_BLOCK - (header.sizeBytes % TAR_BLOCK)) % TAR_BLOCK;
      out.push({ type: 'header', header, bytes: block });
    }
    return out;
  }
}

/** The `size` record of pax extended header data ("LEN key=value\n" records), or undefined. */
export function paxSizeOf(data: Buffer): number | undefined {
  const m = /(?:^|\n)\d+ size=(\d+)\n/.exec(data.toString('utf8'));
  return m === null ? undefined : Number(m[1]);
}

/** One ustar header block for a regular file `name` (at most 100 bytes) of `sizeBytes`, mode 0600. */
export function tarFileHeader(name: string, sizeBytes: number, mtimeSeconds: number): Buffer {
  const block = Buffer.alloc(TAR_BLOCK);
  if (Buffer.byteLength(name) > 100) throw new Error(`cannot write tar header: name ${name} is longer than 100 bytes`);
  const octal = (value: number, width: number): string => `${value.toString(8).padStart(width - 1, '0')}\0`;
  block.write(name, 0, 'utf8');
  block.write(octal(0o600, 8), 100, 'latin1');
  block.write(octal(0, 8), 108, 'latin1');
  block.write(octal(0, 8), 116, 'latin1');
  block.write(octal(sizeBytes, 12), 124, 'latin1');
  block.write(octal(Math.floor(mtimeSeconds), 12), 136, 'latin1');
  block.write('        ', 148, 'latin1');
  block.write('0', 156, 'latin1');
  block.write('ustar\0', 257, 'latin1');
  block.write('00', 263, 'latin1');
  block.write('root', 265, 'latin1');
  block.write('root', 297, 'latin1');
  let sum = 0;
  for (const b of block) sum += b;
  block.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  return block;
}

/** A whole member: header, data, padding to 512. */
export function tarFileMember(name: string, data: Buffer, mtimeSeconds: number): Buffer {
  const pad = (TAR_BLOCK - (data.length % TAR_BLOCK)) % TAR_BLOCK;
  return Buffer.concat([tarFileHeader(name, data.length, mtimeSeconds), data, Buffer.alloc(pad)]);
}
