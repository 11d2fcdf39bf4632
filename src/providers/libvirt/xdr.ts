/**
 * XDR (RFC 4506) as libvirt's RPC uses it: big-endian 4-byte ints, enums and bools, 8-byte
 * hypers, length-prefixed strings and opaques padded to 4 bytes, optionals as a 0/1 word, arrays
 * as a count then the elements. rpcgen's `unsigned char`/`unsigned short` also take 4 bytes.
 */

/** The largest string libvirt accepts (REMOTE_STRING_MAX); longer ones mean a corrupt message. */
export const XDR_STRING_MAX = 4_194_304;

const pad = (n: number): number => (4 - (n % 4)) % 4;

/**
 * Appends XDR values to a growing buffer. Never throws on valid input; `int`/`uint` throw a
 * RangeError when a number does not fit, so a bug never goes to the daemon as a silent wrap.
 */
export class XdrWriter {
  private buf: Buffer;
  private length = 0;

  constructor(initialBytes = 256) {
    this.buf = Buffer.alloc(initialBytes);
  }

  private reserve(n: number): void {
    if (this.length + n <= this.buf.length) return;
    const next = Buffer.alloc(Math.max(this.buf.length * 2, this.length + n));
    this.buf.copy(next, 0, 0, this.length);
    this.buf = next;
  }

  int(v: number): this {
    if (!Number.isInteger(v) || v < -0x8000_0000 || v > 0x7fff_ffff) throw new RangeError(`cannot encode ${v} as an XDR int`);
    this.reserve(4);
    this.buf.writeInt32BE(v, this.length);
    this.length += 4;
    return this;
  }

  uint(v: number): this {
    if (!Number.isInteger(v) || v < 0 || v > 0xffff_ffff) throw new RangeError(`cannot encode ${v} as an XDR unsigned int`);
    this.reserve(4);
    this.buf.writeUInt32BE(v, this.length);
    this.length += 4;
    return this;
  }

  bool(v: boolean): this {
    return this.int(v ? 1 : 0);
  }

  hyper(v: bigint | number): this {
    this.reserve(8);
    this.buf.writeBigInt64BE(BigInt(v), this.length);
    this.length += 8;
    return this;
  }

  uhyper(v: bigint | number): this {
    this.reserve(8);
    this.buf.writeBigUInt64BE(BigInt(v), this.length);
    this.length += 8;
    return this;
  }

  double(v: number): this {
    this.reserve(8);
    this.buf.writeDoubleBE(v, this.length);
    this.length += 8;
    return this;
  }

  /** Variable-length opaque: length, bytes, zero padding. */
  opaque(bytes: Uint8Array): this {
    this.uint(bytes.length);
    return this.fixedOpaque(bytes);
  }

  /** Fixed-length opaque (remote_uuid is opaque[16]): bytes and zero padding, no length. */
  fixedOpaque(bytes: Uint8Array): this {
    const n = bytes.length + pad(bytes.length);
    this.reserve(n);
    this.buf.set(bytes, this.length);
    this.buf.fill(0, this.length + bytes.length, this.length + n);
    this.length += n;
    return this;
  }

  string(s: string): this {
    const bytes = Buffer.from(s, 'utf8');
    if (bytes.length > XDR_STRING_MAX) throw new RangeError(`cannot encode a string of ${bytes.length} bytes (max ${XDR_STRING_MAX})`);
    return this.opaque(bytes);
  }

  /** `T *x`: 0, or 1 followed by the value. */
  optional<T>(v: T | undefined | null, write: (w: this, v: T) => void): this {
    if (v === undefined || v === null) return this.uint(0);
    this.uint(1);
    write(this, v);
    return this;
  }

  /** `T x<N>`: the count, then each element. */
  array<T>(items: readonly T[], write: (w: this, v: T) => void): this {
    this.uint(items.length);
    for (const item of items) write(this, item);
    return this;
  }

  /** The bytes written so far (a copy, so the writer may be reused). */
  toBuffer(): Buffer {
    return Buffer.from(this.buf.subarray(0, this.length));
  }
}

/**
 * Reads XDR values from a buffer in order. Throws a RangeError when the data runs out or a
 * length exceeds its limit: a truncated or corrupt message must never decode as valid.
 */
export class XdrReader {
  private offset = 0;

  constructor(private readonly buf: Buffer) {}

  private need(n: number): void {
    if (this.offset + n > this.buf.length) {
      throw new RangeError(`cannot decode XDR: need ${n} bytes at offset ${this.offset}, have ${this.buf.length - this.offset}`);
    }
  }

  get remaining(): number {
    return this.buf.length - this.offset;
  }

  int(): number {
    this.need(4);
    const v = this.buf.readInt32BE(this.offset);
    this.offset += 4;
    return v;
  }

  uint(): number {
    this.need(4);
    const v = this.buf.readUInt32BE(this.offset);
    this.offset += 4;
    return v;
  }

  bool(): boolean {
    return this.int() !== 0;
  }

  hyper(): bigint {
    this.need(8);
    const v = this.buf.readBigInt64BE(this.offset);
    this.offset += 8;
    return v;
  }

  uhyper(): bigint {
    this.need(8);
    const v = this.buf.readBigUInt64BE(this.offset);
    this.offset += 8;
    return v;
  }

  double(): number {
    this.need(8);
    const v = this.buf.readDoubleBE(this.offset);
    this.offset += 8;
    return v;
  }

  opaque(max = XDR_STRING_MAX): Buffer {
    const n = this.uint();
    if (n > max) throw new RangeError(`cannot decode XDR: length ${n} exceeds ${max}`);
    return this.fixedOpaque(n);
  }

  fixedOpaque(n: number): Buffer {
    this.need(n + pad(n));
    const bytes = Buffer.from(this.buf.subarray(this.offset, this.offset + n));
    this.offset += n + pad(n);
    return bytes;
  }

  string(max = XDR_STRING_MAX): string {
    return this.opaque(max).toString('utf8');
  }

  optional<T>(read: (r: this) => T): T | undefined {
    const present = this.uint();
    if (present > 1) throw new RangeError(`cannot decode XDR: optional flag ${present}`);
    return present === 1 ? read(this) : undefined;
  }

  array<T>(read: (r: this) => T, max: number): T[] {
    const n = this.uint();
    if (n > max) throw new RangeError(`cannot decode XDR: array of ${n} exceeds ${max}`);
    const out: T[] = [];
    for (let i = 0; i < n; i++) out.push(read(this));
    return out;
  }
}
