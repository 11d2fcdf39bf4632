/**
 * hyperlet's ownership marker: a small JSON file beside a container's config saying which object
 * the container belongs to and what was applied to it. A container without one is not hyperlet's
 * and is never changed, except by adopt().
 *
 * Guarantees: the file is replaced atomically (atomic-file.ts), so a reader sees the old
 * marker or the new one, never half of one. `complete` is written true only after creation
 * finished, so a create killed at any point leaves an incomplete marker behind.
 */
import { readFile } from 'node:fs/promises';
import { writeFileAtomic } from './atomic-file.js';
import type { SpecFields } from '../../api/v1alpha1/fields.js';

/** Version of the marker file format. */
export const MARKER_VERSION = 1;

/** What the marker file beside a container says: who owns it and what was last applied. */
export interface OwnershipMarker {
  readonly version: typeof MARKER_VERSION;
  /** The object id (Desired.id). */
  readonly id: string;
  /** The object key, for people reading the file. */
  readonly key: string;
  /** The spec hash whose fields are all applied; absent after adoption until the first update. */
  readonly specHash?: string;
  /** The flattened spec fields as applied (specFields('Container', …) form). */
  readonly fields: SpecFields;
  /** False from the moment creation starts until it has finished. */
  readonly complete: boolean;
  /** How the container came to be hyperlet's. */
  readonly origin: 'created' | 'adopted';
  readonly updatedAt: string;
  /** The value of the restore-request annotation last honoured (or present at create/adopt). */
  readonly restoreRequest?: string;
}

function isFieldValue(v: unknown): v is SpecFields[string] {
  return v === null || typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean';
}

/** Parses marker text; throws on anything that is not a marker this version wrote. */
export function parseMarker(text: string): OwnershipMarker {
  const raw = JSON.parse(text) as unknown;
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new Error('cannot parse ownership marker: not an object');
  const m = raw as Record<string, unknown>;
  if (m.version !== MARKER_VERSION) throw new Error(`cannot parse ownership marker: unknown version ${JSON.stringify(m.version)}`);
  if (typeof m.id !== 'string' || m.id === '') throw new Error('cannot parse ownership marker: no id');
  if (typeof m.key !== 'string') throw new Error('cannot parse ownership marker: no key');
  if (m.specHash !== undefined && typeof m.specHash !== 'string') throw new Error('cannot parse ownership marker: bad specHash');
  if (typeof m.complete !== 'boolean') throw new Error('cannot parse ownership marker: no complete flag');
  if (m.origin !== 'created' && m.origin !== 'adopted') throw new Error('cannot parse ownership marker: bad origin');
  if (m.fields === null || typeof m.fields !== 'object' || Array.isArray(m.fields)) throw new Error('cannot parse ownership marker: no fields');
  const fields: Record<string, SpecFields[string]> = {};
  for (const [k, v] of Object.entries(m.fields as Record<string, unknown>)) {
    if (!isFieldValue(v)) throw new Error(`cannot parse ownership marker: field ${k} is not a plain value`);
    fields[k] = v;
  }
  return {
    version: MARKER_VERSION,
    id: m.id,
    key: m.key,
    ...(m.specHash === undefined ? {} : { specHash: m.specHash }),
    fields,
    complete: m.complete,
    origin: m.origin,
    updatedAt: typeof m.updatedAt === 'string' ? m.updatedAt : '',
    ...(typeof m.restoreRequest === 'string' ? { restoreRequest: m.restoreRequest } : {}),
  };
}

/**
 * Reads the marker at `path`: undefined when there is none. A marker that cannot be parsed
 * throws: the container is then neither clearly ours nor clearly someone else's.
 */
export async function readMarker(path: string): Promise<OwnershipMarker | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new Error(`cannot read ownership marker ${path}`, { cause: err });
  }
  try {
    return parseMarker(text);
  } catch (err) {
    throw new Error(`cannot use ownership marker ${path}`, { cause: err });
  }
}

/** Writes `marker` to `path` atomically (and durably unless told otherwise, see writeFileAtomic). */
export async function writeMarker(path: string, marker: OwnershipMarker, options: { durable?: boolean } = {}): Promise<void> {
  await writeFileAtomic(path, `${JSON.stringify(marker, null, 2)}\n`, 0o600, options);
}
