/**
 * What a VM disk image is, read by `qemu-img info --output=json` (argv only), never from its name:
 * its format, virtual size and any backing file. Only qcow2 and raw are used. A downloaded image
 * must stand alone: a backing file or an external data file would make QEMU open a path the image
 * names, so either is refused.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { TerminalError, errorMessage } from '../../shared/errors.js';

const run = promisify(execFile);

/** The facts of one image file hyperlet uses. */
export interface DiskImageInfo {
  readonly format: 'qcow2' | 'raw';
  readonly virtualSizeBytes: number;
  readonly backingFile?: string;
}

/** The parts of qemu-img's JSON this reads. */
interface QemuImgInfo {
  readonly format?: unknown;
  readonly 'virtual-size'?: unknown;
  readonly 'actual-size'?: unknown;
  readonly 'backing-filename'?: unknown;
  readonly 'format-specific'?: { readonly data?: { readonly 'data-file'?: unknown } };
}

/**
 * Reads qemu-img's JSON for `path` into DiskImageInfo. Throws TerminalError InvalidImage (naming
 * `what`, e.g. the URL) for any other format and, when `standalone` (a download), a raw file that
 * is not whole 512-byte sectors (no disk: an error page, a text file) or a backing or external data file.
 */
export function diskImageInfoOf(json: string, what: string, fileBytes: number, standalone: boolean): DiskImageInfo {
  let info: QemuImgInfo;
  try {
    info = JSON.parse(json) as QemuImgInfo;
  } catch (err) {
    throw new Error(`cannot read qemu-img info of ${what}: ${errorMessage(err)}`, { cause: err });
  }
  const format = info.format;
  if (format !== 'qcow2' && format !== 'raw') {
    throw new TerminalError('InvalidImage', `cannot use image ${what}: its format is ${String(format)}; only qcow2 and raw disk images are used`);
  }
  const virtualSizeBytes = Number(info['virtual-size']);
  if (!Number.isSafeInteger(virtualSizeBytes) || virtualSizeBytes <= 0) {
    throw new TerminalError('InvalidImage', `cannot use image ${what}: qemu-img reports no virtual size`);
  }
  if (standalone && format === 'raw' && (fileBytes === 0 || fileBytes % 512 !== 0)) {
    throw new TerminalError('InvalidImage',
      `cannot use image ${what}: it is no disk image (neither qcow2 nor a raw disk of whole 512-byte sectors: ${fileBytes} bytes)`);
  }
  const backing = info['backing-filename'];
  if (standalone && typeof backing === 'string') {
    throw new TerminalError('InvalidImage', `cannot use image ${what}: it names a backing file (${backing}); a downloaded image must stand alone`);
  }
  if (standalone && info['format-specific']?.data?.['data-file'] !== undefined) {
    throw new TerminalError('InvalidImage', `cannot use image ${what}: it names an external data file; a downloaded image must stand alone`);
  }
  return { format, virtualSizeBytes, ...(typeof backing === 'string' ? { backingFile: backing } : {}) };
}

/** Runs `qemu-img info --output=json` on `path` and reads it with diskImageInfoOf. */
export async function inspectDiskImage(path: string, what: string, fileBytes: number, standalone: boolean, signal?: AbortSignal): Promise<DiskImageInfo> {
  let stdout: string;
  try {
    ({ stdout } = await run('qemu-img', ['info', '--output=json', '-U', '--', path], {
      timeout: 60_000, maxBuffer: 4 * 1024 * 1024, ...(signal === undefined ? {} : { signal }),
    }));
  } catch (err) {
    const raw = (err as { stderr?: unknown }).stderr;
    const stderr = typeof raw === 'string' ? raw.trim().split('\n')[0] ?? '' : '';
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new Error('cannot inspect disk images: qemu-img is missing (apt-get install qemu-utils)', { cause: err });
    throw new TerminalError('InvalidImage', `cannot use image ${what}: qemu-img cannot read it (${stderr || errorMessage(err)})`, { cause: err });
  }
  return diskImageInfoOf(stdout, what, fileBytes, standalone);
}
