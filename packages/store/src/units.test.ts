import { ForgeError } from '@backupforge/common';
import { describe, expect, it } from 'vitest';
import { catalogFileFromTreeNode, openStore, parseStoreUrl, redactUrl } from './index.ts';
import { planSearch, toLikePattern, toSqliteGlob } from './search.ts';
import { PG_URL, withDatabase } from './test-targets.ts';
import { newRunId, toMs } from './util.ts';

function thrown(fn: () => unknown): ForgeError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ForgeError);
    return e as ForgeError;
  }
  throw new Error('did not throw');
}

describe('parseStoreUrl', () => {
  it('reads sqlite URLs and bare paths', () => {
    expect(parseStoreUrl('sqlite:/var/lib/forge/store.db')).toEqual({
      kind: 'sqlite',
      path: '/var/lib/forge/store.db',
    });
    expect(parseStoreUrl('sqlite:///var/lib/forge/store.db')).toEqual({
      kind: 'sqlite',
      path: '/var/lib/forge/store.db',
    });
    expect(parseStoreUrl('sqlite:store.db')).toEqual({ kind: 'sqlite', path: 'store.db' });
    expect(parseStoreUrl('sqlite::memory:')).toEqual({ kind: 'sqlite', path: ':memory:' });
    expect(parseStoreUrl('/tmp/x.db')).toEqual({ kind: 'sqlite', path: '/tmp/x.db' });
    expect(parseStoreUrl('sqlite:/tmp/x.db?busy_timeout=250')).toEqual({
      kind: 'sqlite',
      path: '/tmp/x.db',
      busyTimeoutMs: 250,
    });
    expect(parseStoreUrl('sqlite:/tmp/x.db', { busyTimeoutMs: 9 })).toEqual({
      kind: 'sqlite',
      path: '/tmp/x.db',
      busyTimeoutMs: 9,
    });
  });

  it('reads postgres URLs', () => {
    expect(parseStoreUrl('postgres://forge:pw@db:5432/forge')).toEqual({
      kind: 'postgres',
      url: 'postgres://forge:pw@db:5432/forge',
    });
    expect(parseStoreUrl('postgresql://db/forge', { poolSize: 3 })).toEqual({
      kind: 'postgres',
      url: 'postgresql://db/forge',
      poolSize: 3,
    });
  });

  it('rejects what it cannot open', () => {
    expect(thrown(() => parseStoreUrl('')).code).toBe('FORGE_USAGE');
    expect(thrown(() => parseStoreUrl('sqlite:')).code).toBe('FORGE_USAGE');
    const e = thrown(() => parseStoreUrl('mysql://u:secret@h/db'));
    expect(e.code).toBe('FORGE_USAGE');
    expect(e.message).not.toContain('secret');
  });

  it('redacts passwords', () => {
    expect(redactUrl('postgres://forge:hunter2@db:5432/forge')).toBe('postgres://forge@db:5432/forge');
    expect(redactUrl('postgres://db/forge')).toBe('postgres://db/forge');
  });
});

describe('times and ids', () => {
  it('parses RFC 3339 with nanoseconds and offsets', () => {
    expect(toMs('2024-05-01T10:00:00.123456789Z')).toBe(Date.UTC(2024, 4, 1, 10, 0, 0, 123));
    expect(toMs('2024-05-01T12:00:00.5+02:00')).toBe(Date.UTC(2024, 4, 1, 10, 0, 0, 500));
    expect(toMs('2024-05-01T12:00:00+0200')).toBe(Date.UTC(2024, 4, 1, 10));
    expect(toMs('2024-05-01 10:00:00')).toBe(Date.UTC(2024, 4, 1, 10));
    expect(toMs(new Date(5))).toBe(5);
    expect(toMs(7.9)).toBe(7);
    expect(thrown(() => toMs('not a time')).code).toBe('FORGE_USAGE');
    expect(thrown(() => toMs(Number.NaN)).code).toBe('FORGE_USAGE');
  });

  it('makes run ids that sort in creation order', () => {
    const ids = Array.from({ length: 1000 }, () => newRunId());
    expect([...ids].sort()).toEqual(ids);
    expect(new Set(ids).size).toBe(ids.length);
    expect(newRunId(1)).toMatch(/^[0-9a-f]{26}$/);
  });

  it('turns tree nodes into catalog rows', () => {
    expect(catalogFileFromTreeNode('/a/b', { type: 'file', size: 3, mtime: '1700000000123456789' })).toEqual({
      path: '/a/b',
      type: 'file',
      size: 3,
      mtime: 1_700_000_000_123,
    });
    expect(catalogFileFromTreeNode('/a', { type: 'dir', mtime: '0' })).toEqual({
      path: '/a',
      type: 'dir',
      size: null,
      mtime: 0,
    });
  });
});

describe('search patterns', () => {
  it('chooses substring, name glob or path glob', () => {
    expect(planSearch('report')).toEqual({
      column: 'path',
      mode: 'substring',
      text: 'report',
      ignoreCase: false,
    });
    expect(planSearch('*.JPG', true)).toEqual({
      column: 'name',
      mode: 'glob',
      text: '*.jpg',
      ignoreCase: true,
    });
    expect(planSearch('/home/*/x')).toMatchObject({ column: 'path', mode: 'glob', text: '/home/*/x' });
    expect(planSearch('docs/*.txt')).toMatchObject({ column: 'path', mode: 'glob', text: '*/docs/*.txt' });
    expect(thrown(() => planSearch('')).code).toBe('FORGE_USAGE');
  });

  it('escapes for GLOB and LIKE', () => {
    expect(toSqliteGlob('a[1]*?')).toBe('a[[]1]*?');
    expect(toLikePattern('50%_off\\*?')).toBe('50\\%\\_off\\\\%_');
  });
});

describe.skipIf(!PG_URL)('postgres errors', () => {
  it('reports a missing database as FORGE_NOT_FOUND without the password', async () => {
    const url = withDatabase(PG_URL ?? '', 'forge_store_no_such_db');
    const u = new URL(url);
    u.password = 'sekrit';
    const e = await openStore({ kind: 'postgres', url: u.toString() }).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(e).toBeInstanceOf(ForgeError);
    expect((e as ForgeError).code).toBe('FORGE_NOT_FOUND');
    expect((e as ForgeError).message).toContain('forge_store_no_such_db');
    expect((e as ForgeError).message).not.toContain('sekrit');
  });
});

describe('postgres connection errors', () => {
  it('reports an unreachable server as retryable FORGE_IO', async () => {
    const e = await openStore({
      kind: 'postgres',
      url: 'postgres://forge@127.0.0.1:1/forge',
      connectTimeoutMs: 2000,
    }).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(e).toBeInstanceOf(ForgeError);
    expect((e as ForgeError).code).toBe('FORGE_IO');
    expect((e as ForgeError).retryable).toBe(true);
  });
});
