import { shortId } from '@backupforge/common';
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
    if (ctx.out.json) {
      for (const s of snaps) ctx.out.emit({ message_type: 'snapshot', ...s, short_id: shortId(s.id) });
      return ExitCode.OK;
    }
    const rows = [['ID', 'Time', 'Host', 'Tags', 'Paths']];
    for (const s of snaps)
      rows.push([shortId(s.id), formatTime(s.time), s.hostname, s.tags.join(','), s.paths.join(', ')]);
    ctx.out.line(table(rows));
    ctx.out.line(`${snaps.length} snapshot${snaps.length === 1 ? '' : 's'}`);
    return ExitCode.OK;
  } finally {
    await repo.close();
  }
}
