import { ForgeError, type ForgeErrorCode, toForgeError } from '@backupforge/common';
import type { Dialect } from './migrations.ts';

/** What a database error is about, for the message. */
export interface ErrorContext {
  readonly dialect: Dialect;
  /** The SQLite file (absolute) or the PostgreSQL URL without its password. */
  readonly target: string;
  /** SQLite only: how long a locked database was waited for. */
  readonly busyTimeoutMs?: number;
}

interface DbErrorLike {
  code?: unknown;
  message?: unknown;
  cause?: unknown;
  detail?: unknown;
}

/** The first error in the `cause` chain that carries a string `code`. */
function findCoded(e: unknown): DbErrorLike | undefined {
  let cur: unknown = e;
  for (let i = 0; i < 5 && cur && typeof cur === 'object'; i++) {
    const err = cur as DbErrorLike;
    if (typeof err.code === 'string') return err;
    cur = err.cause;
  }
  return undefined;
}

function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function make(code: ForgeErrorCode, message: string, cause: unknown, extra: Partial<ForgeError> = {}) {
  return new ForgeError(code, message, {
    cause,
    retryable: extra.retryable ?? false,
    ...(extra.hint !== undefined ? { hint: extra.hint } : {}),
  });
}

function fromSqlite(code: string, e: unknown, err: DbErrorLike, ctx: ErrorContext): ForgeError | undefined {
  const file = ctx.target;
  if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED')) {
    const waited = ctx.busyTimeoutMs !== undefined ? ` (waited ${ctx.busyTimeoutMs} ms)` : '';
    return make('FORGE_LOCK_CONFLICT', `store database ${file} is locked by another connection${waited}`, e, {
      retryable: true,
      hint: 'wait for the other forge process to finish, or raise the busy timeout',
    });
  }
  if (code.startsWith('SQLITE_READONLY') || code === 'SQLITE_PERM' || code === 'SQLITE_AUTH') {
    return make('FORGE_PERMISSION', `store database ${file} is read-only or not accessible`, e, {
      hint: 'check the permissions of the file and its directory',
    });
  }
  if (code.startsWith('SQLITE_CANTOPEN')) {
    return make('FORGE_IO', `cannot open store database ${file}`, e, {
      hint: 'check that the directory exists and is writable',
    });
  }
  if (code === 'SQLITE_FULL') {
    return make('FORGE_NO_SPACE', `no space left for store database ${file}`, e, {
      hint: 'free some space on that filesystem',
    });
  }
  if (code === 'SQLITE_NOTADB' || code.startsWith('SQLITE_CORRUPT')) {
    return make('FORGE_FORMAT', `${file} is not a usable SQLite database (${messageOf(err)})`, e, {
      hint: 'point the store at another file; the catalog can be rebuilt from the repository',
    });
  }
  if (code.startsWith('SQLITE_IOERR')) {
    return make('FORGE_IO', `I/O error on store database ${file}: ${messageOf(err)}`, e, { retryable: true });
  }
  if (code === 'SQLITE_CONSTRAINT_FOREIGNKEY') {
    return make('FORGE_NOT_FOUND', `store: a referenced row does not exist (${messageOf(err)})`, e);
  }
  if (code === 'SQLITE_CONSTRAINT_PRIMARYKEY' || code === 'SQLITE_CONSTRAINT_UNIQUE') {
    return make('FORGE_ALREADY_EXISTS', `store: row already exists (${messageOf(err)})`, e);
  }
  return undefined;
}

/** PostgreSQL SQLSTATE codes are five characters; node's errno codes start with E. */
function fromPostgres(code: string, e: unknown, err: DbErrorLike, ctx: ErrorContext): ForgeError | undefined {
  const where = ctx.target;
  if (/^E[A-Z]+$/.test(code)) {
    return make('FORGE_IO', `cannot reach PostgreSQL at ${where}: ${code}`, e, {
      retryable: true,
      hint: 'check that the server is running and the URL is right',
    });
  }
  switch (code) {
    case '28P01':
    case '28000':
      return make('FORGE_AUTH', `PostgreSQL at ${where} refused the login: ${messageOf(err)}`, e, {
        hint: 'check the user and password in the store URL',
      });
    case '3D000':
      return make('FORGE_NOT_FOUND', `PostgreSQL database does not exist: ${where}`, e, {
        hint: 'create it first (createdb), the store creates the tables itself',
      });
    case '42501':
      return make('FORGE_PERMISSION', `PostgreSQL at ${where}: ${messageOf(err)}`, e);
    case '53100':
      return make('FORGE_NO_SPACE', `PostgreSQL at ${where} is out of disk space`, e);
    case '40001':
    case '40P01':
    case '55P03':
      return make('FORGE_LOCK_CONFLICT', `PostgreSQL at ${where}: ${messageOf(err)}`, e, { retryable: true });
    case '23503':
      return make('FORGE_NOT_FOUND', `store: a referenced row does not exist (${messageOf(err)})`, e);
    case '23505':
      return make('FORGE_ALREADY_EXISTS', `store: row already exists (${messageOf(err)})`, e);
    case '57P01':
    case '57P02':
    case '57P03':
    case '08000':
    case '08003':
    case '08006':
    case '08001':
    case '08004':
      return make('FORGE_IO', `lost the connection to PostgreSQL at ${where}: ${messageOf(err)}`, e, {
        retryable: true,
      });
  }
  return undefined;
}

/** Turns a driver error into a `ForgeError` with a stable code and a message naming the database. */
export function mapDbError(e: unknown, ctx: ErrorContext, what: string): ForgeError {
  if (e instanceof ForgeError) return e;
  const err = findCoded(e);
  const code = typeof err?.code === 'string' ? err.code : undefined;
  if (err && code) {
    const mapped =
      code.startsWith('SQLITE_') || ctx.dialect === 'sqlite'
        ? fromSqlite(code, e, err, ctx)
        : fromPostgres(code, e, err, ctx);
    if (mapped) return mapped;
  }
  if (/connection terminated|timeout exceeded when trying to connect/i.test(messageOf(e))) {
    return make('FORGE_IO', `lost the connection to PostgreSQL at ${ctx.target}: ${messageOf(e)}`, e, {
      retryable: true,
    });
  }
  return toForgeError(e, `${what} (${ctx.target})`);
}

/** `postgres://user:secret@host/db` → `postgres://user@host/db`, for messages. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    u.password = '';
    return u.toString();
  } catch {
    return url.replace(/\/\/([^:/@]*):[^@/]*@/, '//$1@');
  }
}
