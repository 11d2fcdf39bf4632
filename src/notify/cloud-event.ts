/**
 * CloudEvents 1.0 in structured mode (the whole event is the JSON body, content type
 * `application/cloudevents+json`), with the `sequence` extension carrying the outbox order, and
 * the HMAC-SHA256 signature of the exact body bytes in `X-Hyperlet-Signature: sha256=HEX` (the
 * scheme GitHub webhooks use, so receivers verify it the same way).
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { NotificationData } from './notification-types.js';

/** Content type of a notification in structured CloudEvents mode. */
export const CLOUDEVENTS_CONTENT_TYPE = 'application/cloudevents+json; charset=utf-8';
/** Header carrying the HMAC-SHA256 signature of the body, when a secret is set. */
export const SIGNATURE_HEADER = 'x-hyperlet-signature';

/** One notification as sent. */
export interface CloudEvent {
  readonly specversion: '1.0';
  /** Unique per event: receivers de-duplicate by it (a retry resends the same id). */
  readonly id: string;
  /** hyperlet://NODE/SOURCE: the daemon and the source the object came from. */
  readonly source: string;
  readonly type: string;
  /** KIND/NAMESPACE/NAME */
  readonly subject: string;
  readonly time: string;
  readonly datacontenttype: 'application/json';
  /** The outbox position, 20 digits: sorts as text in the order events happened (set when sent). */
  readonly sequence?: string;
  readonly data: NotificationData;
}

/** The CloudEvents `source` of events about objects of `sourceId` on `node`. */
export function eventSource(node: string, sourceId: string): string {
  return `hyperlet://${encodeURIComponent(node)}/${encodeURIComponent(sourceId)}`;
}

/** The `sequence` attribute of outbox position `seq`. */
export function sequenceOf(seq: number): string {
  return String(seq).padStart(20, '0');
}

/** `sha256=HEX` of `body` under `secret`. */
export function signBody(secret: Buffer, body: string | Buffer): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

/** Whether `header` is the signature of `body` under `secret` (constant time). */
export function verifySignature(secret: Buffer, body: string | Buffer, header: string | undefined): boolean {
  if (header === undefined) return false;
  const want = Buffer.from(signBody(secret, body));
  const got = Buffer.from(header);
  return want.length === got.length && timingSafeEqual(want, got);
}
