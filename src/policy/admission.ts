/**
 * Admission: whether the host policy lets an object be acted on, and the object as it will be
 * acted on (policy defaults filled in). The reconciler asks once per pass, before it observes or
 * plans; a refused object is never acted on: nothing is created, changed or deleted for it.
 *
 * Guarantees:
 * - Every rule is checked and every refusal is reported, each naming the field, the value and
 *   the policy rule; the reason is PolicyDenied when any rule other than a quota or the host's
 *   capacity refuses, else QuotaExceeded.
 * - Quotas and MAC addresses are shared, so who wins is decided by a fixed order: objects admitted
 *   before (they keep their place), then by key. A new object never pushes out one already
 *   admitted, and the outcome does not depend on which object is reconciled first.
 * - An object being deleted is only checked against `allow.orphan` (deletionPolicy Orphan, the
 *   prune annotation): removing what hyperlet created is always allowed, leaving it behind is
 *   what the policy may forbid.
 * Assumptions: the object passed validateObject (the schema's limits hold).
 */
import { DEFAULT_CONTAINER_BRIDGE, DEFAULT_VM_DISK_BYTES } from '../api/v1alpha1/host-defaults.js';
import { deriveMac, normalizeMac } from '../api/v1alpha1/mac-address.js';
import { formatQuantity, parseQuantity } from '../api/v1alpha1/quantity.js';
import type { ContainerSpec, HyperletObject, VirtualMachineSpec } from '../api/v1alpha1/types.js';
import { ADOPT_ANNOTATION, PRUNE_ANNOTATION } from '../shared/annotations.js';
import type { Desired } from '../store/desired.js';
import type { ObjectKey } from '../store/object-key.js';
import { type HostPolicy, type ScopeRules, matchesAny, rulesFor } from './host-policy.js';
import { checkBackupDir, checkImageFile, checkRootfsDir } from './path-rules.js';
import { checkImageUrl } from './image-url-rules.js';
import type { PolicyFs } from './policy-fs.js';


/** Why the policy refused an object: a rule it breaks, or a quota it would exceed. */
export type RefusalReason = 'PolicyDenied' | 'QuotaExceeded';

/** One rule an object breaks. */
export interface PolicyIssue {
  readonly reason: RefusalReason;
  /** Field path in the object ("spec.disks[0].image"). */
  readonly field: string;
  /** The policy rule, as named in the policy file ("paths.images", "quota.memory"). */
  readonly rule: string;
  /** What is wrong, naming the value ("/dev/sda is not a regular file under …"). */
  readonly message: string;
}

/** The verdict on one object: allowed (with policy defaults filled in) or refused with reason and message. */
export type Admission =
  | { readonly allowed: true; readonly desired: Desired }
  | { readonly allowed: false; readonly reason: RefusalReason; readonly issues: readonly PolicyIssue[]; readonly message: string };

/** What admission needs to know beyond the object. */
export interface AdmissionContext {
  /** Every object declared on this host, of every source (MACs are host-wide; quotas per scope). */
  readonly objects: readonly Desired[];
  /** Whether `key` was admitted before: such objects keep their place in a full quota and their MACs. */
  readonly admittedBefore: (key: ObjectKey) => boolean;
  /**
   * The store's revision of `objects` (StoreReader.revision): two lists of the same revision hold
   * equal objects (the same specs and deletion states), so quota totals need no second look.
   */
  readonly objectsRevision?: number;
}

/** What the reconciler calls; PolicyGate is the implementation. */
export interface Admitter {
  admit(d: Desired, context: AdmissionContext): Promise<Admission>;
}

/** `field: message (policy: rule)`: the one line status, events and the CLI show per issue. */
export function issueLine(issue: PolicyIssue): string {
  return `${issue.field}: ${issue.message} (policy: ${issue.rule})`;
}

/** Where the rules came from, for messages: "source git, namespace team-a". */
const scopeOf = (d: Desired): string => `source ${d.source}, namespace ${d.object.metadata.namespace}`;
const bytes = (q: string | number | undefined): number | undefined => (q === undefined ? undefined : parseQuantity(q));
const size = (n: number): string => formatQuantity(n);
/** A list of allowed names for a message. */
const listed = (names: readonly string[]): string => names.join(', ') || 'none allowed';

/** The object with the policy's defaults filled in: a container without memory gets containerMemory. */
export function withPolicyDefaults(d: Desired, rules: ScopeRules): Desired {
  if (d.object.kind !== 'Container') return d;
  const spec = d.object.spec as ContainerSpec;
  if (spec.resources?.memory !== undefined) return d;
  const object = {
    ...d.object,
    spec: { ...spec, resources: { ...spec.resources, memory: formatQuantity(rules.containerMemoryBytes) } },
  } as HyperletObject;
  return { ...d, object };
}

/** What one object claims of the host, as quotas and limits count it. */
export interface Usage {
  /** CPUs; undefined when a container sets no cpu limit (it may use every CPU). */
  readonly cpu: number | undefined;
  readonly cpuField: string;
  readonly memoryBytes: number;
  readonly memoryField: string;
  readonly diskBytes: number;
  readonly diskField: string;
}

/**
 * The usage of `d` (defaults already filled in): VMs count their live ceilings (maxCpu, maxMemory).
 * Of the rules it reads containerMemoryBytes only (scopeTotals keeps usage by it).
 */
export function usageOf(d: Desired, rules: ScopeRules): Usage {
  if (d.object.kind === 'Container') {
    const spec = d.object.spec as ContainerSpec;
    return {
      cpu: spec.resources?.cpu, cpuField: 'spec.resources.cpu',
      memoryBytes: bytes(spec.resources?.memory) ?? rules.containerMemoryBytes, memoryField: 'spec.resources.memory',
      // The dir backing enforces no size: a container counts the disk it declares.
      diskBytes: bytes(spec.resources?.disk) ?? 0, diskField: 'spec.resources.disk',
    };
  }
  const spec = d.object.spec as VirtualMachineSpec;
  const r = spec.resources;
  return {
    cpu: r.maxCpu ?? r.cpu,
    cpuField: r.maxCpu === undefined ? 'spec.resources.cpu' : 'spec.resources.maxCpu',
    memoryBytes: bytes(r.maxMemory ?? r.memory) ?? 0,
    memoryField: r.maxMemory === undefined ? 'spec.resources.memory' : 'spec.resources.maxMemory',
    diskBytes: (spec.disks ?? []).reduce((sum, disk) => sum + (bytes(disk.size) ?? DEFAULT_VM_DISK_BYTES), 0),
    diskField: 'spec.disks',
  };
}

/** Rules that need nothing but the object and its scope's rules. */
export function staticIssues(d: Desired, rules: ScopeRules): PolicyIssue[] {
  const issues: PolicyIssue[] = [];
  const deny = (field: string, rule: string, message: string): void => {
    issues.push({ reason: 'PolicyDenied', field, rule, message });
  };
  const object = d.object;
  const annotations = object.metadata.annotations ?? {};
  const scope = scopeOf(d);
  if (object.spec.deletionPolicy === 'Orphan' && !rules.orphan) {
    deny('spec.deletionPolicy', 'allow.orphan', `Orphan is not allowed for ${scope}: instances are deleted with their objects`);
  }
  if (annotations[PRUNE_ANNOTATION] === 'disabled' && !rules.orphan) {
    deny(`metadata.annotations["${PRUNE_ANNOTATION}"]`, 'allow.orphan',
      `"disabled" is not allowed for ${scope}: it would leave the instance behind when the object goes`);
  }
  if (d.deleting === true) return issues;
  if (annotations[ADOPT_ANNOTATION] === 'true' && !rules.adoption) {
    deny(`metadata.annotations["${ADOPT_ANNOTATION}"]`, 'allow.adoption',
      `"true" is not allowed for ${scope}: hyperlet never takes over an instance it did not create`);
  }
  const stopCap = rules.limits.gracefulStopSeconds;
  if (object.spec.gracefulStopSeconds > stopCap) {
    deny('spec.gracefulStopSeconds', 'limits.gracefulStopSeconds',
      `${object.spec.gracefulStopSeconds} is more than the ${stopCap} s allowed for ${scope}`);
  }
  const bridge = (field: string, name: string): void => {
    if (!matchesAny(rules.bridges, name)) deny(field, 'bridges', `${name} is not an allowed bridge (${listed(rules.bridges)})`);
  };
  if (object.kind === 'Container') {
    const spec = object.spec as ContainerSpec;
    if (spec.template !== undefined && !matchesAny(rules.templates, spec.template)) {
      deny('spec.template', 'templates', `${spec.template} is not an allowed LXC template (${listed(rules.templates)})`);
    }
    if (spec.privileged === true && !rules.privileged) {
      deny('spec.privileged', 'allow.privileged', `true is not allowed for ${scope}: containers run in a user namespace`);
    }
    (spec.network ?? []).forEach((n, i) => {
      if (n.type !== 'veth') return;
      bridge(n.bridge === undefined ? `spec.network[${i}]` : `spec.network[${i}].bridge`, n.bridge ?? DEFAULT_CONTAINER_BRIDGE);
    });
  } else {
    const spec = object.spec as VirtualMachineSpec;
    (spec.networks ?? []).forEach((n, i) => {
      if (n.bridge !== undefined) bridge(`spec.networks[${i}].bridge`, n.bridge);
      if (n.network !== undefined && !matchesAny(rules.networks, n.network)) {
        deny(`spec.networks[${i}].network`, 'networks', `${n.network} is not an allowed libvirt network (${listed(rules.networks)})`);
      }
    });
    (spec.disks ?? []).forEach((disk, i) => {
      if (!matchesAny(rules.pools, disk.pool)) {
        deny(`spec.disks[${i}].pool`, 'pools', `${disk.pool} is not an allowed storage pool (${listed(rules.pools)})`);
      }
    });
  }
  issues.push(...limitIssues(d, rules));
  return issues;
}

/** Per-object limits on cpu, memory and disk. */
function limitIssues(d: Desired, rules: ScopeRules): PolicyIssue[] {
  const issues: PolicyIssue[] = [];
  const deny = (field: string, rule: string, message: string): void => {
    issues.push({ reason: 'PolicyDenied', field, rule, message });
  };
  const use = usageOf(d, rules);
  const scope = scopeOf(d);
  const { cpu, memoryBytes, diskBytes } = rules.limits;
  if (cpu !== undefined) {
    if (use.cpu === undefined) {
      deny(use.cpuField, 'limits.cpu', `must be set (at most ${cpu}) for ${scope}: without it the container may use every CPU`);
    } else if (use.cpu > cpu) {
      deny(use.cpuField, 'limits.cpu', `${use.cpu} is more than the ${cpu} CPUs one object may have in ${scope}`);
    }
  }
  if (memoryBytes !== undefined && use.memoryBytes > memoryBytes) {
    deny(use.memoryField, 'limits.memory',
      `${size(use.memoryBytes)} is more than the ${size(memoryBytes)} one object may have in ${scope}`);
  }
  if (diskBytes !== undefined && use.diskBytes > diskBytes) {
    deny(use.diskField, 'limits.disk', `${size(use.diskBytes)} in all is more than the ${size(diskBytes)} one object may have in ${scope}`);
  }
  return issues;
}

/** Host paths: images, kernels and initrds of VMs; the rootfs of containers. */
export async function pathIssues(d: Desired, rules: ScopeRules, fs: PolicyFs): Promise<PolicyIssue[]> {
  if (d.deleting === true) return [];
  const checks: { field: string; rule: string; check: Promise<string | undefined> }[] = [];
  const backups = d.object.spec.backups;
  if (backups !== undefined) {
    checks.push({ field: 'spec.backups.directory', rule: 'paths.backups', check: checkBackupDir(backups.directory, rules.backupDirs, fs) });
  }
  if (d.object.kind === 'Container') {
    const spec = d.object.spec as ContainerSpec;
    if (spec.rootfs !== undefined) {
      checks.push({ field: 'spec.rootfs', rule: 'paths.rootfs', check: checkRootfsDir(spec.rootfs, rules.rootfsDirs, fs) });
    }
    if (spec.image !== undefined) {
      const problem = await checkImageUrl(spec.image.url, rules, fs);
      if (problem !== undefined) return [{ reason: 'PolicyDenied', field: 'spec.image.url', rule: problem.rule, message: problem.message }];
    }
  } else {
    const spec = d.object.spec as VirtualMachineSpec;
    const image = (field: string, path: string | undefined): void => {
      if (path !== undefined) checks.push({ field, rule: 'paths.images', check: checkImageFile(path, rules.imageDirs, fs) });
    };
    image('spec.boot.kernel', spec.boot?.kernel);
    image('spec.boot.initrd', spec.boot?.initrd);
    for (const [i, disk] of (spec.disks ?? []).entries()) {
      if (disk.image === undefined || disk.image.startsWith('/')) {
        image(`spec.disks[${i}].image`, disk.image);
        continue;
      }
      // A URL: judged like a container's image URL (file:// inside the image directories, http(s) on imageHosts).
      const problem = await checkImageUrl(disk.image, rules, fs);
      if (problem !== undefined) checks.push({ field: `spec.disks[${i}].image`, rule: problem.rule, check: Promise.resolve(problem.message) });
    }
  }
  const issues: PolicyIssue[] = [];
  for (const { field, rule, check } of checks) {
    const message = await check;
    if (message !== undefined) issues.push({ reason: 'PolicyDenied', field, rule, message });
  }
  return issues;
}

/** A VM may not ask for more memory than the host has (less what the policy keeps for the host). */
export function capacityIssues(d: Desired, rules: ScopeRules, hostMemoryBytes: number, reservedMemoryBytes: number): PolicyIssue[] {
  if (d.deleting === true || d.object.kind !== 'VirtualMachine') return [];
  const use = usageOf(d, rules);
  const available = Math.max(0, hostMemoryBytes - reservedMemoryBytes);
  if (use.memoryBytes <= available) return [];
  const reserved = reservedMemoryBytes > 0 ? ` less ${size(reservedMemoryBytes)} kept for the host` : '';
  return [{
    reason: 'QuotaExceeded', field: use.memoryField, rule: 'host.capacity',
    message: `${size(use.memoryBytes)} is more than this host's memory (${size(hostMemoryBytes)}${reserved}); it could never start`,
  }];
}

/** Every MAC an object's instance uses, with the field that gives it; NICs and veths without one get a derived MAC. */
export function macsOf(d: Desired): { field: string; mac: string; declared: boolean }[] {
  if (d.object.kind === 'Container') {
    // Veths only, counted as the provider renders them (the index among veths); one without hwaddr gets the derived MAC.
    const veths = ((d.object.spec as ContainerSpec).network ?? []).map((n, i) => ({ n, i })).filter(({ n }) => n.type === 'veth');
    return veths.map(({ n, i }, vethIndex) => ({
      field: `spec.network[${i}]${n.hwaddr === undefined ? '' : '.hwaddr'}`,
      mac: normalizeMac(n.hwaddr ?? deriveMac(d.id, vethIndex)),
      declared: n.hwaddr !== undefined,
    }));
  }
  return ((d.object.spec as VirtualMachineSpec).networks ?? []).map((n, i) => ({
    field: `spec.networks[${i}].mac`, mac: normalizeMac(n.mac ?? deriveMac(d.id, i)), declared: n.mac !== undefined,
  }));
}

/** Orders objects for shared resources: admitted before first, then by key. */
function rankBefore(context: AdmissionContext, a: Desired, b: Desired): boolean {
  const ra = context.admittedBefore(a.key) ? 0 : 1;
  const rb = context.admittedBefore(b.key) ? 0 : 1;
  return ra !== rb ? ra < rb : a.key < b.key;
}

/**
 * A MAC `d` declares that it declares twice, that another object derives (a derived MAC cannot
 * be changed, so the declared one gives way), or that an object ranked before it declares too.
 * Derived MACs themselves are not judged: their author did not choose them.
 */
export function macIssues(d: Desired, context: AdmissionContext): PolicyIssue[] {
  if (d.deleting === true) return [];
  const own = macsOf(d).filter((m) => m.declared);
  if (own.length === 0) return [];
  const taken = new Map<string, string>();
  for (const other of context.objects) {
    if (other.key === d.key || other.deleting === true) continue;
    const before = rankBefore(context, other, d);
    for (const { mac, declared } of macsOf(other)) if (!declared || before) taken.set(mac, describe(other));
  }
  const issues: PolicyIssue[] = [];
  const seen = new Set<string>();
  for (const { field, mac } of own) {
    const holder = taken.get(mac);
    const message = seen.has(mac) ? `${mac} is used twice by this object`
      : holder !== undefined ? `${mac} is already used by ${holder} on this host` : undefined;
    if (message !== undefined) issues.push({ reason: 'PolicyDenied', field, rule: 'unique-mac', message });
    seen.add(mac);
  }
  return issues;
}

const describe = (d: Desired): string => `${d.object.kind}/${d.object.metadata.namespace}/${d.object.metadata.name} (source ${d.source})`;

/** Quotas of `d`'s source and namespace, counting the objects ranked before it and `d` itself. */
export function quotaIssues(d: Desired, rules: ScopeRules, context: AdmissionContext): PolicyIssue[] {
  if (d.deleting === true) return [];
  const namespace = d.object.metadata.namespace;
  if (withinQuotaWhateverTheRanks(d, rules, context)) return [];
  // rankBefore(o, d) with d's own rank read once and o's only when the keys leave it open: this
  // runs for every object of the scope on every pass, so a scope of 1,000 costs 1,000 reads less.
  const admitted = context.admittedBefore(d.key);
  const ranksBefore = (o: Desired): boolean => admitted
    ? o.key < d.key && context.admittedBefore(o.key)
    : o.key < d.key || context.admittedBefore(o.key);
  const before = context.objects.filter((o) => o.key !== d.key && o.deleting !== true && o.source === d.source
    && o.object.metadata.namespace === namespace && ranksBefore(o));
  const own = usageOf(d, rules);
  const used = before.map((o) => usageOf(o, rules));
  const sum = (pick: (u: Usage) => number): number => used.reduce((total, u) => total + pick(u), pick(own));
  const issues: PolicyIssue[] = [];
  const quota = rules.quota;
  const over = (field: string, rule: string, message: string): void => {
    issues.push({ reason: 'QuotaExceeded', field, rule, message });
  };
  const scope = scopeOf(d);
  if (quota.objects !== undefined && before.length + 1 > quota.objects) {
    over('metadata.name', 'quota.objects',
      `${d.object.kind}/${d.object.metadata.name} would be object ${before.length + 1} of ${scope}, over its quota of ${quota.objects}`);
  }
  if (quota.cpu !== undefined) {
    const total = sum((u) => u.cpu ?? 0);
    if (own.cpu === undefined) {
      over(own.cpuField, 'quota.cpu', `must be set: ${scope} has a quota of ${quota.cpu} CPUs, and without it the container may use all`);
    } else if (total > quota.cpu) {
      over(own.cpuField, 'quota.cpu', `${own.cpu} would bring ${scope} to ${total} CPUs, over its quota of ${quota.cpu}`);
    }
  }
  const bytesOver = (field: string, rule: string, mine: number, total: number, limit: number | undefined): void => {
    if (limit === undefined || total <= limit) return;
    over(field, rule, `${size(mine)} would bring ${scope} to ${size(total)}, over its quota of ${size(limit)}`);
  };
  bytesOver(own.memoryField, 'quota.memory', own.memoryBytes, sum((u) => u.memoryBytes), quota.memoryBytes);
  bytesOver(own.diskField, 'quota.disk', own.diskBytes, sum((u) => u.diskBytes), quota.diskBytes);
  return issues;
}

/** Totals of the objects of one scope (every one not being deleted), and each one's usage by key. */
interface ScopeTotals {
  count: number;
  cpu: number;
  memoryBytes: number;
  diskBytes: number;
  /** The object each key was counted as, its usage, and the pass over a list that last saw it. */
  readonly byKey: Map<string, { d: Desired; usage: Usage; seen: number }>;
  /** The list these totals are of; undefined when a list held a key twice (then nothing is trusted). */
  list: readonly Desired[] | undefined;
  /** The store revision of `list`, when the caller said it. */
  revision: number | undefined;
  /** The one rule usageOf reads (rulesFor makes a new rules object per call for a scope with rules of its own). */
  readonly containerMemoryBytes: number;
  seen: number;
}

/**
 * Totals per scope, brought up to date with each new `context.objects` list by what changed in it
 * (the store hands out one list until an object changes, and a list differs from the previous one
 * by an object or two): a pass of each object does not add up its whole scope again. Quota
 * judgement was the costliest part of a pass in a namespace of 1,000 objects.
 */
const scopeTotalsByScope = new Map<string, ScopeTotals>(); // one entry per scope ever judged, with its objects as last listed

function add(t: ScopeTotals, u: Usage, sign: 1 | -1): void {
  t.count += sign;
  t.cpu += sign * (u.cpu ?? 0);
  t.memoryBytes += sign * u.memoryBytes;
  t.diskBytes += sign * u.diskBytes;
}

/** The totals of scope (source, namespace) in `objects` under `rules`; undefined when they cannot be trusted. */
function scopeTotals(
  objects: readonly Desired[], revision: number | undefined, source: string, namespace: string, rules: ScopeRules,
): ScopeTotals | undefined {
  const scope = `${source}/${namespace}`;
  let t = scopeTotalsByScope.get(scope);
  // Usage depends on the rules (a container's default memory): another default (a policy reload), counted afresh.
  if (t === undefined || t.containerMemoryBytes !== rules.containerMemoryBytes) {
    const { containerMemoryBytes } = rules;
    t = { count: 0, cpu: 0, memoryBytes: 0, diskBytes: 0, byKey: new Map(), list: undefined, revision: undefined, containerMemoryBytes, seen: 0 };
    scopeTotalsByScope.set(scope, t);
  }
  if (t.list === objects || (revision !== undefined && t.revision === revision)) return t;
  const seen = ++t.seen;
  let inScope = 0;
  for (const o of objects) {
    if (o.deleting === true || o.source !== source || o.object.metadata.namespace !== namespace) continue;
    inScope++;
    const known = t.byKey.get(o.key);
    if (known?.seen === seen) {
      // The same key twice in one list: not the store's, and not worth counting right; judge it the long way.
      scopeTotalsByScope.delete(scope);
      return undefined;
    }
    if (known?.d === o) {
      known.seen = seen;
      continue;
    }
    if (known !== undefined) add(t, known.usage, -1);
    const usage = usageOf(o, rules);
    add(t, usage, 1);
    t.byKey.set(o.key, { d: o, usage, seen });
  }
  if (inScope !== t.byKey.size) {
    for (const [key, e] of t.byKey) {
      if (e.seen === seen) continue;
      add(t, e.usage, -1);
      t.byKey.delete(key);
    }
  }
  t.list = objects;
  t.revision = revision;
  return t;
}

/**
 * Whether `d` fits its scope's quota even if every other object of the scope ranked before it:
 * then the ranking cannot matter (usage is never negative) and `quotaIssues` has nothing to say,
 * except a container without a cpu limit in a scope with a cpu quota, which this leaves to it.
 */
function withinQuotaWhateverTheRanks(d: Desired, rules: ScopeRules, context: AdmissionContext): boolean {
  const quota = rules.quota;
  const { objects, cpu, memoryBytes, diskBytes } = quota;
  if (objects === undefined && cpu === undefined && memoryBytes === undefined && diskBytes === undefined) return true;
  const own = usageOf(d, rules);
  if (quota.cpu !== undefined && own.cpu === undefined) return false;
  const totals = scopeTotals(context.objects, context.objectsRevision, d.source, d.object.metadata.namespace, rules);
  if (totals === undefined) return false;
  const listed = totals.byKey.get(d.key)?.usage;
  const others = {
    count: totals.count - (listed === undefined ? 0 : 1),
    cpu: totals.cpu - (listed?.cpu ?? 0),
    memoryBytes: totals.memoryBytes - (listed?.memoryBytes ?? 0),
    diskBytes: totals.diskBytes - (listed?.diskBytes ?? 0),
  };
  return (quota.objects === undefined || others.count + 1 <= quota.objects)
    // CPUs may be fractions, added and taken away in another order than quotaIssues adds them: near the quota, it decides.
    && (quota.cpu === undefined || others.cpu + (own.cpu ?? 0) <= quota.cpu - 1e-9)
    && (quota.memoryBytes === undefined || others.memoryBytes + own.memoryBytes <= quota.memoryBytes)
    && (quota.diskBytes === undefined || others.diskBytes + own.diskBytes <= quota.diskBytes);
}

/** What a PolicyGate judges with: the policy, the filesystem it checks paths on, the host's memory. */
export interface PolicyGateOptions {
  readonly policy: HostPolicy;
  readonly fs: PolicyFs;
  /** The host's physical memory (os.totalmem()). */
  readonly hostMemoryBytes: number;
}

/** The host policy applied to objects; see the file comment. */
export class PolicyGate implements Admitter {
  readonly policy: HostPolicy;
  private readonly fs: PolicyFs;
  private readonly hostMemoryBytes: number;

  constructor(options: PolicyGateOptions) {
    this.policy = options.policy;
    this.fs = options.fs;
    this.hostMemoryBytes = options.hostMemoryBytes;
  }

  /** Admits `d` or says why not; never throws for a refused object (an unreadable path is a refusal). */
  async admit(d: Desired, context: AdmissionContext): Promise<Admission> {
    const rules = rulesFor(this.policy, d.source, d.object.metadata.namespace);
    const desired = d.deleting === true ? d : withPolicyDefaults(d, rules);
    const issues = [
      ...staticIssues(desired, rules),
      ...await pathIssues(desired, rules, this.fs).catch((err: unknown): PolicyIssue[] => [{
        reason: 'PolicyDenied', field: 'spec', rule: 'paths', message: `cannot check the host paths it names: ${(err as Error).message}`,
      }]),
      // Both skip the entry of `d` itself in context.objects, so its declared form there does not count.
      ...macIssues(desired, context),
      ...capacityIssues(desired, rules, this.hostMemoryBytes, this.policy.host.reservedMemoryBytes),
      ...quotaIssues(desired, rules, context),
    ];
    if (issues.length === 0) return { allowed: true, desired };
    const reason: RefusalReason = issues.some((i) => i.reason === 'PolicyDenied') ? 'PolicyDenied' : 'QuotaExceeded';
    return { allowed: false, reason, issues, message: issues.map(issueLine).join('; ') };
  }
}
