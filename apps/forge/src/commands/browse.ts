import { once } from 'node:events';
import { ForgeError, shortId } from '@backupforge/common';
import {
  diffSnapshots,
  findSnapshot,
  readFileContent,
  repositoryStats,
  walkSnapshot,
} from '@backupforge/engine';
import type { Context } from '../context.ts';
import { ExitCode } from '../exit-codes.ts';
import { formatBytes, formatMode, formatTime } from '../format.ts';
import { type FilterOptions, toFilter } from './snapshots.ts';

export interface LsOptions extends FilterOptions {
  long?: boolean;
  recursive?: boolean;
}

export async function lsCommand(
  ctx: Context,
  ref: string,
  path: string | undefined,
  opts: LsOptions,
): Promise<number> {
  const repo = await ctx.openRepository();
  try {
    const snap = await findSnapshot(repo, ref, toFilter(opts));
    if (!ctx.out.json)
      ctx.out.info(`snapshot ${shortId(snap.id)} of [${snap.paths.join(' ')}] at ${formatTime(snap.time)}:`);
    for await (const { path: p, node } of walkSnapshot(repo, snap, path ?? '/', {
      recursive: opts.recursive ?? true,
    })) {
      if (ctx.out.json) {
        ctx.out.emit({ message_type: 'node', path: p, ...node });
      } else if (opts.long) {
        const size = node.type === 'file' ? String(node.size ?? 0) : '0';
        const mtime = formatTime(new Date(Number(BigInt(node.mtime) / 1_000_000n)).toISOString());
        const link = node.type === 'symlink' ? ` -> ${node.linkTarget}` : '';
        ctx.out.line(
          `${formatMode(node.type, node.mode)} ${String(node.uid).padStart(5)} ${String(node.gid).padStart(5)} ${size.padStart(12)} ${mtime} ${p}${link}`,
        );
      } else {
        ctx.out.line(p);
      }
    }
    return ExitCode.OK;
  } finally {
    await repo.close();
  }
}

export async function dumpCommand(
  ctx: Context,
  ref: string,
  file: string,
  opts: FilterOptions,
): Promise<number> {
  const repo = await ctx.openRepository();
  try {
    const snap = await findSnapshot(repo, ref, toFilter(opts));
    for await (const chunk of readFileContent(repo, snap, file)) {
      if (!ctx.io.stdout.write(chunk)) await once(ctx.io.stdout, 'drain');
    }
    return ExitCode.OK;
  } finally {
    await repo.close();
  }
}

const DIFF_MARK = { added: '+', removed: '-', modified: 'M', type: 'T', metadata: 'U' } as const;

export async function diffCommand(ctx: Context, a: string, b: string, opts: FilterOptions): Promise<number> {
  const repo = await ctx.openRepository();
  try {
    const sa = await findSnapshot(repo, a, toFilter(opts));
    const sb = await findSnapshot(repo, b, toFilter(opts));
    const counts = { added: 0, removed: 0, modified: 0, type: 0, metadata: 0 };
    ctx.out.info(`comparing snapshot ${shortId(sa.id)} to ${shortId(sb.id)}:`);
    for await (const d of diffSnapshots(repo, sa, sb)) {
      counts[d.change]++;
      const dir = (d.after ?? d.before)?.type === 'dir' ? '/' : '';
      if (ctx.out.json)
        ctx.out.emit({
          message_type: 'change',
          path: d.path,
          modifier: DIFF_MARK[d.change],
          change: d.change,
        });
      else ctx.out.line(`${DIFF_MARK[d.change]}    ${d.path}${dir}`);
    }
    ctx.out.emit({ message_type: 'statistics', source_snapshot: sa.id, target_snapshot: sb.id, ...counts });
    ctx.out.info(
      `added: ${counts.added}, removed: ${counts.removed}, modified: ${counts.modified}, type changed: ${counts.type}, metadata only: ${counts.metadata}`,
    );
    return ExitCode.OK;
  } finally {
    await repo.close();
  }
}

export async function statsCommand(ctx: Context, refs: string[], opts: FilterOptions): Promise<number> {
  const repo = await ctx.openRepository();
  try {
    const all = await repo.listSnapshots();
    const snaps =
      refs.length > 0 ? await Promise.all(refs.map((r) => findSnapshot(repo, r, toFilter(opts)))) : undefined;
    if (snaps === undefined && (opts.host || opts.tag || opts.path)) {
      throw new ForgeError('FORGE_USAGE', 'filters need a snapshot selection', {
        hint: "add 'latest' or snapshot ids",
      });
    }
    const st = await repositoryStats(repo, snaps ?? all);
    if (ctx.out.json) {
      ctx.out.emit({ message_type: 'stats', ...st });
      return ExitCode.OK;
    }
    ctx.out.line(`repository ${repo.config.id.slice(0, 10)} at ${repo.backend.location}`);
    ctx.out.line(`  snapshots:            ${st.snapshots}`);
    ctx.out.line(`  files (all snapshots): ${st.totalFiles}`);
    ctx.out.line(`  restore size:         ${formatBytes(st.restoreSize)}`);
    ctx.out.line(`  unique data:          ${formatBytes(st.rawSize)} in ${st.uniqueBlobs} chunks`);
    ctx.out.line(
      `  stored (compressed):  ${formatBytes(st.storedSize)} (compression ratio ${st.compressionRatio.toFixed(2)}x)`,
    );
    ctx.out.line(`  packs on storage:     ${st.packs} (${formatBytes(st.packBytes)})`);
    ctx.out.line(`  space saving:         ${st.spaceSavingRatio.toFixed(2)}x (dedup + compression)`);
    return ExitCode.OK;
  } finally {
    await repo.close();
  }
}
