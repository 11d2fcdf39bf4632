/**
 * The host policy: what objects may ask of this host. The host operator owns it (the file given
 * to `hyperlet run --policy`, a ConfigMap in Kubernetes); object authors cannot change it. With
 * no file at all, DEFAULT_HOST_POLICY applies, and it is safe: only hyperlet's own directories,
 * no adoption, no orphans, no privileged containers.
 *
 * Rules can differ per source and per namespace: `defaults` applies everywhere, then every entry
 * of `scopes` whose selectors match, in file order, each field it sets replacing the one before
 * (lists are replaced, not appended; `paths`, `allow`, `quota` and `limits` merge field by field).
 */
import { DEFAULT_ID_RANGE, type IdRange } from '../api/v1alpha1/host-defaults.js';

/** The subordinate id range unprivileged containers are mapped into (uid and gid alike). */
export type IdMapRange = IdRange;

/** Limits on the sum over one source and namespace; absent means no limit. */
export interface Quota {
  readonly objects?: number;
  readonly cpu?: number;
  readonly memoryBytes?: number;
  readonly diskBytes?: number;
}

/** Limits on one object; absent means only the schema's. */
export interface ObjectLimits {
  readonly cpu?: number;
  readonly memoryBytes?: number;
  readonly diskBytes?: number;
  readonly gracefulStopSeconds: number;
}

/** Everything the policy says about the objects of one source and namespace. */
export interface ScopeRules {
  /** Directories VM disk images, kernels and initrds may come from (realpath, regular files only). */
  readonly imageDirs: readonly string[];
  /**
   * Hosts container images may be downloaded from over http(s): globs matched against the URL's
   * host as written (`images.example`, `127.0.0.1:8080`, `127.0.0.1:*`). file:// images must lie
   * in `imageDirs` instead.
   */
  readonly imageHosts: readonly string[];
  /** Directories a container rootfs may be copied from (never /, /proc, /sys or /dev). */
  readonly rootfsDirs: readonly string[];
  /** Directories backup archives may be written to and read from (realpath; never through a link outside). */
  readonly backupDirs: readonly string[];
  /** LXC templates allowed (names, `*` globs). */
  readonly templates: readonly string[];
  /** The annotation hyperlet.io/adopt may take over an instance hyperlet did not create. */
  readonly adoption: boolean;
  /** deletionPolicy Orphan may leave an instance behind when its object goes. */
  readonly orphan: boolean;
  /** A container may run without a user namespace (spec.privileged). */
  readonly privileged: boolean;
  /** Host bridges a container veth or a VM NIC may join (names, globs). */
  readonly bridges: readonly string[];
  /** libvirt networks a VM NIC may join (names, globs). */
  readonly networks: readonly string[];
  /** libvirt storage pools VM disks may live in (names, globs). */
  readonly pools: readonly string[];
  readonly quota: Quota;
  readonly limits: ObjectLimits;
  /** The memory limit of a container that declares none (never "unlimited"). */
  readonly containerMemoryBytes: number;
}

/** Which objects a scope entry applies to: a source id and a namespace, each a name or a glob. */
export interface ScopeSelector {
  readonly source: string;
  readonly namespace: string;
}

/** A scope entry: the fields it sets, over what came before. */
export interface ScopeOverride extends ScopeSelector {
  readonly rules: Partial<Omit<ScopeRules, 'quota' | 'limits'>> & { readonly quota?: Quota; readonly limits?: Partial<ObjectLimits> };
}

/** Facts about the host itself, not about any one scope. */
export interface HostSettings {
  readonly idmap: IdMapRange;
  /** Memory kept for the host: a VM may ask for at most the host's memory minus this. */
  readonly reservedMemoryBytes: number;
}

/** The operator's rules for what objects may ask of this host: defaults, then scopes by source and namespace. */
export interface HostPolicy {
  readonly host: HostSettings;
  readonly defaults: ScopeRules;
  readonly scopes: readonly ScopeOverride[];
  /** The file it was read from; absent for the built-in default. */
  readonly file?: string;
}

const MiB = 1024 ** 2;

/** The built-in rules: what `hyperlet run` uses without --policy. Each value says why. */
export const DEFAULT_SCOPE_RULES: ScopeRules = {
  // hyperlet's own image directory and caches (scripts/build-test-guest.sh builds into .../guest).
  imageDirs: ['/var/lib/hyperlet/images', '/var/cache/hyperlet/images', '/var/cache/hyperlet/guest'],
  // No host: an image server is the operator's choice, as is trusting what it serves.
  imageHosts: [],
  rootfsDirs: ['/var/lib/hyperlet/rootfs', '/var/cache/hyperlet/rootfs'],
  // hyperlet's own backup directory: an archive holds a whole guest, so where it may go is the operator's choice.
  backupDirs: ['/var/lib/hyperlet/backups'],
  // Templates that take nothing from the host but what they are given (busybox works offline).
  templates: ['busybox', 'alpine', 'debian', 'ubuntu', 'download'],
  adoption: false,
  orphan: false,
  privileged: false,
  // LXC's and libvirt's own NAT bridges, and bridges named for hyperlet.
  bridges: ['lxcbr0', 'virbr0', 'hyperlet-*'],
  networks: ['default', 'hyperlet-*'],
  // The pools hyperlet itself creates (libvirt-storage.ts).
  pools: ['default', 'hyperlet-*'],
  quota: { objects: 200 },
  // 600 s: a stop that takes longer holds a worker that long (issue 10); the schema allows 3600.
  limits: { gracefulStopSeconds: 600 },
  containerMemoryBytes: 512 * MiB,
};

/** The id range of unprivileged containers: see DEFAULT_ID_RANGE. */
export const DEFAULT_IDMAP: IdMapRange = DEFAULT_ID_RANGE;

/** The policy with no file: hyperlet's own directories only, no adoption, no privileged containers. */
export const DEFAULT_HOST_POLICY: HostPolicy = {
  host: { idmap: DEFAULT_IDMAP, reservedMemoryBytes: 0 },
  defaults: DEFAULT_SCOPE_RULES,
  scopes: [],
};

/** Whether `value` matches `pattern`, where `*` stands for any run of characters. */
export function globMatch(pattern: string, value: string): boolean {
  if (!pattern.includes('*')) return pattern === value;
  const re = new RegExp(`^${pattern.split('*').map((part) => part.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`);
  return re.test(value);
}

/** Whether any pattern of `patterns` matches `value`. */
export function matchesAny(patterns: readonly string[], value: string): boolean {
  return patterns.some((p) => globMatch(p, value));
}

/** The rules for the objects of `source` in `namespace`: defaults, then each matching scope in order. */
export function rulesFor(policy: HostPolicy, source: string, namespace: string): ScopeRules {
  let rules = policy.defaults;
  for (const scope of policy.scopes) {
    if (!globMatch(scope.source, source) || !globMatch(scope.namespace, namespace)) continue;
    const { quota, limits, ...rest } = scope.rules;
    const set = Object.fromEntries(Object.entries(rest).filter(([, v]) => v !== undefined));
    rules = {
      ...rules,
      ...set,
      quota: { ...rules.quota, ...quota },
      limits: { ...rules.limits, ...limits },
    };
  }
  return rules;
}
