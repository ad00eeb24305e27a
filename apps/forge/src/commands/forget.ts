import { ForgeError, shortId } from '@backupforge/common';
import {
  describeGroup,
  describePolicy,
  forget,
  parseGroupBy,
  type RetentionPolicy,
} from '@backupforge/engine';
import type { Context } from '../context.ts';
import { ExitCode } from '../exit-codes.ts';
import { formatTime, table } from '../format.ts';
import { type FilterOptions, toFilter } from './snapshots.ts';

export interface ForgetCommandOptions extends FilterOptions {
  keepLast?: string;
  keepHourly?: string;
  keepDaily?: string;
  keepWeekly?: string;
  keepMonthly?: string;
  keepYearly?: string;
  keepWithin?: string;
  keepWithinHourly?: string;
  keepWithinDaily?: string;
  keepWithinWeekly?: string;
  keepWithinMonthly?: string;
  keepWithinYearly?: string;
  keepTag?: string[];
  groupBy?: string;
  dryRun?: boolean;
  prune?: boolean;
  maxUnused?: string;
  maxWait?: string;
}

function count(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < -1)
    throw new ForgeError('FORGE_USAGE', `--${name} ${v} is not a count`, {
      hint: 'give a whole number, or -1 for unlimited',
    });
  return n;
}

export function policyFromOptions(o: ForgetCommandOptions): RetentionPolicy | undefined {
  const p: Record<string, unknown> = {
    last: count('keep-last', o.keepLast),
    hourly: count('keep-hourly', o.keepHourly),
    daily: count('keep-daily', o.keepDaily),
    weekly: count('keep-weekly', o.keepWeekly),
    monthly: count('keep-monthly', o.keepMonthly),
    yearly: count('keep-yearly', o.keepYearly),
    within: o.keepWithin,
    withinHourly: o.keepWithinHourly,
    withinDaily: o.keepWithinDaily,
    withinWeekly: o.keepWithinWeekly,
    withinMonthly: o.keepWithinMonthly,
    withinYearly: o.keepWithinYearly,
    tags: o.keepTag?.map((g) => g.split(',').filter(Boolean)),
  };
  for (const k of Object.keys(p)) if (p[k] === undefined) delete p[k];
  return Object.keys(p).length > 0 ? (p as RetentionPolicy) : undefined;
}

export async function forgetCommand(
  ctx: Context,
  ids: string[],
  opts: ForgetCommandOptions,
): Promise<number> {
  const policy = policyFromOptions(opts);
  if (!policy && ids.length === 0) {
    throw new ForgeError('FORGE_USAGE', 'nothing to forget: no snapshot ids and no --keep-* policy', {
      hint: "give snapshot ids, or a policy such as '--keep-daily 7 --keep-weekly 4'",
    });
  }
  const groupBy = opts.groupBy !== undefined ? parseGroupBy(opts.groupBy) : undefined;
  const repo = await ctx.openRepository();
  try {
    const r = await forget(repo, {
      ...(ids.length ? { snapshots: ids } : {}),
      ...(policy ? { policy } : {}),
      ...(groupBy ? { groupBy } : {}),
      filter: toFilter(opts),
      dryRun: opts.dryRun ?? false,
    });
    if (policy) ctx.out.info(`Applying policy: ${describePolicy(policy)}`);
    for (const g of r.groups) {
      ctx.out.emit({
        message_type: 'group',
        group: { hostname: g.group.hostname, paths: g.group.paths, tags: g.group.tags },
        keep: g.keep.map((k) => ({ id: k.snapshot.id, time: k.snapshot.time, reasons: k.reasons })),
        remove: g.remove.map((s) => ({ id: s.id, time: s.time })),
      });
      if (ctx.out.json) continue;
      ctx.out.line(`snapshots for ${describeGroup(g.group) || 'all'}:`);
      const rows = [['ID', 'Time', 'Host', 'Tags', 'Reasons']];
      for (const k of g.keep)
        rows.push([
          shortId(k.snapshot.id),
          formatTime(k.snapshot.time),
          k.snapshot.hostname,
          k.snapshot.tags.join(','),
          k.reasons.join(', '),
        ]);
      ctx.out.line(`keep ${g.keep.length} snapshot${g.keep.length === 1 ? '' : 's'}:`);
      ctx.out.line(table(rows));
      if (g.remove.length > 0) {
        ctx.out.line(`remove ${g.remove.length} snapshot${g.remove.length === 1 ? '' : 's'}:`);
        ctx.out.line(
          table([
            ['ID', 'Time', 'Host', 'Tags'],
            ...g.remove.map((s) => [shortId(s.id), formatTime(s.time), s.hostname, s.tags.join(',')]),
          ]),
        );
      }
      ctx.out.line('');
    }
    ctx.out.emit({ message_type: 'summary', dry_run: opts.dryRun ?? false, removed: r.removed });
    if (opts.dryRun) ctx.out.info('dry run: nothing was removed');
    else
      ctx.out.info(
        `removed ${r.removed.length} snapshot${r.removed.length === 1 ? '' : 's'}; run 'forge check' any time, and prune (coming) frees their data`,
      );
    return ExitCode.OK;
  } finally {
    await repo.close();
  }
}
