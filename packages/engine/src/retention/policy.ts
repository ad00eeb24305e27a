import { ForgeError, type SnapshotRecord } from '@backupforge/common';
import {
  assertTimeZone,
  compareInstants,
  defaultTimeZone,
  type Instant,
  isoWeek,
  parseInstant,
  type ZonedFields,
  zonedFields,
} from './calendar.ts';
import {
  type Duration,
  formatDuration,
  isZeroDuration,
  parseDuration,
  subtractDuration,
} from './duration.ts';

/**
 * A `forge forget` retention policy, restic semantics (`--keep-last`, `--keep-hourly`, …).
 * Counts are whole numbers ≥ 0, or -1 for "unlimited"; 0 / absent means "rule not used".
 */
export interface RetentionPolicy {
  /** Keep the n newest snapshots. */
  readonly last?: number;
  /** Keep the newest snapshot of each of the n newest hours (days, ISO weeks, months, years) that have one. */
  readonly hourly?: number;
  readonly daily?: number;
  readonly weekly?: number;
  readonly monthly?: number;
  readonly yearly?: number;
  /** Keep every snapshot newer than (newest snapshot − duration), e.g. `2y5m7d3h`. */
  readonly within?: string;
  /** Keep the newest snapshot of each hour (day, …) newer than (newest snapshot − duration). */
  readonly withinHourly?: string;
  readonly withinDaily?: string;
  readonly withinWeekly?: string;
  readonly withinMonthly?: string;
  readonly withinYearly?: string;
  /** Keep snapshots that have all tags of at least one group (`--keep-tag a,b --keep-tag c`). */
  readonly tags?: readonly (readonly string[])[];
}

const COUNT_KEYS = ['last', 'hourly', 'daily', 'weekly', 'monthly', 'yearly'] as const;
const WITHIN_KEYS = ['withinHourly', 'withinDaily', 'withinWeekly', 'withinMonthly', 'withinYearly'] as const;
const ALL_KEYS: readonly string[] = [...COUNT_KEYS, 'within', ...WITHIN_KEYS, 'tags'];

type CountKey = (typeof COUNT_KEYS)[number];
type WithinKey = (typeof WITHIN_KEYS)[number];

const FLAG: Record<CountKey | WithinKey | 'within' | 'tags', string> = {
  last: '--keep-last',
  hourly: '--keep-hourly',
  daily: '--keep-daily',
  weekly: '--keep-weekly',
  monthly: '--keep-monthly',
  yearly: '--keep-yearly',
  within: '--keep-within',
  withinHourly: '--keep-within-hourly',
  withinDaily: '--keep-within-daily',
  withinWeekly: '--keep-within-weekly',
  withinMonthly: '--keep-within-monthly',
  withinYearly: '--keep-within-yearly',
  tags: '--keep-tag',
};

/** A validated policy: counts filled in (0 = unused), durations parsed (undefined = unused). */
export interface ResolvedPolicy {
  readonly last: number;
  readonly hourly: number;
  readonly daily: number;
  readonly weekly: number;
  readonly monthly: number;
  readonly yearly: number;
  readonly within: Duration | undefined;
  readonly withinHourly: Duration | undefined;
  readonly withinDaily: Duration | undefined;
  readonly withinWeekly: Duration | undefined;
  readonly withinMonthly: Duration | undefined;
  readonly withinYearly: Duration | undefined;
  readonly tags: readonly (readonly string[])[];
}

export interface ValidatePolicyOptions {
  /** Throw FORGE_USAGE when the policy keeps nothing specific (restic refuses to forget then). */
  readonly requireNonEmpty?: boolean;
}

function usage(message: string, hint: string, details?: Record<string, unknown>): ForgeError {
  return new ForgeError('FORGE_USAGE', message, { hint, details });
}

/**
 * Checks a policy and returns its resolved form. Throws ForgeError FORGE_USAGE for unknown
 * options, counts that are not whole numbers ≥ -1, malformed or negative durations, malformed
 * tag groups, and (with `requireNonEmpty`) an empty policy.
 */
export function validatePolicy(policy: RetentionPolicy, opts: ValidatePolicyOptions = {}): ResolvedPolicy {
  if (typeof policy !== 'object' || policy === null || Array.isArray(policy)) {
    throw usage('retention policy must be an object', 'pass options such as { daily: 7, weekly: 4 }');
  }
  for (const key of Object.keys(policy)) {
    if (!ALL_KEYS.includes(key)) {
      throw usage(`unknown retention option '${key}'`, `valid options are: ${ALL_KEYS.join(', ')}`, { key });
    }
  }
  const counts = {} as Record<CountKey, number>;
  for (const key of COUNT_KEYS) {
    const v: unknown = policy[key];
    if (v === undefined) {
      counts[key] = 0;
      continue;
    }
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < -1) {
      throw usage(
        `invalid value ${String(v)} for ${FLAG[key]}: must be a whole number of snapshots, or -1 for unlimited`,
        `negative values other than -1 are not allowed; use ${FLAG[key]} -1 to keep all ${key === 'last' ? '' : `${key} `}snapshots`,
        { key, value: v },
      );
    }
    counts[key] = v;
  }
  const durations = {} as Record<WithinKey | 'within', Duration | undefined>;
  for (const key of ['within', ...WITHIN_KEYS] as const) {
    const v: unknown = policy[key];
    if (v === undefined) {
      durations[key] = undefined;
      continue;
    }
    if (typeof v !== 'string') {
      throw usage(`invalid value for ${FLAG[key]}: expected a duration string`, "use e.g. '7d' or '1y6m'", {
        key,
      });
    }
    let d: Duration;
    try {
      d = parseDuration(v);
    } catch (e) {
      if (e instanceof ForgeError) {
        throw usage(`${FLAG[key]}: ${e.message}`, e.hint ?? '', { key, value: v });
      }
      throw e;
    }
    durations[key] = isZeroDuration(d) ? undefined : d;
  }
  const tags: string[][] = [];
  if (policy.tags !== undefined) {
    if (!Array.isArray(policy.tags)) {
      throw usage(
        `invalid value for ${FLAG.tags}: expected a list of tag groups`,
        "use e.g. [['daily'], ['a', 'b']]",
      );
    }
    for (const group of policy.tags as unknown[]) {
      if (!Array.isArray(group) || group.some((t) => typeof t !== 'string')) {
        throw usage(
          `invalid tag group for ${FLAG.tags}: expected a list of tag strings`,
          "use e.g. [['daily'], ['a', 'b']]",
        );
      }
      if (group.length === 0) {
        throw usage(
          `empty tag group for ${FLAG.tags} would keep every snapshot`,
          "give at least one tag per group; [''] keeps snapshots that have no tags",
        );
      }
      tags.push([...(group as string[])]);
    }
  }
  const resolved: ResolvedPolicy = { ...counts, ...durations, tags };
  if (opts.requireNonEmpty && isEmptyResolved(resolved)) {
    throw usage(
      'no retention policy was specified, no snapshots would be removed',
      'give at least one --keep-* option (e.g. --keep-daily 7)',
    );
  }
  return resolved;
}

function isEmptyResolved(p: ResolvedPolicy): boolean {
  return (
    COUNT_KEYS.every((k) => p[k] === 0) &&
    p.within === undefined &&
    WITHIN_KEYS.every((k) => p[k] === undefined) &&
    p.tags.length === 0
  );
}

/**
 * True when the policy sets no rule (all counts 0/absent, durations absent or zero, no tags),
 * as restic's `ExpirePolicy.Empty()`. Does not throw: an option that is present but invalid
 * counts as "set" (validatePolicy reports it).
 */
export function isEmptyPolicy(policy: RetentionPolicy): boolean {
  for (const key of COUNT_KEYS) {
    const v = policy[key];
    if (v !== undefined && v !== 0) return false;
  }
  for (const key of ['within', ...WITHIN_KEYS] as const) {
    const v = policy[key];
    if (v === undefined) continue;
    try {
      if (!isZeroDuration(parseDuration(v))) return false;
    } catch {
      return false;
    }
  }
  if (policy.tags !== undefined && policy.tags.length > 0) return false;
  for (const key of Object.keys(policy)) if (!ALL_KEYS.includes(key)) return false;
  return true;
}

/** One line for humans, as restic prints it before forgetting ("keep 7 daily snapshots, …"). */
export function describePolicy(policy: RetentionPolicy): string {
  const p = validatePolicy(policy);
  const names: Record<CountKey, string> = {
    last: 'latest',
    hourly: 'hourly',
    daily: 'daily',
    weekly: 'weekly',
    monthly: 'monthly',
    yearly: 'yearly',
  };
  const keeps: string[] = [];
  for (const k of COUNT_KEYS) {
    if (p[k] > 0) keeps.push(`${p[k]} ${names[k]}`);
    else if (p[k] === -1) keeps.push(`all ${names[k]}`);
  }
  const keepw: string[] = [];
  for (const k of WITHIN_KEYS) {
    const d = p[k];
    if (d) keepw.push(`${k.slice('within'.length).toLowerCase()} snapshots within ${formatDuration(d)}`);
  }
  let s = keeps.length > 0 ? `${keeps.join(', ')} snapshots` : '';
  if (keepw.length > 0) s += (s ? ', ' : '') + keepw.join(', ');
  if (p.tags.length > 0)
    s += `${s ? ' and ' : ''}all snapshots with tags [${p.tags.map(formatTagList).join(' ')}]`;
  if (p.within) s += `${s ? ' and ' : ''}all snapshots within ${formatDuration(p.within)} of the newest`;
  return s === '' ? 'remove' : `keep ${s}`;
}

/** restic's TagList formatting: `[a, b]`. */
function formatTagList(l: readonly string[]): string {
  return `[${l.join(', ')}]`;
}

/** Remaining counts of each bucket after a kept snapshot was evaluated (-1 = unlimited). */
export interface RetentionCounters {
  readonly last: number;
  readonly hourly: number;
  readonly daily: number;
  readonly weekly: number;
  readonly monthly: number;
  readonly yearly: number;
}

export interface KeptSnapshot {
  readonly snapshot: SnapshotRecord;
  /** Every rule that matched, in restic's order: tags, within, last…yearly, within-*. */
  readonly reasons: string[];
  readonly counters: RetentionCounters;
}

export interface RemovedSnapshot {
  readonly snapshot: SnapshotRecord;
  readonly reasons?: never;
}

export interface RetentionResult {
  /** Newest first. */
  readonly keep: KeptSnapshot[];
  /** Newest first. */
  readonly remove: RemovedSnapshot[];
}

export interface ApplyPolicyOptions {
  /** Snapshots after `now` are ignored when finding the newest snapshot (for `within*`). */
  readonly now: Date;
  /** IANA time zone for hour/day/week/month/year buckets; default the process's (`Intl`). */
  readonly timeZone?: string;
}

/** Bucket value of a snapshot: its local calendar fields (computed lazily) and its index. */
type Bucker = (fields: () => ZonedFields, nr: number) => number;

const ymdh: Bucker = (fields) => {
  const f = fields();
  return f.year * 1_000_000 + f.month * 10_000 + f.day * 100 + f.hour;
};
const ymd: Bucker = (fields) => {
  const f = fields();
  return f.year * 10_000 + f.month * 100 + f.day;
};
const yw: Bucker = (fields) => {
  const f = fields();
  const w = isoWeek(f.year, f.month, f.day);
  return w.year * 100 + w.week;
};
const ym: Bucker = (fields) => {
  const f = fields();
  return f.year * 100 + f.month;
};
const y: Bucker = (fields) => fields().year;
const always: Bucker = (_fields, nr) => nr;

function hasTags(snapshotTags: readonly string[], group: readonly string[]): boolean {
  for (const tag of group) {
    // restic quirk kept on purpose: an empty tag matches snapshots without any tags.
    if (tag === '' && snapshotTags.length === 0) return true;
    if (!snapshotTags.includes(tag)) return false;
  }
  return true;
}

/**
 * Decides which snapshots of ONE group to keep, exactly like restic's `ApplyPolicy`:
 *
 * - snapshots are sorted newest first (stable for equal times);
 * - keep-tag groups and `within` are checked first; `within` keeps snapshots strictly newer than
 *   (newest snapshot not after `now`) − duration, the duration subtracted calendar-wise in
 *   `timeZone` (see `subtractDuration`);
 * - for last/hourly/daily/weekly/monthly/yearly with a count left (or -1), a snapshot is kept when
 *   its bucket value differs from the last kept one of that kind, and the count is decreased; the
 *   OLDEST snapshot is also kept by every bucket that still has counts left (reason "oldest …");
 * - within-* keep the newest snapshot of each period inside their window (and the oldest one, if
 *   it is inside the window).
 *
 * An empty policy keeps everything (reason "policy is empty"); callers that must refuse use
 * `isEmptyPolicy` / `validatePolicy(p, { requireNonEmpty: true })`.
 */
export function applyPolicy(
  snapshots: readonly SnapshotRecord[],
  policy: RetentionPolicy,
  opts: ApplyPolicyOptions,
): RetentionResult {
  const p = validatePolicy(policy);
  const timeZone = opts.timeZone ?? defaultTimeZone();
  assertTimeZone(timeZone);
  const nowMs = opts.now.getTime();
  if (!Number.isFinite(nowMs)) throw usage('invalid reference time (now)', 'pass a valid Date as now');

  const list = snapshots
    .map((snapshot) => ({ snapshot, at: instantOf(snapshot) }))
    .sort((a, b) => compareInstants(b.at, a.at));

  const zeroCounters: RetentionCounters = { last: 0, hourly: 0, daily: 0, weekly: 0, monthly: 0, yearly: 0 };
  if (isEmptyResolved(p)) {
    return {
      keep: list.map(({ snapshot }) => ({ snapshot, reasons: ['policy is empty'], counters: zeroCounters })),
      remove: [],
    };
  }
  if (list.length === 0) return { keep: [], remove: [] };

  const buckets = [
    { count: p.last, bucker: always, reason: 'last snapshot' },
    { count: p.hourly, bucker: ymdh, reason: 'hourly snapshot' },
    { count: p.daily, bucker: ymd, reason: 'daily snapshot' },
    { count: p.weekly, bucker: yw, reason: 'weekly snapshot' },
    { count: p.monthly, bucker: ym, reason: 'monthly snapshot' },
    { count: p.yearly, bucker: y, reason: 'yearly snapshot' },
  ];
  // restic starts every bucket's "last value" at -1, which no real bucket value equals.
  const state = buckets.map((b) => ({ count: b.count, last: -1 }));

  const withinBuckets = [
    { within: p.withinHourly, bucker: ymdh, reason: 'hourly within' },
    { within: p.withinDaily, bucker: ymd, reason: 'daily within' },
    { within: p.withinWeekly, bucker: yw, reason: 'weekly within' },
    { within: p.withinMonthly, bucker: ym, reason: 'monthly within' },
    { within: p.withinYearly, bucker: y, reason: 'yearly within' },
  ];
  const withinLast = withinBuckets.map(() => -1);

  // restic: the newest snapshot that is strictly before now; none → Go's zero time, which makes
  // every `within*` cutoff lie before all snapshots.
  let latest: Instant | undefined;
  for (const { at } of list) {
    if ((latest === undefined || compareInstants(at, latest) > 0) && at.ms < nowMs) latest = at;
  }
  const cutoff = (d: Duration): Instant | undefined =>
    latest === undefined ? undefined : subtractDuration(latest, d, timeZone);
  const withinCutoff = p.within ? cutoff(p.within) : undefined;
  const withinCutoffs = withinBuckets.map((b) => (b.within ? cutoff(b.within) : undefined));
  const isAfter = (at: Instant, c: Instant | undefined): boolean =>
    c === undefined || compareInstants(at, c) > 0;

  const keep: KeptSnapshot[] = [];
  const remove: RemovedSnapshot[] = [];
  const oldest = list.length - 1;

  list.forEach(({ snapshot, at }, nr) => {
    let fields: ZonedFields | undefined;
    const f = (): ZonedFields => {
      fields ??= zonedFields(at.ms, timeZone);
      return fields;
    };
    const reasons: string[] = [];

    for (const group of p.tags) {
      if (hasTags(snapshot.tags, group)) reasons.push(`has tags ${formatTagList(group)}`);
    }

    if (p.within && isAfter(at, withinCutoff)) reasons.push(`within ${formatDuration(p.within)}`);

    buckets.forEach((b, i) => {
      const s = state[i]!;
      if (s.count > 0 || s.count === -1) {
        const val = b.bucker(f, nr);
        if (val !== s.last || nr === oldest) {
          reasons.push(val === s.last && nr === oldest ? `oldest ${b.reason}` : b.reason);
          s.last = val;
          if (s.count > 0) s.count--;
        }
      }
    });

    withinBuckets.forEach((b, i) => {
      if (!b.within || !isAfter(at, withinCutoffs[i])) return;
      const val = b.bucker(f, nr);
      const last = withinLast[i]!;
      if (val !== last || nr === oldest) {
        const reason = val === last && nr === oldest ? `oldest ${b.reason}` : b.reason;
        reasons.push(`${reason} ${formatDuration(b.within)}`);
        withinLast[i] = val;
      }
    });

    if (reasons.length > 0) {
      keep.push({
        snapshot,
        reasons,
        counters: {
          last: state[0]!.count,
          hourly: state[1]!.count,
          daily: state[2]!.count,
          weekly: state[3]!.count,
          monthly: state[4]!.count,
          yearly: state[5]!.count,
        },
      });
    } else {
      remove.push({ snapshot });
    }
  });

  return { keep, remove };
}

function instantOf(s: SnapshotRecord): Instant {
  const at = parseInstant(s.time);
  if (!at) {
    throw new ForgeError(
      'FORGE_FORMAT',
      `snapshot ${String(s.id).slice(0, 12)} has a malformed time '${s.time}'`,
      {
        hint: 'snapshot times must be RFC 3339 (e.g. 2024-05-01T12:00:00Z); the snapshot file may be damaged',
        details: { id: s.id, time: s.time },
      },
    );
  }
  return at;
}
