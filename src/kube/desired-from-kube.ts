/**
 * Turns a custom resource as the API server returns it into a Desired: server-managed metadata
 * is stripped before validation (the schemas describe what users write), the object is validated
 * and defaulted by the same validator files go through (plus one rule of Kubernetes mode: dependsOn
 * stays in the namespace), and the metadata the core needs (uid,
 * generation, resourceVersion, deletionTimestamp, finalizers) is put back on the result.
 */
import type { KubernetesObject } from '@kubernetes/client-node';
import { API_VERSION, type Kind } from '../api/v1alpha1/group.js';
import type { DependencyRef } from '../api/v1alpha1/types.js';
import { type ValidationIssue, validateObject } from '../api/v1alpha1/validate.js';
import { type Desired, hostNameOf, specHashOf } from '../store/desired.js';
import { objectKey } from '../store/object-key.js';

/** A custom resource as decoded from the API (JSON: timestamps are strings). */
export type KubeObject = KubernetesObject & { spec?: unknown; status?: unknown };

/** A Desired, or the validator's issues. */
export type KubeConversion =
  | { readonly ok: true; readonly desired: Desired }
  | { readonly ok: false; readonly issues: readonly ValidationIssue[] };

const timestamp = (t: unknown): string | undefined =>
  t instanceof Date ? t.toISOString() : typeof t === 'string' ? t : undefined;

/**
 * dependsOn may only name objects in the object's own namespace: a namespace is a trust boundary
 * in Kubernetes, and waiting on (or ordering deletes around) another namespace's objects would
 * let one namespace's authors reach into another's.
 */
export function crossNamespaceIssues(namespace: string, deps: readonly DependencyRef[]): ValidationIssue[] {
  return deps.flatMap((dep, i) => (dep.namespace === undefined || dep.namespace === namespace ? [] : [{
    path: `spec.dependsOn[${i}].namespace`, rule: 'same-namespace',
    message: `must be ${namespace}, the object's own namespace (is ${dep.namespace}): `
      + 'in Kubernetes, dependsOn may only name objects of the same namespace',
  }]));
}

/** Converts `obj` of `kind` into the Desired of source `source`; never throws. */
export function desiredFromKube(source: string, kind: Kind, obj: KubeObject): KubeConversion {
  const m = obj.metadata ?? {};
  const doc = {
    apiVersion: obj.apiVersion ?? API_VERSION,
    kind,
    metadata: {
      name: m.name,
      namespace: m.namespace,
      ...(m.labels !== undefined ? { labels: m.labels } : {}),
      ...(m.annotations !== undefined ? { annotations: m.annotations } : {}),
    },
    spec: obj.spec,
  };
  const result = validateObject(doc);
  if (!result.ok) return { ok: false, issues: result.issues };
  const object = result.object;
  const crossNamespace = crossNamespaceIssues(object.metadata.namespace, object.spec.dependsOn ?? []);
  if (crossNamespace.length > 0) return { ok: false, issues: crossNamespace };
  const deletionTimestamp = timestamp(m.deletionTimestamp);
  const creationTimestamp = timestamp(m.creationTimestamp);
  object.metadata = {
    ...object.metadata,
    ...(m.uid !== undefined ? { uid: m.uid } : {}),
    ...(m.generation !== undefined ? { generation: m.generation } : {}),
    ...(m.resourceVersion !== undefined ? { resourceVersion: m.resourceVersion } : {}),
    ...(deletionTimestamp !== undefined ? { deletionTimestamp } : {}),
    ...(m.finalizers !== undefined ? { finalizers: [...m.finalizers] } : {}),
    ...(creationTimestamp !== undefined ? { creationTimestamp } : {}),
  };
  const desired: Desired = {
    key: objectKey(source, object.metadata.namespace, kind, object.metadata.name),
    source,
    object,
    id: m.uid ?? '',
    generation: m.generation ?? 1,
    specHash: specHashOf(object.spec),
    hostName: hostNameOf(object),
    ...(deletionTimestamp !== undefined ? { deleting: true } : {}),
  };
  return { ok: true, desired };
}
