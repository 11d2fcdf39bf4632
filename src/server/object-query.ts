/**
 * Filtering and pagination of stored objects, shared by `hyperlet get` and the HTTP read API.
 * Continue tokens are opaque to users: base64url of the last key returned.
 */
import type { Kind } from '../api/v1alpha1/group.js';
import { redactSpec } from '../api/v1alpha1/redact-object.js';
import type { Status } from '../api/v1alpha1/types.js';
import type { ObjectRow } from '../state/state-db.js';

/** Filters and paging of the objects API. */
export interface ObjectQuery {
  readonly kind?: Kind;
  readonly namespace?: string;
  readonly phase?: string;
  /** Label selector: `a=b`, `a!=b`, `a` (exists), `!a` (absent), comma-joined. */
  readonly labelSelector?: string;
  readonly limit?: number;
  readonly continueToken?: string;
}

/** One page of objects and the token of the next. */
export interface ObjectPage {
  readonly items: readonly ObjectRow[];
  /** Present when more items follow. */
  readonly continueToken?: string;
}

type LabelTest = (labels: Readonly<Record<string, string>>) => boolean;

/** Parses a label selector; throws a clear error for one it cannot read. */
export function parseLabelSelector(selector: string): LabelTest[] {
  return selector.split(',').map((s) => s.trim()).filter((s) => s !== '').map((term): LabelTest => {
    let m = /^([^=!]+)!=(.*)$/.exec(term);
    if (m !== null) { const [, k, v] = m as unknown as [string, string, string]; return (l) => l[k.trim()] !== v.trim(); }
    m = /^([^=!]+)==?(.*)$/.exec(term);
    if (m !== null) { const [, k, v] = m as unknown as [string, string, string]; return (l) => l[k.trim()] === v.trim(); }
    m = /^!([^=!]+)$/.exec(term);
    if (m !== null) { const k = (m[1] ?? '').trim(); return (l) => !(k in l); }
    if (/^[^=!]+$/.test(term)) return (l) => term in l;
    throw new Error(`cannot parse label selector term ${JSON.stringify(term)}: use key=value, key!=value, key or !key`);
  });
}

/** The opaque continue token that resumes a listing after `key`. */
export function encodeContinue(key: string): string {
  return Buffer.from(key, 'utf8').toString('base64url');
}

/** The key a continue token resumes after; throws on a token this server did not make. */
export function decodeContinue(token: string): string {
  const key = Buffer.from(token, 'base64url').toString('utf8');
  if (key.split('/').length !== 4) throw new Error('cannot use the continue token: it is not one this server gave out');
  return key;
}

/** Rows matching `q`, in key order, one page at a time. */
export function queryObjects(rows: readonly ObjectRow[], q: ObjectQuery): ObjectPage {
  const tests = q.labelSelector === undefined ? [] : parseLabelSelector(q.labelSelector);
  const after = q.continueToken === undefined ? undefined : decodeContinue(q.continueToken);
  const matching = rows
    .filter((r) => (q.kind === undefined || r.kind === q.kind) && (q.namespace === undefined || r.namespace === q.namespace))
    .filter((r) => q.phase === undefined || (r.status?.phase ?? 'Pending').toLowerCase() === q.phase.toLowerCase())
    .filter((r) => tests.every((t) => t(r.desired?.object.metadata.labels ?? {})))
    .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
    .filter((r) => after === undefined || r.key > after);
  if (q.limit === undefined || matching.length <= q.limit) return { items: matching };
  const items = matching.slice(0, q.limit);
  const last = items[items.length - 1];
  return last === undefined ? { items } : { items, continueToken: encodeContinue(last.key) };
}

/** The Kubernetes-shaped object a row stands for (spec from the last desired object, status as written). */
export function rowToObject(r: ObjectRow): Record<string, unknown> {
  const object = r.desired?.object;
  const status: Status | undefined = r.status;
  return {
    apiVersion: object?.apiVersion ?? 'hyperlet.io/v1alpha1',
    kind: r.kind,
    metadata: {
      name: r.name, namespace: r.namespace, uid: r.id, generation: r.generation, creationTimestamp: r.createdAt,
      ...(object?.metadata.labels === undefined ? {} : { labels: object.metadata.labels }),
      ...(object?.metadata.annotations === undefined ? {} : { annotations: object.metadata.annotations }),
      ...(r.desired?.origin === undefined ? {} : { annotations: { ...(object?.metadata.annotations ?? {}), 'hyperlet.io/source': `${r.source}:${r.desired.origin.file}` } }),
    },
    // Environment values are never shown: keys and environmentFrom references are (api/v1alpha1/redact-object.ts).
    spec: redactSpec(object?.spec ?? {}),
    ...(status === undefined ? {} : { status }),
  };
}
