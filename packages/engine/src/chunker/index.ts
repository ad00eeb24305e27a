import { ForgeError } from '@backupforge/common';
import { DEFAULT_AVG_SIZE, DEFAULT_MAX_SIZE, DEFAULT_MIN_SIZE, FastCdcChunker } from './fastcdc.ts';
import { FixedChunker } from './fixed.ts';
import { GEAR_SEED_BYTES, gearTable } from './gear-table.ts';
import type { Chunker } from './types.ts';

export type { FastCdcConfig } from './fastcdc.ts';
export {
  chunkBuffer,
  DEFAULT_AVG_SIZE,
  DEFAULT_MAX_SIZE,
  DEFAULT_MIN_SIZE,
  FastCdcChunker,
} from './fastcdc.ts';
export type { FixedChunkerConfig } from './fixed.ts';
export { DEFAULT_FIXED_SIZE, FixedChunker } from './fixed.ts';
export { GEAR_SEED_BYTES, gearTable } from './gear-table.ts';
export type { Chunker, ChunkSpan } from './types.ts';

export type ChunkerAlgorithm = 'fastcdc' | 'fixed';

/**
 * Chunker settings as stored in the repository config. For 'fixed', chunks are `avg` bytes
 * (min and max are still validated, and max bounds the chunk size).
 */
export interface ChunkerParams {
  algorithm: ChunkerAlgorithm;
  min: number;
  avg: number;
  max: number;
  /** The 32-byte gear seed as 64 lowercase hex characters (lives in the encrypted config). */
  seed?: string;
}

export const MIN_CHUNK_MIN_SIZE = 64 * 1024;
export const MAX_CHUNK_MAX_SIZE = 64 * 1024 * 1024;

export const DEFAULT_CHUNKER_PARAMS: Readonly<ChunkerParams> = Object.freeze({
  algorithm: 'fastcdc',
  min: DEFAULT_MIN_SIZE,
  avg: DEFAULT_AVG_SIZE,
  max: DEFAULT_MAX_SIZE,
});

function invalid(message: string, details: Record<string, unknown>): ForgeError {
  return new ForgeError('FORGE_REPO_INVALID', `invalid chunker parameters: ${message}`, { details });
}

/**
 * Throws a ForgeError FORGE_REPO_INVALID unless the parameters are sane: known algorithm, integer
 * sizes, min >= 64 KiB, avg a power of two, min < avg < max, max <= 64 MiB, and a seed (if given)
 * of 64 hex characters.
 */
export function validateChunkerParams(params: ChunkerParams): void {
  const { algorithm, min, avg, max, seed } = params;
  const details = { algorithm, min, avg, max };
  if (algorithm !== 'fastcdc' && algorithm !== 'fixed')
    throw invalid(`unknown algorithm ${String(algorithm)}`, details);
  for (const [name, v] of [
    ['min', min],
    ['avg', avg],
    ['max', max],
  ] as const) {
    if (typeof v !== 'number' || !Number.isSafeInteger(v))
      throw invalid(`${name} must be an integer`, details);
  }
  if (min < MIN_CHUNK_MIN_SIZE) throw invalid(`min ${min} is below ${MIN_CHUNK_MIN_SIZE}`, details);
  if (!Number.isInteger(Math.log2(avg))) throw invalid(`avg ${avg} is not a power of two`, details);
  if (min >= avg) throw invalid(`min ${min} must be below avg ${avg}`, details);
  if (max <= avg) throw invalid(`max ${max} must be above avg ${avg}`, details);
  if (max > MAX_CHUNK_MAX_SIZE) throw invalid(`max ${max} is above ${MAX_CHUNK_MAX_SIZE}`, details);
  if (seed !== undefined && (typeof seed !== 'string' || !/^[0-9a-f]{64}$/.test(seed))) {
    throw invalid(`seed must be ${GEAR_SEED_BYTES * 2} lowercase hex characters`, details);
  }
}

/**
 * Builds the chunker a repository's config describes. `seed` (32 bytes) takes precedence over
 * `params.seed`; 'fastcdc' needs one of them, 'fixed' ignores both.
 */
export function createChunker(params: ChunkerParams, seed?: Uint8Array): Chunker {
  validateChunkerParams(params);
  if (params.algorithm === 'fixed') return new FixedChunker({ size: params.avg });
  const seedBytes = seed ?? (params.seed === undefined ? undefined : Buffer.from(params.seed, 'hex'));
  if (seedBytes === undefined) {
    throw new ForgeError('FORGE_REPO_INVALID', 'the fastcdc chunker needs a seed', {
      details: { algorithm: 'fastcdc' },
    });
  }
  return new FastCdcChunker({
    min: params.min,
    avg: params.avg,
    max: params.max,
    gear: gearTable(seedBytes),
  });
}
