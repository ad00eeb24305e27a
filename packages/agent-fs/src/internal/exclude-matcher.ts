import { readFile } from 'node:fs/promises';
import { toForgeError } from '@backupforge/common';
import { compileGlobPattern, type GlobPattern } from './glob-pattern.ts';

/** Decides whether an absolute path is excluded by the name patterns of a backup. */
export interface ExcludeMatcher {
  /** True when `absPath` itself matches a pattern (the walk then skips it and its contents). */
  excludes(absPath: string): boolean;
  /** True when `absPath` or one of its ancestors matches: used for backup targets. */
  excludesWithAncestors(absPath: string): boolean;
}

export interface ExcludePatterns {
  readonly exclude: readonly string[];
  readonly iexclude: readonly string[];
}

/** Compiles `exclude` (case-sensitive) and `iexclude` (case-insensitive) patterns. */
export function createExcludeMatcher(patterns: ExcludePatterns): ExcludeMatcher {
  const compiled: GlobPattern[] = [
    ...patterns.exclude.map((p) => compileGlobPattern(p, false)),
    ...patterns.iexclude.map((p) => compileGlobPattern(p, true)),
  ];
  const excludes = (absPath: string): boolean => compiled.some((g) => g.test(absPath));
  return {
    excludes,
    excludesWithAncestors(absPath: string): boolean {
      if (compiled.length === 0) return false;
      const parts = absPath.split('/').filter((c) => c !== '');
      for (let i = 1; i <= parts.length; i++) {
        if (excludes(`/${parts.slice(0, i).join('/')}`)) return true;
      }
      return false;
    },
  };
}

/**
 * Parses an exclude file's text: one pattern per line, surrounding whitespace trimmed, blank
 * lines and lines starting with `#` ignored (restic `--exclude-file`).
 */
export function parseExcludeFile(text: string): string[] {
  return text
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'));
}

/** Reads and parses exclude files; a file that cannot be read is a fatal error. */
export async function readExcludeFiles(files: readonly string[]): Promise<string[]> {
  const out: string[] = [];
  for (const file of files) {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (e) {
      throw toForgeError(e, `reading exclude file ${file}`);
    }
    out.push(...parseExcludeFile(text));
  }
  return out;
}
