/**
 * The stable error codes of BackupForge. Callers and tests match on `code`, never on the message.
 * Codes are permanent API: add new ones, never rename or reuse one.
 */
export const ForgeErrorCodes = {
  /** Bad command-line or API input. */
  FORGE_USAGE: 'FORGE_USAGE',
  /** No password was given and none can be asked for. */
  FORGE_PASSWORD_REQUIRED: 'FORGE_PASSWORD_REQUIRED',
  /** No key file of the repository opens with the given password. */
  FORGE_WRONG_PASSWORD: 'FORGE_WRONG_PASSWORD',
  /** A key file is malformed, tampered with, or has parameters outside the accepted range. */
  FORGE_KEY_INVALID: 'FORGE_KEY_INVALID',
  /** The repository location does not exist or holds no repository. */
  FORGE_REPO_NOT_FOUND: 'FORGE_REPO_NOT_FOUND',
  /** A repository already exists where one was to be created. */
  FORGE_REPO_EXISTS: 'FORGE_REPO_EXISTS',
  /** The repository's config is not readable as a BackupForge config. */
  FORGE_REPO_INVALID: 'FORGE_REPO_INVALID',
  /** The repository format version is newer (or older) than this build understands. */
  FORGE_REPO_VERSION: 'FORGE_REPO_VERSION',
  /** Another process holds a conflicting lock. */
  FORGE_LOCK_CONFLICT: 'FORGE_LOCK_CONFLICT',
  /** This process's lock went stale or was removed while it was working. */
  FORGE_LOCK_EXPIRED: 'FORGE_LOCK_EXPIRED',
  /** An object or blob was not found. */
  FORGE_NOT_FOUND: 'FORGE_NOT_FOUND',
  /** A snapshot id or prefix matched nothing or several snapshots. */
  FORGE_SNAPSHOT_NOT_FOUND: 'FORGE_SNAPSHOT_NOT_FOUND',
  FORGE_SNAPSHOT_AMBIGUOUS: 'FORGE_SNAPSHOT_AMBIGUOUS',
  /** A path does not exist inside a snapshot. */
  FORGE_PATH_NOT_FOUND: 'FORGE_PATH_NOT_FOUND',
  /** Data failed authentication or its hash does not match its id. */
  FORGE_INTEGRITY: 'FORGE_INTEGRITY',
  /** A pack or object is shorter than its header says. */
  FORGE_PACK_TRUNCATED: 'FORGE_PACK_TRUNCATED',
  /** A stored object could not be parsed (wrong magic, bad lengths, bad JSON). */
  FORGE_FORMAT: 'FORGE_FORMAT',
  /** A ranged read reached past the end of an object. */
  FORGE_RANGE: 'FORGE_RANGE',
  /** An object with that name exists already. */
  FORGE_ALREADY_EXISTS: 'FORGE_ALREADY_EXISTS',
  /** Permission denied by the OS or the storage service. */
  FORGE_PERMISSION: 'FORGE_PERMISSION',
  /** No space left on the device. */
  FORGE_NO_SPACE: 'FORGE_NO_SPACE',
  /** An I/O or network failure that may succeed when retried. */
  FORGE_IO: 'FORGE_IO',
  /** The restore target has files in the way and --overwrite was not given. */
  FORGE_TARGET_NOT_EMPTY: 'FORGE_TARGET_NOT_EMPTY',
  /** The operation was cancelled (signal, abort controller). */
  FORGE_ABORTED: 'FORGE_ABORTED',
  /** The storage service rejected the credentials (wrong key/secret, expired token, refused login). */
  FORGE_AUTH: 'FORGE_AUTH',
  /** An SSH server's host key is unknown or differs from known_hosts. */
  FORGE_HOST_KEY: 'FORGE_HOST_KEY',
  /** A bug: an invariant of BackupForge itself did not hold. */
  FORGE_INTERNAL: 'FORGE_INTERNAL',
} as const;

export type ForgeErrorCode = (typeof ForgeErrorCodes)[keyof typeof ForgeErrorCodes];

export interface ForgeErrorOptions {
  /** Whether the same call may succeed when retried (network drop, timeout). Default false. */
  retryable?: boolean;
  /** What the user should do about it, one short sentence. */
  hint?: string;
  details?: Record<string, unknown>;
  cause?: unknown;
}

/**
 * The one error type of BackupForge. Every failure that crosses a package boundary is a
 * `ForgeError` with a stable `code`.
 *
 * ```ts
 * try { await repo.loadSnapshot(id) }
 * catch (e) { if (e instanceof ForgeError && e.code === 'FORGE_INTEGRITY') ... }
 * ```
 */
export class ForgeError extends Error {
  override readonly name: string = 'ForgeError';
  readonly code: ForgeErrorCode;
  readonly retryable: boolean;
  readonly hint: string | undefined;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ForgeErrorCode, message: string, options: ForgeErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.retryable = options.retryable ?? false;
    this.hint = options.hint;
    this.details = options.details;
  }

  /** One line for a human: the problem, then the fix. */
  toOneLine(): string {
    return this.hint ? `${this.message}; ${this.hint}` : this.message;
  }
}

/** An invariant of BackupForge itself did not hold: a bug to report. */
export class InternalError extends ForgeError {
  override readonly name = 'InternalError';
  constructor(message: string, cause?: unknown) {
    super(ForgeErrorCodes.FORGE_INTERNAL, message, {
      cause,
      hint: 'this is a bug in BackupForge; please report it with the output of --debug',
    });
  }
}

export function isForgeError(e: unknown, code?: ForgeErrorCode): e is ForgeError {
  return e instanceof ForgeError && (code === undefined || e.code === code);
}

interface ErrnoLike {
  code?: unknown;
  syscall?: unknown;
  path?: unknown;
  message?: unknown;
}

/**
 * Network error codes (errno and undici/stream codes) that another attempt may fix: every
 * backend and notifier classifies connection failures with this one list.
 */
export const TRANSIENT_NETWORK_CODES: ReadonlySet<string> = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTCONN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
  'EHOSTDOWN',
  'EAI_AGAIN',
  'ERR_STREAM_PREMATURE_CLOSE',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'UND_ERR_CLOSED',
]);

const RETRYABLE_ERRNO = new Set(['EAGAIN', 'EBUSY', 'EINTR', ...TRANSIENT_NETWORK_CODES]);

/**
 * Normalises anything thrown into a `ForgeError`. Node errno errors get specific codes:
 * ENOSPC and EACCES are permanent; connection resets and timeouts are retryable.
 */
export function toForgeError(e: unknown, context?: string): ForgeError {
  if (e instanceof ForgeError) return e;
  const prefix = context ? `${context}: ` : '';
  if (e && typeof e === 'object') {
    const err = e as ErrnoLike;
    const errno = typeof err.code === 'string' ? err.code : undefined;
    const path = typeof err.path === 'string' ? err.path : undefined;
    const where = path ? ` (${path})` : '';
    switch (errno) {
      case 'ENOENT':
        return new ForgeError(ForgeErrorCodes.FORGE_NOT_FOUND, `${prefix}no such file or directory${where}`, {
          cause: e,
        });
      case 'EACCES':
      case 'EPERM':
        return new ForgeError(ForgeErrorCodes.FORGE_PERMISSION, `${prefix}permission denied${where}`, {
          cause: e,
          hint: 'check the file permissions or run as a user that may access it',
        });
      case 'ENOSPC':
      case 'EDQUOT':
        return new ForgeError(ForgeErrorCodes.FORGE_NO_SPACE, `${prefix}no space left on device${where}`, {
          cause: e,
          hint: 'free some space on the target filesystem and run the command again',
        });
      case 'EEXIST':
        return new ForgeError(ForgeErrorCodes.FORGE_ALREADY_EXISTS, `${prefix}already exists${where}`, {
          cause: e,
        });
      case 'EROFS':
        return new ForgeError(ForgeErrorCodes.FORGE_PERMISSION, `${prefix}read-only file system${where}`, {
          cause: e,
        });
      default:
        if (errno && RETRYABLE_ERRNO.has(errno)) {
          return new ForgeError(ForgeErrorCodes.FORGE_IO, `${prefix}${errno}${where}`, {
            cause: e,
            retryable: true,
          });
        }
        if (errno && /^E[A-Z]+$/.test(errno)) {
          return new ForgeError(ForgeErrorCodes.FORGE_IO, `${prefix}${String(err.message ?? errno)}`, {
            cause: e,
          });
        }
    }
  }
  const msg = e instanceof Error ? e.message : String(e);
  return new InternalError(`${prefix}${msg}`, e);
}
