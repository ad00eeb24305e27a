import { checkRepository, parseReadDataSubset } from '@backupforge/engine';
import type { Context } from '../context.ts';
import { ExitCode } from '../exit-codes.ts';

export interface CheckCommandOptions {
  readData?: boolean;
  readDataSubset?: string;
}

export async function checkCommand(ctx: Context, opts: CheckCommandOptions): Promise<number> {
  const subset = opts.readDataSubset ? parseReadDataSubset(opts.readDataSubset) : undefined;
  // check reads the storage itself, never the local cache (which could hide damage there).
  const repo = await ctx.openRepository({ cache: false });
  try {
    const r = await checkRepository(repo, {
      readData: opts.readData ?? false,
      ...(subset ? { readDataSubset: subset } : {}),
      reporter: ctx.out.reporter(),
      signal: ctx.signal,
    });
    for (const f of r.findings) {
      if (f.severity === 'note') {
        ctx.out.emit({ message_type: 'finding', ...f });
        ctx.out.info(`note: ${f.message}`);
      } else {
        // Errors and warnings always reach stderr (warn also emits the JSON finding).
        ctx.out.warn(f.message, { severity: f.severity, kind: f.kind, code: f.code, object: f.object });
      }
    }
    const errors = r.findings.filter((f) => f.severity === 'error').length;
    ctx.out.emit({ message_type: 'summary', ok: r.ok, errors, ...r.stats });
    const s = r.stats;
    ctx.out.info(
      `checked ${s.snapshots} snapshots, ${s.trees} trees, ${s.indexFiles} index files, ${s.packs} packs` +
        (s.packsRead > 0 ? `; read ${s.packsRead} packs (${s.blobsRead} blobs)` : '') +
        (s.unreferencedPacks > 0 ? `; ${s.unreferencedPacks} unreferenced packs (not an error)` : ''),
    );
    if (!r.ok) {
      ctx.out.error(`${errors} error${errors === 1 ? '' : 's'} found: the repository is damaged`, {
        code: 'FORGE_INTEGRITY',
      });
      return ExitCode.FATAL;
    }
    ctx.out.info('no errors were found');
    return ExitCode.OK;
  } finally {
    await repo.close();
  }
}
