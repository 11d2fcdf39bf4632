/**
 * The backing images of VM disks: a host path used in place, or a URL downloaded once into the
 * image cache (verified against its sha256, then checked with qemu-img: qcow2 or raw only, no
 * backing chain). Either way the format and virtual size come from `qemu-img info`, never from
 * the name, and an image larger than the disk's declared size is refused. While a URL downloads,
 * resolve() throws StepPendingError with the bytes so far (status shows them).
 */
import { constants as fsConstants } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import type { VirtualMachineDisk } from '../../api/v1alpha1/types.js';
import { StepPendingError, TerminalError, errorMessage } from '../../shared/errors.js';
import type { ImageCache } from '../images/image-cache.js';
import { type DiskImageInfo, inspectDiskImage } from './disk-image.js';

/** A disk's backing image, ready to be the base of its qcow2 overlay. */
export interface ResolvedImage {
  readonly path: string;
  readonly format: 'qcow2' | 'raw';
  readonly virtualSizeBytes: number;
}

/** Whether a disk's image names a URL (anything else is a host path). */
export function isImageUrl(image: string): boolean {
  return /^(file|https?):\/\//.test(image);
}

/** Resolves disks' images to files with format and size (see the file's doc). */
export class DiskImages {
  /** qemu-img's answer per cached file: a cached download never changes under its name. */
  private readonly inspected = new Map<string, DiskImageInfo>();

  constructor(private readonly cache: ImageCache | undefined) {}

  /**
   * The image of `disk` (of instance `hostName`), or undefined when it has none. Throws
   * StepPendingError while a URL downloads, TerminalError ImageNotFound, ImageChecksumMismatch,
   * InvalidImage or ImageTooLarge for what retrying cannot fix.
   */
  async resolve(hostName: string, disk: VirtualMachineDisk, declaredBytes: number | undefined): Promise<ResolvedImage | undefined> {
    if (disk.image === undefined) return undefined;
    const image = disk.image;
    let info: DiskImageInfo;
    let path: string;
    if (isImageUrl(image)) {
      if (this.cache === undefined) throw new TerminalError('InvalidSpec', `cannot use image ${image} for ${hostName}: this daemon has no image cache`);
      const source = { url: image, ...(disk.sha256 === undefined ? {} : { sha256: disk.sha256 }) };
      const fetched = await this.cache.file(source, async (file, signal) => {
        const st = await stat(file);
        this.inspected.set(file, await inspectDiskImage(file, image, st.size, true, signal));
      });
      if (fetched.state === 'pending') {
        const total = fetched.totalBytes === undefined ? '' : ` of ${fetched.totalBytes}`;
        const [reason, message] = fetched.phase === 'downloading'
          ? ['DownloadingImage', `Downloading image ${image}: ${fetched.receivedBytes}${total} bytes`]
          : ['CheckingImage', `Checking image ${image} (${fetched.receivedBytes} bytes) with qemu-img`];
        throw new StepPendingError(reason, message, Math.min(5_000, 250 * 2 ** Math.min(fetched.polls, 5)));
      }
      path = fetched.path;
      const known = this.inspected.get(path);
      info = known ?? await inspectDiskImage(path, image, (await stat(path)).size, true);
      this.inspected.set(path, info);
    } else {
      path = image;
      info = await inspectDiskImage(path, image, await this.regularFileBytes(image), false);
    }
    if (declaredBytes !== undefined && info.virtualSizeBytes > declaredBytes) {
      throw new TerminalError('ImageTooLarge',
        `cannot create disk ${disk.name} of ${hostName}: image ${image} is ${info.virtualSizeBytes} bytes (virtual size), `
        + `larger than the declared size ${disk.size ?? ''} (${declaredBytes} bytes); declare a size of at least ${info.virtualSizeBytes} bytes`);
    }
    return { path, format: info.format, virtualSizeBytes: info.virtualSizeBytes };
  }

  /** The size of a host image that must be a regular file (never a device, FIFO or link). */
  private async regularFileBytes(image: string): Promise<number> {
    try {
      const fh = await open(image, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK | fsConstants.O_NOFOLLOW);
      try {
        const st = await fh.stat();
        if (!st.isFile()) throw new Error('not a regular file');
        return st.size;
      } finally {
        await fh.close();
      }
    } catch (err) {
      throw new TerminalError('ImageNotFound', `cannot read backing image ${image}: ${errorMessage(err)}`, { cause: err });
    }
  }
}
