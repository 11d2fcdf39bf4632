/**
 * What an instance gets on the host when its spec leaves a field out, where both a provider and
 * the host policy must agree on it (the policy checks and counts what the provider will use).
 */

/** The bridge a container veth joins when the spec names none: what Debian's default LXC config uses. */
export const DEFAULT_CONTAINER_BRIDGE = 'lxcbr0';

/** Capacity of a VirtualMachine disk declared without a size: 10 GiB (qcow2, sparse). */
export const DEFAULT_VM_DISK_BYTES = 10 * 1024 ** 3;
