/**
 * A random crash soak against real LXC: `hyperlet run` (dir source, isolated lxcpath) converging
 * 8 busybox containers is killed with SIGKILL 100 times, 0.1 to 1.5 s apart, while the files
 * change now and then (memory, state, a file removed or put back); then it runs undisturbed and
 * must reach the exact end state (support/lxc-end-state.ts), and deleting every file must remove
 * every container it made and nothing else. Bounded: about two minutes here.
 * The seed is printed; HYPERLET_SOAK_SEED=N replays one run. Needs root and `make host`.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { access, chmod, mkdir, mkdtemp, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { DaemonProcess, randomBetween, removeLxcTestDir, seededRandom } from './support/crash-daemon.js';
import { type DeclaredContainer, LxcEndState, containerManifest, waitForEndState } from './support/lxc-end-state.js';

const run = promisify(execFile);
const suffix = randomBytes(2).toString('hex');
const CONTAINERS = 8;
const KILLS = 100;
const n = (i: number): string => `soak${suffix}-${i}`;

describe('crash soak: LXC (100 kill -9 at random instants, then exact convergence)', function () {
  this.timeout(900_000);
  const seed = Number(process.env.HYPERLET_SOAK_SEED ?? randomBytes(4).readUInt32LE(0));
  const random = seededRandom(seed);
  let tmp = '';
  let manifests = '';
  let lxcpath = '';
  let end: LxcEndState;
  let daemon: DaemonProcess | undefined;
  let starts = 0;
  /** Every container the soak may declare, with its current declaration; undefined: file removed. */
  const specs = new Map<string, DeclaredContainer | undefined>();

  const lxc = (tool: string, args: string[]): Promise<unknown> => run(tool, ['-P', lxcpath, ...args], { timeout: 60_000 });
  function start(): DaemonProcess {
    starts += 1;
    return DaemonProcess.start([
      '--source', `dir:${manifests}`, '--lxcpath', lxcpath, '--state', join(tmp, 'state', 'state.db'), '--http', 'off',
      '--kinds', 'Container', '--resync', '10s', '--log-level', 'info',
    ], join(tmp, `daemon-${starts % 3}.log`));
  }
  const write = async (name: string, spec: DeclaredContainer | undefined): Promise<void> => {
    specs.set(name, spec);
    if (spec === undefined) {
      end.declared.delete(name);
      await unlink(join(manifests, `${name}.yaml`)).catch(() => undefined);
    } else {
      end.declared.set(name, spec);
      await writeFile(join(manifests, `${name}.yaml`), containerManifest(name, spec));
    }
  };
  /** One change to the files, chosen by the seed: memory, state, or a file removed or put back. */
  const mutate = async (): Promise<string> => {
    const name = n(randomBetween(random, 0, CONTAINERS - 1));
    const spec = specs.get(name);
    const choice = randomBetween(random, 0, 2);
    if (spec === undefined) {
      await write(name, { memoryMiB: 128, state: 'Running' });
      return `${name} put back`;
    }
    if (choice === 0) {
      await write(name, { ...spec, memoryMiB: spec.memoryMiB === 128 ? 160 : 128 });
      return `${name} memory`;
    }
    if (choice === 1) {
      await write(name, { ...spec, state: spec.state === 'Running' ? 'Stopped' : 'Running' });
      return `${name} state`;
    }
    await write(name, undefined);
    return `${name} removed`;
  };

  before(async () => {
    if (process.getuid?.() !== 0) throw new Error('the LXC soak needs root (privileged containers); run make test as root');
    await access('/usr/share/lxc/templates/lxc-busybox').catch(() => {
      throw new Error('the LXC soak needs the busybox template: run make host (lxc-templates, busybox-static)');
    });
    tmp = await mkdtemp(join(tmpdir(), 'hyperlet-lxc-soak-'));
    // Unprivileged containers' mapped root must pass through the directories above their lxcpath (as /var/lib is).
    await chmod(tmp, 0o711);
    manifests = join(tmp, 'manifests');
    lxcpath = join(tmp, 'lxc');
    await mkdir(manifests);
    await mkdir(lxcpath);
    end = new LxcEndState(lxcpath, join(tmp, 'state', 'state.db'));
    const base = join(tmp, 'empty-net.conf');
    await writeFile(base, 'lxc.net.0.type = empty\n');
    await lxc('lxc-create', ['-n', `soak${suffix}-foreign`, '-t', 'busybox', '-f', base]);
    await end.addForeign(`soak${suffix}-foreign`);
  });

  afterEach(async function () {
    if (this.currentTest?.state === 'failed') console.error(`seed ${seed} (HYPERLET_SOAK_SEED replays it)\n${await daemon?.tail() ?? ''}`);
  });

  after(async () => {
    await daemon?.kill();
    await removeLxcTestDir(tmp, lxcpath);
  });

  it(`converges exactly after ${KILLS} kills at random instants`, async () => {
    for (let i = 0; i < CONTAINERS; i++) await write(n(i), { memoryMiB: 128, state: 'Running' });
    const changes: string[] = [];
    const soakStarted = Date.now();
    for (let kill = 1; kill <= KILLS; kill++) {
      daemon = start();
      await new Promise((r) => setTimeout(r, randomBetween(random, 100, 1_500)));
      await daemon.kill('SIGKILL');
      if (kill % 10 === 5) changes.push(await mutate());
    }
    const soakMs = Date.now() - soakStarted;
    daemon = start();
    const convergedMs = await waitForEndState(() => end.problems(), 180_000, async () => await daemon?.tail() ?? '');
    for (const name of [...specs.keys()]) await write(name, undefined);
    const deletedMs = await waitForEndState(() => end.problems(), 120_000, async () => await daemon?.tail() ?? '');
    console.log(`      lxc soak: seed ${seed}, ${KILLS} kills in ${(soakMs / 1000).toFixed(1)} s, changes: ${changes.join(', ')}; `
      + `exact end state ${(convergedMs / 1000).toFixed(1)} s after the last restart, all deleted ${(deletedMs / 1000).toFixed(1)} s after the files went`);
  });
});
