import { type ForgeErrorCode, shortId } from '@backupforge/common';
import { matchesFilter, type SnapshotFilter } from '@backupforge/engine';
import type { Context } from '../context.ts';
import { ExitCode } from '../exit-codes.ts';
import { formatTime, table } from '../format.ts';

export interface FilterOptions {
  host?: string[];
  tag?: string[];
  path?: string[];
}

export function toFilter(o: FilterOptions): SnapshotFilter {
  return {
    ...(o.host ? { hosts: o.host } : {}),
    ...(o.tag ? { tags: o.tag } : {}),
    ...(o.path ? { paths: o.path } : {}),
  };
}

export async function snapshotsCommand(ctx: Context, opts: FilterOptions): Promise<number> {
  const repo = await ctx.openRepository();
  try {
    const snaps = (await repo.listSnapshots()).filter((s) => matchesFilter(s, toFilter(opts)));
    for (const u of repo.unreadableSnapshots)
      ctx.out.warn(`snapshot ${u.id.slice(0, 8)} is unreadable: ${u.error.message}`, {
        code: u.error.code,
        id: u.id,
      });
    if (ctx.out.json) {
      for (const s of snaps) ctx.out.emit({ message_type: 'snapshot', ...s, short_id: shortId(s.id) });
      return damaged(ctx, repo.unreadableSnapshots);
    }
    const rows = [['ID', 'Time', 'Host', 'Tags', 'Paths']];
    for (const s of snaps)
      rows.push([shortId(s.id), formatTime(s.time), s.hostname, s.tags.join(','), s.paths.join(', ')]);
    ctx.out.line(table(rows));
    ctx.out.line(`${snaps.length} snapshot${snaps.length === 1 ? '' : 's'}`);
    return damaged(ctx, repo.unreadableSnapshots);
  } finally {
    await repo.close();
  }
}

function damaged(
  ctx: Context,
  unreadable: readonly { id: string; error: { code: ForgeErrorCode } }[],
): number {
  if (unreadable.length === 0) return ExitCode.OK;
  const ids = unreadable.map((u) => u.id.slice(0, 12)).join(', ');
  ctx.out.error(
    `${unreadable.length === 1 ? 'snapshot' : 'snapshots'} ${ids} ${unreadable.length === 1 ? 'is' : 'are'} damaged (the others are listed); run 'forge check'`,
    {
      code: unreadable[0]!.error.code,
    },
  );
  return ExitCode.FATAL;
}
