import { ForgeError } from '@backupforge/common';
import { defaultTimeZone, type Instant, instantFromWall, utcFromFields, zonedFields } from './calendar.ts';

/** A calendar duration as restic's `--keep-within*` accept: `2y5m7d3h`. */
export interface Duration {
  readonly years: number;
  readonly months: number;
  readonly days: number;
  readonly hours: number;
}

const UNIT_HINT =
  "use whole numbers followed by y (years), m (months), d (days) or h (hours), e.g. '1y6m' or '36h'";

function durationError(s: string, why: string): ForgeError {
  return new ForgeError('FORGE_USAGE', `invalid duration '${s}': ${why}`, {
    hint: UNIT_HINT,
    details: { duration: s },
  });
}

/**
 * Parses restic's duration syntax: one or more `<number><unit>` pairs, units `y`, `m` (months),
 * `d`, `h`, surrounding whitespace ignored. Stricter than restic: negative numbers, repeated units
 * and the empty string are rejected (restic would accept them and let the last one win / treat
 * the empty string as zero). `0d` parses to the zero duration, which means "not set".
 */
export function parseDuration(s: string): Duration {
  const input = s.trim();
  if (input === '') throw durationError(s, 'it is empty');
  const out = { years: 0, months: 0, days: 0, hours: 0 };
  const seen = new Set<string>();
  let rest = input;
  while (rest !== '') {
    const m = /^(-?)(\d*)(.?)/u.exec(rest);
    const [whole = '', sign = '', digits = '', unit = ''] = m ?? [];
    if (digits === '') throw durationError(s, `no number found at '${rest}'`);
    if (sign === '-') throw durationError(s, 'negative durations are not allowed');
    const num = Number(digits);
    if (!Number.isSafeInteger(num)) throw durationError(s, `number ${digits} is too large`);
    if (unit === '') throw durationError(s, `no unit found after number ${digits}`);
    if (seen.has(unit)) throw durationError(s, `unit '${unit}' given more than once`);
    seen.add(unit);
    switch (unit) {
      case 'y':
        out.years = num;
        break;
      case 'm':
        out.months = num;
        break;
      case 'd':
        out.days = num;
        break;
      case 'h':
        out.hours = num;
        break;
      default:
        throw durationError(s, `unknown unit '${unit}' after number ${digits}`);
    }
    rest = rest.slice(whole.length);
  }
  return out;
}

/** True when all fields are zero (restic: the option is not set). */
export function isZeroDuration(d: Duration): boolean {
  return d.years === 0 && d.months === 0 && d.days === 0 && d.hours === 0;
}

/** restic's canonical spelling: `1y2m3d4h` with zero fields left out (`48h` stays `48h`). */
export function formatDuration(d: Duration): string {
  let s = '';
  if (d.years !== 0) s += `${d.years}y`;
  if (d.months !== 0) s += `${d.months}m`;
  if (d.days !== 0) s += `${d.days}d`;
  if (d.hours !== 0) s += `${d.hours}h`;
  return s;
}

/**
 * `ref − d`, calendar-correct in `timeZone`, exactly like restic's
 * `t.AddDate(-years, -months, -days).Add(-hours * time.Hour)`:
 * years, months and days move the wall-clock date in the time zone (the time of day is kept,
 * across DST changes too); out-of-range days are then NORMALISED, not clamped, like Go:
 * Mar 31 − 1m = "Feb 31" = Mar 2 (leap year) or Mar 3; hours are then subtracted as exact
 * elapsed time (3600 s each).
 */
export function subtractDuration(ref: Instant, d: Duration, timeZone: string): Instant {
  let ms = ref.ms;
  if (d.years !== 0 || d.months !== 0 || d.days !== 0) {
    const f = zonedFields(ref.ms, timeZone);
    const subMs = ((ref.ms % 1000) + 1000) % 1000;
    const wall = utcFromFields(
      f.year - d.years,
      f.month - d.months,
      f.day - d.days,
      f.hour,
      f.minute,
      f.second,
      subMs,
    );
    ms = instantFromWall(wall, timeZone);
  }
  ms -= d.hours * 3_600_000;
  return { ms, ns: ref.ns };
}

/** `ref − d` for a `Date` (durations as strings are parsed); default time zone is the process's. */
export function durationBefore(ref: Date, d: Duration | string, timeZone: string = defaultTimeZone()): Date {
  const dur = typeof d === 'string' ? parseDuration(d) : d;
  return new Date(subtractDuration({ ms: ref.getTime(), ns: 0 }, dur, timeZone).ms);
}
