import { ForgeError, type SnapshotId, type SnapshotRecord } from '@backupforge/common';
import { describe, expect, it } from 'vitest';
import {
  applyPolicy,
  describeGroup,
  describePolicy,
  durationBefore,
  formatDuration,
  groupSnapshots,
  isEmptyPolicy,
  isoWeek,
  parseDuration,
  parseGroupBy,
  type RetentionPolicy,
  type RetentionResult,
  validatePolicy,
  zonedFields,
} from './index.ts';

// ---------------------------------------------------------------------------------------------
// helpers

/** A snapshot whose id is its time without seconds (`2024-12-31T18:00`), unless given. */
function sn(time: string, extra: Partial<Omit<SnapshotRecord, 'id'>> & { id?: string } = {}): SnapshotRecord {
  const { id, ...rest } = extra;
  return {
    id: (id ?? time.slice(0, 16)) as SnapshotId,
    time,
    tree: '0'.repeat(64),
    paths: ['/data'],
    hostname: 'host',
    username: 'user',
    tags: [],
    source: 'fs',
    programVersion: 'test',
    ...rest,
  };
}

const ids = (r: RetentionResult): string[] => r.keep.map((k) => k.snapshot.id);
const removedIds = (r: RetentionResult): string[] => r.remove.map((k) => k.snapshot.id);

/** One snapshot every `stepHours` hours, `from` inclusive, `to` inclusive (UTC ISO strings). */
function series(from: string, to: string, stepHours: number): SnapshotRecord[] {
  const out: SnapshotRecord[] = [];
  for (let t = Date.parse(from); t <= Date.parse(to); t += stepHours * 3_600_000) {
    out.push(sn(new Date(t).toISOString().replace('.000Z', 'Z')));
  }
  return out;
}

function usageError(fn: () => unknown): ForgeError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ForgeError);
    const fe = e as ForgeError;
    expect(fe.code).toBe('FORGE_USAGE');
    expect(fe.message).not.toContain('\n');
    expect(fe.hint).toBeTruthy();
    return fe;
  }
  throw new Error('expected a ForgeError FORGE_USAGE, nothing was thrown');
}

// 2023-01-01T00:00Z .. 2024-12-31T18:00Z, every 6 h: 731 days × 4 = 2924 snapshots.
const TWO_YEARS = series('2023-01-01T00:00:00Z', '2024-12-31T18:00:00Z', 6);
const NOW = new Date('2025-01-01T00:00:00Z');
const utc = { now: NOW, timeZone: 'UTC' };

// ---------------------------------------------------------------------------------------------

describe('applyPolicy on a 2-year series (every 6 h, UTC)', () => {
  it('has the expected shape', () => {
    expect(TWO_YEARS).toHaveLength(2924);
  });

  const cases: { name: string; policy: RetentionPolicy; keep: string[] | number; reasons?: string[][] }[] = [
    {
      name: 'last 3',
      policy: { last: 3 },
      keep: ['2024-12-31T18:00', '2024-12-31T12:00', '2024-12-31T06:00'],
      reasons: [['last snapshot'], ['last snapshot'], ['last snapshot']],
    },
    {
      name: 'hourly 3 (every snapshot is its own hour)',
      policy: { hourly: 3 },
      keep: ['2024-12-31T18:00', '2024-12-31T12:00', '2024-12-31T06:00'],
      reasons: [['hourly snapshot'], ['hourly snapshot'], ['hourly snapshot']],
    },
    {
      name: 'daily 3 keeps the newest of each day',
      policy: { daily: 3 },
      keep: ['2024-12-31T18:00', '2024-12-30T18:00', '2024-12-29T18:00'],
    },
    {
      name: 'weekly 3 uses ISO weeks (Dec 30-31 2024 are week 1 of 2025)',
      policy: { weekly: 3 },
      keep: ['2024-12-31T18:00', '2024-12-29T18:00', '2024-12-22T18:00'],
    },
    {
      name: 'monthly 3 keeps month ends',
      policy: { monthly: 3 },
      keep: ['2024-12-31T18:00', '2024-11-30T18:00', '2024-10-31T18:00'],
    },
    {
      name: 'yearly 3 with only 2 years: also keeps the oldest snapshot (restic ≥ 0.17)',
      policy: { yearly: 3 },
      keep: ['2024-12-31T18:00', '2023-12-31T18:00', '2023-01-01T00:00'],
      reasons: [['yearly snapshot'], ['yearly snapshot'], ['oldest yearly snapshot']],
    },
    {
      name: 'yearly 2 is exhausted before the oldest snapshot',
      policy: { yearly: 2 },
      keep: ['2024-12-31T18:00', '2023-12-31T18:00'],
    },
    { name: 'yearly -1 (unlimited): 2 years + oldest', policy: { yearly: -1 }, keep: 3 },
    { name: 'monthly -1: 24 months + oldest', policy: { monthly: -1 }, keep: 25 },
    { name: 'daily 10000: 731 days + oldest', policy: { daily: 10_000 }, keep: 732 },
    { name: 'last -1 keeps everything', policy: { last: -1 }, keep: 2924 },
    { name: 'weekly -1: 106 ISO weeks (2022-W52 … 2025-W01) + oldest', policy: { weekly: -1 }, keep: 107 },
    {
      name: 'within 2d keeps times strictly after newest − 2d (Dec 29 18:00 itself is out)',
      policy: { within: '2d' },
      keep: [
        '2024-12-31T18:00',
        '2024-12-31T12:00',
        '2024-12-31T06:00',
        '2024-12-31T00:00',
        '2024-12-30T18:00',
        '2024-12-30T12:00',
        '2024-12-30T06:00',
        '2024-12-30T00:00',
      ],
    },
    { name: 'within 48h equals within 2d in UTC', policy: { within: '48h' }, keep: 8 },
    {
      name: 'within-daily 1m: Dec 31 − 1m = "Nov 31" = Dec 1 18:00 (Go normalisation), so 30 days',
      policy: { withinDaily: '1m' },
      keep: 30,
    },
    {
      name: 'within-hourly 1d keeps every snapshot of the last day',
      policy: { withinHourly: '1d' },
      keep: ['2024-12-31T18:00', '2024-12-31T12:00', '2024-12-31T06:00', '2024-12-31T00:00'],
      reasons: [['hourly within 1d'], ['hourly within 1d'], ['hourly within 1d'], ['hourly within 1d']],
    },
    {
      name: 'within-weekly 3d: after Dec 28 18:00 → 2025-W01 and 2024-W52',
      policy: { withinWeekly: '3d' },
      keep: ['2024-12-31T18:00', '2024-12-29T18:00'],
    },
    {
      name: 'within-monthly 1y keeps one per month of the last year (Dec 2023 end is excluded)',
      policy: { withinMonthly: '1y' },
      keep: 12,
    },
    {
      name: 'within-yearly 1y: the cutoff 2023-12-31T18:00 itself is excluded',
      policy: { withinYearly: '1y' },
      keep: ['2024-12-31T18:00'],
    },
    {
      name: 'within-yearly 1y1h reaches the last snapshot of 2023',
      policy: { withinYearly: '1y1h' },
      keep: ['2024-12-31T18:00', '2023-12-31T18:00'],
      reasons: [['yearly within 1y1h'], ['yearly within 1y1h']],
    },
    {
      name: 'combined last 2, daily 3, weekly 2, monthly 2',
      policy: { last: 2, daily: 3, weekly: 2, monthly: 2 },
      keep: [
        '2024-12-31T18:00',
        '2024-12-31T12:00',
        '2024-12-30T18:00',
        '2024-12-29T18:00',
        '2024-11-30T18:00',
      ],
      reasons: [
        ['last snapshot', 'daily snapshot', 'weekly snapshot', 'monthly snapshot'],
        ['last snapshot'],
        ['daily snapshot'],
        ['daily snapshot', 'weekly snapshot'],
        ['monthly snapshot'],
      ],
    },
    {
      name: 'combined daily 7, weekly 4, monthly 6, yearly -1 (typical policy)',
      policy: { daily: 7, weekly: 4, monthly: 6, yearly: -1 },
      keep: [
        '2024-12-31T18:00', // daily, weekly (2025-W01), monthly, yearly
        '2024-12-30T18:00',
        '2024-12-29T18:00', // daily, weekly (W52)
        '2024-12-28T18:00',
        '2024-12-27T18:00',
        '2024-12-26T18:00',
        '2024-12-25T18:00',
        '2024-12-22T18:00', // weekly W51
        '2024-12-15T18:00', // weekly W50
        '2024-11-30T18:00',
        '2024-10-31T18:00',
        '2024-09-30T18:00',
        '2024-08-31T18:00',
        '2024-07-31T18:00',
        '2023-12-31T18:00', // yearly
        '2023-01-01T00:00', // oldest yearly
      ],
    },
  ];

  for (const c of cases) {
    it(c.name, () => {
      const r = applyPolicy(TWO_YEARS, c.policy, utc);
      if (typeof c.keep === 'number') expect(r.keep).toHaveLength(c.keep);
      else expect(ids(r)).toEqual(c.keep);
      if (c.reasons) expect(r.keep.map((k) => k.reasons)).toEqual(c.reasons);
      // keep and remove partition the input
      expect(r.keep.length + r.remove.length).toBe(TWO_YEARS.length);
      expect(new Set([...ids(r), ...removedIds(r)]).size).toBe(TWO_YEARS.length);
    });
  }

  it('reports remaining counters like restic', () => {
    const r = applyPolicy(TWO_YEARS, { last: 2, daily: -1, monthly: 3 }, utc);
    expect(r.keep[0]?.counters).toEqual({ last: 1, hourly: 0, daily: -1, weekly: 0, monthly: 2, yearly: 0 });
    expect(r.keep[1]?.counters).toEqual({ last: 0, hourly: 0, daily: -1, weekly: 0, monthly: 2, yearly: 0 });
  });

  it('is independent of input order and does not mutate the input', () => {
    const shuffled = [...TWO_YEARS].reverse();
    const copy = [...shuffled];
    const a = applyPolicy(TWO_YEARS, { daily: 5, monthly: 3 }, utc);
    const b = applyPolicy(shuffled, { daily: 5, monthly: 3 }, utc);
    expect(ids(b)).toEqual(ids(a));
    expect(shuffled).toEqual(copy);
  });

  it('returns keep and remove newest first', () => {
    const r = applyPolicy(TWO_YEARS, { weekly: 10 }, utc);
    const times = (xs: { snapshot: SnapshotRecord }[]) => xs.map((x) => Date.parse(x.snapshot.time));
    expect(times(r.keep)).toEqual([...times(r.keep)].sort((x, y) => y - x));
    expect(times(r.remove)).toEqual([...times(r.remove)].sort((x, y) => y - x));
  });
});

describe('the oldest-snapshot rule and counters', () => {
  const sameDay = [sn('2024-05-01T20:00:00Z'), sn('2024-05-01T12:00:00Z'), sn('2024-05-01T08:00:00Z')];

  it('keeps the oldest snapshot while a bucket has counts left', () => {
    const r = applyPolicy(sameDay, { daily: 5 }, utc);
    expect(r.keep.map((k) => [k.snapshot.id, k.reasons])).toEqual([
      ['2024-05-01T20:00', ['daily snapshot']],
      ['2024-05-01T08:00', ['oldest daily snapshot']],
    ]);
    expect(removedIds(r)).toEqual(['2024-05-01T12:00']);
  });

  it('does not when the count is exhausted', () => {
    expect(ids(applyPolicy(sameDay, { daily: 1 }, utc))).toEqual(['2024-05-01T20:00']);
  });

  it('applies to within-* windows too, when the oldest is inside the window', () => {
    const r = applyPolicy(sameDay, { withinDaily: '1d' }, utc);
    expect(r.keep.map((k) => k.reasons)).toEqual([['daily within 1d'], ['oldest daily within 1d']]);
  });

  it('empty input gives empty output', () => {
    expect(applyPolicy([], { daily: 3 }, utc)).toEqual({ keep: [], remove: [] });
  });
});

describe('DST transitions', () => {
  // Europe/Berlin falls back on 2024-10-27 at 01:00Z (03:00 CEST → 02:00 CET).
  const berlinFallBack = [
    sn('2024-10-27T01:30:00Z'), // 02:30 CET (second 02:xx)
    sn('2024-10-27T00:30:00Z'), // 02:30 CEST (first 02:xx)
    sn('2024-10-26T12:00:00Z'), // older, absorbs the oldest-snapshot rule
  ];

  it('Europe/Berlin: 02:30 CEST and 02:30 CET share one hourly bucket', () => {
    const r = applyPolicy(berlinFallBack, { hourly: 10 }, { now: NOW, timeZone: 'Europe/Berlin' });
    expect(ids(r)).toEqual(['2024-10-27T01:30', '2024-10-26T12:00']);
    expect(removedIds(r)).toEqual(['2024-10-27T00:30']);
  });

  it('the same instants are two hourly buckets in UTC and in America/New_York', () => {
    for (const timeZone of ['UTC', 'America/New_York']) {
      const r = applyPolicy(berlinFallBack, { hourly: 10 }, { now: NOW, timeZone });
      expect(r.remove).toEqual([]);
    }
  });

  it('America/New_York: the repeated 01:xx hour on 2024-11-03 is one bucket (25-hour day → 24 buckets)', () => {
    // 04:00Z = 00:00 EDT … 2024-11-04T04:00Z = 23:00 EST: 25 hourly snapshots on one local day.
    const day = series('2024-11-03T04:00:00Z', '2024-11-04T04:00:00Z', 1);
    expect(day).toHaveLength(25);
    const ny = { now: NOW, timeZone: 'America/New_York' };
    const r = applyPolicy(day, { hourly: -1 }, ny);
    expect(r.keep).toHaveLength(24);
    expect(removedIds(r)).toEqual(['2024-11-03T05:00']); // 01:00 EDT loses to 01:00 EST (06:00Z)
    expect(ids(applyPolicy(day, { daily: 1 }, ny))).toEqual(['2024-11-04T04:00']);
    expect(applyPolicy(day, { daily: -1 }, ny).keep).toHaveLength(2); // newest + oldest, one local day
  });

  it('Europe/Berlin: the 23-hour spring-forward day has 23 hourly buckets and is one daily bucket', () => {
    // 2024-03-30T23:00Z = Mar 31 00:00 CET … 2024-03-31T21:00Z = Mar 31 23:00 CEST
    const day = series('2024-03-30T23:00:00Z', '2024-03-31T21:00:00Z', 1);
    expect(day).toHaveLength(23);
    const berlin = { now: NOW, timeZone: 'Europe/Berlin' };
    expect(applyPolicy(day, { hourly: -1 }, berlin).keep).toHaveLength(23);
    expect(ids(applyPolicy(day, { daily: 1 }, berlin))).toEqual(['2024-03-31T21:00']);
  });

  it('daily across a DST change keeps one snapshot per LOCAL day', () => {
    const hours = series('2024-03-30T00:00:00Z', '2024-04-01T23:00:00Z', 1);
    const berlin = applyPolicy(hours, { daily: -1 }, { now: NOW, timeZone: 'Europe/Berlin' });
    expect(ids(berlin)).toEqual([
      '2024-04-01T23:00', // Apr 2 01:00 CEST
      '2024-04-01T21:00', // Apr 1 23:00 CEST
      '2024-03-31T21:00', // Mar 31 23:00 CEST
      '2024-03-30T22:00', // Mar 30 23:00 CET
      '2024-03-30T00:00', // oldest
    ]);
    const inUtc = applyPolicy(hours, { daily: -1 }, utc);
    expect(ids(inUtc)).toEqual([
      '2024-04-01T23:00',
      '2024-03-31T23:00',
      '2024-03-30T23:00',
      '2024-03-30T00:00',
    ]);
  });

  it('within in days counts calendar days across DST, within in hours counts elapsed hours', () => {
    const berlin = 'Europe/Berlin';
    const ref = new Date('2024-04-01T10:00:00Z'); // 12:00 CEST
    expect(durationBefore(ref, '1d', berlin).toISOString()).toBe('2024-03-31T10:00:00.000Z'); // 12:00 CEST
    expect(durationBefore(ref, '2d', berlin).toISOString()).toBe('2024-03-30T11:00:00.000Z'); // 12:00 CET
    expect(durationBefore(ref, '48h', berlin).toISOString()).toBe('2024-03-30T10:00:00.000Z');
    const snaps = [sn('2024-04-01T10:00:00Z'), sn('2024-03-30T10:30:00Z'), sn('2024-03-30T11:30:00Z')];
    expect(ids(applyPolicy(snaps, { within: '2d' }, { now: NOW, timeZone: berlin }))).toEqual([
      '2024-04-01T10:00',
      '2024-03-30T11:30',
    ]);
    expect(applyPolicy(snaps, { within: '48h' }, { now: NOW, timeZone: berlin }).keep).toHaveLength(3);
  });

  it('a calendar subtraction landing in a spring-forward gap moves forward like Go', () => {
    // 2024-04-01 02:30 CEST − 1d = Mar 31 02:30, which does not exist in Berlin → 03:30 CEST.
    const ref = new Date('2024-04-01T00:30:00Z');
    expect(durationBefore(ref, '1d', 'Europe/Berlin').toISOString()).toBe('2024-03-31T01:30:00.000Z');
  });
});

describe('calendar edges', () => {
  it('leap year: Feb 29 is its own daily and monthly-February bucket', () => {
    const snaps = [
      sn('2024-03-01T12:00:00Z'),
      sn('2024-02-29T12:00:00Z'),
      sn('2024-02-28T12:00:00Z'),
      sn('2024-01-31T12:00:00Z'),
      sn('2023-12-15T12:00:00Z'),
    ];
    expect(ids(applyPolicy(snaps, { monthly: 3 }, utc))).toEqual([
      '2024-03-01T12:00',
      '2024-02-29T12:00',
      '2024-01-31T12:00',
    ]);
    expect(ids(applyPolicy(snaps, { daily: 3 }, utc))).toEqual([
      '2024-03-01T12:00',
      '2024-02-29T12:00',
      '2024-02-28T12:00',
    ]);
    expect(ids(applyPolicy(snaps, { yearly: 1 }, utc))).toEqual(['2024-03-01T12:00']);
  });

  it('month ends: Jan 31 and Feb 29 fall in different months; Feb 29 late UTC is March in Tokyo', () => {
    const snaps = [sn('2024-02-29T20:00:00Z'), sn('2024-02-10T00:00:00Z'), sn('2024-01-31T23:00:00Z')];
    expect(ids(applyPolicy(snaps, { monthly: 2 }, utc))).toEqual(['2024-02-29T20:00', '2024-01-31T23:00']);
    // In Tokyo (+9): Mar 1 05:00, Feb 10 09:00, Feb 1 08:00 → March, February, February.
    expect(ids(applyPolicy(snaps, { monthly: 2 }, { now: NOW, timeZone: 'Asia/Tokyo' }))).toEqual([
      '2024-02-29T20:00',
      '2024-02-10T00:00',
    ]);
  });

  it('ISO weeks: Dec 31 2024 is 2025-W01, Jan 1 2027 is 2026-W53', () => {
    expect(isoWeek(2024, 12, 31)).toEqual({ year: 2025, week: 1 });
    expect(isoWeek(2024, 12, 29)).toEqual({ year: 2024, week: 52 });
    expect(isoWeek(2027, 1, 1)).toEqual({ year: 2026, week: 53 });
    expect(isoWeek(2027, 1, 3)).toEqual({ year: 2026, week: 53 });
    expect(isoWeek(2027, 1, 4)).toEqual({ year: 2027, week: 1 });
    expect(isoWeek(2021, 1, 3)).toEqual({ year: 2020, week: 53 });
    expect(isoWeek(2024, 2, 29)).toEqual({ year: 2024, week: 9 });
  });

  it('weekly buckets span the year boundary', () => {
    const a = [
      sn('2025-01-06T12:00:00Z'), // Mon, 2025-W02
      sn('2025-01-05T12:00:00Z'), // Sun, 2025-W01
      sn('2024-12-31T12:00:00Z'), // Tue, 2025-W01
      sn('2024-12-30T12:00:00Z'), // Mon, 2025-W01
      sn('2024-12-29T12:00:00Z'), // Sun, 2024-W52
    ];
    const r = applyPolicy(a, { weekly: -1 }, utc);
    expect(ids(r)).toEqual(['2025-01-06T12:00', '2025-01-05T12:00', '2024-12-29T12:00']);
    const b = [
      sn('2027-01-04T12:00:00Z'), // 2027-W01
      sn('2027-01-03T12:00:00Z'), // 2026-W53
      sn('2027-01-01T12:00:00Z'), // 2026-W53
      sn('2026-12-31T12:00:00Z'), // 2026-W53
      sn('2026-12-27T12:00:00Z'), // 2026-W52
    ];
    expect(ids(applyPolicy(b, { weekly: -1 }, utc))).toEqual([
      '2027-01-04T12:00',
      '2027-01-03T12:00',
      '2026-12-27T12:00',
    ]);
    // ISO week-year, not calendar year: yearly (calendar) splits Dec 31 from Jan 1.
    expect(ids(applyPolicy(b, { yearly: -1 }, utc))).toEqual([
      '2027-01-04T12:00',
      '2026-12-31T12:00',
      '2026-12-27T12:00',
    ]);
  });

  it('time zones: 23:30Z is the next day in Asia/Tokyo and the same day in America/Los_Angeles', () => {
    expect(zonedFields(Date.parse('2024-06-10T23:30:00Z'), 'Asia/Tokyo')).toMatchObject({
      month: 6,
      day: 11,
      hour: 8,
    });
    expect(zonedFields(Date.parse('2024-06-10T23:30:00Z'), 'America/Los_Angeles')).toMatchObject({
      month: 6,
      day: 10,
      hour: 16,
    });
    const snaps = [
      sn('2024-06-11T10:00:00Z'), // Tokyo Jun 11 19:00 | LA Jun 11 03:00
      sn('2024-06-10T23:30:00Z'), // Tokyo Jun 11 08:30 | LA Jun 10 16:30
      sn('2024-06-10T12:00:00Z'), // Tokyo Jun 10 21:00 | LA Jun 10 05:00
      sn('2024-06-09T12:00:00Z'), // Tokyo Jun 9 21:00  | LA Jun 9 05:00
    ];
    const tokyo = applyPolicy(snaps, { daily: -1 }, { now: NOW, timeZone: 'Asia/Tokyo' });
    expect(removedIds(tokyo)).toEqual(['2024-06-10T23:30']);
    const la = applyPolicy(snaps, { daily: -1 }, { now: NOW, timeZone: 'America/Los_Angeles' });
    expect(removedIds(la)).toEqual(['2024-06-10T12:00']);
  });

  it('honours timestamps with offsets and nanoseconds', () => {
    const snaps = [
      sn('2024-06-10T23:30:00.000000002Z', { id: 'b' }),
      sn('2024-06-11T01:30:00.000000001+02:00', { id: 'a' }), // 1 ns earlier than b
    ];
    expect(ids(applyPolicy(snaps, { last: 1 }, utc))).toEqual(['b']);
    expect(ids(applyPolicy([...snaps].reverse(), { last: 1 }, utc))).toEqual(['b']);
  });

  it('uses the process time zone by default', () => {
    const snaps = [sn('2024-06-10T23:30:00Z'), sn('2024-06-10T00:30:00Z')];
    const def = Intl.DateTimeFormat().resolvedOptions().timeZone;
    const a = applyPolicy(snaps, { daily: 1 }, { now: NOW });
    const b = applyPolicy(snaps, { daily: 1 }, { now: NOW, timeZone: def });
    expect(ids(a)).toEqual(ids(b));
  });
});

describe('within and month arithmetic (Go AddDate normalisation)', () => {
  it.each([
    ['2024-03-31T12:00:00Z', '1m', '2024-03-02T12:00:00.000Z'], // "Feb 31 2024" → Mar 2
    ['2023-03-31T12:00:00Z', '1m', '2023-03-03T12:00:00.000Z'], // "Feb 31 2023" → Mar 3
    ['2024-02-29T12:00:00Z', '1y', '2023-03-01T12:00:00.000Z'], // "Feb 29 2023" → Mar 1
    ['2024-03-31T12:00:00Z', '1m1d', '2024-03-01T12:00:00.000Z'], // "Feb 30 2024" → Mar 1
    ['2024-03-15T12:00:00Z', '1m', '2024-02-15T12:00:00.000Z'],
    ['2025-01-31T00:00:00Z', '2y5m7d3h', '2022-08-23T21:00:00.000Z'],
  ])('%s − %s = %s', (ref, d, expected) => {
    expect(durationBefore(new Date(ref), d, 'UTC').toISOString()).toBe(expected);
  });

  it('within 1m from Mar 31 keeps only what is after Mar 2 (not Feb 29)', () => {
    const snaps = [
      sn('2024-03-31T12:00:00Z'),
      sn('2024-03-02T13:00:00Z'),
      sn('2024-03-02T12:00:00Z'),
      sn('2024-03-01T12:00:00Z'),
      sn('2024-02-29T12:00:00Z'),
    ];
    const r = applyPolicy(snaps, { within: '1m' }, utc);
    expect(ids(r)).toEqual(['2024-03-31T12:00', '2024-03-02T13:00']);
    expect(r.keep[0]?.reasons).toEqual(['within 1m']);
  });

  it('measures within from the newest snapshot, not from now', () => {
    const snaps = [sn('2020-01-10T00:00:00Z'), sn('2020-01-09T12:00:00Z'), sn('2020-01-08T12:00:00Z')];
    expect(ids(applyPolicy(snaps, { within: '1d' }, utc))).toEqual(['2020-01-10T00:00', '2020-01-09T12:00']);
  });

  it('ignores snapshots in the future (after now) when finding the newest', () => {
    const snaps = [
      sn('2024-01-10T00:00:00Z'), // future: not the reference, but still kept (after the cutoff)
      sn('2024-01-04T12:00:00Z'), // newest before now → reference
      sn('2024-01-03T13:00:00Z'),
      sn('2024-01-03T12:00:00Z'), // exactly reference − 1d: not kept (strictly after)
      sn('2024-01-01T00:00:00Z'),
    ];
    const r = applyPolicy(
      snaps,
      { within: '1d' },
      { now: new Date('2024-01-05T00:00:00Z'), timeZone: 'UTC' },
    );
    expect(ids(r)).toEqual(['2024-01-10T00:00', '2024-01-04T12:00', '2024-01-03T13:00']);
    // all snapshots in the future: restic's reference is the zero time, so everything is within
    const all = applyPolicy(
      snaps,
      { within: '1d' },
      { now: new Date('2000-01-01T00:00:00Z'), timeZone: 'UTC' },
    );
    expect(all.keep).toHaveLength(5);
  });
});

describe('keep-tag and reasons', () => {
  const snaps = [
    sn('2024-05-05T00:00:00Z', { tags: ['a', 'b'] }),
    sn('2024-05-04T00:00:00Z', { tags: ['a'] }),
    sn('2024-05-03T00:00:00Z', { tags: ['b', 'x'] }),
    sn('2024-05-02T00:00:00Z', { tags: [] }),
  ];

  it.each([
    [[['a', 'b']], ['2024-05-05T00:00']],
    [[['a']], ['2024-05-05T00:00', '2024-05-04T00:00']],
    [
      [['b'], ['a']],
      ['2024-05-05T00:00', '2024-05-04T00:00', '2024-05-03T00:00'],
    ],
    [[['x', 'a']], []],
    [[['']], ['2024-05-02T00:00']], // restic: an empty tag matches untagged snapshots
  ])('tags %j keep %j', (tags, expected) => {
    expect(ids(applyPolicy(snaps, { tags }, utc))).toEqual(expected);
  });

  it('lists every reason, in restic order', () => {
    const r = applyPolicy(
      snaps,
      { tags: [['a', 'b'], ['b']], within: '1d', last: 1, daily: 2, withinDaily: '2d' },
      utc,
    );
    expect(r.keep.map((k) => [k.snapshot.id, k.reasons])).toEqual([
      [
        '2024-05-05T00:00',
        [
          'has tags [a, b]',
          'has tags [b]',
          'within 1d',
          'last snapshot',
          'daily snapshot',
          'daily within 2d',
        ],
      ],
      ['2024-05-04T00:00', ['daily snapshot', 'daily within 2d']],
      ['2024-05-03T00:00', ['has tags [b]']],
    ]);
    expect(removedIds(r)).toEqual(['2024-05-02T00:00']);
    expect(r.remove[0]).toEqual({ snapshot: snaps[3] });
  });

  it('keeps everything when the policy is empty', () => {
    const r = applyPolicy(snaps, {}, utc);
    expect(r.keep).toHaveLength(4);
    expect(r.keep.every((k) => k.reasons.join() === 'policy is empty')).toBe(true);
    expect(applyPolicy(snaps, { daily: 0, within: '0d', tags: [] }, utc).remove).toEqual([]);
  });
});

describe('groupSnapshots', () => {
  const snaps = [
    sn('2024-05-05T00:00:00Z', { id: 'a1', hostname: 'a', paths: ['/x', '/y'], tags: ['t2', 't1'] }),
    sn('2024-05-04T00:00:00Z', { id: 'a2', hostname: 'a', paths: ['/y', '/x'], tags: ['t1'] }),
    sn('2024-05-03T00:00:00Z', { id: 'a3', hostname: 'a', paths: ['/x'], tags: ['t1', 't2'] }),
    sn('2024-05-02T00:00:00Z', { id: 'b1', hostname: 'b', paths: ['/x'], tags: ['t1'] }),
    sn('2024-05-01T00:00:00Z', { id: 'b2', hostname: 'b', paths: ['/x', '/y'], tags: [] }),
  ];
  const members = (gs: ReturnType<typeof groupSnapshots>) => gs.map((g) => g.snapshots.map((s) => s.id));

  it.each([
    [undefined, [['a3'], ['a1', 'a2'], ['b1'], ['b2']]],
    [
      ['host'],
      [
        ['a1', 'a2', 'a3'],
        ['b1', 'b2'],
      ],
    ],
    [
      ['paths'],
      [
        ['a3', 'b1'],
        ['a1', 'a2', 'b2'],
      ],
    ],
    [['tags'], [['b2'], ['a2', 'b1'], ['a1', 'a3']]],
    [
      ['host', 'tags'],
      [['a2'], ['a1', 'a3'], ['b2'], ['b1']],
    ],
    [[], [['a1', 'a2', 'a3', 'b1', 'b2']]],
  ] as const)('group by %j', (groupBy, expected) => {
    const gs = groupSnapshots(snaps, groupBy === undefined ? undefined : [...groupBy]);
    expect(members(gs)).toEqual(expected);
    expect(new Set(gs.map((g) => g.key)).size).toBe(gs.length);
  });

  it('describes the group fields, paths and tags as sorted sets', () => {
    const [g] = groupSnapshots(snaps, ['host', 'paths', 'tags']);
    expect(g).toMatchObject({ hostname: 'a', paths: ['/x'], tags: ['t1', 't2'] });
    expect(g && describeGroup(g)).toBe('host a, path [/x], tags [t1 t2]');
    const [h] = groupSnapshots(snaps, ['host']);
    expect(h && 'paths' in h).toBe(false);
  });

  it('policies apply per group', () => {
    const kept = groupSnapshots(snaps).flatMap((g) => ids(applyPolicy(g.snapshots, { last: 1 }, utc)));
    expect(kept).toEqual(['a3', 'a1', 'b1', 'b2']);
    const byHost = groupSnapshots(snaps, ['host']).flatMap((g) =>
      ids(applyPolicy(g.snapshots, { last: 1 }, utc)),
    );
    expect(byHost).toEqual(['a1', 'b1']);
  });

  it('parses --group-by values', () => {
    expect(parseGroupBy('host,paths')).toEqual(['host', 'paths']);
    expect(parseGroupBy('tags,hosts,path')).toEqual(['host', 'paths', 'tags']);
    expect(parseGroupBy('')).toEqual([]);
    usageError(() => parseGroupBy('host,bogus'));
    usageError(() => groupSnapshots(snaps, ['bogus' as 'host']));
  });
});

describe('durations', () => {
  it.each([
    ['2y5m7d3h', { years: 2, months: 5, days: 7, hours: 3 }],
    ['7d', { years: 0, months: 0, days: 7, hours: 0 }],
    [' 36h ', { years: 0, months: 0, days: 0, hours: 36 }],
    ['3h1y', { years: 1, months: 0, days: 0, hours: 3 }],
    ['0d', { years: 0, months: 0, days: 0, hours: 0 }],
  ])('parses %j', (s, expected) => {
    expect(parseDuration(s)).toEqual(expected);
  });

  it('formats canonically like restic', () => {
    expect(formatDuration(parseDuration('3h1y'))).toBe('1y3h');
    expect(formatDuration(parseDuration('48h'))).toBe('48h');
  });

  it.each(['2w', '1.5d', 'd', '5', '-1d', '', '1d1d', '1D', '1 d', 'y1'])('rejects %j', (s) => {
    usageError(() => parseDuration(s));
  });
});

describe('policy validation', () => {
  it.each<[string, unknown]>([
    ['count below -1', { daily: -2 }],
    ['fractional count', { weekly: 1.5 }],
    ['NaN count', { last: Number.NaN }],
    ['string count', { monthly: '3' }],
    ['unknown unit', { within: '2w' }],
    ['negative duration', { withinDaily: '-3d' }],
    ['empty duration', { within: '' }],
    ['non-string duration', { withinHourly: 5 }],
    ['unknown option', { keepDaily: 7 }],
    ['empty tag group', { tags: [[]] }],
    ['tags not a list of lists', { tags: ['a'] }],
    ['not an object', null],
  ])('%s is FORGE_USAGE', (_name, policy) => {
    usageError(() => validatePolicy(policy as RetentionPolicy));
    if (policy !== null)
      usageError(() => applyPolicy([sn('2024-01-01T00:00:00Z')], policy as RetentionPolicy, utc));
  });

  it('names the flag and the bad unit', () => {
    const e = usageError(() => validatePolicy({ withinWeekly: '3w' }));
    expect(e.message).toContain('--keep-within-weekly');
    expect(e.message).toContain("'w'");
    const c = usageError(() => validatePolicy({ daily: -5 }));
    expect(c.message).toContain('--keep-daily');
    expect(c.hint).toContain('-1');
  });

  it('accepts -1 and 0 and resolves durations', () => {
    const p = validatePolicy({ last: -1, daily: 0, within: '1y', withinDaily: '0h' });
    expect(p).toMatchObject({ last: -1, daily: 0, within: { years: 1 }, withinDaily: undefined, tags: [] });
  });

  it('refuses an empty policy only when asked to', () => {
    for (const p of [{}, { daily: 0 }, { within: '0d' }, { tags: [] }] as RetentionPolicy[]) {
      expect(isEmptyPolicy(p)).toBe(true);
      expect(() => validatePolicy(p)).not.toThrow();
      usageError(() => validatePolicy(p, { requireNonEmpty: true }));
    }
    for (const p of [
      { last: -1 },
      { tags: [['a']] },
      { within: '1h' },
      { withinYearly: '1y' },
    ] as RetentionPolicy[]) {
      expect(isEmptyPolicy(p)).toBe(false);
      expect(() => validatePolicy(p, { requireNonEmpty: true })).not.toThrow();
    }
  });

  it('rejects an unknown time zone', () => {
    usageError(() => applyPolicy([], { daily: 1 }, { now: NOW, timeZone: 'Mars/Olympus' }));
  });

  it('describes a policy like restic', () => {
    expect(describePolicy({ daily: 7, weekly: 4, yearly: -1 })).toBe(
      'keep 7 daily, 4 weekly, all yearly snapshots',
    );
    expect(describePolicy({ last: 2, withinDaily: '7d', tags: [['a', 'b'], ['c']], within: '1y2m' })).toBe(
      'keep 2 latest snapshots, daily snapshots within 7d and all snapshots with tags [[a, b] [c]] and all snapshots within 1y2m of the newest',
    );
    expect(describePolicy({})).toBe('remove');
  });
});
