/**
 * The fields of a spec that an instance embodies, flattened to comparable values, and how each
 * one can be changed on a live instance. Providers report the same flattened fields for what
 * they observe, so plan() can diff the two without knowing about LXC or libvirt.
 */
import type { Kind } from './group.js';
import { cloudInitDigest } from './cloud-init.js';
import { parseQuantity } from './quantity.js';
import type { ContainerSpec, SpecOf, VirtualMachineSpec } from './types.js';

/** live: applied to the running instance; restart: takes effect at the next start; recreate: needs a new instance. */
export type ApplyMode = 'live' | 'restart' | 'recreate';

/** Flattened spec: dotted path → JSON-comparable value (sizes in bytes, lists as JSON). */
export type SpecFields = Readonly<Record<string, string | number | boolean | null>>;

/**
 * How each flattened field changes. A path not listed here is compared but never acted on
 * (power state and policies are handled by the plan itself).
 */
export const FIELD_APPLY: Readonly<Record<Kind, Readonly<Record<string, ApplyMode>>>> = {
  Container: {
    'resources.cpu': 'live', // cpuset/cpu quota through the cgroup
    'resources.memory': 'live', // memory limit through the cgroup
    autostart: 'live', // a config key read only at host boot
    environment: 'restart', // read by lxc-start
    network: 'restart', // veths are built at start
    'resources.disk': 'recreate', // the rootfs is made once
    template: 'recreate',
    templateArgs: 'recreate', // the template runs once, at create
    rootfs: 'recreate',
    image: 'recreate', // the clone is made once from the cached base
    privileged: 'recreate', // the rootfs ownership is shifted into the id range once, at create
  },
  VirtualMachine: {
    'resources.cpu': 'live', // within maxCpu, set on the running domain
    'resources.memory': 'live', // within maxMemory, balloon
    'resources.maxCpu': 'restart',
    'resources.maxMemory': 'restart',
    hypervisor: 'restart',
    boot: 'restart',
    networks: 'restart',
    disks: 'restart', // growing a size is live: the provider says so per field
    cloudInit: 'restart', // the seed is read by the guest at boot
  },
};

const bytes = (q: string | number | undefined): number | null => (q === undefined ? null : parseQuantity(q) ?? null);
const json = (v: unknown): string | null => (v === undefined ? null : JSON.stringify(v));

/** Flattens a spec into the fields compared between desired and observed. */
export function specFields<K extends Kind>(kind: K, spec: SpecOf<K>): SpecFields {
  if (kind === 'Container') {
    const s = spec as ContainerSpec;
    return {
      template: s.template ?? null,
      templateArgs: s.templateArgs === undefined || s.templateArgs.length === 0 ? null : json(s.templateArgs),
      rootfs: s.rootfs ?? null,
      image: json(s.image === undefined ? undefined : { url: s.image.url, sha256: s.image.sha256 ?? null }),
      'resources.cpu': s.resources?.cpu ?? null,
      'resources.memory': bytes(s.resources?.memory),
      'resources.disk': bytes(s.resources?.disk),
      network: json(s.network ?? []),
      environment: json(sortKeys(s.environment ?? {})),
      autostart: s.autostart,
      privileged: s.privileged === true,
    };
  }
  const s = spec as VirtualMachineSpec;
  return {
    hypervisor: s.hypervisor,
    'resources.cpu': s.resources.cpu,
    'resources.memory': bytes(s.resources.memory),
    'resources.maxCpu': s.resources.maxCpu ?? s.resources.cpu,
    'resources.maxMemory': bytes(s.resources.maxMemory ?? s.resources.memory),
    boot: json(s.boot ?? null),
    disks: json((s.disks ?? []).map((d) => ({ ...d, size: bytes(d.size) }))),
    networks: json(s.networks ?? []),
    cloudInit: cloudInitDigest(s.cloudInit),
  };
}

function sortKeys<V>(o: Record<string, V>): Record<string, V> {
  return Object.fromEntries(Object.entries(o).sort(([a], [b]) => a.localeCompare(b)));
}
