import { resolve } from 'node:path';
import { type BackupSource, ForgeError, ForgeErrorCodes, type SourceEvent } from '@backupforge/common';
import { type ExcludeIfPresentRule, parseExcludeIfPresent } from './internal/exclude-if-present.ts';
import { createExcludeMatcher } from './internal/exclude-matcher.ts';
import { compareNames } from './internal/tree-walker.ts';
import { walkOnWorker } from './internal/walk-client.ts';
import { runWalk, type WalkRequest } from './internal/walk-run.ts';

/** Options of {@link createFsSource}; the names follow restic's `backup` flags. */
export interface FsSourceOptions {
  /** Files and directories to back up. Relative paths resolve against the working directory. */
  readonly paths: readonly string[];
  /** Glob patterns to exclude (`--exclude`). See the README for the matching rules. */
  readonly exclude?: readonly string[];
  /** Like `exclude`, but matched case-insensitively (`--iexclude`). */
  readonly iexclude?: readonly string[];
  /** Files with one exclude pattern per line; `#` comments and blank lines are ignored. */
  readonly excludeFile?: readonly string[];
  /**
   * `NAME` or `NAME:header`: a directory containing a file `NAME` (that starts with `header`,
   * when given) has its contents excluded, except that file (`--exclude-if-present`).
   */
  readonly excludeIfPresent?: readonly string[];
  /** Do not descend into directories on another filesystem than their target (`-x`). */
  readonly oneFileSystem?: boolean;
}

/**
 * Resolves paths to absolute ones, drops duplicates and paths inside another path, and sorts
 * them in snapshot order.
 */
function normaliseTargets(paths: readonly string[]): string[] {
  const sorted = [...new Set(paths.map((p) => resolve(p)))].sort(compareNames);
  const out: string[] = [];
  for (const p of sorted) {
    const inside = out.some((q) => q === '/' || p === q || p.startsWith(`${q}/`));
    if (!inside) out.push(p);
  }
  return out;
}

/**
 * A {@link BackupSource} over the local filesystem: walks `paths` one directory at a time,
 * honouring restic-style excludes, and reports full POSIX metadata without following
 * symlinks. Unreadable things become warnings, never errors.
 *
 * ```ts
 * const source = createFsSource({ paths: ['/home/alice'], exclude: ['node_modules', '*.tmp'] });
 * for await (const ev of source.entries()) {
 *   if (ev.kind === 'entry') console.log(ev.path.join('/'), ev.meta.type);
 * }
 * ```
 */
export function createFsSource(options: FsSourceOptions): BackupSource {
  if (options.paths.length === 0) {
    throw new ForgeError(ForgeErrorCodes.FORGE_USAGE, 'no paths to back up', {
      hint: 'name at least one file or directory',
    });
  }
  for (const p of options.paths) {
    if (p === '' || p.includes('\0')) {
      throw new ForgeError(ForgeErrorCodes.FORGE_USAGE, `invalid path ${JSON.stringify(p)}`);
    }
  }
  const targets = normaliseTargets(options.paths);
  const exclude = [...(options.exclude ?? [])];
  const iexclude = [...(options.iexclude ?? [])];
  const excludeFiles = [...(options.excludeFile ?? [])];
  const oneFileSystem = options.oneFileSystem ?? false;
  // Compile now so that bad patterns fail at construction, before any walking.
  createExcludeMatcher({ exclude, iexclude });
  const tagRules: ExcludeIfPresentRule[] = (options.excludeIfPresent ?? []).map(parseExcludeIfPresent);

  const request = (readLinks: boolean): WalkRequest => ({
    targets,
    exclude,
    iexclude,
    excludeFiles,
    tagRules,
    oneFileSystem,
    readLinks,
  });

  return Object.freeze({
    kind: 'fs',
    paths: Object.freeze(targets),
    // The walk runs on a worker thread: the main thread has the engine's per-entry work to do.
    entries: (signal?: AbortSignal): AsyncIterable<SourceEvent> => walkOnWorker(request(true), signal),
    async scan(signal?: AbortSignal): Promise<{ files: number; bytes: number }> {
      let files = 0;
      let bytes = 0;
      for await (const ev of runWalk(request(false), signal)) {
        if (ev.kind === 'entry' && ev.meta.type === 'file') {
          files++;
          bytes += ev.meta.size;
        }
      }
      return { files, bytes };
    },
  });
}
