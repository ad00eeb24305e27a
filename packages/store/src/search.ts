import { ForgeError } from '@backupforge/common';
import { type RawBuilder, sql } from 'kysely';
import type { Dialect } from './migrations.ts';
import { foldAscii } from './util.ts';

/** A search pattern, resolved into what to match and how (see `Store.searchFiles`). */
export interface SearchPlan {
  readonly column: 'path' | 'name';
  readonly mode: 'substring' | 'glob';
  /** The substring, or the glob (`*`, `?` wildcards, everything else literal). */
  readonly text: string;
  readonly ignoreCase: boolean;
}

export function planSearch(pattern: string, ignoreCase = false): SearchPlan {
  if (typeof pattern !== 'string' || pattern.length === 0) {
    throw new ForgeError('FORGE_USAGE', 'search pattern must be a non-empty string');
  }
  const text = ignoreCase ? foldAscii(pattern) : pattern;
  if (!/[*?]/.test(pattern)) return { column: 'path', mode: 'substring', text, ignoreCase };
  if (pattern.startsWith('/')) return { column: 'path', mode: 'glob', text, ignoreCase };
  if (pattern.includes('/')) return { column: 'path', mode: 'glob', text: `*/${text}`, ignoreCase };
  return { column: 'name', mode: 'glob', text, ignoreCase };
}

/** The glob as an SQLite GLOB pattern: `*` and `?` stay, `[` becomes the literal class `[[]`. */
export function toSqliteGlob(glob: string): string {
  return glob.replace(/\[/g, '[[]');
}

/** The glob as a PostgreSQL LIKE pattern (escape character `\`). */
export function toLikePattern(glob: string): string {
  let out = '';
  for (const ch of glob) {
    if (ch === '*') out += '%';
    else if (ch === '?') out += '_';
    else if (ch === '%' || ch === '_' || ch === '\\') out += `\\${ch}`;
    else out += ch;
  }
  return out;
}

const UPPER = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ';
const LOWER = 'abcdefghijklmnopqrstuvwxyz';

/**
 * The WHERE condition for a plan, case-sensitive on both dialects (SQLite GLOB and `instr`,
 * PostgreSQL LIKE and `strpos`, both on byte-ordered columns). `ignoreCase` folds A–Z only on both:
 * SQLite's `lower()` is ASCII-only, and PostgreSQL uses `translate()` to match it.
 */
export function searchCondition(dialect: Dialect, plan: SearchPlan): RawBuilder<boolean> {
  const col = sql.ref(`catalog_files.${plan.column}`);
  const subject = plan.ignoreCase
    ? dialect === 'sqlite'
      ? sql`lower(${col})`
      : sql`translate(${col}, ${UPPER}, ${LOWER})`
    : col;
  if (plan.mode === 'substring') {
    return dialect === 'sqlite'
      ? sql<boolean>`instr(${subject}, ${plan.text}) > 0`
      : sql<boolean>`strpos(${subject}, ${plan.text}) > 0`;
  }
  return dialect === 'sqlite'
    ? sql<boolean>`${subject} glob ${toSqliteGlob(plan.text)}`
    : sql<boolean>`${subject} like ${toLikePattern(plan.text)}`;
}
