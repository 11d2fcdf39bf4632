/**
 * Validates one decoded document against its kind's JSON Schema (ajv) plus the cross-field
 * rules a schema cannot say plainly. Defaults are applied to a copy; the input is never changed.
 * Each problem names the field path and the rule it broke.
 */
import { templateArgProblem } from './template-args.js';
import { addressOfCidr, gatewayProblem, ipv4CidrProblem } from './ipv4-address.js';
import { parseSchedule } from './snapshot-schedule.js';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { API_VERSION, type Kind, isKind } from './group.js';
import { containerSchema } from './container-schema.js';
import { MAX_CLOUD_INIT_BYTES, virtualMachineSchema } from './virtual-machine-schema.js';
import { cloudInitPayloadBytes } from './cloud-init.js';
import { QUANTITY_PATTERN, parseQuantity, formatQuantity } from './quantity.js';
import type { ContainerSpec, DependencyRef, HyperletObject, VirtualMachineSpec } from './types.js';

/** One broken rule: `path` is a dotted field path ("spec.resources.cpu", "spec.disks[1].size"). */
export interface ValidationIssue {
  readonly path: string;
  readonly rule: string;
  readonly message: string;
}

/** A validated object, or every issue found (each naming its field path and rule). */
export type ValidationResult =
  | { readonly ok: true; readonly object: HyperletObject }
  | { readonly ok: false; readonly issues: readonly ValidationIssue[] };

/** The object schema of each kind, as ajv compiles it. */
export const SCHEMAS: Readonly<Record<Kind, Record<string, unknown>>> = {
  Container: containerSchema,
  VirtualMachine: virtualMachineSchema,
};

interface QuantityRange { minimum: string; maximum: string }

const QUANTITY_RE = new RegExp(QUANTITY_PATTERN);

function makeAjv(): Ajv {
  const ajv = new Ajv({ allErrors: true, useDefaults: true, strict: true, strictTypes: false, allowUnionTypes: true });
  // Structural-schema marker for the CRDs; ajv's anyOf already checks the two shapes.
  ajv.addKeyword({ keyword: 'x-kubernetes-int-or-string', schemaType: 'boolean' });
  ajv.addKeyword({
    keyword: 'x-quantity-range',
    schemaType: 'object',
    errors: true,
    validate: function checkRange(this: unknown, range: QuantityRange, data: unknown): boolean {
      if (typeof data !== 'string' && typeof data !== 'number') return true; // the type check reports it
      const bytes = parseQuantity(data);
      if (bytes === undefined) {
        // A number or a well-formed string whose byte count is past 2^53 - 1; other shapes the anyOf check reports.
        if (typeof data === 'number' || !QUANTITY_RE.test(data)) return true;
        (checkRange as unknown as { errors: Partial<ErrorObject>[] }).errors = [unsafeError(data)];
        return false;
      }
      const min = parseQuantity(range.minimum) ?? 0;
      const max = parseQuantity(range.maximum) ?? Number.MAX_SAFE_INTEGER;
      if (bytes >= min && bytes <= max) return true;
      (checkRange as unknown as { errors: Partial<ErrorObject>[] }).errors = [{
        keyword: 'x-quantity-range',
        message: `must be between ${range.minimum} and ${range.maximum} (is ${formatQuantity(bytes)})`,
        params: { range },
      }];
      return false;
    },
  });
  return ajv;
}

const UNSAFE_MESSAGE = `must be a whole number of bytes up to ${Number.MAX_SAFE_INTEGER} (2^53 - 1, the largest safe integer)`;

/** The error of a byte count that is not a safe integer (`1e30`, `9999999999Ei`). */
function unsafeError(data: string): Partial<ErrorObject> {
  return { keyword: 'x-quantity-range', message: `${UNSAFE_MESSAGE}; is ${data}`, params: { rule: 'safe-integer' } };
}

// Compiled on first use, per kind: compiling both schemas was a third of hyperlet's start-up CPU.
let ajv: Ajv | undefined;
const validators: Partial<Record<Kind, ValidateFunction>> = {};
function validatorOf(kind: Kind): ValidateFunction {
  ajv ??= makeAjv();
  return (validators[kind] ??= ajv.compile(SCHEMAS[kind]));
}

/** "/spec/disks/1/size" → "spec.disks[1].size" */
export function toFieldPath(pointer: string): string {
  let out = '';
  for (const raw of pointer.split('/').slice(1)) {
    const part = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    out += /^[0-9]+$/.test(part) ? `[${part}]` : out === '' ? part : `.${part}`;
  }
  return out;
}

function join(path: string, child: string): string {
  return path === '' ? child : `${path}.${child}`;
}

function toIssues(errors: readonly ErrorObject[]): ValidationIssue[] {
  // A quantity is `anyOf [integer, pattern string]`: report one plain line, not each branch.
  const anyOfPaths = new Set(errors.filter((e) => e.keyword === 'anyOf').map((e) => e.instancePath));
  const issues: ValidationIssue[] = [];
  for (const e of errors) {
    const path = toFieldPath(e.instancePath);
    if (e.keyword === 'anyOf') {
      const unsafe = errors.some((b) => b.instancePath === e.instancePath && b.keyword === 'maximum' && b.schemaPath.includes('/anyOf/'));
      issues.push(unsafe
        ? { path, rule: 'safe-integer', message: UNSAFE_MESSAGE }
        : { path, rule: 'quantity', message: 'must be a quantity such as 512Mi or 2Gi, or a byte count' });
    } else if (anyOfPaths.has(e.instancePath) && e.schemaPath.includes('/anyOf/')) {
      continue;
    } else if (e.keyword === 'additionalProperties') {
      const field = String((e.params as { additionalProperty: string }).additionalProperty);
      issues.push({ path: join(path, field), rule: 'unknown-field', message: 'unknown field' });
    } else if (e.keyword === 'required') {
      const field = String((e.params as { missingProperty: string }).missingProperty);
      issues.push({ path: join(path, field), rule: 'required', message: 'is required' });
    } else if (e.keyword === 'enum') {
      const allowed = (e.params as { allowedValues: unknown[] }).allowedValues.map(String).join(', ');
      issues.push({ path, rule: 'enum', message: `must be one of: ${allowed}` });
    } else if (e.keyword === 'pattern' && e.propertyName === undefined) {
      issues.push({ path, rule: 'pattern', message: `${describePattern(String((e.params as { pattern: string }).pattern))}` });
    } else if (e.propertyName !== undefined) {
      issues.push({ path: join(path, e.propertyName), rule: `key-${e.keyword}`, message: `key ${JSON.stringify(e.propertyName)} ${e.message ?? 'is invalid'}` });
    } else {
      const rule = (e.params as { rule?: unknown } | undefined)?.rule;
      issues.push({ path, rule: typeof rule === 'string' ? rule : e.keyword, message: e.message ?? 'is invalid' });
    }
  }
  return issues;
}

const PATTERN_WORDS: Readonly<Record<string, string>> = {
  '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$': 'must be a DNS-1123 label: lowercase letters, digits and "-", starting and ending with a letter or digit',
  '^[^\\u0000-\\u0008\\u000a-\\u001f\\u007f]*$': 'must not contain new lines, NUL or other control characters',
  '^/[^\\u0000-\\u001f\\u007f]*$': 'must be an absolute path without control characters',
  '^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$': 'must be a MAC address such as 52:54:00:12:34:56',
};

function describePattern(pattern: string): string {
  return PATTERN_WORDS[pattern] ?? `must match ${pattern}`;
}

/** dependsOn: no object depends on itself, and each target is listed once. */
function dependencyIssues(kind: Kind, metadata: { name?: unknown; namespace?: unknown }, deps: readonly DependencyRef[] | undefined): ValidationIssue[] {
  const issues: ValidationIssue[] = [];
  const seen = new Set<string>();
  deps?.forEach((dep, i) => {
    const id = `${dep.kind}/${dep.namespace ?? String(metadata.namespace)}/${dep.name}`;
    if (dep.kind === kind && dep.name === metadata.name && (dep.namespace ?? metadata.namespace) === metadata.namespace) {
      issues.push({ path: `spec.dependsOn[${i}]`, rule: 'self-reference', message: 'an object cannot depend on itself' });
    } else if (seen.has(id)) {
      issues.push({ path: `spec.dependsOn[${i}]`, rule: 'unique', message: `${dep.kind}/${dep.name} is listed twice` });
    }
    seen.add(id);
  });
  return issues;
}

function crossFieldIssues(kind: Kind, spec: Record<string, unknown>): ValidationIssue[] {
  const issues: ValidationIssue[] = [];
  for (const field of ['snapshots', 'backups'] as const) {
    const policy = spec[field] as { schedule?: unknown } | undefined;
    if (typeof policy?.schedule !== 'string') continue;
    try {
      parseSchedule(policy.schedule);
    } catch (err) {
      issues.push({ path: `spec.${field}.schedule`, rule: 'schedule', message: (err as Error).message });
    }
  }
  if (kind === 'Container') {
    const s = spec as unknown as ContainerSpec;
    if ([s.template, s.rootfs, s.image].filter((v) => v !== undefined).length !== 1) {
      issues.push({ path: 'spec', rule: 'one-of', message: 'exactly one of template, rootfs and image must be set' });
    }
    if (s.templateArgs !== undefined && s.template === undefined) {
      issues.push({ path: 'spec.templateArgs', rule: 'needs-template', message: 'templateArgs is only for a template' });
    }
    s.templateArgs?.forEach((arg, i) => {
      const problem = templateArgProblem(arg);
      if (problem !== undefined) issues.push({ path: `spec.templateArgs[${i}]`, rule: 'template-arg', message: problem });
    });
    for (const name of Object.keys(s.environmentFrom ?? {})) {
      if (Object.hasOwn(s.environment ?? {}, name)) {
        issues.push({ path: `spec.environmentFrom.${name}`, rule: 'unique', message: `${name} is also set in spec.environment` });
      }
    }
    const addresses = new Map<string, number>();
    s.network?.forEach((n, i) => {
      if (n.type === 'none' && (n.bridge !== undefined || n.hwaddr !== undefined || n.ipv4 !== undefined || n.gateway !== undefined)) {
        issues.push({ path: `spec.network[${i}]`, rule: 'none-has-no-link', message: 'type none takes no bridge, hwaddr, ipv4 or gateway' });
        return;
      }
      const ipv4Issue = n.ipv4 === undefined ? undefined : ipv4CidrProblem(n.ipv4);
      if (n.ipv4 !== undefined && ipv4Issue !== undefined) issues.push({ path: `spec.network[${i}].ipv4`, rule: 'ipv4-cidr', message: ipv4Issue });
      if (n.ipv4 !== undefined && ipv4Issue === undefined) {
        const address = addressOfCidr(n.ipv4);
        const first = addresses.get(address);
        if (first !== undefined) issues.push({ path: `spec.network[${i}].ipv4`, rule: 'unique', message: `${address} is also the address of spec.network[${first}]` });
        else addresses.set(address, i);
      }
      if (n.gateway !== undefined) {
        if (n.ipv4 === undefined) issues.push({ path: `spec.network[${i}].gateway`, rule: 'needs-ipv4', message: 'a gateway needs a static ipv4 on the same NIC' });
        else {
          const problem = gatewayProblem(n.gateway, n.ipv4);
          if (problem !== undefined) issues.push({ path: `spec.network[${i}].gateway`, rule: 'gateway', message: problem });
        }
      }
    });
    const gateways = (s.network ?? []).map((n, i) => (n.gateway === undefined ? -1 : i)).filter((i) => i >= 0);
    if (gateways.length > 1) {
      issues.push({ path: `spec.network[${gateways[1] ?? 0}].gateway`, rule: 'one-default-route', message: `only one NIC may set a gateway (spec.network[${gateways[0] ?? 0}] does)` });
    }
    return issues;
  }
  const s = spec as unknown as VirtualMachineSpec;
  const diskNames = new Set<string>();
  s.disks?.forEach((d, i) => {
    if (diskNames.has(d.name)) issues.push({ path: `spec.disks[${i}].name`, rule: 'unique', message: `duplicate disk name ${JSON.stringify(d.name)}` });
    diskNames.add(d.name);
    if (d.size === undefined && d.image === undefined) {
      issues.push({ path: `spec.disks[${i}]`, rule: 'size-or-image', message: 'needs a size, an image, or both' });
    }
    if (d.sha256 !== undefined && (d.image === undefined || d.image.startsWith('/'))) {
      issues.push({ path: `spec.disks[${i}].sha256`, rule: 'url-only', message: 'sha256 is checked on a downloaded image: it needs an image URL' });
    }
  });
  const ci = s.cloudInit;
  if (ci !== undefined) {
    if (ci.userData !== undefined && ci.userDataFrom !== undefined) {
      issues.push({ path: 'spec.cloudInit', rule: 'one-of', message: 'at most one of userData and userDataFrom may be set' });
    }
    const payloadBytes = cloudInitPayloadBytes(ci);
    if (payloadBytes > MAX_CLOUD_INIT_BYTES) {
      issues.push({
        path: 'spec.cloudInit', rule: 'max-size',
        message: `the cloud-init payload is ${payloadBytes} bytes; at most ${MAX_CLOUD_INIT_BYTES} are allowed (user-data, network-config, meta-data and keys together)`,
      });
    }
  }
  if (s.boot?.firmware !== undefined && s.boot.kernel !== undefined) {
    issues.push({ path: 'spec.boot.firmware', rule: 'disk-only', message: 'firmware applies to booting from a disk, not to direct kernel boot' });
  }
  if (s.boot !== undefined) {
    const direct = s.boot.kernel !== undefined;
    if (direct === (s.boot.disk !== undefined)) {
      issues.push({ path: 'spec.boot', rule: 'one-of', message: 'exactly one of kernel and disk must be set' });
    }
    if (!direct && (s.boot.initrd !== undefined || s.boot.cmdline !== undefined)) {
      issues.push({ path: 'spec.boot', rule: 'kernel-only', message: 'initrd and cmdline need kernel' });
    }
    if (s.boot.disk !== undefined && !diskNames.has(s.boot.disk)) {
      issues.push({ path: 'spec.boot.disk', rule: 'reference', message: `no disk named ${JSON.stringify(s.boot.disk)} in spec.disks` });
    }
  }
  s.networks?.forEach((n, i) => {
    if ((n.network === undefined) === (n.bridge === undefined)) {
      issues.push({ path: `spec.networks[${i}]`, rule: 'one-of', message: 'exactly one of network and bridge must be set' });
    }
  });
  const r = s.resources;
  if (r.maxCpu !== undefined && r.maxCpu < r.cpu) {
    issues.push({ path: 'spec.resources.maxCpu', rule: 'minimum', message: 'must be at least resources.cpu' });
  }
  if (r.maxMemory !== undefined && (parseQuantity(r.maxMemory) ?? 0) < (parseQuantity(r.memory) ?? 0)) {
    issues.push({ path: 'spec.resources.maxMemory', rule: 'minimum', message: 'must be at least resources.memory' });
  }
  return issues;
}

/**
 * Validates a decoded document. Never throws: every problem comes back as an issue, and a valid
 * document comes back with defaults applied (metadata.namespace, spec.state, …).
 */
export function validateObject(doc: unknown): ValidationResult {
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) {
    return { ok: false, issues: [{ path: '', rule: 'mapping', message: 'document must be a mapping (an object)' }] };
  }
  const raw = doc as Record<string, unknown>;
  if (raw.apiVersion !== API_VERSION) {
    return { ok: false, issues: [{ path: 'apiVersion', rule: 'api-version', message: `must be ${API_VERSION} (is ${JSON.stringify(raw.apiVersion ?? null)})` }] };
  }
  if (!isKind(raw.kind)) {
    return { ok: false, issues: [{ path: 'kind', rule: 'kind', message: `must be Container or VirtualMachine (is ${JSON.stringify(raw.kind ?? null)})` }] };
  }
  const copy = structuredClone(raw);
  copy.metadata ??= {};
  copy.spec ??= {};
  const validate = validatorOf(raw.kind);
  const issues = validate(copy) ? [] : toIssues(validate.errors ?? []);
  if (issues.length === 0) issues.push(...crossFieldIssues(raw.kind, copy.spec as Record<string, unknown>));
  if (issues.length === 0) issues.push(...dependencyIssues(raw.kind, copy.metadata as Record<string, unknown>, (copy.spec as { dependsOn?: DependencyRef[] }).dependsOn));
  return issues.length === 0 ? { ok: true, object: copy as unknown as HyperletObject } : { ok: false, issues };
}
