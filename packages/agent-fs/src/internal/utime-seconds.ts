/**
 * Converts nanoseconds since the epoch to the value Node's `utimes` family takes (seconds), so
 * that the time set is exact to the microsecond.
 *
 * libuv turns the double back into a `timespec` by truncation and then drops everything below
 * a microsecond; a double near 1.7e9 s has a resolution of about 240 ns. Aiming at the middle
 * of the microsecond (±500 ns, away from zero like the truncation) makes rounding errors land
 * inside the right microsecond. Nanoseconds below the microsecond are lost.
 *
 * Node replaces a negative *number* by "now", but passes a numeric *string* through unchecked,
 * so times before 1970 are returned as strings.
 */
export function nsToUtimeSeconds(ns: bigint): number | string {
  let sec = ns / 1_000_000_000n;
  let rem = ns % 1_000_000_000n;
  if (rem < 0n) {
    rem += 1_000_000_000n;
    sec -= 1n;
  }
  const microNs = (rem / 1000n) * 1000n;
  const negative = Number(sec) + Number(microNs) / 1e9 < 0;
  const value = Number(sec) + (Number(microNs) + (negative ? -500 : 500)) / 1e9;
  return negative ? String(value) : value;
}
