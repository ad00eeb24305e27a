import { repairIndex } from '@backupforge/engine';
import type { Context } from '../context.ts';
import { ExitCode } from '../exit-codes.ts';

export async function repairIndexCommand(ctx: Context, opts: { dryRun?: boolean }): Promise<number> {
  const repo = await ctx.openRepository();
  try {
    const r = await repairIndex(repo, { dryRun: opts.dryRun ?? false, reporter: ctx.out.reporter() });
    ctx.out.emit({
      message_type: 'summary',
      dry_run: opts.dryRun ?? false,
      packs: r.packs,
      blobs: r.blobs,
      unreadable_packs: r.unreadablePacks,
      index_files_written: r.indexFilesWritten,
      index_files_removed: r.indexFilesRemoved,
    });
    for (const p of r.unreadablePacks)
      ctx.out.warn(`pack ${p.id.slice(0, 12)} could not be read and was left out: ${p.message}`, {
        code: 'FORGE_INTEGRITY',
      });
    if (r.indexFilesRemoved.length === 0 && r.indexFilesWritten.length === 0) {
      ctx.out.info(`the index already matches the ${r.packs} packs (${r.blobs} blobs); nothing to do`);
    } else if (opts.dryRun) {
      ctx.out.info(
        `would rebuild the index from ${r.packs} packs (${r.blobs} blobs), replacing ${r.indexFilesRemoved.length} index files`,
      );
    } else {
      ctx.out.info(
        `rebuilt the index from ${r.packs} packs (${r.blobs} blobs): wrote ${r.indexFilesWritten.length} index files, removed ${r.indexFilesRemoved.length}`,
      );
    }
    return ExitCode.OK;
  } finally {
    await repo.close();
  }
}
