/**
 * What the LXC provider sees of a container: what LXC says (one lxc-ls row, lxc-info, or /proc
 * when that settles it without a spawn), and the files hyperlet keeps beside it (marker, config,
 * rootfs), plus the live cgroup limits. Changes nothing.
 */
import type { Dirent } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import type { Logger } from 'pino';
import type { SpecFields } from '../../api/v1alpha1/fields.js';
import type { InstanceState, ObservedInstance } from '../provider.js';
import type { CgroupHost, LiveLimits } from './cgroup-host.js';
import {
  type Leftover, configPath, consoleLogPath, containerDir, isHostName, markerPath, monitorPidPath, parseLeftover, rotatedConsoleLogPath, startLogPath,
} from './container-paths.js';
import { fieldsFromConfig, parseConfig } from './lxc-config.js';
import { RESTORE_OUTGOING } from './lxc-snapshots.js';
import { commandSocketName, lxcStateFromFreezer, monitorTitle, parseAbstractSockets, parseChildren } from './lxc-proc-state.js';
import { type LxcToolRunner, instanceStateOf, isLxcToolError, parseInfo } from './lxc-tools.js';
import { type OwnershipMarker, readMarker } from './ownership-marker.js';
import { processStartTime } from './process-start-time.js';

/** v1 and v2 both keep memory limits in whole pages. */
const PAGE_BYTES = 4096;

/** What one lxc-ls row or lxc-info call said about a container. */
export interface LxcFacts {
  readonly state: string;
  readonly pid?: number;
  readonly ipv4: readonly string[];
  /** Global IPv6 addresses (link-local ones are not reported). */
  readonly ipv6?: readonly string[];
}

/** How long a read of /proc or cgroup files about one container may take before it is given up. */
const PROC_READ_TIMEOUT_MS = 2_000;

/** `work`'s result, or `fallback` when it takes longer than `ms` (or fails); the work is left to finish alone. */
async function withinMs<T, F>(ms: number, work: Promise<T>, fallback: F): Promise<T | F> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<F>((resolve) => { timer = setTimeout(() => resolve(fallback), ms); });
  try {
    return await Promise.race([work.catch(() => fallback), late]);
  } finally {
    clearTimeout(timer);
  }
}

/** Where containers live and how observations reach lxc-* tools. */
export interface LxcObserverOptions {
  readonly lxcpath: string;
  readonly tools: LxcToolRunner;
  readonly logger: Logger;
  readonly cgroup: () => Promise<CgroupHost>;
}

/** Reads what LXC and hyperlet's files say about containers; changes nothing. */
export class LxcObserver {
  private readonly lxcpath: string;
  private readonly tools: LxcToolRunner;
  private readonly log: Logger;
  private readonly cgroup: () => Promise<CgroupHost>;
  /** Whether /proc can stand in for lxc-info (lxc-proc-state.ts); turned off for good on any contradiction. */
  private procFastPath = true;

  constructor(options: LxcObserverOptions) {
    this.lxcpath = options.lxcpath;
    this.tools = options.tools;
    this.log = options.logger;
    this.cgroup = options.cgroup;
  }

  /** Directory names under the lxcpath that could be containers, and the containers hyperlet's leftovers name. */
  async listNames(): Promise<string[]> {
    const dirs = (await this.entries()).filter((e) => e.isDirectory());
    const names = new Set(dirs.filter((e) => isHostName(e.name)).map((e) => e.name));
    for (const e of dirs) {
      const leftover = parseLeftover(e.name);
      if (leftover !== undefined) names.add(leftover.hostName);
    }
    return [...names];
  }

  private async entries(): Promise<Dirent[]> {
    try {
      return await readdir(this.lxcpath, { withFileTypes: true });
    } catch (err) {
      throw new Error(`cannot list ${this.lxcpath}`, { cause: err });
    }
  }

  /** The staging and trash directories a killed hyperlet left for container `name` (container-paths.ts leftoverDir). */
  async leftovers(name: string): Promise<Leftover[]> {
    return (await this.entries()).filter((e) => e.isDirectory()).map((e) => parseLeftover(e.name)).filter((l): l is Leftover => l?.hostName === name);
  }

  /**
   * What hyperlet's leftovers of `name` make, while it has no directory: a partial, stopped
   * container of the object their name gives (marker or not: the name says whose), or undefined
   * when there are none.
   */
  async describeLeftovers(name: string): Promise<ObservedInstance | undefined> {
    const found = await this.leftovers(name);
    const first = found[0];
    if (first === undefined) return undefined;
    return {
      hostName: name, state: 'Stopped', fields: {}, ownerId: first.ownerId, partial: true,
      details: { lxcState: 'STOPPED', leftovers: found.map((l) => l.entry).join(' ') },
    };
  }

  /**
   * The container's state from /proc and its cgroup (see lxc-proc-state.ts), or undefined when
   * they do not settle it: lxc-info must then be asked.
   */
  async procFacts(name: string): Promise<LxcFacts | undefined> {
    if (!this.procFastPath) return undefined;
    // /proc reads about a container being killed while frozen can block in the kernel: never wait on them.
    return withinMs(PROC_READ_TIMEOUT_MS, this.procFactsUnbounded(name), undefined);
  }

  private async procFactsUnbounded(name: string): Promise<LxcFacts | undefined> {
    const socket = commandSocketName(this.lxcpath, name);
    if (socket === undefined) return undefined;
    try {
      if (!parseAbstractSockets(await readFile('/proc/net/unix', 'utf8')).has(socket)) return { state: 'STOPPED', ipv4: [] };
      // Running: only lxc-info knows its addresses, so this path is for containers without a veth.
      const marker = await readMarker(markerPath(this.lxcpath, name));
      if (marker === undefined || hasVeth(marker.fields.network)) return undefined;
      const monitorPid = Number((await readFile(monitorPidPath(this.lxcpath, name), 'utf8')).trim());
      if (!Number.isSafeInteger(monitorPid) || monitorPid <= 0) return undefined;
      const title = (await readFile(`/proc/${monitorPid}/cmdline`, 'utf8')).replace(/\0+$/, '');
      if (title !== monitorTitle(this.lxcpath, name)) return undefined; // a stale pid file
      const children = parseChildren(await readFile(`/proc/${monitorPid}/task/${monitorPid}/children`, 'utf8'));
      const pid = children[0];
      if (children.length !== 1 || pid === undefined) return undefined;
      const cgroup = await this.cgroup();
      const freezer = await cgroup.readFreezer(pid);
      const state = freezer === undefined ? undefined : lxcStateFromFreezer(freezer, cgroup.version);
      return state === undefined ? undefined : { state, pid, ipv4: [] };
    } catch {
      return undefined; // a file went away meanwhile: ask lxc-info
    }
  }

  /** Turns the /proc path off for good when a container LXC calls active has no command socket we can see. */
  async checkProcAgainst(activeNames: readonly string[]): Promise<void> {
    if (!this.procFastPath || activeNames.length === 0) return;
    const sockets = parseAbstractSockets(await readFile('/proc/net/unix', 'utf8').catch(() => ''));
    const unseen = activeNames.find((name) => {
      const socket = commandSocketName(this.lxcpath, name);
      return socket !== undefined && !sockets.has(socket);
    });
    if (unseen === undefined) return;
    this.procFastPath = false;
    this.log.warn({ hostName: unseen }, 'cannot see the command socket of an active container in /proc/net/unix (another network namespace?); asking lxc-info from now on');
  }

  /** lxc-info for one container; a container LXC does not know is STOPPED (its config is missing or half-written). */
  async info(name: string, signal: AbortSignal): Promise<LxcFacts> {
    try {
      const { stdout } = await this.tools.run('lxc-info', ['-P', this.lxcpath, '-n', name, '-s', '-p', '-i'], { signal });
      const info = parseInfo(stdout);
      return { state: info.state ?? 'UNKNOWN', ipv4: info.ipv4, ipv6: info.ipv6, ...(info.pid === undefined ? {} : { pid: info.pid }) };
    } catch (err) {
      if (isLxcToolError(err) && /doesn't exist|not defined/.test(err.stderr)) return { state: 'STOPPED', ipv4: [] };
      throw err;
    }
  }

  /**
   * Builds the observation of `name` from what LXC said (`facts`, undefined when it did not list
   * the container) and the files: marker, config, rootfs, cgroup limits, process start time.
   */
  async describe(name: string, facts: LxcFacts | undefined, opts: { ignoreMarker?: boolean } = {}): Promise<ObservedInstance | undefined> {
    const dir = containerDir(this.lxcpath, name);
    if (!(await exists(dir)) || (await this.isDebris(name))) return this.describeLeftovers(name);
    const cgroup = await this.cgroup();
    let marker: OwnershipMarker | undefined;
    let markerProblem: string | undefined;
    if (opts.ignoreMarker !== true) {
      try {
        marker = await readMarker(markerPath(this.lxcpath, name));
      } catch (err) {
        markerProblem = (err as Error).message; // neither clearly ours nor someone else's: left alone
      }
    }
    // Only a missing config means "no config" (a partial container, cleaned up); any other failure to read it throws.
    const configText = await readIfExists(configPath(this.lxcpath, name));
    // A restore cut short between its renames left the rootfs aside: the container is whole (the
    // next restore or start puts it back), never partial, or its cleanup would take its snapshots.
    const rootfsOk = configText !== undefined
      && ((await this.rootfsExists(configText)) || (await isDirectory(join(dir, RESTORE_OUTGOING))));
    const fromConfig = configText === undefined ? undefined : fieldsFromConfig(configText, cgroup.version);
    const fields: Record<string, SpecFields[string]> = marker !== undefined ? { ...marker.fields } : { ...(fromConfig ?? {}) };
    // With no config, LXC cannot know the container: it is stopped whatever lxc-ls said.
    const lxcState = configText === undefined ? 'STOPPED' : facts?.state;
    const state: InstanceState = instanceStateOf(lxcState);
    const pid = state === 'Stopped' ? undefined : facts?.pid;
    const limits = pid === undefined ? undefined : await withinMs(PROC_READ_TIMEOUT_MS, cgroup.readLimits(pid), undefined);
    if (fromConfig !== undefined) {
      fields.autostart = fromConfig.autostart ?? false;
      fields.privileged = fromConfig.privileged ?? true; // the config says whether it has a user namespace
      const liveCpu = limits === undefined ? fromConfig['resources.cpu'] ?? null : cpuOf(limits);
      const liveMemory = limits === undefined ? fromConfig['resources.memory'] ?? null : limits.memoryBytes;
      fields['resources.cpu'] = settle(fields['resources.cpu'], liveCpu, (applied) => applied);
      fields['resources.memory'] = settle(fields['resources.memory'], liveMemory, (applied) => Math.floor(applied / PAGE_BYTES) * PAGE_BYTES);
    }
    const partial = configText === undefined || !rootfsOk || (marker !== undefined && !marker.complete);
    const startedAt = pid === undefined ? undefined : await withinMs(PROC_READ_TIMEOUT_MS, processStartTime(pid), undefined);
    const details: Record<string, string> = { lxcState: lxcState ?? 'UNLISTED', cgroup: `v${cgroup.version}` };
    if (markerProblem !== undefined) details.marker = markerProblem;
    if (marker !== undefined) details.origin = marker.origin;
    if (marker?.restoreRequest !== undefined) details.restoreRequest = marker.restoreRequest;
    return {
      hostName: name,
      state: lxcState === undefined ? 'Unknown' : state,
      fields,
      ...(marker === undefined ? {} : { ownerId: marker.id }),
      ...(marker?.specHash === undefined ? {} : { specHash: marker.specHash }),
      ...(partial ? { partial: true } : {}),
      ...(pid === undefined ? {} : { pid }),
      ...(facts !== undefined && facts.ipv4.length + (facts.ipv6?.length ?? 0) > 0 ? { addresses: [...facts.ipv4, ...facts.ipv6 ?? []] } : {}),
      ...(startedAt === undefined ? {} : { startedAt }),
      details,
    };
  }

  /**
   * Whether the container's directory holds nothing but logs hyperlet writes (a start or console
   * log re-created after the container was destroyed behind its back): no container, nobody's.
   */
  async isDebris(name: string): Promise<boolean> {
    const entries = await readdir(containerDir(this.lxcpath, name)).catch(() => undefined);
    if (entries === undefined) return false;
    const logs = new Set([startLogPath, consoleLogPath, rotatedConsoleLogPath, monitorPidPath].map((f) => basename(f(this.lxcpath, name))));
    return entries.every((e) => logs.has(e));
  }

  async rootfsExists(configText: string): Promise<boolean> {
    const value = parseConfig(configText).filter((e) => e.key === 'lxc.rootfs.path').at(-1)?.value;
    if (value === undefined) return false;
    const path = value.startsWith('dir:') ? value.slice(4) : value;
    return path.startsWith('/') ? isDirectory(path) : true; // other backends (overlay:, lvm:) are not ours to check
  }

  async isComplete(name: string): Promise<boolean> {
    const text = await readIfExists(configPath(this.lxcpath, name));
    return text !== undefined && this.rootfsExists(text);
  }
}

/** Whether flattened `network` asks for a veth (type defaults to veth); unreadable counts as yes. */
function hasVeth(network: SpecFields[string] | undefined): boolean {
  if (typeof network !== 'string') return network !== null && network !== undefined;
  try {
    const list = JSON.parse(network) as unknown;
    return !Array.isArray(list) || list.some((n) => (n as { type?: unknown } | null)?.type !== 'none');
  } catch {
    return true;
  }
}

/** cpu as a CPU count from quota/period; null when unlimited. */
function cpuOf(limits: LiveLimits): number | null {
  return limits.cpuQuotaUs === null ? null : limits.cpuQuotaUs / limits.cpuPeriodUs;
}

/**
 * The applied value when the live one is what the kernel makes of it (memory rounded down to
 * whole pages), otherwise the live value: drift shows, rounding does not.
 */
function settle(applied: SpecFields[string] | undefined, live: SpecFields[string], kernelForm: (applied: number) => number): SpecFields[string] {
  if (typeof applied === 'number' && typeof live === 'number' && kernelForm(applied) === live) return applied;
  if (typeof applied === 'number' && typeof live === 'number' && applied === live) return applied;
  return live;
}

/** Whether a failed file call says the path is not there (as opposed to "cannot tell"). */
function isAbsent(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

/** Whether `path` exists; throws when that cannot be told (ELOOP, EIO, EACCES…): never "no" by default. */
export async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (err) {
    if (isAbsent(err)) return false;
    throw new Error(`cannot stat ${path}`, { cause: err });
  }
}

/** Whether `path` is a directory; throws when that cannot be told. */
export async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch (err) {
    if (isAbsent(err)) return false;
    throw new Error(`cannot stat ${path}`, { cause: err });
  }
}

/** The text of `path`, or undefined when it does not exist; throws on any other failure to read it. */
export async function readIfExists(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    if (isAbsent(err)) return undefined;
    throw new Error(`cannot read ${path}`, { cause: err });
  }
}
