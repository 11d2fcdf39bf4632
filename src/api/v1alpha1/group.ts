/** The API group and version every hyperlet object belongs to. */
export const GROUP = 'hyperlet.io';
/** The API version this code serves. */
export const VERSION = 'v1alpha1';
/** The apiVersion every object declares: group/version. */
export const API_VERSION = `${GROUP}/${VERSION}`;

/** The kinds this version serves, with the names the CRDs and the CLI use for them. */
export const KINDS = {
  Container: { plural: 'containers', singular: 'container', shortNames: ['ct'], provider: 'lxc' },
  VirtualMachine: { plural: 'virtualmachines', singular: 'virtualmachine', shortNames: ['vm', 'vms'], provider: 'libvirt' },
} as const;

/** A kind this version serves: Container or VirtualMachine. */
export type Kind = keyof typeof KINDS;

/** Whether `value` names a kind this version serves (case-sensitive). */
export function isKind(value: unknown): value is Kind {
  return typeof value === 'string' && Object.hasOwn(KINDS, value);
}
