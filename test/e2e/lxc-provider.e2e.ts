/**
 * LxcProvider against the real lxc-* tools, in an isolated lxcpath under /tmp. Needs root and
 * the lxc, lxc-templates and busybox-static packages (`make host`); without them it fails saying so.
 */
import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { access, mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import pino from 'pino';
import { API_VERSION } from '../../src/api/v1alpha1/group.js';
import { specFields } from '../../src/api/v1alpha1/fields.js';
import { validateObject } from '../../src/api/v1alpha1/validate.js';
import type { Container } from '../../src/api/v1alpha1/types.js';
import { type Desired, hostNameOf, specHashOf } from '../../src/store/desired.js';
import { objectKey } from '../../src/store/object-key.js';
import type { FieldChange, ObservedInstance } from '../../src/providers/provider.js';
import { isProviderUnavailableError } from '../../src/providers/provider.js';
import { consoleLogPath } from '../../src/providers/lxc/container-paths.js';
import { execInContainer } from '../../src/providers/lxc/lxc-exec.js';
import { LxcProvider } from '../../src/providers/lxc/lxc-provider.js';
import { LxcTools } from '../../src/providers/lxc/lxc-tools.js';
import { readMarker } from '../../src/providers/lxc/ownership-marker.js';
import { markerPath } from '../../src/providers/lxc/container-paths.js';
import { parseCgroupLayout, parseProcCgroup } from '../../src/providers/lxc/cgroup-host.js';
import { until } from './support/until.js';

const run = promisify(execFile);
const logger = pino({ level: process.env.HYPERLET_TEST_LOG ?? 'silent' });
const suffix = randomBytes(3).toString('hex');
const signal = (): AbortSignal => AbortSignal.timeout(120_000);

function container(name: string, spec: Record<string, unknown>, opts: { namespace?: string; id?: string; annotations?: Record<string, string> } = {}): Desired<'Container'> {
  const namespace = opts.namespace ?? 'default';
  const result = validateObject({
    apiVersion: API_VERSION, kind: 'Container',
    metadata: { name, namespace, ...(opts.annotations === undefined ? {} : { annotations: opts.annotations }) }, spec,
  });
  if (!result.ok) throw new Error(`test object invalid: ${JSON.stringify(result.issues)}`);
  const object = result.object as Container;
  return {
    key: objectKey('dir', namespace, 'Container', name), source: 'dir', object, id: opts.id ?? `id-${name}-${suffix}`,
    generation: 1, specHash: specHashOf(object.spec), hostName: hostNameOf(object),
  };
}

function withSpec(d: Desired<'Container'>, spec: Record<string, unknown>): Desired<'Container'> {
  const next = container(d.object.metadata.name, { ...d.object.spec, ...spec }, { namespace: d.object.metadata.namespace, id: d.id });
  return { ...next, generation: d.generation + 1 };
}

/** Every change between `d` and what is observed, as the reconciler's diff would list it. */
function changesFor(d: Desired<'Container'>, observed: ObservedInstance): FieldChange[] {
  const want = specFields('Container', d.object.spec);
  const apply: Record<string, FieldChange['apply']> = {
    'resources.cpu': 'live', 'resources.memory': 'live', autostart: 'live', environment: 'restart', network: 'restart',
  };
  return Object.entries(apply)
    .filter(([path]) => want[path] !== observed.fields[path])
    .map(([path, mode]) => ({ path, from: observed.fields[path], to: want[path], apply: mode }));
}

async function lxc(tool: string, args: string[]): Promise<string> {
  const { stdout } = await run(tool, args, { timeout: 60_000 });
  return stdout;
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(() => true, () => false);
}

async function memoryLimitOf(pid: number): Promise<number> {
  const layout = parseCgroupLayout(await readFile('/proc/self/mounts', 'utf8'));
  if (layout === undefined) throw new Error('no cgroups');
  const path = parseProcCgroup(await readFile(`/proc/${pid}/cgroup`, 'utf8'), layout.version).memory ?? '';
  const file = layout.version === 1 ? 'memory.limit_in_bytes' : 'memory.max';
  return Number((await readFile(join(layout.memoryRoot, path, file), 'utf8')).trim());
}

/** The uid map of a process, one line per range, spaces squeezed. */
async function uidMapOf(pid: number): Promise<string[]> {
  return (await readFile(`/proc/${pid}/uid_map`, 'utf8')).trim().split('\n').map((l) => l.trim().split(/\s+/).join(' '));
}

async function destroyAll(lxcpath: string): Promise<void> {
  for (const name of await readdir(lxcpath).catch(() => [] as string[])) {
    await run('lxc-stop', ['-P', lxcpath, '-n', name, '-k'], { timeout: 30_000 }).catch(() => undefined);
    await run('lxc-destroy', ['-P', lxcpath, '-n', name], { timeout: 60_000 }).catch(() => undefined);
  }
  await rm(lxcpath, { recursive: true, force: true });
}

describe('LxcProvider (real lxc-* tools)', function () {
  this.timeout(600_000);
  let lxcpath = '';
  let scratch = '';
  let preparedRootfs = '';
  let spawns: string[] = [];
  let provider: LxcProvider;

  before(async () => {
    if (process.getuid?.() !== 0) throw new Error('the LXC e2e tests need root (lxc-start of privileged containers); run make test as root');
    for (const tool of ['lxc-create', 'lxc-start', 'lxc-monitor', 'lxc-attach']) {
      await run(tool, ['--version']).catch((err: unknown) => {
        throw new Error(`the LXC e2e tests need ${tool}: run make host (installs lxc, lxc-templates, busybox-static)`, { cause: err });
      });
    }
    await access('/usr/share/lxc/templates/lxc-busybox').catch(() => {
      throw new Error('the LXC e2e tests need the busybox template: run make host (lxc-templates, busybox-static)');
    });
    lxcpath = await mkdtemp(join(tmpdir(), 'hyperlet-lxc-e2e-'));
    scratch = await mkdtemp(join(tmpdir(), 'hyperlet-lxc-scratch-'));
    // A prepared rootfs, as a user would bring one: made by the busybox template elsewhere.
    await run('lxc-create', ['-P', scratch, '-n', `src-${suffix}`, '-t', 'busybox'], { timeout: 120_000 });
    preparedRootfs = join(scratch, `src-${suffix}`, 'rootfs');
    provider = new LxcProvider({ lxcpath, logger, tools: new LxcTools({ logger, onCall: (tool) => spawns.push(tool) }) });
  });

  after(async () => {
    if (lxcpath !== '') await destroyAll(lxcpath);
    if (scratch !== '') await destroyAll(scratch);
  });

  it('probe accepts this host and refuses an unusable lxcpath', async () => {
    await provider.probe(signal());
    const file = join(scratch, 'not-a-dir');
    await run('touch', [file]);
    const unusable = new LxcProvider({ lxcpath: file, logger, tools: new LxcTools({ logger }) });
    const err: unknown = await unusable.probe(signal()).then(() => undefined, (e: unknown) => e);
    expect(isProviderUnavailableError(err), 'a file is no lxcpath').to.equal(true);
  });

  describe('a container from the busybox template', () => {
    let d: Desired<'Container'>;

    before(() => {
      d = container(`tpl-${suffix}`, {
        template: 'busybox', state: 'Running', gracefulStopSeconds: 5,
        resources: { cpu: 1, memory: '128Mi' }, environment: { GREETING: 'hello world' }, network: [{ type: 'none' }],
      });
    });

    it('is created stopped, owned, complete, with its fields', async () => {
      await provider.create(d, signal());
      const o = await provider.observe(d, signal());
      expect(o?.state).to.equal('Stopped');
      expect(o?.ownerId).to.equal(d.id);
      expect(o?.specHash).to.equal(d.specHash);
      expect(o?.partial, 'creation finished').to.equal(undefined);
      expect(o?.fields).to.deep.equal(specFields('Container', d.object.spec));
      const config = await readFile(join(lxcpath, d.hostName, 'config'), 'utf8');
      expect(config).to.match(/^lxc\.net\.0\.type = empty$/m);
      expect(config).to.match(/^lxc\.environment = GREETING=hello world$/m);
      expect(config).to.match(/^lxc\.cgroup2?\.memory\.(limit_in_bytes|max) = 134217728$/m);
      expect(config, 'unprivileged: a user namespace').to.match(/^lxc\.idmap = u 0 1000000 65536$/m);
      expect(config).to.match(/^lxc\.idmap = g 0 1000000 65536$/m);
      const rootfs = await stat(join(lxcpath, d.hostName, 'rootfs', 'bin'));
      expect([rootfs.uid, rootfs.gid], 'the template ran under the mapping: its files belong to the mapped root').to.deep.equal([1_000_000, 1_000_000]);
      expect((await readMarker(markerPath(lxcpath, d.hostName)))?.complete).to.equal(true);
    });

    it('starts, with its memory limit in the cgroup and its console log', async () => {
      spawns = [];
      const stopped = (await provider.observe(d, signal()))!;
      expect(spawns, 'a stopped container is observed from /proc alone').to.deep.equal([]);
      expect(await provider.setState(d, 'Running', stopped, signal())).to.equal('started');
      spawns = [];
      const o = (await provider.observe(d, signal()))!;
      expect(spawns, 'so is a running one hyperlet started, without a veth').to.deep.equal([]);
      expect(o.state).to.equal('Running');
      expect(o.pid).to.equal(Number((await lxc('lxc-info', ['-P', lxcpath, '-n', d.hostName, '-pH'])).trim()));
      expect(o.pid).to.be.a('number');
      expect(Date.parse(o.startedAt ?? '')).to.be.within(Date.now() - 60_000, Date.now() + 1_000);
      expect(await memoryLimitOf(o.pid!)).to.equal(134217728);
      expect(await uidMapOf(o.pid!), 'container root is host uid 1000000').to.deep.equal(['0 1000000 65536']);
      expect(o.fields).to.deep.equal(specFields('Container', d.object.spec));
      const environ = (await readFile(`/proc/${o.pid}/environ`, 'utf8')).split('\0');
      expect(environ).to.include('GREETING=hello world');
      await until('the console log', async () => ((await exists(consoleLogPath(lxcpath, d.hostName))) ? true : undefined));
      expect(await provider.setState(d, 'Running', o, signal()), 'already running: nothing to do').to.equal(undefined);
    });

    it('observeAll sees it with one process spawned', async () => {
      spawns = [];
      const all = await provider.observeAll(signal());
      expect(spawns, 'one batch call per resync').to.deep.equal(['lxc-ls']);
      const o = all.get(d.hostName);
      expect(o?.state).to.equal('Running');
      expect(o?.ownerId).to.equal(d.id);
      expect(o?.fields).to.deep.equal(specFields('Container', d.object.spec));
    });

    it('takes a memory and cpu change live, seen in the cgroup', async () => {
      const observed = (await provider.observe(d, signal()))!;
      const next = withSpec(d, { resources: { cpu: 2, memory: '192Mi' } });
      const changes = changesFor(next, observed);
      expect(changes.map((c) => c.path).sort()).to.deep.equal(['resources.cpu', 'resources.memory']);
      await provider.update(next, changes, observed, signal());
      const o = (await provider.observe(next, signal()))!;
      expect(o.pid, 'not restarted').to.equal(observed.pid);
      expect(await memoryLimitOf(o.pid!)).to.equal(192 * 1024 * 1024);
      expect(o.fields['resources.memory']).to.equal(192 * 1024 * 1024);
      expect(o.fields['resources.cpu']).to.equal(2);
      expect(o.specHash, 'every field applied').to.equal(next.specHash);
      d = next;
    });

    it('reports a limit changed behind its back as drift', async () => {
      await lxc('lxc-cgroup', ['-P', lxcpath, '-n', d.hostName, 'memory.limit_in_bytes', String(96 * 1024 * 1024)]).catch(async () =>
        lxc('lxc-cgroup', ['-P', lxcpath, '-n', d.hostName, 'memory.max', String(96 * 1024 * 1024)]));
      const o = (await provider.observe(d, signal()))!;
      expect(o.fields['resources.memory'], 'the live value wins over the marker').to.equal(96 * 1024 * 1024);
      await provider.update(d, changesFor(d, o), o, signal());
      expect(await memoryLimitOf(o.pid!)).to.equal(192 * 1024 * 1024);
    });

    it('freezes and thaws', async () => {
      let o = (await provider.observe(d, signal()))!;
      expect(await provider.setState(d, 'Frozen', o, signal())).to.equal('frozen');
      spawns = [];
      o = (await provider.observe(d, signal()))!;
      expect(o.state).to.equal('Frozen');
      expect(spawns, 'the freezer cgroup says frozen').to.deep.equal([]);
      expect((await provider.observeAll(signal())).get(d.hostName)?.state).to.equal('Frozen');
      expect(await provider.setState(d, 'Running', o, signal())).to.equal('thawed');
      expect((await provider.observe(d, signal()))?.state).to.equal('Running');
    });

    it('keeps a restart-class change pending while running, applies it when stopped', async () => {
      let observed = (await provider.observe(d, signal()))!;
      const next = withSpec(d, { environment: { GREETING: 'bonjour', EXTRA: '1' } });
      await provider.update(next, changesFor(next, observed), observed, signal());
      observed = (await provider.observe(next, signal()))!;
      expect(observed.fields.environment, 'not applied to the running container').to.equal(d.object.spec.environment === undefined ? null : JSON.stringify({ GREETING: 'hello world' }));
      expect(observed.specHash).to.not.equal(next.specHash);

      expect(await provider.setState(next, 'Stopped', observed, signal())).to.equal('stopped gracefully');
      observed = (await provider.observe(next, signal()))!;
      expect(observed.state).to.equal('Stopped');
      await provider.update(next, changesFor(next, observed), observed, signal());
      observed = (await provider.observe(next, signal()))!;
      expect(observed.fields).to.deep.equal(specFields('Container', next.object.spec));
      expect(observed.specHash).to.equal(next.specHash);
      await provider.setState(next, 'Running', observed, signal());
      const pid = (await provider.observe(next, signal()))!.pid!;
      const environ = (await readFile(`/proc/${pid}/environ`, 'utf8')).split('\0');
      expect(environ).to.include.members(['GREETING=bonjour', 'EXTRA=1']);
      d = next;
    });

    it('runs a command inside with the exit code passed through', async () => {
      expect(await execInContainer({ lxcpath, hostName: d.hostName, command: ['/bin/sh', '-c', 'test "$GREETING" = bonjour && exit 7'] })).to.equal(7);
      expect(await execInContainer({ lxcpath, hostName: d.hostName, command: ['/bin/true'] })).to.equal(0);
    });

    it('is deleted while frozen', async () => {
      await provider.setState(d, 'Frozen', (await provider.observe(d, signal()))!, signal());
      expect((await provider.observe(d, signal()))?.state).to.equal('Frozen');
      await provider.delete(d, signal());
      expect(await exists(join(lxcpath, d.hostName))).to.equal(false);
      expect(await provider.observe(d, signal())).to.equal(undefined);
      expect(await lxc('lxc-ls', ['-P', lxcpath, '-1'])).to.not.include(d.hostName);
    });
  });

  describe('a container from a prepared rootfs', () => {
    let d: Desired<'Container'>;

    before(() => {
      d = container(`rfs-${suffix}`, { rootfs: preparedRootfs, gracefulStopSeconds: 1 }, { namespace: 'e2e' });
    });

    it('is created as a copy, starts, and is killed when it ignores the halt signal', async () => {
      await provider.create(d, signal());
      expect(d.hostName).to.equal(`e2e.rfs-${suffix}`);
      let o = (await provider.observe(d, signal()))!;
      expect(o.partial).to.equal(undefined);
      expect(o.fields.rootfs).to.equal(preparedRootfs);
      expect(await exists(join(lxcpath, d.hostName, 'rootfs', 'bin', 'busybox'))).to.equal(true);
      const copied = await stat(join(lxcpath, d.hostName, 'rootfs', 'bin', 'busybox'));
      expect([copied.uid, copied.gid], 'the copy is shifted into the id range').to.deep.equal([1_000_000, 1_000_000]);
      const source = await stat(join(preparedRootfs, 'bin', 'busybox'));
      expect([source.uid, source.gid], 'the source is not').to.deep.equal([0, 0]);
      await provider.setState(d, 'Running', o, signal());
      o = (await provider.observe(d, signal()))!;
      expect(o.state).to.equal('Running');
      expect(await uidMapOf(o.pid!)).to.deep.equal(['0 1000000 65536']);
      const inside = await lxc('lxc-attach', ['-P', lxcpath, '-n', d.hostName, '--', '/bin/sh', '-c', 'id -u; touch /root/written && echo ok']);
      expect(inside.trim().split('\n'), 'root inside is uid 0 there and can write its own files').to.deep.equal(['0', 'ok']);
      expect((await stat(join(lxcpath, d.hostName, 'rootfs', 'root', 'written'))).uid, 'which are the mapped root\'s on the host').to.equal(1_000_000);
      // Busybox init ignores SIGPWR, LXC's default halt signal: the graceful stop times out.
      expect(await provider.setState(d, 'Stopped', o, signal())).to.equal('killed after 1 s without a clean shutdown');
      expect((await provider.observe(d, signal()))?.state).to.equal('Stopped');
    });

    it('delete leaves the prepared rootfs alone', async () => {
      await provider.delete(d, signal());
      expect(await exists(join(lxcpath, d.hostName))).to.equal(false);
      expect(await exists(join(preparedRootfs, 'bin', 'busybox')), 'the source is never destroyed').to.equal(true);
    });
  });

  describe('a privileged container (only when the host policy allows it)', () => {
    it('has no user namespace: container root is host root', async () => {
      const d = container(`priv-${suffix}`, { template: 'busybox', privileged: true, network: [{ type: 'none' }] });
      await provider.create(d, signal());
      const config = await readFile(join(lxcpath, d.hostName, 'config'), 'utf8');
      expect(config).to.not.match(/^lxc\.idmap/m);
      let o = (await provider.observe(d, signal()))!;
      expect(o.fields.privileged).to.equal(true);
      await provider.setState(d, 'Running', o, signal());
      o = (await provider.observe(d, signal()))!;
      expect(await uidMapOf(o.pid!)).to.deep.equal(['0 0 4294967295']);
      await provider.delete(d, signal());
    });
  });

  describe('events', () => {
    it('changes() reports starts and stops done behind the provider, also after lxc-monitor dies', async () => {
      const d = container(`evt-${suffix}`, { template: 'busybox' });
      await provider.create(d, signal());
      const controller = new AbortController();
      const seen: string[] = [];
      let wake: (() => void) | undefined;
      const consuming = (async () => {
        for await (const name of provider.changes(controller.signal)) {
          seen.push(name);
          wake?.();
        }
      })();
      const waitFor = async (what: string): Promise<void> => {
        await until(what, () => (seen.includes(d.hostName) ? true : undefined), 10_000);
        seen.length = 0;
      };
      try {
        await until('lxc-monitor to run', () => provider.monitorPid, 5_000);
        await new Promise((r) => setTimeout(r, 500)); // lxc-monitor connects to lxc-monitord
        await lxc('lxc-start', ['-P', lxcpath, '-n', d.hostName]);
        await waitFor('an event for lxc-start');
        await lxc('lxc-stop', ['-P', lxcpath, '-n', d.hostName, '-k']);
        await waitFor('an event for lxc-stop');

        const monitorPid = provider.monitorPid!;
        process.kill(monitorPid, 'SIGKILL');
        await waitFor('the resync after lxc-monitor was restarted');
        const restarted = await until('a new lxc-monitor', () => {
          const pid = provider.monitorPid;
          return pid !== undefined && pid !== monitorPid ? pid : undefined;
        });
        expect(restarted).to.not.equal(monitorPid);
        await new Promise((r) => setTimeout(r, 500));
        await lxc('lxc-start', ['-P', lxcpath, '-n', d.hostName]);
        await waitFor('an event after the restart');
      } finally {
        controller.abort();
        await consuming;
      }
      expect(provider.monitorPid, 'the last consumer leaving stops lxc-monitor').to.equal(undefined);
      await provider.delete(d, signal());
    });
  });

  describe('failures', () => {
    it('a start that fails says why', async () => {
      const d = container(`nobr-${suffix}`, { template: 'busybox', network: [{ type: 'veth', bridge: `hlnobr${suffix.slice(0, 4)}` }] });
      await provider.create(d, signal());
      const o = (await provider.observe(d, signal()))!;
      const err: unknown = await provider.setState(d, 'Running', o, signal()).then(() => undefined, (e: unknown) => e);
      expect((err as Error).message).to.match(/^cannot start container nobr-.*bridge interface doesn't exist/);
      expect((await provider.observe(d, signal()))?.state).to.equal('Stopped');
      await provider.delete(d, signal());
    });
  });
});
