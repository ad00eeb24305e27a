/**
 * Named crash points for crash-safety tests: when FORGE_TEST_CRASH_AT names this point (or
 * `name:N` for its N-th pass), the process kills itself with SIGKILL right there, as a power cut
 * or `kill -9` would. Free when the variable is unset.
 */
const counts = new Map<string, number>();

export const CRASH_POINTS = [
  'backup:pack-saved',
  'backup:index-saved',
  'backup:before-snapshot',
  'backup:snapshot-saved',
  'repair-index:index-saved',
  'repair-index:old-index-removed',
  'forget:snapshot-removed',
  'prune:index-saved',
  'prune:old-index-removed',
  'prune:pack-removed',
] as const;

export type CrashPoint = (typeof CRASH_POINTS)[number];

export function crashPoint(name: CrashPoint): void {
  const want = process.env.FORGE_TEST_CRASH_AT;
  if (!want) return;
  const [point, nth] =
    want.split(':').length > 2
      ? [want.slice(0, want.lastIndexOf(':')), want.slice(want.lastIndexOf(':') + 1)]
      : [want, '1'];
  if (point !== name) return;
  const n = (counts.get(name) ?? 0) + 1;
  counts.set(name, n);
  if (n === Number(nth)) process.kill(process.pid, 'SIGKILL');
}
