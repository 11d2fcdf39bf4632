/**
 * Which scheduled snapshots to keep: Proxmox's prune rules (Proxmox Backup Server's
 * prune.rs `mark_selections`), in UTC. The rules run in the order last, hourly, daily, weekly,
 * monthly, each over the snapshots newest first: a rule keeps the newest snapshot of each of its
 * N newest periods (hour, day, ISO week, month), skipping periods a previous rule already kept a
 * snapshot in; the older snapshots of a period it kept one in are marked for removal, so later
 * rules do not keep them. A snapshot is kept if any rule keeps it; with no rule at all every
 * snapshot is kept.
 */

/** spec.snapshots.retain: how many of each to keep. */
export interface RetainRules {
  readonly last?: number;
  readonly hourly?: number;
  readonly daily?: number;
  readonly weekly?: number;
  readonly monthly?: number;
}

/** One snapshot as the rules see it. */
export interface Dated {
  readonly name: string;
  readonly createdAtMs: number;
}

const pad = (n: number): string => String(n).padStart(2, '0');

/** ISO 8601 week of a UTC time, as "YYYY-Www". */
function isoWeek(ms: number): string {
  const d = new Date(ms);
  const day = (d.getUTCDay() + 6) % 7; // Monday 0
  const thursday = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate() - day + 3);
  const year = new Date(thursday).getUTCFullYear();
  const jan4 = new Date(Date.UTC(year, 0, 4));
  const firstThursday = Date.UTC(year, 0, 4 - ((jan4.getUTCDay() + 6) % 7) + 3);
  const week = 1 + Math.round((thursday - firstThursday) / (7 * 86_400_000));
  return `${year}-W${pad(week)}`;
}

const PERIODS: readonly [keyof RetainRules, (ms: number) => string][] = [
  ['last', (ms) => String(ms)],
  ['hourly', (ms) => new Date(ms).toISOString().slice(0, 13)],
  ['daily', (ms) => new Date(ms).toISOString().slice(0, 10)],
  ['weekly', isoWeek],
  ['monthly', (ms) => new Date(ms).toISOString().slice(0, 7)],
];

/** The names of the snapshots the rules keep; every other one is to be deleted. Pure. */
export function snapshotsToKeep(snapshots: readonly Dated[], rules: RetainRules): Set<string> {
  const any = PERIODS.some(([rule]) => (rules[rule] ?? 0) > 0);
  if (!any) return new Set(snapshots.map((s) => s.name));
  const newestFirst = [...snapshots].sort((a, b) => b.createdAtMs - a.createdAtMs || b.name.localeCompare(a.name));
  const mark = new Map<string, 'keep' | 'remove'>();
  for (const [rule, periodOf] of PERIODS) {
    const keep = rules[rule] ?? 0;
    if (keep <= 0) continue;
    const alreadyIncluded = new Set(newestFirst.filter((s) => mark.get(s.name) === 'keep').map((s) => periodOf(s.createdAtMs)));
    const included = new Set<string>();
    for (const s of newestFirst) {
      if (mark.has(s.name)) continue;
      const period = periodOf(s.createdAtMs);
      if (alreadyIncluded.has(period)) continue;
      if (!included.has(period)) {
        if (included.size >= keep) break;
        included.add(period);
        mark.set(s.name, 'keep');
      } else {
        mark.set(s.name, 'remove');
      }
    }
  }
  return new Set([...mark].filter(([, m]) => m === 'keep').map(([name]) => name));
}
