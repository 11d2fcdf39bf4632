/**
 * GET /api/v1/watch: the daemon's changes as Server-Sent Events, pushed as they happen (status
 * writes, recorded events, objects let go), never polled. A new stream first lists what matches
 * (`ADDED` per object, then `SYNCED`), then sends `MODIFIED` when an object's status is written,
 * `DELETED` when hyperlet lets go of it, and, with `events=true`, `EVENT` per recorded event.
 * Query: `kind` (Container, VirtualMachine, or a plural or short name), `namespace`, `name`,
 * `events=true`, `host=true` (the dashboard: `HOST` after SYNCED, and again when the host's state
 * changed, looked at 250 ms after a change of an object). Each message's `data` is one JSON
 * line: `{"type": ..., "object": ObjectView}` or `{"type": "EVENT", "event": {...}}`, as
 * `kubectl get -w -o json` prints watch events.
 *
 * Guarantees: a stream never misses a change after its SYNCED (it subscribes before listing);
 * a client that reads too slowly (more than `maxBufferedBytes` waiting) is disconnected rather
 * than buffered without bound (EventSource reconnects and lists again); a comment line every
 * `heartbeatMs` keeps idle connections open through proxies. Every line passes `redact`.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { KINDS, type Kind } from '../api/v1alpha1/group.js';
import type { ObjectEvent, ObjectEvents } from '../reconcile/object-events.js';
import { type Clock, systemClock } from '../shared/clock.js';
import { type ObjectViews, namesMatch, viewMatches } from './object-view.js';

/** What the watch endpoint streams from and how it bounds slow clients. */
export interface WatchStreamOptions {
  readonly events: ObjectEvents;
  readonly views: ObjectViews;
  readonly clock?: Clock;
  /** Applied to every line sent (the daemon's redaction of secrets). */
  readonly redact?: (text: string) => string;
  /** Streams open at once (default 64); more get 503. */
  readonly maxClients?: number;
  readonly heartbeatMs?: number;
  readonly maxBufferedBytes?: number;
  /** The host's state for `host=true` streams (the dashboard): sent after SYNCED, then when it changed. */
  readonly host?: () => unknown;
}

/** A recorded event as the stream sends it. */
export interface WatchEvent {
  readonly time: string;
  readonly type: 'Normal' | 'Warning';
  readonly reason: string;
  readonly message: string;
  readonly involvedObject: { readonly kind: string; readonly namespace: string; readonly name: string; readonly uid: string };
}

const KIND_NAMES = new Map<string, Kind>();
for (const [kind, k] of Object.entries(KINDS) as [Kind, (typeof KINDS)[Kind]][]) {
  for (const alias of [kind, kind.toLowerCase(), k.plural, k.singular, ...k.shortNames]) KIND_NAMES.set(alias, kind);
}

/** Serves GET /api/v1/watch as Server-Sent Events (see the module comment). */
export class WatchStream {
  private clients = 0;
  private readonly clock: Clock;

  constructor(private readonly options: WatchStreamOptions) {
    this.clock = options.clock ?? systemClock;
  }

  /** Open streams. */
  get size(): number {
    return this.clients;
  }

  /** Serves one stream until the client goes away; answers 400 or 503 (as JSON) when it cannot. */
  serve(req: IncomingMessage, res: ServerResponse, query: URLSearchParams): void {
    const kindParam = query.get('kind');
    const kind = kindParam === null ? undefined : KIND_NAMES.get(kindParam);
    if (kindParam !== null && kind === undefined) {
      return refuse(res, 400, `unknown kind ${JSON.stringify(kindParam)}: use Container or VirtualMachine`);
    }
    if (this.clients >= (this.options.maxClients ?? 64)) return refuse(res, 503, 'too many watchers; try again later');
    const filter = {
      ...(kind === undefined ? {} : { kind }),
      ...(query.get('namespace') === null ? {} : { namespace: query.get('namespace') ?? '' }),
      ...(query.get('name') === null ? {} : { name: query.get('name') ?? '' }),
    };
    const withEvents = query.get('events') === 'true';
    const host = query.get('host') === 'true' ? this.options.host : undefined;
    let lastHost = '';
    let hostTimer: unknown;
    const sendHost = (): void => {
      hostTimer = undefined;
      if (host === undefined || closed) return;
      const text = JSON.stringify(host());
      if (text === lastHost) return;
      lastHost = text;
      message('HOST', { host: JSON.parse(text) as unknown });
    };
    // Provider health and source revisions change with the objects they touch: look after each change, batched.
    const hostMayHaveChanged = (): void => {
      if (host !== undefined && hostTimer === undefined) hostTimer = this.clock.setTimeout(sendHost, 250);
    };
    const redact = this.options.redact ?? ((t: string) => t);
    const maxBuffered = this.options.maxBufferedBytes ?? 1 << 20;
    this.clients++;
    let seq = 0;
    let closed = false;
    const write = (text: string): void => {
      if (closed) return;
      res.write(redact(text));
      if (res.writableLength > maxBuffered) close(); // a reader this slow lists again when it comes back
    };
    const message = (type: string, data: unknown): void => {
      seq++;
      write(`id: ${seq}\nevent: ${type}\ndata: ${JSON.stringify({ type, ...data as object })}\n\n`);
    };
    const listener = (event: ObjectEvent): void => {
      hostMayHaveChanged();
      if (!namesMatch(event.kind, event.namespace, event.name, filter)) return;
      if (event.type === 'status') {
        const view = this.options.views.get(event.key);
        if (view !== undefined) message('MODIFIED', { object: view });
      } else if (event.type === 'removed') {
        message('DELETED', { object: { kind: event.kind, metadata: { namespace: event.namespace, name: event.name } } });
      } else if (withEvents) {
        const watchEvent: WatchEvent = {
          time: new Date(event.atMs).toISOString(), type: event.eventType, reason: event.reason, message: event.message,
          involvedObject: { kind: event.kind, namespace: event.namespace, name: event.name, uid: event.uid },
        };
        message('EVENT', { event: watchEvent });
      }
    };
    // Subscribe first, then list: a change made while listing is sent after the list, never lost.
    const unsubscribe = this.options.events.subscribe(listener);
    let heartbeat: unknown;
    const close = (): void => {
      if (closed) return;
      closed = true;
      this.clients--;
      unsubscribe();
      this.clock.clearTimeout(heartbeat);
      this.clock.clearTimeout(hostTimer);
      res.end();
    };
    req.on('close', close);
    res.on('error', close);
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', connection: 'keep-alive',
      'x-content-type-options': 'nosniff', 'x-accel-buffering': 'no',
    });
    write('retry: 2000\n\n');
    for (const view of this.options.views.list()) if (viewMatches(view, filter)) message('ADDED', { object: view });
    message('SYNCED', {});
    sendHost();
    const beat = (): void => {
      write(': keep-alive\n\n');
      heartbeat = this.clock.setTimeout(beat, this.options.heartbeatMs ?? 15_000);
    };
    heartbeat = this.clock.setTimeout(beat, this.options.heartbeatMs ?? 15_000);
  }
}

function refuse(res: ServerResponse, code: number, error: string): void {
  res.writeHead(code, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  res.end(`${JSON.stringify({ error })}\n`);
}
