import { createFsSource, createStdinSource } from '@backupforge/agent-fs';
import { ForgeError, shortId } from '@backupforge/common';
import { backup } from '@backupforge/engine';
import type { Context } from '../context.ts';
import { ExitCode } from '../exit-codes.ts';
import { formatBytes, formatDuration } from '../format.ts';

export interface BackupCommandOptions {
  tag?: string[];
  host?: string;
  dryRun?: boolean;
  stdin?: boolean;
  stdinFilename?: string;
  exclude?: string[];
  iexclude?: string[];
  excludeFile?: string[];
  excludeIfPresent?: string[];
  oneFileSystem?: boolean;
  parent?: string;
  force?: boolean;
}

export async function backupCommand(
  ctx: Context,
  paths: string[],
  opts: BackupCommandOptions,
): Promise<number> {
  if (opts.stdin && paths.length > 0) {
    throw new ForgeError('FORGE_USAGE', '--stdin takes no paths', {
      hint: 'name the stored file with --stdin-filename',
    });
  }
  if (!opts.stdin && paths.length === 0) {
    throw new ForgeError('FORGE_USAGE', 'nothing to back up', {
      hint: "give one or more paths, e.g. 'forge backup ~/Documents'",
    });
  }
  const source = opts.stdin
    ? createStdinSource({ filename: opts.stdinFilename ?? 'stdin', stream: ctx.io.stdin })
    : createFsSource({
        paths: paths.map((p) => (p.startsWith('/') ? p : `${ctx.io.cwd}/${p}`)),
        exclude: opts.exclude ?? [],
        iexclude: opts.iexclude ?? [],
        excludeFile: opts.excludeFile ?? [],
        excludeIfPresent: opts.excludeIfPresent ?? [],
        oneFileSystem: opts.oneFileSystem ?? false,
      });
  const repo = await ctx.openRepository({ autoInit: true });
  try {
    const t0 = Date.now();
    const result = await backup(repo, source, {
      tags: (opts.tag ?? []).flatMap((t) => t.split(',')).filter(Boolean),
      ...(opts.host ? { host: opts.host } : {}),
      ...(opts.force ? { parent: false as const } : opts.parent ? { parent: opts.parent } : {}),
      dryRun: opts.dryRun ?? false,
      reporter: ctx.out.reporter(),
      signal: ctx.signal,
      scan: ctx.io.stderr.isTTY === true || ctx.out.json,
    });
    const s = result.snapshot.summary!;
    ctx.out.emit({
      message_type: 'summary',
      dry_run: opts.dryRun ?? false,
      snapshot_id: result.snapshotId ?? null,
      parent: result.parent?.id ?? null,
      files_new: s.filesNew,
      files_changed: s.filesChanged,
      files_unmodified: s.filesUnmodified,
      dirs_new: s.dirsNew,
      dirs_changed: s.dirsChanged,
      dirs_unmodified: s.dirsUnmodified,
      data_blobs: s.dataBlobs,
      tree_blobs: s.treeBlobs,
      data_added: s.dataAdded,
      data_added_packed: s.dataAddedPacked,
      total_files_processed: s.totalFilesProcessed,
      total_bytes_processed: s.totalBytesProcessed,
      warnings: result.warnings.length,
      partial: result.partial,
      ...ctx.retries(),
      total_duration: (Date.now() - t0) / 1000,
    });
    if (result.parent) ctx.out.info(`using parent snapshot ${shortId(result.parent.id)}`);
    ctx.out.info(`Files: ${s.filesNew} new, ${s.filesChanged} changed, ${s.filesUnmodified} unmodified`);
    ctx.out.info(`Dirs:  ${s.dirsNew} new, ${s.dirsChanged} changed, ${s.dirsUnmodified} unmodified`);
    ctx.out.info(
      `Added to the repository: ${formatBytes(s.dataAdded)} (${formatBytes(s.dataAddedPacked)} stored)`,
    );
    ctx.out.info(
      `processed ${s.totalFilesProcessed} files, ${formatBytes(s.totalBytesProcessed)} in ${formatDuration(Date.now() - t0)}`,
    );
    const { retries, succeeded_after_retry: succeededAfterRetry } = ctx.retries();
    if (retries > 0)
      ctx.out.info(
        `the repository storage needed ${retries} retr${retries === 1 ? 'y' : 'ies'} (${succeededAfterRetry} call${succeededAfterRetry === 1 ? '' : 's'} succeeded after retrying)`,
      );
    if (opts.dryRun) ctx.out.info('dry run: nothing was written');
    else
      ctx.out.info(
        `snapshot ${shortId(result.snapshotId!)} saved${result.partial ? ` (partial: ${result.warnings.length} files or dirs could not be read)` : ''}`,
      );
    return result.partial ? ExitCode.PARTIAL : ExitCode.OK;
  } finally {
    await repo.close();
  }
}
