/**
 * What happens to objects, as a stream: every status write and every recorded event (the audit
 * log's entries, Kubernetes Events), published to whoever listens (the notification outbox, the
 * HTTP event stream). `withObjectEvents` wraps a source's StatusWriter and Recorder so nothing
 * else in the core has to remember to publish.
 *
 * Guarantees: listeners are called synchronously, in publication order, once per event; a
 * listener that throws is reported to `onError` and never affects the writer or other listeners.
 * With `publish: 'queued'` (writers that queue the write behind in the state DB) the event is
 * published in the same synchronous step as the write is queued, so a listener writing to the
 * same DB lands in the same transaction; with `'written'` (the API server) only after the write
 * succeeded. A record forgotten (dir, git) or a finalizer released (kube) publishes `removed`.
 * Caveats: events carry object identity, phase, conditions, reason and message, never the spec
 * (environment values stay out).
 */
import type { Condition, Phase, Status } from '../api/v1alpha1/types.js';
import { type Clock, systemClock } from '../shared/clock.js';
import type { Desired } from '../store/desired.js';
import { type ObjectKey, parseKey } from '../store/object-key.js';
import type { EventType, FinalizerGate, ObjectRecords, Recorder, SourceBackend, SourceIdentity, StatusWriter } from './backend.js';

/** Which object an event is about: enough to name it everywhere, nothing of its spec. */
export interface ObjectIdentity {
  readonly key: ObjectKey;
  readonly source: string;
  readonly kind: string;
  readonly namespace: string;
  readonly name: string;
  /** The object's stable id (state DB id or the API server's uid). */
  readonly uid: string;
  readonly generation: number;
}

/** The part of a status that events carry (no details, no addresses of other objects). */
export interface StatusSummary {
  readonly phase: Phase;
  readonly conditions: readonly Condition[];
  readonly node?: string;
  readonly addresses?: readonly string[];
}

/** A status was written for an object. */
export interface StatusWritten extends ObjectIdentity {
  readonly type: 'status';
  /** Milliseconds since the epoch, from the hub's clock. */
  readonly atMs: number;
  readonly status: StatusSummary;
  /** The status written before, if any (after a restart: the one read back from the store). */
  readonly previous?: StatusSummary;
}

/** An event was recorded for an object (an action taken, a failure, drift, a refusal). */
export interface EventRecorded extends ObjectIdentity {
  readonly type: 'record';
  readonly atMs: number;
  readonly eventType: EventType;
  readonly reason: string;
  readonly message: string;
}

/** hyperlet let go of an object: its instance is gone (or kept on purpose), its record forgotten. */
export interface ObjectRemoved {
  readonly type: 'removed';
  readonly atMs: number;
  readonly key: ObjectKey;
  readonly source: string;
  readonly kind: string;
  readonly namespace: string;
  readonly name: string;
}

/** Something that happened to an object: a status written, an event recorded, the object let go. */
export type ObjectEvent = StatusWritten | EventRecorded | ObjectRemoved;

/** Called synchronously, in order, with each object event. */
export type ObjectEventListener = (event: ObjectEvent) => void;

/** The hub: publish to every subscriber, synchronously and in order. */
export class ObjectEvents {
  private readonly listeners = new Set<ObjectEventListener>();

  constructor(private readonly options: { clock?: Clock; onError?: (err: unknown) => void } = {}) {}

  /** Calls `listener` with every event published from now on; returns the unsubscribe function. */
  subscribe(listener: ObjectEventListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** How many listeners there are (the HTTP stream counts its clients with it). */
  get size(): number {
    return this.listeners.size;
  }

  /** The hub's time, for events built outside it. */
  nowMs(): number {
    return (this.options.clock ?? systemClock).now();
  }

  /** Delivers `event` to every listener; a listener's error goes to onError, never to the caller. */
  publish(event: ObjectEvent): void {
    for (const listener of [...this.listeners]) {
      try {
        listener(event);
      } catch (err) {
        this.options.onError?.(err);
      }
    }
  }
}

/** The identity of `d` as events name it. */
export function identityOf(d: Desired): ObjectIdentity {
  const { namespace, name } = parseKey(d.key);
  return { key: d.key, source: d.source, kind: d.object.kind, namespace, name, uid: d.id, generation: d.generation };
}

/**
 * `text` with every environment value of `d` replaced by "***": a tool's error may echo a
 * config line, and events leave the host. Values shorter than 4 characters are left alone (a
 * "1" would blank every digit and hide nothing worth hiding).
 */
export function redactEnvironmentValues(d: Desired, text: string): string {
  const spec = d.object.spec as { environment?: Record<string, unknown> };
  const values = Object.values(spec.environment ?? {}).filter((v): v is string => typeof v === 'string' && v.length >= 4);
  let out = text;
  for (const v of values.sort((a, b) => b.length - a.length)) out = out.split(v).join('***');
  return out;
}

/** The part of `status` events carry, condition messages redacted as `redactEnvironmentValues` does. */
export function summarize(d: Desired, status: Status): StatusSummary {
  return {
    phase: status.phase, conditions: status.conditions.map((c) => ({ ...c, message: redactEnvironmentValues(d, c.message) })),
    ...(status.node === undefined ? {} : { node: status.node }),
    ...(status.addresses === undefined ? {} : { addresses: status.addresses }),
  };
}

/**
 * `backend` with a StatusWriter and a Recorder that also publish to `events`. `publish` says
 * when: 'queued' right as the inner writer returns (it queued the write synchronously), or
 * 'written' once its promise resolved (a remote write that may fail).
 */
export function withObjectEvents<S extends SourceIdentity>(
  backend: SourceBackend<S>, events: ObjectEvents, publish: 'queued' | 'written',
): SourceBackend<S> {
  const inner = backend.statusWriter;
  const statusWriter: StatusWriter = {
    lastWritten: (key) => inner.lastWritten(key),
    write: async (d, status, signal) => {
      const before = inner.lastWritten(d.key);
      const event = (): StatusWritten => ({
        type: 'status', atMs: events.nowMs(), ...identityOf(d), status: summarize(d, status),
        ...(before === undefined ? {} : { previous: summarize(d, before) }),
      });
      const pending = inner.write(d, status, signal);
      if (publish === 'queued') {
        events.publish(event());
        return pending;
      }
      await pending;
      events.publish(event());
    },
  };
  const recorder: Recorder = {
    record: (d, type, reason, message) => {
      backend.recorder.record(d, type, reason, message);
      const redacted = redactEnvironmentValues(d, message);
      events.publish({ type: 'record', atMs: events.nowMs(), ...identityOf(d), eventType: type, reason, message: redacted });
    },
  };
  const removed = (key: ObjectKey): void => {
    const { source, kind, namespace, name } = parseKey(key);
    events.publish({ type: 'removed', atMs: events.nowMs(), key, source, kind, namespace, name });
  };
  const records = backend.records;
  const finalizers = backend.finalizers;
  return {
    ...backend, statusWriter, recorder,
    ...(records === undefined ? {} : {
      records: {
        keys: () => records.keys(),
        lastApplied: (key) => records.lastApplied(key),
        remember: (d) => records.remember(d),
        ...(records.withDependencies === undefined ? {} : { withDependencies: () => records.withDependencies?.() ?? [] }),
        forget: (key) => {
          // Forgetting a key nothing was known of (an object gone before it was ever acted on) is no news.
          const known = inner.lastWritten(key) !== undefined || records.lastApplied(key) !== undefined;
          records.forget(key);
          if (known) removed(key);
        },
      } satisfies ObjectRecords,
    }),
    ...(finalizers === undefined ? {} : {
      finalizers: {
        ensure: (d, signal) => finalizers.ensure(d, signal),
        release: async (d, signal) => {
          await finalizers.release(d, signal);
          if (records === undefined) removed(d.key);
        },
      } satisfies FinalizerGate,
    }),
  };
}
