import { expect } from 'chai';
import { createReadStream, createWriteStream } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, readdir, rm, stat, symlink, truncate, writeFile, open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import {
  BACKUP_FORMAT_VERSION, type BackupCompression, type BackupHead, readBackup, writeBackup,
} from '../../../../src/providers/backup/backup-archive.js';
import { toolOutput } from '../../../../src/providers/backup/tool-stream.js';
import { tarFileMember } from '../../../../src/providers/backup/tar-scanner.js';
import { isTerminalError } from '../../../../src/shared/errors.js';

const head = (formatVersion = BACKUP_FORMAT_VERSION): BackupHead => ({
  formatVersion, kind: 'Container', hostName: 'web-1', createdAt: '2026-12-01T03:00:00.000Z', layout: 'lxc-dir',
  object: { apiVersion: 'hyperlet.io/v1alpha1', kind: 'Container', metadata: { name: 'web-1' }, spec: { template: 'busybox' } },
});

describe('backup archive (real tar and zstd)', function () {
  this.timeout(60_000);
  let dir: string;
  let src: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'hyperlet-backups-archive-'));
    src = join(dir, 'src');
    await mkdir(join(src, 'rootfs', 'etc'), { recursive: true });
    await writeFile(join(src, 'config'), 'lxc.uts.name = web-1\n');
    await writeFile(join(src, 'rootfs', 'etc', 'hello'), 'hello from the guest\n');
    await chmod(join(src, 'rootfs', 'etc', 'hello'), 0o640);
    await symlink('/etc/hello', join(src, 'rootfs', 'link'));
    // 3 MiB of varied bytes: several chunks and members that do not end on a block.
    const big = Buffer.alloc(3 * 1024 * 1024 + 123);
    for (let i = 0; i < big.length; i++) big[i] = (i * 2654435761) >>> 24;
    await writeFile(join(src, 'rootfs', 'big.bin'), big);
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function write(file: string, compression: BackupCompression, h = head()): Promise<void> {
    await writeBackup({
      head: h, compression, out: createWriteStream(file),
      payload: toolOutput('tar', ['--format=gnu', '-c', '-f', '-', '-C', src, '--numeric-owner', '--xattrs', '--xattrs-include=*', 'config', 'rootfs']),
    });
  }

  async function read(file: string, into: string): Promise<Awaited<ReturnType<typeof readBackup>>> {
    await mkdir(into, { recursive: true });
    return readBackup({ input: createReadStream(file), extractTo: into, label: file });
  }

  for (const compression of ['zstd', 'gzip'] as const) {
    it(`round-trips a tree through ${compression}, and plain tar opens the file`, async () => {
      const file = join(dir, `rt.${compression}`);
      await write(file, compression);
      const out = join(dir, `out-${compression}`);
      const summary = await read(file, out);
      expect(summary.head.hostName).to.equal('web-1');
      expect(summary.trailer.digest).to.match(/^[0-9a-f]{64}$/);
      expect(await readFile(join(out, 'rootfs', 'etc', 'hello'), 'utf8')).to.equal('hello from the guest\n');
      expect((await stat(join(out, 'rootfs', 'etc', 'hello'))).mode & 0o777).to.equal(0o640);
      expect(Buffer.compare(await readFile(join(out, 'rootfs', 'big.bin')), await readFile(join(src, 'rootfs', 'big.bin')))).to.equal(0);
      const listed = execFileSync('tar', ['-t', compression === 'zstd' ? '--zstd' : '-z', '-f', file], { encoding: 'utf8' }).split('\n');
      expect(listed[0]).to.equal('hyperlet-backup.json');
      expect(listed.filter((l) => l !== '').at(-1)).to.equal('hyperlet-backup.sha256');
    });
  }

  const damaged: Record<string, { reason: string; damage: (file: string) => Promise<void>; want: string; compression?: BackupCompression }> = {
    TruncatedZstd: {
      reason: 'a zstd file cut in the middle ends before its trailer',
      compression: 'zstd',
      damage: async (file) => truncate(file, Math.floor((await stat(file)).size / 2)),
      want: 'BackupTruncated',
    },
    Truncated: {
      reason: 'a file cut in the middle ends before its trailer',
      damage: async (file) => truncate(file, Math.floor((await stat(file)).size / 2)),
      want: 'BackupTruncated',
    },
    ChecksumMismatch: {
      reason: 'one byte of file data changed inside a valid gzip stream: only the checksum can tell',
      damage: async (file) => {
        const raw = execFileSync('gzip', ['-dc', file], { maxBuffer: 64 << 20 });
        const at = raw.indexOf('hello from the guest');
        raw[at] = 'j'.charCodeAt(0);
        await writeFile(file, execFileSync('gzip', ['-c'], { input: raw, maxBuffer: 64 << 20 }));
      },
      want: 'BackupChecksumMismatch',
    },
    NotAnArchive: {
      reason: 'a file that is not compressed at all',
      damage: async (file) => writeFile(file, 'just text\n'),
      want: 'BackupNotAnArchive',
    },
    PlainTarNotOurs: {
      reason: 'a gzip tar without our head member first',
      damage: async (file) => writeFile(file, execFileSync('gzip', ['-c'], {
        input: Buffer.concat([tarFileMember('other.txt', Buffer.from('x'), 0), Buffer.alloc(1024)]),
      })),
      want: 'BackupNotAnArchive',
    },
  };
  for (const [name, tc] of Object.entries(damaged)) {
    it(`refuses a damaged archive: ${name}`, async () => {
      const file = join(dir, `damaged-${name}`);
      await write(file, tc.compression ?? 'gzip');
      await tc.damage(file);
      const err = await read(file, join(dir, `out-${name}`)).then(() => undefined, (e: unknown) => e);
      expect(isTerminalError(err), `${tc.reason}: ${String(err)}`).to.equal(true);
      expect((err as { reason: string }).reason, tc.reason).to.equal(tc.want);
    });
  }

  it('refuses a newer format version before extracting anything', async () => {
    const file = join(dir, 'newer.zst');
    await write(file, 'zstd', head(BACKUP_FORMAT_VERSION + 1));
    const out = join(dir, 'out-newer');
    const err = await read(file, out).then(() => undefined, (e: unknown) => e);
    expect((err as { reason?: string }).reason).to.equal('BackupNewerFormat');
    expect(String((err as Error).message)).to.match(/format version 2.*reads up to 1/);
    expect(await readdir(out)).to.deep.equal([]);
  });

  it('lets the caller refuse on the head (a name collision) with nothing extracted', async () => {
    const file = join(dir, 'check.zst');
    await write(file, 'zstd');
    const out = join(dir, 'out-check');
    await mkdir(out);
    const err = await readBackup({
      input: createReadStream(file), extractTo: out,
      check: (h) => {
        throw new Error(`cannot restore: ${h.hostName} exists`);
      },
    }).then(() => undefined, (e: unknown) => e);
    expect(String(err)).to.include('web-1 exists');
    expect(await readdir(out)).to.deep.equal([]);
  });

  it('fails the write when the data tool fails, never writing a trailer', async () => {
    const file = join(dir, 'failed.zst');
    const err = await writeBackup({
      head: head(), out: createWriteStream(file),
      payload: toolOutput('tar', ['--format=gnu', '-c', '-f', '-', '-C', src, 'no-such-member']),
    }).then(() => undefined, (e: unknown) => e);
    expect(String(err)).to.match(/cannot run tar/);
    const fh = await open(file, 'r');
    await fh.close();
  });
});
