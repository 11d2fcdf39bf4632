/**
 * TypeScript shapes of the v1alpha1 objects. They mirror container-schema.ts and
 * virtual-machine-schema.ts, which are the source of truth; the validator applies the schemas'
 * defaults, so every field with a default is present on a validated object.
 */
import type { Kind } from './group.js';

/** How changes that need a restart or re-create are applied: Live holds them, Restart and Recreate apply them. */
export type UpdatePolicy = 'Live' | 'Restart' | 'Recreate';
/** What happens to the instance when its object is deleted: Delete removes it, Orphan keeps it. */
export type DeletionPolicy = 'Delete' | 'Orphan';
/** A size as written: a Kubernetes quantity ("512Mi") or a number of bytes. */
export type Quantity = string | number;

/** Kubernetes object metadata, as much of it as hyperlet reads. */
export interface ObjectMeta {
  name: string;
  namespace: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  /** Set by the API server in kube mode; dir and git sources leave these out. */
  uid?: string;
  generation?: number;
  resourceVersion?: string;
  deletionTimestamp?: string;
  finalizers?: string[];
  creationTimestamp?: string;
}

/** Kube mode, when the object leaves its node: Move carries its data; Recreate starts afresh (and leaves a lost node). */
export type EvictionPolicy = 'Move' | 'Recreate';
/** What to do when the instance changes behind hyperlet's back: Correct it, Report it, or Ignore it. */
export type DriftPolicy = 'Correct' | 'Report' | 'Ignore';
/** A reference to another object of the same source; namespace defaults to the referrer's. */
export interface DependencyRef { kind: Kind; name: string; namespace?: string }

interface CommonSpec {
  nodeName?: string;
  /** Kube mode: labels a HypervisorNode must have for the scheduler to place the object there. */
  nodeSelector?: Record<string, string>;
  updatePolicy: UpdatePolicy;
  deletionPolicy: DeletionPolicy;
  /** Absent means Move. */
  evictionPolicy?: EvictionPolicy;
  /** Absent means Correct (the schema default). */
  driftPolicy?: DriftPolicy;
  dependsOn?: DependencyRef[];
  snapshots?: SnapshotPolicy;
  backups?: BackupPolicy;
}

/** spec.backups: the same schedule and retain rules as spec.snapshots, and where the archives go. */
export interface BackupPolicy extends SnapshotPolicy {
  directory: string;
}

/** spec.snapshots: a schedule (cron or @every) and Proxmox-style retain rules. */
export interface SnapshotPolicy {
  schedule: string;
  retain?: { last?: number; hourly?: number; daily?: number; weekly?: number; monthly?: number };
}

/** A key of a Kubernetes Secret in the object's namespace. */
export interface SecretKeySelector { name: string; key: string }
/** Where an environment value comes from: exactly one of the two. */
export interface EnvironmentSource {
  /** kube source: a Secret's key. */
  secretKeyRef?: SecretKeySelector;
  /** dir and git sources: a file in the host's secrets directory (relative to it, or absolute inside it). */
  file?: string;
}

/** The power states a Container may declare. */
export type ContainerState = 'Running' | 'Stopped' | 'Frozen';
/** One network interface of a container: a veth on a bridge, or none. */
export interface ContainerNetwork { type: 'veth' | 'none'; bridge?: string; hwaddr?: string; ipv4?: string; gateway?: string }
/** A root filesystem tarball by URL, with the digest it must have when one is given. */
export interface ImageSource { url: string; sha256?: string }
/** The declared state of an LXC container. */
export interface ContainerSpec extends CommonSpec {
  state: ContainerState;
  template?: string;
  /** Arguments passed to the template after "--" (argv, never a shell). */
  templateArgs?: string[];
  rootfs?: string;
  /** A rootfs tarball by URL, cached and cloned copy-on-write (exactly one of template, rootfs and image). */
  image?: ImageSource;
  resources?: { cpu?: number; memory?: Quantity; disk?: Quantity };
  network?: ContainerNetwork[];
  environment?: Record<string, string>;
  /** Environment read at reconcile time (valueFrom), by variable name. */
  environmentFrom?: Record<string, EnvironmentSource>;
  autostart: boolean;
  /** Absent means false: the container runs in a user namespace (lxc.idmap). */
  privileged?: boolean;
  gracefulStopSeconds: number;
}

/** The power states a VirtualMachine may declare. */
export type VirtualMachineState = 'Running' | 'Stopped' | 'Paused';
/**
 * One disk of a VM: a volume in a storage pool, optionally a copy-on-write layer over an image
 * (a host path, or a URL cached by the image cache with its `sha256`).
 */
export interface VirtualMachineDisk { name: string; size?: Quantity; pool: string; bus: 'virtio' | 'sata' | 'scsi' | 'ide'; image?: string; sha256?: string }
/** First-boot configuration handed to the guest's cloud-init as a NoCloud seed. */
export interface CloudInitSpec {
  /** The user-data document (#cloud-config, a script…); may hold secrets: never shown. */
  userData?: string;
  /** dir/git: a file of the secrets directory; kube: a Secret key (read at reconcile time). */
  userDataFrom?: EnvironmentSource;
  sshAuthorizedKeys?: string[];
  hostname?: string;
  /** A network-config document (version 1 or 2), written as is. */
  networkConfig?: string;
  /** Extra meta-data keys (instance-id and local-hostname are hyperlet's). */
  metaData?: Record<string, string>;
}
/** One NIC of a VM: on a libvirt network or a host bridge. */
export interface VirtualMachineNetwork { network?: string; bridge?: string; mac?: string; model: 'virtio' | 'e1000' | 'rtl8139' }
/** The declared state of a libvirt virtual machine. */
export interface VirtualMachineSpec extends CommonSpec {
  state: VirtualMachineState;
  hypervisor: 'kvm' | 'qemu';
  resources: { cpu: number; memory: Quantity; maxCpu?: number; maxMemory?: Quantity };
  boot?: { kernel?: string; initrd?: string; cmdline?: string; disk?: string; firmware?: 'bios' | 'uefi' };
  disks?: VirtualMachineDisk[];
  networks?: VirtualMachineNetwork[];
  cloudInit?: CloudInitSpec;
  gracefulStopSeconds: number;
}

/** Any declarable power state, of either kind. */
export type PowerState = ContainerState | VirtualMachineState;

/** The spec type of kind `K`. */
export type SpecOf<K extends Kind> = K extends 'Container' ? ContainerSpec : VirtualMachineSpec;

/** A validated object of kind `K` as declared, defaults applied. */
export interface HyperletObject<K extends Kind = Kind> {
  apiVersion: string;
  kind: K;
  metadata: ObjectMeta;
  spec: SpecOf<K>;
  status?: Status;
}

/** A validated Container object. */
export type Container = HyperletObject<'Container'>;
/** A validated VirtualMachine object. */
export type VirtualMachine = HyperletObject<'VirtualMachine'>;

/** The one-word summary of an object's status (status.phase). */
export type Phase = 'Pending' | 'Creating' | 'Moving' | 'Running' | 'Stopped' | 'Frozen' | 'Paused' | 'Failed' | 'Deleting';
/** The condition types hyperlet writes in status.conditions. */
export type ConditionType = 'Ready' | 'Synced' | 'Reconciling' | 'Stalled' | 'RestartRequired' | 'RecreateRequired' | 'Paused' | 'Drifted' | 'Moving' | 'NodeLost';

/** A Kubernetes-convention condition; `lastTransitionTime` moves only when `status` flips. */
export interface Condition {
  type: ConditionType;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
  lastTransitionTime: string;
  observedGeneration?: number;
}

/** What hyperlet reports about an object, in every mode. */
export interface Status {
  phase: Phase;
  conditions: Condition[];
  observedGeneration?: number;
  /** The object's stable id: the domain UUID, the LXC marker's id. */
  id?: string;
  /** The instance's name on the host: NAME, or NAMESPACE.NAME outside namespace default. */
  hostName?: string;
  node?: string;
  pid?: number;
  addresses?: string[];
  startedAt?: string;
  /** Provider-specific facts worth showing (libvirt state and reason, the last stop's outcome…). */
  details?: Record<string, string>;
  /** Changes waiting for a restart or re-create the update policy does not allow. */
  pendingChanges?: { field: string; apply: 'restart' | 'recreate' }[];
  /**
   * The last generation the instance fully matched. A difference found later for that same
   * generation is drift (an out-of-band change), which spec.driftPolicy governs.
   */
  convergedGeneration?: number;
  /** Scheduled snapshots of the instance (spec.snapshots), oldest first. */
  snapshots?: StatusSnapshot[];
  /** Kube mode: where the scheduler placed an object without spec.nodeName (written by the scheduler only). */
  placement?: StatusPlacement;
}

/** status.placement: the scheduler's decision for an object without spec.nodeName. */
export interface StatusPlacement { nodeName: string; time?: string }

/** One snapshot as status lists it. */
export interface StatusSnapshot { name: string; time: string; sizeBytes?: number; origin: string }
