/**
 * spec.dependsOn, resolved: which objects one depends on, whether they are there and Ready, whether
 * the references loop, and which objects depend on one being deleted. Pure functions over lookups,
 * so the rules are tested as tables; the reconciler supplies the store and the statuses.
 *
 * References stay inside one source: an object of source "git" depending on Container/db means
 * "git"'s Container/db, since each source owns only its own objects.
 */
import type { DependencyRef } from '../api/v1alpha1/types.js';
import type { Desired } from '../store/desired.js';
import { type ObjectKey, objectKey } from '../store/object-key.js';

/** The key a reference of `desired` names (same source; namespace defaults to `desired`'s). */
export function dependencyKey(desired: Desired, ref: DependencyRef): ObjectKey {
  return objectKey(desired.source, ref.namespace ?? desired.object.metadata.namespace, ref.kind, ref.name);
}

/** "Container/db", or "Container/prod/db" outside namespace default: how status names an object. */
export function describeObject(kind: string, namespace: string, name: string): string {
  return namespace === 'default' ? `${kind}/${name}` : `${kind}/${namespace}/${name}`;
}

function describeRef(desired: Desired, ref: DependencyRef): string {
  return describeObject(ref.kind, ref.namespace ?? desired.object.metadata.namespace, ref.name);
}

/** What checkDependencies found about an object's spec.dependsOn. */
export interface DependencyCheck {
  /** References to objects the source does not declare. */
  readonly missing: readonly string[];
  /** The loop the object is part of, as object names from it back to it, if any. */
  readonly cycle?: readonly string[];
  /** Declared dependencies that are not Ready (for their current generation). */
  readonly notReady: readonly string[];
}

/**
 * Checks `desired`'s dependencies. `lookup` returns a declared object by key; `isReady` says whether a
 * declared object is Ready. Never loops forever: each key is visited once.
 */
export function checkDependencies(
  desired: Desired, lookup: (key: ObjectKey) => Readonly<Desired> | undefined, isReady: (dep: Readonly<Desired>) => boolean,
): DependencyCheck {
  const refs = desired.object.spec.dependsOn ?? [];
  if (refs.length === 0) return { missing: [], notReady: [] };
  const missing: string[] = [];
  const notReady: string[] = [];
  for (const ref of refs) {
    const dep = lookup(dependencyKey(desired, ref));
    if (dep === undefined) missing.push(describeRef(desired, ref));
    else if (!isReady(dep)) notReady.push(describeRef(desired, ref));
  }
  const cycle = findCycle(desired, lookup);
  return { missing, notReady, ...(cycle === undefined ? {} : { cycle }) };
}

/** The first dependency loop through `start`, as names from `start` back to `start`. */
export function findCycle(start: Readonly<Desired>, lookup: (key: ObjectKey) => Readonly<Desired> | undefined): string[] | undefined {
  const name = (current: Readonly<Desired>): string =>
    describeObject(current.object.kind, current.object.metadata.namespace, current.object.metadata.name);
  const visited = new Set<ObjectKey>();
  const path: Readonly<Desired>[] = [];
  const visit = (current: Readonly<Desired>): string[] | undefined => {
    path.push(current);
    for (const ref of current.object.spec.dependsOn ?? []) {
      const key = dependencyKey(current, ref);
      if (key === start.key) return [...path.map(name), name(start)];
      if (visited.has(key)) continue;
      visited.add(key);
      const next = lookup(key);
      if (next === undefined) continue;
      const found = visit(next);
      if (found !== undefined) return found;
    }
    path.pop();
    return undefined;
  };
  return visit(start);
}

/** Names of the objects among `candidates` that depend on `desired` (other than `desired` itself). */
export function dependentsOf(desired: Readonly<Desired>, candidates: Iterable<Readonly<Desired>>): string[] {
  const out: string[] = [];
  for (const candidate of candidates) {
    if (candidate.key === desired.key || candidate.source !== desired.source) continue;
    if ((candidate.object.spec.dependsOn ?? []).some((ref) => dependencyKey(candidate, ref) === desired.key)) {
      out.push(describeObject(candidate.object.kind, candidate.object.metadata.namespace, candidate.object.metadata.name));
    }
  }
  return out.sort();
}
