/**
 * Notifications: turns object events into CloudEvents (notification-types.ts says which), puts
 * them in the durable outbox of the state DB, and runs one WebhookSink per `--notify` URL.
 *
 * Guarantees: an event is in the outbox in the same transaction as the status write that caused
 * it (dir and git sources), so a kill -9 loses both or neither; each sink resumes after its own
 * cursor at restart. Delivered entries are kept a while (the newest `keepDelivered`) and the
 * outbox never grows past `maxEntries` (the oldest are dropped, counted and logged).
 * Caveats: a sink added later starts with the events from then on, not the history.
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { ObjectEvent, ObjectEvents } from '../reconcile/object-events.js';
import { type Clock, systemClock } from '../shared/clock.js';
import type { StateDb } from '../state/state-db.js';
import type { Metrics } from '../telemetry/metrics.js';
import { type CloudEvent, eventSource } from './cloud-event.js';
import { notificationData, notificationTypeOf } from './notification-types.js';
import { type SinkState, WebhookSink, type WebhookSinkOptions } from './webhook-sink.js';

/** The webhook URLs, the outbox and event hub, and the sinks' limits. */
export interface NotifierOptions {
  /** Webhook URLs (http or https). */
  readonly urls: readonly string[];
  readonly db: StateDb;
  readonly events: ObjectEvents;
  /** This daemon's node, in each event's `source`. */
  readonly node: string;
  readonly logger: Logger;
  readonly secret?: Buffer;
  readonly clock?: Clock;
  readonly metrics?: Metrics;
  /** Per-sink delivery settings (timeout, backoff, breaker, transport). */
  readonly sink?: Partial<Omit<WebhookSinkOptions, 'url' | 'db' | 'logger' | 'secret' | 'clock' | 'metrics'>>;
  /** Applied to every body before it is stored (the daemon's Redactor: secrets, URL credentials). */
  readonly redact?: (text: string) => string;
  /** Delivered entries kept for reading back (default 1000). */
  readonly keepDelivered?: number;
  /** Bound on the outbox (default 100 000 entries). */
  readonly maxEntries?: number;
  /** How often delivered entries are pruned (default 60 s). */
  readonly pruneEveryMs?: number;
}

/** Checks a --notify URL: http or https, parseable; throws naming the rule. */
export function parseNotifyUrl(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new Error(`cannot use --notify ${JSON.stringify(url)}: not a URL`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    throw new Error(`cannot use --notify ${u.protocol}//${u.host}: only http and https URLs are served`);
  }
  return u.toString();
}

/** Object events into the durable outbox and out to one WebhookSink per URL (see the module comment). */
export class Notifier {
  readonly sinks: readonly WebhookSink[];
  private readonly clock: Clock;
  private readonly abort = new AbortController();
  private unsubscribe: (() => void) | undefined;
  private running: Promise<void>[] = [];
  private pruneTimer: unknown;

  constructor(private readonly options: NotifierOptions) {
    this.clock = options.clock ?? systemClock;
    const labels = new Set<string>();
    this.sinks = options.urls.map((url) => new WebhookSink({
      ...options.sink, url, db: options.db, logger: options.logger, clock: this.clock,
      ...(options.secret === undefined ? {} : { secret: options.secret }),
      ...(options.metrics === undefined ? {} : { metrics: options.metrics }),
    })).filter((s) => {
      if (labels.has(s.label)) throw new Error(`cannot use --notify ${s.label} twice`);
      labels.add(s.label);
      return true;
    });
  }

  /** Subscribes to object events, forgets sinks no longer configured, and starts every sink. */
  start(): void {
    const configured = new Set(this.sinks.map((s) => s.label));
    for (const sink of this.options.db.outboxCursors().keys()) if (!configured.has(sink)) this.options.db.deleteOutboxCursor(sink);
    this.unsubscribe = this.options.events.subscribe((event) => this.enqueue(event));
    this.running = this.sinks.map((s) => s.run(this.abort.signal).catch((err: unknown) => {
      this.options.logger.error({ err, sink: s.label }, 'notification sink stopped');
    }));
    this.prune();
  }

  /** Where each sink stands. */
  states(): SinkState[] {
    return this.sinks.map((s) => s.state());
  }

  /** Stops taking events and stops the sinks (an entry in flight is sent again at the next start). */
  async stop(): Promise<void> {
    this.unsubscribe?.();
    this.clock.clearTimeout(this.pruneTimer);
    this.abort.abort();
    await Promise.all(this.running);
  }

  /** Synchronous on purpose: the outbox row joins the status write's transaction. */
  private enqueue(event: ObjectEvent): void {
    if (event.type === 'removed') return; // its last phase change (Deleting) was sent already
    const type = notificationTypeOf(event);
    if (type === undefined) return;
    const cloudEvent: CloudEvent = {
      specversion: '1.0', id: randomUUID(), source: eventSource(this.options.node, event.source), type,
      subject: `${event.kind}/${event.namespace}/${event.name}`, time: new Date(event.atMs).toISOString(),
      datacontenttype: 'application/json', data: notificationData(event),
    };
    const body = JSON.stringify(cloudEvent);
    this.options.db.appendOutbox([{ id: cloudEvent.id, key: event.key, type, at: cloudEvent.time, body: this.options.redact?.(body) ?? body }]);
    this.options.metrics?.notifyEnqueued(type);
    for (const sink of this.sinks) sink.wake();
  }

  private prune(): void {
    if (this.abort.signal.aborted) return;
    const delivered = Math.min(...this.sinks.map((s) => s.deliveredSeq));
    const { keepDelivered = 1_000, maxEntries = 100_000 } = this.options;
    const dropped = this.options.db.pruneOutbox(Number.isFinite(delivered) ? delivered : 0, keepDelivered, maxEntries);
    if (dropped > 0) {
      this.options.logger.warn({ dropped }, 'the notification outbox is full: dropped its oldest undelivered events');
      this.options.metrics?.notifyDropped(dropped);
    }
    this.pruneTimer = this.clock.setTimeout(() => this.prune(), this.options.pruneEveryMs ?? 60_000);
  }
}
