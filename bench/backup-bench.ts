/**
 * Backup of a 1 GiB VM disk (512 MiB of it written with library bytes, the rest never written)
 * the way LibvirtBackups makes it (qemu-img convert to a standalone qcow2, then the archive:
 * tar, SHA-256, zstd -T0 through providers/backup/backup-archive.ts) against `qemu-img convert
 * -c` of the same disk, which compresses with zlib inside the qcow2. Both write a file in the
 * same directory. Prints each run's seconds, the throughput (virtual disk bytes per second, the
 * better of 3) and the ratio hyperlet / qemu-img; the target is a ratio of at least 0.9.
 * Also restores the archive and checks the disk's bytes with qemu-img compare.
 */
import { execFile } from 'node:child_process';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, open, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { BACKUP_FORMAT_VERSION, readBackup, writeBackup } from '../src/providers/backup/backup-archive.js';
import { toolOutput } from '../src/providers/backup/tool-stream.js';

const run = promisify(execFile);
const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

/** 32 MiB of shared-library bytes: compressible about as much as a system disk is. */
async function libraryBytes(): Promise<Buffer> {
  const dir = '/usr/lib/x86_64-linux-gnu';
  const parts: Buffer[] = [];
  let total = 0;
  for (const name of (await readdir(dir)).sort()) {
    if (!name.includes('.so') || total >= 32 * MiB) continue;
    const st = await stat(join(dir, name)).catch(() => undefined);
    if (st?.isFile() !== true) continue;
    const bytes = await readFile(join(dir, name));
    parts.push(bytes);
    total += bytes.length;
  }
  return Buffer.concat(parts).subarray(0, 32 * MiB);
}

async function seconds(what: () => Promise<unknown>): Promise<number> {
  const start = process.hrtime.bigint();
  await what();
  return Number(process.hrtime.bigint() - start) / 1e9;
}

/** Runs the comparison; returns the figures. */
export async function backupBench(rounds = 3): Promise<Record<string, number | string>> {
  const dir = await mkdtemp(join(tmpdir(), 'hyperlet-backup-bench-'));
  try {
    const raw = join(dir, 'disk.raw');
    const fh = await open(raw, 'w');
    const lib = await libraryBytes();
    for (let at = 0; at < 512 * MiB; at += lib.length) {
      // A different first byte per copy, so no two 32 MiB pieces are equal.
      lib[0] = at / lib.length;
      await fh.write(lib, 0, lib.length, at);
    }
    await fh.truncate(GiB);
    await fh.close();
    const disk = join(dir, 'disk.qcow2');
    await run('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'qcow2', raw, disk]);
    await rm(raw);
    const ours: number[] = [];
    const theirs: number[] = [];
    let archiveBytes = 0;
    let qemuBytes = 0;
    for (let i = 0; i < rounds; i++) {
      const archive = join(dir, `backup-${i}.tar.zst`);
      ours.push(await seconds(async () => {
        const scratch = join(dir, `scratch-${i}`);
        await mkdir(join(scratch, 'disks'), { recursive: true });
        for await (const chunk of toolOutput('qemu-img', ['convert', '-q', '-O', 'qcow2', '-f', 'qcow2', disk, join(scratch, 'disks', 'data.qcow2')])) void chunk;
        await writeBackup({
          head: { formatVersion: BACKUP_FORMAT_VERSION, kind: 'VirtualMachine', hostName: 'bench', createdAt: new Date().toISOString(), layout: 'libvirt-qcow2', object: {} },
          payload: toolOutput('tar', ['--format=gnu', '-c', '-f', '-', '-C', scratch, 'disks']), out: createWriteStream(archive),
        });
        await rm(scratch, { recursive: true });
      }));
      archiveBytes = (await stat(archive)).size;
      const compressed = join(dir, `qemu-${i}.qcow2`);
      theirs.push(await seconds(() => run('qemu-img', ['convert', '-q', '-c', '-f', 'qcow2', '-O', 'qcow2', disk, compressed])));
      qemuBytes = (await stat(compressed)).size;
      if (i > 0) await rm(archive);
      await rm(compressed);
    }
    const out = join(dir, 'restored');
    await mkdir(out);
    const restoreSeconds = await seconds(() => readBackup({ input: createReadStream(join(dir, 'backup-0.tar.zst')), extractTo: out }));
    await run('qemu-img', ['compare', '-q', disk, join(out, 'disks', 'data.qcow2')]);
    const best = (xs: number[]): number => Math.min(...xs);
    const oursMiBs = GiB / MiB / best(ours);
    const theirsMiBs = GiB / MiB / best(theirs);
    return {
      diskVirtualGiB: 1, diskWrittenMiB: 512,
      hyperletSeconds: ours.map((s) => s.toFixed(2)).join(' '), qemuImgCompressSeconds: theirs.map((s) => s.toFixed(2)).join(' '),
      hyperletMiBps: Number(oursMiBs.toFixed(1)), qemuImgCompressMiBps: Number(theirsMiBs.toFixed(1)),
      throughputRatio: Number((oursMiBs / theirsMiBs).toFixed(2)), target: '>= 0.9',
      archiveMiB: Number((archiveBytes / MiB).toFixed(1)), qemuImgCompressedMiB: Number((qemuBytes / MiB).toFixed(1)),
      restoreSeconds: Number(restoreSeconds.toFixed(2)), restoredIdentical: 'yes (qemu-img compare)',
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
