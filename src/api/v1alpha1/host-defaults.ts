/**
 * What an instance gets on the host when its spec leaves a field out, where both a provider and
 * the host policy must agree on it (the policy checks and counts what the provider will use).
 */

/** The bridge a container veth joins when the spec names none: what Debian's default LXC config uses. */
export const DEFAULT_CONTAINER_BRIDGE = 'lxcbr0';

/** Capacity of a VirtualMachine disk declared without a size: 10 GiB (qcow2, sparse). */
export const DEFAULT_VM_DISK_BYTES = 10 * 1024 ** 3;

/** A range of host user and group ids a container's ids 0 … size-1 are mapped onto (lxc.idmap). */
export interface IdRange {
  /** The host id container id 0 becomes. */
  readonly hostId: number;
  readonly size: number;
}

/**
 * Where unprivileged containers' ids go unless the host policy says otherwise: 1 000 000 and the
 * 65 536 ids after it, above the ranges useradd hands out from 100 000 for the first dozen users,
 * and where LXD starts its own.
 */
export const DEFAULT_ID_RANGE: IdRange = { hostId: 1_000_000, size: 65_536 };
