import { describe, expect, it } from 'vitest';
import { BufferPool, isPoolBuffer } from './buffer-pool.ts';

const KiB = 1024;

describe('BufferPool', () => {
  it('reuses a free buffer of the same class', () => {
    const pool = new BufferPool(16 * 1024 * KiB);
    const a = pool.get(300 * KiB);
    expect(a.byteLength).toBe(512 * KiB); // rounded up to 256 KiB classes
    expect(isPoolBuffer(a)).toBe(true);
    pool.put(a);
    expect(pool.get(400 * KiB)).toBe(a);
    expect(pool.get(400 * KiB)).not.toBe(a); // taken: a new one
  });

  it('serves from a larger free class up to twice the size before allocating', () => {
    const pool = new BufferPool(16 * 1024 * KiB);
    const big = pool.get(1024 * KiB);
    pool.put(big);
    expect(pool.get(200 * KiB)).not.toBe(big); // 256 KiB asked: 1 MiB is more than twice
    const got = pool.get(600 * KiB); // 768 KiB asked: the free 1 MiB one serves
    expect(got).toBe(big);
    pool.put(got);
    // The free bytes were accounted when it left: with room for one 1 MiB buffer, it goes back.
    const small = new BufferPool(1024 * KiB);
    const x = small.get(1024 * KiB);
    small.put(x);
    expect(small.get(768 * KiB)).toBe(x);
    small.put(x);
    expect(small.get(1024 * KiB)).toBe(x);
  });

  it('keeps at most maxFreeBytes and never pools small buffers', () => {
    const pool = new BufferPool(512 * KiB);
    const a = pool.get(512 * KiB);
    const b = pool.get(512 * KiB);
    pool.put(a);
    pool.put(b); // over the limit: dropped
    expect(pool.get(512 * KiB)).toBe(a);
    expect(pool.get(512 * KiB)).not.toBe(b);
    const tiny = pool.get(1000);
    expect(tiny.byteLength).toBe(1000);
    pool.put(tiny);
    expect(pool.get(1000)).not.toBe(tiny);
  });
});
