/** A desired object as every stage after a source sees it: validated, identified and hashed. */
import { createHash } from 'node:crypto';
import type { Kind } from '../api/v1alpha1/group.js';
import type { HyperletObject } from '../api/v1alpha1/types.js';
import { hostNameFor } from '../api/v1alpha1/host-name.js';
import type { ObjectKey } from './object-key.js';

/** A desired object with its identity and hash, as every stage after its source sees it. */
export interface Desired<K extends Kind = Kind> {
  readonly key: ObjectKey;
  /** The source id that declared it ("dir", "git-main", "kube"). */
  readonly source: string;
  /** The validated object, defaults applied. Never mutated. */
  readonly object: HyperletObject<K>;
  /** Stable id: kept across restarts (state DB) or the API server's uid. */
  readonly id: string;
  /** Bumped each time the spec changes. */
  readonly generation: number;
  /** sha256 of the canonical spec JSON, first 16 hex chars. */
  readonly specHash: string;
  /** The instance's name on the host. */
  readonly hostName: string;
  /** Where it was declared (dir and git sources). */
  readonly origin?: { readonly file: string; readonly document: number };
  /** The object is being deleted (kube: deletionTimestamp set; dir/git: the tombstone of a removed object). */
  readonly deleting?: boolean;
}

/** JSON with object keys sorted, so equal specs hash equally whatever their key order. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) =>
    v !== null && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : v);
}

/** A short stable hash of `spec`, equal for equal specs whatever their key order. */
export function specHashOf(spec: unknown): string {
  return createHash('sha256').update(canonicalJson(spec)).digest('hex').slice(0, 16);
}

/** The instance's name on the host for `object` (its namespace and name). */
export function hostNameOf(object: HyperletObject): string {
  return hostNameFor(object.metadata.namespace, object.metadata.name);
}
