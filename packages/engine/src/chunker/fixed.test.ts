import { describe, expect, it } from 'vitest';
import { chunkBuffer } from './fastcdc.ts';
import { DEFAULT_FIXED_SIZE, FixedChunker } from './fixed.ts';
import { intRng, streamSpans, xorshiftBytes } from './test-util.ts';

describe('FixedChunker', () => {
  it('defaults to 1 MiB', () => {
    expect(DEFAULT_FIXED_SIZE).toBe(1024 * 1024);
    expect(new FixedChunker().size).toBe(1024 * 1024);
    expect(new FixedChunker().maxChunkSize).toBe(1024 * 1024);
  });

  it('cuts at exact multiples of the size, with a short last chunk', () => {
    const spans = [...chunkBuffer(new Uint8Array(10_000), new FixedChunker({ size: 4096 }))];
    expect(spans).toEqual([
      { offset: 0, length: 4096 },
      { offset: 4096, length: 4096 },
      { offset: 8192, length: 1808 },
    ]);
    expect([...chunkBuffer(new Uint8Array(8192), new FixedChunker({ size: 4096 }))]).toEqual([
      { offset: 0, length: 4096 },
      { offset: 4096, length: 4096 },
    ]);
    expect([...chunkBuffer(new Uint8Array(0), new FixedChunker({ size: 4096 }))]).toEqual([]);
  });

  it('cut() needs size bytes unless at eof', () => {
    const c = new FixedChunker({ size: 100 });
    const buf = new Uint8Array(300);
    expect(c.cut(buf, 50, 149, false)).toBe(-1);
    expect(c.cut(buf, 50, 150, false)).toBe(150);
    expect(c.cut(buf, 50, 300, false)).toBe(150);
    expect(c.cut(buf, 50, 120, true)).toBe(120);
    expect(c.cut(buf, 50, 50, true)).toBe(-1);
  });

  it('streaming equals one-shot', () => {
    const data = xorshiftBytes(5 * 1024 * 1024 + 17);
    const c = new FixedChunker();
    const rnd = intRng(1);
    expect(streamSpans(data, c, () => rnd(1, 300_000), 300_000)).toEqual([...chunkBuffer(data, c)]);
  });

  it('rejects a non-positive or fractional size', () => {
    expect(() => new FixedChunker({ size: 0 })).toThrow(RangeError);
    expect(() => new FixedChunker({ size: 1.5 })).toThrow(RangeError);
  });
});
