/**
 * The id range unprivileged containers use, registered where the host keeps such ranges:
 * /etc/subuid and /etc/subgid, as `root:HOSTID:SIZE`. LXC running as root maps ids without these
 * files; they are written so that useradd and other tools see the range as taken and hand it to
 * nobody else.
 *
 * Guarantees: an entry of root that covers the range is left as it is; the entry is appended once
 * (one O_APPEND write of one whole line); a range that overlaps another owner's entry is refused,
 * naming that entry, and nothing is written.
 */
import { appendFile, readFile } from 'node:fs/promises';
import type { IdRange } from '../../api/v1alpha1/host-defaults.js';

/** One `owner:start:count` line. */
export interface SubordinateEntry {
  readonly owner: string;
  readonly start: number;
  readonly count: number;
  /** 1-based line number, for messages. */
  readonly line: number;
}

/** Parses /etc/subuid or /etc/subgid text; lines that are not `owner:start:count` are skipped. */
export function parseSubordinateIds(text: string): SubordinateEntry[] {
  const out: SubordinateEntry[] = [];
  text.split('\n').forEach((raw, i) => {
    const m = /^([^:#\s][^:]*):([0-9]+):([0-9]+)\s*$/.exec(raw);
    if (m === null) return;
    out.push({ owner: m[1] ?? '', start: Number(m[2]), count: Number(m[3]), line: i + 1 });
  });
  return out;
}

const ROOT_NAMES = new Set(['root', '0']);

/** What registering a range needs (planSubordinateRange). */
export type SubordinatePlan =
  | { readonly action: 'present' }
  | { readonly action: 'append'; readonly line: string }
  | { readonly action: 'conflict'; readonly entry: SubordinateEntry };

/** What registering `range` for root needs: nothing, one appended line, or nothing possible (a conflict). */
export function planSubordinateRange(entries: readonly SubordinateEntry[], range: IdRange): SubordinatePlan {
  const end = range.hostId + range.size;
  const covering = entries.find((e) => ROOT_NAMES.has(e.owner) && e.start <= range.hostId && e.start + e.count >= end);
  if (covering !== undefined) return { action: 'present' };
  const conflict = entries.find((e) => !ROOT_NAMES.has(e.owner) && e.start < end && range.hostId < e.start + e.count);
  if (conflict !== undefined) return { action: 'conflict', entry: conflict };
  return { action: 'append', line: `root:${range.hostId}:${range.size}\n` };
}

/**
 * Makes sure `path` gives `range` to root; returns whether a line was added. Throws, naming the
 * file, line and owner, when another owner holds part of the range.
 */
export async function ensureSubordinateRange(path: string, range: IdRange): Promise<boolean> {
  let text = '';
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as { code?: string }).code !== 'ENOENT') throw new Error(`cannot read ${path}`, { cause: err });
  }
  const plan = planSubordinateRange(parseSubordinateIds(text), range);
  if (plan.action === 'present') return false;
  if (plan.action === 'conflict') {
    const e = plan.entry;
    const ours = `${range.hostId}-${range.hostId + range.size - 1}`;
    const theirs = `${e.start}-${e.start + e.count - 1}`;
    throw new Error(`cannot map unprivileged containers onto ids ${ours}: ${path} line ${e.line} gives ${theirs} to ${e.owner} `
      + '(choose another host.idmap in the host policy)');
  }
  const prefix = text === '' || text.endsWith('\n') ? '' : '\n';
  await appendFile(path, `${prefix}${plan.line}`, { mode: 0o644 });
  return true;
}
