/**
 * Crash points of the LXC provider and the state DB, one by one: `hyperlet run` (dir source, real
 * LXC in an isolated lxcpath) is started with one failpoint enabled, dies there by SIGKILL, is
 * started again without it, and the exact end state is asserted: every declared container present,
 * complete, in its declared state and with its declared memory in both config and cgroup, no
 * duplicate, nothing else in the lxcpath (no staging, trash or temporary file), the state DB
 * holding exactly the declared objects, and the containers hyperlet does not own untouched.
 * Needs root and the LXC packages (`make host`).
 */
import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { access, chmod, mkdir, mkdtemp, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { DaemonProcess, REPO_ROOT, removeLxcTestDir } from './support/crash-daemon.js';
import { type DeclaredContainer, LxcEndState, containerManifest, waitForEndState } from './support/lxc-end-state.js';

const run = promisify(execFile);
const suffix = randomBytes(2).toString('hex');
const n = (letter: string): string => `crash${suffix}-${letter}`;

describe('crash points: LXC provider and state DB (kill -9 exactly there, then restart)', function () {
  this.timeout(900_000);
  let tmp = '';
  let manifests = '';
  let lxcpath = '';
  let statePath = '';
  let daemon: DaemonProcess | undefined;
  let starts = 0;
  let end: LxcEndState;

  const lxc = (tool: string, args: string[]): Promise<{ stdout: string }> => run(tool, ['-P', lxcpath, ...args], { timeout: 60_000 });

  function start(failpoints: readonly string[] = []): DaemonProcess {
    starts += 1;
    return DaemonProcess.start([
      '--source', `dir:${manifests}`, '--lxcpath', lxcpath, '--state', statePath, '--http', 'off',
      '--kinds', 'Container', '--resync', '10s', '--log-level', 'info', '--policy', join(tmp, 'policy.yaml'),
    ], join(tmp, `daemon-${starts}.log`), failpoints);
  }

  const converged = async (): Promise<void> => {
    await waitForEndState(() => end.problems(), 60_000, async () => await daemon?.tail() ?? '');
  };

  /**
   * Runs `change` with the daemon armed at `point`, waits for it to die there, starts it again
   * without failpoints and waits for the exact end state.
   */
  async function crashAt(point: string, change: () => Promise<void>, beforeRestart?: () => Promise<void>): Promise<void> {
    await daemon?.kill();
    daemon = start([point]);
    await change();
    await daemon.diedAt(point);
    await beforeRestart?.();
    daemon = start();
    await converged();
  }

  const declare = async (name: string, spec: DeclaredContainer): Promise<void> => {
    end.declared.set(name, spec);
    await writeFile(join(manifests, `${name}.yaml`), containerManifest(name, spec));
  };
  const undeclare = async (name: string): Promise<void> => {
    end.declared.delete(name);
    await unlink(join(manifests, `${name}.yaml`));
  };

  before(async () => {
    if (process.getuid?.() !== 0) throw new Error('the LXC crash e2e test needs root (privileged containers); run make test as root');
    await access(join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js')).catch(() => { throw new Error('dist/ is missing: run make build first'); });
    await access('/usr/share/lxc/templates/lxc-busybox').catch(() => {
      throw new Error('the LXC crash e2e test needs the busybox template: run make host (lxc-templates, busybox-static)');
    });
    tmp = await mkdtemp(join(tmpdir(), 'hyperlet-lxc-crash-'));
    // Unprivileged containers' mapped root must pass through the directories above their lxcpath (as /var/lib is).
    await chmod(tmp, 0o711);
    manifests = join(tmp, 'manifests');
    lxcpath = join(tmp, 'lxc');
    statePath = join(tmp, 'state', 'state.db');
    await mkdir(manifests);
    await mkdir(lxcpath);
    // The adopt crash points need adoption, which the default host policy refuses.
    await writeFile(join(tmp, 'policy.yaml'), 'apiVersion: hyperlet.io/v1alpha1\nkind: HostPolicy\ndefaults:\n  allow: {adoption: true}\n');
    end = new LxcEndState(lxcpath, statePath);
    const base = join(tmp, 'empty-net.conf');
    await writeFile(base, 'lxc.net.0.type = empty\n');
    for (const letter of ['x', 'y']) {
      await lxc('lxc-create', ['-n', n(letter), '-t', 'busybox', '-f', base]);
      await end.addForeign(n(letter));
    }
    daemon = start();
    await converged();
  });

  afterEach(async function () {
    if (this.currentTest?.state === 'failed') console.error(await daemon?.tail() ?? '');
  });

  after(async () => {
    await daemon?.kill();
    await removeLxcTestDir(tmp, lxcpath);
  });

  // LXC create: the marker's temporary file, the staging directory, the placed directory, the
  // made container, its config: each instant leaves something the restarted daemon must finish.
  it('create: killed with the marker\'s temporary file written', () =>
    crashAt('write:hyperlet.json', () => declare(n('a'), { memoryMiB: 128, state: 'Running' })));
  it('create: killed with the marker\'s temporary file written, then the file removed', () =>
    // Only the staging directory's name says whose it is: the object's tombstone must remove it.
    crashAt('write:hyperlet.json', () => declare(n('i'), { memoryMiB: 128, state: 'Running' }), () => undeclare(n('i'))));
  it('create: killed with the directory staged, before it is renamed into place', () =>
    crashAt('lxc.create.staged', () => declare(n('b'), { memoryMiB: 128, state: 'Running' })));
  it('create: killed with the directory in place, before lxc-create', () =>
    crashAt('lxc.create.placed', () => declare(n('c'), { memoryMiB: 128, state: 'Running' })));
  it('create: killed after lxc-create, before the managed config', () =>
    crashAt('lxc.create.made', () => declare(n('d'), { memoryMiB: 128, state: 'Running' })));
  it('create: killed with the config written, before the marker is complete', () =>
    crashAt('lxc.create.configured', () => declare(n('e'), { memoryMiB: 128, state: 'Stopped' })));
  it('create: killed while lxc-create\'s config is being replaced', () =>
    crashAt('write:config', () => declare(n('f'), { memoryMiB: 128, state: 'Running' })));

  // LXC update of a running container: config, live cgroup, marker.
  it('update: killed with the config written, before the live change', () =>
    crashAt('lxc.update.configured', () => declare(n('a'), { memoryMiB: 192, state: 'Running' })));
  it('update: killed with config and live change made, before the marker', () =>
    crashAt('lxc.update.applied', () => declare(n('b'), { memoryMiB: 160, state: 'Running' })));

  // LXC delete: stopped, then out of the lxcpath, then removed.
  it('delete: killed with the container stopped, before it leaves the lxcpath', () =>
    crashAt('lxc.delete.stopped', () => undeclare(n('c'))));
  it('delete: killed with the directory moved to the trash, before it is removed', () =>
    crashAt('lxc.delete.trashed', () => undeclare(n('d'))));

  // LXC adopt: the marker written on a container hyperlet did not create.
  it('adopt: killed with the marker\'s temporary file written on a foreign container', async () => {
    const config = end.foreign.get(n('y'));
    end.foreign.delete(n('y'));
    await crashAt('write:hyperlet.json', () => declare(n('y'), { memoryMiB: 96, state: 'Stopped', adopt: true }));
    expect(config).to.not.equal(undefined);
  });

  // State DB: the object remembered before its first step, and forgotten after its last.
  it('state DB: killed before remembering a new object, then its file removed', () =>
    crashAt('state.remembering', () => declare(n('h'), { memoryMiB: 128, state: 'Running' }), () => undeclare(n('h'))));
  it('state DB: killed right after remembering an object, before its create', () =>
    crashAt('state.remembered', () => declare(n('g'), { memoryMiB: 128, state: 'Running' })));
  it('state DB: killed after the instance is deleted, before the object is forgotten', () =>
    crashAt('state.forgetting', () => undeclare(n('e'))));

  it('deleting every file removes every container it made and forgets every object', async () => {
    for (const name of [...end.declared.keys()]) await undeclare(name);
    await converged();
  });
});
