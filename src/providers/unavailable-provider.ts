/**
 * Stands in for a provider that cannot run on this host (its tools or daemon are missing, or it
 * failed to load). Every object of its kind then reports Ready=False, reason ProviderUnavailable,
 * with the cause, while the daemon keeps serving every other kind.
 */
import type { Kind } from '../api/v1alpha1/group.js';
import { type ObservedInstance, type Provider, ProviderUnavailableError } from './provider.js';

/** A provider for a kind this host cannot serve: probe() says why, every other call throws ProviderUnavailableError. */
export class UnavailableProvider<K extends Kind> implements Provider<K> {
  constructor(readonly name: 'lxc' | 'libvirt', readonly kind: K, private readonly reason: string) {}

  private refuse(): never {
    throw new ProviderUnavailableError(this.reason);
  }

  probe(): Promise<void> { return Promise.reject(new ProviderUnavailableError(this.reason)); }
  observeAll(): Promise<ReadonlyMap<string, ObservedInstance>> { return Promise.resolve(this.refuse()); }
  observe(): Promise<ObservedInstance | undefined> { return Promise.resolve(this.refuse()); }
  create(): Promise<void> { return Promise.resolve(this.refuse()); }
  update(): Promise<void> { return Promise.resolve(this.refuse()); }
  setState(): Promise<string | void> { return Promise.resolve(this.refuse()); }
  adopt(): Promise<void> { return Promise.resolve(this.refuse()); }
  delete(): Promise<void> { return Promise.resolve(this.refuse()); }
  /** Nothing to release. */
  close(): void {}
  /** An unavailable provider has no events: the stream stays silent until `signal` ends it. */
  changes(signal: AbortSignal): AsyncIterable<string> {
    const ended = new Promise<IteratorResult<string>>((resolve) => {
      if (signal.aborted) resolve({ done: true, value: undefined });
      signal.addEventListener('abort', () => resolve({ done: true, value: undefined }), { once: true });
    });
    return { [Symbol.asyncIterator]: () => ({ next: () => ended }) };
  }
}
