/**
 * A container's state read from /proc and the cgroup files instead of `lxc-info`: spawning a
 * process blocks Node's event loop for milliseconds, and a reconcile observes after every step.
 *
 * A running container's monitor owns the abstract UNIX socket `@LXCPATH/NAME/command` (listed in
 * /proc/net/unix of the host's network namespace); the monitor is titled
 * `[lxc monitor] LXCPATH NAME` and its one child is the container's init (`lxc-start -p` writes
 * the monitor's pid); the freezer cgroup says FROZEN or THAWED.
 * Every parser here answers undefined when unsure, and the provider then asks lxc-info.
 */

/** LXC hashes socket names that do not fit sun_path; below this length the plain name is used. */
const PLAIN_SOCKET_NAME_MAX = 100;

/** The abstract socket name of a running container's command socket, or undefined when LXC would hash it. */
export function commandSocketName(lxcpath: string, name: string): string | undefined {
  const socket = `@${lxcpath.replace(/\/+$/, '')}/${name}/command`;
  return socket.length <= PLAIN_SOCKET_NAME_MAX ? socket : undefined;
}

/** The abstract socket names (starting with '@') in /proc/net/unix text. */
export function parseAbstractSockets(procNetUnix: string): Set<string> {
  const names = new Set<string>();
  for (const line of procNetUnix.split('\n')) {
    // Num RefCount Protocol Flags Type St Inode Path: the path is the 8th column and may be absent.
    const cells = line.trim().split(/\s+/);
    const path = cells.slice(7).join(' ');
    if (path.startsWith('@')) names.add(path);
  }
  return names;
}

/** The process title LXC gives a container's monitor. */
export function monitorTitle(lxcpath: string, name: string): string {
  return `[lxc monitor] ${lxcpath.replace(/\/+$/, '')} ${name}`;
}

/** /proc/PID/task/PID/children: the pids of a process's children, space separated. */
export function parseChildren(text: string): number[] {
  return text.trim().split(/\s+/).filter((x) => /^[0-9]+$/.test(x)).map(Number);
}

/**
 * LXC's state from the freezer: v1 `freezer.state` (THAWED, FREEZING, FROZEN), v2 `cgroup.events`
 * ("frozen 0|1"). Undefined when the text is neither.
 */
export function lxcStateFromFreezer(text: string, version: 1 | 2): 'RUNNING' | 'FREEZING' | 'FROZEN' | undefined {
  if (version === 1) {
    switch (text.trim()) {
      case 'THAWED': return 'RUNNING';
      case 'FREEZING': return 'FREEZING';
      case 'FROZEN': return 'FROZEN';
      default: return undefined;
    }
  }
  const m = /^frozen ([01])$/m.exec(text);
  if (m === null) return undefined;
  return m[1] === '1' ? 'FROZEN' : 'RUNNING';
}
