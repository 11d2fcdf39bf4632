/**
 * HypervisorNode: the cluster-scoped inventory record each agent publishes for its host (name =
 * the agent's --node): capacity, allocatable and allocated cpu, memory and disk, the kinds and
 * hypervisors the host can run, and a Ready condition. The agent's heartbeat is a Lease
 * (hyperlet-system/hyperlet-node-NAME); the elected agent marks nodes whose Lease expired.
 */
import { GROUP, VERSION } from './group.js';
import { API_VERSION_DESCRIPTION, DNS_SUBDOMAIN_PATTERN, type JsonSchema, KIND_DESCRIPTION } from './schema-parts.js';

/** The kind's names, as KINDS gives them for the reconciled kinds. */
export const HYPERVISOR_NODE = { kind: 'HypervisorNode', plural: 'hypervisornodes', singular: 'hypervisornode', shortNames: ['hvn'] } as const;

/** The heartbeat Lease of a node, in the agents' namespace. */
export const nodeLeaseName = (node: string): string => `hyperlet-node-${node}`;

/** Amounts of one resource set: cpu in whole cores, memory and disk as quantities. */
export interface NodeResources {
  cpu: number;
  memory: string;
  disk: string;
}

/** One condition, after Kubernetes API conventions. */
export interface NodeCondition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
  lastTransitionTime: string;
}

/** What an agent reports about its host. */
export interface HypervisorNodeStatus {
  capacity: NodeResources;
  /** Capacity less what the host policy keeps for the host (reservedMemory). */
  allocatable: NodeResources;
  /** The sum of what this node's objects declare, and how many there are. */
  allocated: { cpu: number; memory: string; objects: number };
  /** Kinds this agent reconciles with a working provider. */
  kinds: string[];
  /** lxc, qemu, and kvm only where /dev/kvm exists. */
  hypervisors: string[];
  /** hyperlet's version on the node. */
  agentVersion: string;
  /** Where other agents fetch the data of instances that leave this node (--peer-url), when this agent serves it. */
  handoverUrl?: string;
  conditions: NodeCondition[];
}

/** What an administrator sets on a node (hyperlet drain / uncordon). */
export interface HypervisorNodeSpec {
  /** Like a cordoned Node: the scheduler places nothing new here, and moves what it placed here elsewhere. */
  unschedulable?: boolean;
}

/** The whole object as written to the API server. */
export interface HypervisorNodeObject {
  apiVersion: string;
  kind: 'HypervisorNode';
  metadata: { name: string; labels?: Record<string, string>; resourceVersion?: string };
  spec?: HypervisorNodeSpec;
  status?: HypervisorNodeStatus;
}

const resources = (what: string): JsonSchema => ({
  type: 'object',
  description: what,
  properties: {
    cpu: { type: 'integer', description: 'Whole CPU cores.' },
    memory: { type: 'string', description: 'Memory, as a quantity (Mi).' },
    disk: { type: 'string', description: 'Disk of the filesystem holding the instances, as a quantity (Gi).' },
  },
});

const statusSchema: JsonSchema = {
  type: 'object',
  description: 'What the node\'s agent reports (and the elected agent, when the heartbeat stops).',
  properties: {
    capacity: resources('What the host has.'),
    allocatable: resources('What objects may use: capacity less the host policy\'s reservedMemory.'),
    allocated: {
      type: 'object',
      description: 'The sum of what the objects placed on this node declare.',
      properties: {
        cpu: { type: 'integer', description: 'Declared CPU cores.' },
        memory: { type: 'string', description: 'Declared memory (containers without a limit count the policy\'s default).' },
        objects: { type: 'integer', description: 'How many objects are placed on this node.' },
      },
    },
    kinds: { type: 'array', items: { type: 'string' }, description: 'Kinds the agent reconciles with a working provider.' },
    hypervisors: { type: 'array', items: { type: 'string' }, description: 'lxc, qemu, and kvm where /dev/kvm exists.' },
    agentVersion: { type: 'string', description: 'The hyperlet version of the agent.' },
    handoverUrl: { type: 'string', maxLength: 2048, description: 'Where other agents fetch the data of instances that leave this node.' },
    conditions: {
      type: 'array',
      'x-kubernetes-list-type': 'map',
      'x-kubernetes-list-map-keys': ['type'],
      description: 'Ready: the agent runs and renews its heartbeat Lease (Unknown, reason HeartbeatExpired, when it stopped).',
      items: {
        type: 'object',
        required: ['type', 'status'],
        description: 'One condition, after Kubernetes API conventions.',
        properties: {
          type: { type: 'string', description: 'Condition type: Ready.' },
          status: { type: 'string', enum: ['True', 'False', 'Unknown'], description: 'True, False or Unknown.' },
          reason: { type: 'string', description: 'Why, in one CamelCase word.' },
          message: { type: 'string', description: 'Why, in words for people.' },
          lastTransitionTime: { type: 'string', format: 'date-time', description: 'When status last changed.' },
        },
      },
    },
  },
};

/** The CustomResourceDefinition of HypervisorNode (cluster-scoped, status subresource). */
export function hypervisorNodeCrd(): Record<string, unknown> {
  const n = HYPERVISOR_NODE;
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${n.plural}.${GROUP}`, labels: { 'app.kubernetes.io/part-of': 'hyperlet' } },
    spec: {
      group: GROUP,
      scope: 'Cluster',
      names: { kind: n.kind, listKind: `${n.kind}List`, plural: n.plural, singular: n.singular, shortNames: [...n.shortNames], categories: ['hyperlet'] },
      versions: [{
        name: VERSION,
        served: true,
        storage: true,
        subresources: { status: {} },
        additionalPrinterColumns: [
          { name: 'Ready', type: 'string', jsonPath: '.status.conditions[?(@.type=="Ready")].status' },
          { name: 'Unschedulable', type: 'boolean', jsonPath: '.spec.unschedulable', priority: 1 },
          { name: 'CPU', type: 'integer', jsonPath: '.status.capacity.cpu', description: 'CPU cores of the host.' },
          { name: 'CPU-Used', type: 'integer', jsonPath: '.status.allocated.cpu', description: 'CPU cores declared by the node\'s objects.' },
          { name: 'Memory', type: 'string', jsonPath: '.status.capacity.memory', description: 'Memory of the host.' },
          { name: 'Memory-Used', type: 'string', jsonPath: '.status.allocated.memory', description: 'Memory declared by the node\'s objects.' },
          { name: 'Disk', type: 'string', jsonPath: '.status.capacity.disk' },
          { name: 'Objects', type: 'integer', jsonPath: '.status.allocated.objects' },
          { name: 'Allocatable-Memory', type: 'string', jsonPath: '.status.allocatable.memory', priority: 1 },
          { name: 'Hypervisors', type: 'string', jsonPath: '.status.hypervisors', priority: 1 },
          { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
        ],
        schema: {
          openAPIV3Schema: {
            type: 'object',
            description: 'A host running a hyperlet agent, as that agent reports it (cluster-scoped; the name is the agent\'s --node).',
            properties: {
              apiVersion: { type: 'string', description: API_VERSION_DESCRIPTION },
              kind: { type: 'string', description: KIND_DESCRIPTION },
              metadata: { type: 'object', properties: { name: { type: 'string', maxLength: 253, pattern: DNS_SUBDOMAIN_PATTERN } } },
              spec: {
                type: 'object',
                description: 'What an administrator sets on the node.',
                properties: {
                  unschedulable: {
                    type: 'boolean',
                    description: 'Cordoned (hyperlet drain): nothing new is placed here, and what the scheduler placed here moves elsewhere.',
                  },
                },
              },
              status: statusSchema,
            },
          },
        },
      }],
    },
  };
}
