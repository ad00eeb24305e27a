import { describe, expect, it } from 'vitest';
import { parseExcludeIfPresent } from './exclude-if-present.ts';
import { parseExcludeFile } from './exclude-matcher.ts';
import { compileGlobPattern } from './glob-pattern.ts';

const m = (pattern: string, path: string, nocase = false) => compileGlobPattern(pattern, nocase).test(path);

describe('compileGlobPattern (restic semantics)', () => {
  it.each([
    ['*.log', '/var/log/x.log', true],
    ['*.log', '/x.log', true],
    ['*.log', '/var/x.log/y', false],
    ['node_modules', '/a/b/node_modules', true],
    ['node_modules', '/a/node_modules_x', false],
    ['b/c', '/a/b/c', true],
    ['b/c', '/a/xb/c', false],
    ['/a/*/c', '/a/b/c', true],
    ['/a/*/c', '/x/a/b/c', false],
    ['/a/**/c', '/a/c', true],
    ['/a/**/c', '/a/1/2/3/c', true],
    ['a/**', '/x/a/y/z', true],
    ['*', '/.hidden', true],
    ['.git', '/r/.git', true],
    ['?.txt', '/d/a.txt', true],
    ['?.txt', '/d/ab.txt', false],
    ['[ab].txt', '/d/b.txt', true],
    ['[^ab].txt', '/d/b.txt', false],
    ['[^ab].txt', '/d/c.txt', true],
    ['Copy (1).txt', '/d/Copy (1).txt', true],
    ['a+b', '/d/a+b', true],
    ['a+b', '/d/aab', false],
    ['{a,b}', '/d/a', false],
    ['{a,b}', '/d/{a,b}', true],
    ['!x', '/d/!x', true],
    ['!x', '/d/y', false],
    ['\\*', '/d/*', true],
    ['\\*', '/d/a', false],
    ['dir/', '/x/dir', true],
    ['*', '/x/new\nline', true],
  ])('%j against %j → %s', (pattern, path, expected) => {
    expect(m(pattern, path)).toBe(expected);
  });

  it('matches case-insensitively only when asked', () => {
    expect(m('*.LOG', '/a/x.log')).toBe(false);
    expect(m('*.LOG', '/a/x.log', true)).toBe(true);
    expect(m('/HOME/a', '/home/A', true)).toBe(true);
  });

  it('rejects empty patterns', () => {
    expect(() => compileGlobPattern('', false)).toThrow(expect.objectContaining({ code: 'FORGE_USAGE' }));
  });
});

describe('exclude file and exclude-if-present parsing', () => {
  it('parses exclude files', () => {
    expect(parseExcludeFile('# c\n\n a \r\nb\n#d\n  # e\n')).toEqual(['a', 'b']);
  });

  it('parses NAME and NAME:header (the header may contain colons)', () => {
    expect(parseExcludeIfPresent('.nobackup')).toEqual({ name: '.nobackup' });
    const r = parseExcludeIfPresent('CACHEDIR.TAG:Signature: 8a47');
    expect(r.name).toBe('CACHEDIR.TAG');
    expect(Buffer.from(r.header ?? []).toString()).toBe('Signature: 8a47');
    expect(() => parseExcludeIfPresent(':x')).toThrow(expect.objectContaining({ code: 'FORGE_USAGE' }));
  });
});
