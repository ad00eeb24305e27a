import { describe, expect, it } from 'vitest';
import { locateKeys } from './locate.ts';

const DOC = [
  '# comment with key = 1', // 1
  'top = "value # not a comment"', // 2
  '', // 3
  '[jobs.home]', // 4
  '  paths = [', // 5
  '    "/a",   # first', // 6
  '    "/b",', // 7
  '  ]', // 8
  '  notes = """', // 9
  'fake = "inside a multi-line string"', // 10
  '"""', // 11
  "  'quoted key' = 1", // 12
  '  retention = { keep_daily = 7, keep_tags = ["a", "b"] }', // 13
  '[ jobs . "my.job" ]', // 14
  'sub.dotted.key = true', // 15
  '[[arr]]', // 16
  'x = 1', // 17
  '[[arr]]', // 18
  'x = 2', // 19
  "lit = '''", // 20
  "y = 3'''", // 21
  'z = 4', // 22
].join('\n');

describe('locateKeys', () => {
  const loc = locateKeys(DOC);

  it('finds keys, headers and array elements with line and column', () => {
    expect(loc.exact(['top'])).toEqual({ line: 2, column: 1 });
    expect(loc.exact(['jobs', 'home'])).toEqual({ line: 4, column: 1 });
    expect(loc.exact(['jobs', 'home', 'paths'])).toEqual({ line: 5, column: 3 });
    expect(loc.exact(['jobs', 'home', 'paths', '0'])).toEqual({ line: 6, column: 5 });
    expect(loc.exact(['jobs', 'home', 'paths', '1'])).toEqual({ line: 7, column: 5 });
    expect(loc.exact(['jobs', 'home', 'notes'])).toEqual({ line: 9, column: 3 });
    expect(loc.exact(['jobs', 'home', 'quoted key'])).toEqual({ line: 12, column: 3 });
  });

  it('does not take keys from comments or multi-line strings', () => {
    expect(loc.exact(['key'])).toBeUndefined();
    expect(loc.exact(['jobs', 'home', 'fake'])).toBeUndefined();
    expect(loc.exact(['arr', '1', 'y'])).toBeUndefined();
    expect(loc.exact(['arr', '1', 'z'])).toEqual({ line: 22, column: 1 });
  });

  it('reads inline tables, quoted and dotted keys', () => {
    expect(loc.exact(['jobs', 'home', 'retention', 'keep_daily'])).toEqual({ line: 13, column: 17 });
    expect(loc.exact(['jobs', 'home', 'retention', 'keep_tags', '1'])).toEqual({ line: 13, column: 51 });
    expect(loc.exact(['jobs', 'my.job'])).toEqual({ line: 14, column: 1 });
    expect(loc.exact(['jobs', 'my.job', 'sub', 'dotted', 'key'])).toEqual({ line: 15, column: 1 });
  });

  it('numbers arrays of tables', () => {
    expect(loc.exact(['arr', '0', 'x'])).toEqual({ line: 17, column: 1 });
    expect(loc.exact(['arr', '1', 'x'])).toEqual({ line: 19, column: 1 });
  });

  it('falls back to the first key under a path, then to the nearest ancestor', () => {
    expect(loc.find(['jobs', 'my.job', 'sub'])).toEqual({ line: 15, column: 1 });
    expect(loc.find(['jobs', 'home', 'missing'])).toEqual({ line: 4, column: 1 });
    expect(loc.find(['jobs'])).toEqual({ line: 4, column: 1 });
  });

  it('handles CRLF line ends', () => {
    const l = locateKeys('[a]\r\nb = 1\r\n  c = "x"\r\n');
    expect(l.exact(['a', 'b'])).toEqual({ line: 2, column: 1 });
    expect(l.exact(['a', 'c'])).toEqual({ line: 3, column: 3 });
  });
});
