/**
 * spec.snapshots.schedule: a 5-field cron expression (UTC) or "@every DURATION", parsed here so
 * validation can name the rule a bad schedule breaks, and evaluated as a pure function of time.
 * Cron follows Vixie cron: `*`, `N`, `A-B`, `*\/S`, `A-B/S` and comma lists; day-of-week 0-7
 * (0 and 7 are Sunday); when both day fields are restricted a day matching either one runs.
 */

/** A parsed schedule. */
export type Schedule =
  | { readonly kind: 'every'; readonly everyMs: number }
  | {
    readonly kind: 'cron';
    readonly minutes: ReadonlySet<number>; readonly hours: ReadonlySet<number>; readonly days: ReadonlySet<number>;
    readonly months: ReadonlySet<number>; readonly weekdays: ReadonlySet<number>;
    readonly daysRestricted: boolean; readonly weekdaysRestricted: boolean;
  };

/** The shortest @every period: a snapshot a minute is already more than any retention keeps. */
export const MIN_EVERY_MS = 60_000;

const MACROS: Readonly<Record<string, string>> = {
  '@hourly': '0 * * * *', '@daily': '0 0 * * *', '@midnight': '0 0 * * *', '@weekly': '0 0 * * 0', '@monthly': '0 0 1 * *',
  '@yearly': '0 0 1 1 *', '@annually': '0 0 1 1 *',
};
const UNIT_MS: Readonly<Record<string, number>> = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const FIELDS = [
  { name: 'minute', min: 0, max: 59 }, { name: 'hour', min: 0, max: 23 }, { name: 'day of month', min: 1, max: 31 },
  { name: 'month', min: 1, max: 12 }, { name: 'day of week', min: 0, max: 7 },
] as const;

/** Parses a schedule; throws "cannot parse schedule ...: RULE" naming what is wrong. */
export function parseSchedule(text: string): Schedule {
  const fail = (why: string): never => {
    throw new Error(`cannot parse schedule ${JSON.stringify(text)}: ${why}`);
  };
  const trimmed = text.trim();
  if (trimmed.startsWith('@every')) {
    const duration = trimmed.slice('@every'.length).trim();
    if (!/^(\d+[smhd])+$/.test(duration)) fail('@every takes a duration such as 30m, 6h or 1h30m (units s, m, h, d)');
    let everyMs = 0;
    for (const [, n, unit] of duration.matchAll(/(\d+)([smhd])/g)) everyMs += Number(n) * (UNIT_MS[unit ?? 's'] ?? 0);
    if (everyMs < MIN_EVERY_MS) fail('@every must be at least 1m');
    return { kind: 'every', everyMs };
  }
  const expanded = MACROS[trimmed] ?? trimmed;
  if (expanded.startsWith('@')) fail(`unknown macro (use ${Object.keys(MACROS).join(', ')} or @every DURATION)`);
  const parts = expanded.split(/\s+/);
  if (parts.length !== 5) fail(`cron needs 5 fields (minute hour day-of-month month day-of-week), got ${parts.length}`);
  const sets = parts.map((part, i) => parseField(part, FIELDS[i]!, fail));
  const weekdays = new Set([...sets[4]!].map((d) => d % 7));
  return {
    kind: 'cron', minutes: sets[0]!, hours: sets[1]!, days: sets[2]!, months: sets[3]!, weekdays,
    daysRestricted: parts[2] !== '*', weekdaysRestricted: parts[4] !== '*',
  };
}

function parseField(part: string, field: (typeof FIELDS)[number], fail: (why: string) => never): Set<number> {
  const out = new Set<number>();
  for (const item of part.split(',')) {
    const m = /^(\*|(\d+)(?:-(\d+))?)(?:\/(\d+))?$/.exec(item);
    if (m === null) fail(`${field.name} field "${item}" is not N, A-B, * or a step (*/S, A-B/S)`);
    const [, whole, a, b, step] = m;
    const from = whole === '*' ? field.min : Number(a);
    const to = whole === '*' ? field.max : b !== undefined ? Number(b) : step !== undefined ? field.max : from;
    const by = step === undefined ? 1 : Number(step);
    if (from < field.min || to > field.max || from > to) fail(`${field.name} field "${item}" is outside ${field.min}-${field.max}`);
    if (by < 1) fail(`${field.name} field "${item}" has a step below 1`);
    for (let v = from; v <= to; v += by) out.add(v);
  }
  return out;
}

/**
 * The first time a run is due strictly after `afterMs`: for @every, afterMs + period; for cron,
 * the start of the next matching minute (UTC). Throws when a cron never matches (Feb 30).
 */
export function nextRunAfter(schedule: Schedule, afterMs: number): number {
  if (schedule.kind === 'every') return afterMs + schedule.everyMs;
  const t = new Date(Math.floor(afterMs / 60_000) * 60_000 + 60_000);
  const limit = afterMs + 5 * 366 * 86_400_000;
  while (t.getTime() <= limit) {
    if (!schedule.months.has(t.getUTCMonth() + 1)) {
      t.setUTCMonth(t.getUTCMonth() + 1, 1);
      t.setUTCHours(0, 0, 0, 0);
      continue;
    }
    if (!dayMatches(schedule, t)) {
      t.setUTCDate(t.getUTCDate() + 1);
      t.setUTCHours(0, 0, 0, 0);
      continue;
    }
    if (!schedule.hours.has(t.getUTCHours())) {
      t.setUTCHours(t.getUTCHours() + 1, 0, 0, 0);
      continue;
    }
    if (!schedule.minutes.has(t.getUTCMinutes())) {
      t.setUTCMinutes(t.getUTCMinutes() + 1, 0, 0);
      continue;
    }
    return t.getTime();
  }
  throw new Error('cannot find the next run of this schedule: it matches no date in five years');
}

function dayMatches(s: Extract<Schedule, { kind: 'cron' }>, t: Date): boolean {
  const day = s.days.has(t.getUTCDate());
  const weekday = s.weekdays.has(t.getUTCDay());
  if (s.daysRestricted && s.weekdaysRestricted) return day || weekday;
  return day && weekday;
}
