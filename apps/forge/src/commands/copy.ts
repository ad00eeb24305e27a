import { shortId } from '@backupforge/common';
import { copySnapshots, Repository } from '@backupforge/engine';
import type { Context } from '../context.ts';
import { ExitCode } from '../exit-codes.ts';
import { formatBytes } from '../format.ts';
import { type FilterOptions, toFilter } from './snapshots.ts';

export interface CopyCommandOptions extends FilterOptions {
  fromRepo: string;
  fromPasswordFile?: string;
  fromPasswordCommand?: string;
  dryRun?: boolean;
}

/** Opens the source repository of `copy` / `init --copy-chunker-params-from`. */
export async function openFromRepository(
  ctx: Context,
  location: string,
  opts: { fromPasswordFile?: string; fromPasswordCommand?: string },
): Promise<Repository> {
  const backend = await ctx.backend(location);
  await Repository.probe(backend);
  const password = await ctx.password({
    prompt: `enter password for the source repository ${backend.location}: `,
    env: 'FORGE_FROM_PASSWORD',
    ...(opts.fromPasswordFile ? { file: opts.fromPasswordFile } : {}),
    ...(opts.fromPasswordCommand ? { command: opts.fromPasswordCommand } : {}),
  });
  return Repository.open(backend, { password });
}

export async function copyCommand(ctx: Context, refs: string[], opts: CopyCommandOptions): Promise<number> {
  const src = await openFromRepository(ctx, opts.fromRepo, opts);
  try {
    const dst = await ctx.openRepository();
    try {
      const r = await copySnapshots(src, dst, {
        ...(refs.length ? { snapshots: refs } : {}),
        filter: toFilter(opts),
        dryRun: opts.dryRun ?? false,
        reporter: ctx.out.reporter(),
        signal: ctx.signal,
      });
      for (const c of r.copied) {
        ctx.out.emit({
          message_type: 'copied',
          source: c.source,
          original: c.original,
          copy: c.copy ?? null,
        });
        ctx.out.info(
          opts.dryRun
            ? `would copy snapshot ${shortId(c.source)}`
            : `copied snapshot ${shortId(c.source)} to ${shortId(c.copy!)}`,
        );
      }
      for (const s of r.skipped) {
        ctx.out.emit({ message_type: 'skipped', source: s.source, existing: s.existing });
        ctx.out.info(`skipped snapshot ${shortId(s.source)}: already copied as ${shortId(s.existing)}`);
      }
      ctx.out.emit({
        message_type: 'summary',
        dry_run: opts.dryRun ?? false,
        chunking: r.chunking,
        copied: r.copied.length,
        skipped: r.skipped.length,
        data_blobs: r.dataBlobs,
        tree_blobs: r.treeBlobs,
        data_added: r.bytesAdded,
        data_added_packed: r.bytesAddedPacked,
        bytes_read: r.bytesRead,
        ...ctx.retries(),
      });
      ctx.out.info(
        `${r.copied.length} snapshot${r.copied.length === 1 ? '' : 's'} copied, ${r.skipped.length} skipped; ` +
          `added ${formatBytes(r.bytesAdded)} (${formatBytes(r.bytesAddedPacked)} stored), read ${formatBytes(r.bytesRead)}` +
          (r.chunking === 'rechunk'
            ? '; the repositories chunk differently, so files were re-chunked (create the destination with --copy-chunker-params-from to avoid that)'
            : ''),
      );
      return ExitCode.OK;
    } finally {
      await dst.close();
    }
  } finally {
    await src.close();
  }
}
