/**
 * Fans host names out to every `changes()` stream of a provider. Each stream gets every name
 * pushed after it started, in order; a name pushed while it waits wakes it. Streams end when
 * their signal aborts.
 */
export class ChangeFeed {
  private readonly listeners = new Set<(hostName: string) => void>();

  /** Delivers `hostName` to every stream following now. */
  push(hostName: string): void {
    for (const l of this.listeners) l(hostName);
  }

  /** A stream of the names pushed from now on, until `signal` aborts. */
  async *follow(signal: AbortSignal): AsyncGenerator<string> {
    const queue: string[] = [];
    let wake: (() => void) | undefined;
    const listener = (hostName: string): void => {
      queue.push(hostName);
      wake?.();
    };
    const onAbort = (): void => wake?.();
    this.listeners.add(listener);
    signal.addEventListener('abort', onAbort);
    try {
      while (!signal.aborted) {
        if (queue.length === 0) await new Promise<void>((r) => { wake = r; });
        wake = undefined;
        while (queue.length > 0 && !signal.aborted) {
          const next = queue.shift();
          if (next !== undefined) yield next;
        }
      }
    } finally {
      this.listeners.delete(listener);
      signal.removeEventListener('abort', onAbort);
    }
  }
}
