import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ForgeError } from '@backupforge/common';
import Database from 'better-sqlite3';
import { sql } from 'kysely';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { openStore, type Store } from './index.ts';

let root = '';
let n = 0;
const cleanup: Array<() => unknown> = [];

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'forge-store-sqlite-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

function freshPath(): string {
  n++;
  return join(root, `db-${n}`, 'store.db');
}

async function tracked(path: string, busyTimeoutMs?: number): Promise<Store> {
  const s = await openStore({ path, ...(busyTimeoutMs !== undefined ? { busyTimeoutMs } : {}) });
  cleanup.push(() => s.close());
  return s;
}

/** A second connection (another process, as far as SQLite knows) holding an exclusive transaction. */
function lock(path: string): Database.Database {
  const other = new Database(path, { timeout: 0 });
  other.exec('BEGIN EXCLUSIVE');
  cleanup.push(() => {
    if (other.inTransaction) other.exec('ROLLBACK');
    other.close();
  });
  return other;
}

async function rejection(p: Promise<unknown>): Promise<ForgeError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(ForgeError);
  return e as ForgeError;
}

describe('sqlite connection settings', () => {
  it('uses WAL, NORMAL sync, foreign keys and the default 5 s busy timeout', async () => {
    const store = await tracked(freshPath());
    const pragma = async (name: string) =>
      Object.values(
        (await sql.raw<Record<string, unknown>>(`pragma ${name}`).execute(store.db)).rows[0] ?? {},
      )[0];
    expect(await pragma('journal_mode')).toBe('wal');
    expect(await pragma('synchronous')).toBe(1);
    expect(await pragma('foreign_keys')).toBe(1);
    expect(await pragma('busy_timeout')).toBe(5000);
  });

  it('takes a configured busy timeout', async () => {
    const store = await tracked(freshPath(), 1234);
    const rows = await sql<{ timeout: number }>`pragma busy_timeout`.execute(store.db);
    expect(Object.values(rows.rows[0] ?? {})[0]).toBe(1234);
  });

  it('works in memory', async () => {
    const store = await tracked(':memory:');
    await store.upsertJob({ name: 'm', kind: 'backup', repository: 'r' });
    expect(await store.listJobs()).toHaveLength(1);
  });

  it('refuses a file that is not a database', async () => {
    const path = join(root, 'not-a-db.db');
    await writeFile(path, 'this is not sqlite, just text that is long enough to have a header'.repeat(10));
    const e = await rejection(openStore({ path }));
    expect(e.code).toBe('FORGE_FORMAT');
    expect(e.message).toContain(path);
  });

  it('rejects bad options', async () => {
    expect((await rejection(openStore({ path: '' }))).code).toBe('FORGE_USAGE');
    expect((await rejection(openStore({ path: freshPath(), busyTimeoutMs: -1 }))).code).toBe('FORGE_USAGE');
  });
});

describe('a locked sqlite file', () => {
  it('makes open wait for the busy timeout, then fail naming the file', async () => {
    const path = freshPath();
    await (await openStore({ path })).close();
    const other = lock(path);

    const t0 = performance.now();
    const e = await rejection(openStore({ path, busyTimeoutMs: 300 }));
    const waited = performance.now() - t0;
    expect(e.code).toBe('FORGE_LOCK_CONFLICT');
    expect(e.retryable).toBe(true);
    expect(e.message).toContain(path);
    expect(e.message).toContain('locked');
    expect(e.message).not.toContain('\n');
    expect(waited).toBeGreaterThanOrEqual(250);

    // Once the other connection lets go, the store opens.
    other.exec('ROLLBACK');
    const store = await tracked(path, 300);
    expect(await store.listJobs()).toEqual([]);
  });

  it('makes a fresh (non-WAL) file that another connection locked fail to open', async () => {
    const path = join(root, 'fresh-locked.db');
    const other = new Database(path);
    other.exec('create table t (x); begin exclusive; insert into t values (1)');
    cleanup.push(() => {
      if (other.inTransaction) other.exec('ROLLBACK');
      other.close();
    });
    const e = await rejection(openStore({ path, busyTimeoutMs: 200 }));
    expect(e.code).toBe('FORGE_LOCK_CONFLICT');
    expect(e.message).toContain(path);
  });

  it('makes a write wait for the busy timeout, then fail; the store keeps working after', async () => {
    const path = freshPath();
    const store = await tracked(path, 250);
    await store.upsertJob({ name: 'a', kind: 'backup', repository: 'r' });
    const other = lock(path);

    const t0 = performance.now();
    const e = await rejection(store.upsertJob({ name: 'b', kind: 'backup', repository: 'r' }));
    expect(e.code).toBe('FORGE_LOCK_CONFLICT');
    expect(e.message).toContain(path);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(200);
    const e2 = await rejection(store.startRun('a', 'backup'));
    expect(e2.code).toBe('FORGE_LOCK_CONFLICT');

    // Readers are not blocked in WAL mode.
    expect((await store.listJobs()).map((j) => j.name)).toEqual(['a']);

    other.exec('ROLLBACK');
    await store.upsertJob({ name: 'b', kind: 'backup', repository: 'r' });
    expect((await store.listJobs()).map((j) => j.name)).toEqual(['a', 'b']);
  });

  it('lets two stores on one file in one process take turns instead of deadlocking', async () => {
    // better-sqlite3 waits for a lock synchronously: without the per-process lock, one store's
    // wait blocks the thread the other needs to finish its transaction, and a run like this
    // ends in "database is locked" after the busy timeout.
    for (let round = 0; round < 10; round++) {
      const path = freshPath();
      const [a, b] = await Promise.all([tracked(path, 300), tracked(path, 300)]);
      const work: Promise<unknown>[] = [];
      for (let i = 0; i < 20; i++) {
        const s = i % 2 === 0 ? a : b;
        work.push(s.upsertJob({ name: `job-${i}`, kind: 'backup', repository: 'r' }));
        work.push(s.startRun(`job-${i}`, 'backup').then((id) => s.finishRun(id, { status: 'success' })));
      }
      await Promise.all(work);
      expect(await a.listJobs()).toHaveLength(20);
      expect(await b.listRuns({ status: 'success' })).toHaveLength(20);
    }
  });
});
