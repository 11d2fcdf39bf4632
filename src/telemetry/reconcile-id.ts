/**
 * Ids that tie together the log lines of one reconcile pass: 8 random hex digits, as before, but
 * cut from a pool filled 4 KiB at a time (one randomBytes call per pass cost more than the rest
 * of a zero-latency pass).
 */
import { randomFillSync } from 'node:crypto';

const pool = Buffer.alloc(4096);
let offset = pool.length;

/** A new 8-hex-digit id; not for secrets, only for telling passes apart in logs. */
export function newReconcileId(): string {
  if (offset + 4 > pool.length) {
    randomFillSync(pool);
    offset = 0;
  }
  const id = pool.toString('hex', offset, offset + 4);
  offset += 4;
  return id;
}
