import { isStale, listLocks } from '@backupforge/engine';
import type { Context } from '../context.ts';
import { ExitCode } from '../exit-codes.ts';

export interface UnlockOptions {
  removeAll?: boolean;
}

/** Removes stale locks (owner gone or not refreshed for 30 minutes); `--remove-all` removes every lock. */
export async function unlockCommand(ctx: Context, opts: UnlockOptions): Promise<number> {
  const repo = await ctx.openRepository();
  try {
    let removed = 0;
    for (const { id, lock } of await listLocks(repo.backend)) {
      if (!opts.removeAll && !isStale(lock)) continue;
      await repo.backend.remove({ type: 'lock', name: id });
      removed++;
      ctx.out.emit({ message_type: 'lock_removed', id, ...lock });
      ctx.out.info(
        `removed lock ${id.slice(0, 8)} of ${lock.username}@${lock.hostname} (pid ${lock.pid}, ${lock.time})`,
      );
    }
    ctx.out.info(removed === 0 ? 'no locks to remove' : `removed ${removed} lock${removed === 1 ? '' : 's'}`);
    return ExitCode.OK;
  } finally {
    await repo.close();
  }
}
