import { Repository } from '@backupforge/engine';
import type { Context } from '../context.ts';
import { ExitCode } from '../exit-codes.ts';

export interface InitOptions {
  compression?: string;
}

export async function initCommand(ctx: Context, opts: InitOptions): Promise<number> {
  const backend = await ctx.backend();
  const password = await ctx.password({ confirm: true, prompt: 'enter password for the new repository: ' });
  const compression = parseCompression(opts.compression);
  const repo = await Repository.init(backend, { password, ...(compression ? { compression } : {}) });
  ctx.out.emit({ message_type: 'initialized', id: repo.config.id, repository: backend.location });
  ctx.out.info(`created repository ${repo.config.id.slice(0, 10)} at ${backend.location}`);
  ctx.out.info('Keep the password safe: without it, nobody (you included) can read these backups.');
  return ExitCode.OK;
}

export function parseCompression(
  s: string | undefined,
): { algorithm: 'zstd' | 'lz4' | 'none'; level?: number } | undefined {
  if (!s) return undefined;
  const [alg, level] = s.split(':');
  if (alg === 'zstd')
    return level ? { algorithm: 'zstd', level: Number(level) } : { algorithm: 'zstd', level: 3 };
  if (alg === 'lz4' || alg === 'none') return { algorithm: alg };
  return { algorithm: alg as 'zstd' };
}
