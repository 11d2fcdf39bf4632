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
