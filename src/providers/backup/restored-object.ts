/** The object a restored backup is declared with: the archived one, renamed, marked for adoption. */
import { ADOPT_ANNOTATION } from '../../shared/annotations.js';

/**
 * The archived `object` as `namespace/name`, without server-set metadata (uid, resourceVersion,
 * finalizers…) and with `hyperlet.io/adopt: "true"`, so declaring it makes hyperlet take the
 * restored instance (which has no marker) instead of refusing it. Pure; never mutates `object`.
 */
export function restoredObject(object: Readonly<Record<string, unknown>>, namespace: string, name: string): Record<string, unknown> {
  const metadata = (object.metadata ?? {}) as Record<string, unknown>;
  // One-off requests (reboot, snapshot, restore) were acted on where the backup was made, not here.
  const carried = Object.entries((metadata.annotations ?? {}) as Record<string, string>)
    .filter(([key]) => !(key.startsWith('hyperlet.io/') && key.endsWith('-request')));
  const annotations = { ...Object.fromEntries(carried), [ADOPT_ANNOTATION]: 'true' };
  const kept: Record<string, unknown> = { name, namespace, annotations };
  if (metadata.labels !== undefined) kept.labels = metadata.labels;
  return { apiVersion: object.apiVersion, kind: object.kind, metadata: kept, spec: object.spec };
}

/** The object as it goes into an archive: apiVersion, kind, metadata (name, namespace, labels, annotations) and spec. */
export function archivedObject(object: Readonly<Record<string, unknown>>): Record<string, unknown> {
  const metadata = (object.metadata ?? {}) as Record<string, unknown>;
  const kept: Record<string, unknown> = { name: metadata.name, namespace: metadata.namespace ?? 'default' };
  if (metadata.labels !== undefined) kept.labels = metadata.labels;
  if (metadata.annotations !== undefined) kept.annotations = metadata.annotations;
  return { apiVersion: object.apiVersion, kind: object.kind, metadata: kept, spec: object.spec };
}
