import { describe, expect, it } from 'vitest';
import { parseDurationMs } from './duration.ts';
import { closest, editDistance } from './suggest.ts';

describe('editDistance / closest', () => {
  it('counts edits, a swap of neighbours as one', () => {
    expect(editDistance('exclude', 'exclude')).toBe(0);
    expect(editDistance('exlude', 'exclude')).toBe(1);
    expect(editDistance('pahts', 'paths')).toBe(1);
    expect(editDistance('', 'abc')).toBe(3);
  });
  it('suggests only plausible typos', () => {
    expect(closest('exlude', ['paths', 'exclude', 'exclude_if_present'])).toBe('exclude');
    expect(closest('Keep_Daily', ['keep_daily', 'keep_last'])).toBe('keep_daily');
    expect(closest('colour', ['paths', 'exclude'])).toBeUndefined();
  });
});

describe('parseDurationMs', () => {
  it('reads units and combinations', () => {
    expect(parseDurationMs('30s')).toBe(30_000);
    expect(parseDurationMs('5m')).toBe(300_000);
    expect(parseDurationMs('1h30m')).toBe(5_400_000);
    expect(parseDurationMs('250ms')).toBe(250);
    expect(parseDurationMs('1.5h')).toBe(5_400_000);
    expect(parseDurationMs('2d')).toBe(172_800_000);
  });
  it('rejects the rest', () => {
    for (const bad of ['', '30', '5 min', 'm', '0s', '-5s', '5x']) {
      expect(() => parseDurationMs(bad), bad).toThrow(/invalid duration/);
    }
  });
});
