/**
 * `hyperlet wait KIND [NAME...] --for CONDITION`: waits until the objects meet the condition, as
 * `kubectl wait` does, following the daemon's event stream (no polling). Progress goes to stderr
 * (a redrawn line on a terminal, plain lines otherwise); each object that meets the condition is
 * printed to stdout once. Exit 0 when all met it, 1 at the timeout (naming those that did not).
 */
import { parseArgs } from 'node:util';
import { KINDS } from '../api/v1alpha1/group.js';
import { parseLabelSelector } from '../server/object-query.js';
import type { ObjectView } from '../server/object-view.js';
import { systemClock } from '../shared/clock.js';
import { readEventStream } from './event-stream.js';
import { daemonConnection } from './daemon-connection.js';
import { kindFromArg } from './get-command.js';
import { Progress } from './progress.js';
import { UsageError, parseDurationMs } from './usage-error.js';

/** The help text of `hyperlet wait`. */
export const WAIT_HELP = `Usage: hyperlet wait KIND (NAME... | --all | -l SELECTOR) [--for CONDITION] [--timeout D]
                     [-n NS | -A] [--server URL] [--state PATH] [--cacert FILE]

Waits until the objects meet CONDITION, following the daemon's event stream:
  condition=Ready        Ready is True (the default); condition=Ready=false for the opposite
  phase=PHASE            status.phase is PHASE (Running, Stopped, ...)
  delete                 hyperlet let go of them (their instances are gone)
Progress is shown on stderr; exit 0 when every object met it, 1 at the timeout (default 5m).
`;

/** A wait condition: whether a view meets it (delete is met by absence). */
export type WaitCondition =
  | { readonly kind: 'delete' }
  | { readonly kind: 'view'; readonly describe: string; readonly test: (v: ObjectView) => boolean };

/** Parses --for; throws a usage error naming the forms it accepts. */
export function parseWaitCondition(text: string): WaitCondition {
  if (text === 'delete') return { kind: 'delete' };
  const condition = /^condition=([A-Za-z]+)(?:=(true|false|True|False))?$/.exec(text);
  if (condition !== null) {
    const type = condition[1] ?? '';
    const want = (condition[2] ?? 'true').toLowerCase() === 'true' ? 'True' : 'False';
    return {
      kind: 'view', describe: `condition ${type}=${want}`,
      test: (v) => (v.status?.conditions.find((c) => c.type === type)?.status ?? 'Unknown') === want,
    };
  }
  const phase = /^phase=([A-Za-z]+)$/.exec(text);
  if (phase !== null) {
    const want = (phase[1] ?? '').toLowerCase();
    return { kind: 'view', describe: `phase ${phase[1] ?? ''}`, test: (v) => (v.status?.phase ?? 'Pending').toLowerCase() === want };
  }
  throw new UsageError(`--for: cannot read ${JSON.stringify(text)}; use condition=TYPE[=true|false], phase=PHASE or delete`);
}

/** `hyperlet wait`: follows the daemon's event stream until the objects meet the condition or time runs out; resolves to the exit code. */
export async function waitCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args, allowPositionals: true, strict: true,
    options: {
      for: { type: 'string' }, timeout: { type: 'string' }, all: { type: 'boolean' }, selector: { type: 'string', short: 'l' },
      namespace: { type: 'string', short: 'n' }, 'all-namespaces': { type: 'boolean', short: 'A' }, server: { type: 'string' },
      state: { type: 'string' }, cacert: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help === true) {
    process.stdout.write(WAIT_HELP);
    return 0;
  }
  const kind = kindFromArg(positionals[0]);
  const names = positionals.slice(1);
  if (names.length === 0 && values.all !== true && values.selector === undefined) {
    throw new UsageError('wait needs NAME..., --all or -l SELECTOR');
  }
  const condition = parseWaitCondition(values.for ?? 'condition=Ready');
  const timeoutMs = parseDurationMs('--timeout', values.timeout ?? '5m');
  const labelTests = values.selector === undefined ? [] : (() => {
    try {
      return parseLabelSelector(values.selector);
    } catch (err) {
      throw new UsageError((err as Error).message);
    }
  })();
  if (names.length > 0 && values['all-namespaces'] === true) {
    throw new UsageError('-A lists every namespace; with NAMEs, give -n NAMESPACE');
  }
  // Names live in a namespace (default unless -n); --all and -l span every namespace unless -n.
  const namespace = values['all-namespaces'] === true ? undefined : values.namespace ?? (names.length > 0 ? 'default' : undefined);
  const connection = daemonConnection(values);
  const url = new URL('/api/v1/watch', connection.server);
  url.searchParams.set('kind', kind);
  if (namespace !== undefined) url.searchParams.set('namespace', namespace);

  const singular = KINDS[kind].singular;
  const label = condition.kind === 'delete' ? `waiting for ${KINDS[kind].plural} to be deleted` : `waiting for ${condition.describe}`;
  const progress = new Progress({ stream: process.stderr, label, unit: KINDS[kind].plural });
  const abort = new AbortController();
  const timer = systemClock.setTimeout(() => abort.abort(), timeoutMs);
  const stop = (): void => abort.abort();
  process.once('SIGINT', stop);

  // Whom we wait for: the names given, or what matches when the list is in (SYNCED).
  const pending = new Set<string>(names.map((n) => `${namespace ?? 'default'}/${n}`));
  const met = new Set<string>();
  const idOf = (v: Pick<ObjectView, 'metadata'>): string => `${v.metadata.namespace}/${v.metadata.name}`;
  const chosen = (v: ObjectView): boolean =>
    (names.length > 0 ? pending.has(idOf(v)) || met.has(idOf(v)) : labelTests.every((t) => t(v.metadata.labels ?? {})));
  const listed: ObjectView[] = [];
  let synced = false;
  const meet = (id: string): void => {
    if (met.has(id) || !pending.has(id)) return;
    pending.delete(id);
    met.add(id);
    process.stdout.write(`${singular}/${id} ${condition.kind === 'delete' ? 'deleted' : 'condition met'}\n`);
  };
  const report = (): void => {
    const some = `${[...pending].slice(0, 3).join(', ')}${pending.size > 3 ? ', …' : ''}`;
    progress.update(met.size, pending.size === 0 ? '' : `waiting for ${some}`, met.size + pending.size);
  };

  try {
    const stream = readEventStream(url.toString(), {
      signal: abort.signal, headers: connection.headers, ...(connection.ca === undefined ? {} : { ca: connection.ca }),
    });
    for await (const message of stream) {
      const data = JSON.parse(message.data) as { object?: ObjectView };
      if (message.event === 'SYNCED') {
        synced = true;
        if (names.length === 0) for (const v of listed) pending.add(idOf(v));
        if (names.length === 0 && listed.length === 0) {
          process.stderr.write(`no ${KINDS[kind].plural} match\n`);
          return 1;
        }
        for (const v of listed) if (condition.kind === 'view' && condition.test(v)) meet(idOf(v));
        if (condition.kind === 'delete') for (const id of [...pending]) if (!listed.some((v) => idOf(v) === id)) meet(id);
        report();
      } else if (data.object !== undefined) {
        const v = data.object;
        if (!synced) {
          if (message.event === 'ADDED' && (names.length === 0 ? chosen(v) : true)) listed.push(v);
          continue;
        }
        if (!chosen(v)) continue;
        if (message.event === 'DELETED' ? condition.kind === 'delete' : condition.kind === 'view' && condition.test(v)) meet(idOf(v));
        report();
      }
      if (synced && pending.size === 0) break;
    }
  } finally {
    systemClock.clearTimeout(timer);
    process.off('SIGINT', stop);
  }
  if (synced && pending.size === 0) {
    progress.finish(`${met.size} ${KINDS[kind].plural} done`);
    return 0;
  }
  const left = [...pending].join(', ') || 'the daemon';
  progress.finish(abort.signal.aborted ? `timed out; still waiting for ${left}` : 'the daemon ended the stream');
  return 1;
}
