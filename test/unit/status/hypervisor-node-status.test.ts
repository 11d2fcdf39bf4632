import { expect } from 'chai';
import type { NodeCondition } from '../../../src/api/v1alpha1/hypervisor-node.js';
import { type HostFacts, hypervisorNodeStatus } from '../../../src/status/hypervisor-node-status.js';
import { type HeartbeatSeen, type NodeHeartbeat, expiredHeartbeats } from '../../../src/status/node-lifecycle.js';
import type { Desired } from '../../../src/store/desired.js';
import { container, vm } from '../../fakes/desired-objects.js';

const MiB = 2 ** 20;
const GiB = 2 ** 30;
const NOW = '2026-01-01T00:00:00.000Z';
const EARLIER = '2025-12-31T00:00:00.000Z';

const facts = (over: Partial<HostFacts> = {}): HostFacts => ({
  cpus: 8, memoryBytes: 16 * GiB + 123_456, diskBytes: 100 * GiB + 5 * MiB, kvm: true,
  kinds: [{ kind: 'Container', up: true }, { kind: 'VirtualMachine', up: true }],
  reservedMemoryBytes: 2 * GiB, containerMemoryBytes: 512 * MiB, agentVersion: '0.1.0', ...over,
});
const bootVm = (name: string, cpu: number, memory: string): Desired =>
  vm(name, { resources: { cpu, memory }, boot: { kernel: '/var/cache/hyperlet/guest/vmlinuz' } });

describe('hypervisorNodeStatus', () => {
  const cases: Record<string, {
    reason: string; facts: HostFacts; objects: Desired[]; previous?: NodeCondition[];
    want: { allocated?: object; allocatable?: object; capacity?: object; hypervisors?: string[]; kinds?: string[]; ready?: Partial<NodeCondition> };
  }> = {
    EmptyHost: {
      reason: 'capacity rounds memory down to MiB and disk to GiB; allocatable keeps the policy\'s reservedMemory for the host',
      facts: facts(), objects: [],
      want: {
        capacity: { cpu: 8, memory: '16384Mi', disk: '100Gi' }, allocatable: { cpu: 8, memory: '14336Mi', disk: '100Gi' },
        allocated: { cpu: 0, memory: '0Mi', objects: 0 }, hypervisors: ['lxc', 'qemu', 'kvm'],
        ready: { status: 'True', reason: 'AgentReady', lastTransitionTime: NOW },
      },
    },
    DeclaredResourcesAdd: {
      reason: 'allocated sums what objects declare; a container without a memory limit counts the policy default',
      facts: facts(), objects: [container('a', { resources: { cpu: 2, memory: '1Gi' } }), container('b'), bootVm('v', 2, '2Gi')],
      want: { allocated: { cpu: 4, memory: '3584Mi', objects: 3 } },
    },
    NoKvm: {
      reason: 'without /dev/kvm a host runs VMs with plain qemu only',
      facts: facts({ kvm: false }), objects: [], want: { hypervisors: ['lxc', 'qemu'] },
    },
    ProviderDown: {
      reason: 'a kind whose provider is down is not offered; the node stays Ready while another works',
      facts: facts({ kinds: [{ kind: 'Container', up: true }, { kind: 'VirtualMachine', up: false }] }), objects: [],
      want: { kinds: ['Container'], hypervisors: ['lxc'], ready: { status: 'True', message: 'The agent runs; no working provider for VirtualMachine' } },
    },
    NothingWorks: {
      reason: 'no working provider at all: not Ready',
      facts: facts({ kinds: [{ kind: 'Container', up: false }] }), objects: [],
      want: { kinds: [], hypervisors: [], ready: { status: 'False', reason: 'ProvidersUnavailable' } },
    },
    NotCheckedYet: {
      reason: 'a provider not checked yet counts as working (the first check follows at once)',
      facts: facts({ kinds: [{ kind: 'Container', up: undefined }] }), objects: [], want: { kinds: ['Container'], hypervisors: ['lxc'] },
    },
    TransitionKept: {
      reason: 'the same Ready status keeps its lastTransitionTime, so an unchanged host writes nothing',
      facts: facts(), objects: [],
      previous: [{ type: 'Ready', status: 'True', reason: 'AgentReady', message: 'x', lastTransitionTime: EARLIER }],
      want: { ready: { lastTransitionTime: EARLIER } },
    },
    TransitionStamped: {
      reason: 'a changed Ready status (Unknown from the elected agent, now True again) is stamped now',
      facts: facts(), objects: [],
      previous: [{ type: 'Ready', status: 'Unknown', reason: 'HeartbeatExpired', message: 'x', lastTransitionTime: EARLIER }],
      want: { ready: { status: 'True', lastTransitionTime: NOW } },
    },
  };
  for (const [name, c] of Object.entries(cases)) {
    it(name, () => {
      const s = hypervisorNodeStatus(c.facts, c.objects, c.previous, NOW);
      for (const field of ['allocated', 'allocatable', 'capacity', 'hypervisors', 'kinds'] as const) {
        if (c.want[field] !== undefined) expect(s[field], `${c.reason}: ${field}`).to.deep.equal(c.want[field]);
      }
      if (c.want.ready !== undefined) expect(s.conditions[0], c.reason).to.deep.include(c.want.ready);
      expect(s.conditions.map((x) => x.type)).to.deep.equal(['Ready']);
    });
  }
});

describe('expiredHeartbeats', () => {
  const T = 1_000_000;
  const node = (name: string, renewTimeMs: number | undefined, ready: NodeCondition['status'] | undefined = 'True', durationMs = 40_000): NodeHeartbeat =>
    ({ node: name, ready, lease: { renewTimeMs, durationMs } });
  const noLease = (name: string): NodeHeartbeat => ({ node: name, ready: 'True', lease: undefined });
  const cases: Record<string, { reason: string; nodes: NodeHeartbeat[]; seen: [string, HeartbeatSeen][]; nowMs: number; want: string[] }> = {
    FirstSight: {
      reason: 'a node first seen by this leader gets a full lease duration, whatever its renewTime says',
      nodes: [node('a', T - 3_600_000)], seen: [], nowMs: T, want: [],
    },
    Renewing: {
      reason: 'a renewTime that changed since the last pass restarts the clock',
      nodes: [node('a', T + 10_000)], seen: [['a', { renewTimeMs: T, observedAtMs: T }]], nowMs: T + 50_000, want: [],
    },
    Stale: {
      reason: 'the same renewTime for a lease duration on this clock: expired',
      nodes: [node('a', T)], seen: [['a', { renewTimeMs: T, observedAtMs: T }]], nowMs: T + 40_000, want: ['a'],
    },
    NotYet: {
      reason: 'one millisecond before the duration is not expired',
      nodes: [node('a', T)], seen: [['a', { renewTimeMs: T, observedAtMs: T }]], nowMs: T + 39_999, want: [],
    },
    ShortLease: {
      reason: 'each Lease\'s own duration applies (an agent with --heartbeat 1s has a 4 s Lease)',
      nodes: [node('a', T, 'True', 4_000)], seen: [['a', { renewTimeMs: T, observedAtMs: T }]], nowMs: T + 4_000, want: ['a'],
    },
    AlreadyUnknown: {
      reason: 'a node already Unknown is not written again',
      nodes: [node('a', T, 'Unknown')], seen: [['a', { renewTimeMs: T, observedAtMs: T }]], nowMs: T + 100_000, want: [],
    },
    NoLease: {
      reason: 'a node without a Lease (its agent never beat, or the Lease was deleted) expires after the default duration',
      nodes: [noLease('a')], seen: [['a', { renewTimeMs: undefined, observedAtMs: T }]], nowMs: T + 30_000, want: ['a'],
    },
    OnlyTheStaleOne: {
      reason: 'nodes are judged one by one',
      nodes: [node('a', T), node('b', T + 20_000)],
      seen: [['a', { renewTimeMs: T, observedAtMs: T }], ['b', { renewTimeMs: T, observedAtMs: T }]], nowMs: T + 45_000, want: ['a'],
    },
  };
  for (const [name, c] of Object.entries(cases)) {
    it(name, () => {
      const r = expiredHeartbeats(c.nodes, new Map(c.seen), c.nowMs, 30_000);
      expect(r.expired, c.reason).to.deep.equal(c.want);
      expect([...r.seen.keys()]).to.deep.equal(c.nodes.map((n) => n.node));
    });
  }
});
