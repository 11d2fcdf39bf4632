/**
 * Reads manifest files (multi-document YAML, or JSON) into validated objects and problems.
 * Never throws for bad input and never hangs: oversized, binary, broken, aliased-to-death or
 * invalid input each becomes a SourceProblem line `FILE[#DOC] Kind/name: field.path: message`,
 * and one bad document never hides the good ones.
 */
import { readFile, readdir, stat } from 'node:fs/promises';
import { join, relative } from 'node:path';
import yaml from 'js-yaml';
import { isKind } from '../api/v1alpha1/group.js';
import type { HyperletObject } from '../api/v1alpha1/types.js';
import { validateObject } from '../api/v1alpha1/validate.js';
import type { SourceProblem } from '../store/source-problem.js';

/** Files larger than this are refused unread: manifests are small, and a huge file is a mistake. */
export const MAX_FILE_BYTES = 1024 * 1024;
/** A document expanding to more nodes than this is refused (YAML alias bombs expand exponentially). */
export const MAX_DOCUMENT_NODES = 100_000;
const MANIFEST_EXTENSIONS = /\.(ya?ml|json)$/i;

/** One valid object read from a manifest, with where it was declared. */
export interface LoadedObject {
  readonly file: string;
  /** 1-based index of the document in its file. */
  readonly document: number;
  readonly object: HyperletObject;
}

/** What one manifest file gave: its valid objects and its problems. */
export interface FileLoad {
  readonly file: string;
  readonly objects: readonly LoadedObject[];
  readonly problems: readonly SourceProblem[];
  /** The whole file could not be used (unreadable, too big, binary, broken YAML). */
  readonly unusable: boolean;
}

/** Formats the one line a user sees for a problem. */
export function problemLine(p: Omit<SourceProblem, 'line'>): string {
  const where = `${p.file ?? '-'}${p.document === undefined ? '' : `#${p.document}`}`;
  const what = p.kind !== undefined && p.name !== undefined ? `${p.kind}/${p.namespace !== undefined && p.namespace !== 'default' ? `${p.namespace}/` : ''}${p.name}` : '-';
  return `${where} ${what}: ${p.path === undefined || p.path === '' ? '' : `${p.path}: `}${p.message}`;
}

/** A source problem with its one-line summary filled in. */
export function makeProblem(p: Omit<SourceProblem, 'line'> & { message: string }): SourceProblem {
  return { ...p, line: problemLine(p) };
}

/** Counts nodes of a decoded document, stopping at `limit` (so an alias bomb costs little). */
function exceedsNodes(value: unknown, limit: number): boolean {
  let count = 0;
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const v = stack.pop();
    if (++count > limit) return true;
    if (v !== null && typeof v === 'object') stack.push(...(Array.isArray(v) ? (v as unknown[]) : Object.values(v as Record<string, unknown>)));
  }
  return false;
}

function looksBinary(bytes: Buffer): boolean {
  if (bytes.includes(0)) return true;
  try {
    new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    return false;
  } catch {
    return true;
  }
}

/** Parses and validates manifest text; `file` is only used in the problems. */
export function loadText(file: string, text: string): FileLoad {
  const problems: SourceProblem[] = [];
  const objects: LoadedObject[] = [];
  let docs: unknown[];
  try {
    docs = yaml.loadAll(text, undefined, { filename: file, schema: yaml.CORE_SCHEMA });
  } catch (err) {
    const e = err as { reason?: string; mark?: { line: number; column: number }; message?: string };
    const at = e.mark === undefined ? '' : ` at line ${e.mark.line + 1}, column ${e.mark.column + 1}`;
    problems.push(makeProblem({ file, rule: 'yaml', message: `cannot parse YAML${at}: ${e.reason ?? e.message ?? String(err)}` }));
    return { file, objects, problems, unusable: true };
  }
  const numbered = docs.length > 1;
  docs.forEach((doc, index) => {
    if (doc === null || doc === undefined) return; // an empty document between '---' lines
    const document = index + 1;
    const at = { file, ...(numbered ? { document } : {}) };
    if (exceedsNodes(doc, MAX_DOCUMENT_NODES)) {
      problems.push(makeProblem({ ...at, rule: 'size', message: `document expands to more than ${MAX_DOCUMENT_NODES} nodes (YAML aliases?)` }));
      return;
    }
    const raw = typeof doc === 'object' && !Array.isArray(doc) ? (doc as Record<string, unknown>) : undefined;
    const meta = raw?.metadata !== null && typeof raw?.metadata === 'object' ? (raw.metadata as Record<string, unknown>) : undefined;
    const ident = {
      ...(isKind(raw?.kind) ? { kind: raw.kind } : {}),
      ...(typeof meta?.name === 'string' ? { name: meta.name } : {}),
      ...(typeof meta?.namespace === 'string' ? { namespace: meta.namespace } : {}),
    };
    const result = validateObject(doc);
    if (!result.ok) {
      for (const issue of result.issues) problems.push(makeProblem({ ...at, ...ident, path: issue.path, rule: issue.rule, message: issue.message }));
      return;
    }
    objects.push({ file, document, object: result.object });
  });
  return { file, objects, problems, unusable: false };
}

/** Reads and loads one file, refusing oversized and binary files before parsing them. */
export async function loadFile(file: string, displayName = file): Promise<FileLoad> {
  const refuse = (rule: string, message: string): FileLoad =>
    ({ file: displayName, objects: [], problems: [makeProblem({ file: displayName, rule, message })], unusable: true });
  let bytes: Buffer;
  try {
    const info = await stat(file);
    if (!info.isFile()) return refuse('file', 'is not a regular file');
    if (info.size > MAX_FILE_BYTES) return refuse('size', `file is ${info.size} bytes; the limit is ${MAX_FILE_BYTES} (1 MiB)`);
    bytes = await readFile(file);
  } catch (err) {
    return refuse('read', `cannot read file: ${(err as Error).message}`);
  }
  return loadBytes(displayName, bytes);
}

/** Loads a file's bytes read elsewhere (a git blob), refusing oversized and binary content first. */
export function loadBytes(file: string, bytes: Buffer): FileLoad {
  const refuse = (rule: string, message: string): FileLoad =>
    ({ file, objects: [], problems: [makeProblem({ file, rule, message })], unusable: true });
  if (bytes.length > MAX_FILE_BYTES) return refuse('size', `file is ${bytes.length} bytes; the limit is ${MAX_FILE_BYTES} (1 MiB)`);
  if (looksBinary(bytes)) return refuse('binary', 'file is binary (NUL bytes or invalid UTF-8), not YAML or JSON');
  return loadText(file, bytes.toString('utf8'));
}

/** Whether a path (relative, '/'-separated) names a manifest: a YAML or JSON file, no dot-entry on the way. */
export function isManifestPath(path: string): boolean {
  return MANIFEST_EXTENSIONS.test(path) && !path.split('/').some((part) => part.startsWith('.'));
}

/** Lists manifest files under `path` (a file is returned as is), recursively, sorted, skipping dot-entries. */
export async function listManifestFiles(path: string): Promise<string[]> {
  const info = await stat(path);
  if (!info.isDirectory()) return [path];
  const out: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    const entries = await readdir(dir, { withFileTypes: true });
    for (const e of entries.sort((a, b) => (a.name < b.name ? -1 : 1))) {
      if (e.name.startsWith('.')) continue;
      const full = join(dir, e.name);
      if (e.isDirectory()) await walk(full);
      else if (e.isFile() && MANIFEST_EXTENSIONS.test(e.name)) out.push(full);
    }
  };
  await walk(path);
  return out;
}

/** Key of an object for duplicate detection: kind/namespace/name. */
export function identityOf(o: HyperletObject): string {
  return `${o.kind}/${o.metadata.namespace}/${o.metadata.name}`;
}

/**
 * Loads every manifest under `paths`. Duplicate kind/namespace/name across documents: the first
 * (in path order) wins and each later one is a problem.
 */
export async function loadPaths(paths: readonly string[], baseDir?: string): Promise<{ objects: LoadedObject[]; problems: SourceProblem[] }> {
  const objects: LoadedObject[] = [];
  const problems: SourceProblem[] = [];
  for (const p of paths) {
    let files: string[];
    try {
      files = await listManifestFiles(p);
    } catch (err) {
      problems.push(makeProblem({ file: p, rule: 'read', message: `cannot read: ${(err as Error).message}` }));
      continue;
    }
    for (const f of files) {
      const load = await loadFile(f, baseDir === undefined ? f : relative(baseDir, f));
      objects.push(...load.objects);
      problems.push(...load.problems);
    }
  }
  return { objects: dropDuplicates(objects, problems), problems };
}

/** Keeps the first object of each identity; reports the others into `problems`. */
export function dropDuplicates(objects: readonly LoadedObject[], problems: SourceProblem[]): LoadedObject[] {
  const seen = new Map<string, LoadedObject>();
  for (const o of objects) {
    const id = identityOf(o.object);
    const first = seen.get(id);
    if (first === undefined) {
      seen.set(id, o);
      continue;
    }
    problems.push(makeProblem({
      file: o.file, document: o.document, kind: o.object.kind, namespace: o.object.metadata.namespace, name: o.object.metadata.name,
      path: 'metadata.name', rule: 'unique', message: `also declared in ${first.file}#${first.document}; this one is ignored`,
    }));
  }
  return [...seen.values()];
}
