import { expect } from 'chai';
import { deriveMac } from '../../../src/api/v1alpha1/mac-address.js';
import {
  type AdmissionContext, PolicyGate, capacityIssues, macIssues, quotaIssues, staticIssues, usageOf, withPolicyDefaults,
} from '../../../src/policy/admission.js';
import { DEFAULT_HOST_POLICY, DEFAULT_SCOPE_RULES, type HostPolicy, type ScopeRules } from '../../../src/policy/host-policy.js';
import type { Desired } from '../../../src/store/desired.js';
import { type ObjectKey, objectKey } from '../../../src/store/object-key.js';
import { container, vm } from '../../fakes/desired-objects.js';
import { FakePolicyFs } from '../../fakes/fake-policy-fs.js';

const GiB = 2 ** 30;
const MiB = 2 ** 20;

/** `d` as declared by another source (the fake builders always say "dir"). */
function from(source: string, d: Desired): Desired {
  return { ...d, source, key: objectKey(source, d.object.metadata.namespace, d.object.kind, d.object.metadata.name) };
}

const rules = (extra: Partial<ScopeRules> = {}): ScopeRules => ({ ...DEFAULT_SCOPE_RULES, ...extra });
const context = (objects: Desired[], admitted: string[] = []): AdmissionContext =>
  ({ objects, admittedBefore: (key: ObjectKey) => admitted.includes(key) });
const fields = (issues: { field: string; rule: string }[]) => issues.map((i) => `${i.field} ${i.rule}`);

describe('host policy: rules that need only the object', () => {
  const cases: Record<string, { reason: string; d: Desired; rules?: Partial<ScopeRules>; want: string[] }> = {
    PlainContainer: { reason: 'busybox, no network, defaults: nothing to refuse', d: container('web'), want: [] },
    TemplateNotAllowed: { reason: 'templates are a list', d: container('web', { template: 'oci' }), want: ['spec.template templates'] },
    TemplateGlob: { reason: 'a glob allows a family', d: container('web', { template: 'debian-12' }), rules: { templates: ['debian*'] }, want: [] },
    AdoptAnnotation: {
      reason: 'adoption is off by default', d: container('web', {}, { annotations: { 'hyperlet.io/adopt': 'true' } }),
      want: ['metadata.annotations["hyperlet.io/adopt"] allow.adoption'],
    },
    AdoptAllowed: { reason: 'a scope may allow adoption', d: container('web', {}, { annotations: { 'hyperlet.io/adopt': 'true' } }), rules: { adoption: true }, want: [] },
    AdoptFalse: { reason: 'only "true" asks for adoption', d: container('web', {}, { annotations: { 'hyperlet.io/adopt': 'false' } }), want: [] },
    Orphan: { reason: 'Orphan is off by default', d: container('web', { deletionPolicy: 'Orphan' }), want: ['spec.deletionPolicy allow.orphan'] },
    PruneDisabled: {
      reason: 'the prune annotation is an author\'s way to orphan', d: container('web', {}, { annotations: { 'hyperlet.io/prune': 'disabled' } }),
      want: ['metadata.annotations["hyperlet.io/prune"] allow.orphan'],
    },
    OrphanAllowed: { reason: 'a scope may allow orphans', d: container('web', { deletionPolicy: 'Orphan' }), rules: { orphan: true }, want: [] },
    Privileged: { reason: 'containers are unprivileged by default', d: container('web', { privileged: true }), want: ['spec.privileged allow.privileged'] },
    PrivilegedAllowed: { reason: 'a scope may allow privileged containers', d: container('web', { privileged: true }), rules: { privileged: true }, want: [] },
    PrivilegedFalse: { reason: 'privileged: false asks for nothing', d: container('web', { privileged: false }), want: [] },
    DefaultBridge: { reason: 'a veth without bridge joins lxcbr0, which is allowed', d: container('web', { network: [{ type: 'veth' }] }), want: [] },
    DefaultBridgeNotAllowed: { reason: 'the default bridge is checked too', d: container('web', { network: [{ type: 'veth' }] }), rules: { bridges: ['br-lan'] }, want: ['spec.network[0] bridges'] },
    ContainerBridgeNotAllowed: { reason: 'an operator bridge is not for everyone', d: container('web', { network: [{ type: 'veth', bridge: 'br-mgmt' }] }), want: ['spec.network[0].bridge bridges'] },
    NoneNeedsNoBridge: { reason: 'type none joins nothing', d: container('web', { network: [{ type: 'none' }] }), rules: { bridges: [] }, want: [] },
    VmBridge: { reason: 'VM bridges are checked', d: vm('v', { networks: [{ bridge: 'br-mgmt' }] }), want: ['spec.networks[0].bridge bridges'] },
    VmNetwork: { reason: 'libvirt networks are a list', d: vm('v', { networks: [{ network: 'secret-net' }] }), want: ['spec.networks[0].network networks'] },
    VmNetworkDefault: { reason: 'libvirt\'s default network is allowed', d: vm('v', { networks: [{ network: 'default' }] }), want: [] },
    VmPool: { reason: 'pools are a list', d: vm('v', { disks: [{ name: 'a', size: '1Gi', pool: 'ops-pool' }] }), want: ['spec.disks[0].pool pools'] },
    VmPoolHyperlet: { reason: 'pools hyperlet creates are allowed', d: vm('v', { disks: [{ name: 'a', size: '1Gi', pool: 'hyperlet-fast' }] }), want: [] },
    GracefulTooLong: { reason: 'stops are capped at 600 s by default', d: container('web', { gracefulStopSeconds: 601 }), want: ['spec.gracefulStopSeconds limits.gracefulStopSeconds'] },
    GracefulAtCap: { reason: 'the cap itself is allowed', d: container('web', { gracefulStopSeconds: 600 }), want: [] },
    CpuOverLimit: { reason: 'per-object cpu limit', d: vm('v', { resources: { cpu: 2, maxCpu: 8 } }), rules: { limits: { cpu: 4, gracefulStopSeconds: 600 } }, want: ['spec.resources.maxCpu limits.cpu'] },
    ContainerCpuMissing: { reason: 'no cpu means every CPU: refused under a cpu limit', d: container('web'), rules: { limits: { cpu: 4, gracefulStopSeconds: 600 } }, want: ['spec.resources.cpu limits.cpu'] },
    MemoryOverLimit: { reason: 'per-object memory limit', d: container('web', { resources: { memory: '2Gi' } }), rules: { limits: { memoryBytes: GiB, gracefulStopSeconds: 600 } }, want: ['spec.resources.memory limits.memory'] },
    DefaultMemoryCountsToo: {
      reason: 'a container without memory counts the policy default', d: container('web'),
      rules: { containerMemoryBytes: 2 * GiB, limits: { memoryBytes: GiB, gracefulStopSeconds: 600 } }, want: ['spec.resources.memory limits.memory'],
    },
    DiskOverLimit: {
      reason: 'all disks of a VM count, 10 GiB for one without size', d: vm('v', { disks: [{ name: 'a', size: '30Gi' }, { name: 'b', image: '/i' }] }),
      rules: { limits: { diskBytes: 32 * GiB, gracefulStopSeconds: 600 } }, want: ['spec.disks limits.disk'],
    },
    DeletingOnlyOrphan: {
      reason: 'an object being deleted is checked for Orphan only: removing what hyperlet made is always allowed',
      d: container('web', { template: 'oci', privileged: true, deletionPolicy: 'Orphan' }, { deleting: true }), want: ['spec.deletionPolicy allow.orphan'],
    },
    DeletingWithDelete: { reason: 'deleting with Delete is never refused', d: container('web', { template: 'oci', privileged: true }, { deleting: true }), want: [] },
  };
  for (const [name, tc] of Object.entries(cases)) {
    it(name, () => expect(fields(staticIssues(tc.d, rules(tc.rules))), tc.reason).to.deep.equal(tc.want));
  }
});

describe('host policy: defaults and usage', () => {
  it('gives a container without memory the policy\'s containerMemory, and leaves declared memory and VMs alone', () => {
    const got = withPolicyDefaults(container('web'), rules({ containerMemoryBytes: 256 * MiB }));
    expect(got.object.spec.resources?.memory).to.equal('256Mi');
    const declared = container('web', { resources: { memory: '64Mi', cpu: 1 } });
    expect(withPolicyDefaults(declared, rules())).to.equal(declared);
    const v = vm('v');
    expect(withPolicyDefaults(v, rules())).to.equal(v);
  });

  const cases: Record<string, { reason: string; d: Desired; want: Partial<ReturnType<typeof usageOf>> }> = {
    ContainerDeclared: { reason: 'what it declares', d: container('c', { resources: { cpu: 2, memory: '1Gi', disk: '5Gi' } }), want: { cpu: 2, memoryBytes: GiB, diskBytes: 5 * GiB } },
    ContainerDefaults: { reason: 'no cpu limit, the default memory, no disk', d: container('c'), want: { cpu: undefined, memoryBytes: 512 * MiB, diskBytes: 0 } },
    VmCeilings: { reason: 'a VM counts what it may grow to live', d: vm('v', { resources: { cpu: 1, maxCpu: 4, memory: '1Gi', maxMemory: '4Gi' } }), want: { cpu: 4, memoryBytes: 4 * GiB, cpuField: 'spec.resources.maxCpu' } },
    VmDisks: { reason: 'declared sizes plus 10 GiB per disk without one', d: vm('v', { disks: [{ name: 'a', size: '1Gi' }, { name: 'b', image: '/x' }] }), want: { diskBytes: 11 * GiB } },
  };
  for (const [name, tc] of Object.entries(cases)) it(name, () => expect(usageOf(tc.d, rules()), tc.reason).to.deep.include(tc.want));
});

describe('host policy: MAC addresses are unique on the host', () => {
  const mac = '52:54:00:aa:bb:cc';
  const a = vm('a', { networks: [{ network: 'default', mac }] });
  const b = container('b', { network: [{ type: 'veth', hwaddr: mac.toUpperCase() }] });
  const derived = vm('d', { networks: [{ network: 'default' }] }, { id: 'id-of-d' });
  const thief = container('thief', { network: [{ type: 'veth', hwaddr: deriveMac('id-of-d', 0) }] });
  const bridged = container('bridged', { network: [{ type: 'none' }, { type: 'veth' }] }, { id: 'id-of-bridged' });
  const copycat = vm('copycat', { networks: [{ network: 'default', mac: deriveMac('id-of-bridged', 0) }] });
  const cases: Record<string, { reason: string; d: Desired; objects: Desired[]; admitted?: string[]; want: string[] }> = {
    Unique: { reason: 'no one else uses it', d: a, objects: [a], want: [] },
    ContainerDerivedTaken: {
      reason: 'a container veth without hwaddr has its derived MAC (index among veths), which a declared one may not take',
      d: copycat, objects: [bridged, copycat], admitted: [copycat.key], want: ['spec.networks[0].mac unique-mac'],
    },
    CollidesWithAdmitted: { reason: 'an object admitted before keeps its MAC, whatever the names', d: a, objects: [a, b], admitted: [b.key], want: ['spec.networks[0].mac unique-mac'] },
    AdmittedKeepsIt: { reason: 'the admitted one is not refused', d: b, objects: [a, b], admitted: [b.key], want: [] },
    NewOnesByKey: { reason: 'between two new objects the first key wins (dir/default/Container/b; case does not matter)', d: a, objects: [a, b], want: ['spec.networks[0].mac unique-mac'] },
    DerivedMacTaken: { reason: 'a declared MAC equal to another VM\'s derived one', d: thief, objects: [derived, thief], admitted: [derived.key], want: ['spec.network[0].hwaddr unique-mac'] },
    DerivedWinsAnyway: { reason: 'a derived MAC cannot give way, so the declared one does even if admitted first', d: thief, objects: [derived, thief], admitted: [thief.key], want: ['spec.network[0].hwaddr unique-mac'] },
    DerivedNotJudged: { reason: 'the VM whose MAC is derived is not refused for it: its author chose nothing', d: derived, objects: [derived, thief], admitted: [thief.key], want: [] },
    OtherSource: { reason: 'MACs are host-wide: another source counts', d: a, objects: [a, from('git', b)], admitted: [from('git', b).key], want: ['spec.networks[0].mac unique-mac'] },
    Twice: { reason: 'one object using a MAC twice', d: vm('t', { networks: [{ network: 'default', mac }, { network: 'default', mac }] }), objects: [], want: ['spec.networks[1].mac unique-mac'] },
    DeletingFreesIt: { reason: 'an object being deleted gives its MAC back', d: a, objects: [a, { ...b, deleting: true }], admitted: [b.key], want: [] },
  };
  for (const [name, tc] of Object.entries(cases)) {
    it(name, () => expect(fields(macIssues(tc.d, context(tc.objects, tc.admitted))), tc.reason).to.deep.equal(tc.want));
  }
});

describe('host policy: quotas per source and namespace', () => {
  const q = (quota: ScopeRules['quota']): ScopeRules => rules({ quota });
  const c = (name: string, spec: Record<string, unknown> = {}, namespace = 'default') => container(name, { resources: { cpu: 1, memory: '1Gi' }, ...spec }, { namespace });
  const three = [c('a'), c('b'), c('c')];
  const cases: Record<string, { reason: string; d: Desired; objects: Desired[]; admitted?: string[]; rules: ScopeRules; want: string[] }> = {
    WithinCount: { reason: 'three objects, quota three', d: c('c'), objects: three, rules: q({ objects: 3 }), want: [] },
    OverCount: { reason: 'the fourth by key is over', d: c('d'), objects: [...three, c('d')], rules: q({ objects: 3 }), want: ['metadata.name quota.objects'] },
    AdmittedKeepsPlace: { reason: 'an admitted object keeps its place: the new one with a lower key is refused', d: c('a'), objects: [...three, c('d')], admitted: [c('b').key, c('c').key, c('d').key], rules: q({ objects: 3 }), want: ['metadata.name quota.objects'] },
    AdmittedNotDisplaced: { reason: 'an admitted object is not displaced by newcomers with lower keys', d: c('d'), objects: [...three, c('d')], admitted: [c('d').key], rules: q({ objects: 3 }), want: [] },
    AdmittedAmongAdmittedByKey: { reason: 'among admitted objects the key decides', d: c('c'), objects: three, admitted: three.map((o) => o.key), rules: q({ objects: 2 }), want: ['metadata.name quota.objects'] },
    OtherNamespace: { reason: 'quotas are per namespace', d: c('x', {}, 'team-b'), objects: [...three, c('x', {}, 'team-b')], rules: q({ objects: 1 }), want: [] },
    OtherSource: { reason: 'quotas are per source', d: from('git', c('a')), objects: [...three, from('git', c('a'))], rules: q({ objects: 1 }), want: [] },
    DeletingNotCounted: { reason: 'objects being deleted do not count', d: c('d'), objects: [{ ...c('a'), deleting: true }, c('b'), c('c'), c('d')], rules: q({ objects: 3 }), want: [] },
    CpuOver: { reason: 'cpu sums', d: c('c', { resources: { cpu: 2, memory: '1Gi' } }), objects: three, rules: q({ cpu: 3 }), want: ['spec.resources.cpu quota.cpu'] },
    CpuMissing: { reason: 'a container without cpu under a cpu quota', d: container('c'), objects: [container('c')], rules: q({ cpu: 8 }), want: ['spec.resources.cpu quota.cpu'] },
    MemoryOver: { reason: 'memory sums, with defaults for containers that declare none', d: container('c'), objects: [c('a'), c('b'), container('c')], rules: q({ memoryBytes: 2 * GiB + 256 * MiB }), want: ['spec.resources.memory quota.memory'] },
    MemoryWithin: { reason: 'exactly the quota is allowed', d: c('c'), objects: three, rules: q({ memoryBytes: 3 * GiB }), want: [] },
    DiskOver: { reason: 'VM disks count', d: vm('v', { disks: [{ name: 'a', size: '20Gi' }] }), objects: [vm('u', { disks: [{ name: 'a', size: '20Gi' }] }), vm('v', { disks: [{ name: 'a', size: '20Gi' }] })], rules: q({ diskBytes: 30 * GiB }), want: ['spec.disks quota.disk'] },
  };
  for (const [name, tc] of Object.entries(cases)) {
    it(name, () => expect(fields(quotaIssues(tc.d, tc.rules, context(tc.objects, tc.admitted))), tc.reason).to.deep.equal(tc.want));
  }

  const bare = [container('a'), container('b'), container('c')];
  // Totals are kept per list handed in (the store hands out one list until an object changes): a
  // judgement on one list must never leak into another list, other rules or another object.
  const sequences: Record<string, { reason: string; steps: { d: Desired; objects: Desired[]; rules: ScopeRules; want: string[] }[] }> = {
    NewListJudgedAnew: {
      reason: 'a list with one more object is a new list: the fourth is over',
      steps: [
        { d: c('c'), objects: three, rules: q({ objects: 3 }), want: [] },
        { d: c('d'), objects: [...three, c('d')], rules: q({ objects: 3 }), want: ['metadata.name quota.objects'] },
      ],
    },
    SameListOtherRules: {
      reason: 'the same list under other rules (a policy reload) is added up again',
      steps: [
        // Three containers without memory: 3 x 256Mi fits 1Gi, 3 x 512Mi does not.
        { d: container('c'), objects: bare, rules: rules({ containerMemoryBytes: 256 * MiB, quota: { memoryBytes: GiB } }), want: [] },
        {
          d: container('c'), objects: bare, rules: rules({ containerMemoryBytes: 512 * MiB, quota: { memoryBytes: GiB } }),
          want: ['spec.resources.memory quota.memory'],
        },
      ],
    },
    SameListOtherObject: {
      reason: 'one list, two objects: the one ranked last is over, the first is not',
      steps: [
        { d: c('a'), objects: three, rules: q({ objects: 2 }), want: [] },
        { d: c('c'), objects: three, rules: q({ objects: 2 }), want: ['metadata.name quota.objects'] },
      ],
    },
  };
  // One rules object for every step, as one policy judges list after list: the totals follow each
  // list by what changed in it, and must come out as if added up afresh.
  const m = (name: string, memory: string): Desired => c(name, { resources: { cpu: 1, memory } });
  type Step = { d: Desired; objects: Desired[]; revision?: number; want: string[] };
  const following: Record<string, { reason: string; rules: ScopeRules; steps: Step[] }> = {
    ObjectGrows: {
      reason: 'an object that grew counts with its new size',
      rules: q({ memoryBytes: 3 * GiB }),
      steps: [
        { d: m('c', '1Gi'), objects: [m('a', '1Gi'), m('b', '1Gi'), m('c', '1Gi')], want: [] },
        { d: m('c', '1Gi'), objects: [m('a', '2Gi'), m('b', '1Gi'), m('c', '1Gi')], want: ['spec.resources.memory quota.memory'] },
      ],
    },
    AddedThenRemoved: {
      reason: 'an object added counts; once removed it no longer does',
      rules: q({ objects: 3 }),
      steps: [
        { d: c('c'), objects: three, want: [] },
        { d: c('d'), objects: [...three, c('d')], want: ['metadata.name quota.objects'] },
        { d: c('d'), objects: [c('b'), c('c'), c('d')], want: [] },
        { d: c('e'), objects: [c('b'), c('c'), c('d'), c('e')], want: ['metadata.name quota.objects'] },
      ],
    },
    DeletingLeaves: {
      reason: 'an object being deleted stops counting, and counts again if it is declared anew',
      rules: q({ objects: 2 }),
      steps: [
        { d: c('c'), objects: [{ ...c('a'), deleting: true }, c('b'), c('c')], want: [] },
        { d: c('c'), objects: [c('a'), c('b'), c('c')], want: ['metadata.name quota.objects'] },
      ],
    },
    SameRevisionEqualObjects: {
      reason: 'a new list of the same store revision (objects replaced by equal ones) is judged the same',
      rules: q({ objects: 3 }),
      steps: [
        { d: c('c'), objects: three, revision: 1e9 + 7, want: [] },
        { d: c('d'), objects: [c('a'), c('b'), c('c'), c('d')], revision: 1e9 + 8, want: ['metadata.name quota.objects'] },
        { d: c('d'), objects: [c('a'), c('b'), c('c'), c('d')], revision: 1e9 + 8, want: ['metadata.name quota.objects'] },
      ],
    },
    NewRevisionGrown: {
      reason: 'a new store revision is looked at again: an object that grew counts with its new size',
      rules: q({ memoryBytes: 3 * GiB }),
      steps: [
        { d: m('c', '1Gi'), objects: [m('a', '1Gi'), m('b', '1Gi'), m('c', '1Gi')], revision: 1e9 + 11, want: [] },
        { d: m('c', '1Gi'), objects: [m('a', '2Gi'), m('b', '1Gi'), m('c', '1Gi')], revision: 1e9 + 12, want: ['spec.resources.memory quota.memory'] },
      ],
    },
    KeyTwice: {
      reason: 'a list holding one key twice (never the store\'s) is judged as quotaIssues always did: both count',
      rules: q({ objects: 2 }),
      steps: [{ d: c('b'), objects: [c('a'), c('a'), c('b')], want: ['metadata.name quota.objects'] }],
    },
  };
  for (const [name, tc] of Object.entries(following)) {
    it(name, () => {
      for (const step of tc.steps) {
        const ctx = { ...context(step.objects), ...(step.revision === undefined ? {} : { objectsRevision: step.revision }) };
        expect(fields(quotaIssues(step.d, tc.rules, ctx)), tc.reason).to.deep.equal(step.want);
      }
    });
  }

  for (const [name, tc] of Object.entries(sequences)) {
    it(name, () => {
      const lists = new Map<string, Desired[]>();
      for (const step of tc.steps) {
        // Equal lists are handed in as the very same array, as the store does.
        const id = step.objects.map((o) => o.key).join();
        const objects = lists.get(id) ?? step.objects;
        lists.set(id, objects);
        expect(fields(quotaIssues(step.d, step.rules, context(objects))), tc.reason).to.deep.equal(step.want);
      }
    });
  }
});

describe('host policy: capacity', () => {
  const cases: Record<string, { reason: string; d: Desired; hostBytes: number; reserved?: number; want: string[] }> = {
    Fits: { reason: 'less than the host has', d: vm('v', { resources: { memory: '1Gi' } }), hostBytes: 8 * GiB, want: [] },
    TooBig: { reason: 'a VM that could never start', d: vm('v', { resources: { memory: '16Gi' } }), hostBytes: 8 * GiB, want: ['spec.resources.memory host.capacity'] },
    CeilingTooBig: { reason: 'maxMemory is what it may balloon to', d: vm('v', { resources: { memory: '1Gi', maxMemory: '16Gi' } }), hostBytes: 8 * GiB, want: ['spec.resources.maxMemory host.capacity'] },
    Reserved: { reason: 'memory kept for the host is not for VMs', d: vm('v', { resources: { memory: '7Gi' } }), hostBytes: 8 * GiB, reserved: 2 * GiB, want: ['spec.resources.memory host.capacity'] },
    ContainerIgnored: { reason: 'a container limit is only a ceiling', d: container('c', { resources: { memory: '16Gi' } }), hostBytes: 8 * GiB, want: [] },
  };
  for (const [name, tc] of Object.entries(cases)) {
    it(name, () => expect(fields(capacityIssues(tc.d, rules(), tc.hostBytes, tc.reserved ?? 0)), tc.reason).to.deep.equal(tc.want));
  }
});

describe('PolicyGate', () => {
  const fs = new FakePolicyFs({ '/dev/sda': { kind: 'block-device' }, '/var/cache/hyperlet/guest/vmlinuz': { kind: 'file' } });
  const gate = (policy: HostPolicy = DEFAULT_HOST_POLICY) => new PolicyGate({ policy, fs, hostMemoryBytes: 8 * GiB });

  it('admits a plain object and returns it with the policy defaults', async () => {
    const d = container('web');
    const got = await gate().admit(d, context([d]));
    expect(got.allowed).to.equal(true);
    if (got.allowed) expect(got.desired.object.spec.resources?.memory).to.equal('512Mi');
  });

  it('refuses with PolicyDenied and one message naming each field, value and rule', async () => {
    const d = vm('evil', { boot: { kernel: '/dev/sda' }, disks: [{ name: 'a', image: '/dev/sda', pool: 'ops' }], resources: { memory: '64Gi' } });
    const got = await gate().admit(d, context([d]));
    expect(got.allowed).to.equal(false);
    if (got.allowed) return;
    expect(got.reason, 'a path denial outranks the capacity refusal').to.equal('PolicyDenied');
    expect(got.message).to.include('spec.disks[0].pool: ops is not an allowed storage pool (default, hyperlet-*) (policy: pools)');
    expect(got.message).to.include('spec.boot.kernel: /dev/sda is not a regular file under an allowed image directory (/var/lib/hyperlet/images, /var/cache/hyperlet/images, /var/cache/hyperlet/guest): it is outside them (policy: paths.images)');
    expect(got.message).to.include('spec.disks[0].image: /dev/sda is not a regular file');
    expect(got.message).to.include('spec.resources.memory: 64Gi is more than this host\'s memory (8Gi); it could never start (policy: host.capacity)');
  });

  const diskUrls: { name: string; reason: string; url: string; hosts: string[]; want?: string }[] = [
    { name: 'unlisted host', reason: 'a VM disk URL obeys imageHosts like a container image', url: 'https://images.example/d.qcow2', hosts: [],
      want: 'spec.disks[0].image: images.example is not an allowed image host (none allowed) (policy: imageHosts)' },
    { name: 'listed host', reason: 'a listed host passes', url: 'https://images.example/d.qcow2', hosts: ['images.example'] },
    { name: 'file outside', reason: 'a file:// URL must name a file in the image directories', url: 'file:///dev/sda', hosts: ['*'],
      want: 'spec.disks[0].image: /dev/sda is not a regular file' },
  ];
  for (const tc of diskUrls) {
    it(`VM disk image URL, ${tc.name}: ${tc.reason}`, async () => {
      const policy: HostPolicy = { ...DEFAULT_HOST_POLICY, defaults: { ...DEFAULT_HOST_POLICY.defaults, imageHosts: tc.hosts } };
      const d = vm('url', { disks: [{ name: 'a', image: tc.url, pool: 'default' }] });
      const got = await gate(policy).admit(d, context([d]));
      if (tc.want === undefined) {
        expect(got.allowed, tc.reason).to.equal(true);
        return;
      }
      expect(got.allowed === false && got.message, tc.reason).to.include(tc.want);
    });
  }

  it('refuses with QuotaExceeded when only quotas or capacity refuse', async () => {
    const d = vm('big', { resources: { memory: '64Gi' } });
    const got = await gate().admit(d, context([d]));
    expect(got.allowed === false && got.reason).to.equal('QuotaExceeded');
  });

  it('applies the rules of the object\'s own source and namespace', async () => {
    const policy: HostPolicy = { ...DEFAULT_HOST_POLICY, scopes: [{ source: 'git', namespace: 'lab', rules: { privileged: true } }] };
    const inLab = from('git', container('p', { privileged: true }, { namespace: 'lab' }));
    const elsewhere = from('git', container('p', { privileged: true }, { namespace: 'prod' }));
    expect((await gate(policy).admit(inLab, context([inLab]))).allowed).to.equal(true);
    expect((await gate(policy).admit(elsewhere, context([elsewhere]))).allowed).to.equal(false);
  });

  it('a path it cannot check is a refusal, never an admission', async () => {
    const broken = { ...fs, realpath: () => Promise.reject(new Error('EIO')), kindOf: fs.kindOf.bind(fs), readHead: fs.readHead.bind(fs) };
    const d = vm('v', { boot: { kernel: '/var/cache/hyperlet/guest/vmlinuz' } });
    const got = await new PolicyGate({ policy: DEFAULT_HOST_POLICY, fs: broken, hostMemoryBytes: 8 * GiB }).admit(d, context([d]));
    expect(got.allowed === false && got.message).to.include('cannot check the host paths it names: EIO');
  });
});
