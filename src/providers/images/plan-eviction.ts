/**
 * Which image-cache entries to remove to get under a size cap: least recently used first, never
 * one a container uses, never one used within the grace period (a container being made from it
 * may not reference it yet). Pure: the cache measures, this decides.
 */

/** One entry of the cache as measured: a downloaded tarball or an unpacked tree. */
export interface CacheEntry {
  readonly path: string;
  readonly bytes: number;
  /** When it was last used (ms since the epoch). */
  readonly lastUsedMs: number;
  /** Whether a container (or VM) still uses it: an overlay lowerdir, a backing file. */
  readonly inUse: boolean;
}

/** The cap and the clock the plan is made for. */
export interface EvictionLimits {
  readonly maxBytes: number;
  readonly nowMs: number;
  /** Entries used more recently than this are kept. */
  readonly graceMs: number;
}

/**
 * The entries to remove, in order, so that what stays is at most `maxBytes`, or as close as the
 * entries that may not go allow. Oldest last use first; ties by path, so the plan is stable.
 */
export function planEviction(entries: readonly CacheEntry[], limits: EvictionLimits): CacheEntry[] {
  let total = entries.reduce((sum, e) => sum + e.bytes, 0);
  if (total <= limits.maxBytes) return [];
  const candidates = entries
    .filter((e) => !e.inUse && limits.nowMs - e.lastUsedMs >= limits.graceMs)
    .sort((a, b) => a.lastUsedMs - b.lastUsedMs || (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const out: CacheEntry[] = [];
  for (const e of candidates) {
    if (total <= limits.maxBytes) break;
    out.push(e);
    total -= e.bytes;
  }
  return out;
}
