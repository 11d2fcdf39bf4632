/**
 * Delivers the outbox to one webhook URL, in outbox order, one event at a time: POST the
 * CloudEvent (signed when a secret is set), and only when the receiver answers 2xx move this
 * sink's cursor past it. Failures (connection refused, timeouts, 408, 425, 429, 5xx) are
 * retried with jittered exponential backoff, through a circuit breaker (cockatiel) that stops
 * sending after consecutive failures and lets one probe through once its half-open delay passed.
 *
 * Guarantees: every outbox entry is sent until the receiver takes it (at least once; the same
 * CloudEvents id on every attempt, so a receiver that de-duplicates by id sees each event
 * exactly once); entries reach the receiver in outbox order, so events about one object arrive
 * in the order they happened; the cursor is on disk before the next entry is sent, so a restart
 * resumes after the last entry taken.
 * Caveats: a receiver answering another 4xx (or a redirect) refuses the event for good: it is
 * counted as rejected, logged and skipped, since sending it again would be refused again.
 * Never logs the secret, the URL's credentials or query, or an event's body.
 */
import {
  CircuitState, ConsecutiveBreaker, ExponentialBackoff, type IBackoff, type IBackoffFactory,
  circuitBreaker, halfJitterGenerator, handleWhen, isBrokenCircuitError,
} from 'cockatiel';
import type { Logger } from 'pino';
import { type Clock, sleep, systemClock } from '../shared/clock.js';
import type { OutboxEntry, StateDb } from '../state/state-db.js';
import type { Metrics } from '../telemetry/metrics.js';
import { CLOUDEVENTS_CONTENT_TYPE, SIGNATURE_HEADER, sequenceOf, signBody } from './cloud-event.js';

/** One HTTP request as the sink makes it; the default sends it with fetch. */
export interface WebhookRequest {
  readonly url: string;
  readonly body: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly signal: AbortSignal;
}

/** Sends a request; resolves with the response status, rejects on a network error or abort. */
export type WebhookTransport = (request: WebhookRequest) => Promise<number>;

/** One sink's URL, outbox, signing secret, timeouts and backoff. */
export interface WebhookSinkOptions {
  readonly url: string;
  readonly db: Pick<StateDb, 'outboxAfter' | 'outboxCursor' | 'setOutboxCursor' | 'outboxLastSeq' | 'outboxCountAfter'>;
  readonly logger: Logger;
  /** HMAC-SHA256 key for X-Hyperlet-Signature; no header without it. */
  readonly secret?: Buffer;
  readonly clock?: Clock;
  readonly metrics?: Metrics;
  /** Bound on one request (default 10 s). */
  readonly timeoutMs?: number;
  /** Retry delays (default: jitteredBackoff(500, 60 000)). */
  readonly backoff?: IBackoffFactory<unknown>;
  /** Consecutive failures that open the circuit (default 5). */
  readonly breakAfter?: number;
  /** How long the circuit stays open before one probe (default: 5 s doubling to 60 s). */
  readonly halfOpenAfter?: IBackoffFactory<unknown>;
  readonly transport?: WebhookTransport;
}

/** The sink's state, for metrics and the dashboard. */
export interface SinkState {
  readonly sink: string;
  readonly pending: number;
  readonly circuit: 'closed' | 'open' | 'halfOpen';
  readonly delivered: number;
  readonly lastError?: string;
}

/** A non-2xx answer. `retryable` says whether sending again may succeed. */
class DeliveryError extends Error {
  readonly isDeliveryError = true;
  constructor(message: string, readonly retryable: boolean) {
    super(message);
  }
}

const isRejection = (err: unknown): boolean =>
  (err as Partial<DeliveryError> | undefined)?.isDeliveryError === true && !(err as DeliveryError).retryable;

/**
 * Exponential delays from `initialMs` doubling to `maxMs`, each drawn from the upper half of its
 * step ([d/2, d)). Half jitter rather than cockatiel's default decorrelated jitter, which clamps
 * to exactly `maxMs` once it gets there: hosts retrying a receiver that was down for long would
 * then stay in step. 500 ms–60 s: a receiver restarting is back in seconds; one down for long is
 * probed about once a minute.
 */
export function jitteredBackoff(initialMs: number, maxMs: number): IBackoffFactory<unknown> {
  return new ExponentialBackoff({ generator: halfJitterGenerator, initialDelay: initialMs, maxDelay: maxMs });
}

const CIRCUIT_NAMES: Readonly<Record<CircuitState, SinkState['circuit']>> = {
  [CircuitState.Closed]: 'closed', [CircuitState.HalfOpen]: 'halfOpen', [CircuitState.Open]: 'open', [CircuitState.Isolated]: 'open',
};

/** The URL as shown in logs and metrics: no credentials, no query, no fragment. */
export function sinkLabel(url: string): string {
  const u = new URL(url);
  return `${u.protocol}//${u.host}${u.pathname}`;
}

/** POST with fetch; redirects are not followed (a 3xx is an answer, and refuses the event). */
export const fetchTransport: WebhookTransport = async (request) => {
  const res = await fetch(request.url, {
    method: 'POST', body: request.body, headers: request.headers, signal: request.signal, redirect: 'manual',
  });
  await res.arrayBuffer().catch(() => undefined);
  return res.status;
};

/** Delivers the outbox to one URL in order, at least once, through a circuit breaker (see the module comment). */
export class WebhookSink {
  readonly label: string;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly breaker;
  private readonly backoff: IBackoffFactory<unknown>;
  private readonly transport: WebhookTransport;
  private cursor = 0;
  private wakeUp: (() => void) | undefined;
  private woken = false;
  private deliveredCount = 0;
  private lastError: string | undefined;

  constructor(private readonly options: WebhookSinkOptions) {
    this.label = sinkLabel(options.url);
    this.clock = options.clock ?? systemClock;
    this.log = options.logger.child({ sink: this.label });
    this.transport = options.transport ?? fetchTransport;
    this.backoff = options.backoff ?? jitteredBackoff(500, 60_000);
    this.breaker = circuitBreaker(handleWhen((err) => !isRejection(err)), {
      breaker: new ConsecutiveBreaker(options.breakAfter ?? 5),
      halfOpenAfter: options.halfOpenAfter ?? new ExponentialBackoff({ initialDelay: 5_000, maxDelay: 60_000 }),
    });
    this.breaker.onBreak(() => this.log.warn('circuit open: the receiver keeps failing; probing it now and then'));
    this.breaker.onReset(() => this.log.info('circuit closed: the receiver takes events again'));
  }

  /** Where this sink stands. */
  state(): SinkState {
    const circuit = CIRCUIT_NAMES[this.breaker.state];
    return {
      sink: this.label, pending: this.options.db.outboxCountAfter(this.cursor), circuit, delivered: this.deliveredCount,
      ...(this.lastError === undefined ? {} : { lastError: this.lastError }),
    };
  }

  /** The last outbox position this sink has delivered. */
  get deliveredSeq(): number {
    return this.cursor;
  }

  /** New entries are in the outbox: look now. */
  wake(): void {
    this.woken = true;
    this.wakeUp?.();
  }

  /**
   * Delivers until `signal` aborts. A sink never seen before starts after the newest entry (it
   * gets what happens from now on, not the history).
   */
  async run(signal: AbortSignal): Promise<void> {
    const saved = this.options.db.outboxCursor(this.label);
    this.cursor = saved ?? this.options.db.outboxLastSeq();
    if (saved === undefined) this.options.db.setOutboxCursor(this.label, this.cursor);
    while (!signal.aborted) {
      this.woken = false;
      const batch = this.options.db.outboxAfter(this.cursor, 100);
      if (batch.length === 0) {
        await this.waitForWake(signal);
        continue;
      }
      for (const entry of batch) {
        const delivered = await this.deliver(entry, signal);
        if (!delivered) return; // aborted
        this.cursor = entry.seq;
        this.options.db.setOutboxCursor(this.label, entry.seq);
      }
    }
  }

  /** Sends `entry` until it is taken or refused (true), or `signal` aborts (false). */
  private async deliver(entry: OutboxEntry, signal: AbortSignal): Promise<boolean> {
    const body = withSequence(entry);
    const headers: Record<string, string> = { 'content-type': CLOUDEVENTS_CONTENT_TYPE, 'user-agent': 'hyperlet' };
    if (this.options.secret !== undefined) headers[SIGNATURE_HEADER] = signBody(this.options.secret, body);
    let backoff: IBackoff<unknown> | undefined;
    for (let attempt = 1; ; attempt++) {
      if (signal.aborted) return false;
      try {
        await this.breaker.execute(() => this.post(body, headers, signal));
        this.deliveredCount++;
        this.lastError = undefined;
        this.options.metrics?.notifyDelivered(this.label, 'delivered', (this.clock.now() - Date.parse(entry.at)) / 1000);
        return true;
      } catch (err) {
        if (signal.aborted) return false;
        if (isRejection(err)) {
          const reason = (err as Error).message;
          this.log.warn({ id: entry.id, type: entry.type, key: entry.key, reason }, 'the receiver refused the event; skipping it');
          this.options.metrics?.notifyDelivered(this.label, 'rejected');
          return true;
        }
        if (!isBrokenCircuitError(err)) {
          this.lastError = (err as Error).message;
          this.options.metrics?.notifyDelivered(this.label, 'failed');
          if (attempt === 1) this.log.warn({ id: entry.id, reason: this.lastError }, 'cannot deliver the event; retrying with backoff');
        }
        backoff = backoff === undefined ? this.backoff.next(undefined) : backoff.next(undefined);
        await sleep(this.clock, backoff.duration, signal);
      }
    }
  }

  private async post(body: string, headers: Record<string, string>, signal: AbortSignal): Promise<void> {
    const timeout = new AbortController();
    const onAbort = (): void => timeout.abort();
    signal.addEventListener('abort', onAbort, { once: true });
    const timer = this.clock.setTimeout(() => timeout.abort(), this.options.timeoutMs ?? 10_000);
    let status: number;
    try {
      status = await this.transport({ url: this.options.url, body, headers, signal: timeout.signal });
    } catch (err) {
      throw new DeliveryError(timeout.signal.aborted && !signal.aborted
        ? `no answer within ${this.options.timeoutMs ?? 10_000} ms`
        : `cannot reach the receiver: ${describeNetworkError(err)}`, true);
    } finally {
      this.clock.clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
    }
    if (status >= 200 && status < 300) return;
    const retryable = status === 408 || status === 425 || status === 429 || status >= 500;
    throw new DeliveryError(`the receiver answered ${status}`, retryable);
  }


  private waitForWake(signal: AbortSignal): Promise<void> {
    if (this.woken) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        this.wakeUp = undefined;
        signal.removeEventListener('abort', done);
        resolve();
      };
      this.wakeUp = done;
      signal.addEventListener('abort', done, { once: true });
    });
  }
}

/** The stored body with its `sequence` attribute set to the entry's outbox position. */
function withSequence(entry: OutboxEntry): string {
  return JSON.stringify({ ...(JSON.parse(entry.body) as object), sequence: sequenceOf(entry.seq) });
}

/** fetch's "fetch failed" hides the reason in `cause` (ECONNREFUSED, ECONNRESET…). */
function describeNetworkError(err: unknown): string {
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  return cause?.code ?? cause?.message ?? (err as Error).message;
}
