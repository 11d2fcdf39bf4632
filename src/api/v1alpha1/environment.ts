/**
 * Environment references (spec.environmentFrom, Kubernetes' `valueFrom`): which variables of a
 * spec are read at reconcile time, and the object with them turned into plain environment. Reading the values is the sources' job (a Secret in kube mode, a
 * file under the secrets directory for dir and git); this file only knows the shapes.
 */
import type { ContainerSpec, EnvironmentSource, HyperletObject } from './types.js';

/** One entry of spec.environmentFrom. */
export interface EnvironmentReference {
  /** The variable name (the key in spec.environmentFrom). */
  readonly name: string;
  readonly source: EnvironmentSource;
}

/** The entries of `object`'s spec.environmentFrom, in name order; none for kinds without one. */
export function environmentReferences(object: HyperletObject): EnvironmentReference[] {
  if (object.kind !== 'Container') return [];
  const from = (object.spec as ContainerSpec).environmentFrom ?? {};
  return Object.keys(from).sort().flatMap((name) => {
    const source = from[name];
    return source === undefined ? [] : [{ name, source }];
  });
}

/**
 * `object` with `values` (one per spec.environmentFrom entry) moved into spec.environment and
 * environmentFrom gone: what the instance gets. The input is not changed.
 */
export function withEnvironmentValues(object: HyperletObject, values: Readonly<Record<string, string>>): HyperletObject {
  if (object.kind !== 'Container') return object;
  const { environmentFrom: _references, ...spec } = object.spec as ContainerSpec;
  if (_references === undefined) return object;
  const filled: HyperletObject<'Container'> = { ...(object as HyperletObject<'Container'>), spec: { ...spec, environment: { ...(spec.environment ?? {}), ...values } } };
  return filled;
}

/** Why a reference could not be resolved; each is a Ready=False reason. */
export type EnvironmentErrorReason = 'SecretNotFound' | 'SecretUnavailable' | 'PolicyDenied';

/**
 * A reference that cannot be resolved now. The message names the field (spec.environmentFrom.NAME)
 * and the rule, never a value. Retrying may help (the Secret or file may appear).
 */
export class EnvironmentError extends Error {
  readonly isEnvironmentError = true;
  constructor(readonly reason: EnvironmentErrorReason, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'EnvironmentError';
  }
}

/** Whether `err` is an EnvironmentError (by brand, across module copies). */
export function isEnvironmentError(err: unknown): err is EnvironmentError {
  return typeof err === 'object' && err !== null && (err as { isEnvironmentError?: unknown }).isEnvironmentError === true;
}

/** Longest value a reference may yield: the schema's limit for a written value. */
export const MAX_ENVIRONMENT_VALUE_BYTES = 4096;

/**
 * Checks a value read for `field` and returns it ready for the container: one trailing new line
 * (as `echo` writes, or a Secret made from a file) is dropped; any other control character but
 * tab is refused, since the value must fit on one line of the LXC config.
 */
export function checkedEnvironmentValue(field: string, raw: string, from: string): string {
  const value = raw.endsWith('\r\n') ? raw.slice(0, -2) : raw.endsWith('\n') ? raw.slice(0, -1) : raw;
  if (Buffer.byteLength(value, 'utf8') > MAX_ENVIRONMENT_VALUE_BYTES) {
    throw new EnvironmentError('PolicyDenied', `${field}: ${from} holds more than ${MAX_ENVIRONMENT_VALUE_BYTES} bytes`);
  }
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u0008\u000a-\u001f\u007f]/.test(value)) {
    throw new EnvironmentError('PolicyDenied', `${field}: ${from} holds a new line or another control character (only one trailing new line is dropped)`);
  }
  return value;
}
