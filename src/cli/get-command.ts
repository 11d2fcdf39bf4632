/**
 * `hyperlet get containers|vms` and `hyperlet describe KIND NAME`: read the state DB the daemon
 * writes (dir and git sources), never the live host.
 */
import { existsSync } from 'node:fs';
import { parseArgs } from 'node:util';
import yaml from 'js-yaml';
import { KINDS, type Kind } from '../api/v1alpha1/group.js';
import { formatQuantity, parseQuantity } from '../api/v1alpha1/quantity.js';
import { redactSpec } from '../api/v1alpha1/redact-object.js';
import { parseLabelSelector, queryObjects, rowToObject } from '../server/object-query.js';
import { redactUrlCredentials } from '../shared/redact.js';
import { stripTerminalControls, terminalCell } from '../shared/terminal-text.js';
import { type ObjectRow, StateDb } from '../state/state-db.js';
import { DEFAULT_STATE_PATH } from '../state/state-dir.js';
import { UsageError, parsePositiveInt } from './usage-error.js';
import { systemClock } from '../shared/clock.js';
import { daemonConnection } from './daemon-connection.js';
import { watchObjects } from './get-watch.js';

const KIND_ALIASES = new Map<string, Kind>();
for (const [kind, k] of Object.entries(KINDS) as [Kind, (typeof KINDS)[Kind]][]) {
  for (const alias of [kind.toLowerCase(), k.plural, k.singular, ...k.shortNames]) KIND_ALIASES.set(alias, kind);
}

/** The kind a CLI resource argument names ("containers", "ct", "vm"…); throws UsageError otherwise. */
export function kindFromArg(arg: string | undefined): Kind {
  const kind = arg === undefined ? undefined : KIND_ALIASES.get(arg.toLowerCase());
  if (kind === undefined) throw new UsageError(`unknown resource ${JSON.stringify(arg ?? '')}: use containers (ct) or vms (vm)`);
  return kind;
}

function openDb(path: string): StateDb {
  if (!existsSync(path)) throw new UsageError(`no state DB at ${path}: start the daemon (hyperlet run) first, or pass --state`);
  return new StateDb(path, { readonly: true });
}

function age(iso: string | undefined): string {
  if (iso === undefined) return '-';
  const s = Math.max(0, Math.floor((systemClock.now() - Date.parse(iso)) / 1000));
  return s < 120 ? `${s}s` : s < 7200 ? `${Math.floor(s / 60)}m` : s < 172800 ? `${Math.floor(s / 3600)}h` : `${Math.floor(s / 86400)}d`;
}

/** Everything `get` and `describe` print passes the URL-credential rule (shared/redact.ts). */
const out = (text: string): boolean => process.stdout.write(redactUrlCredentials(text));
const err = (text: string): boolean => process.stderr.write(redactUrlCredentials(text));

/** Text for people: commit subjects, file names and messages written by others reach no terminal raw. */
const human = (text: string): string => terminalCell(text);

function table(cells: string[][]): string {
  const rows = cells.map((r) => r.map(human));
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? [];
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join('   ')).join('\n');
}

function columns(r: ObjectRow, wide: boolean): string[] {
  const spec = (r.desired?.object.spec ?? {}) as { resources?: { cpu?: number; memory?: string | number } };
  const ready = r.status?.conditions.find((c) => c.type === 'Ready');
  const memory = spec.resources?.memory === undefined ? '-' : formatQuantity(parseQuantity(spec.resources.memory) ?? 0);
  const base = [r.namespace, r.name, r.status?.phase ?? 'Pending', ready === undefined ? 'Unknown' : ready.status === 'True' ? 'True' : `False (${ready.reason})`,
    r.status?.node ?? '-', String(spec.resources?.cpu ?? '-'), memory, age(r.createdAt)];
  if (!wide) return base;
  return [...base, r.id, r.status?.hostName ?? '-', (r.status?.addresses ?? []).join(',') || '-', ready?.message ?? '-'];
}

const GET_OPTIONS = {
  output: { type: 'string', short: 'o' }, phase: { type: 'string' }, selector: { type: 'string', short: 'l' },
  limit: { type: 'string' }, continue: { type: 'string' }, namespace: { type: 'string', short: 'n' },
  'all-namespaces': { type: 'boolean', short: 'A' }, state: { type: 'string' },
  watch: { type: 'boolean', short: 'w' }, server: { type: 'string' }, cacert: { type: 'string' },
} as const;

/** `hyperlet get`: lists objects and their status from the state DB, or watches them (-w); resolves to the exit code. */
export async function getCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, strict: true, options: GET_OPTIONS });
  if (values.watch !== true) return getSync(values, positionals);
  const output = values.output ?? 'table';
  if (!['table', 'wide', 'json', 'yaml'].includes(output)) {
    throw new UsageError(`-o: unknown output ${JSON.stringify(output)}; use table, wide, json or yaml`);
  }
  if (values.limit !== undefined || values.continue !== undefined) {
    throw new UsageError('--limit and --continue page a list; -w watches everything that matches');
  }
  const kind = kindFromArg(positionals[0]);
  if (values.selector !== undefined) {
    try {
      parseLabelSelector(values.selector);
    } catch (err) {
      throw new UsageError((err as Error).message);
    }
  }
  const abort = new AbortController();
  const stop = (): void => abort.abort();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    const connection = daemonConnection(values);
    return await watchObjects({
      server: connection.server, headers: connection.headers, ...(connection.ca === undefined ? {} : { ca: connection.ca }),
      kind, output: output as 'table',
      ...(positionals[1] === undefined ? {} : { name: positionals[1] }),
      ...(values['all-namespaces'] === true || values.namespace === undefined ? {} : { namespace: values.namespace }),
      ...(values.phase === undefined ? {} : { phase: values.phase }),
      ...(values.selector === undefined ? {} : { labelSelector: values.selector }),
      signal: abort.signal, out: process.stdout, err: process.stderr,
    });
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  }
}

type GetValues = ReturnType<typeof parseArgs<{ options: typeof GET_OPTIONS; allowPositionals: true }>>['values'];

function getSync(values: GetValues, positionals: string[]): number {
  const output = values.output ?? 'table';
  if (!['table', 'wide', 'json', 'yaml'].includes(output)) throw new UsageError(`-o: unknown output ${JSON.stringify(output)}; use table, wide, json or yaml`);
  if (['sources', 'source', 'src'].includes(positionals[0] ?? '')) return getSources(values.state ?? DEFAULT_STATE_PATH, output, positionals[1]);
  const kind = kindFromArg(positionals[0]);
  const name = positionals[1];
  const db = openDb(values.state ?? DEFAULT_STATE_PATH);
  try {
    const namespace = values['all-namespaces'] === true ? undefined : values.namespace;
    let page;
    try {
      page = queryObjects(db.listObjects(), {
        kind,
        ...(namespace === undefined ? {} : { namespace }),
        ...(values.phase === undefined ? {} : { phase: values.phase }),
        ...(values.selector === undefined ? {} : { labelSelector: values.selector }),
        ...(values.limit === undefined ? {} : { limit: parsePositiveInt('--limit', values.limit) }),
        ...(values.continue === undefined ? {} : { continueToken: values.continue }),
      });
    } catch (err) {
      throw new UsageError((err as Error).message);
    }
    const items = name === undefined ? page.items : page.items.filter((r) => r.name === name);
    if (name !== undefined && items.length === 0) {
      err(`${kind} ${name} not found\n`);
      return 1;
    }
    if (output === 'json' || output === 'yaml') {
      const body = name !== undefined && items[0] !== undefined ? rowToObject(items[0])
        : { apiVersion: 'hyperlet.io/v1alpha1', kind: `${kind}List`, metadata: page.continueToken === undefined ? {} : { continue: page.continueToken }, items: items.map(rowToObject) };
      out(output === 'json' ? `${JSON.stringify(body, null, 2)}\n` : yaml.dump(body, { noRefs: true }));
    } else {
      const wide = output === 'wide';
      const header = ['NAMESPACE', 'NAME', 'PHASE', 'READY', 'NODE', 'CPU', 'MEMORY', 'AGE', ...(wide ? ['ID', 'HOSTNAME', 'ADDRESSES', 'MESSAGE'] : [])];
      if (items.length === 0) err(`No ${KINDS[kind].plural} found.\n`);
      else out(`${table([header, ...items.map((r) => columns(r, wide))])}\n`);
      if (page.continueToken !== undefined) err(`More items: --continue ${page.continueToken}\n`);
      const problems = db.problems();
      if (problems.length > 0) {
        err(`\n${problems.length} problem(s) in the declared input (nothing was changed for them):\n`);
        for (const p of problems) err(`  ${human(p.problem.line)}\n`);
      }
    }
    return 0;
  } finally {
    db.close();
  }
}

/** Per-source state the sources store (git: revisions); the shape is each source's own. */
interface SourceStateView {
  lastApplied?: { revision: string; at: string; objects: number; subject?: string };
  lastAttempted?: { revision: string; at: string };
  lastFetch?: { at: string; ok: boolean; error?: string };
  blocked?: { reason: string; message: string; revision?: string };
}

/** `hyperlet get sources`: per source, the last applied and attempted revisions and why the latest is not applied. */
function getSources(statePath: string, output: string, only: string | undefined): number {
  const db = openDb(statePath);
  try {
    const problems = db.problems();
    const rows = db.listSources().filter((r) => only === undefined || r.id === only).map((r) => ({
      id: r.id, description: r.description, updatedAt: r.updatedAt, state: r.state as SourceStateView,
      problems: problems.filter((p) => p.source === r.id).map((p) => p.problem.line),
    }));
    if (only !== undefined && rows.length === 0) {
      err(`source ${only} not found\n`);
      return 1;
    }
    if (output === 'json' || output === 'yaml') {
      const body = { items: rows.map((r) => ({ id: r.id, description: r.description, updatedAt: r.updatedAt, ...r.state, problems: r.problems })) };
      out(output === 'json' ? `${JSON.stringify(body, null, 2)}\n` : yaml.dump(body, { noRefs: true }));
      return 0;
    }
    if (rows.length === 0) {
      err('No sources with revisions (dir sources keep none).\n');
      return 0;
    }
    const short = (rev: string | undefined): string => (rev === undefined ? '-' : rev.slice(0, 12));
    const header = ['ID', 'SOURCE', 'APPLIED', 'OBJECTS', 'LATEST', 'STATUS', 'FETCHED', ...(output === 'wide' ? ['MESSAGE'] : [])];
    const body = rows.map((r) => {
      const s = r.state;
      return [r.id, r.description, short(s.lastApplied?.revision), String(s.lastApplied?.objects ?? '-'), short(s.lastAttempted?.revision),
        s.blocked?.reason ?? 'Applied', s.lastFetch === undefined ? '-' : `${age(s.lastFetch.at)}${s.lastFetch.ok ? '' : ' (failed)'}`,
        ...(output === 'wide' ? [s.blocked?.message ?? s.lastApplied?.subject ?? '-'] : [])];
    });
    out(`${table([header, ...body])}\n`);
    for (const r of rows) {
      if (r.state.blocked !== undefined && output !== 'wide') err(`\n${r.id}: ${human(r.state.blocked.message)}\n`);
      for (const line of r.problems.filter((l) => !l.includes(r.state.blocked?.message ?? '\u0000'))) err(`  ${human(line)}\n`);
    }
    return 0;
  } finally {
    db.close();
  }
}

/** `hyperlet describe`: one object's status, conditions and audit entries; resolves to the exit code. */
export function describeCommand(args: string[]): Promise<number> {
  return Promise.resolve(describeSync(args));
}

function describeSync(args: string[]): number {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, strict: true, options: { namespace: { type: 'string', short: 'n' }, state: { type: 'string' } } });
  const kind = kindFromArg(positionals[0]);
  const name = positionals[1];
  if (name === undefined) throw new UsageError('describe needs KIND NAME');
  const db = openDb(values.state ?? DEFAULT_STATE_PATH);
  try {
    const row = db.listObjects().find((r) => r.kind === kind && r.name === name && r.namespace === (values.namespace ?? 'default'));
    if (row === undefined) {
      err(`${kind} ${values.namespace ?? 'default'}/${name} not found\n`);
      return 1;
    }
    const s = row.status;
    const lines = [
      `Name:          ${row.name}`, `Namespace:     ${row.namespace}`, `Kind:          ${row.kind}`, `ID:            ${row.id}`,
      `Source:        ${row.source}${row.desired?.origin === undefined ? '' : ` (${row.desired.origin.file}#${row.desired.origin.document})`}`,
      `Generation:    ${row.generation} (observed ${s?.observedGeneration ?? '-'})`, `Phase:         ${s?.phase ?? 'Pending'}`,
      `Host name:     ${s?.hostName ?? '-'}`, `Node:          ${s?.node ?? '-'}`,
      ...(s?.pid === undefined ? [] : [`PID:           ${s.pid}`]),
      ...(s?.addresses === undefined ? [] : [`Addresses:     ${s.addresses.join(', ')}`]),
      ...(s?.startedAt === undefined ? [] : [`Started:       ${s.startedAt}`]),
      ...Object.entries(s?.details ?? {}).map(([k, v]) => `${`${k}:`.padEnd(15)}${v}`),
      'Spec:', ...yaml.dump(redactSpec(row.desired?.object.spec ?? {})).trimEnd().split('\n').map((l) => `  ${l}`),
      'Conditions:',
      table([['  TYPE', 'STATUS', 'REASON', 'SINCE', 'MESSAGE'], ...(s?.conditions ?? []).map((c) => [`  ${c.type}`, c.status, c.reason, age(c.lastTransitionTime), c.message])]),
      'Events:',
      table([['  WHEN', 'TYPE', 'REASON', 'MESSAGE'], ...db.auditFor(row.key, 20).map((a) => [`  ${age(a.at)}`, a.type, a.action, a.message])]),
    ];
    out(`${stripTerminalControls(lines.join('\n'))}\n`);
    return 0;
  } finally {
    db.close();
  }
}
