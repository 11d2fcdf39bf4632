/**
 * One reboot on request: the annotation holds an opaque token (a timestamp, a counter); a running
 * domain whose marker records another token is rebooted once and the token recorded.
 */
import { REBOOT_REQUEST_ANNOTATION } from '../../shared/annotations.js';
import type { Desired } from '../../store/desired.js';
import type { ObservedInstance } from '../provider.js';

/** True when `d` asks for a reboot that `observed` has not had yet. */
export function rebootPending(d: Desired<'VirtualMachine'>, observed: ObservedInstance): boolean {
  const token = d.object.metadata.annotations?.[REBOOT_REQUEST_ANNOTATION];
  return token !== undefined && token !== (observed.details?.rebootRequest ?? '') && observed.state === 'Running';
}
