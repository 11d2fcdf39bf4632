/**
 * The part of a qcow2 header the host policy needs: whether a file is qcow2, and which other
 * files it makes QEMU open (its backing file, and in version 3 an external data file). Pure: it
 * reads bytes already read, never a file. Layout: QEMU's docs/interop/qcow2.txt.
 */

/** "QFI\xfb": the first four bytes of every qcow2 image. */
const QCOW2_MAGIC = 0x514649fb;
/** Header extension naming an external data file (version 3). */
const EXT_DATA_FILE = 0x44415441;
/** Version 2 headers are 72 bytes; version 3 says its length at offset 100. */
const V2_HEADER_BYTES = 72;
/** Extensions are read from the first 64 KiB at most: QEMU keeps them inside the first cluster. */
export const QCOW2_READ_BYTES = 64 * 1024;

/** What a qcow2 header says about the image's own references: backing and data files. */
export type Qcow2Header =
  | { readonly qcow2: false }
  | {
    readonly qcow2: true;
    readonly version: number;
    /** The backing file name as stored (relative names are relative to the image's directory). */
    readonly backingFile?: string;
    /** The external data file name as stored, when the image has one. */
    readonly dataFile?: string;
    /** The header points past the bytes given: it cannot be checked (treat as refused). */
    readonly unreadable?: string;
  };

/** Reads the header in `bytes` (the start of the file). */
export function parseQcow2Header(bytes: Uint8Array): Qcow2Header {
  if (bytes.length < 4) return { qcow2: false };
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (view.getUint32(0) !== QCOW2_MAGIC) return { qcow2: false };
  if (bytes.length < V2_HEADER_BYTES) return { qcow2: true, version: 0, unreadable: 'the header is cut short' };
  const version = view.getUint32(4);
  const decoder = new TextDecoder('utf-8', { fatal: false });
  const text = (offset: number, length: number): string | undefined =>
    (offset + length <= bytes.length ? decoder.decode(bytes.subarray(offset, offset + length)) : undefined);

  let backingFile: string | undefined;
  const backingOffset = Number(view.getBigUint64(8));
  const backingSize = view.getUint32(16);
  if (backingOffset !== 0 && backingSize > 0) {
    backingFile = text(backingOffset, backingSize);
    if (backingFile === undefined) {
      return { qcow2: true, version, unreadable: `its backing file name lies at byte ${backingOffset}, past the header read` };
    }
  }
  let dataFile: string | undefined;
  if (version >= 3) {
    if (bytes.length < 104) return { qcow2: true, version, unreadable: 'the version 3 header is cut short' };
    let offset = view.getUint32(100);
    for (let n = 0; n < 256; n++) {
      if (offset + 8 > bytes.length) return { qcow2: true, version, unreadable: 'its header extensions run past the header read' };
      const type = view.getUint32(offset);
      const length = view.getUint32(offset + 4);
      if (type === 0) break;
      if (type === EXT_DATA_FILE) {
        dataFile = text(offset + 8, length);
        if (dataFile === undefined) return { qcow2: true, version, unreadable: 'its data file name runs past the header read' };
      }
      offset += 8 + Math.ceil(length / 8) * 8;
    }
  }
  return { qcow2: true, version, ...(backingFile === undefined ? {} : { backingFile }), ...(dataFile === undefined ? {} : { dataFile }) };
}
