/**
 * `hyperlet get KIND [NAME] -w`: what the daemon has, then every change as it happens, from its
 * event stream (GET /api/v1/watch), never by polling. A table prints the current objects, then
 * one row per change, as `kubectl get -w` does; `-o json` prints one watch event per line
 * (`{"type":"MODIFIED","object":{...}}`), `-o yaml` one document per event.
 */
import yaml from 'js-yaml';
import { KINDS, type Kind } from '../api/v1alpha1/group.js';
import { formatQuantity, parseQuantity } from '../api/v1alpha1/quantity.js';
import { parseLabelSelector } from '../server/object-query.js';
import type { ObjectView } from '../server/object-view.js';
import { readEventStream } from './event-stream.js';
import { systemClock } from '../shared/clock.js';

/** What `hyperlet get -w` follows (daemon, kind, filters) and where it prints. */
export interface WatchOptions {
  readonly server: URL;
  readonly kind: Kind;
  readonly name?: string;
  readonly namespace?: string;
  readonly phase?: string;
  readonly labelSelector?: string;
  readonly output: 'table' | 'wide' | 'json' | 'yaml';
  readonly headers?: Record<string, string>;
  readonly ca?: Buffer;
  readonly signal: AbortSignal;
  readonly out: NodeJS.WritableStream;
  readonly err: NodeJS.WritableStream;
  /** Milliseconds since the epoch, for the AGE column (injected by tests). */
  readonly nowMs?: () => number;
}

/** A compact age, as kubectl prints it: 42s, 5m, 3h, 2d. */
export function formatAge(iso: string | undefined, nowMs: number): string {
  if (iso === undefined) return '-';
  const s = Math.max(0, Math.floor((nowMs - Date.parse(iso)) / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.floor(s / 60)}m`;
  return s < 172800 ? `${Math.floor(s / 3600)}h` : `${Math.floor(s / 86400)}d`;
}

/** The table columns of a view, the same as `hyperlet get` prints from the state DB. */
export function viewColumns(view: ObjectView, wide: boolean, nowMs: number, phase?: string): string[] {
  const ready = view.status?.conditions.find((c) => c.type === 'Ready');
  const memory = view.spec.resources?.memory === undefined ? '-' : formatQuantity(parseQuantity(view.spec.resources.memory) ?? 0);
  const readyText = ready === undefined ? 'Unknown' : ready.status === 'True' ? 'True' : `False (${ready.reason})`;
  const base = [
    view.metadata.namespace, view.metadata.name, phase ?? view.status?.phase ?? 'Pending', readyText, view.status?.node ?? '-',
    String(view.spec.resources?.cpu ?? '-'), memory, formatAge(view.metadata.creationTimestamp, nowMs),
  ];
  if (!wide) return base;
  return [...base, view.metadata.uid, view.status?.hostName ?? '-', (view.status?.addresses ?? []).join(',') || '-', ready?.message ?? '-'];
}

/** Columns of `get -w` as a table. */
export const WATCH_HEADER = ['NAMESPACE', 'NAME', 'PHASE', 'READY', 'NODE', 'CPU', 'MEMORY', 'AGE'];
/** Columns of `get -w -o wide`. */
export const WATCH_WIDE_HEADER = [...WATCH_HEADER, 'ID', 'HOSTNAME', 'ADDRESSES', 'MESSAGE'];

/** Pads rows to widths that only grow, so later rows line up with the first ones. */
class RowPrinter {
  private widths: number[] = [];
  constructor(private readonly out: NodeJS.WritableStream) {}
  print(rows: readonly string[][]): void {
    for (const row of rows) row.forEach((c, i) => { this.widths[i] = Math.max(this.widths[i] ?? 0, c.length); });
    for (const row of rows) {
      this.out.write(`${row.map((c, i) => (i === row.length - 1 ? c : c.padEnd(this.widths[i] ?? 0))).join('   ')}\n`);
    }
  }
}

/** Watches until the signal aborts (0) or the daemon ends the stream (1). */
export async function watchObjects(o: WatchOptions): Promise<number> {
  const url = new URL('/api/v1/watch', o.server);
  url.searchParams.set('kind', o.kind);
  if (o.name !== undefined) url.searchParams.set('name', o.name);
  if (o.namespace !== undefined) url.searchParams.set('namespace', o.namespace);
  const labelTests = o.labelSelector === undefined ? [] : parseLabelSelector(o.labelSelector);
  const phaseWanted = (v: ObjectView): boolean =>
    o.phase === undefined || (v.status?.phase ?? 'Pending').toLowerCase() === o.phase.toLowerCase();
  const wanted = (v: ObjectView): boolean => phaseWanted(v) && labelTests.every((t) => t(v.metadata.labels ?? {}));
  const now = o.nowMs ?? (() => systemClock.now());
  const wide = o.output === 'wide';
  const table = new RowPrinter(o.out);
  const last = new Map<string, ObjectView>();
  const keyOf = (v: Pick<ObjectView, 'kind' | 'metadata'>): string => `${v.kind}/${v.metadata.namespace}/${v.metadata.name}`;
  let listed: ObjectView[] | undefined = [];
  let headerPrinted = false;
  const printRows = (rows: string[][]): void => {
    if (!headerPrinted) rows.unshift(wide ? WATCH_WIDE_HEADER : WATCH_HEADER);
    headerPrinted = true;
    table.print(rows);
  };

  for await (const message of readEventStream(url.toString(), {
    signal: o.signal, ...(o.headers === undefined ? {} : { headers: o.headers }), ...(o.ca === undefined ? {} : { ca: o.ca }),
  })) {
    const data = JSON.parse(message.data) as { type: string; object?: ObjectView };
    if (message.event === 'SYNCED') {
      if (o.output === 'table' || o.output === 'wide') {
        if ((listed ?? []).length === 0) o.err.write(`No ${KINDS[o.kind].plural} found yet; watching.\n`);
        else printRows((listed ?? []).map((v) => viewColumns(v, wide, now())));
      }
      listed = undefined;
      continue;
    }
    const view = data.object;
    if (view === undefined) continue;
    const deleted = message.event === 'DELETED';
    const full = deleted ? last.get(keyOf(view)) : view;
    if (full === undefined || !wanted(full)) continue;
    if (deleted) last.delete(keyOf(view));
    else last.set(keyOf(view), full);
    if (o.output === 'json') o.out.write(`${JSON.stringify({ type: message.event, object: full })}\n`);
    else if (o.output === 'yaml') o.out.write(`---\n${yaml.dump({ type: message.event, object: full }, { noRefs: true })}`);
    else if (listed !== undefined) listed.push(full);
    else printRows([viewColumns(full, wide, now(), deleted ? 'Deleted' : undefined)]);
  }
  if (o.signal.aborted) return 0;
  o.err.write('the daemon ended the watch (it stopped or restarted)\n');
  return 1;
}
