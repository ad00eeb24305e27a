import { createExcludeMatcher } from './internal/exclude-matcher.ts';

export interface PathMatcherOptions {
  /** Case-sensitive patterns (restic/backup `--exclude` syntax). */
  readonly patterns?: readonly string[];
  /** Case-insensitive patterns. */
  readonly ipatterns?: readonly string[];
}

/**
 * A predicate over absolute paths with the same pattern syntax as backup excludes: a pattern
 * without `/` matches any path component (`*.log`), a leading `/` anchors it, `**` spans
 * directories. Used for `forge restore --include/--exclude`.
 *
 * ```ts
 * const isLog = createPathMatcher({ patterns: ['*.log'] });
 * isLog('/var/log/syslog.log'); // true
 * ```
 */
export function createPathMatcher(opts: PathMatcherOptions): (absPath: string) => boolean {
  const m = createExcludeMatcher({ exclude: opts.patterns ?? [], iexclude: opts.ipatterns ?? [] });
  return (absPath) => m.excludes(absPath);
}
