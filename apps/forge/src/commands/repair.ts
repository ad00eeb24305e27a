import { repairIndex, repairSnapshots } from '@backupforge/engine';
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

export async function repairSnapshotsCommand(
  ctx: Context,
  opts: { dryRun?: boolean; forget?: boolean },
): Promise<number> {
  const repo = await ctx.openRepository();
  try {
    const r = await repairSnapshots(repo, {
      dryRun: opts.dryRun ?? false,
      forget: opts.forget ?? false,
      reporter: ctx.out.reporter(),
    });
    for (const s of r) {
      ctx.out.emit({
        message_type: 'repaired',
        original: s.original,
        repaired: s.repaired ?? null,
        damaged: s.damaged,
      });
      ctx.out.info(
        `snapshot ${s.original.slice(0, 8)}${s.repaired ? ` → ${s.repaired.slice(0, 8)}` : ''}: ${s.damaged.length} damaged paths`,
      );
      for (const p of s.damaged) ctx.out.info(`  ${p}`);
    }
    ctx.out.emit({ message_type: 'summary', dry_run: opts.dryRun ?? false, repaired: r.length });
    if (r.length === 0) ctx.out.info('no snapshot references missing data');
    else if (opts.dryRun) ctx.out.info(`dry run: ${r.length} snapshots would be rewritten`);
    else
      ctx.out.info(
        `rewrote ${r.length} snapshots (tag 'repaired')${opts.forget ? '; removed the damaged originals' : "; the originals remain (remove them with --forget or 'forge forget')"}`,
      );
    return ExitCode.OK;
  } finally {
    await repo.close();
  }
}
