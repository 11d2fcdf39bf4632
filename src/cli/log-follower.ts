/**
 * Follows a log file that is rotated by renaming (virtlogd: NAME.log -> NAME.log.0; hyperlet's
 * container logs: NAME -> NAME.1): each `copy()` copies what was appended since the last one, and
 * when the file was replaced, first the rest of the old file (found under its rotated name by its
 * inode), then the new file from its start. Nothing is printed twice; bytes are lost only when the
 * file rotated twice between two copies.
 */
import { statSync } from 'node:fs';

/** Copies bytes [start, end] (inclusive) of `file` to the output. */
export type CopyRange = (file: string, start: number, end: number) => Promise<void>;

/** Where a followed log has got to. */
export class LogFollower {
  private inode: number | undefined;
  private offset = 0;

  constructor(private readonly path: string, private readonly rotated: string | undefined, private readonly copyRange: CopyRange) {}

  /** Copies what is new since the last call. */
  async copy(): Promise<void> {
    let current: { ino: number; size: number };
    try {
      current = statSync(this.path);
    } catch {
      return; // between a rename and the new file: the next call sees it
    }
    if (this.inode !== undefined && current.ino !== this.inode) {
      const old = this.rotatedPart();
      if (old !== undefined && old.size > this.offset) await this.copyRange(this.rotated ?? '', this.offset, old.size - 1);
      this.offset = 0;
    }
    this.inode = current.ino;
    if (current.size < this.offset) this.offset = 0; // truncated in place
    if (current.size === this.offset) return;
    const start = this.offset;
    this.offset = current.size;
    await this.copyRange(this.path, start, current.size - 1);
  }

  private rotatedPart(): { size: number } | undefined {
    if (this.rotated === undefined) return undefined;
    try {
      const s = statSync(this.rotated);
      return s.ino === this.inode ? s : undefined;
    } catch {
      return undefined;
    }
  }
}
