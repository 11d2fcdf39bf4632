/**
 * Fans host names out to every `changes()` stream of a provider. Each stream gets every name
 * pushed after it started, in order; a name pushed while it waits wakes it. Streams end when
 * their signal aborts or when the feed is closed; a stream opened on a closed feed ends at once.
 */
export class ChangeFeed {
  private readonly listeners = new Set<(hostName: string) => void>();
  private readonly wakers = new Set<() => void>();
  private closed = false;

  /** Delivers `hostName` to every stream following now. */
  push(hostName: string): void {
    for (const l of this.listeners) l(hostName);
  }

  /** Ends every stream, now and later (provider close); idempotent. */
  close(): void {
    this.closed = true;
    for (const wake of this.wakers) wake();
  }

  /** A stream of the names pushed from now on, until `signal` aborts or the feed closes. */
  async *follow(signal: AbortSignal): AsyncGenerator<string> {
    const queue: string[] = [];
    let wake: (() => void) | undefined;
    const listener = (hostName: string): void => {
      queue.push(hostName);
      wake?.();
    };
    const onEnd = (): void => wake?.();
    this.listeners.add(listener);
    this.wakers.add(onEnd);
    signal.addEventListener('abort', onEnd);
    try {
      while (!signal.aborted && !this.closed) {
        if (queue.length === 0) await new Promise<void>((r) => { wake = r; });
        wake = undefined;
        while (queue.length > 0 && !signal.aborted && !this.closed) {
          const next = queue.shift();
          if (next !== undefined) yield next;
        }
      }
    } finally {
      this.listeners.delete(listener);
      this.wakers.delete(onEnd);
      signal.removeEventListener('abort', onEnd);
    }
  }
}
