import { isAbsolute, resolve } from 'node:path';
import type { StorageBackend } from '@backupforge/common';
import { ForgeError, ForgeErrorCodes } from '@backupforge/common';

/** Backends BackupForge will support; each gets its own subpath (`@backupforge/storage/s3`) when it lands. */
const PLANNED_SCHEMES = ['s3', 'sftp', 'rclone', 'rest'] as const;
const ACCEPTED_FORMS = "a directory path ('/srv/backup', './repo'), 'local:<path>' or 'memory:'";

/**
 * Opens the backend for a repository location, as given on the command line:
 *
 * - a plain path, or `local:<path>`: a directory on this machine (relative paths resolve against
 *   the current directory);
 * - `memory:`: an empty in-memory backend, gone when the process exits.
 *
 * It only opens: it creates nothing and checks nothing on disk. Each implementation is imported
 * on first use, so code that never touches a kind of backend never loads it.
 *
 * ```ts
 * const backend = await openBackend('/srv/backup');
 * for await (const { name } of backend.list('snapshot')) console.log(name);
 * ```
 */
export async function openBackend(location: string): Promise<StorageBackend> {
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
  if ((PLANNED_SCHEMES as readonly string[]).includes(scheme)) {
    throw new ForgeError(ForgeErrorCodes.FORGE_USAGE, `the ${scheme} backend is not available yet`, {
      hint: 'use a local directory (a mounted share works too) until it lands',
      details: { scheme },
    });
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
