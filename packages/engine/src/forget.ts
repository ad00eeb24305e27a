import type { Reporter, SnapshotRecord } from '@backupforge/common';
import { silentReporter } from '@backupforge/common';
import { crashPoint } from './internal/crash.ts';
import { RepositoryLock } from './lock.ts';
import type { Repository } from './repository.ts';
import {
  applyPolicy,
  type GroupByField,
  groupSnapshots,
  type KeptSnapshot,
  type RetentionPolicy,
  type SnapshotGroup,
  validatePolicy,
} from './retention/index.ts';
import { matchesFilter, resolveSnapshotRef, type SnapshotFilter } from './snapshot-filter.ts';

export interface ForgetOptions {
  /** Remove these snapshots (refs: ids, prefixes, `latest`), regardless of any policy. */
  readonly snapshots?: readonly string[];
  /** Keep what this policy selects in each group, remove the rest. */
  readonly policy?: RetentionPolicy;
  /** Default: host, paths (restic's default). */
  readonly groupBy?: readonly GroupByField[];
  /** Only snapshots matching this are considered. */
  readonly filter?: SnapshotFilter;
  readonly dryRun?: boolean;
  /** Evaluation time and IANA time zone for calendar buckets (default: now, the local zone). */
  readonly now?: Date;
  readonly timeZone?: string;
  readonly reporter?: Reporter;
}

export interface ForgetGroupResult {
  readonly group: SnapshotGroup;
  readonly keep: readonly KeptSnapshot[];
  readonly remove: readonly SnapshotRecord[];
}

export interface ForgetResult {
  readonly groups: readonly ForgetGroupResult[];
  /** Ids removed (empty for a dry run). */
  readonly removed: readonly string[];
}

/**
 * Removes snapshots, by id or by retention policy (restic `forget`). Only snapshot objects are
 * deleted; the data they alone used stays until `prune`. Takes a shared lock: backups go on.
 */
export async function forget(repo: Repository, opts: ForgetOptions): Promise<ForgetResult> {
  const reporter = opts.reporter ?? silentReporter;
  const all = await repo.listSnapshots();
  const groups: ForgetGroupResult[] = [];
  const toRemove = new Map<string, SnapshotRecord>();
  if (opts.snapshots?.length) {
    for (const ref of opts.snapshots) {
      const s = resolveSnapshotRef(all, ref, opts.filter);
      toRemove.set(s.id, s);
    }
  }
  if (opts.policy) {
    validatePolicy(opts.policy, { requireNonEmpty: true });
    const candidates = all.filter((s) => matchesFilter(s, opts.filter));
    for (const group of groupSnapshots(candidates, opts.groupBy)) {
      const r = applyPolicy(group.snapshots, opts.policy, {
        now: opts.now ?? new Date(),
        ...(opts.timeZone ? { timeZone: opts.timeZone } : {}),
      });
      const remove = r.remove.map((x) => x.snapshot);
      for (const s of remove) toRemove.set(s.id, s);
      groups.push({ group, keep: r.keep, remove });
    }
  }
  const removed: string[] = [];
  if (!opts.dryRun && toRemove.size > 0) {
    const lock = await RepositoryLock.acquire(repo.backend, { exclusive: false });
    try {
      for (const id of toRemove.keys()) {
        await lock.check();
        await repo.removeSnapshot(id);
        removed.push(id);
        crashPoint('forget:snapshot-removed');
        reporter({
          type: 'progress',
          phase: 'check',
          filesDone: removed.length,
          bytesDone: 0,
          currentPath: id,
        });
      }
    } finally {
      await lock.release().catch(() => {});
    }
  }
  return { groups, removed };
}
