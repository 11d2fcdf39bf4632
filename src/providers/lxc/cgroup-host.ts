/**
 * Which cgroup version this host's memory and cpu controllers use, and the live limits of a
 * running container read straight from its cgroup files (no process spawned).
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type Clock, sleep } from '../../shared/clock.js';

/** Which cgroup hierarchy the host runs. */
export type CgroupVersion = 1 | 2;

/** Where the memory and cpu controllers are mounted. */
export interface CgroupLayout {
  readonly version: CgroupVersion;
  readonly memoryRoot: string;
  readonly cpuRoot: string;
  /** Undefined on a v1 host without the freezer controller mounted. */
  readonly freezerRoot?: string;
}

/** Limits as the kernel holds them; null is "no limit". */
export interface LiveLimits {
  readonly memoryBytes: number | null;
  readonly cpuQuotaUs: number | null;
  readonly cpuPeriodUs: number;
}

/**
 * Reads /proc/self/mounts text. The memory controller decides: on a v1 or hybrid host it sits on
 * a `cgroup` mount (LXC then takes `lxc.cgroup.*` keys); on a unified host on the `cgroup2` mount
 * (`lxc.cgroup2.*`). A hybrid host's empty cgroup2 mount does not count. Undefined: no cgroups.
 */
export function parseCgroupLayout(mounts: string): CgroupLayout | undefined {
  let memoryV1: string | undefined;
  let cpuV1: string | undefined;
  let freezerV1: string | undefined;
  let unified: string | undefined;
  for (const line of mounts.split('\n')) {
    const [, mountPoint, type, options] = line.split(' ');
    if (mountPoint === undefined || options === undefined) continue;
    if (type === 'cgroup') {
      const controllers = options.split(',');
      if (controllers.includes('memory')) memoryV1 = mountPoint;
      if (controllers.includes('cpu')) cpuV1 = mountPoint;
      if (controllers.includes('freezer')) freezerV1 = mountPoint;
    } else if (type === 'cgroup2' && (unified === undefined || mountPoint === '/sys/fs/cgroup')) {
      unified = mountPoint;
    }
  }
  if (memoryV1 !== undefined) {
    return { version: 1, memoryRoot: memoryV1, cpuRoot: cpuV1 ?? memoryV1, ...(freezerV1 === undefined ? {} : { freezerRoot: freezerV1 }) };
  }
  if (unified !== undefined) return { version: 2, memoryRoot: unified, cpuRoot: unified, freezerRoot: unified };
  return undefined;
}

/**
 * Parses /proc/PID/cgroup: the process's memory and cpu cgroup paths, relative to the
 * controllers' mount points. v1 lines name their controllers ("4:memory:/lxc.payload.web");
 * the v2 line has none ("0::/lxc.payload.web").
 */
export function parseProcCgroup(text: string, version: CgroupVersion): { memory?: string; cpu?: string; freezer?: string } {
  const found: { memory?: string; cpu?: string; freezer?: string } = {};
  for (const line of text.split('\n')) {
    const first = line.indexOf(':');
    const second = line.indexOf(':', first + 1);
    if (first < 0 || second < 0) continue;
    const controllers = line.slice(first + 1, second).split(',');
    const path = line.slice(second + 1);
    if (version === 2) {
      if (controllers.length === 1 && controllers[0] === '') return { memory: path, cpu: path, freezer: path };
      continue;
    }
    if (controllers.includes('memory')) found.memory = path;
    if (controllers.includes('cpu')) found.cpu = path;
    if (controllers.includes('freezer')) found.freezer = path;
  }
  return found;
}

/** v1 reports "no memory limit" as a huge page-aligned number (PAGE_COUNTER_MAX pages). */
const V1_UNLIMITED_FROM = 2 ** 62;

/** Parses a memory limit file (v1 memory.limit_in_bytes, v2 memory.max) into bytes or null. */
export function parseMemoryLimit(text: string): number | null | undefined {
  const value = text.trim();
  if (value === 'max') return null;
  if (!/^[0-9]+$/.test(value)) return undefined;
  const n = Number(value);
  return n >= V1_UNLIMITED_FROM ? null : n;
}

/** Parses v2 cpu.max ("max 100000", "200000 100000"). */
export function parseCpuMax(text: string): { quotaUs: number | null; periodUs: number } | undefined {
  const m = /^(max|[0-9]+)\s+([0-9]+)$/.exec(text.trim());
  if (m === null) return undefined;
  return { quotaUs: m[1] === 'max' ? null : Number(m[1]), periodUs: Number(m[2]) };
}

/** The cgroup side of this host: its layout, and live limits of running containers. */
export class CgroupHost {
  constructor(readonly layout: CgroupLayout) {}

  /** Reads /proc/self/mounts; throws when this host has neither memory cgroup. */
  static async detect(): Promise<CgroupHost> {
    const layout = parseCgroupLayout(await readFile('/proc/self/mounts', 'utf8'));
    if (layout === undefined) throw new Error('cannot find a memory cgroup in /proc/self/mounts: LXC needs cgroups');
    return new CgroupHost(layout);
  }

  get version(): CgroupVersion {
    return this.layout.version;
  }

  /**
   * The freezer's word on process `pid`'s cgroup: v1 freezer.state, v2 cgroup.events text;
   * undefined when the process, its cgroup or the freezer is not there.
   */
  async readFreezer(pid: number): Promise<string | undefined> {
    if (this.layout.freezerRoot === undefined) return undefined;
    try {
      const path = parseProcCgroup(await readFile(`/proc/${pid}/cgroup`, 'utf8'), this.version).freezer;
      if (path === undefined) return undefined;
      return await readFile(join(this.layout.freezerRoot, path, this.version === 1 ? 'freezer.state' : 'cgroup.events'), 'utf8');
    } catch {
      return undefined; // the container stopped meanwhile
    }
  }

  /**
   * Freezes (or thaws) the cgroup of process `pid` (a container's init) by writing the freezer
   * file directly (v1 freezer.state, v2 cgroup.freeze) and waits until the kernel reports the
   * cgroup frozen, looking again after 1 ms, doubling to 50 ms, on `clock`. lxc-freeze does the
   * same on v1 but looks again only after a whole second (about 1 s per snapshot when the first
   * look finds FREEZING). Returns false, having changed nothing, when the freezer or the cgroup
   * is not there, or is not container `hostName`'s own (`lxc.payload.NAME[-N]`: never another
   * process's cgroup, whatever pid it is given); throws when the cgroup does not settle in `timeoutMs`.
   */
  async setFrozen(pid: number, hostName: string, frozen: boolean, clock: Clock, signal: AbortSignal, timeoutMs = 30_000): Promise<boolean> {
    if (this.layout.freezerRoot === undefined) return false;
    let dir: string;
    try {
      const path = parseProcCgroup(await readFile(`/proc/${pid}/cgroup`, 'utf8'), this.version).freezer;
      // LXC adds -N when the name is taken (a container of that name in another lxcpath).
      if (path === undefined) return false;
      const leaf = path.split('/').pop() ?? '';
      const own = `lxc.payload.${hostName}`;
      if (leaf !== own && !(leaf.startsWith(`${own}-`) && /^\d+$/.test(leaf.slice(own.length + 1)))) return false;
      dir = join(this.layout.freezerRoot, path);
    } catch {
      return false;
    }
    const v1 = this.version === 1;
    await writeFile(join(dir, v1 ? 'freezer.state' : 'cgroup.freeze'), v1 ? (frozen ? 'FROZEN' : 'THAWED') : (frozen ? '1' : '0'));
    const settled = (text: string): boolean => (v1
      ? text.trim() === (frozen ? 'FROZEN' : 'THAWED')
      : new RegExp(`^frozen ${frozen ? 1 : 0}$`, 'm').test(text));
    const deadline = clock.now() + timeoutMs;
    for (let waitMs = 1; ; waitMs = Math.min(waitMs * 2, 50)) {
      if (settled(await readFile(join(dir, v1 ? 'freezer.state' : 'cgroup.events'), 'utf8'))) return true;
      if (clock.now() >= deadline) throw new Error(`cannot ${frozen ? 'freeze' : 'thaw'} cgroup ${dir}: not settled after ${timeoutMs} ms`);
      signal.throwIfAborted();
      await sleep(clock, waitMs, signal);
    }
  }

  /**
   * The limits of the cgroup that process `pid` (a container's init) is in, or undefined when
   * the process or its cgroup files are gone (the container stopped meanwhile).
   */
  async readLimits(pid: number): Promise<LiveLimits | undefined> {
    try {
      const paths = parseProcCgroup(await readFile(`/proc/${pid}/cgroup`, 'utf8'), this.version);
      if (paths.memory === undefined || paths.cpu === undefined) return undefined;
      const memDir = join(this.layout.memoryRoot, paths.memory);
      const cpuDir = join(this.layout.cpuRoot, paths.cpu);
      if (this.version === 1) {
        const [mem, quota, period] = await Promise.all([
          readFile(join(memDir, 'memory.limit_in_bytes'), 'utf8'),
          readFile(join(cpuDir, 'cpu.cfs_quota_us'), 'utf8'),
          readFile(join(cpuDir, 'cpu.cfs_period_us'), 'utf8'),
        ]);
        const memoryBytes = parseMemoryLimit(mem);
        const quotaUs = Number(quota.trim());
        const periodUs = Number(period.trim());
        if (memoryBytes === undefined || !Number.isInteger(quotaUs) || !Number.isInteger(periodUs) || periodUs <= 0) return undefined;
        return { memoryBytes, cpuQuotaUs: quotaUs < 0 ? null : quotaUs, cpuPeriodUs: periodUs };
      }
      const [mem, cpuMax] = await Promise.all([
        readFile(join(memDir, 'memory.max'), 'utf8'),
        readFile(join(cpuDir, 'cpu.max'), 'utf8'),
      ]);
      const memoryBytes = parseMemoryLimit(mem);
      const cpu = parseCpuMax(cpuMax);
      if (memoryBytes === undefined || cpu === undefined || cpu.periodUs <= 0) return undefined;
      return { memoryBytes, cpuQuotaUs: cpu.quotaUs, cpuPeriodUs: cpu.periodUs };
    } catch {
      return undefined; // the container stopped between the listing and this read
    }
  }
}
