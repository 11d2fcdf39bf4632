/** libvirt's domain states and reasons, in libvirt's words and as provider-neutral states. */
import type { InstanceState } from '../provider.js';
import { DomainState } from './libvirt-client.js';

/** libvirt's domain state names, indexed by virDomainState. */
export const STATE_NAMES = ['nostate', 'running', 'blocked', 'paused', 'shutdown', 'shutoff', 'crashed', 'pmsuspended'];
/** libvirt's state reason names, per state, indexed by reason number. */
export const REASON_NAMES: Readonly<Record<number, readonly string[]>> = {
  [DomainState.Running]: ['unknown', 'booted', 'migrated', 'restored', 'from snapshot', 'unpaused', 'migration canceled', 'save canceled', 'wakeup', 'crashed', 'post-copy'],
  [DomainState.Paused]: ['unknown', 'user', 'migrating', 'saving', 'dumping', 'ioerror', 'watchdog', 'from snapshot', 'shutting down', 'creating snapshot', 'api error', 'starting up', 'post-copy', 'post-copy failed'],
  [DomainState.Shutdown]: ['unknown', 'user'],
  [DomainState.Shutoff]: ['unknown', 'shutdown', 'destroyed', 'crashed', 'migrated', 'saved', 'failed', 'from snapshot', 'daemon'],
  [DomainState.Crashed]: ['unknown', 'panicked'],
};

/** libvirt state → the provider-neutral state. */
export function instanceStateOf(state: number): InstanceState {
  switch (state) {
    case DomainState.Running: case DomainState.Blocked: return 'Running';
    case DomainState.Paused: case DomainState.PmSuspended: return 'Paused';
    case DomainState.Shutdown: return 'Stopping';
    case DomainState.Shutoff: return 'Stopped';
    case DomainState.Crashed: return 'Crashed';
    default: return 'Unknown';
  }
}

/** Whether a domain in `state` has a running QEMU process. */
export const isActive = (state: number): boolean => state !== DomainState.Shutoff && state !== DomainState.NoState && state !== DomainState.Crashed;
