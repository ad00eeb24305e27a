import { ForgeError } from '@backupforge/common';
import { prune, type Repository } from '@backupforge/engine';
import type { Context } from '../context.ts';
import { ExitCode } from '../exit-codes.ts';
import { formatBytes } from '../format.ts';

export interface PruneCommandOptions {
  dryRun?: boolean;
  maxUnused?: string;
  maxWait?: string;
}

/** `5%` → 0.05; `unlimited` → Infinity. */
export function parseMaxUnused(s: string): number {
  if (s === 'unlimited') return Number.POSITIVE_INFINITY;
  const m = /^(\d+(?:\.\d+)?)%$/.exec(s);
  if (m) return Number(m[1]) / 100;
  throw new ForgeError('FORGE_USAGE', `--max-unused ${s} is not understood`, {
    hint: "give a percentage like '5%' or 'unlimited'",
  });
}

function parseSeconds(s: string): number {
  const m = /^(\d+)(s|m|h)?$/.exec(s);
  if (!m)
    throw new ForgeError('FORGE_USAGE', `--max-wait ${s} is not a duration`, {
      hint: "use e.g. '90s', '10m' or '1h'",
    });
  return Number(m[1]) * ({ s: 1, m: 60, h: 3600 } as const)[(m[2] ?? 's') as 's' | 'm' | 'h'] * 1000;
}

export async function runPrune(ctx: Context, repo: Repository, opts: PruneCommandOptions): Promise<number> {
  const r = await prune(repo, {
    dryRun: opts.dryRun ?? false,
    maxUnused: parseMaxUnused(opts.maxUnused ?? '5%'),
    maxWaitMs: opts.maxWait ? parseSeconds(opts.maxWait) : 0,
    reporter: ctx.out.reporter(),
  });
  const p = r.plan;
  ctx.out.emit({
    message_type: 'summary',
    dry_run: opts.dryRun ?? false,
    ...p,
    packs_deleted: r.packsDeleted,
    bytes_freed: r.bytesFreed,
    packs_deferred: r.packsDeferred,
    temporary_files: r.temporaries.files,
    temporary_bytes: r.temporaries.bytes,
  });
  ctx.out.info(
    `${p.snapshots} snapshots use ${p.usedBlobs} blobs (${formatBytes(p.usedBytes)}); ${formatBytes(p.unusedBytes)} in indexed packs is unused`,
  );
  ctx.out.info(
    `packs: keep ${p.packs.keep}, repack ${p.packs.repack} (${formatBytes(p.bytesToRepack)} to copy), remove ${p.packs.remove}, unindexed ${p.packs.unindexed}; ${formatBytes(p.bytesToDelete)} to delete`,
  );
  const t = r.temporaries;
  if (t.files > 0)
    ctx.out.info(
      `${opts.dryRun ? 'would delete' : 'deleted'} ${t.files} temporary file${t.files === 1 ? '' : 's'} (${formatBytes(t.bytes)}) that interrupted writes left behind`,
    );
  if (opts.dryRun) ctx.out.info('dry run: nothing was changed');
  else if (r.packsDeferred > 0)
    ctx.out.info(`${r.packsDeferred} packs were kept because backups are running; run prune again later`);
  else ctx.out.info(`deleted ${r.packsDeleted} packs, freed ${formatBytes(r.bytesFreed)}`);
  return ExitCode.OK;
}

export async function pruneCommand(ctx: Context, opts: PruneCommandOptions): Promise<number> {
  const repo = await ctx.openRepository();
  try {
    return await runPrune(ctx, repo, opts);
  } finally {
    await repo.close();
  }
}
