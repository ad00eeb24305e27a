import { ForgeError, ForgeErrorCodes } from '@backupforge/common';
import picomatch from 'picomatch';

/** Characters picomatch gives a meaning to that restic's (Go `filepath.Match`) globs treat literally. */
const PICOMATCH_SPECIAL = new Set(['(', ')', '|', '+', '@', '!', '{', '}', '$', '^', ',']);

/**
 * Rewrites a restic-style glob (`*`, `?`, `[...]`, `[^...]`, `**`, `\` escapes; everything
 * else literal) into an equivalent picomatch glob by escaping the characters picomatch would
 * otherwise read as extglobs, braces, negation or raw regular-expression syntax.
 */
function toPicomatchGlob(pattern: string): string {
  let out = '';
  let inClass = false;
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i] as string;
    if (c === '\\') {
      // Keep an escape and the character it escapes together, untouched.
      out += c + (pattern[i + 1] ?? '\\');
      i++;
    } else if (c === '[' && !inClass) {
      inClass = true;
      out += c;
      // Go's class negation is `^`; keep it as a negation rather than escaping it.
      if (pattern[i + 1] === '^') {
        out += '^';
        i++;
      }
    } else if (c === ']' && inClass) {
      inClass = false;
      out += c;
    } else if (PICOMATCH_SPECIAL.has(c)) {
      out += `\\${c}`;
    } else {
      out += c;
    }
  }
  return out;
}

/** A compiled exclude pattern. `test` takes an absolute path (`/home/a/x.log`). */
export interface GlobPattern {
  readonly source: string;
  test(absPath: string): boolean;
}

/**
 * Compiles one exclude pattern with restic semantics: a pattern starting with `/` is anchored
 * to the absolute path; any other pattern matches a run of trailing path components, so
 * `*.log` and `node_modules` match a name at any depth and `a/b` matches `/x/a/b`. `**`
 * matches across directories. Throws `FORGE_USAGE` for patterns that cannot be used.
 */
export function compileGlobPattern(pattern: string, caseInsensitive: boolean): GlobPattern {
  let p = pattern;
  if (p === '') {
    throw new ForgeError(ForgeErrorCodes.FORGE_USAGE, 'empty exclude pattern', {
      hint: 'remove the empty pattern',
    });
  }
  if (p.includes('\0')) {
    throw new ForgeError(ForgeErrorCodes.FORGE_USAGE, `exclude pattern ${JSON.stringify(p)} contains NUL`);
  }
  while (p.length > 1 && p.endsWith('/') && !p.endsWith('\\/')) p = p.slice(0, -1);
  const anchored = p.startsWith('/');
  const body = anchored ? p.replace(/^\/+/, '') : p;
  if (body === '') {
    // `/` excludes everything.
    return { source: pattern, test: () => true };
  }
  const glob = anchored ? toPicomatchGlob(body) : `**/${toPicomatchGlob(body)}`;
  const isMatch = picomatch(glob, {
    dot: true,
    windows: false,
    nobrace: true,
    noextglob: true,
    nocase: caseInsensitive,
  });
  return {
    source: pattern,
    test: (absPath: string) => isMatch(absPath.replace(/^\/+/, '')),
  };
}
