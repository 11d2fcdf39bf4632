/**
 * Provider `lxc`: Containers as classic LXC containers under one lxcpath, driven through the
 * lxc-* tools (lxc-tools.ts), marked as hyperlet's by a file beside their config
 * (ownership-marker.ts), configured from the spec (lxc-config.ts), watched by lxc-monitor.
 */
import { constants as fsConstants } from 'node:fs';
import { access, chmod, chown, mkdir, readFile, rename, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { basename, delimiter, dirname, join } from 'node:path';
import type { Logger } from 'pino';
import { FIELD_APPLY, type SpecFields, specFields } from '../../api/v1alpha1/fields.js';
import { DEFAULT_ID_RANGE, type IdRange } from '../../api/v1alpha1/host-defaults.js';
import { templateArgProblem } from '../../api/v1alpha1/template-args.js';
import type { ImageSource, PowerState } from '../../api/v1alpha1/types.js';
import { StepPendingError, TerminalError, errorMessage, isAbortError } from '../../shared/errors.js';
import type { ImageCache } from '../images/image-cache.js';
import { failpoint } from '../../shared/failpoint.js';
import type { Desired } from '../../store/desired.js';
import {
  type FieldChange, type InstanceSnapshot, type ObservedInstance, type Provider, ProviderUnavailableError, type RestoreOutcome,
  type SnapshotOptions, assertSnapshotName, type BackupOptions, type RestoreBackupOptions, type RestoredBackup,
} from '../provider.js';
import { LxcSnapshots } from './lxc-snapshots.js';
import { LxcBackups } from './lxc-backups.js';
import type { BackupSummary } from '../backup/backup-archive.js';
import { exportRootfs, importRootfs } from './lxc-data-archive.js';
import { RESTORE_REQUEST_ANNOTATION, snapshotOfRestoreRequest } from '../../shared/annotations.js';
import { CgroupHost } from './cgroup-host.js';
import {
  assertHostName, configPath, consoleLogPath, rotatedConsoleLogPath, containerDir, isOwnerId, leftoverDir, monitorPidPath, markerPath, rootfsPath, startLogPath,
} from './container-paths.js';
import { writeFileAtomic } from './atomic-file.js';
import {
  type RenderContext, appliedConfigOf, assertConsoleLogBytes, liveCgroupSettings, mergeConfig, renderManagedConfig,
  renderRootfsBaseConfig, withRootfsPath,
} from './lxc-config.js';
import { assertSearchableByOthers, shiftOwnership, shiftedId } from './id-shift.js';
import { ensureSubordinateRange } from './subordinate-ids.js';
import { LxcMonitor } from './lxc-monitor.js';
import {
  LXC_TOOLS, type LxcToolRunner, parseLsFancy, summarizeLxcLog,
} from './lxc-tools.js';
import { MARKER_VERSION, type OwnershipMarker, readMarker, writeMarker } from './ownership-marker.js';
import { killCreators } from './creator-processes.js';
import { execInContainer } from './lxc-exec.js';
import { openLxcConsole } from './lxc-console.js';
import type { ConsoleSession } from '../provider.js';
import { InstanceNotFoundError } from '../provider.js';
import { LxcObserver, exists, isDirectory } from './lxc-observer.js';
import type { Clock } from '../../shared/clock.js';
import { systemClock } from '../../shared/clock.js';


/** Where the LXC provider keeps containers and how it runs lxc-* tools. */
export interface LxcProviderOptions {
  /** Where containers live (`lxc-* -P`); /var/lib/lxc is LXC's default. Created by probe() when missing. */
  readonly lxcpath: string;
  readonly logger: Logger;
  /**
   * Runs every lxc-* tool (and cp) the provider needs: an LxcTools (registry.ts makes it, with
   * its timeout and spawn counting), or a FakeToolRunner in unit tests. lxc-monitor (changes())
   * and lxc-attach (exec()) are long-lived children with their own stdio and do not go through it.
   */
  readonly tools: LxcToolRunner;
  /** Timeout of one lxc-create (plus the rootfs copy); 5 min: busybox takes ~1 s here, big rootfs copies longer. */
  readonly createTimeoutMs?: number;
  /** Cap of each container's console log (lxc.console.size; a power of two, default 1 MiB), rotated once. */
  readonly consoleLogBytes?: number;
  /** This host's cgroup layout; detected from /proc/self/mounts at first use when not given (tests give one). */
  readonly cgroup?: CgroupHost;
  /** The host ids unprivileged containers are mapped onto (the host policy's host.idmap); default DEFAULT_ID_RANGE. */
  readonly idmap?: IdRange;
  /**
   * Where the range is registered for root (subordinate-ids.ts): default /etc/subuid and
   * /etc/subgid; null leaves the host's files alone (tests with their own range).
   */
  readonly subordinateIdFiles?: { readonly uid: string; readonly gid: string } | null;
  /** Where lxc-create finds template `NAME` as `lxc-NAME`; LXC's compiled-in LXCTEMPLATEDIR on Debian. */
  readonly templatesDir?: string;
  /** Time for marker timestamps, snapshot records, the monitor's restarts and killed creators (default: the system clock). */
  readonly clock?: Clock;
  /** Where spec.image tarballs are downloaded and unpacked (images/image-cache.ts); absent: spec.image is refused. */
  readonly images?: ImageCache;
  /**
   * Whether clones of cached images are overlayfs mounts (LXC's `overlay:` rootfs) or plain
   * copies; default: overlay when /proc/filesystems lists it.
   */
  readonly overlay?: boolean;
}

/** LXC's template directory on Debian and Ubuntu (lxc-create looks nowhere else for a bare name). */
export const DEFAULT_TEMPLATES_DIR = '/usr/share/lxc/templates';

/** The fields the config embodies; template, rootfs and disk are made once and only recorded. */
const CONFIG_FIELDS: ReadonlySet<string> = new Set(['resources.cpu', 'resources.memory', 'environment', 'network', 'autostart']);

/** Debian's distribution-neutral LXC defaults, included by containers made from a prepared rootfs. */
const COMMON_CONF = '/usr/share/lxc/config/common.conf';

/**
 * Manages Containers as LXC containers under `lxcpath`. Never changes a container without
 * hyperlet's marker, except adopt().
 *
 * Guarantees (kill -9 at any instant): a container directory appears under the lxcpath only by
 * one rename of a staging directory that already holds its marker (incomplete until create ends),
 * and leaves it only by one rename to a trash directory; so every directory hyperlet made is
 * recognisably hyperlet's from its first byte to its last. An incomplete marker is observed as
 * `partial`, which the reconciler deletes and creates again. Staging and trash directories
 * (hidden, named after the container and its object's id: container-paths.ts leftoverDir) left
 * by a killed hyperlet are observed as a partial container of that object, so the same
 * level-triggered passes remove them (delete) or replace them (create); nothing is swept blindly,
 * which a `hyperlet diff` beside a running daemon could otherwise do to a step in flight.
 */
export class LxcProvider implements Provider<'Container'> {
  readonly name = 'lxc' as const;
  readonly kind = 'Container' as const;
  private readonly lxcpath: string;
  private readonly log: Logger;
  private readonly tools: LxcToolRunner;
  private readonly monitor: LxcMonitor;
  private readonly createTimeoutMs: number;
  private readonly consoleLogBytes: number | undefined;
  private readonly templatesDir: string;
  private readonly clock: Clock;
  private cgroupHost: Promise<CgroupHost> | undefined;
  private readonly observer: LxcObserver;
  private readonly snapshots: LxcSnapshots;
  private readonly backups: LxcBackups;
  private readonly idmap: IdRange;
  private readonly subordinateIdFiles: { readonly uid: string; readonly gid: string } | null;
  private readonly images: ImageCache | undefined;
  private overlay: Promise<boolean> | undefined;

  constructor(options: LxcProviderOptions) {
    this.lxcpath = options.lxcpath;
    this.log = options.logger.child({ provider: 'lxc', lxcpath: options.lxcpath });
    this.tools = options.tools;
    if (options.cgroup !== undefined) this.cgroupHost = Promise.resolve(options.cgroup);
    this.createTimeoutMs = options.createTimeoutMs ?? 300_000;
    if (options.consoleLogBytes !== undefined) assertConsoleLogBytes(options.consoleLogBytes);
    this.consoleLogBytes = options.consoleLogBytes;
    this.idmap = options.idmap ?? DEFAULT_ID_RANGE;
    this.subordinateIdFiles = options.subordinateIdFiles === undefined
      ? { uid: '/etc/subuid', gid: '/etc/subgid' }
      : options.subordinateIdFiles;
    this.templatesDir = options.templatesDir ?? DEFAULT_TEMPLATES_DIR;
    this.clock = options.clock ?? systemClock;
    this.images = options.images;
    if (options.overlay !== undefined) this.overlay = Promise.resolve(options.overlay);
    this.observer = new LxcObserver({ lxcpath: this.lxcpath, tools: this.tools, logger: this.log, cgroup: () => this.cgroup() });
    this.monitor = new LxcMonitor({
      lxcpath: this.lxcpath, logger: this.log, listNames: () => this.observer.listNames(), clock: this.clock,
    });
    this.snapshots = new LxcSnapshots({
      lxcpath: this.lxcpath, tools: this.tools, clock: this.clock, logger: this.log,
      stateOf: async (name, signal) => (await this.observer.info(name, signal)).state,
      setFrozen: async (name, frozen, signal) => {
        const { pid } = await this.observer.info(name, signal);
        return pid !== undefined && (await this.cgroup()).setFrozen(pid, name, frozen, this.clock, signal);
      },
    });
    this.backups = new LxcBackups({
      lxcpath: this.lxcpath, snapshots: this.snapshots, clock: this.clock, logger: this.log,
      stateOf: async (name, signal) => (await this.observer.info(name, signal)).state,
    });
  }

  /** The lxc-monitor watcher behind changes(), for health checks and tests. */
  get monitorPid(): number | undefined {
    return this.monitor.pid;
  }

  /**
   * Checks that this host can run containers: root, every lxc-* tool in PATH and runnable,
   * a usable lxcpath (created when missing), a memory cgroup, and the id range registered for
   * root in /etc/subuid and /etc/subgid (subordinate-ids.ts). Throws ProviderUnavailableError.
   */
  async probe(signal: AbortSignal): Promise<void> {
    if (typeof process.getuid === 'function' && process.getuid() !== 0) {
      throw new ProviderUnavailableError('cannot use lxc: hyperlet must run as root to drive lxc-* here (unprivileged starts stall on this LXC version)');
    }
    const missing: string[] = [];
    for (const tool of LXC_TOOLS) if (!(await onPath(tool))) missing.push(tool);
    if (missing.length > 0) {
      throw new ProviderUnavailableError(`cannot use lxc: ${missing.join(', ')} not found in PATH (install lxc, lxc-templates and busybox-static: make host)`);
    }
    try {
      const { stdout } = await this.tools.run('lxc-ls', ['--version'], { signal, timeoutMs: 10_000 });
      this.log.debug({ version: stdout.trim() }, 'lxc tools found');
    } catch (err) {
      if (isAbortError(err)) throw err;
      throw new ProviderUnavailableError('cannot use lxc: lxc-ls does not run', { cause: err });
    }
    try {
      await mkdir(this.lxcpath, { recursive: true, mode: 0o755 });
      if (!(await stat(this.lxcpath)).isDirectory()) throw new Error('not a directory');
      await access(this.lxcpath, fsConstants.W_OK | fsConstants.X_OK);
    } catch (err) {
      throw new ProviderUnavailableError(`cannot use lxcpath ${this.lxcpath}: ${(err as Error).message}`, { cause: err });
    }
    try {
      await this.cgroup();
    } catch (err) {
      throw new ProviderUnavailableError('cannot use lxc: no memory cgroup on this host', { cause: err });
    }
    if (this.subordinateIdFiles !== null) {
      try {
        for (const file of [this.subordinateIdFiles.uid, this.subordinateIdFiles.gid]) {
          if (!(await ensureSubordinateRange(file, this.idmap))) continue;
          this.log.info({ file, idmap: this.idmap }, 'registered the id range of unprivileged containers');
        }
      } catch (err) {
        throw new ProviderUnavailableError(`cannot use lxc: ${errorMessage(err)}`, { cause: err });
      }
    }
  }

  /**
   * Every container under the lxcpath, by host name: one `lxc-ls --fancy` call, then file reads
   * (markers, configs, cgroup limits of running ones). Directories without a config are reported
   * as partial containers.
   */
  async observeAll(signal: AbortSignal): Promise<ReadonlyMap<string, ObservedInstance>> {
    const { stdout } = await this.tools.run('lxc-ls', ['-P', this.lxcpath, '--fancy', '-F', 'name,state,pid,ipv4,ipv6'], { signal });
    const listed = new Map(parseLsFancy(stdout).map((e) => [e.name, e]));
    await this.observer.checkProcAgainst([...listed.values()].filter((e) => e.state !== 'STOPPED').map((e) => e.name));
    const names = await this.observer.listNames();
    const observed = await Promise.all(names.map((name) => {
      const row = listed.get(name);
      return this.observer.describe(name, row === undefined ? undefined : { state: row.state, ipv4: row.ipv4, ipv6: row.ipv6, ...(row.pid === undefined ? {} : { pid: row.pid }) });
    }));
    const out = new Map<string, ObservedInstance>();
    for (const o of observed) if (o !== undefined) out.set(o.hostName, o);
    return out;
  }

  /**
   * One container, from files and /proc when they tell enough (stopped; or running without a
   * veth, started by hyperlet), otherwise with one `lxc-info` call.
   */
  async observe(d: Desired<'Container'>, signal: AbortSignal): Promise<ObservedInstance | undefined> {
    const name = d.hostName;
    if (!(await exists(containerDir(this.lxcpath, name)))) return this.observer.describeLeftovers(name);
    if (!(await exists(configPath(this.lxcpath, name)))) return this.observer.describe(name, undefined);
    return this.observer.describe(name, (await this.observer.procFacts(name)) ?? (await this.observer.info(name, signal)));
  }

  /**
   * Creates the container stopped: its directory with the marker (incomplete) renamed into place,
   * lxc-create from the template or from `-t none` plus a copy of the prepared rootfs, the
   * managed config, marker complete. Succeeds
   * at once when a complete container of ours exists; clears a partial one of ours first.
   * Throws TerminalError `NotOwned` when the name is taken by a container hyperlet does not own,
   * and `TemplateNotFound`, before anything is made, when the template is not installed.
   */
  async create(d: Desired<'Container'>, signal: AbortSignal): Promise<void> {
    const name = d.hostName;
    const log = this.log.child({ key: d.key, hostName: name });
    const dir = containerDir(this.lxcpath, name);
    // Logs left in the directory of a container destroyed behind our back are no container: start afresh.
    if (await this.observer.isDebris(name)) await rm(dir, { recursive: true, force: true });
    if (await exists(dir)) {
      const marker = await this.requireOwned(d, 'create');
      if (marker.complete && await this.observer.isComplete(name)) return;
      log.info('clearing a partial container before creating it again');
      await this.destroyOwned(name, d.id, signal);
    }
    const spec = d.object.spec;
    if (spec.template !== undefined) await this.requireTemplate(name, spec.template);
    for (const arg of spec.templateArgs ?? []) {
      // The schema refuses these already; the template runs as root, so check again where it is run.
      const problem = templateArgProblem(arg);
      if (problem !== undefined) throw new TerminalError('InvalidSpec', `cannot create container ${name}: templateArgs: ${problem}`);
    }
    const fields = specFields('Container', spec);
    const applied = appliedConfigOf(fields);
    const managed = renderManagedConfig(applied, await this.renderContext(name, d.id));
    if (!isOwnerId(d.id)) throw new TerminalError('InvalidId', `cannot create container ${name}: its object id ${JSON.stringify(d.id)} is not a UUID-like id`);
    if (!applied.privileged) await this.openLxcpathToMappedRoot();
    // Before anything is made: a download still running, or refused, leaves no trace in the lxcpath.
    const imageBase = spec.image === undefined ? undefined : await this.imageBase(name, spec.image, applied.privileged);
    const marker: OwnershipMarker = {
      version: MARKER_VERSION, id: d.id, key: d.key, specHash: d.specHash, fields, complete: false, origin: 'created',
      updatedAt: new Date(this.clock.now()).toISOString(), ...restoreRequestRecord(d),
    };
    await this.placeDirectory(name, d.id, marker);
    failpoint('lxc.create.placed');
    const baseConf = join(dir, 'hyperlet-base.conf');
    try {
      if (spec.template !== undefined) {
        await writeFile(baseConf, `${managed.join('\n')}\n`, { mode: 0o600 });
        const args = spec.templateArgs ?? [];
        await this.tools.run('lxc-create', ['-P', this.lxcpath, '-n', name, '-t', spec.template, '-f', baseConf, ...(args.length === 0 ? [] : ['--', ...args])], {
          signal, timeoutMs: this.createTimeoutMs,
        });
      } else if (spec.rootfs !== undefined) {
        const source = spec.rootfs;
        if (!(await isDirectory(source))) {
          throw new TerminalError('RootfsNotFound', `cannot create container ${name}: rootfs ${source} is not a directory`);
        }
        const common = (await exists(COMMON_CONF)) ? COMMON_CONF : undefined;
        const base = [...renderRootfsBaseConfig(rootfsPath(this.lxcpath, name), name, common), ...managed];
        await writeFile(baseConf, `${base.join('\n')}\n`, { mode: 0o600 });
        await mkdir(rootfsPath(this.lxcpath, name), { mode: 0o755 });
        // A copy, never the directory itself: lxc-destroy deletes a dir-backed rootfs.
        await this.tools.run('cp', ['-a', '--', `${source}/.`, rootfsPath(this.lxcpath, name)], { signal, timeoutMs: this.createTimeoutMs });
        // Root in the container is hostId on the host: its files must be owned the same way (templates do this in LXC).
        if (!applied.privileged) await shiftOwnership(rootfsPath(this.lxcpath, name), this.idmap, signal);
        await this.tools.run('lxc-create', ['-P', this.lxcpath, '-n', name, '-t', 'none', '-f', baseConf], { signal, timeoutMs: this.createTimeoutMs });
      } else if (imageBase !== undefined) {
        await this.cloneImage(name, imageBase, managed, applied.privileged, baseConf, signal);
      } else {
        throw new TerminalError('InvalidSpec', `cannot create container ${name}: none of template, rootfs and image is set`);
      }
      failpoint('lxc.create.made');
      await this.writeConfig(name, managed, { durable: false });
      await unlink(baseConf);
      failpoint('lxc.create.configured');
      await writeMarker(markerPath(this.lxcpath, name), { ...marker, complete: true, updatedAt: new Date(this.clock.now()).toISOString() });
      log.info({ template: spec.template, rootfs: spec.rootfs, image: spec.image?.url }, 'container created');
    } catch (err) {
      // A killed or aborted create is cleaned by the next pass (the marker says partial); a failed one now.
      if (!signal.aborted) {
        await this.destroyOwned(name, d.id, AbortSignal.timeout(60_000)).catch((cleanupErr: unknown) =>
          log.warn({ err: cleanupErr }, 'cannot clean up after a failed create; the next pass will'));
      }
      throw err;
    }
  }

  /**
   * Applies `changes` of cpu, memory, environment, network and autostart: cpu and memory through
   * lxc-cgroup when the container runs, everything into the config. A restart-class change made
   * while the container runs only reaches the config: the marker keeps the old value, so it
   * stays pending until a restart. Template, rootfs and disk need a new container and are ignored.
   */
  async update(d: Desired<'Container'>, changes: readonly FieldChange[], _observed: ObservedInstance, signal: AbortSignal): Promise<void> {
    const name = d.hostName;
    const marker = await this.requireOwned(d, 'update');
    const want = specFields('Container', d.object.spec);
    const relevant = changes.filter((c) => CONFIG_FIELDS.has(c.path));
    if (relevant.length === 0) return;
    const facts = await this.observer.info(name, signal);
    const active = facts.state !== 'STOPPED';
    const configFields: Record<string, SpecFields[string]> = { ...marker.fields };
    const markerFields: Record<string, SpecFields[string]> = { ...marker.fields };
    for (const c of relevant) {
      const value = want[c.path] ?? null;
      configFields[c.path] = value;
      if (!active || FIELD_APPLY.Container[c.path] === 'live') markerFields[c.path] = value;
    }
    const config = appliedConfigOf(configFields);
    // The config first: observe reads cpu and memory from the live cgroup when the container runs,
    // so a live change made first and then cut short by a crash would hide that the config lacks it.
    await this.writeConfig(name, renderManagedConfig(config, await this.renderContext(name, marker.id)));
    failpoint('lxc.update.configured');
    if (active) {
      const cgroup = await this.cgroup();
      const live: { cpu?: number | null; memoryBytes?: number | null } = {};
      if (relevant.some((c) => c.path === 'resources.cpu')) live.cpu = config.cpu;
      if (relevant.some((c) => c.path === 'resources.memory')) live.memoryBytes = config.memoryBytes;
      for (const e of liveCgroupSettings(live, cgroup.version)) {
        await this.tools.run('lxc-cgroup', ['-P', this.lxcpath, '-n', name, e.key, e.value], { signal });
      }
    }
    failpoint('lxc.update.applied');
    const allApplied = Object.keys(FIELD_APPLY.Container).every((p) => (markerFields[p] ?? null) === (want[p] ?? null));
    await writeMarker(markerPath(this.lxcpath, name), {
      ...marker,
      fields: markerFields,
      ...(allApplied ? { specHash: d.specHash } : {}),
      updatedAt: new Date(this.clock.now()).toISOString(),
    });
    this.log.info({ key: d.key, hostName: name, fields: relevant.map((c) => c.path), live: active }, 'container updated');
  }

  /**
   * Moves the container to `to`: start, stop (graceful for gracefulStopSeconds, then killed),
   * freeze, thaw; from Stopped to Frozen it starts, then freezes. Starts from the state in
   * `observed` (LXC's own, in details.lxcState); each move is idempotent in LXC too, so a
   * slightly stale observation does no harm. Returns what was done, for status. The reconciler
   * stops with requestStop and forceStop instead when gracefulStopSeconds > 0, so no worker waits.
   */
  async setState(d: Desired<'Container'>, to: PowerState, observed: ObservedInstance, signal: AbortSignal): Promise<string | void> {
    const name = d.hostName;
    await this.requireOwned(d, 'change the state of');
    // The reconciler observed just now; ask LXC again only when that observation lacks LXC's state.
    const observedState = observed.details?.lxcState;
    const state = observedState !== undefined && observedState !== 'UNLISTED' ? observedState : (await this.observer.info(name, signal)).state;
    if (state === 'STARTING' || state === 'STOPPING' || state === 'ABORTING') {
      throw new Error(`cannot move container ${name} to ${to}: it is ${state}; retrying once it settles`);
    }
    const frozen = state === 'FROZEN' || state === 'FREEZING';
    switch (to) {
      case 'Running':
        if (state === 'STOPPED') {
          await this.start(name, signal);
          return 'started';
        }
        if (frozen) {
          await this.tools.run('lxc-unfreeze', ['-P', this.lxcpath, '-n', name], { signal });
          return 'thawed';
        }
        return;
      case 'Stopped':
        if (state === 'STOPPED') return;
        return this.stop(name, d.object.spec.gracefulStopSeconds, frozen, signal);
      case 'Frozen': {
        if (state === 'FROZEN') return;
        let note = 'frozen';
        if (state === 'STOPPED') {
          await this.start(name, signal);
          note = 'started, then frozen';
        }
        await this.tools.run('lxc-freeze', ['-P', this.lxcpath, '-n', name], { signal });
        return note;
      }
      default:
        throw new TerminalError('InvalidState', `cannot move container ${name} to ${to}: containers are Running, Stopped or Frozen`);
    }
  }

  /**
   * Asks the container to shut down (`lxc-stop --nowait`: LXC sends init its halt signal, SIGPWR
   * unless lxc.signal.halt says otherwise) and returns at once; a frozen one is thawed first, so
   * its init can handle the signal. A stopped or stopping container is left as it is.
   */
  async requestStop(d: Desired<'Container'>, observed: ObservedInstance, signal: AbortSignal): Promise<void> {
    const name = d.hostName;
    await this.requireOwned(d, 'stop');
    const state = await this.currentState(name, observed, signal);
    if (state === 'STOPPED' || state === 'STOPPING' || state === 'ABORTING') return;
    const args = ['-P', this.lxcpath, '-n', name];
    if (state === 'FROZEN' || state === 'FREEZING') await this.tools.run('lxc-unfreeze', args, { signal });
    try {
      await this.tools.run('lxc-stop', [...args, '--nowait'], { signal });
    } catch (err) {
      if (isAbortError(err)) throw err;
      // It may have stopped between the look and the request.
      if ((await this.observer.info(name, signal)).state !== 'STOPPED') throw err;
    }
    failpoint('lxc.stop.requested');
  }

  /** Kills the container (`lxc-stop -k`); a stopped one is success. Says so for status. */
  async forceStop(d: Desired<'Container'>, observed: ObservedInstance, signal: AbortSignal): Promise<string | void> {
    const name = d.hostName;
    await this.requireOwned(d, 'stop');
    if ((await this.currentState(name, observed, signal)) === 'STOPPED') return undefined;
    try {
      await this.tools.run('lxc-stop', ['-P', this.lxcpath, '-n', name, '-k'], { signal });
    } catch (err) {
      if (isAbortError(err)) throw err;
      if ((await this.observer.info(name, signal)).state === 'STOPPED') return undefined;
      throw err;
    }
    failpoint('lxc.stop.forced');
    this.log.info({ hostName: name, gracefulStopSeconds: d.object.spec.gracefulStopSeconds }, 'no clean shutdown in time; killed');
    return `killed after ${d.object.spec.gracefulStopSeconds} s without a clean shutdown`;
  }

  /** LXC's state of `name`: from `observed` when it has it, else from lxc-info. */
  private async currentState(name: string, observed: ObservedInstance, signal: AbortSignal): Promise<string> {
    const observedState = observed.details?.lxcState;
    return observedState !== undefined && observedState !== 'UNLISTED' ? observedState : (await this.observer.info(name, signal)).state;
  }

  /**
   * Takes over a container hyperlet did not create: writes the marker, with the fields read
   * from its config as applied, and changes nothing else. Throws TerminalError `NotOwned` when
   * another object's marker is there.
   */
  async adopt(d: Desired<'Container'>, _observed: ObservedInstance, signal: AbortSignal): Promise<void> {
    const name = d.hostName;
    const existing = await readMarker(markerPath(this.lxcpath, name));
    if (existing !== undefined && existing.id !== d.id) {
      throw new TerminalError('NotOwned', `cannot adopt container ${name}: it belongs to another object (id ${existing.id})`);
    }
    if (!(await exists(configPath(this.lxcpath, name)))) {
      throw new Error(`cannot adopt container ${name}: it has no config under ${this.lxcpath}`);
    }
    const current = await this.observer.describe(name, await this.observer.info(name, signal), { ignoreMarker: true });
    if (current === undefined) throw new Error(`cannot adopt container ${name}: it disappeared`);
    await writeMarker(markerPath(this.lxcpath, name), {
      version: MARKER_VERSION, id: d.id, key: d.key, fields: current.fields, complete: true, origin: 'adopted',
      updatedAt: new Date(this.clock.now()).toISOString(), ...restoreRequestRecord(d),
    });
    this.log.info({ key: d.key, hostName: name }, 'container adopted');
  }

  /**
   * Kills, destroys and removes the container and everything hyperlet made for it. Succeeds at
   * once when there is no such container; throws TerminalError `NotOwned`, touching nothing,
   * when the container is not this object's.
   */
  async delete(d: Desired<'Container'>, signal: AbortSignal): Promise<void> {
    const name = d.hostName;
    if (!(await exists(containerDir(this.lxcpath, name)))) {
      // What a killed create or delete of this object left beside the containers is all there is.
      await this.removeLeftovers(name, d.id);
      return;
    }
    await this.requireOwned(d, 'delete');
    await this.destroyOwned(name, d.id, signal);
    this.log.info({ key: d.key, hostName: name }, 'container deleted');
  }

  /** The stopped container's rootfs as a tar (lxc-data-archive.ts); refuses a running or foreign container. */
  async exportData(d: Desired<'Container'>, signal: AbortSignal): Promise<NodeJS.ReadableStream> {
    await this.requireOwned(d, 'export the data of');
    const observed = await this.observe(d, signal);
    if (observed?.state !== 'Stopped') throw new Error(`cannot export the data of ${d.hostName}: it is ${observed?.state ?? 'absent'}, not Stopped`);
    return exportRootfs(this.lxcpath, d.hostName, signal);
  }

  /** Replaces the stopped container's rootfs with an archive exportData made (lxc-data-archive.ts). */
  async importData(d: Desired<'Container'>, archivePath: string, signal: AbortSignal): Promise<void> {
    await this.requireOwned(d, 'import the data of');
    const observed = await this.observe(d, signal);
    if (observed?.state !== 'Stopped') throw new Error(`cannot import the data of ${d.hostName}: it is ${observed?.state ?? 'absent'}, not Stopped`);
    await importRootfs(this.lxcpath, d.hostName, archivePath, signal);
    this.log.info({ key: d.key, hostName: d.hostName }, 'container data imported');
  }

  /** Host names of containers whose state changed, from lxc-monitor (see lxc-monitor.ts). */
  changes(signal: AbortSignal): AsyncIterable<string> {
    return this.monitor.changes(signal);
  }

  /** The console log LXC writes for `hostName` (lxc.console.logfile). */
  consoleLogPath(hostName: string): string {
    return consoleLogPath(this.lxcpath, hostName);
  }

  /** The part the console log is rotated to (NAME.1). */
  rotatedConsoleLogPath(hostName: string): string {
    return rotatedConsoleLogPath(this.lxcpath, hostName);
  }

  /**
   * Attaches to the console (tty 0) of running container `hostName` through lxc-console. Refuses a
   * container without hyperlet's marker (NotOwned) and a missing one (InstanceNotFoundError).
   */
  async openConsole(hostName: string): Promise<ConsoleSession> {
    assertHostName(hostName);
    if (!(await exists(configPath(this.lxcpath, hostName)))) {
      throw new InstanceNotFoundError(`cannot attach to container ${hostName}: it does not exist in ${this.lxcpath}`);
    }
    if ((await readMarker(markerPath(this.lxcpath, hostName))) === undefined) {
      throw new TerminalError('NotOwned', `cannot attach to container ${hostName}: hyperlet does not manage it (no ownership marker)`);
    }
    return openLxcConsole(this.lxcpath, hostName);
  }

  /** Runs `command` in the running container through lxc-attach, with a cleared environment. */
  exec(hostName: string, command: readonly string[]): Promise<number> {
    return execInContainer({ lxcpath: this.lxcpath, hostName, command: [...command] });
  }

  /** Stops lxc-monitor, ends every changes() stream and aborts image downloads; the daemon calls it on shutdown. */
  close(): void {
    this.monitor.close();
    this.images?.close();
  }

  // ---- internals ----

  private cgroup(): Promise<CgroupHost> {
    this.cgroupHost ??= CgroupHost.detect().catch((err: unknown) => {
      this.cgroupHost = undefined;
      throw err;
    });
    return this.cgroupHost;
  }

  /** Snapshot of the container's rootfs, frozen for the copy when running (lxc-snapshots.ts). */
  async snapshot(d: Desired<'Container'>, name: string, options: SnapshotOptions, signal: AbortSignal): Promise<InstanceSnapshot> {
    assertSnapshotName(name);
    const marker = await this.requireOwned(d, 'snapshot');
    return this.snapshots.take(d.hostName, name, marker.specHash, options, signal);
  }

  /** A portable archive of the container's config and rootfs (lxc-backups.ts); running ones from a snapshot. */
  async backup(d: Desired<'Container'>, options: BackupOptions, signal: AbortSignal): Promise<BackupSummary> {
    const marker = await this.requireOwned(d, 'back up');
    return this.backups.backup(d.hostName, d.object as unknown as Record<string, unknown>, marker.specHash, options, signal);
  }

  /** A stopped, unmarked container from an archive, in this provider's lxcpath (lxc-backups.ts). */
  async restoreBackup(options: RestoreBackupOptions, signal: AbortSignal): Promise<RestoredBackup> {
    return this.backups.restore(options, signal);
  }

  /** The container's complete snapshots, oldest first; none when it does not exist or is not `d`'s. */
  async listSnapshots(d: Desired<'Container'>, _signal: AbortSignal): Promise<readonly InstanceSnapshot[]> {
    const marker = await readMarker(markerPath(this.lxcpath, d.hostName)).catch(() => undefined);
    if (marker?.id !== d.id) return [];
    return this.snapshots.list(d.hostName);
  }

  /** Puts the snapshot's rootfs back into the stopped container; its config (the declared spec) stays. */
  async restoreSnapshot(d: Desired<'Container'>, name: string, signal: AbortSignal): Promise<RestoreOutcome> {
    assertSnapshotName(name);
    const marker = await this.requireOwned(d, 'restore');
    const snapshot = await this.snapshots.restore(d.hostName, name, signal);
    const request = d.object.metadata.annotations?.[RESTORE_REQUEST_ANNOTATION];
    if (request !== undefined && snapshotOfRestoreRequest(request) === name) {
      // Recorded so the request is acted on once: the plan compares it with the annotation.
      await writeMarker(markerPath(this.lxcpath, d.hostName), { ...marker, restoreRequest: request, updatedAt: new Date().toISOString() });
      failpoint('lxc.restore.marked');
    }
    const specDiffers = snapshot.specHash !== undefined && marker.specHash !== undefined && snapshot.specHash !== marker.specHash;
    const note = specDiffers
      ? `restored rootfs from snapshot ${name}; it was taken with another spec, the declared spec is kept`
      : `restored rootfs from snapshot ${name}`;
    return { snapshot, specDiffers, note };
  }

  /** Removes what snapshots cut short left in the container `d` owns (lxc-snapshots.ts); complete snapshots stay. */
  async sweepSnapshots(d: Desired<'Container'>, _signal: AbortSignal): Promise<void> {
    const marker = await readMarker(markerPath(this.lxcpath, d.hostName)).catch(() => undefined);
    if (marker?.id !== d.id) return;
    await this.snapshots.sweep(d.hostName);
  }

  /** Deletes one snapshot; a missing one (or a missing container) is success. */
  async deleteSnapshot(d: Desired<'Container'>, name: string, _signal: AbortSignal): Promise<void> {
    assertSnapshotName(name);
    if (!(await exists(containerDir(this.lxcpath, d.hostName)))) return;
    await this.requireOwned(d, 'delete a snapshot of');
    await this.snapshots.delete(d.hostName, name);
  }

  /**
   * Lets an unprivileged container's mapped root pass through the lxcpath, as through
   * /var/lib/lxc (0755): the lxcpath is hyperlet's, so it gets o+x; the directories above are
   * the operator's, so they are only checked (before anything is made).
   */
  private async openLxcpathToMappedRoot(): Promise<void> {
    const st = await stat(this.lxcpath);
    if ((st.mode & 0o001) === 0) await chmod(this.lxcpath, (st.mode & 0o7777) | 0o001);
    await assertSearchableByOthers(dirname(this.lxcpath));
  }

  private async renderContext(name: string, ownerId: string): Promise<RenderContext> {
    return {
      lxcpath: this.lxcpath, hostName: name, cgroupVersion: (await this.cgroup()).version, ownerId,
      consoleLogPath: consoleLogPath(this.lxcpath, name), idmap: this.idmap,
      ...(this.consoleLogBytes === undefined ? {} : { consoleLogBytes: this.consoleLogBytes }),
    };
  }

  /**
   * The unpacked base of `image` in the cache, its files owned by the mapped ids unless
   * `privileged`. Throws StepPendingError while it downloads or unpacks (status shows the bytes),
   * and the cache's TerminalError when it was refused.
   */
  private async imageBase(name: string, image: ImageSource, privileged: boolean): Promise<string> {
    if (this.images === undefined) {
      throw new TerminalError('InvalidSpec', `cannot create container ${name} from an image: this daemon has no image cache`);
    }
    const idmap = this.idmap;
    const fetched = privileged
      ? await this.images.rootfs(image, 'privileged')
      : await this.images.rootfs(image, `idmap:${idmap.hostId}:${idmap.size}`, async (dir, signal) => {
        await shiftOwnership(dir, idmap, signal);
      });
    if (fetched.state === 'pending') {
      const total = fetched.totalBytes === undefined ? '' : ` of ${fetched.totalBytes}`;
      const [reason, message] = fetched.phase === 'downloading'
        ? ['DownloadingImage', `Downloading image ${image.url}: ${fetched.receivedBytes}${total} bytes`]
        : ['UnpackingImage', `Unpacking image ${image.url} (${fetched.receivedBytes} bytes) into the image cache`];
      // 250 ms doubling to 5 s: a small local image is ready at the first look back, a big download is not polled hot.
      throw new StepPendingError(reason, message, Math.min(5_000, 250 * 2 ** Math.min(fetched.polls, 5)));
    }
    if (fetched.path.includes(':') || this.lxcpath.includes(':')) {
      throw new TerminalError('InvalidSpec', `cannot clone image for container ${name}: LXC's overlay: rootfs cannot name paths holding ':'`);
    }
    if (!privileged) await assertSearchableByOthers(fetched.path);
    return fetched.path;
  }

  /**
   * Makes container `name` a copy-on-write clone of the cached tree `base`: an overlayfs whose
   * upper directory is the container's rootfs/ (LXC mounts it at start; workdir work/ beside it),
   * or, where overlayfs is missing, a plain copy. The base is never written.
   */
  private async cloneImage(
    name: string, base: string, managed: readonly string[], privileged: boolean, baseConf: string, signal: AbortSignal,
  ): Promise<void> {
    const dir = containerDir(this.lxcpath, name);
    const rootfs = rootfsPath(this.lxcpath, name);
    const common = (await exists(COMMON_CONF)) ? COMMON_CONF : undefined;
    await writeFile(baseConf, `${[...renderRootfsBaseConfig(rootfs, name, common), ...managed].join('\n')}\n`, { mode: 0o600 });
    await mkdir(rootfs, { mode: 0o755 });
    const overlay = await this.overlaySupported();
    if (overlay) {
      const work = join(dir, 'work');
      await mkdir(work, { mode: 0o755 });
      // LXC mounts the overlay inside the user namespace: its root must own the upper and work directories.
      if (!privileged) for (const path of [rootfs, work]) await chown(path, shiftedId(0, this.idmap), shiftedId(0, this.idmap));
    } else {
      await this.tools.run('cp', ['-a', '--', `${base}/.`, rootfs], { signal, timeoutMs: this.createTimeoutMs });
    }
    await this.tools.run('lxc-create', ['-P', this.lxcpath, '-n', name, '-t', 'none', '-f', baseConf], { signal, timeoutMs: this.createTimeoutMs });
    if (overlay) {
      // lxc-create takes only an existing directory: the overlay is named once the config exists.
      const path = configPath(this.lxcpath, name);
      await writeFileAtomic(path, withRootfsPath(await readFile(path, 'utf8'), `overlay:${base}:${rootfs}`), 0o640, { durable: false });
    }
  }

  /** Whether this kernel has overlayfs (/proc/filesystems), asked once. */
  private overlaySupported(): Promise<boolean> {
    this.overlay ??= readFile('/proc/filesystems', 'utf8').then((text) => /\toverlay$/m.test(text), () => false);
    return this.overlay;
  }

  /**
   * TerminalError `TemplateNotFound` unless template `template` is an executable `lxc-NAME` in
   * the templates directory: otherwise lxc-create would fail the same way on every retry.
   */
  private async requireTemplate(name: string, template: string): Promise<void> {
    const script = join(this.templatesDir, `lxc-${template}`);
    try {
      await access(script, fsConstants.X_OK);
    } catch (err) {
      const why = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'is not installed' : 'cannot be run';
      throw new TerminalError('TemplateNotFound',
        `cannot create container ${name}: LXC template ${template} ${why} (no executable ${script}; install it, or name another template)`,
        { cause: err });
    }
  }

  /** The marker, when the container is `d`'s; otherwise TerminalError `NotOwned`, before anything is touched. */
  private async requireOwned(d: Desired<'Container'>, verb: string): Promise<OwnershipMarker> {
    const name = d.hostName;
    const marker = await readMarker(markerPath(this.lxcpath, name));
    if (marker === undefined) {
      if (!(await exists(containerDir(this.lxcpath, name)))) throw new Error(`cannot ${verb} container ${name}: it does not exist`);
      throw new TerminalError('NotOwned', `cannot ${verb} container ${name}: hyperlet did not create it (no ownership marker)`);
    }
    if (marker.id !== d.id) {
      throw new TerminalError('NotOwned', `cannot ${verb} container ${name}: it belongs to another object (id ${marker.id})`);
    }
    return marker;
  }

  /** Kills, destroys and removes a container whose ownership (by `ownerId`) was checked, whole or partial, and its leftovers. */
  private async destroyOwned(name: string, ownerId: string, signal: AbortSignal): Promise<void> {
    const dir = containerDir(this.lxcpath, name);
    const marker = await readMarker(markerPath(this.lxcpath, name)).catch(() => undefined);
    if (marker?.complete !== true) {
      // A create cut short may have left lxc-create or its template running: stop them writing first.
      const killed = await killCreators(this.lxcpath, name, { clock: this.clock });
      if (killed.length > 0) this.log.info({ hostName: name, pids: killed }, 'killed processes left creating a partial container');
    }
    if (await exists(configPath(this.lxcpath, name))) {
      const facts = await this.observer.info(name, signal);
      if (facts.state !== 'STOPPED') await this.tools.run('lxc-stop', ['-P', this.lxcpath, '-n', name, '-k'], { signal });
      failpoint('lxc.delete.stopped');
      // An adopted container may keep its rootfs elsewhere or on another backend: LXC removes it.
      // hyperlet's own are dir-backed inside the directory, which goes below in one rename.
      if (marker?.origin !== 'created') {
        try {
          await this.tools.run('lxc-destroy', ['-P', this.lxcpath, '-n', name], { signal, timeoutMs: this.createTimeoutMs });
        } catch (err) {
          if (isAbortError(err)) throw err;
          // A half-written config can make lxc-destroy refuse; the directory check below decides.
          this.log.warn({ hostName: name, err }, 'lxc-destroy failed; removing the directory');
          if ((await this.observer.info(name, signal)).state !== 'STOPPED') throw err;
        }
      }
    }
    // Whatever is left (a partial create, a template that kept writing): it is all ours. Out of
    // the lxcpath in one step first, so a crash while removing leaves debris, not a container
    // without its marker.
    const trash = leftoverDir(this.lxcpath, name, ownerId, 'trash');
    await rm(trash, { recursive: true, force: true, maxRetries: 3 });
    try {
      await rename(dir, trash);
      failpoint('lxc.delete.trashed');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new Error(`cannot move ${dir} out of the lxcpath`, { cause: err });
    }
    await this.removeLeftovers(name, ownerId);
  }

  /** Removes the staging and trash directories of container `name` named with `ownerId` (see leftoverDir). */
  private async removeLeftovers(name: string, ownerId: string): Promise<void> {
    if (!isOwnerId(ownerId)) return; // no leftover can carry such an id
    for (const kind of ['staging', 'trash'] as const) {
      await rm(leftoverDir(this.lxcpath, name, ownerId, kind), { recursive: true, force: true, maxRetries: 3 });
    }
  }

  /**
   * Makes the container's directory holding `marker`: prepared under its staging name, then
   * renamed into place, so it never exists without the marker. Throws when the name is taken.
   */
  private async placeDirectory(name: string, ownerId: string, marker: OwnershipMarker): Promise<void> {
    const staging = leftoverDir(this.lxcpath, name, ownerId, 'staging');
    await this.removeLeftovers(name, ownerId);
    await mkdir(staging, { mode: 0o770 });
    // Not fsynced: it guards against a killed hyperlet (the page cache survives that); the complete marker is.
    await writeMarker(join(staging, basename(markerPath(this.lxcpath, name))), marker, { durable: false });
    failpoint('lxc.create.staged');
    try {
      await rename(staging, containerDir(this.lxcpath, name));
    } catch (err) {
      await rm(staging, { recursive: true, force: true }).catch(() => undefined);
      throw new Error(`cannot create the directory of container ${name}`, { cause: err });
    }
  }

  private async writeConfig(name: string, managed: readonly string[], options: { durable?: boolean } = {}): Promise<void> {
    const path = configPath(this.lxcpath, name);
    const current = await readFile(path, 'utf8');
    const next = mergeConfig(current, managed);
    if (next !== current) await writeFileAtomic(path, next, 0o640, options);
  }

  private async start(name: string, signal: AbortSignal): Promise<void> {
    // A restore cut short may have left the rootfs aside: never start without it.
    await this.snapshots.recoverRestore(name);
    const logFile = startLogPath(this.lxcpath, name);
    await writeFile(logFile, '', { mode: 0o600 });
    try {
      await this.tools.run('lxc-start', ['-P', this.lxcpath, '-n', name, '-l', 'ERROR', '-o', logFile, '-p', monitorPidPath(this.lxcpath, name)], { signal });
    } catch (err) {
      if (isAbortError(err)) throw err;
      const why = summarizeLxcLog(await readFile(logFile, 'utf8').catch(() => ''));
      throw new Error(`cannot start container ${name}${why === '' ? '' : `: ${why}`}`, { cause: err });
    }
    await this.observer.checkProcAgainst([name]);
  }

  private async stop(name: string, gracefulStopSeconds: number, frozen: boolean, signal: AbortSignal): Promise<string | undefined> {
    const args = ['-P', this.lxcpath, '-n', name];
    if (gracefulStopSeconds > 0) {
      // A frozen init cannot handle the halt signal: thaw it first.
      if (frozen) await this.tools.run('lxc-unfreeze', args, { signal });
      try {
        await this.tools.run('lxc-stop', [...args, '-t', String(gracefulStopSeconds), '--nokill'], {
          signal, timeoutMs: gracefulStopSeconds * 1000 + 10_000,
        });
        return 'stopped gracefully';
      } catch (err) {
        if (isAbortError(err)) throw err;
        if ((await this.observer.info(name, signal)).state === 'STOPPED') return 'stopped gracefully';
        this.log.info({ hostName: name, gracefulStopSeconds }, 'no clean shutdown in time; killing');
      }
    }
    try {
      await this.tools.run('lxc-stop', [...args, '-k'], { signal });
    } catch (err) {
      if (isAbortError(err)) throw err;
      // lxc-stop fails on a stopped container: a retry after a stop that worked, or one done behind our back.
      if ((await this.observer.info(name, signal)).state === 'STOPPED') return undefined;
      throw err;
    }
    return gracefulStopSeconds > 0 ? `killed after ${gracefulStopSeconds} s without a clean shutdown` : 'killed (gracefulStopSeconds is 0)';
  }
}

/** A new instance has had the restore request its object carries already: it has nothing to restore. */
function restoreRequestRecord(d: Desired<'Container'>): { restoreRequest?: string } {
  const request = d.object.metadata.annotations?.[RESTORE_REQUEST_ANNOTATION];
  return request === undefined ? {} : { restoreRequest: request };
}

async function onPath(tool: string): Promise<boolean> {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir === '') continue;
    try {
      await access(join(dir, tool), fsConstants.X_OK);
      return true;
    } catch {
      // not in this directory
    }
  }
  return false;
}
