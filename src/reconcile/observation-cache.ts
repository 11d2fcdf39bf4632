/**
 * The latest batch observation of each provider, so a resync of N unchanged objects costs one
 * list call, not N. An entry is dropped as soon as anything may have changed it (an action of
 * ours, a provider event); the reconciler then observes that instance alone.
 *
 * Guarantees: a batch that started before an invalidation never brings back the entry it
 * invalidated (it may predate the change).
 */
import type { ObservedInstance } from '../providers/provider.js';
import type { Clock } from '../shared/clock.js';
import { systemClock } from '../shared/clock.js';

/** One cached observation: the instance, or undefined when the batch did not list it. */
interface Entry { readonly instance: ObservedInstance | undefined }

/** The last batch observation per host name, dropped entry by entry as instances change. */
export class ObservationCache {
  private readonly entries = new Map<string, Entry>();
  private readonly invalidatedAtMs = new Map<string, number>();

  /** `clock` must be the one the caller of `fill` takes `startedAtMs` from. */
  constructor(private readonly clock: Clock = systemClock) {}

  /** Stores a batch taken at `startedAtMs`; host names absent from it are cached as missing. */
  fill(batch: ReadonlyMap<string, ObservedInstance>, wanted: Iterable<string>, startedAtMs: number): void {
    this.entries.clear();
    const fresh = (host: string): boolean => (this.invalidatedAtMs.get(host) ?? -Infinity) < startedAtMs;
    for (const [host, instance] of batch) if (fresh(host)) this.entries.set(host, { instance });
    for (const host of wanted) if (!batch.has(host) && fresh(host)) this.entries.set(host, { instance: undefined });
    this.invalidatedAtMs.clear();
  }

  /** The cached observation, or undefined when there is none (then ask the provider). */
  get(host: string): Entry | undefined {
    return this.entries.get(host);
  }

  /** Drops `host`'s entry: it may have changed (an action of ours, a provider event). */
  invalidate(host: string): void {
    this.entries.delete(host);
    this.invalidatedAtMs.set(host, this.clock.now());
  }
}
