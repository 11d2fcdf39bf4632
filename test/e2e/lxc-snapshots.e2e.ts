/**
 * LxcProvider snapshots against the real lxc-* tools, in an isolated lxcpath under /tmp: write a
 * file in the running guest, snapshot, change it, restore, read the original back.
 */
import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import pino from 'pino';
import { API_VERSION } from '../../src/api/v1alpha1/group.js';
import { validateObject } from '../../src/api/v1alpha1/validate.js';
import type { Container } from '../../src/api/v1alpha1/types.js';
import { isTerminalError } from '../../src/shared/errors.js';
import { type Desired, hostNameOf, specHashOf } from '../../src/store/desired.js';
import { objectKey } from '../../src/store/object-key.js';
import { LxcProvider } from '../../src/providers/lxc/lxc-provider.js';
import { snapshotsDir } from '../../src/providers/lxc/lxc-snapshots.js';
import { LxcTools } from '../../src/providers/lxc/lxc-tools.js';
import { SnapshotScheduler, scheduledSnapshotName } from '../../src/reconcile/snapshot-scheduler.js';
import { DesiredStore } from '../../src/store/desired-store.js';

const run = promisify(execFile);
const logger = pino({ level: process.env.HYPERLET_TEST_LOG ?? 'silent' });
const suffix = randomBytes(3).toString('hex');
const signal = (): AbortSignal => AbortSignal.timeout(120_000);

function container(name: string, spec: Record<string, unknown>): Desired<'Container'> {
  const result = validateObject({ apiVersion: API_VERSION, kind: 'Container', metadata: { name, namespace: 'default' }, spec });
  if (!result.ok) throw new Error(`test object invalid: ${JSON.stringify(result.issues)}`);
  const object = result.object as Container;
  return {
    key: objectKey('dir', 'default', 'Container', name), source: 'dir', object, id: `id-${name}-${suffix}`,
    generation: 1, specHash: specHashOf(object.spec), hostName: hostNameOf(object),
  };
}

async function attach(lxcpath: string, name: string, script: string): Promise<string> {
  const { stdout } = await run('lxc-attach', ['-P', lxcpath, '-n', name, '--', '/bin/sh', '-c', script], { timeout: 30_000 });
  return stdout;
}

async function lxcState(lxcpath: string, name: string): Promise<string> {
  const { stdout } = await run('lxc-info', ['-P', lxcpath, '-n', name, '-sH'], { timeout: 30_000 });
  return stdout.trim();
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  return p.then(() => undefined, (e: unknown) => e);
}

describe('LxcProvider snapshots (real lxc-* tools)', function () {
  this.timeout(600_000);
  let lxcpath = '';
  let provider: LxcProvider;
  let d: Desired<'Container'>;

  before(async () => {
    if (process.getuid?.() !== 0) throw new Error('the LXC e2e tests need root; run make test as root');
    lxcpath = await mkdtemp(join(tmpdir(), 'hyperlet-snapshots-e2e-'));
    provider = new LxcProvider({ lxcpath, logger, tools: new LxcTools({ logger }) });
    await provider.probe(signal());
    d = container(`snap-${suffix}`, { template: 'busybox', state: 'Running', gracefulStopSeconds: 0, network: [{ type: 'none' }] });
    await provider.create(d, signal());
    await provider.setState(d, 'Running', (await provider.observe(d, signal()))!, signal());
  });

  after(async () => {
    if (lxcpath === '') return;
    await run('lxc-stop', ['-P', lxcpath, '-n', d.hostName, '-k'], { timeout: 30_000 }).catch(() => undefined);
    await run('lxc-destroy', ['-P', lxcpath, '-n', d.hostName], { timeout: 60_000 }).catch(() => undefined);
    await rm(lxcpath, { recursive: true, force: true });
  });

  it('snapshots a running container, frozen only for the copy', async () => {
    await attach(lxcpath, d.hostName, 'echo original > /etc/snapshot-test');
    const snap = await provider.snapshot(d, 'before', { origin: 'request' }, signal());
    expect(snap.name).to.equal('before');
    expect(snap.memory).to.equal(false);
    expect(snap.specHash).to.equal(d.specHash);
    expect(snap.sizeBytes).to.be.greaterThan(0);
    expect(await lxcState(lxcpath, d.hostName), 'thawed after the copy').to.equal('RUNNING');
    const again = await provider.snapshot(d, 'before', {}, signal());
    expect(again, 'a second call with the same name returns the first').to.deep.equal(snap);
    expect((await provider.listSnapshots(d, signal())).map((s) => s.name)).to.deep.equal(['before']);
  });

  it('refuses memory, a bad name, and a restore while running', async () => {
    const memory = await rejection(provider.snapshot(d, 'mem', { memory: true }, signal()));
    expect(isTerminalError(memory)).to.equal(true);
    const bad = await rejection(provider.snapshot(d, '../escape', {}, signal()));
    expect(String(bad)).to.match(/cannot use "\.\.\/escape" as a snapshot name/);
    const running = await rejection(provider.restoreSnapshot(d, 'before', signal()));
    expect(String(running)).to.match(/while it is running/);
    expect((await provider.listSnapshots(d, signal())).map((s) => s.name)).to.deep.equal(['before']);
  });

  it('restores the rootfs: the original file is back', async () => {
    await attach(lxcpath, d.hostName, 'echo changed > /etc/snapshot-test; echo new > /etc/snapshot-extra');
    expect((await attach(lxcpath, d.hostName, 'cat /etc/snapshot-test')).trim()).to.equal('changed');
    await provider.setState(d, 'Stopped', (await provider.observe(d, signal()))!, signal());
    const missing = await rejection(provider.restoreSnapshot(d, 'nope', signal()));
    expect(isTerminalError(missing) && missing.reason).to.equal('SnapshotNotFound');
    const outcome = await provider.restoreSnapshot(d, 'before', signal());
    expect(outcome.specDiffers).to.equal(false);
    expect(outcome.note).to.match(/restored rootfs from snapshot before/);
    await provider.setState(d, 'Running', (await provider.observe(d, signal()))!, signal());
    expect((await attach(lxcpath, d.hostName, 'cat /etc/snapshot-test')).trim()).to.equal('original');
    expect((await attach(lxcpath, d.hostName, 'test -e /etc/snapshot-extra && echo yes || echo no')).trim()).to.equal('no');
    expect((await readdir(join(lxcpath, d.hostName))).filter((e) => e.startsWith('.rootfs')), 'no restore leftovers').to.deep.equal([]);
  });

  it('never lists a snapshot cut short, and removes it on the next snapshot', async () => {
    const partial = join(snapshotsDir(lxcpath, d.hostName), '.killed.partial');
    await mkdir(join(partial, 'rootfs'), { recursive: true });
    expect((await provider.listSnapshots(d, signal())).map((s) => s.name)).to.deep.equal(['before']);
    await provider.snapshot(d, 'second', { origin: 'schedule' }, signal());
    expect(await stat(partial).then(() => true, () => false)).to.equal(false);
    const list = await provider.listSnapshots(d, signal());
    expect(list.map((s) => [s.name, s.origin])).to.deep.equal([['before', 'request'], ['second', 'schedule']]);
  });

  it('restoring a snapshot taken with another spec keeps the declared spec and says so', async () => {
    const next = container(d.object.metadata.name, { ...d.object.spec, resources: { cpu: 2, memory: '192Mi' } });
    const observed = (await provider.observe(d, signal()))!;
    await provider.update({ ...next, id: d.id }, [
      { path: 'resources.cpu', from: observed.fields['resources.cpu'], to: 2, apply: 'live' },
      { path: 'resources.memory', from: observed.fields['resources.memory'], to: 192 * 1024 * 1024, apply: 'live' },
    ], observed, signal());
    d = { ...next, id: d.id };
    await provider.setState(d, 'Stopped', (await provider.observe(d, signal()))!, signal());
    const outcome = await provider.restoreSnapshot(d, 'before', signal());
    expect(outcome.specDiffers).to.equal(true);
    expect(outcome.note).to.match(/taken with another spec, the declared spec is kept/);
    const after = (await provider.observe(d, signal()))!;
    expect([after.specHash, after.fields['resources.memory']], 'the declared spec, not the snapshot\'s').to.deep.equal([d.specHash, 192 * 1024 * 1024]);
  });

  it('a schedule with retention takes and prunes exactly what the rules say (clock injected)', async () => {
    await provider.deleteSnapshot(d, 'second', signal()); // the scheduled one of an earlier case: start from none
    const clock = { t: Date.parse('2030-01-01T00:00:00Z'), now(): number { return this.t; }, setTimeout: (): unknown => undefined, clearTimeout: (): void => undefined };
    const timed = new LxcProvider({ lxcpath, logger, tools: new LxcTools({ logger }), clock });
    const scheduled = container(d.object.metadata.name, { ...d.object.spec, snapshots: { schedule: '@every 1h', retain: { last: 2 } } });
    const store = new DesiredStore();
    store.upsert({ ...scheduled, id: d.id });
    const records: string[] = [];
    const scheduler = new SnapshotScheduler({ store, provider: timed, clock, logger, record: (_d, type, reason) => records.push(`${type} ${reason}`) });
    const start = clock.t;
    for (const hours of [0, 1, 2, 3]) {
      clock.t = start + hours * 3_600_000;
      await scheduler.runOnce(signal());
    }
    const names = (await readdir(snapshotsDir(lxcpath, d.hostName))).sort();
    expect(names).to.deep.equal(['before', scheduledSnapshotName(start + 2 * 3_600_000), scheduledSnapshotName(start + 3 * 3_600_000)].sort());
    expect(records).to.deep.equal(['Normal SnapshotTaken', 'Normal SnapshotTaken', 'Normal SnapshotTaken', 'Normal SnapshotPruned']);
    for (const n of names.filter((x) => x.startsWith('auto-'))) await provider.deleteSnapshot(d, n, signal());
  });

  it('deletes a snapshot, and a missing one is success', async () => {
    await provider.deleteSnapshot(d, 'second', signal());
    await provider.deleteSnapshot(d, 'second', signal());
    expect((await provider.listSnapshots(d, signal())).map((s) => s.name)).to.deep.equal(['before']);
  });

  it('deleting the container removes its snapshots', async () => {
    await provider.delete(d, signal());
    expect(await stat(snapshotsDir(lxcpath, d.hostName)).then(() => true, () => false)).to.equal(false);
    expect(await provider.listSnapshots(d, signal())).to.deep.equal([]);
  });
});
