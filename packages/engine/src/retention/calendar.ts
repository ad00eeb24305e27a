import { ForgeError } from '@backupforge/common';

/**
 * Calendar arithmetic in an IANA time zone, using only `Intl` (no date libraries).
 *
 * Instants are handled as a millisecond epoch plus the sub-millisecond nanoseconds of the
 * RFC 3339 timestamp, so that ordering matches restic's nanosecond-precision `time.Time`.
 */

/** A point in time: epoch milliseconds (floored) plus 0..999_999 further nanoseconds. */
export interface Instant {
  readonly ms: number;
  readonly ns: number;
}

/** Wall-clock fields of an instant in some time zone (month 1-12, hour 0-23). */
export interface ZonedFields {
  readonly year: number;
  readonly month: number;
  readonly day: number;
  readonly hour: number;
  readonly minute: number;
  readonly second: number;
}

const RFC3339 =
  /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d{2}):(\d{2}))$/;

/** Parses an RFC 3339 timestamp (any offset, up to nanosecond precision); undefined if malformed. */
export function parseInstant(s: string): Instant | undefined {
  const m = RFC3339.exec(s);
  if (!m) return undefined;
  const [, y, mo, d, h, mi, sec, frac = '', , sign, oh, om] = m;
  const digits = frac.padEnd(9, '0');
  const msFrac = Number(digits.slice(0, 3));
  const ns = Number(digits.slice(3));
  let wall = utcFromFields(Number(y), Number(mo), Number(d), Number(h), Number(mi), Number(sec), msFrac);
  if (sign !== undefined) {
    const off = (Number(oh) * 60 + Number(om)) * 60_000;
    wall -= sign === '+' ? off : -off;
  }
  if (!Number.isFinite(wall)) return undefined;
  return { ms: wall, ns };
}

export function compareInstants(a: Instant, b: Instant): number {
  return a.ms !== b.ms ? a.ms - b.ms : a.ns - b.ns;
}

/**
 * Epoch milliseconds of the given wall-clock fields read as UTC. Out-of-range fields are
 * normalised like Go's `time.Date` (month 13 → January of the next year, Feb 31 → Mar 2/3).
 * Unlike `Date.UTC`, years 0-99 are not mapped to 1900-1999.
 */
export function utcFromFields(
  year: number,
  month: number,
  day: number,
  hour = 0,
  minute = 0,
  second = 0,
  ms = 0,
): number {
  const d = new Date(0);
  d.setUTCFullYear(year, month - 1, day);
  d.setUTCHours(hour, minute, second, ms);
  return d.getTime();
}

const formatters = new Map<string, Intl.DateTimeFormat>();

/** The process's default IANA time zone, as `Intl` sees it. */
export function defaultTimeZone(): string {
  return Intl.DateTimeFormat().resolvedOptions().timeZone;
}

function formatterFor(timeZone: string): Intl.DateTimeFormat {
  let f = formatters.get(timeZone);
  if (!f) {
    try {
      f = new Intl.DateTimeFormat('en-US', {
        timeZone,
        hourCycle: 'h23',
        year: 'numeric',
        month: 'numeric',
        day: 'numeric',
        hour: 'numeric',
        minute: 'numeric',
        second: 'numeric',
      });
    } catch (cause) {
      throw new ForgeError('FORGE_USAGE', `unknown time zone '${timeZone}'`, {
        hint: "use an IANA time zone name such as 'Europe/Berlin' or 'UTC'",
        cause,
      });
    }
    formatters.set(timeZone, f);
  }
  return f;
}

/** Throws ForgeError FORGE_USAGE when `timeZone` is not a time zone `Intl` knows. */
export function assertTimeZone(timeZone: string): void {
  formatterFor(timeZone);
}

/** Wall-clock fields of the instant `ms` in `timeZone`. */
export function zonedFields(ms: number, timeZone: string): ZonedFields {
  let year = 0;
  let month = 0;
  let day = 0;
  let hour = 0;
  let minute = 0;
  let second = 0;
  let bc = false;
  for (const p of formatterFor(timeZone).formatToParts(new Date(ms))) {
    switch (p.type) {
      case 'year':
        year = Number(p.value);
        break;
      case 'month':
        month = Number(p.value);
        break;
      case 'day':
        day = Number(p.value);
        break;
      case 'hour':
        hour = Number(p.value);
        break;
      case 'minute':
        minute = Number(p.value);
        break;
      case 'second':
        second = Number(p.value);
        break;
      case 'era':
        bc = p.value.startsWith('B');
        break;
      default:
        break;
    }
  }
  // en-US shows years before 1 AD as "1 BC" etc.; map to astronomical years like Go.
  if (bc) year = 1 - year;
  return { year, month, day, hour, minute, second };
}

/** Offset of `timeZone` from UTC at instant `ms`, in milliseconds (east positive). */
export function zoneOffset(ms: number, timeZone: string): number {
  const f = zonedFields(ms, timeZone);
  const wall = utcFromFields(f.year, f.month, f.day, f.hour, f.minute, f.second);
  return wall - Math.floor(ms / 1000) * 1000;
}

/**
 * The instant at which the wall clock of `timeZone` shows `wallMs` (wall fields encoded as if
 * UTC), resolved the way Go's `time.Date` does: take the offset in effect at the wall time read
 * as UTC, and correct it once if the resulting instant lies under a different offset. Inside a
 * spring-forward gap the result is shifted forward by the size of the gap; in a fall-back overlap
 * the result depends on the zone's offsets, exactly as in Go.
 */
export function instantFromWall(wallMs: number, timeZone: string): number {
  let offset = zoneOffset(wallMs, timeZone);
  if (offset !== 0) {
    const utc = wallMs - offset;
    const actual = zoneOffset(utc, timeZone);
    if (actual !== offset) offset = actual;
  }
  return wallMs - offset;
}

/** ISO 8601 week-numbering year and week (1-53) of a calendar date. */
export function isoWeek(year: number, month: number, day: number): { year: number; week: number } {
  const date = utcFromFields(year, month, day);
  const dow = (new Date(date).getUTCDay() + 6) % 7; // Monday = 0
  const thursday = date + (3 - dow) * 86_400_000;
  const isoYear = new Date(thursday).getUTCFullYear();
  const week = Math.floor((thursday - utcFromFields(isoYear, 1, 1)) / (7 * 86_400_000)) + 1;
  return { year: isoYear, week };
}
