/**
 * Whether a provider can work on this host now. A failing provider is probed again at most every
 * `retryMs`, so objects of that kind report ProviderUnavailable without hammering a dead daemon,
 * and everything else keeps being served.
 */
import type { Logger } from 'pino';
import { type Provider, isProviderUnavailableError } from '../providers/provider.js';
import type { Clock } from '../shared/clock.js';
import { systemClock } from '../shared/clock.js';
import { errorMessage } from '../shared/errors.js';

/** A provider's health: usable, or not and why (the provider's own words). */
export type Health = { readonly ok: true } | { readonly ok: false; readonly reason: string };

/** Options of a ProviderHealth beyond the provider and logger. */
export interface ProviderHealthOptions {
  /** How long a failed probe is trusted before the next check probes again (default 5 s). */
  readonly retryMs?: number;
  readonly clock?: Clock;
}

/** One provider's health, probed lazily and shared by every reconcile of its kind. */
export class ProviderHealth {
  private state: Health | undefined;
  private checkedAtMs = 0;
  private probing: Promise<Health> | undefined;
  private readonly retryMs: number;
  private readonly clock: Clock;

  constructor(private readonly provider: Provider, private readonly logger: Logger, options: ProviderHealthOptions = {}) {
    this.retryMs = options.retryMs ?? 5_000;
    this.clock = options.clock ?? systemClock;
  }

  /** The cached health; probes when unknown, or when failing and `retryMs` has passed. */
  async check(signal: AbortSignal): Promise<Health> {
    if (this.state?.ok === true) return this.state;
    if (this.state !== undefined && this.clock.now() - this.checkedAtMs < this.retryMs) return this.state;
    this.probing ??= this.probe(signal).finally(() => { this.probing = undefined; });
    return this.probing;
  }

  /** Records that a call found the provider unavailable. */
  markUnavailable(err: unknown): void {
    if (this.state?.ok !== false) this.logger.warn({ reason: errorMessage(err) }, 'provider unavailable');
    this.state = { ok: false, reason: errorMessage(err) };
    this.checkedAtMs = this.clock.now();
  }

  /** The last known health, without probing (for /readyz). */
  get current(): Health | undefined {
    return this.state;
  }

  private async probe(signal: AbortSignal): Promise<Health> {
    try {
      await this.provider.probe(signal);
      if (this.state?.ok === false) this.logger.info('provider available again');
      this.state = { ok: true };
      this.checkedAtMs = this.clock.now();
    } catch (err) {
      this.markUnavailable(err);
    }
    return this.state ?? { ok: false, reason: 'unknown' };
  }

  /** Re-probe at the next check (after a resync failed, say). */
  reset(): void {
    this.state = undefined;
  }

  /** Whether `err` says the provider is unavailable (rather than this call failing). */
  static isUnavailable(err: unknown): boolean {
    return isProviderUnavailableError(err);
  }
}
