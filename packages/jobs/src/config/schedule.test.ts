import { ForgeError } from '@backupforge/common';
import { describe, expect, it } from 'vitest';
import { cronProblem, isValidTimeZone, nextRuns } from './index.ts';

const iso = (dates: Date[]) => dates.map((d) => d.toISOString());
const berlin = (cron: string) => ({ cron, timezone: 'Europe/Berlin', missed: 'run-once' as const });

describe('nextRuns', () => {
  it('keeps the wall-clock time across the March change in Europe/Berlin', () => {
    // 30 March 2025: 02:00 CET → 03:00 CEST.
    expect(iso(nextRuns(berlin('0 3 * * *'), new Date('2025-03-28T12:00:00Z'), 3))).toEqual([
      '2025-03-29T02:00:00.000Z', // 03:00 CET
      '2025-03-30T01:00:00.000Z', // 03:00 CEST
      '2025-03-31T01:00:00.000Z',
    ]);
    // 02:30 does not exist on 30 March: the run moves to the first valid time after the gap.
    expect(iso(nextRuns(berlin('30 2 * * *'), new Date('2025-03-28T12:00:00Z'), 3))).toEqual([
      '2025-03-29T01:30:00.000Z',
      '2025-03-30T01:00:00.000Z', // 03:00 CEST
      '2025-03-31T00:30:00.000Z',
    ]);
  });

  it('runs a fixed time once, and interval schedules on both hours, across the October change', () => {
    // 26 October 2025: 03:00 CEST → 02:00 CET, so 02:30 happens twice.
    expect(iso(nextRuns(berlin('30 2 * * *'), new Date('2025-10-25T12:00:00Z'), 3))).toEqual([
      '2025-10-26T00:30:00.000Z', // 02:30 CEST, not again at 02:30 CET
      '2025-10-27T01:30:00.000Z',
      '2025-10-28T01:30:00.000Z',
    ]);
    expect(iso(nextRuns(berlin('0 3 * * *'), new Date('2025-10-25T12:00:00Z'), 2))).toEqual([
      '2025-10-26T02:00:00.000Z', // 03:00 CET
      '2025-10-27T02:00:00.000Z',
    ]);
    expect(iso(nextRuns(berlin('*/30 * * * *'), new Date('2025-10-26T00:00:00Z'), 4))).toEqual([
      '2025-10-26T00:30:00.000Z', // 02:30 CEST
      '2025-10-26T01:00:00.000Z', // 02:00 CET
      '2025-10-26T01:30:00.000Z', // 02:30 CET
      '2025-10-26T02:00:00.000Z', // 03:00 CET
    ]);
  });

  it('returns runs strictly after `from`, accepting a bare expression and nicknames', () => {
    const utc = { cron: '0 3 * * *', timezone: 'UTC', missed: 'skip' as const };
    expect(iso(nextRuns(utc, new Date('2025-01-01T03:00:00Z'), 2))).toEqual([
      '2025-01-02T03:00:00.000Z',
      '2025-01-03T03:00:00.000Z',
    ]);
    expect(iso(nextRuns({ ...utc, cron: '@weekly' }, new Date('2025-01-01T00:00:00Z'), 1))).toEqual([
      '2025-01-05T00:00:00.000Z',
    ]);
    expect(nextRuns('0 3 * * *', new Date(), 0)).toEqual([]);
    expect(nextRuns('0 0 29 2 *', new Date('2025-01-01T00:00:00Z'), 1)).toHaveLength(1);
  });

  it('throws FORGE_USAGE for impossible or invalid schedules', () => {
    expect(() => nextRuns('0 0 31 2 *', new Date(), 1)).toThrow(ForgeError);
    expect(() => nextRuns('0 0 31 2 *', new Date(), 1)).toThrow(/can never fire/);
    expect(() => nextRuns({ ...berlin('0 3 * * *'), timezone: 'Nowhere/City' }, new Date(), 1)).toThrow(
      'unknown time zone "Nowhere/City"',
    );
  });
});

describe('cronProblem', () => {
  it('accepts 5- and 6-field expressions and nicknames', () => {
    for (const ok of ['0 3 * * *', '*/15 * * * *', '0 0 3 * * 1-5', '@daily', '0 4 1 * *', '0 0 29 2 *']) {
      expect(cronProblem(ok, 'Europe/Berlin'), ok).toBeUndefined();
    }
  });
  it('rejects expressions that never fire, with the reason', () => {
    expect(cronProblem('0 0 31 2 *')).toBe(
      'cron expression "0 0 31 2 *" can never fire: no date matches it (like February 31); check the day-of-month and month fields',
    );
    expect(cronProblem('0 0 30 2 *')).toMatch(/can never fire/);
  });
  it('rejects syntax errors and 7-field expressions', () => {
    expect(cronProblem('61 * * * *')).toBe(
      'invalid cron expression "61 * * * *": Invalid value for minute: 61',
    );
    expect(cronProblem('every day')).toMatch(/^invalid cron expression "every day": /);
    expect(cronProblem('0 0 0 * * * 2030')).toMatch(/^invalid cron expression/);
  });
});

describe('isValidTimeZone', () => {
  it('knows IANA zones', () => {
    expect(isValidTimeZone('Europe/Berlin')).toBe(true);
    expect(isValidTimeZone('UTC')).toBe(true);
    expect(isValidTimeZone('Europe/Berln')).toBe(false);
    expect(isValidTimeZone('')).toBe(false);
  });
});
