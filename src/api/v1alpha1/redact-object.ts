/**
 * The redaction rule of shared/redact.ts applied to objects: environment keys are shown, values
 * become REDACTED; spec.environmentFrom (where values are read from) is shown as written. Every place that shows an
 * object or a flattened field (HTTP read API, `hyperlet get/describe/diff`) goes through here.
 */
import { REDACTED } from '../../shared/redact.js';
import type { ContainerSpec, HyperletObject, VirtualMachineSpec } from './types.js';

/** `env` with every value replaced by REDACTED. */
export function redactEnvironment(env: Readonly<Record<string, unknown>>): Record<string, string> {
  return Object.fromEntries(Object.keys(env).map((k) => [k, REDACTED]));
}

/** A copy of `spec` (of any kind) that is safe to show: environment values and cloud-init user-data become REDACTED. */
export function redactSpec(spec: unknown): unknown {
  if (spec === null || typeof spec !== 'object') return spec;
  const env = (spec as ContainerSpec).environment;
  const cloudInit = (spec as VirtualMachineSpec).cloudInit;
  return {
    ...spec,
    ...(env === undefined ? {} : { environment: redactEnvironment(env) }),
    ...(cloudInit?.userData === undefined ? {} : { cloudInit: { ...cloudInit, userData: REDACTED } }),
  };
}

/** A copy of `object` that is safe to show. */
export function redactObject<O extends Pick<HyperletObject, 'spec'>>(object: O): O {
  return { ...object, spec: redactSpec(object.spec) as O['spec'] };
}

type FieldValue = string | number | boolean | null | undefined;

/** A flattened field value (api/v1alpha1/fields.ts) that is safe to show. */
export function redactFieldValue(path: string, value: FieldValue): FieldValue {
  if (path !== 'environment' || typeof value !== 'string') return value;
  try {
    return JSON.stringify(redactEnvironment(JSON.parse(value) as Record<string, unknown>));
  } catch {
    return REDACTED;
  }
}

/**
 * What changed between two flattened environments, by key only: "added A; changed B; removed C".
 */
export function describeEnvironmentChange(from: FieldValue, to: FieldValue): string {
  const parse = (v: FieldValue): Record<string, unknown> => {
    if (typeof v !== 'string') return {};
    try {
      const o = JSON.parse(v) as unknown;
      return o !== null && typeof o === 'object' ? (o as Record<string, unknown>) : {};
    } catch {
      return {};
    }
  };
  const a = parse(from);
  const b = parse(to);
  const added = Object.keys(b).filter((k) => !(k in a)).sort();
  const removed = Object.keys(a).filter((k) => !(k in b)).sort();
  const changed = Object.keys(b).filter((k) => k in a && JSON.stringify(a[k]) !== JSON.stringify(b[k])).sort();
  const parts = [
    ...(added.length > 0 ? [`added ${added.join(', ')}`] : []),
    ...(changed.length > 0 ? [`changed ${changed.join(', ')}`] : []),
    ...(removed.length > 0 ? [`removed ${removed.join(', ')}`] : []),
  ];
  return parts.length === 0 ? 'unchanged' : parts.join('; ');
}
