/**
 * Keys name desired objects everywhere: in the store, the work queue, status and logs.
 * Format "source/namespace/kind/name", e.g. "dir/default/Container/web-1". The source part lets
 * several sources run side by side, each owning only its own objects.
 */
import type { Kind } from '../api/v1alpha1/group.js';
import { isKind } from '../api/v1alpha1/group.js';

/** An object's key, "source/namespace/kind/name"; only objectKey() makes one. */
export type ObjectKey = string & { readonly __brand: 'ObjectKey' };

/** The parts of an object key. */
export interface KeyParts {
  readonly source: string;
  readonly namespace: string;
  readonly kind: Kind;
  readonly name: string;
}

/** Builds a key; source ids hold no '/' (see sources/source.ts), namespaces and names are DNS labels. */
export function objectKey(source: string, namespace: string, kind: Kind, name: string): ObjectKey {
  return `${source}/${namespace}/${kind}/${name}` as ObjectKey;
}

/** Splits a key built by objectKey; throws on anything else, since keys never come from users. */
export function parseKey(key: string): KeyParts {
  const parts = key.split('/');
  const [source, namespace, kind, name] = parts;
  if (parts.length !== 4 || source === undefined || namespace === undefined || name === undefined || !isKind(kind)) {
    throw new Error(`cannot parse object key ${JSON.stringify(key)}`);
  }
  return { source, namespace, kind, name };
}
