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

/** The key a reference of `d` names (same source; namespace defaults to `d`'s). */
export function dependencyKey(d: Desired, ref: DependencyRef): ObjectKey {
  return objectKey(d.source, ref.namespace ?? d.object.metadata.namespace, ref.kind, ref.name);
}

/** "Container/db", or "Container/prod/db" outside namespace default: how status names an object. */
export function describeObject(kind: string, namespace: string, name: string): string {
  return namespace === 'default' ? `${kind}/${name}` : `${kind}/${namespace}/${name}`;
}

function describeRef(d: Desired, ref: DependencyRef): string {
  return describeObject(ref.kind, ref.namespace ?? d.object.metadata.namespace, ref.name);
}

/** What checkDependencies found about an object's spec.dependsOn. */
export interface DependencyCheck {
  /** References to objects the source does not declare. */
  readonly missing: readonly string[];
  /** The loop `d` is part of, as object names from `d` back to `d`, if any. */
  readonly cycle?: readonly string[];
  /** Declared dependencies that are not Ready (for their current generation). */
  readonly notReady: readonly string[];
}

/**
 * Checks `d`'s dependencies. `lookup` returns a declared object by key; `isReady` says whether a
 * declared object is Ready. Never loops forever: each key is visited once.
 */
export function checkDependencies(d: Desired, lookup: (key: ObjectKey) => Readonly<Desired> | undefined, isReady: (dep: Readonly<Desired>) => boolean): DependencyCheck {
  const refs = d.object.spec.dependsOn ?? [];
  if (refs.length === 0) return { missing: [], notReady: [] };
  const missing: string[] = [];
  const notReady: string[] = [];
  for (const ref of refs) {
    const dep = lookup(dependencyKey(d, ref));
    if (dep === undefined) missing.push(describeRef(d, ref));
    else if (!isReady(dep)) notReady.push(describeRef(d, ref));
  }
  const cycle = findCycle(d, lookup);
  return { missing, notReady, ...(cycle === undefined ? {} : { cycle }) };
}

/** The first dependency loop through `start`, as names from `start` back to `start`. */
export function findCycle(start: Readonly<Desired>, lookup: (key: ObjectKey) => Readonly<Desired> | undefined): string[] | undefined {
  const name = (x: Readonly<Desired>): string => describeObject(x.object.kind, x.object.metadata.namespace, x.object.metadata.name);
  const visited = new Set<ObjectKey>();
  const path: Readonly<Desired>[] = [];
  const visit = (x: Readonly<Desired>): string[] | undefined => {
    path.push(x);
    for (const ref of x.object.spec.dependsOn ?? []) {
      const key = dependencyKey(x, ref);
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

/** Names of the objects among `candidates` that depend on `d` (other than `d` itself). */
export function dependentsOf(d: Readonly<Desired>, candidates: Iterable<Readonly<Desired>>): string[] {
  const out: string[] = [];
  for (const c of candidates) {
    if (c.key === d.key || c.source !== d.source) continue;
    if ((c.object.spec.dependsOn ?? []).some((ref) => dependencyKey(c, ref) === d.key)) {
      out.push(describeObject(c.object.kind, c.object.metadata.namespace, c.object.metadata.name));
    }
  }
  return out.sort();
}
