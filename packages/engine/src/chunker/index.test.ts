import { ForgeError } from '@backupforge/common';
import { describe, expect, it } from 'vitest';
import {
  type ChunkerParams,
  chunkBuffer,
  createChunker,
  DEFAULT_CHUNKER_PARAMS,
  FastCdcChunker,
  FixedChunker,
  validateChunkerParams,
} from './index.ts';
import { xorshiftBytes } from './test-util.ts';

const KiB = 1024;
const MiB = 1024 * KiB;

function expectInvalid(params: Partial<ChunkerParams> & Record<string, unknown>): void {
  const p = { ...DEFAULT_CHUNKER_PARAMS, ...params } as ChunkerParams;
  let caught: unknown;
  try {
    validateChunkerParams(p);
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(ForgeError);
  expect((caught as ForgeError).code).toBe('FORGE_REPO_INVALID');
}

describe('validateChunkerParams', () => {
  it('accepts the defaults and the allowed extremes', () => {
    expect(DEFAULT_CHUNKER_PARAMS).toEqual({ algorithm: 'fastcdc', min: 256 * KiB, avg: MiB, max: 4 * MiB });
    expect(() => validateChunkerParams(DEFAULT_CHUNKER_PARAMS)).not.toThrow();
    expect(() =>
      validateChunkerParams({ algorithm: 'fixed', min: 64 * KiB, avg: 32 * MiB, max: 64 * MiB }),
    ).not.toThrow();
    expect(() => validateChunkerParams({ ...DEFAULT_CHUNKER_PARAMS, seed: 'ab'.repeat(32) })).not.toThrow();
  });

  it('rejects nonsense', () => {
    expectInvalid({ min: 32 * KiB });
    expectInvalid({ min: 64 * KiB - 1 });
    expectInvalid({ avg: 3 * MiB });
    expectInvalid({ avg: 1000 * KiB });
    expectInvalid({ min: MiB });
    expectInvalid({ min: 2 * MiB });
    expectInvalid({ max: MiB });
    expectInvalid({ max: MiB - 1 });
    expectInvalid({ max: 64 * MiB + 1, avg: 32 * MiB });
    expectInvalid({ max: 128 * MiB });
    expectInvalid({ min: 300_000.5 });
    expectInvalid({ max: Number.NaN });
    expectInvalid({ algorithm: 'rabin' as never });
    expectInvalid({ seed: 'xyz' });
    expectInvalid({ seed: 'AB'.repeat(32) });
    expectInvalid({ seed: 'ab'.repeat(31) });
  });
});

describe('createChunker', () => {
  const seed = new Uint8Array(32).fill(9);
  const data = xorshiftBytes(8 * MiB, 5);

  it('builds a FastCDC chunker from a seed argument or the hex seed in the params', () => {
    const fromBytes = createChunker(DEFAULT_CHUNKER_PARAMS, seed);
    const fromHex = createChunker({ ...DEFAULT_CHUNKER_PARAMS, seed: Buffer.from(seed).toString('hex') });
    expect(fromBytes).toBeInstanceOf(FastCdcChunker);
    expect([...chunkBuffer(data, fromHex)]).toEqual([...chunkBuffer(data, fromBytes)]);
  });

  it('needs a seed for fastcdc', () => {
    expect(() => createChunker(DEFAULT_CHUNKER_PARAMS)).toThrow(
      expect.objectContaining({ code: 'FORGE_REPO_INVALID' }),
    );
  });

  it('builds a fixed chunker of avg bytes', () => {
    const c = createChunker({ ...DEFAULT_CHUNKER_PARAMS, algorithm: 'fixed' });
    expect(c).toBeInstanceOf(FixedChunker);
    expect([...chunkBuffer(data, c)].map((s) => s.length)).toEqual(Array(8).fill(MiB));
  });

  it('validates before building', () => {
    expect(() => createChunker({ ...DEFAULT_CHUNKER_PARAMS, avg: 3 * MiB }, seed)).toThrow(ForgeError);
  });
});
