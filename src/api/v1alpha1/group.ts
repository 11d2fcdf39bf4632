/** The API group and version every hyperlet object belongs to. */
export const GROUP = 'hyperlet.io';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;

/** The kinds this version serves, with the names the CRDs and the CLI use for them. */
export const KINDS = {
  Container: { plural: 'containers', singular: 'container', shortNames: ['ct'], provider: 'lxc' },
  VirtualMachine: { plural: 'virtualmachines', singular: 'virtualmachine', shortNames: ['vm', 'vms'], provider: 'libvirt' },
} as const;

export type Kind = keyof typeof KINDS;

export function isKind(value: unknown): value is Kind {
  return typeof value === 'string' && Object.hasOwn(KINDS, value);
}
