import { createHash } from 'node:crypto';
import { isAbsolute, join, resolve } from 'node:path';
import type { StorageBackend } from '@backupforge/common';
import { ForgeError, ForgeErrorCodes } from '@backupforge/common';
import { type ComposedBackend, composeBackend } from './decorators/index.ts';

const ACCEPTED_FORMS =
  "a directory path ('/srv/backup', './repo'), 'local:<path>', 's3:https://host/bucket/prefix', " +
  "'s3:bucket/prefix', 'sftp:user@host[:port]/path', 'rclone:remote:path', 'rest:http(s)://host/path' or 'memory:'";

/** What a remote backend may need beyond its location. Secrets come from `env`, never the location. */
export interface OpenBackendOptions {
  /** Where credentials and settings are read from (AWS_*, SSH_AUTH_SOCK, …). Defaults to `process.env`. */
  readonly env?: NodeJS.ProcessEnv;
  /** SFTP: accept any host key instead of checking known_hosts. Reported through `onWarning`. */
  readonly insecureHostKey?: boolean;
  /**
   * Backend settings as `key=value` pairs, like restic's `-o`: `s3.region`, `s3.storage-class`,
   * `s3.path-style`, `sftp.connections`, `rclone.program`… Unknown keys for the chosen backend are
   * a usage error naming the known ones.
   */
  readonly settings?: Readonly<Record<string, string>>;
  /** Things the user should see (an unchecked host key, a deprecated form). */
  readonly onWarning?: (message: string) => void;
}

/**
 * Opens the backend for a repository location, as given on the command line:
 *
 * - a plain path, or `local:<path>`: a directory on this machine (relative paths resolve against
 *   the current directory);
 * - `memory:`: an empty in-memory backend, gone when the process exits;
 * - `s3:`, `sftp:`, `rclone:`, `rest:`: remote backends (see each subpath's README section).
 *
 * It only opens: it creates nothing and checks nothing on disk. Each implementation is imported
 * on first use, so code that never touches a kind of backend never loads it.
 *
 * ```ts
 * const backend = await openBackend('/srv/backup');
 * for await (const { name } of backend.list('snapshot')) console.log(name);
 * ```
 */
export async function openBackend(
  location: string,
  options: OpenBackendOptions = {},
): Promise<StorageBackend> {
  if (typeof location !== 'string' || location.trim() === '') {
    throw new ForgeError(ForgeErrorCodes.FORGE_USAGE, 'the repository location is empty', {
      hint: `give ${ACCEPTED_FORMS}`,
    });
  }
  const match = /^([A-Za-z][A-Za-z0-9+.-]*):(.*)$/s.exec(location);
  // One-letter "schemes" are Windows drive letters (C:\backup): plain paths.
  if (match === null || match[1]!.length === 1 || isAbsolute(location)) {
    return openLocal(location);
  }
  const scheme = match[1]!.toLowerCase();
  const rest = match[2]!;
  if (scheme === 'local') {
    if (rest === '') {
      throw new ForgeError(ForgeErrorCodes.FORGE_USAGE, "'local:' needs a path, as in 'local:/srv/backup'");
    }
    return openLocal(rest);
  }
  if (scheme === 'memory') {
    if (rest !== '') {
      throw new ForgeError(
        ForgeErrorCodes.FORGE_USAGE,
        `'memory:' takes nothing after the colon, got '${location}'`,
      );
    }
    const { createMemoryBackend } = await import('./memory/index.ts');
    return createMemoryBackend();
  }
  switch (scheme) {
    case 's3':
      return (await import('./s3/index.ts')).openS3Location(rest, options);
    case 'sftp':
      return (await import('./sftp/index.ts')).openSftpLocation(rest, options);
    case 'rclone':
      return (await import('./rclone/index.ts')).openRcloneLocation(rest, options);
    case 'rest':
      return (await import('./rest/index.ts')).openRestLocation(rest, options);
  }
  throw new ForgeError(
    ForgeErrorCodes.FORGE_USAGE,
    `unknown repository location scheme '${scheme}:' in '${location}': expected ${ACCEPTED_FORMS}`,
    {
      hint: `for a relative directory whose name contains ':', write './${location}'`,
      details: { scheme },
    },
  );
}

async function openLocal(path: string): Promise<StorageBackend> {
  const { createLocalBackend } = await import('./local/index.ts');
  return createLocalBackend({ path: resolve(path) });
}

/** What `openRepositoryBackend` adds to `openBackend`: the decorators of `./decorators`. */
export interface RepositoryBackendOptions extends OpenBackendOptions {
  /** KiB/s (restic's --limit-upload / --limit-download). */
  readonly limitUploadKiB?: number;
  readonly limitDownloadKiB?: number;
  /** Root of the local cache for remote repositories (`$XDG_CACHE_HOME/backupforge`); none when unset. */
  readonly cacheRoot?: string;
  /** Attempts per call for remote backends (default 8; env FORGE_RETRY_MAX_ATTEMPTS). */
  readonly retryMaxAttempts?: number;
  /** First backoff delay (default 500 ms; env FORGE_RETRY_BASE_MS). */
  readonly retryBaseMs?: number;
  /** Called before each retry with a one-line description. */
  readonly onRetry?: (message: string) => void;
}

/** True for locations on this machine (`/path`, `local:`, `memory:`), which get no retries or cache. */
export function isLocalLocation(location: string): boolean {
  const m = /^([A-Za-z][A-Za-z0-9+.-]*):/.exec(location);
  return (
    !m || m[1]!.length === 1 || isAbsolute(location) || ['local', 'memory'].includes(m[1]!.toLowerCase())
  );
}

/**
 * Opens a repository's backend the way the CLI and the job runner do: `openBackend`, then, for
 * remote backends, retries with backoff, the local cache of index/snapshot/key files and pack
 * headers (under `cacheRoot`, one folder per location), and rate limits when asked for (on any
 * backend). The result has `retryStats()` and `cacheStats()` for summaries.
 */
export async function openRepositoryBackend(
  location: string,
  options: RepositoryBackendOptions = {},
): Promise<ComposedBackend> {
  const backend = await openBackend(location, options);
  const env = options.env ?? process.env;
  const remote = !isLocalLocation(location);
  const limits =
    options.limitUploadKiB !== undefined || options.limitDownloadKiB !== undefined
      ? {
          ...(options.limitUploadKiB !== undefined ? { uploadKiBps: options.limitUploadKiB } : {}),
          ...(options.limitDownloadKiB !== undefined ? { downloadKiBps: options.limitDownloadKiB } : {}),
        }
      : undefined;
  const maxAttempts = options.retryMaxAttempts ?? (Number(env.FORGE_RETRY_MAX_ATTEMPTS) || undefined);
  const baseDelayMs = options.retryBaseMs ?? (Number(env.FORGE_RETRY_BASE_MS) || undefined);
  const onRetry = options.onRetry;
  return composeBackend(backend, {
    retry: remote
      ? {
          ...(maxAttempts ? { maxAttempts } : {}),
          ...(baseDelayMs ? { baseDelayMs } : {}),
          ...(onRetry
            ? {
                onRetry: (i) =>
                  onRetry(
                    `${i.operation} ${i.object} failed (${i.error.message}); retry ${i.attempt}/${i.maxAttempts - 1} in ${(i.delayMs / 1000).toFixed(1)} s`,
                  ),
              }
            : {}),
        }
      : false,
    ...(limits ? { limits } : {}),
    ...(remote && options.cacheRoot
      ? {
          cacheDir: join(
            options.cacheRoot,
            createHash('sha256').update(backend.location).digest('hex').slice(0, 16),
          ),
        }
      : {}),
    ...(options.onWarning ? { cache: { onWarning: options.onWarning } } : {}),
  });
}
