import { describe, expect, it } from 'vitest';
import { formatBytes, formatDuration, runDurationMs } from './format.ts';

describe('formatBytes', () => {
  it.each([
    [0, '0 B'],
    [1023, '1023 B'],
    [1024, '1 KiB'],
    [1536, '1.5 KiB'],
    [10 * 1024 * 1024 + 300 * 1024, '10.3 MiB'],
    [150 * 1024 ** 3, '150 GiB'],
    [2.25 * 1024 ** 4, '2.3 TiB'],
  ])('%d → %s', (bytes, text) => {
    expect(formatBytes(bytes)).toBe(text);
  });
});

describe('formatDuration', () => {
  it.each([
    [0, '0.0 s'],
    [180, '0.2 s'],
    [9_940, '9.9 s'],
    [42_000, '42 s'],
    [60_000, '1 min'],
    [184_000, '3 min 4 s'],
    [3_600_000, '1 h'],
    [3_720_000, '1 h 2 min'],
    [2 * 86_400_000 + 3 * 3_600_000, '2 d 3 h'],
  ])('%d ms → %s', (ms, text) => {
    expect(formatDuration(ms)).toBe(text);
  });
});

describe('runDurationMs', () => {
  const base = { job: 'j', runId: 'r', repository: 'x', status: 'success', hostname: 'h' } as const;
  it('prefers durationMs, else the difference of the timestamps', () => {
    const startedAt = new Date('2025-01-01T00:00:00Z');
    const finishedAt = new Date('2025-01-01T00:00:03Z');
    expect(runDurationMs({ ...base, startedAt, finishedAt, durationMs: 5 })).toBe(5);
    expect(runDurationMs({ ...base, startedAt, finishedAt })).toBe(3000);
    expect(runDurationMs({ ...base, startedAt })).toBeUndefined();
  });
});
