import { mkdir } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { ForgeError } from '@backupforge/common';
import { Kysely, PostgresDialect, SqliteDialect, sql } from 'kysely';
import { type ErrorContext, mapDbError, redactUrl } from './errors.ts';
import { migrateToLatest } from './migrations.ts';
import type { StoreSchema } from './schema.ts';
import { KyselyStore } from './store.ts';
import type { PostgresStoreOptions, SqliteStoreOptions, Store, StoreOptions } from './types.ts';
import { withProcessLock } from './util.ts';

export const DEFAULT_BUSY_TIMEOUT_MS = 5000;

/**
 * Opens (creating if needed) a store and brings its schema up to date.
 *
 * ```ts
 * const store = await openStore({ path: '/var/lib/forge/store.db' });
 * const store = await openStore({ kind: 'postgres', url: 'postgres://forge@db/forge' });
 * ```
 *
 * Throws `ForgeError`: `FORGE_REPO_VERSION` when a newer BackupForge wrote the database,
 * `FORGE_LOCK_CONFLICT` when a SQLite file stays locked past the busy timeout, `FORGE_USAGE` for
 * bad options, `FORGE_IO` / `FORGE_AUTH` / `FORGE_NOT_FOUND` when PostgreSQL cannot be used.
 */
export async function openStore(options: StoreOptions): Promise<Store> {
  if (!options || typeof options !== 'object') {
    throw new ForgeError('FORGE_USAGE', 'openStore needs options: { path } or { kind: "postgres", url }');
  }
  if (options.kind === 'postgres') return openPostgres(options);
  if (options.kind !== undefined && options.kind !== 'sqlite') {
    throw new ForgeError('FORGE_USAGE', `unknown store kind ${String((options as { kind: unknown }).kind)}`, {
      hint: 'use sqlite or postgres',
    });
  }
  return openSqlite(options);
}

/** Extra settings for `openStoreFromUrl` that a URL does not carry. */
export interface StoreUrlOptions {
  readonly busyTimeoutMs?: number;
  readonly poolSize?: number;
  readonly connectTimeoutMs?: number;
}

/**
 * `sqlite:/abs/path.db`, `sqlite:///abs/path.db`, `sqlite:relative.db`, `sqlite::memory:`, a bare
 * file path, or `postgres://…` / `postgresql://…`. A SQLite URL may end in `?busy_timeout=MS`.
 */
export function parseStoreUrl(url: string, extra: StoreUrlOptions = {}): StoreOptions {
  if (typeof url !== 'string' || url.trim() === '') {
    throw new ForgeError('FORGE_USAGE', 'store URL is empty', {
      hint: 'use sqlite:/path/to/store.db or postgres://user@host/database',
    });
  }
  const u = url.trim();
  if (/^postgres(ql)?:\/\//i.test(u)) {
    return {
      kind: 'postgres',
      url: u,
      ...(extra.poolSize !== undefined ? { poolSize: extra.poolSize } : {}),
      ...(extra.connectTimeoutMs !== undefined ? { connectTimeoutMs: extra.connectTimeoutMs } : {}),
    };
  }
  let path: string;
  let busyTimeoutMs = extra.busyTimeoutMs;
  if (/^sqlite:/i.test(u)) {
    path = u.slice('sqlite:'.length);
    const q = /\?busy_timeout=(\d+)$/.exec(path);
    if (q) {
      busyTimeoutMs = Number(q[1]);
      path = path.slice(0, q.index);
    }
    if (path.startsWith('//')) path = path.slice(2);
  } else if (/^[a-z][a-z0-9+.-]*:\/\//i.test(u)) {
    throw new ForgeError('FORGE_USAGE', `unsupported store URL ${redactUrl(u)}`, {
      hint: 'use sqlite:/path/to/store.db or postgres://user@host/database',
    });
  } else {
    path = u;
  }
  if (path === '') {
    throw new ForgeError('FORGE_USAGE', `store URL ${u} names no file`, {
      hint: 'use sqlite:/path/to/store.db',
    });
  }
  return { kind: 'sqlite', path, ...(busyTimeoutMs !== undefined ? { busyTimeoutMs } : {}) };
}

/** `openStore(parseStoreUrl(url, extra))`. */
export async function openStoreFromUrl(url: string, extra: StoreUrlOptions = {}): Promise<Store> {
  return openStore(parseStoreUrl(url, extra));
}

function checkTimeout(value: number | undefined, what: string, dflt: number): number {
  if (value === undefined) return dflt;
  if (!Number.isInteger(value) || value < 0) {
    throw new ForgeError('FORGE_USAGE', `${what} must be a non-negative integer (ms), got ${String(value)}`);
  }
  return value;
}

async function openSqlite(options: SqliteStoreOptions): Promise<Store> {
  if (typeof options.path !== 'string' || options.path === '') {
    throw new ForgeError('FORGE_USAGE', 'a SQLite store needs a path');
  }
  const busyTimeoutMs = checkTimeout(options.busyTimeoutMs, 'busyTimeoutMs', DEFAULT_BUSY_TIMEOUT_MS);
  const memory = options.path === ':memory:';
  const path = memory ? ':memory:' : resolve(options.path);
  const ctx: ErrorContext = { dialect: 'sqlite', target: path, busyTimeoutMs };

  type Handle = import('better-sqlite3').Database;
  let handle: Handle | undefined;
  try {
    if (!memory) await mkdir(dirname(path), { recursive: true });
    const { default: Database } = await import('better-sqlite3');
    handle = new Database(path, { timeout: busyTimeoutMs });
    handle.pragma(`busy_timeout = ${busyTimeoutMs}`);
    handle.pragma('foreign_keys = ON');
    if (!memory) handle.pragma('journal_mode = WAL');
    handle.pragma('synchronous = NORMAL');
  } catch (e) {
    try {
      handle?.close();
    } catch {
      // already failing
    }
    throw mapDbError(e, ctx, 'opening the store');
  }

  const db = new Kysely<StoreSchema>({ dialect: new SqliteDialect({ database: handle }) });
  try {
    // One write transaction around the version check and the migrations: two processes opening a
    // fresh file cannot both migrate it, and a locked file fails here, after the busy timeout.
    const version = await withProcessLock(path, async () => {
      await sql`begin immediate`.execute(db);
      try {
        const { to } = await migrateToLatest(db, 'sqlite');
        await sql`commit`.execute(db);
        return to;
      } catch (e) {
        await sql`rollback`.execute(db).catch(() => undefined);
        throw e;
      }
    });
    return new KyselyStore(db, ctx, version);
  } catch (e) {
    await db.destroy().catch(() => undefined);
    throw mapDbError(e, ctx, 'opening the store');
  }
}

async function openPostgres(options: PostgresStoreOptions): Promise<Store> {
  if (typeof options.url !== 'string' || !/^postgres(ql)?:\/\//i.test(options.url)) {
    throw new ForgeError('FORGE_USAGE', 'a PostgreSQL store needs a postgres:// URL');
  }
  const poolSize = options.poolSize ?? 10;
  if (!Number.isInteger(poolSize) || poolSize < 1) {
    throw new ForgeError('FORGE_USAGE', `poolSize must be a positive integer, got ${String(poolSize)}`);
  }
  const connectTimeoutMs = checkTimeout(options.connectTimeoutMs, 'connectTimeoutMs', 10_000);
  const ctx: ErrorContext = { dialect: 'postgres', target: redactUrl(options.url) };

  const { default: pg } = await import('pg');
  // bigint (int8) columns and count(*) come back as numbers, as they do from SQLite.
  const types = new pg.TypeOverrides();
  types.setTypeParser(pg.types.builtins.INT8, (v: string) => Number(v));
  const pool = new pg.Pool({
    connectionString: options.url,
    max: poolSize,
    connectionTimeoutMillis: connectTimeoutMs,
    types,
  });
  // An idle client that loses its server emits 'error' on the pool; the next query reports it.
  pool.on('error', () => undefined);

  const db = new Kysely<StoreSchema>({ dialect: new PostgresDialect({ pool }) });
  try {
    const { to } = await migrateToLatest(db, 'postgres');
    return new KyselyStore(db, ctx, to);
  } catch (e) {
    await db.destroy().catch(() => undefined);
    throw mapDbError(e, ctx, 'opening the store');
  }
}
