/**
 * MAC addresses of instances: the one a VirtualMachine NIC gets when it declares none (derived
 * from the object id, so it is stable across restarts and re-creates), and the form every MAC is
 * compared in. The libvirt provider writes derived MACs; the host policy checks that no two
 * objects on a host use the same MAC, declared or derived.
 */
import { createHash } from 'node:crypto';

/** Derived MACs already computed: the host policy asks for every VM's on each admission. */
const derived = new Map<string, string>();
/** Bounds the memo; past it the memo starts over (ids of deleted objects would otherwise stay). */
const MAX_MEMO = 10_000;

/** A stable MAC for NIC `index` of object `id`, in QEMU's 52:54:00 range. */
export function deriveMac(id: string, index: number): string {
  const input = `${id}/nic/${index}`;
  const known = derived.get(input);
  if (known !== undefined) return known;
  const h = createHash('sha256').update(input).digest();
  const mac = ['52', '54', '00', ...[h[0], h[1], h[2]].map((b) => (b ?? 0).toString(16).padStart(2, '0'))].join(':');
  if (derived.size >= MAX_MEMO) derived.clear();
  derived.set(input, mac);
  return mac;
}

/** The form MACs are compared in: lower case. */
export function normalizeMac(mac: string): string {
  return mac.toLowerCase();
}
