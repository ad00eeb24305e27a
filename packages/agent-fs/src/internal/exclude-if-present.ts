import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { ForgeError, ForgeErrorCodes } from '@backupforge/common';

/** One `--exclude-if-present` rule: a tag file name, optionally with required leading bytes. */
export interface ExcludeIfPresentRule {
  readonly name: string;
  readonly header?: Uint8Array;
}

/**
 * Parses `NAME` or `NAME:header` (restic syntax, e.g.
 * `CACHEDIR.TAG:Signature: 8a477f597d28d172789f06886806bc55`). Only the first `:` separates
 * the name from the header, so the header may itself contain colons.
 */
export function parseExcludeIfPresent(spec: string): ExcludeIfPresentRule {
  const colon = spec.indexOf(':');
  const name = colon < 0 ? spec : spec.slice(0, colon);
  if (name === '' || name === '.' || name === '..' || name.includes('/') || name.includes('\0')) {
    throw new ForgeError(
      ForgeErrorCodes.FORGE_USAGE,
      `invalid --exclude-if-present file name ${JSON.stringify(name)}`,
      {
        hint: 'give a plain file name, optionally followed by :header',
      },
    );
  }
  if (colon < 0) return { name };
  return { name, header: new TextEncoder().encode(spec.slice(colon + 1)) };
}

async function startsWith(file: string, header: Uint8Array): Promise<boolean> {
  // O_NONBLOCK so a FIFO named like the tag file cannot hang the walk; O_NOFOLLOW so a symlink
  // cannot point the check somewhere else.
  const flags = constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOFOLLOW;
  let handle: Awaited<ReturnType<typeof open>> | undefined;
  try {
    handle = await open(file, flags);
    const stat = await handle.stat();
    if (!stat.isFile()) return false;
    const buf = new Uint8Array(header.length);
    let got = 0;
    while (got < buf.length) {
      const { bytesRead } = await handle.read(buf, got, buf.length - got, got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    return got === header.length && Buffer.from(buf).equals(header);
  } catch {
    // Like restic: a tag file that cannot be read does not exclude its directory.
    return false;
  } finally {
    await handle?.close().catch(() => undefined);
  }
}

/**
 * Whether the contents of directory `dir` (whose entry names are `names`) are excluded by one
 * of `rules`. Returns the name of the tag file that matched (which is itself still backed up,
 * as restic does), or `undefined`.
 */
export async function findExcludeTag(
  dir: string,
  names: ReadonlySet<string>,
  rules: readonly ExcludeIfPresentRule[],
): Promise<string | undefined> {
  for (const rule of rules) {
    if (!names.has(rule.name)) continue;
    if (rule.header === undefined || (await startsWith(join(dir, rule.name), rule.header))) return rule.name;
  }
  return undefined;
}
