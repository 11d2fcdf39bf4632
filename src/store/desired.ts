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

/**
 * JSON with object keys sorted, so equal specs hash equally whatever their key order. The text is
 * exactly what `JSON.stringify` gives for a copy of `value` with each object's keys sorted (spec
 * hashes are stored, so it must never change): array-index keys ("0", "7", "10") first in numeric
 * order, as JavaScript orders them in any object, then the others by UTF-16 code units. Written
 * out by hand because a sorted copy per object made this the reconcile loop's costliest call.
 */
export function canonicalJson(value: unknown): string {
  return write(value, '') ?? (undefined as unknown as string); // JSON.stringify(undefined) is undefined too
}

/**
 * Whether `canonicalJson(a) === canonicalJson(b)`, found without writing either out: plain objects
 * and arrays are compared member by member and the first difference ends it. (Comparing two
 * statuses this way costs a tenth of writing both.)
 */
export function canonicalEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (!isPlainData(a) || !isPlainData(b)) return canonicalJson(a) === canonicalJson(b);
  if (Array.isArray(a) || Array.isArray(b)) {
    if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!canonicalEqual(asElement(a[i]), asElement(b[i]))) return false;
    return true;
  }
  const x = a as Record<string, unknown>;
  const y = b as Record<string, unknown>;
  let written = 0;
  for (const k of Object.keys(x)) {
    if (!isWritten(x[k])) continue;
    written++;
    if (!Object.prototype.hasOwnProperty.call(y, k) || !isWritten(y[k]) || !canonicalEqual(x[k], y[k])) return false;
  }
  for (const k of Object.keys(y)) if (isWritten(y[k])) written--;
  return written === 0;
}

/** An object or array JSON writes member by member (no toJSON, no boxed primitive). */
function isPlainData(v: unknown): v is object {
  return v !== null && typeof v === 'object' && typeof (v as { toJSON?: unknown }).toJSON !== 'function'
    && !(v instanceof Number || v instanceof String || v instanceof Boolean);
}

/** Whether JSON writes a property with this value (it leaves out undefined, functions and symbols). */
const isWritten = (v: unknown): boolean => v !== undefined && typeof v !== 'function' && typeof v !== 'symbol';
/** An array element as JSON sees it: what it would leave out of an object is null in an array. */
const asElement = (v: unknown): unknown => (isWritten(v) ? v : null);

/** Array index per ECMAScript: the canonical decimal form of an integer below 2^32 - 1. */
const ARRAY_INDEX = /^(?:0|[1-9][0-9]{0,9})$/;
const isArrayIndex = (k: string): boolean => ARRAY_INDEX.test(k) && Number(k) < 4_294_967_295;
const byCodeUnits = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
/** Strings JSON writes as they are between quotes (most keys, names and values): no call needed. */
const PLAIN = /^[\w .:/@+=,-]*$/;
const quote = (s: string): string => (PLAIN.test(s) ? `"${s}"` : JSON.stringify(s));

/** One value as JSON.stringify writes it, or undefined where it writes nothing (undefined, functions, symbols). */
function write(input: unknown, key: string): string | undefined {
  let value = input;
  if (value !== null && typeof value === 'object' && typeof (value as { toJSON?: unknown }).toJSON === 'function') {
    value = (value as { toJSON: (k: string) => unknown }).toJSON(key);
  }
  switch (typeof value) {
    case 'string': return quote(value);
    case 'number': return Number.isFinite(value) ? String(value) : 'null';
    case 'boolean': return value ? 'true' : 'false';
    case 'bigint': return JSON.stringify(value); // throws, as JSON.stringify does
    case 'object': break;
    default: return undefined;
  }
  if (value === null) return 'null';
  if (Array.isArray(value)) {
    let out = '[';
    for (let i = 0; i < value.length; i++) out += `${i === 0 ? '' : ','}${write(value[i], String(i)) ?? 'null'}`;
    return `${out}]`;
  }
  if (value instanceof Number || value instanceof String || value instanceof Boolean) return JSON.stringify(value);
  const record = value as Record<string, unknown>;
  const keys = Object.keys(record); // array-index keys come first, in numeric order
  let firstName = 0;
  while (firstName < keys.length && isArrayIndex(keys[firstName] ?? '')) firstName++;
  const names = firstName === 0 ? keys.sort(byCodeUnits) : [...keys.slice(0, firstName), ...keys.slice(firstName).sort(byCodeUnits)];
  let out = '{';
  let first = true;
  for (const k of names) {
    const text = write(record[k], k);
    if (text === undefined) continue;
    out += `${first ? '' : ','}${quote(k)}:${text}`;
    first = false;
  }
  return `${out}}`;
}

/** A short stable hash of `spec`, equal for equal specs whatever their key order. */
export function specHashOf(spec: unknown): string {
  return createHash('sha256').update(canonicalJson(spec)).digest('hex').slice(0, 16);
}

/** The instance's name on the host for `object` (its namespace and name). */
export function hostNameOf(object: HyperletObject): string {
  return hostNameFor(object.metadata.namespace, object.metadata.name);
}
