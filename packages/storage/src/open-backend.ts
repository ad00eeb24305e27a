import { isAbsolute, resolve } from 'node:path';
import type { StorageBackend } from '@backupforge/common';
import { ForgeError, ForgeErrorCodes } from '@backupforge/common';

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
