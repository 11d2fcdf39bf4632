import { expect } from 'chai';
import { createReadStream } from 'node:fs';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { BACKUP_FORMAT_VERSION, readBackupHead, writeBackup } from '../../../../src/providers/backup/backup-archive.js';
import { toolOutput } from '../../../../src/providers/backup/tool-stream.js';
import type { BackupOptions } from '../../../../src/providers/provider.js';
import { SnapshotScheduler, backupCopies, scheduledSnapshotName } from '../../../../src/reconcile/snapshot-scheduler.js';
import { DesiredStore } from '../../../../src/store/desired-store.js';
import type { Desired } from '../../../../src/store/desired.js';
import { container, observedAs } from '../../../fakes/desired-objects.js';
import { FakeProvider } from '../../../fakes/fake-provider.js';

const HOUR = 3_600_000;
const T0 = Date.parse('2026-11-30T00:00:00Z');

/** A FakeProvider whose backup() writes a real archive of a small tree (real tar and zstd). */
class FakeBackupProvider extends FakeProvider<'Container'> {
  constructor(private readonly tree: string) {
    super('Container');
  }

  async backup(d: Desired<'Container'>, options: BackupOptions): Promise<Awaited<ReturnType<typeof writeBackup>>> {
    this.calls.push(`backup ${d.hostName}`);
    return writeBackup({
      head: { formatVersion: BACKUP_FORMAT_VERSION, kind: 'Container', hostName: d.hostName, createdAt: new Date(this.now()).toISOString(), layout: 'lxc-dir', object: {} },
      payload: toolOutput('tar', ['-c', '-f', '-', '-C', this.tree, 'rootfs']), out: options.out,
    });
  }
}

describe('spec.backups through the SnapshotScheduler (real archive files, clock injected)', function () {
  this.timeout(60_000);
  let dir: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'hyperlet-backups-scheduled-'));
    await writeFile(join(dir, 'placeholder'), '');
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  it('writes a backup when due, prunes by the retain rules, and never touches other files', async () => {
    const tree = await mkdtemp(join(dir, 'tree-'));
    await writeFile(join(tree, 'placeholder'), 'x');
    await import('node:fs/promises').then((fs) => fs.mkdir(join(tree, 'rootfs')));
    const out = await mkdtemp(join(dir, 'out-'));
    await writeFile(join(out, 'web.manual.tar.zst'), 'a backup made by hand: never pruned');
    const d = container('web', { backups: { schedule: '@every 1h', retain: { last: 2 }, directory: out } });
    const provider = new FakeBackupProvider(tree);
    const store = new DesiredStore();
    store.upsert(d);
    provider.instances.set(d.hostName, observedAs(d));
    const clock = { t: T0, now(): number { return this.t; }, setTimeout: (): unknown => undefined, clearTimeout: (): void => undefined };
    provider.now = () => clock.t;
    const records: string[] = [];
    const scheduler = new SnapshotScheduler({
      store, provider, clock, logger: pino({ level: 'silent' }), copies: backupCopies(provider, clock),
      record: (_d, type, reason, message) => records.push(`${type} ${reason}: ${message}`),
    });
    const signal = new AbortController().signal;
    for (const offset of [0, HOUR, 1.5 * HOUR, 2 * HOUR, 3 * HOUR]) {
      clock.t = T0 + offset;
      await scheduler.runOnce(signal);
    }
    const files = (await readdir(out)).sort();
    expect(files).to.deep.equal([
      `web.${scheduledSnapshotName(T0 + 2 * HOUR)}.tar.zst`, `web.${scheduledSnapshotName(T0 + 3 * HOUR)}.tar.zst`, 'web.manual.tar.zst',
    ]);
    expect(provider.calls.filter((c) => c.startsWith('backup'))).to.have.length(3);
    expect(records.filter((r) => r.startsWith('Normal BackedUp'))).to.have.length(3);
    expect(records.filter((r) => r.startsWith('Normal BackupPruned'))).to.deep.equal([
      `Normal BackupPruned: Pruned scheduled backup ${scheduledSnapshotName(T0 + HOUR)} (retain rules)`,
    ]);
    const head = await readBackupHead(createReadStream(join(out, files[1] ?? '')), 'scheduled');
    expect(head.hostName).to.equal('web');
  });

  it('records a failure as BackupFailed and leaves no partial file', async () => {
    const out = await mkdtemp(join(dir, 'out-fail-'));
    const d = container('db', { backups: { schedule: '@every 1h', directory: out } });
    const provider = new FakeBackupProvider(join(dir, 'no-such-tree'));
    const store = new DesiredStore();
    store.upsert(d);
    const clock = { t: T0, now(): number { return this.t; }, setTimeout: (): unknown => undefined, clearTimeout: (): void => undefined };
    const records: string[] = [];
    const scheduler = new SnapshotScheduler({
      store, provider, clock, logger: pino({ level: 'silent' }), copies: backupCopies(provider, clock),
      record: (_d, type, reason) => records.push(`${type} ${reason}`),
    });
    const signal = new AbortController().signal;
    await scheduler.runOnce(signal);
    clock.t = T0 + HOUR;
    await scheduler.runOnce(signal);
    expect(records).to.deep.equal(['Warning BackupFailed']);
    expect(await readdir(out)).to.deep.equal([]);
  });
});
