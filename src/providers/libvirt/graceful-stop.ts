/**
 * Stopping a domain the way an operator would: ACPI shutdown, pressed again every few seconds
 * (a first press can be lost while the guest boots), up to the declared timeout, then destroy.
 * The returned note says which of the two happened, for status.
 */
import { isLibvirtError } from './libvirt-error.js';
import { Flags, LifecycleEventType, uuidFromBytes, type DomainRef, type LibvirtApi } from './libvirt-client.js';
import { isActive } from './domain-state.js';
import type { Clock } from '../../shared/clock.js';
import { systemClock } from '../../shared/clock.js';

const ACPI_RESEND_MS = 5_000;

/** Resolves after `ms` of `clock`, or rejects when `signal` aborts first. */
export const sleep = (ms: number, signal?: AbortSignal, clock: Clock = systemClock): Promise<void> => new Promise((resolve, reject) => {
  const t = clock.setTimeout(() => { signal?.removeEventListener('abort', onAbort); resolve(); }, ms);
  const onAbort = (): void => { clock.clearTimeout(t); reject(signal?.reason instanceof Error ? signal.reason : new Error('aborted')); };
  signal?.addEventListener('abort', onAbort, { once: true });
});

/** Stops `dom`: ACPI first, destroy after `gracefulStopSeconds`; returns what happened. */
export async function stopGracefully(
  client: LibvirtApi, dom: DomainRef, gracefulStopSeconds: number, signal: AbortSignal, clock: Clock = systemClock,
): Promise<string> {
  const timeoutMs = gracefulStopSeconds * 1000;
  const started = clock.now();
  let note: string;
  if (timeoutMs === 0) {
    await client.domainDestroy(dom);
    note = 'destroyed at once (gracefulStopSeconds is 0)';
  } else if (await waitForAcpiStop(client, dom, timeoutMs, signal, clock)) {
    note = `shut down by ACPI in ${((clock.now() - started) / 1000).toFixed(1)} s`;
  } else {
    try {
      await client.domainDestroy(dom);
    } catch (err) {
      // It may have stopped between the last look and the destroy.
      if (!(isLibvirtError(err) && err.isOperationInvalid)) throw err;
    }
    note = `destroyed after ${gracefulStopSeconds} s: the guest did not power off on ACPI shutdown`;
  }
  return note;
}

async function waitForAcpiStop(client: LibvirtApi, dom: DomainRef, timeoutMs: number, signal: AbortSignal, clock: Clock): Promise<boolean> {
  const uuid = uuidFromBytes(dom.uuid);
  let stopped = false;
  let wake: (() => void) | undefined;
  const onEvent = (e: { domain: DomainRef; event: number }): void => {
    if (uuidFromBytes(e.domain.uuid) === uuid && (e.event === LifecycleEventType.Stopped || e.event === LifecycleEventType.Undefined)) {
      stopped = true;
      wake?.();
    }
  };
  client.on('lifecycle', onEvent);
  try {
    const deadline = clock.now() + timeoutMs;
    while (clock.now() < deadline) {
      try {
        await client.domainShutdown(dom, Flags.ShutdownAcpi | Flags.ShutdownGuestAgent); // the agent when it answers, ACPI otherwise
      } catch (err) {
        if (isLibvirtError(err) && err.isOperationInvalid) return true; // not running any more
        throw err;
      }
      const until = Math.min(deadline, clock.now() + ACPI_RESEND_MS);
      while (!stopped && clock.now() < until) {
        signal.throwIfAborted();
        // Events are the fast path; a state poll covers events lost in a reconnect.
        const pollMs = Math.min(500, Math.max(0, until - clock.now()));
        await Promise.race([new Promise<void>((r) => { wake = r; }), sleep(pollMs, signal, clock)]);
        if (!stopped && !isActive((await client.domainGetState(dom)).state)) stopped = true;
      }
      if (stopped) return true;
    }
    return !isActive((await client.domainGetState(dom)).state);
  } finally {
    client.off('lifecycle', onEvent);
  }
}
