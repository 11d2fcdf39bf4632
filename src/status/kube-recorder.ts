/**
 * Records what hyperlet did as core/v1 Events on the object, deduplicated the way client-go's
 * event recorder does it (EventCorrelator):
 * - The same event (object, type, reason, message, source) again patches the existing Event:
 *   count + 1 and a new lastTimestamp, instead of creating another one. The memory of sent
 *   events is an LRU of `cacheSize` entries (client-go: 4096).
 * - A spam filter per object: a token bucket of `burst` events refilled one per `refillMs`
 *   (client-go: 25, one per 5 min); events beyond it are dropped.
 * - An Event that expired meanwhile (404 on the patch) is created again with count 1.
 * - While the API server is unreachable or failing (no answer, 429, 5xx), a write is tried again
 *   up to `maxTries` times, `retryDelayMs` apart (client-go: 12 times, 10 s).
 * Events are best effort: `record` never throws and never blocks (client-go's broadcaster): it
 * queues the event, and at most `maxInFlight` writes (default 2) are sent at once, in the order
 * recorded, so a burst of events never competes with the workers' status writes for the API
 * server. A repeat recorded while the same event still waits in the queue is folded into it (one
 * write, its count raised), and beyond `maxQueued` waiting events (default 4096) new ones are
 * dropped and logged. Writes of one event are sent in order, one at a time. A write waiting to be
 * retried gives its place to others. `flush` waits for everything recorded so far (shutdown, tests).
 */
import { type CoreV1Event, CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { canonicalJson, type Desired } from '../store/desired.js';
import { isNotFound, kubeError, statusCodeOf } from '../kube/kube-client.js';
import { type Clock, systemClock } from '../shared/clock.js';
import type { EventType, Recorder } from '../reconcile/backend.js';

/** Where Events go (client-go's EventSink): the API server, or a fake in unit tests. */
export interface EventSink {
  create(event: CoreV1Event): Promise<void>;
  /** Sets count and lastTimestamp of an existing Event; a 404 error when it expired. */
  update(namespace: string, name: string, count: number, lastTimestamp: Date): Promise<void>;
}

/** The EventSink of the API server: core/v1 Events, repeats by JSON patch. */
export class KubeEventSink implements EventSink {
  private readonly api: CoreV1Api;

  constructor(kubeConfig: KubeConfig) {
    this.api = kubeConfig.makeApiClient(CoreV1Api);
  }

  async create(event: CoreV1Event): Promise<void> {
    await this.api.createNamespacedEvent({ namespace: event.metadata.namespace ?? 'default', body: event });
  }

  async update(namespace: string, name: string, count: number, lastTimestamp: Date): Promise<void> {
    await this.api.patchNamespacedEvent({
      name, namespace,
      body: [
        { op: 'replace', path: '/count', value: count },
        { op: 'replace', path: '/lastTimestamp', value: lastTimestamp.toISOString() },
      ],
    });
  }
}

/** Where events go, and the limits of deduplication, spam filtering and retries. */
export interface KubeRecorderOptions {
  readonly sink: EventSink;
  readonly logger: Logger;
  /** source.component of the Events (default "hyperlet"). */
  readonly component?: string;
  /** source.host: the node the agent runs for. */
  readonly host?: string;
  readonly clock?: Clock;
  readonly cacheSize?: number;
  readonly burst?: number;
  readonly refillMs?: number;
  /** Attempts per event while the API server is unreachable or failing (client-go: 12, 10 s apart). */
  readonly maxTries?: number;
  readonly retryDelayMs?: number;
  /** Event writes sent at once (default 2). */
  readonly maxInFlight?: number;
  /**
   * Events waiting to be sent before new ones are dropped (default 4096; client-go's maxQueuedEvents
   * is 1000, which a burst of 1,000 creations, two events each, overflows at --concurrency 16).
   */
  readonly maxQueued?: number;
}

/** Worth another attempt: no answer at all (connection refused or reset), 429 or a 5xx. */
function retriable(err: unknown): boolean {
  const code = statusCodeOf((err as { cause?: unknown }).cause ?? err);
  return code === undefined || code === 429 || code >= 500;
}

/** An event waiting to be sent (or to be retried). */
interface QueuedEvent {
  readonly key: string;
  readonly desired: Desired;
  readonly type: EventType;
  readonly reason: string;
  readonly message: string;
  /** Occurrences this write reports (repeats recorded while it waited are folded in). */
  repeats: number;
  /** Attempts made so far; from the second on, the occurrences are counted already. */
  attempts: number;
}

interface SentEvent {
  readonly name: string;
  readonly namespace: string;
  count: number;
  readonly firstTimestamp: Date;
}

/** Longest message kept; client-go's events API caps a note at 1 KiB. */
const MAX_MESSAGE_LENGTH = 1024;

/** Recorder of the kube source; see the file comment. */
export class KubeRecorder implements Recorder {
  private readonly sink: EventSink;
  private readonly log: Logger;
  private readonly clock: Clock;
  private readonly component: string;
  private readonly cacheSize: number;
  private readonly burst: number;
  private readonly refillMs: number;
  private readonly maxTries: number;
  private readonly retryDelayMs: number;
  private readonly maxInFlight: number;
  private readonly maxQueued: number;
  private readonly sent = new Map<string, SentEvent>();
  private readonly buckets = new Map<string, { tokens: number; atMs: number }>();
  /** Events waiting for a free place, in the order recorded (retries go first). */
  private queue: QueuedEvent[] = [];
  /** Queued events not yet tried, by event key: repeats are folded into them. */
  private readonly waiting = new Map<string, QueuedEvent>();
  /** Keys with a write in flight or a retry pending: their next write waits (one at a time per event). */
  private readonly busy = new Set<string>();
  private inFlight = 0;
  private idleWaiters: (() => void)[] = [];
  private sequence = 0;

  constructor(private readonly options: KubeRecorderOptions) {
    this.sink = options.sink;
    this.log = options.logger.child({ component: 'kube-recorder' });
    this.clock = options.clock ?? systemClock;
    this.component = options.component ?? 'hyperlet';
    this.cacheSize = options.cacheSize ?? 4096;
    this.burst = options.burst ?? 25;
    this.refillMs = options.refillMs ?? 5 * 60_000;
    this.maxTries = options.maxTries ?? 12;
    this.retryDelayMs = options.retryDelayMs ?? 10_000;
    this.maxInFlight = Math.max(1, options.maxInFlight ?? 2);
    this.maxQueued = options.maxQueued ?? 4096;
  }

  record(d: Desired, type: EventType, reason: string, message: string): void {
    const { metadata, kind, apiVersion } = d.object;
    if (!this.take(d.id !== '' ? d.id : d.key)) {
      this.log.debug({ key: d.key, reason }, 'event dropped by the spam filter');
      return;
    }
    const text = message.length > MAX_MESSAGE_LENGTH ? `${message.slice(0, MAX_MESSAGE_LENGTH - 3)}...` : message;
    const key = canonicalJson([this.component, this.options.host ?? '', apiVersion, kind, metadata.namespace, metadata.name, d.id, type, reason, text]);
    const queued = this.waiting.get(key);
    if (queued !== undefined) {
      queued.repeats++;
      return;
    }
    if (this.queue.length >= this.maxQueued) {
      this.log.warn({ key: d.key, reason }, 'event dropped: too many events waiting to be sent');
      return;
    }
    const event: QueuedEvent = { key, desired: d, type, reason, message: text, repeats: 1, attempts: 0 };
    this.waiting.set(key, event);
    this.queue.push(event);
    this.pump();
  }

  /** Resolves when every event recorded so far has been sent (or failed). */
  flush(): Promise<void> {
    if (this.idle()) return Promise.resolve();
    return new Promise((resolve) => { this.idleWaiters.push(resolve); });
  }

  /** Events waiting to be sent (metrics, tests). */
  get queued(): number {
    return this.queue.length;
  }

  private idle(): boolean {
    return this.queue.length === 0 && this.inFlight === 0 && this.busy.size === 0;
  }

  /** Starts writes while places are free: the oldest queued event whose key has nothing in flight. */
  private pump(): void {
    while (this.inFlight < this.maxInFlight) {
      const index = this.queue.findIndex((e) => !this.busy.has(e.key));
      if (index < 0) break;
      const [event] = this.queue.splice(index, 1) as [QueuedEvent];
      if (this.waiting.get(event.key) === event) this.waiting.delete(event.key);
      this.busy.add(event.key);
      this.inFlight++;
      void this.attempt(event);
    }
    if (this.idle()) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const resolve of waiters) resolve();
    }
  }

  /** One attempt at `event`; a retriable failure puts it back at the front after the delay, holding no place meanwhile. */
  private async attempt(event: QueuedEvent): Promise<void> {
    event.attempts++;
    let retryInMs: number | undefined;
    try {
      await this.send(event);
    } catch (err) {
      if (event.attempts >= this.maxTries || !retriable(err)) {
        this.log.warn({ err, key: event.desired.key, reason: event.reason, attempt: event.attempts }, 'cannot record event');
      } else {
        // client-go: the first retry at a random point of the interval, so agents do not retry in step.
        retryInMs = event.attempts === 1 ? Math.random() * this.retryDelayMs : this.retryDelayMs;
      }
    }
    this.inFlight--;
    if (retryInMs === undefined) {
      this.busy.delete(event.key);
    } else {
      this.clock.setTimeout(() => {
        this.busy.delete(event.key);
        this.queue.unshift(event);
        this.pump();
      }, retryInMs);
    }
    this.pump();
  }

  private take(object: string): boolean {
    const now = this.clock.now();
    const b = this.buckets.get(object) ?? { tokens: this.burst, atMs: now };
    const refill = Math.floor((now - b.atMs) / this.refillMs);
    if (refill > 0) {
      b.tokens = Math.min(this.burst, b.tokens + refill);
      b.atMs += refill * this.refillMs;
    }
    if (b.tokens >= this.burst) b.atMs = now;
    this.buckets.delete(object);
    this.buckets.set(object, b);
    if (this.buckets.size > this.cacheSize) this.buckets.delete(this.buckets.keys().next().value as string);
    if (b.tokens <= 0) return false;
    b.tokens--;
    return true;
  }

  private async send(queued: QueuedEvent): Promise<void> {
    const { key, desired: d, type, reason, message, repeats } = queued;
    const now = new Date(this.clock.now());
    const previous = this.sent.get(key);
    if (previous !== undefined) {
      if (queued.attempts === 1) previous.count += repeats;
      this.remember(key, previous);
      try {
        await this.sink.update(previous.namespace, previous.name, previous.count, now);
        return;
      } catch (err) {
        if (!isNotFound(err)) throw kubeError(err, `update event ${previous.name}`);
        // The Event expired (kube-apiserver keeps them an hour): start it again.
      }
    }
    const { metadata, kind, apiVersion } = d.object;
    // client-go names events NAME.<unix nanoseconds in hex>; the sequence keeps names unique within a millisecond.
    const name = `${metadata.name}.${(BigInt(now.getTime()) * 1_000_000n + BigInt(this.sequence++ % 1_000_000)).toString(16)}`;
    const event: SentEvent = { name, namespace: metadata.namespace, count: repeats, firstTimestamp: now };
    try {
      await this.sink.create({
          metadata: { name, namespace: metadata.namespace },
          involvedObject: {
            apiVersion, kind, name: metadata.name, namespace: metadata.namespace,
            ...(d.id !== '' ? { uid: d.id } : {}),
            ...(metadata.resourceVersion !== undefined ? { resourceVersion: metadata.resourceVersion } : {}),
          },
          type, reason, message,
          source: { component: this.component, ...(this.options.host !== undefined ? { host: this.options.host } : {}) },
          firstTimestamp: now, lastTimestamp: now, count: repeats,
          reportingComponent: this.component,
          reportingInstance: this.options.host ?? '',
      });
    } catch (err) {
      throw kubeError(err, `create event ${name}`);
    }
    this.remember(key, event);
  }

  private remember(key: string, event: SentEvent): void {
    this.sent.delete(key);
    this.sent.set(key, event);
    if (this.sent.size > this.cacheSize) this.sent.delete(this.sent.keys().next().value as string);
  }
}
