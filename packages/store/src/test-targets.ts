// Test support (not exported): the two databases every store test runs against.
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import './test-pg-conditions.ts';
import type { Dialect, PostgresStoreOptions, SqliteStoreOptions, StoreOptions } from './index.ts';

export interface TestTarget {
  readonly name: Dialect;
  /** True when the target cannot run here (no FORGE_TEST_PG_URL). */
  readonly skip: boolean;
  /** beforeAll: create the temp dir / the per-file database. */
  setup(): Promise<void>;
  /** afterAll: remove them. */
  teardown(): Promise<void>;
  /** beforeEach: a fresh, empty database. */
  reset(): Promise<void>;
  /** Options that open the current database. */
  options(): StoreOptions;
  /** Deletes the database behind the store's back (every store on it must be closed). */
  wipe(): Promise<void>;
}

export function sqliteTarget(): TestTarget {
  let root = '';
  let n = 0;
  let path = '';
  return {
    name: 'sqlite',
    skip: false,
    async setup() {
      root = await mkdtemp(join(tmpdir(), 'forge-store-test-'));
    },
    async teardown() {
      if (root) await rm(root, { recursive: true, force: true });
    },
    async reset() {
      n++;
      // A directory that does not exist yet: openStore creates it.
      path = join(root, `case-${n}`, 'nested', 'store.db');
    },
    options(): SqliteStoreOptions {
      return { kind: 'sqlite', path };
    },
    async wipe() {
      for (const suffix of ['', '-wal', '-shm']) await rm(`${path}${suffix}`, { force: true });
    },
  };
}

export const PG_URL = process.env.FORGE_TEST_PG_URL;

export function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}

async function adminQuery(url: string, ...statements: string[]): Promise<void> {
  const { default: pg } = await import('pg');
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    for (const s of statements) await client.query(s);
  } finally {
    await client.end();
  }
}

export function postgresTarget(): TestTarget {
  const dbName = `store_test_${randomBytes(6).toString('hex')}`;
  const adminUrl = PG_URL ?? '';
  const url = PG_URL ? withDatabase(PG_URL, dbName) : '';
  return {
    name: 'postgres',
    skip: !PG_URL,
    async setup() {
      await adminQuery(adminUrl, `create database ${dbName}`);
    },
    async teardown() {
      await adminQuery(adminUrl, `drop database if exists ${dbName} with (force)`);
    },
    async reset() {
      await adminQuery(url, 'drop schema public cascade', 'create schema public');
    },
    options(): PostgresStoreOptions {
      return { kind: 'postgres', url, poolSize: 4 };
    },
    async wipe() {
      await adminQuery(adminUrl, `drop database ${dbName} with (force)`, `create database ${dbName}`);
    },
  };
}

export function allTargets(): TestTarget[] {
  return [sqliteTarget(), postgresTarget()];
}
