/**
 * Environment references (spec.environmentFrom, Kubernetes' `valueFrom`): which variables of a
 * spec are read at reconcile time, and the object with them turned into plain environment. Reading the values is the sources' job (a Secret in kube mode, a
 * file under the secrets directory for dir and git); this file only knows the shapes.
 */
import type { ContainerSpec, EnvironmentSource, HyperletObject, VirtualMachineSpec } from './types.js';
import { MAX_CLOUD_INIT_BYTES } from './virtual-machine-schema.js';

/** One entry of spec.environmentFrom, or another value read the same way (a VM's cloudInit.userDataFrom). */
export interface EnvironmentReference {
  /** The variable name (the key in spec.environmentFrom), or USER_DATA_REFERENCE. */
  readonly name: string;
  readonly source: EnvironmentSource;
  /** The field errors name (default spec.environmentFrom.NAME). */
  readonly field?: string;
  /** A whole text document (new lines kept, up to MAX_CLOUD_INIT_BYTES) rather than one line. */
  readonly document?: boolean;
}

/** The name of the reference a VirtualMachine's spec.cloudInit.userDataFrom becomes. */
export const USER_DATA_REFERENCE = 'cloudInit.userData';

/** The field a reference's errors name. */
export function referenceField(ref: EnvironmentReference): string {
  return ref.field ?? `spec.environmentFrom.${ref.name}`;
}

/** The entries of `object`'s spec.environmentFrom, in name order (a VM: its cloudInit.userDataFrom); none for others. */
export function environmentReferences(object: HyperletObject): EnvironmentReference[] {
  if (object.kind === 'VirtualMachine') {
    const from = (object.spec as VirtualMachineSpec).cloudInit?.userDataFrom;
    return from === undefined ? [] : [{ name: USER_DATA_REFERENCE, source: from, field: 'spec.cloudInit.userDataFrom', document: true }];
  }
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
  if (object.kind === 'VirtualMachine') {
    const vmSpec = object.spec as VirtualMachineSpec;
    const userData = values[USER_DATA_REFERENCE];
    if (vmSpec.cloudInit?.userDataFrom === undefined || userData === undefined) return object;
    const { userDataFrom: _ref, ...cloudInit } = vmSpec.cloudInit;
    const filledVm: HyperletObject<'VirtualMachine'> = { ...(object as HyperletObject<'VirtualMachine'>), spec: { ...vmSpec, cloudInit: { ...cloudInit, userData } } };
    return filledVm;
  }
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
 * Checks a value read for `field` and returns it ready for the container (a `document`, such as
 * cloud-init user-data, is only held to MAX_CLOUD_INIT_BYTES and kept as it is): one trailing new line
 * (as `echo` writes, or a Secret made from a file) is dropped; any other control character but
 * tab is refused, since the value must fit on one line of the LXC config.
 */
export function checkedEnvironmentValue(field: string, raw: string, from: string, document = false): string {
  if (document) {
    if (Buffer.byteLength(raw, 'utf8') > MAX_CLOUD_INIT_BYTES) {
      throw new EnvironmentError('PolicyDenied', `${field}: ${from} holds more than ${MAX_CLOUD_INIT_BYTES} bytes`);
    }
    return raw;
  }
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
