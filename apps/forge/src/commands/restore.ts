import { createFsRestoreTarget, createPathMatcher } from '@backupforge/agent-fs';
import { ForgeError, shortId } from '@backupforge/common';
import { findSnapshot, restore } from '@backupforge/engine';
import type { Context } from '../context.ts';
import { ExitCode } from '../exit-codes.ts';
import { formatBytes, formatDuration } from '../format.ts';
import { type FilterOptions, toFilter } from './snapshots.ts';

export interface RestoreCommandOptions extends FilterOptions {
  target?: string;
  include?: string[];
  iinclude?: string[];
  exclude?: string[];
  iexclude?: string[];
  verify?: boolean;
  overwrite?: boolean;
}

/** Splits `id[:subpath]`. */
export function parseSnapshotSpec(spec: string): { ref: string; subpath: string } {
  const i = spec.indexOf(':');
  return i < 0 ? { ref: spec, subpath: '/' } : { ref: spec.slice(0, i), subpath: spec.slice(i + 1) || '/' };
}

export async function restoreCommand(
  ctx: Context,
  spec: string,
  opts: RestoreCommandOptions,
): Promise<number> {
  if (!opts.target) {
    throw new ForgeError('FORGE_USAGE', 'no restore target given', {
      hint: 'add --target DIR (an empty or new directory)',
    });
  }
  const { ref, subpath } = parseSnapshotSpec(spec);
  const include =
    opts.include?.length || opts.iinclude?.length
      ? createPathMatcher({ patterns: opts.include ?? [], ipatterns: opts.iinclude ?? [] })
      : undefined;
  const exclude =
    opts.exclude?.length || opts.iexclude?.length
      ? createPathMatcher({ patterns: opts.exclude ?? [], ipatterns: opts.iexclude ?? [] })
      : undefined;
  const repo = await ctx.openRepository();
  try {
    const snap = await findSnapshot(repo, ref, toFilter(opts));
    const root = opts.target.startsWith('/') ? opts.target : `${ctx.io.cwd}/${opts.target}`;
    const target = createFsRestoreTarget({
      root,
      overwrite: opts.overwrite ?? false,
      onWarning: (w) => ctx.out.warn(w.message, { code: w.code, path: w.path }),
    });
    const t0 = Date.now();
    ctx.out.info(`restoring snapshot ${shortId(snap.id)}${subpath !== '/' ? `:${subpath}` : ''} to ${root}`);
    const r = await restore(repo, snap, target, {
      subpath,
      ...(include ? { include } : {}),
      ...(exclude ? { exclude } : {}),
      verify: opts.verify ?? false,
      reporter: ctx.out.reporter(),
      signal: ctx.signal,
    });
    ctx.out.emit({
      message_type: 'summary',
      snapshot_id: snap.id,
      files_restored: r.files,
      dirs_restored: r.dirs,
      bytes_restored: r.bytes,
      files_verified: r.verified,
      errors: r.errors.length,
      total_duration: (Date.now() - t0) / 1000,
    });
    ctx.out.info(
      `restored ${r.files} files, ${formatBytes(r.bytes)} in ${formatDuration(Date.now() - t0)}${opts.verify ? `; verified ${r.verified}` : ''}`,
    );
    if (r.errors.length > 0) {
      ctx.out.error(
        `${r.errors.length} file${r.errors.length === 1 ? '' : 's'} could not be restored (see the warnings above); the repository may be damaged`,
        { code: r.errors[0]!.code },
      );
      return ExitCode.FATAL;
    }
    return ExitCode.OK;
  } finally {
    await repo.close();
  }
}
