/**
 * Reads a host policy file: YAML (or JSON), one document of kind HostPolicy, validated with
 * policy-schema.ts. Every problem names the file, the field and the rule; a file with any problem
 * is refused as a whole (a half-read policy could be looser than the operator meant).
 */
import { readFile } from 'node:fs/promises';
import { Ajv, type ErrorObject } from 'ajv';
import yaml from 'js-yaml';
import { parseQuantity } from '../api/v1alpha1/quantity.js';
import { toFieldPath } from '../api/v1alpha1/validate.js';
import {
  DEFAULT_HOST_POLICY, type HostPolicy, type ObjectLimits, type Quota, type ScopeOverride, type ScopeRules,
} from './host-policy.js';
import { policySchema } from './policy-schema.js';

/** Policy files are small; a bigger one is a mistake. */
const MAX_POLICY_BYTES = 256 * 1024;

/** One problem in a policy file. */
export interface PolicyFileProblem {
  readonly file: string;
  /** Dotted field path ("defaults.paths.images[0]"), empty for the whole file. */
  readonly path: string;
  readonly rule: string;
  readonly message: string;
}

/** The line a user sees: `FILE: field: message (rule)`. */
export function policyProblemLine(p: PolicyFileProblem): string {
  return `${p.file}: ${p.path === '' ? '' : `${p.path}: `}${p.message} (${p.rule})`;
}

/** Thrown by loadPolicyFile with every problem found. */
export class PolicyFileError extends Error {
  readonly isPolicyFileError = true;
  constructor(readonly problems: readonly PolicyFileProblem[]) {
    super(`cannot use host policy: ${problems.map(policyProblemLine).join('; ')}`);
    this.name = 'PolicyFileError';
  }
}

/** Whether `err` is a policy file problem (file, field and rule named). */
export const isPolicyFileError = (err: unknown): err is PolicyFileError =>
  typeof err === 'object' && err !== null && (err as { isPolicyFileError?: unknown }).isPolicyFileError === true;

/** A parsed policy file: the policy, or every problem found in it. */
export type PolicyParse =
  | { readonly ok: true; readonly policy: HostPolicy }
  | { readonly ok: false; readonly problems: readonly PolicyFileProblem[] };

const ajv = new Ajv({ allErrors: true, strict: true, allowUnionTypes: true });
const validatePolicy = ajv.compile(policySchema);

function schemaProblems(file: string, errors: readonly ErrorObject[]): PolicyFileProblem[] {
  const problems: PolicyFileProblem[] = [];
  const anyOfPaths = new Set(errors.filter((e) => e.keyword === 'anyOf').map((e) => e.instancePath));
  for (const e of errors) {
    const path = toFieldPath(e.instancePath);
    const at = (child: string): string => (path === '' ? child : `${path}.${child}`);
    if (e.keyword === 'anyOf') {
      problems.push({ file, path, rule: 'quantity', message: 'must be a quantity such as 512Mi or 2Gi, or a byte count up to 2^53 - 1' });
    } else if (anyOfPaths.has(e.instancePath) && e.schemaPath.includes('/anyOf/')) {
      continue;
    } else if (e.keyword === 'additionalProperties') {
      const field = String((e.params as { additionalProperty: string }).additionalProperty);
      problems.push({ file, path: at(field), rule: 'unknown-field', message: 'unknown field' });
    } else if (e.keyword === 'required') {
      const field = String((e.params as { missingProperty: string }).missingProperty);
      problems.push({ file, path: at(field), rule: 'required', message: 'is required' });
    } else if (e.keyword === 'const') {
      const allowed = (e.params as { allowedValue: unknown }).allowedValue;
      problems.push({ file, path, rule: 'const', message: `must be ${JSON.stringify(allowed)}` });
    } else if (e.keyword === 'pattern') {
      problems.push({ file, path, rule: 'pattern', message: `must be ${patternWords(path)}` });
    } else {
      problems.push({ file, path, rule: e.keyword, message: e.message ?? 'is invalid' });
    }
  }
  return problems;
}

/** What a field with a pattern must hold, in words, by the kind of field at `path`. */
function patternWords(path: string): string {
  if (path.includes('paths.')) return 'an absolute directory path without "." or ".." parts or a trailing slash';
  if (path.includes('imageHosts')) return 'a host or host:port, or a glob of them (letters, digits, "_.-:[]" and "*")';
  return 'a name or a glob (letters, digits, "_.-" and "*")';
}

type RawRules = {
  paths?: { images?: string[]; rootfs?: string[]; backups?: string[] };
  templates?: string[];
  imageHosts?: string[];
  allow?: { adoption?: boolean; orphan?: boolean; privileged?: boolean };
  bridges?: string[];
  networks?: string[];
  pools?: string[];
  quota?: { objects?: number; cpu?: number; memory?: string | number; disk?: string | number };
  limits?: { cpu?: number; memory?: string | number; disk?: string | number; gracefulStopSeconds?: number };
  containerMemory?: string | number;
};
type RawPolicy = {
  host?: { idmap?: { hostId: number; size: number }; reservedMemory?: string | number };
  defaults?: RawRules;
  scopes?: (RawRules & { source?: string; namespace?: string })[];
};

/** Drops the keys whose value is undefined, so a merge never overwrites with "nothing". */
function defined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

/** Converts validated raw rules; quantities that do not parse are reported through `problem`. */
function convertRules(raw: RawRules, at: string, problem: (path: string, message: string) => void): ScopeOverride['rules'] {
  const bytes = (value: string | number | undefined, path: string): number | undefined => {
    if (value === undefined) return undefined;
    const n = parseQuantity(value);
    if (n === undefined) problem(path, 'must be a quantity whose byte count is a safe integer');
    return n;
  };
  const quota: Quota | undefined = raw.quota === undefined ? undefined : defined({
    objects: raw.quota.objects, cpu: raw.quota.cpu,
    memoryBytes: bytes(raw.quota.memory, `${at}.quota.memory`), diskBytes: bytes(raw.quota.disk, `${at}.quota.disk`),
  });
  const limits: Partial<ObjectLimits> | undefined = raw.limits === undefined ? undefined : defined({
    cpu: raw.limits.cpu, gracefulStopSeconds: raw.limits.gracefulStopSeconds,
    memoryBytes: bytes(raw.limits.memory, `${at}.limits.memory`), diskBytes: bytes(raw.limits.disk, `${at}.limits.disk`),
  });
  const rules: Partial<ScopeRules> = defined({
    imageDirs: raw.paths?.images, rootfsDirs: raw.paths?.rootfs, backupDirs: raw.paths?.backups, templates: raw.templates, imageHosts: raw.imageHosts,
    adoption: raw.allow?.adoption, orphan: raw.allow?.orphan, privileged: raw.allow?.privileged,
    bridges: raw.bridges, networks: raw.networks, pools: raw.pools,
    containerMemoryBytes: bytes(raw.containerMemory, `${at}.containerMemory`),
  });
  return defined({ ...rules, quota, limits });
}

/** Parses and validates policy text; `file` names it in problems. Never throws. */
export function parsePolicy(file: string, text: string): PolicyParse {
  let docs: unknown[];
  try {
    docs = yaml.loadAll(text, undefined, { filename: file, schema: yaml.CORE_SCHEMA });
  } catch (err) {
    const e = err as { reason?: string; mark?: { line: number; column: number }; message?: string };
    const at = e.mark === undefined ? '' : ` at line ${e.mark.line + 1}, column ${e.mark.column + 1}`;
    const message = `cannot parse YAML${at}: ${e.reason ?? e.message ?? String(err)}`;
    return { ok: false, problems: [{ file, path: '', rule: 'yaml', message }] };
  }
  const present = docs.filter((d) => d !== null && d !== undefined);
  if (present.length !== 1) {
    const message = `must hold exactly one HostPolicy document (holds ${present.length})`;
    return { ok: false, problems: [{ file, path: '', rule: 'one-document', message }] };
  }
  const doc = present[0];
  if (typeof doc !== 'object' || Array.isArray(doc)) {
    return { ok: false, problems: [{ file, path: '', rule: 'mapping', message: 'must be a mapping (an object)' }] };
  }
  if (!validatePolicy(doc)) return { ok: false, problems: schemaProblems(file, validatePolicy.errors ?? []) };
  const raw = doc as RawPolicy;
  const problems: PolicyFileProblem[] = [];
  const problem = (path: string, message: string): void => { problems.push({ file, path, rule: 'safe-integer', message }); };

  const idmap = raw.host?.idmap ?? DEFAULT_HOST_POLICY.host.idmap;
  if (idmap.hostId + idmap.size > 4_294_967_295) {
    const end = idmap.hostId + idmap.size;
    problems.push({ file, path: 'host.idmap', rule: 'range', message: `hostId + size must be at most 4294967295 (is ${end})` });
  }
  const reserved = raw.host?.reservedMemory === undefined ? 0 : parseQuantity(raw.host.reservedMemory);
  if (reserved === undefined) problem('host.reservedMemory', 'must be a quantity whose byte count is a safe integer');

  const base = convertRules(raw.defaults ?? {}, 'defaults', problem);
  const scopes: ScopeOverride[] = (raw.scopes ?? []).map((s, i) => {
    const { source, namespace, ...rules } = s;
    return { source: source ?? '*', namespace: namespace ?? '*', rules: convertRules(rules, `scopes[${i}]`, problem) };
  });
  if (problems.length > 0) return { ok: false, problems };
  const { quota, limits, ...rest } = base;
  const defaults: ScopeRules = {
    ...DEFAULT_HOST_POLICY.defaults,
    ...rest,
    quota: { ...DEFAULT_HOST_POLICY.defaults.quota, ...quota },
    limits: { ...DEFAULT_HOST_POLICY.defaults.limits, ...limits },
  };
  return { ok: true, policy: { host: { idmap, reservedMemoryBytes: reserved ?? 0 }, defaults, scopes, file } };
}

/** Reads and parses the policy file at `path`; throws PolicyFileError naming every problem. */
export async function loadPolicyFile(path: string): Promise<HostPolicy> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (err) {
    throw new PolicyFileError([{ file: path, path: '', rule: 'readable', message: `cannot read: ${(err as Error).message}` }]);
  }
  if (bytes.length > MAX_POLICY_BYTES) {
    const message = `is ${bytes.length} bytes; a policy file holds at most ${MAX_POLICY_BYTES}`;
    throw new PolicyFileError([{ file: path, path: '', rule: 'size', message }]);
  }
  const parsed = parsePolicy(path, bytes.toString('utf8'));
  if (!parsed.ok) throw new PolicyFileError(parsed.problems);
  return parsed.policy;
}
