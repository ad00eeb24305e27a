import { ForgeError, ForgeErrorCodes } from '@backupforge/common';

/**
 * Checks that every component of a snapshot path is a plain name, so that joining it under the
 * restore root cannot leave the root. Throws `FORGE_FORMAT` for '', '.', '..', or names with
 * '/' or NUL: such a path can only come from a damaged or malicious snapshot.
 */
export function checkComponents(path: readonly string[]): void {
  for (const name of path) {
    if (name === '' || name === '.' || name === '..' || name.includes('/') || name.includes('\0')) {
      throw new ForgeError(
        ForgeErrorCodes.FORGE_FORMAT,
        `refusing to restore path ${JSON.stringify(path)}: component ${JSON.stringify(name)} is not a plain name`,
        { hint: 'the snapshot is damaged or was crafted to write outside the restore directory' },
      );
    }
  }
}

/** Like {@link checkComponents}, and the path must name something below the root. */
export function checkEntryPath(path: readonly string[]): void {
  if (path.length === 0) {
    throw new ForgeError(ForgeErrorCodes.FORGE_FORMAT, 'refusing to restore an entry with an empty path', {
      hint: 'the snapshot is damaged or was crafted to write outside the restore directory',
    });
  }
  checkComponents(path);
}
