/**
 * Where a container's files live under an lxcpath, and the one check every host name passes
 * before it reaches a path or a tool's argv.
 */
import { join } from 'node:path';

/** NAME or NAMESPACE.NAME (api/v1alpha1/host-name.ts), each part a DNS-1123 label. */
const HOST_NAME_RE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)?$/;

/** True when `name` can name a container: no '/', no '..', no leading '-', at most 127 characters. */
export function isHostName(name: string): boolean {
  return name.length <= 127 && HOST_NAME_RE.test(name);
}

/** Throws unless `name` is a host name hyperlet would give a container (see isHostName). */
export function assertHostName(name: string): void {
  if (!isHostName(name)) throw new Error(`cannot use ${JSON.stringify(name)} as a container name: not a host name hyperlet gives`);
}

/** The container's directory: LXCPATH/NAME. Throws on a name that could escape the lxcpath. */
export function containerDir(lxcpath: string, hostName: string): string {
  assertHostName(hostName);
  return join(lxcpath, hostName);
}

/** An object id as it may appear in a file name: a UUID (dir and git sources, Kubernetes uid) or alike. */
const OWNER_ID_RE = /^[A-Za-z0-9][A-Za-z0-9-]{0,63}$/;

/** True when `id` can be part of a leftover's name (see leftoverDir). */
export function isOwnerId(id: string): boolean {
  return OWNER_ID_RE.test(id);
}

/** What a leftover directory is: a container prepared (staging) or being removed (trash). */
export type LeftoverKind = 'staging' | 'trash';

/** A staging or trash directory under the lxcpath: whose container, for which object. */
export interface Leftover {
  readonly hostName: string;
  readonly ownerId: string;
  readonly kind: LeftoverKind;
  /** The entry's name under the lxcpath. */
  readonly entry: string;
}

/**
 * Where hyperlet keeps a container's directory outside the containers: `staging`, where create()
 * prepares it (its incomplete marker inside) before renaming it to LXCPATH/NAME in one step, and
 * `trash`, where delete() renames it before removing it. Hidden, beside the containers, and named
 * after the container and the object that owns it, so it is recognisable as that object's from
 * its first byte on disk, marker or not; LXC never takes it for a container (it is no host name).
 */
export function leftoverDir(lxcpath: string, hostName: string, ownerId: string, kind: LeftoverKind): string {
  assertHostName(hostName);
  if (!OWNER_ID_RE.test(ownerId)) throw new Error(`cannot use ${JSON.stringify(ownerId)} in a file name: not an object id hyperlet gives`);
  return join(lxcpath, `.${hostName}.${ownerId}.hyperlet-${kind}`);
}

/** The leftover an lxcpath entry names (see leftoverDir), or undefined for any other entry. */
export function parseLeftover(entry: string): Leftover | undefined {
  const m = /^\.(.+)\.([^.]+)\.hyperlet-(staging|trash)$/.exec(entry);
  if (m === null) return undefined;
  const [, hostName = '', ownerId = '', kind] = m;
  if (!isHostName(hostName) || !OWNER_ID_RE.test(ownerId)) return undefined;
  return { hostName, ownerId, kind: kind === 'staging' ? 'staging' : 'trash', entry };
}

/** The LXC config file LXC itself reads. */
export function configPath(lxcpath: string, hostName: string): string {
  return join(containerDir(lxcpath, hostName), 'config');
}

/** The root filesystem hyperlet gives the containers it creates (dir backing). */
export function rootfsPath(lxcpath: string, hostName: string): string {
  return join(containerDir(lxcpath, hostName), 'rootfs');
}

/** hyperlet's ownership marker, beside the config (ownership-marker.ts). */
export function markerPath(lxcpath: string, hostName: string): string {
  return join(containerDir(lxcpath, hostName), 'hyperlet.json');
}

/**
 * The console log every container hyperlet creates writes (`lxc.console.logfile`): what
 * `hyperlet logs NAME` shows. It lives in the container's directory, so destroy removes it.
 */
export function consoleLogPath(lxcpath: string, hostName: string): string {
  return join(containerDir(lxcpath, hostName), 'console.log');
}

/** The console log's older part: liblxc renames the log to this when it reaches its cap (lxc.console.rotate). */
export function rotatedConsoleLogPath(lxcpath: string, hostName: string): string {
  return `${consoleLogPath(lxcpath, hostName)}.1`;
}

/** Where lxc-start writes its errors, so a failed start can say why (lxc-start's stderr does not). */
export function startLogPath(lxcpath: string, hostName: string): string {
  return join(containerDir(lxcpath, hostName), 'lxc-start.log');
}

/** The pid of the container's monitor, written by the lxc-start hyperlet runs (`-p`); stale once it stops. */
export function monitorPidPath(lxcpath: string, hostName: string): string {
  return join(containerDir(lxcpath, hostName), 'monitor.pid');
}
