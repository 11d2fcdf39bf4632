/**
 * What an agent reports in its HypervisorNode, computed from facts about its host and the objects
 * placed on it. Pure: the facts are read elsewhere (daemon wiring) and injected.
 *
 * Units: memory rounded down to whole MiB and disk to whole GiB, so the figures (and with them
 * the status) change only when the host really changes, not with every page the kernel moves.
 */
import type { HypervisorNodeStatus, NodeCondition } from '../api/v1alpha1/hypervisor-node.js';
import { parseQuantity } from '../api/v1alpha1/quantity.js';
import type { Desired } from '../store/desired.js';

const MiB = 2 ** 20;
const GiB = 2 ** 30;

/** Facts about the host, read by the agent at each publish. */
export interface HostFacts {
  readonly cpus: number;
  readonly memoryBytes: number;
  /** Size of the filesystem holding the instances (the lxcpath's). */
  readonly diskBytes: number;
  /** Whether /dev/kvm exists. */
  readonly kvm: boolean;
  /** Kinds this agent reconciles, each with whether its provider works now (undefined: not checked yet). */
  readonly kinds: readonly { readonly kind: 'Container' | 'VirtualMachine'; readonly up: boolean | undefined }[];
  /** The host policy's reservedMemory (kept from objects). */
  readonly reservedMemoryBytes: number;
  /** The host policy's memory for a container that declares none. */
  readonly containerMemoryBytes: number;
  readonly agentVersion: string;
  /** --peer-url: where other agents fetch the data of instances leaving this node. */
  readonly handoverUrl?: string;
}

const mi = (bytes: number): string => `${Math.max(0, Math.floor(bytes / MiB))}Mi`;
const gi = (bytes: number): string => `${Math.max(0, Math.floor(bytes / GiB))}Gi`;

/** The declared cpu and memory of one object (containers without a memory limit count the default). */
function declared(d: Desired, containerMemoryBytes: number): { cpu: number; memoryBytes: number } {
  // Both kinds' resources have cpu and memory; only a container's may be absent.
  const r = (d.object.spec as { resources?: { cpu?: number; memory?: string | number } }).resources;
  const fallback = d.object.kind === 'Container' ? containerMemoryBytes : 0;
  return { cpu: r?.cpu ?? 0, memoryBytes: r?.memory === undefined ? fallback : parseQuantity(r.memory) ?? fallback };
}

/**
 * The status for `facts` and the objects placed on the node. `previous` keeps a condition's
 * lastTransitionTime while its status stays the same; `nowIso` stamps a transition.
 */
export function hypervisorNodeStatus(
  facts: HostFacts, objects: readonly Desired[], previous: readonly NodeCondition[] | undefined, nowIso: string,
): HypervisorNodeStatus {
  let cpu = 0;
  let memoryBytes = 0;
  for (const d of objects) {
    const r = declared(d, facts.containerMemoryBytes);
    cpu += r.cpu;
    memoryBytes += r.memoryBytes;
  }
  const working = facts.kinds.filter((k) => k.up !== false).map((k) => k.kind);
  const hypervisors = [
    ...(working.includes('Container') ? ['lxc'] : []),
    ...(working.includes('VirtualMachine') ? ['qemu', ...(facts.kvm ? ['kvm'] : [])] : []),
  ];
  const down = facts.kinds.filter((k) => k.up === false).map((k) => k.kind);
  const ready: Omit<NodeCondition, 'lastTransitionTime'> = working.length > 0
    ? { type: 'Ready', status: 'True', reason: 'AgentReady',
      message: down.length === 0 ? 'The agent runs and renews its heartbeat' : `The agent runs; no working provider for ${down.join(', ')}` }
    : { type: 'Ready', status: 'False', reason: 'ProvidersUnavailable', message: `No working provider for ${down.join(', ') || 'any kind'}` };
  const before = previous?.find((c) => c.type === 'Ready');
  const capacity = { cpu: facts.cpus, memory: mi(facts.memoryBytes), disk: gi(facts.diskBytes) };
  return {
    capacity,
    allocatable: { cpu: facts.cpus, memory: mi(facts.memoryBytes - facts.reservedMemoryBytes), disk: capacity.disk },
    allocated: { cpu, memory: mi(memoryBytes), objects: objects.length },
    kinds: working,
    hypervisors,
    agentVersion: facts.agentVersion,
    ...(facts.handoverUrl !== undefined ? { handoverUrl: facts.handoverUrl } : {}),
    conditions: [{ ...ready, lastTransitionTime: before?.status === ready.status ? before.lastTransitionTime : nowIso }],
  };
}
