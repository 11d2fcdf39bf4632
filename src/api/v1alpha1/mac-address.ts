/**
 * MAC addresses of instances: the one a VirtualMachine NIC gets when it declares none (derived
 * from the object id, so it is stable across restarts and re-creates), and the form every MAC is
 * compared in. The libvirt provider writes derived MACs; the host policy checks that no two
 * objects on a host use the same MAC, declared or derived.
 */
import { createHash } from 'node:crypto';

/** A stable MAC for NIC `index` of object `id`, in QEMU's 52:54:00 range. */
export function deriveMac(id: string, index: number): string {
  const h = createHash('sha256').update(`${id}/nic/${index}`).digest();
  return ['52', '54', '00', ...[h[0], h[1], h[2]].map((b) => (b ?? 0).toString(16).padStart(2, '0'))].join(':');
}

/** The form MACs are compared in: lower case. */
export function normalizeMac(mac: string): string {
  return mac.toLowerCase();
}
