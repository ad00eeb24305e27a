import { ForgeError } from '@backupforge/common';
import { Cron } from 'croner';
import type { ScheduleConfig } from '../types.ts';

/** Patterns are classic 5-field cron, or 6 fields with seconds first; nicknames like `@daily` too. */
const CRON_MODE = '5-or-6-parts' as const;

/** True when `Intl` (and so croner) knows the IANA time zone `tz`. */
export function isValidTimeZone(tz: string): boolean {
  if (tz.trim() === '') return false;
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}

/** The IANA time zone names this runtime knows (for "did you mean" suggestions). */
export function knownTimeZones(): readonly string[] {
  return Intl.supportedValuesOf('timeZone');
}

/**
 * Why `cron` is not a usable schedule, or undefined when it is: a syntax error (croner's reason),
 * or an expression that matches no date at all, like `0 0 31 2 *` (February 31). `timezone` must
 * be valid or undefined (the machine's zone).
 */
export function cronProblem(cron: string, timezone?: string): string | undefined {
  let job: Cron;
  try {
    job = new Cron(cron, { timezone, mode: CRON_MODE, paused: true });
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    return `invalid cron expression "${cron}": ${msg.replace(/^CronPattern:\s*/, '')}`;
  }
  if (job.nextRun() === null) {
    return `cron expression "${cron}" can never fire: no date matches it (like February 31); check the day-of-month and month fields`;
  }
  return undefined;
}

/**
 * The next `n` run times of a schedule strictly after `from`, computed by croner in the
 * schedule's time zone (default: the machine's). DST: a fixed time that falls in the spring
 * gap runs at the first valid time after it; a time that occurs twice in autumn runs once.
 * Throws ForgeError FORGE_USAGE for an invalid expression or time zone.
 */
export function nextRuns(schedule: ScheduleConfig | string, from: Date, n: number): Date[] {
  const cron = typeof schedule === 'string' ? schedule : schedule.cron;
  const timezone = typeof schedule === 'string' ? undefined : schedule.timezone;
  if (timezone !== undefined && !isValidTimeZone(timezone)) {
    throw new ForgeError('FORGE_USAGE', `unknown time zone "${timezone}"`, {
      hint: 'use an IANA time zone name such as "Europe/Berlin" or "UTC"',
    });
  }
  const problem = cronProblem(cron, timezone);
  if (problem !== undefined) {
    throw new ForgeError('FORGE_USAGE', problem, { hint: 'see docs/config.md for the cron syntax' });
  }
  if (n <= 0) return [];
  return new Cron(cron, { timezone, mode: CRON_MODE, paused: true }).nextRuns(n, from);
}
