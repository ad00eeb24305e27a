import { expect, it } from 'vitest';
import { createPathMatcher } from './path-matcher.ts';

it('matches names anywhere, anchored paths, and ignores case when asked', () => {
  const m = createPathMatcher({ patterns: ['*.log', '/etc/ssh'], ipatterns: ['CACHE'] });
  expect(m('/var/log/app.log')).toBe(true);
  expect(m('/var/log/app.txt')).toBe(false);
  expect(m('/etc/ssh')).toBe(true);
  expect(m('/home/etc/ssh')).toBe(false);
  expect(m('/home/a/cache')).toBe(true);
  expect(createPathMatcher({})('/x')).toBe(false);
});
