const NS_PER_S = 1_000_000_000n;

/** What libuv makes of a seconds double: `tv_sec = (long)t; tv_nsec = (t - tv_sec) * 1e9`. */
function libuvNs(seconds: number): bigint {
  let s = Math.trunc(seconds);
  let n = Math.trunc((seconds - s) * 1e9);
  if (n < 0) {
    n += 1e9;
    s -= 1;
  }
  return BigInt(s) * NS_PER_S + BigInt(n);
}

const floorDiv = (a: bigint, b: bigint): bigint => (a >= 0n ? a / b : -((-a + b - 1n) / b));

/**
 * Converts nanoseconds since the epoch to the value Node's `utimes` family takes (seconds as a
 * double), so that the time set is right to the microsecond.
 *
 * A double near 1.7e9 s resolves about 240 ns, and libuv converts it back by truncation (older
 * libuv releases then also drop the sub-microsecond part). So: use the closest double when it
 * lands in the right microsecond, else aim at the middle of that microsecond, which rounding
 * errors cannot leave. Nanoseconds are kept only as far as the double allows.
 *
 * Node replaces a negative *number* by "now", but passes a numeric *string* through unchanged,
 * so times before 1970 are returned as strings.
 */
export function nsToUtimeSeconds(ns: bigint): number | string {
  const sec = floorDiv(ns, NS_PER_S);
  const rem = ns - sec * NS_PER_S;
  const micros = floorDiv(ns, 1000n);
  let value = Number(sec) + Number(rem) / 1e9;
  if (floorDiv(libuvNs(value), 1000n) !== micros) {
    value = Number(sec) + (Number((rem / 1000n) * 1000n) + 500) / 1e9;
  }
  return value < 0 ? String(value) : value;
}
