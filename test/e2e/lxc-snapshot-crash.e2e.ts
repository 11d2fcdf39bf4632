/**
 * Crash points of LXC snapshots and restores, one by one: `hyperlet run` (dir source, real LXC in
 * an isolated lxcpath) is started with one failpoint enabled, dies there by SIGKILL while it acts
 * on a hyperlet.io/snapshot-request, a hyperlet.io/restore-request or a schedule's pruning, is
 * started again without it, and the exact end state is asserted: the container present, complete,
 * running with its declared memory, never frozen; exactly the snapshots expected, each complete,
 * no partial or half-deleted snapshot, no rootfs aside; after a restore the guest's file is the
 * snapshot's; the state DB holding exactly the declared object. Needs root and the LXC packages.
 */
import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { access, chmod, mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pino from 'pino';
import { API_VERSION } from '../../src/api/v1alpha1/group.js';
import type { Container } from '../../src/api/v1alpha1/types.js';
import { validateObject } from '../../src/api/v1alpha1/validate.js';
import { markerPath } from '../../src/providers/lxc/container-paths.js';
import { LxcProvider } from '../../src/providers/lxc/lxc-provider.js';
import { snapshotsDir } from '../../src/providers/lxc/lxc-snapshots.js';
import { LxcTools } from '../../src/providers/lxc/lxc-tools.js';
import { readMarker } from '../../src/providers/lxc/ownership-marker.js';
import { type Desired, hostNameOf, specHashOf } from '../../src/store/desired.js';
import { objectKey } from '../../src/store/object-key.js';
import { DaemonProcess, REPO_ROOT, removeLxcTestDir } from './support/crash-daemon.js';
import { type DeclaredContainer, LxcEndState, containerManifest, waitForEndState } from './support/lxc-end-state.js';

const run = promisify(execFile);
const name = `restore-crash${randomBytes(2).toString('hex')}`;
const FILE = '/etc/restore-crash';
const SNAP = 'hyperlet.io/snapshot-request';
const RESTORE = 'hyperlet.io/restore-request';

describe('crash points: LXC snapshots and restores (kill -9 exactly there, then restart)', function () {
  this.timeout(900_000);
  let tmp = '';
  let manifests = '';
  let lxcpath = '';
  let statePath = '';
  let daemon: DaemonProcess | undefined;
  let starts = 0;
  let end: LxcEndState;

  const lxc = (tool: string, args: string[]): Promise<{ stdout: string }> => run(tool, ['-P', lxcpath, ...args], { timeout: 60_000 });
  const attach = async (script: string): Promise<string> => (await lxc('lxc-attach', ['-n', name, '--', '/bin/sh', '-c', script])).stdout.trim();

  function start(failpoints: readonly string[] = []): DaemonProcess {
    starts += 1;
    return DaemonProcess.start([
      '--source', `dir:${manifests}`, '--lxcpath', lxcpath, '--state', statePath, '--http', 'off',
      '--kinds', 'Container', '--resync', '5s', '--log-level', 'info',
    ], join(tmp, `daemon-${starts}.log`), failpoints);
  }

  const converged = async (): Promise<void> => {
    await waitForEndState(() => end.problems(), 90_000, async () => await daemon?.tail() ?? '');
  };

  const declare = async (spec: DeclaredContainer): Promise<void> => {
    end.declared.set(name, spec);
    await writeFile(join(manifests, `${name}.yaml`), containerManifest(name, spec));
  };

  /** Declares `spec` with the daemon armed at `point`, waits for it to die there, restarts it and waits for the exact end state. */
  async function crashAt(point: string, spec: DeclaredContainer): Promise<void> {
    await daemon?.kill();
    daemon = start([point]);
    await declare(spec);
    await daemon.diedAt(point);
    daemon = start();
    await converged();
  }

  const base = { memoryMiB: 128, state: 'Running' } as const;

  before(async () => {
    if (process.getuid?.() !== 0) throw new Error('the LXC crash e2e test needs root; run make test as root');
    await access(join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js')).catch(() => { throw new Error('dist/ is missing: run make build first'); });
    tmp = await mkdtemp(join(tmpdir(), 'hyperlet-restore-crash-'));
    // Unprivileged containers' mapped root must pass through the directories above their lxcpath.
    await chmod(tmp, 0o711);
    manifests = join(tmp, 'manifests');
    lxcpath = join(tmp, 'lxc');
    statePath = join(tmp, 'state', 'state.db');
    await mkdir(manifests);
    await mkdir(lxcpath);
    end = new LxcEndState(lxcpath, statePath);
    await declare({ ...base, snapshots: [] });
    daemon = start();
    await converged();
    await attach(`echo one > ${FILE}`);
  });

  afterEach(async function () {
    if (this.currentTest?.state === 'failed') console.error(await daemon?.tail() ?? '');
  });

  after(async () => {
    await daemon?.kill();
    await removeLxcTestDir(tmp, lxcpath);
  });

  const snapshotFile = (snapshot: string): Promise<string> =>
    readFile(join(snapshotsDir(lxcpath, name), snapshot, 'rootfs', FILE), 'utf8').then((t) => t.trim());

  // Snapshot: frozen for the copy, copied, recorded, renamed into place.
  it('snapshot: killed with the container frozen, nothing copied yet', async () => {
    await crashAt('lxc.snapshot.frozen', { ...base, annotations: { [SNAP]: 's1' }, snapshots: ['s1'] });
    expect(await snapshotFile('s1')).to.equal('one');
  });
  it('snapshot: killed with the rootfs copied, the container still frozen', () =>
    crashAt('lxc.snapshot.copied', { ...base, annotations: { [SNAP]: 's2' }, snapshots: ['s1', 's2'] }));
  it('snapshot: killed with the record\'s temporary file written', () =>
    crashAt('write:snapshot.json', { ...base, annotations: { [SNAP]: 's3' }, snapshots: ['s1', 's2', 's3'] }));
  it('snapshot: killed right after the snapshot is in place: it is not taken twice', async () => {
    await crashAt('lxc.snapshot.placed', { ...base, annotations: { [SNAP]: 's4' }, snapshots: ['s1', 's2', 's3', 's4'] });
    const log = await readFile(join(tmp, `daemon-${starts}.log`), 'utf8');
    expect(log, 'the restarted daemon found it and took none').to.not.contain('"msg":"snapshot taken"');
  });

  // Restore (of s1, which holds "one"): copied beside, old rootfs aside, new one in, marker.
  const restoreCases: [string, string, string][] = [
    ['killed with the snapshot\'s rootfs copied beside the container\'s', 'lxc.restore.copied', 's1@1'],
    ['killed with the container\'s rootfs moved aside (it has none)', 'lxc.restore.swapped-out', 's1@2'],
    ['killed with the snapshot\'s rootfs in place, the old one not removed', 'lxc.restore.swapped', 's1@3'],
    ['killed with the marker recording the request, before the step returns', 'lxc.restore.marked', 's1@4'],
  ];
  for (const [what, point, request] of restoreCases) {
    it(`restore: ${what}`, async () => {
      await attach(`echo changed > ${FILE}`);
      await crashAt(point, { ...base, annotations: { [SNAP]: 's4', [RESTORE]: request }, snapshots: ['s1', 's2', 's3', 's4'] });
      expect(await attach(`cat ${FILE}`), 'the snapshot\'s file').to.equal('one');
      expect((await readMarker(markerPath(lxcpath, name)))?.restoreRequest, 'the request recorded, so acted on once').to.equal(request);
    });
  }

  // Pruning by the schedule's retain rules: the snapshot renamed out of the list, not yet removed.
  it('prune: killed with a pruned snapshot moved out of the list, before it is removed', async () => {
    // Two scheduled snapshots from last year: at start one run is due, then both are pruned (retain last 1).
    const marker = await readMarker(markerPath(lxcpath, name));
    const validated = validateObject({
      apiVersion: API_VERSION, kind: 'Container', metadata: { name, namespace: 'default' },
      spec: { template: 'busybox', state: 'Running', gracefulStopSeconds: 0, network: [{ type: 'none' }] },
    });
    if (!validated.ok || marker === undefined) throw new Error('cannot build the test object');
    const object = validated.object as Container;
    const d: Desired<'Container'> = {
      key: objectKey('dir', 'default', 'Container', name), source: 'dir', object, id: marker.id,
      generation: 1, specHash: specHashOf(object.spec), hostName: hostNameOf(object),
    };
    const logger = pino({ level: 'silent' });
    for (const [snapshot, at] of [['auto-20251101t000000z', '2025-11-01T00:00:00Z'], ['auto-20251102t000000z', '2025-11-02T00:00:00Z']] as const) {
      // Time stands at `at` (the snapshot's name and record); waits (the freezer's) still pass.
      const clock = { now: (): number => Date.parse(at), setTimeout: (fn: () => void, ms: number): unknown => setTimeout(fn, ms), clearTimeout: (h: unknown): void => clearTimeout(h as NodeJS.Timeout) };
      const provider = new LxcProvider({ lxcpath, logger, tools: new LxcTools({ logger }), clock });
      await provider.snapshot(d, snapshot, { origin: 'schedule' }, AbortSignal.timeout(60_000));
    }
    await crashAt('lxc.snapshot.delete.moved', {
      ...base, annotations: { [SNAP]: 's4', [RESTORE]: 's1@4' }, snapshotsSpec: '{schedule: "@every 1h", retain: {last: 1}}',
      snapshots: ['s1', 's2', 's3', 's4', 'auto-'],
    });
  });
});
