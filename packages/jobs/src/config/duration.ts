import { ForgeError } from '@backupforge/common';

const UNITS: Readonly<Record<string, number>> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};

/**
 * Parses a timeout like `"30s"`, `"5m"`, `"1h30m"` or `"250ms"` into milliseconds. Units: ms, s,
 * m (minutes), h, d; whole or decimal numbers. Throws ForgeError FORGE_USAGE for anything else,
 * including zero.
 */
export function parseDurationMs(text: string): number {
  const s = text.trim();
  const fail = (why: string): never => {
    throw new ForgeError('FORGE_USAGE', `invalid duration "${text}": ${why}`, {
      hint: 'use a number with a unit ms, s, m, h or d, e.g. "30s", "5m" or "1h30m"',
      details: { duration: text },
    });
  };
  if (s === '') fail('it is empty');
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/y;
  let total = 0;
  let pos = 0;
  while (pos < s.length) {
    re.lastIndex = pos;
    const m = re.exec(s);
    if (!m) {
      fail(
        /^\d+(\.\d+)?$/.test(s.slice(pos))
          ? `no unit after ${s.slice(pos)}`
          : `cannot read "${s.slice(pos)}"`,
      );
      break;
    }
    total += Number(m[1]) * (UNITS[m[2] ?? ''] ?? 0);
    pos = re.lastIndex;
  }
  if (total <= 0) fail('it must be longer than zero');
  return Math.round(total);
}
