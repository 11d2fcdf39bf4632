/** When a process started, from /proc alone (no process spawned): a container's started-at. */
import { readFile } from 'node:fs/promises';

/** USER_HZ: the unit of /proc/PID/stat's start time. 100 on every Linux architecture that LXC runs on. */
const CLOCK_TICKS_PER_SECOND = 100;

/** Field 22 of /proc/PID/stat (start time in clock ticks after boot); the command in field 2 may hold spaces and ')'. */
export function parseStartTicks(stat: string): number | undefined {
  const close = stat.lastIndexOf(')');
  if (close < 0) return undefined;
  const rest = stat.slice(close + 2).split(' ');
  const ticks = Number(rest[19]); // field 22 is the 20th after "pid (comm)"
  return Number.isSafeInteger(ticks) && ticks >= 0 ? ticks : undefined;
}

/** The `btime` line of /proc/stat: boot time in seconds since the epoch. */
export function parseBootTime(procStat: string): number | undefined {
  const m = /^btime\s+([0-9]+)$/m.exec(procStat);
  return m?.[1] === undefined ? undefined : Number(m[1]);
}

let bootTimeSeconds: number | undefined;

/** ISO time process `pid` started at, or undefined when it is gone. */
export async function processStartTime(pid: number): Promise<string | undefined> {
  try {
    bootTimeSeconds ??= parseBootTime(await readFile('/proc/stat', 'utf8'));
    const ticks = parseStartTicks(await readFile(`/proc/${pid}/stat`, 'utf8'));
    if (bootTimeSeconds === undefined || ticks === undefined) return undefined;
    return new Date(bootTimeSeconds * 1000 + (ticks * 1000) / CLOCK_TICKS_PER_SECOND).toISOString();
  } catch {
    return undefined; // the process ended meanwhile
  }
}
