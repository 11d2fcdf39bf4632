/**
 * LxcProvider's own logic, with a FakeToolRunner where the lxc-* tools would run: argv, errors,
 * cgroup writes, ownership checks. The container directories are real, in a temporary lxcpath;
 * no tool is spawned. (Against the real tools: test/e2e/lxc-contract.e2e.ts, lxc-provider.e2e.ts.)
 */
import { expect } from 'chai';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { CgroupHost, type CgroupVersion } from '../../../../src/providers/lxc/cgroup-host.js';
import { configPath, containerDir, markerPath } from '../../../../src/providers/lxc/container-paths.js';
import { LxcProvider } from '../../../../src/providers/lxc/lxc-provider.js';
import { readMarker } from '../../../../src/providers/lxc/ownership-marker.js';
import type { ObservedInstance } from '../../../../src/providers/provider.js';
import { isTerminalError } from '../../../../src/shared/errors.js';
import type { Desired } from '../../../../src/store/desired.js';
import { container, observedAs } from '../../../fakes/desired-objects.js';
import { FakeToolRunner } from '../../../fakes/fake-tool-runner.js';

const logger = pino({ level: 'silent' });
const signal = (): AbortSignal => AbortSignal.timeout(10_000);

/** The value after `flag` in `args`. */
function valueOf(args: readonly string[], flag: string): string {
  const i = args.indexOf(flag);
  const v = i < 0 ? undefined : args[i + 1];
  if (v === undefined) throw new Error(`no ${flag} in ${args.join(' ')}`);
  return v;
}

/**
 * A FakeToolRunner that plays LXC for one lxcpath: lxc-create writes a config (the base config
 * plus a rootfs line) and a rootfs directory, lxc-destroy removes the directory, and lxc-info,
 * lxc-start, lxc-stop, lxc-freeze and lxc-unfreeze keep a state per container.
 */
function fakeLxc(lxcpath: string): { runner: FakeToolRunner; states: Map<string, string> } {
  const states = new Map<string, string>();
  const runner = new FakeToolRunner()
    .on('lxc-create', async (args) => {
      const name = valueOf(args, '-n');
      const dir = containerDir(lxcpath, name);
      const base = await readFile(valueOf(args, '-f'), 'utf8');
      await mkdir(join(dir, 'rootfs'), { recursive: true });
      await writeFile(configPath(lxcpath, name), `${base}lxc.rootfs.path = dir:${join(dir, 'rootfs')}\nlxc.uts.name = ${name}\n`);
      states.set(name, 'STOPPED');
    })
    .on('lxc-destroy', async (args) => {
      await rm(containerDir(lxcpath, valueOf(args, '-n')), { recursive: true, force: true });
    })
    .on('lxc-info', (args) => {
      const name = valueOf(args, '-n');
      const state = states.get(name);
      if (state === undefined) {
        return { code: 1, stderr: `lxc-info: ${name}: ../src/lxc/tools/lxc_info.c: main: 321 Container "${name}" doesn't exist\n` };
      }
      return { stdout: `State:          ${state}\n${state === 'STOPPED' ? '' : 'PID:            4242\n'}` };
    })
    .on('lxc-start', (args) => {
      states.set(valueOf(args, '-n'), 'RUNNING');
    })
    .on('lxc-stop', (args) => {
      const name = valueOf(args, '-n');
      if (states.get(name) === 'STOPPED') {
        return { code: 2, stderr: `lxc-stop: ${name}: ../src/lxc/tools/lxc_stop.c: main: 168 ${name} is not running\n` };
      }
      states.set(name, 'STOPPED');
      return {};
    })
    .on('lxc-freeze', (args) => {
      states.set(valueOf(args, '-n'), 'FROZEN');
    })
    .on('lxc-unfreeze', (args) => {
      states.set(valueOf(args, '-n'), 'RUNNING');
    });
  return { runner, states };
}

describe('LxcProvider (FakeToolRunner)', () => {
  let lxcpath: string;
  let cgroupRoot: string;
  /** The templates lxc-create would find: only busybox, whatever the host has installed. */
  let templatesDir: string;
  let lxc: ReturnType<typeof fakeLxc>;
  let provider: LxcProvider;

  const make = (version: CgroupVersion = 1): LxcProvider => new LxcProvider({
    lxcpath, logger, tools: lxc.runner, templatesDir,
    cgroup: new CgroupHost({ version, memoryRoot: cgroupRoot, cpuRoot: cgroupRoot, freezerRoot: cgroupRoot }),
  });
  const web = (spec: Record<string, unknown> = {}): Desired<'Container'> =>
    container('web', { network: [{ type: 'none' }], gracefulStopSeconds: 0, ...spec }) as Desired<'Container'>;
  const running = (d: Desired<'Container'>, lxcState = 'RUNNING'): ObservedInstance =>
    ({ ...observedAs(d, 'Running'), details: { lxcState } });

  beforeEach(async () => {
    lxcpath = await mkdtemp(join(tmpdir(), 'hyperlet-unit-lxc-'));
    cgroupRoot = await mkdtemp(join(tmpdir(), 'hyperlet-unit-cgroup-'));
    templatesDir = await mkdtemp(join(tmpdir(), 'hyperlet-unit-templates-'));
    await writeFile(join(templatesDir, 'lxc-busybox'), '#!/bin/sh\nexit 0\n', { mode: 0o755 });
    lxc = fakeLxc(lxcpath);
    provider = make();
  });

  afterEach(async () => {
    provider.close();
    await rm(lxcpath, { recursive: true, force: true });
    await rm(cgroupRoot, { recursive: true, force: true });
    await rm(templatesDir, { recursive: true, force: true });
  });

  describe('create', () => {
    it('runs lxc-create with the template and a base config holding the managed block, then marks the container complete', async () => {
      const d = web({ resources: { memory: '128Mi' } });
      await provider.create(d, signal());
      expect(lxc.runner.calls.map((c) => c[0])).to.deep.equal(['lxc-create']);
      const args = lxc.runner.callsOf('lxc-create')[0];
      const baseConf = join(containerDir(lxcpath, 'web'), 'hyperlet-base.conf');
      expect(args).to.deep.equal(['-P', lxcpath, '-n', 'web', '-t', 'busybox', '-f', baseConf]);
      expect(await readFile(configPath(lxcpath, 'web'), 'utf8')).to.match(/^lxc\.cgroup\.memory\.limit_in_bytes = 134217728$/m);
      expect((await readMarker(markerPath(lxcpath, 'web')))?.complete).to.equal(true);
    });

    it('passes templateArgs after -- as argv items, never through a shell, and records them in the marker', async () => {
      const args = ['-d', 'debian', '--server', 'a b;$(reboot)'];
      await provider.create(web({ templateArgs: args }), signal());
      const baseConf = join(containerDir(lxcpath, 'web'), 'hyperlet-base.conf');
      expect(lxc.runner.callsOf('lxc-create')[0]).to.deep.equal(['-P', lxcpath, '-n', 'web', '-t', 'busybox', '-f', baseConf, '--', ...args]);
      expect((await readMarker(markerPath(lxcpath, 'web')))?.fields.templateArgs).to.equal(JSON.stringify(args));
    });

    it('refuses a reserved template option even when the schema was bypassed, before anything is made', async () => {
      const d = web({ templateArgs: ['-d', 'x'] });
      const bypassed = { ...d, object: { ...d.object, spec: { ...d.object.spec, templateArgs: ['--rootfs=/'] } } };
      const err = await provider.create(bypassed, signal()).then(() => undefined, (e: unknown) => e);
      expect(err).to.have.property('reason', 'InvalidSpec');
      expect(lxc.runner.calls, 'nothing spawned').to.deep.equal([]);
    });

    it('runs no tool at all for a complete container of its own', async () => {
      const d = web();
      await provider.create(d, signal());
      const before = await readFile(markerPath(lxcpath, 'web'), 'utf8');
      lxc.runner.calls.length = 0;
      await provider.create(d, signal());
      expect(lxc.runner.calls, 'nothing spawned').to.deep.equal([]);
      expect(await readFile(markerPath(lxcpath, 'web'), 'utf8'), 'marker not rewritten').to.equal(before);
    });

    it('turns a failing lxc-create into an error with its exit code and stderr, and removes what it made', async () => {
      const stderr = 'lxc-create: web: ../src/lxc/lxccontainer.c: do_create_container_dir: 1235 Failed to create container web\n';
      lxc.runner.on('lxc-create', () => ({ code: 1, stderr }));
      const err = await provider.create(web(), signal()).then(() => undefined, (e: unknown) => e as Error);
      expect(err?.message, 'the tool, its argv, exit code and stderr')
        .to.match(/^cannot run lxc-create -P \S+ -n web -t busybox -f \S+: exit code 1: .*Failed to create container web$/);
      expect(await readdir(lxcpath), 'nothing left under the lxcpath').to.deep.equal([]);
      expect(await provider.observe(web(), signal())).to.equal(undefined);
    });

    const missingTemplates = {
      Missing: { reason: 'no lxc-NAME file: lxc-create would fail the same way on every retry', mode: undefined },
      NotExecutable: { reason: 'a template lxc-create cannot run is as good as missing', mode: 0o644 },
    };
    for (const [name, tc] of Object.entries(missingTemplates)) {
      it(`refuses a template that is not installed before running anything: ${name}`, async () => {
        if (tc.mode !== undefined) await writeFile(join(templatesDir, 'lxc-mine'), '#!/bin/sh\nexit 0\n', { mode: tc.mode });
        const err: unknown = await provider.create(web({ template: 'mine' }), signal()).then(() => undefined, (e: unknown) => e);
        expect(isTerminalError(err) && err.reason, tc.reason).to.equal('TemplateNotFound');
        expect((err as Error).message).to.contain(join(templatesDir, 'lxc-mine'));
        expect(lxc.runner.calls, 'no tool runs').to.deep.equal([]);
        expect(await readdir(lxcpath), 'nothing is made').to.deep.equal([]);
      });
    }

    it('refuses, touching nothing, a name taken by a container without its marker', async () => {
      await mkdir(containerDir(lxcpath, 'web'));
      await writeFile(configPath(lxcpath, 'web'), 'lxc.uts.name = web\n');
      for (const attempt of [() => provider.create(web(), signal()), () => provider.delete(web(), signal())]) {
        const err = await attempt().then(() => undefined, (e: unknown) => e);
        expect(isTerminalError(err) && err.reason).to.equal('NotOwned');
      }
      expect(lxc.runner.calls).to.deep.equal([]);
      expect(await readdir(containerDir(lxcpath, 'web'))).to.deep.equal(['config']);
    });
  });

  describe('update', () => {
    const cases = {
      CgroupV1: {
        reason: 'cgroup v1 takes memory.limit_in_bytes', version: 1 as const,
        key: 'memory.limit_in_bytes', configKey: 'lxc.cgroup.memory.limit_in_bytes',
      },
      CgroupV2: { reason: 'cgroup v2 takes memory.max', version: 2 as const, key: 'memory.max', configKey: 'lxc.cgroup2.memory.max' },
    };
    for (const [name, tc] of Object.entries(cases)) {
      it(`sets memory of a running container with lxc-cgroup (${name})`, async () => {
        provider = make(tc.version);
        const d = web({ resources: { memory: '128Mi' } });
        await provider.create(d, signal());
        lxc.states.set('web', 'RUNNING');
        const next = web({ resources: { memory: '256Mi' } });
        lxc.runner.calls.length = 0;
        await provider.update(next, [{ path: 'resources.memory', from: 134217728, to: 268435456, apply: 'live' }], running(d), signal());
        expect(lxc.runner.callsOf('lxc-cgroup'), tc.reason).to.deep.equal([['-P', lxcpath, '-n', 'web', tc.key, '268435456']]);
        expect(await readFile(configPath(lxcpath, 'web'), 'utf8')).to.include(`${tc.configKey} = 268435456`);
        expect((await readMarker(markerPath(lxcpath, 'web')))?.specHash, 'every field applied').to.equal(next.specHash);
      });
    }

    it('writes only the config of a stopped container', async () => {
      await provider.create(web({ resources: { memory: '128Mi' } }), signal());
      lxc.runner.calls.length = 0;
      const change = { path: 'resources.memory', from: 134217728, to: 268435456, apply: 'live' } as const;
      await provider.update(web({ resources: { memory: '256Mi' } }), [change], observedAs(web(), 'Stopped'), signal());
      expect(lxc.runner.callsOf('lxc-cgroup')).to.deep.equal([]);
      expect(await readFile(configPath(lxcpath, 'web'), 'utf8')).to.include('lxc.cgroup.memory.limit_in_bytes = 268435456');
    });
  });

  describe('setState', () => {
    it('stops gracefully with lxc-stop -t, then kills when the container outlives it', async () => {
      const d = web({ gracefulStopSeconds: 5 });
      await provider.create(d, signal());
      lxc.states.set('web', 'RUNNING');
      lxc.runner.on('lxc-stop', (args) => {
        if (args.includes('--nokill')) return { code: 1, stderr: 'lxc-stop: web: timed out\n' }; // busybox init ignores SIGPWR
        lxc.states.set('web', 'STOPPED');
        return {};
      });
      lxc.runner.calls.length = 0;
      expect(await provider.setState(d, 'Stopped', running(d), signal())).to.equal('killed after 5 s without a clean shutdown');
      expect(lxc.runner.callsOf('lxc-stop')).to.deep.equal([
        ['-P', lxcpath, '-n', 'web', '-t', '5', '--nokill'],
        ['-P', lxcpath, '-n', 'web', '-k'],
      ]);
    });

    it('takes a stop retried on a stopped container (a stale observation) as done', async () => {
      const d = web();
      await provider.create(d, signal());
      const err = await provider.setState(d, 'Stopped', running(d), signal()).then(() => undefined, (e: unknown) => e);
      expect(err, 'lxc-stop exits 2, and lxc-info says STOPPED').to.equal(undefined);
    });

    it('says why a start failed, from the lxc-start log', async () => {
      const d = web();
      await provider.create(d, signal());
      lxc.runner.on('lxc-start', async (args) => {
        await writeFile(valueOf(args, '-o'), [
          'lxc-start web 20261122015451.439 ERROR    network - ../src/lxc/network.c:netdev_configure_server_veth:711 - '
            + 'bridge interface doesn\'t exist',
          'lxc-start web 20261122015451.440 ERROR    start - ../src/lxc/start.c:lxc_spawn:1840 - Failed to create the network',
          '',
        ].join('\n'));
        return { code: 1, stderr: 'lxc-start: web: ../src/lxc/tools/lxc_start.c: main: 306 The container failed to start\n' };
      });
      const err = await provider.setState(d, 'Running', observedAs(d, 'Stopped'), signal())
        .then(() => undefined, (e: unknown) => e as Error);
      expect(err?.message).to.equal('cannot start container web: bridge interface doesn\'t exist; Failed to create the network');
    });
  });

  describe('requestStop and forceStop (a stop no worker waits for)', () => {
    /** An init that traps the halt signal: lxc-stop --nowait returns at once and the container runs on. */
    const stubborn = (): void => {
      lxc.runner.on('lxc-stop', (args) => {
        const name = valueOf(args, '-n');
        if (lxc.states.get(name) === 'STOPPED') return { code: 2, stderr: `lxc-stop: ${name} is not running\n` };
        if (!args.includes('--nowait')) lxc.states.set(name, 'STOPPED');
        return {};
      });
    };
    const cases: Record<string, {
      reason: string; lxcState: string; call: 'requestStop' | 'forceStop'; stubborn?: boolean;
      wantTools: string[][]; wantState: string; wantNote?: string;
    }> = {
      RequestAsksWithoutWaiting: {
        reason: 'lxc-stop --nowait sends the halt signal and returns; the stubborn init keeps running',
        lxcState: 'RUNNING', call: 'requestStop', stubborn: true,
        wantTools: [['lxc-stop', '-n', 'web', '--nowait']], wantState: 'RUNNING',
      },
      RequestThawsFirst: {
        reason: 'a frozen init cannot handle the signal: thawed, then asked',
        lxcState: 'FROZEN', call: 'requestStop', stubborn: true,
        wantTools: [['lxc-unfreeze', '-n', 'web'], ['lxc-stop', '-n', 'web', '--nowait']], wantState: 'RUNNING',
      },
      RequestOnStoppedDoesNothing: {
        reason: 'already stopped (a stale observation would say so too): no tool runs',
        lxcState: 'STOPPED', call: 'requestStop', wantTools: [], wantState: 'STOPPED',
      },
      RequestOnStoppingDoesNothing: {
        reason: 'already on its way down: not asked again',
        lxcState: 'STOPPING', call: 'requestStop', wantTools: [], wantState: 'STOPPING',
      },
      ForceKills: {
        reason: 'lxc-stop -k, and the note says the grace ran out',
        lxcState: 'RUNNING', call: 'forceStop', stubborn: true,
        wantTools: [['lxc-stop', '-n', 'web', '-k']], wantState: 'STOPPED', wantNote: 'killed after 20 s without a clean shutdown',
      },
      ForceOnStoppedDoesNothing: {
        reason: 'stopped on its own just before the deadline: nothing to kill',
        lxcState: 'STOPPED', call: 'forceStop', wantTools: [], wantState: 'STOPPED',
      },
    };
    for (const [name, tc] of Object.entries(cases)) {
      it(name, async () => {
        const d = web({ gracefulStopSeconds: 20 });
        await provider.create(d, signal());
        lxc.states.set('web', tc.lxcState);
        if (tc.stubborn === true) stubborn();
        lxc.runner.calls.length = 0;
        const note = await provider[tc.call](d, running(d, tc.lxcState), signal());
        const tools = lxc.runner.calls.filter((c) => c[0] !== 'lxc-info').map((c) => c.filter((a, i) => a !== lxcpath && !(a === '-P' && i === 1)));
        expect({ tools, state: lxc.states.get('web'), note }, tc.reason).to.deep.equal({ tools: tc.wantTools, state: tc.wantState, note: tc.wantNote });
      });
    }

    it('takes a request that races with the container stopping as done', async () => {
      const d = web({ gracefulStopSeconds: 20 });
      await provider.create(d, signal());
      lxc.states.set('web', 'STOPPED');
      // Observed RUNNING a moment ago; lxc-stop now fails because it has stopped meanwhile.
      expect(await provider.requestStop(d, running(d), signal())).to.equal(undefined);
    });
  });

  describe('names never reach a tool unchecked', () => {
    const names = {
      Option: { reason: 'a leading dash would be read as an option', hostName: '--help' },
      Traversal: { reason: 'a path out of the lxcpath', hostName: '../etc' },
      Slash: { reason: 'a path inside another directory', hostName: 'a/b' },
      Empty: { reason: 'no name at all', hostName: '' },
      Space: { reason: 'argv-safe, but no host name', hostName: 'web x' },
      NewLine: { reason: 'would end a config line', hostName: 'web\nlxc.hook.pre-start = /bin/sh' },
      Upper: { reason: 'host names are lowercase DNS labels', hostName: 'Web' },
    };
    for (const [name, tc] of Object.entries(names)) {
      it(`${name}: every method refuses it before any tool or file`, async () => {
        const d = { ...web(), hostName: tc.hostName };
        const o = observedAs(d, 'Running');
        const attempts: Record<string, () => Promise<unknown>> = {
          observe: () => provider.observe(d, signal()),
          create: () => provider.create(d, signal()),
          update: () => provider.update(d, [{ path: 'autostart', from: false, to: true, apply: 'live' }], o, signal()),
          start: () => provider.setState(d, 'Running', o, signal()),
          stop: () => provider.setState(d, 'Stopped', o, signal()),
          requestStop: () => provider.requestStop(d, o, signal()),
          forceStop: () => provider.forceStop(d, o, signal()),
          adopt: () => provider.adopt(d, o, signal()),
          delete: () => provider.delete(d, signal()),
          exec: async () => provider.exec(tc.hostName, ['/bin/true']),
          consoleLogPath: async () => provider.consoleLogPath(tc.hostName),
        };
        for (const [method, attempt] of Object.entries(attempts)) {
          const err = await attempt().then(() => undefined, (e: unknown) => e as Error);
          expect(err?.message, `${method}: ${tc.reason}`).to.match(/^cannot use .* as a container name/);
        }
        expect(lxc.runner.calls).to.deep.equal([]);
        expect(await readdir(lxcpath)).to.deep.equal([]);
      });
    }

    it('a valid name appears in argv only as the value of -n or inside its own directory', async () => {
      const d = web({ gracefulStopSeconds: 1 });
      await provider.create(d, signal());
      await provider.setState(d, 'Running', observedAs(d, 'Stopped'), signal());
      await provider.setState(d, 'Frozen', running(d), signal());
      await provider.setState(d, 'Stopped', running(d, 'FROZEN'), signal());
      await provider.delete(d, signal());
      expect(lxc.runner.calls.length).to.be.greaterThan(5);
      for (const [tool, ...args] of lxc.runner.calls) {
        args.forEach((arg, i) => {
          if (arg === lxcpath || !arg.includes('web')) return;
          const ok = (args[i - 1] === '-n' && arg === 'web') || arg.startsWith(`${containerDir(lxcpath, 'web')}/`);
          expect(ok, `${tool} ${args.join(' ')}: ${arg}`).to.equal(true);
        });
      }
    });
  });
});
