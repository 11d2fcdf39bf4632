/**
 * The part of a container's LXC config that hyperlet owns, rendered from the flattened spec
 * fields (api/v1alpha1/fields.ts), and merged into the config the template wrote.
 *
 * Guarantees: every value is checked before it is written, so no value can end a line and start
 * a new key (the schemas already forbid control characters; a tampered marker must not get
 * through either). Keys come only from this file.
 * Caveats: LXC trims white space around a value, so an environment value's leading or trailing
 * blanks do not reach the container.
 */
import { broadcastOfCidr, gatewayProblem, ipv4CidrProblem } from '../../api/v1alpha1/ipv4-address.js';
import type { SpecFields } from '../../api/v1alpha1/fields.js';
import { DEFAULT_CONTAINER_BRIDGE, type IdRange } from '../../api/v1alpha1/host-defaults.js';
import { deriveMac } from '../../api/v1alpha1/mac-address.js';
import type { ContainerNetwork } from '../../api/v1alpha1/types.js';
import type { CgroupVersion } from './cgroup-host.js';

/** The cfs period hyperlet sets; cpu N becomes a quota of N periods (not pinned to CPUs, and N may exceed the host's). */
export const CPU_PERIOD_US = 100_000;

/** The bridge a veth joins when the spec names none: what Debian's default config uses. */
export const DEFAULT_BRIDGE = DEFAULT_CONTAINER_BRIDGE;

/** First line of the block hyperlet owns in a container's config; lines outside it are never changed. */
export const MANAGED_BEGIN = '# --- hyperlet: managed block, rewritten on every change ---';
/** Last line of the block hyperlet owns in a container's config. */
export const MANAGED_END = '# --- hyperlet: end of managed block ---';

const ENV_NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;
// eslint-disable-next-line no-control-regex
const CONTROL_RE = /[\u0000-\u0008\u000a-\u001f\u007f]/;
const IFNAME_RE = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}$/;
const MAC_RE = /^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/;

/** The fields the config embodies, decoded from their flattened form and checked. */
export interface AppliedConfig {
  readonly cpu: number | null;
  readonly memoryBytes: number | null;
  readonly network: readonly ContainerNetwork[];
  readonly environment: Readonly<Record<string, string>>;
  readonly autostart: boolean;
  /** No user namespace: container root is host root. */
  readonly privileged: boolean;
}

/** Host facts a container config is rendered with. */
export interface RenderContext {
  readonly lxcpath: string;
  readonly hostName: string;
  readonly cgroupVersion: CgroupVersion;
  /** Where `lxc.console.logfile` points (container-paths.ts consoleLogPath). */
  readonly consoleLogPath: string;
  /** The host ids an unprivileged container's ids are mapped onto. */
  readonly idmap: IdRange;
  /**
   * Cap of the console log (`lxc.console.size`, a power of two of at least 4 KiB): at the cap,
   * liblxc renames it to NAME.1 (`lxc.console.rotate`) and starts a new one, so a container's
   * console takes at most twice this on disk. Default DEFAULT_CONSOLE_LOG_BYTES.
   */
  readonly consoleLogBytes?: number;
  /**
   * The object's id: a veth without a declared hwaddr gets the MAC derived from it
   * (api/v1alpha1/mac-address.ts, as VM NICs do), so its DHCP lease stays with the object.
   */
  readonly ownerId?: string;
}

/** 1 MiB: a busybox boot writes about 1 KiB; enough for a day of a chatty service's console. */
export const DEFAULT_CONSOLE_LOG_BYTES = 1024 * 1024;

/** Throws unless `bytes` is a size liblxc takes as it is: a power of two, at least one page. */
export function assertConsoleLogBytes(bytes: number): void {
  if (!Number.isSafeInteger(bytes) || bytes < 4096 || (bytes & (bytes - 1)) !== 0) {
    throw new Error(`cannot cap console logs at ${bytes} bytes: LXC needs a power of two of at least 4096 (4Ki)`);
  }
}

/** One `key = value` line of an LXC config. */
export interface ConfigEntry {
  readonly key: string;
  readonly value: string;
}

/** Throws unless `value` fits on one config line. */
export function assertConfigValue(key: string, value: string): void {
  if (CONTROL_RE.test(value)) throw new Error(`cannot write ${key}: the value holds a line break or control character`);
}

/**
 * Decodes flattened fields (specFields('Container', …) or a marker's copy) into what the config
 * embodies. Throws on anything that is not what specFields would produce, so a hand-edited
 * marker cannot smuggle a key into the config.
 */
export function appliedConfigOf(fields: SpecFields): AppliedConfig {
  const cpu = fields['resources.cpu'] ?? null;
  if (cpu !== null && (typeof cpu !== 'number' || !Number.isInteger(cpu) || cpu < 1 || cpu > 1024)) {
    throw new Error(`cannot render resources.cpu ${JSON.stringify(cpu)}: not a whole number of CPUs`);
  }
  const memoryBytes = fields['resources.memory'] ?? null;
  if (memoryBytes !== null && (typeof memoryBytes !== 'number' || !Number.isSafeInteger(memoryBytes) || memoryBytes <= 0)) {
    throw new Error(`cannot render resources.memory ${JSON.stringify(memoryBytes)}: not a byte count`);
  }
  const autostart = fields.autostart ?? false;
  if (typeof autostart !== 'boolean') throw new Error(`cannot render autostart ${JSON.stringify(autostart)}: not a boolean`);
  // A marker written before containers were unprivileged has no such field: those run privileged.
  const privileged = fields.privileged ?? true;
  if (typeof privileged !== 'boolean') throw new Error(`cannot render privileged ${JSON.stringify(privileged)}: not a boolean`);
  return {
    cpu,
    memoryBytes,
    network: decodeNetwork(fields.network ?? null),
    environment: decodeEnvironment(fields.environment ?? null),
    autostart,
    privileged,
  };
}

function decodeJson(path: string, value: SpecFields[string]): unknown {
  if (value === null) return undefined;
  if (typeof value !== 'string') throw new Error(`cannot render ${path}: expected JSON text`);
  try {
    return JSON.parse(value) as unknown;
  } catch (err) {
    throw new Error(`cannot render ${path}: not JSON`, { cause: err });
  }
}

function decodeNetwork(value: SpecFields[string]): ContainerNetwork[] {
  const raw = decodeJson('network', value) ?? [];
  if (!Array.isArray(raw)) throw new Error('cannot render network: expected a list');
  return raw.map((item: unknown, i) => {
    if (item === null || typeof item !== 'object') throw new Error(`cannot render network[${i}]: expected an object`);
    const n = item as Record<string, unknown>;
    const type = n.type ?? 'veth';
    if (type !== 'veth' && type !== 'none') throw new Error(`cannot render network[${i}].type ${JSON.stringify(type)}`);
    const out: ContainerNetwork = { type };
    if (n.bridge !== undefined) {
      if (typeof n.bridge !== 'string' || !IFNAME_RE.test(n.bridge)) throw new Error(`cannot render network[${i}].bridge: not an interface name`);
      out.bridge = n.bridge;
    }
    if (n.hwaddr !== undefined) {
      if (typeof n.hwaddr !== 'string' || !MAC_RE.test(n.hwaddr)) throw new Error(`cannot render network[${i}].hwaddr: not a MAC address`);
      out.hwaddr = n.hwaddr;
    }
    if (n.ipv4 !== undefined) {
      const problem = typeof n.ipv4 === 'string' ? ipv4CidrProblem(n.ipv4) : 'not a string';
      if (problem !== undefined) throw new Error(`cannot render network[${i}].ipv4: ${problem}`);
      out.ipv4 = n.ipv4 as string;
    }
    if (n.gateway !== undefined) {
      const problem = typeof n.gateway !== 'string' ? 'not a string' : out.ipv4 === undefined ? 'needs ipv4' : gatewayProblem(n.gateway, out.ipv4);
      if (problem !== undefined) throw new Error(`cannot render network[${i}].gateway: ${problem}`);
      out.gateway = n.gateway as string;
    }
    return out;
  });
}

function decodeEnvironment(value: SpecFields[string]): Record<string, string> {
  const raw = decodeJson('environment', value) ?? {};
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new Error('cannot render environment: expected a mapping');
  const out: Record<string, string> = {};
  for (const [name, v] of Object.entries(raw as Record<string, unknown>)) {
    if (!ENV_NAME_RE.test(name)) throw new Error(`cannot render environment ${JSON.stringify(name)}: not a variable name`);
    if (typeof v !== 'string') throw new Error(`cannot render environment ${name}: the value is not text`);
    assertConfigValue(`lxc.environment ${name}`, v);
    out[name] = v;
  }
  return out;
}

/** The cgroup keys and values for cpu and memory limits, without the `lxc.cgroup[2].` prefix. */
export function cgroupSettings(config: Pick<AppliedConfig, 'cpu' | 'memoryBytes'>, version: CgroupVersion): ConfigEntry[] {
  const entries: ConfigEntry[] = [];
  if (version === 1) {
    if (config.cpu !== null) {
      entries.push({ key: 'cpu.cfs_period_us', value: String(CPU_PERIOD_US) });
      entries.push({ key: 'cpu.cfs_quota_us', value: String(config.cpu * CPU_PERIOD_US) });
    }
    if (config.memoryBytes !== null) entries.push({ key: 'memory.limit_in_bytes', value: String(config.memoryBytes) });
  } else {
    if (config.cpu !== null) entries.push({ key: 'cpu.max', value: `${config.cpu * CPU_PERIOD_US} ${CPU_PERIOD_US}` });
    if (config.memoryBytes !== null) entries.push({ key: 'memory.max', value: String(config.memoryBytes) });
  }
  return entries;
}

/**
 * What to write through lxc-cgroup to move a running container to these limits; null means
 * "lift the limit", which the config expresses by leaving the key out.
 */
export function liveCgroupSettings(change: { cpu?: number | null; memoryBytes?: number | null }, version: CgroupVersion): ConfigEntry[] {
  const entries: ConfigEntry[] = [];
  if (change.cpu !== undefined) {
    const quota = change.cpu === null ? null : change.cpu * CPU_PERIOD_US;
    if (version === 1) {
      entries.push({ key: 'cpu.cfs_period_us', value: String(CPU_PERIOD_US) });
      entries.push({ key: 'cpu.cfs_quota_us', value: quota === null ? '-1' : String(quota) });
    } else {
      entries.push({ key: 'cpu.max', value: `${quota === null ? 'max' : quota} ${CPU_PERIOD_US}` });
    }
  }
  if (change.memoryBytes !== undefined) {
    if (version === 1) entries.push({ key: 'memory.limit_in_bytes', value: change.memoryBytes === null ? '-1' : String(change.memoryBytes) });
    else entries.push({ key: 'memory.max', value: change.memoryBytes === null ? 'max' : String(change.memoryBytes) });
  }
  return entries;
}

/** The managed lines for `config`, as `key = value` text, inside the begin/end markers. */
export function renderManagedConfig(config: AppliedConfig, ctx: RenderContext): string[] {
  const entries: ConfigEntry[] = [];
  const prefix = ctx.cgroupVersion === 1 ? 'lxc.cgroup.' : 'lxc.cgroup2.';
  for (const e of cgroupSettings(config, ctx.cgroupVersion)) entries.push({ key: prefix + e.key, value: e.value });
  const veths = config.network.filter((n) => n.type === 'veth');
  if (veths.length === 0) {
    entries.push({ key: 'lxc.net.0.type', value: 'empty' });
  } else {
    veths.forEach((n, i) => {
      entries.push({ key: `lxc.net.${i}.type`, value: 'veth' });
      entries.push({ key: `lxc.net.${i}.link`, value: n.bridge ?? DEFAULT_BRIDGE });
      entries.push({ key: `lxc.net.${i}.flags`, value: 'up' });
      entries.push({ key: `lxc.net.${i}.name`, value: `eth${i}` });
      const hwaddr = n.hwaddr ?? (ctx.ownerId === undefined ? undefined : deriveMac(ctx.ownerId, i));
      if (hwaddr !== undefined) entries.push({ key: `lxc.net.${i}.hwaddr`, value: hwaddr.toLowerCase() });
      // LXC sets these in the container's namespace before init starts: no guest network tool needed.
      // The broadcast address is given: LXC 5.0 computes a wrong one (0.0.0.255) when it is left out.
      if (n.ipv4 !== undefined) entries.push({ key: `lxc.net.${i}.ipv4.address`, value: `${n.ipv4} ${broadcastOfCidr(n.ipv4) ?? ''}`.trim() });
      if (n.gateway !== undefined) entries.push({ key: `lxc.net.${i}.ipv4.gateway`, value: n.gateway });
    });
  }
  for (const [name, value] of Object.entries(config.environment).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    entries.push({ key: 'lxc.environment', value: `${name}=${value}` });
  }
  entries.push({ key: 'lxc.start.auto', value: config.autostart ? '1' : '0' });
  entries.push({ key: 'lxc.console.logfile', value: ctx.consoleLogPath });
  const consoleBytes = ctx.consoleLogBytes ?? DEFAULT_CONSOLE_LOG_BYTES;
  assertConsoleLogBytes(consoleBytes);
  entries.push({ key: 'lxc.console.size', value: String(consoleBytes) });
  entries.push({ key: 'lxc.console.rotate', value: '1' });
  if (!config.privileged) {
    // A user namespace: container ids 0 … size-1 are host ids hostId … (LXC needs no newuidmap as root).
    entries.push({ key: 'lxc.idmap', value: `u 0 ${ctx.idmap.hostId} ${ctx.idmap.size}` });
    entries.push({ key: 'lxc.idmap', value: `g 0 ${ctx.idmap.hostId} ${ctx.idmap.size}` });
  }
  return [MANAGED_BEGIN, ...entries.map((e) => formatEntry(e)), MANAGED_END];
}

/** `key = value`, after checking that the value cannot break out of its line. */
export function formatEntry(entry: ConfigEntry): string {
  assertConfigValue(entry.key, entry.value);
  return `${entry.key} = ${entry.value}`;
}

/**
 * The base config of a container made from a prepared rootfs (`lxc-create -t none`): where its
 * rootfs is, its host name, and the distribution-neutral defaults when the host has them.
 */
export function renderRootfsBaseConfig(rootfsPath: string, hostName: string, commonConfPath: string | undefined): string[] {
  const entries: ConfigEntry[] = [];
  if (commonConfPath !== undefined) entries.push({ key: 'lxc.include', value: commonConfPath });
  entries.push({ key: 'lxc.rootfs.path', value: `dir:${rootfsPath}` });
  entries.push({ key: 'lxc.uts.name', value: hostName });
  entries.push({ key: 'lxc.autodev', value: '1' });
  return entries.map((e) => formatEntry(e));
}

/**
 * `text` with its root filesystem set to `value`: the first `lxc.rootfs.path` line rewritten,
 * any later one dropped (lxc-create repeats the key), every other line kept. Appended when absent.
 */
export function withRootfsPath(text: string, value: string): string {
  const line = formatEntry({ key: 'lxc.rootfs.path', value });
  let seen = false;
  const out: string[] = [];
  for (const current of text.split('\n')) {
    if (parseConfigLine(current)?.key !== 'lxc.rootfs.path') {
      out.push(current);
    } else if (!seen) {
      out.push(line);
      seen = true;
    }
  }
  if (!seen) {
    while (out.length > 0 && out[out.length - 1] === '') out.pop();
    out.push(line, '');
  }
  return out.join('\n');
}

/** True for the keys the managed block owns; a template's copy of them is dropped when merging. */
export function isManagedKey(key: string): boolean {
  return key.startsWith('lxc.net.') || key === 'lxc.net' || key === 'lxc.environment' || key === 'lxc.start.auto'
    || key === 'lxc.console.logfile' || key === 'lxc.console.size' || key === 'lxc.console.rotate' || key === 'lxc.idmap'
    || /^lxc\.cgroup2?\.(memory|cpu)\./.test(key);
}

/**
 * Puts `managed` (from renderManagedConfig) into `existing` config text: drops the previous
 * managed block and every line elsewhere setting a managed key, keeps the rest as it was, and
 * appends the block. Idempotent: merging the same block twice gives the same text.
 */
export function mergeConfig(existing: string, managed: readonly string[]): string {
  const kept: string[] = [];
  let inBlock = false;
  for (const line of existing.split('\n')) {
    if (line === MANAGED_BEGIN) {
      inBlock = true;
      continue;
    }
    if (line === MANAGED_END) {
      inBlock = false;
      continue;
    }
    if (inBlock) continue;
    const entry = parseConfigLine(line);
    if (entry !== undefined && isManagedKey(entry.key)) continue;
    kept.push(line);
  }
  while (kept.length > 0 && kept[kept.length - 1]?.trim() === '') kept.pop();
  return `${[...kept, '', ...managed].join('\n')}\n`;
}

/** One line of LXC config: `key = value` with white space around both trimmed, as LXC does. */
export function parseConfigLine(line: string): ConfigEntry | undefined {
  const trimmed = line.trim();
  if (trimmed === '' || trimmed.startsWith('#')) return undefined;
  const eq = trimmed.indexOf('=');
  if (eq <= 0) return undefined;
  return { key: trimmed.slice(0, eq).trim(), value: trimmed.slice(eq + 1).trim() };
}

/** Every `key = value` line of a config file, in order. */
export function parseConfig(text: string): ConfigEntry[] {
  const entries: ConfigEntry[] = [];
  for (const line of text.split('\n')) {
    const entry = parseConfigLine(line);
    if (entry !== undefined) entries.push(entry);
  }
  return entries;
}

/** The template named in the header lxc-create writes ("Template used to create this container: …/lxc-busybox"). */
export function templateOfConfig(text: string): string | null {
  const m = /^# Template used to create this container: \S*\/lxc-([A-Za-z0-9_.-]+)\s*$/m.exec(text);
  return m?.[1] ?? null;
}

/**
 * The spec fields a config embodies, read back from it: how hyperlet sees a container it did not
 * create (to report a conflict's diff, or to adopt it), and what a stopped container will start
 * with. Fields it cannot tell (rootfs, image, disk) are null.
 */
export function fieldsFromConfig(text: string, version: CgroupVersion): Record<string, string | number | boolean | null> {
  const entries = parseConfig(text);
  const get = (key: string): string | undefined => entries.filter((e) => e.key === key).at(-1)?.value;
  let cpu: number | null = null;
  let memoryBytes: number | null = null;
  if (version === 1) {
    const quota = Number(get('lxc.cgroup.cpu.cfs_quota_us'));
    const period = Number(get('lxc.cgroup.cpu.cfs_period_us') ?? CPU_PERIOD_US);
    if (Number.isInteger(quota) && quota > 0 && period > 0) cpu = quota / period;
    const mem = Number(get('lxc.cgroup.memory.limit_in_bytes'));
    if (Number.isSafeInteger(mem) && mem > 0) memoryBytes = mem;
  } else {
    const m = /^([0-9]+)\s+([0-9]+)$/.exec(get('lxc.cgroup2.cpu.max') ?? '');
    if (m !== null && Number(m[2]) > 0) cpu = Number(m[1]) / Number(m[2]);
    const mem = Number(get('lxc.cgroup2.memory.max'));
    if (Number.isSafeInteger(mem) && mem > 0) memoryBytes = mem;
  }
  const nets = new Map<number, Record<string, string>>();
  for (const e of entries) {
    const m = /^lxc\.net\.([0-9]+)\.(type|link|hwaddr|ipv4\.address|ipv4\.gateway)$/.exec(e.key);
    if (m === null) continue;
    const index = Number(m[1]);
    const net = nets.get(index) ?? {};
    net[m[2] ?? ''] = e.value;
    nets.set(index, net);
  }
  const network: ContainerNetwork[] = [...nets.entries()]
    .sort(([a], [b]) => a - b)
    .filter(([, n]) => n.type === 'veth')
    .map(([, n]) => ({
      type: 'veth', ...(n.link === undefined ? {} : { bridge: n.link }), ...(n.hwaddr === undefined ? {} : { hwaddr: n.hwaddr }),
      ...(n['ipv4.address'] === undefined ? {} : { ipv4: n['ipv4.address'].split(/\s+/)[0] ?? '' }), ...(n['ipv4.gateway'] === undefined ? {} : { gateway: n['ipv4.gateway'] }),
    }));
  const environment: [string, string][] = [];
  for (const e of entries) {
    if (e.key !== 'lxc.environment') continue;
    const eq = e.value.indexOf('=');
    if (eq > 0) environment.push([e.value.slice(0, eq), e.value.slice(eq + 1)]); // "NAME" alone inherits: not ours to report
  }
  environment.sort(([a], [b]) => a.localeCompare(b));
  return {
    template: templateOfConfig(text),
    templateArgs: null,
    rootfs: null,
    image: null,
    'resources.cpu': cpu,
    'resources.memory': memoryBytes,
    'resources.disk': null,
    network: JSON.stringify(network),
    environment: JSON.stringify(Object.fromEntries(environment)),
    autostart: get('lxc.start.auto') === '1',
    privileged: !entries.some((e) => e.key === 'lxc.idmap'),
  };
}
