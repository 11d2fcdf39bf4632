/** Builders of validated Desired objects for unit tests. */
import { validateObject } from '../../src/api/v1alpha1/validate.js';
import { API_VERSION } from '../../src/api/v1alpha1/group.js';
import { specFields } from '../../src/api/v1alpha1/fields.js';
import type { Kind } from '../../src/api/v1alpha1/group.js';
import { type Desired, hostNameOf, specHashOf } from '../../src/store/desired.js';
import { objectKey } from '../../src/store/object-key.js';
import type { ObservedInstance } from '../../src/providers/provider.js';

export function desired(kind: Kind, name: string, spec: Record<string, unknown>, extra: Partial<Desired> & { annotations?: Record<string, string>; namespace?: string } = {}): Desired {
  const namespace = extra.namespace ?? 'default';
  const result = validateObject({ apiVersion: API_VERSION, kind, metadata: { name, namespace, ...(extra.annotations ? { annotations: extra.annotations } : {}) }, spec });
  if (!result.ok) throw new Error(`test object invalid: ${JSON.stringify(result.issues)}`);
  const object = result.object;
  return {
    key: objectKey('dir', namespace, kind, name),
    source: 'dir',
    object,
    id: extra.id ?? `id-${name}`,
    generation: extra.generation ?? 1,
    specHash: specHashOf(object.spec),
    hostName: hostNameOf(object),
    ...(extra.deleting === undefined ? {} : { deleting: extra.deleting }),
  };
}

export const container = (name: string, spec: Record<string, unknown> = {}, extra: Parameters<typeof desired>[3] = {}): Desired =>
  desired('Container', name, { template: 'busybox', ...spec }, extra);

export const vm = (name: string, spec: Record<string, unknown> = {}, extra: Parameters<typeof desired>[3] = {}): Desired =>
  desired('VirtualMachine', name, spec, extra);

/** The instance exactly as `d` declares it, owned by it, in `state`. */
export function observedAs(d: Desired, state: ObservedInstance['state'] = 'Running', extra: Partial<ObservedInstance> = {}): ObservedInstance {
  return { hostName: d.hostName, state, fields: specFields(d.object.kind, d.object.spec), ownerId: d.id, specHash: d.specHash, ...extra };
}
