/**
 * Which object events become notifications, and of which CloudEvents type: one table, read top
 * to bottom, first match wins. A status write notifies only when the phase moved; a recorded
 * event notifies by its reason (drift, policy refusals, snapshots, restores) or, for any other
 * Warning, as a failure. Normal events that are none of these (Started, Created...) are not
 * sent: the phase change that follows says the same.
 */
import type { EventRecorded, ObjectEvent, StatusWritten } from '../reconcile/object-events.js';

/** A row of the table: the CloudEvents type, what it reports, and which events it takes. */
export interface NotificationType {
  readonly type: string;
  readonly description: string;
  readonly matches: (event: ObjectEvent) => boolean;
}

const recorded = (event: ObjectEvent, eventType: 'Normal' | 'Warning', reasons?: readonly string[]): event is EventRecorded =>
  event.type === 'record' && event.eventType === eventType && (reasons === undefined || reasons.includes(event.reason));

/** Reasons of a refusal by the host policy (issue 10): Ready=False and one Warning, nothing done. */
export const POLICY_REFUSAL_REASONS: readonly string[] = ['PolicyDenied', 'QuotaExceeded'];

/** Every notification type, with which object events it is sent for. */
export const NOTIFICATION_TYPES: readonly NotificationType[] = [
  {
    type: 'io.hyperlet.object.phase.changed', description: 'The phase moved (Pending, Creating, Running, Stopped, Failed, Deleting…)',
    matches: (e) => e.type === 'status' && e.previous?.phase !== e.status.phase,
  },
  {
    type: 'io.hyperlet.object.drifted',
    description: 'The instance was changed outside hyperlet and is left so (driftPolicy Report, or paused)',
    matches: (e) => recorded(e, 'Warning', ['Drifted']),
  },
  {
    type: 'io.hyperlet.policy.refused', description: 'The host policy refused the object; nothing was created, changed or deleted for it',
    matches: (e) => recorded(e, 'Warning', POLICY_REFUSAL_REASONS),
  },
  {
    type: 'io.hyperlet.snapshot.created', description: 'A snapshot of the instance was taken (spec.snapshots schedule)',
    matches: (e) => recorded(e, 'Normal', ['SnapshotTaken']),
  },
  {
    type: 'io.hyperlet.snapshot.restored', description: 'The instance was restored from a snapshot (hyperlet.io/restore-request)',
    matches: (e) => recorded(e, 'Normal', ['Restored']),
  },
  {
    type: 'io.hyperlet.object.failed', description: 'A step failed (create, start, stop, delete…); hyperlet retries with backoff',
    matches: (e) => recorded(e, 'Warning'),
  },
];

/** The CloudEvents type `event` is notified as, or undefined when it is not notified. */
export function notificationTypeOf(event: ObjectEvent): string | undefined {
  return NOTIFICATION_TYPES.find((t) => t.matches(event))?.type;
}

/** What a notification's `data` carries: who, and what happened; never the spec. */
export interface NotificationData {
  readonly kind: string;
  readonly namespace: string;
  readonly name: string;
  /** The object's stable id. */
  readonly uid: string;
  /** The source id that declared it ("dir", "git", "kube"). */
  readonly source: string;
  readonly generation: number;
  readonly node?: string;
  readonly phase?: string;
  readonly previousPhase?: string;
  /** Ready's status, reason and message after a phase change. */
  readonly ready?: { readonly status: string; readonly reason: string; readonly message: string };
  readonly reason?: string;
  readonly message?: string;
}

/** The `data` of the notification for `event`. */
export function notificationData(event: StatusWritten | EventRecorded): NotificationData {
  const identity = {
    kind: event.kind, namespace: event.namespace, name: event.name, uid: event.uid, source: event.source, generation: event.generation,
  };
  if (event.type === 'record') return { ...identity, reason: event.reason, message: event.message };
  const ready = event.status.conditions.find((c) => c.type === 'Ready');
  return {
    ...identity,
    ...(event.status.node === undefined ? {} : { node: event.status.node }),
    phase: event.status.phase,
    ...(event.previous === undefined ? {} : { previousPhase: event.previous.phase }),
    ...(ready === undefined ? {} : { ready: { status: ready.status, reason: ready.reason, message: ready.message } }),
  };
}
