import { Repository, type RepositoryConfig } from '@backupforge/engine';
import type { Context } from '../context.ts';
import { ExitCode } from '../exit-codes.ts';
import { openFromRepository } from './copy.ts';

export interface InitOptions {
  compression?: string;
  copyChunkerParamsFrom?: string;
  fromPasswordFile?: string;
  fromPasswordCommand?: string;
}

export async function initCommand(ctx: Context, opts: InitOptions): Promise<number> {
  const backend = await ctx.backend();
  // The source's chunker (sizes and secret seed), so `forge copy` between the two deduplicates.
  let chunker: RepositoryConfig['chunker'] | undefined;
  if (opts.copyChunkerParamsFrom) {
    const from = await openFromRepository(ctx, opts.copyChunkerParamsFrom, opts);
    chunker = from.config.chunker;
    await from.close();
  }
  const password = await ctx.password({ confirm: true, prompt: 'enter password for the new repository: ' });
  const compression = parseCompression(opts.compression);
  const repo = await Repository.init(backend, {
    password,
    ...(compression ? { compression } : {}),
    ...(chunker ? { chunker } : {}),
  });
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
