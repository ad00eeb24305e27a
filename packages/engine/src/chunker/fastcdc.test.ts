import { describe, expect, it } from 'vitest';
import { chunkBuffer, FastCdcChunker } from './fastcdc.ts';
import { gearTable } from './gear-table.ts';
import { chunkHashes, intRng, spansDigest, streamSpans, xorshiftBytes } from './test-util.ts';
import type { ChunkSpan } from './types.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
const ZERO_SEED = new Uint8Array(32);
const zeroGear = gearTable(ZERO_SEED);

/** A literal, slow transcription of the format spec at the top of fastcdc.ts (uint32 arithmetic). */
function referenceSpans(
  data: Uint8Array,
  min: number,
  avg: number,
  max: number,
  gear: Uint32Array,
): ChunkSpan[] {
  const bits = Math.log2(avg);
  const maskS = Number((((1n << BigInt(bits + 2)) - 1n) << BigInt(32 - bits - 2)) & 0xffffffffn);
  const maskL = Number((((1n << BigInt(bits - 2)) - 1n) << BigInt(32 - bits + 2)) & 0xffffffffn);
  const out: ChunkSpan[] = [];
  let pos = 0;
  while (pos < data.length) {
    const n = data.length - pos;
    if (n <= min) {
      out.push({ offset: pos, length: n });
      break;
    }
    let h = 0;
    let len = Math.min(n, max);
    for (let i = min; i < Math.min(n, max); i++) {
      h = (h * 2 + gear[data[pos + i]!]!) % 2 ** 32;
      const mask = i < avg ? maskS : maskL;
      if ((h & mask) >>> 0 === 0) {
        len = i + 1;
        break;
      }
    }
    out.push({ offset: pos, length: len });
    pos += len;
  }
  return out;
}

function spansOf(data: Uint8Array, config: ConstructorParameters<typeof FastCdcChunker>[0]): ChunkSpan[] {
  return [...chunkBuffer(data, config)];
}

describe('gearTable', () => {
  it('pins the zero-seed table (part of the repository format)', () => {
    const t = gearTable(ZERO_SEED);
    expect(t).toBeInstanceOf(Uint32Array);
    expect(t.length).toBe(256);
    expect([...t.slice(0, 4)]).toEqual([0x6db65fd5, 0x9fd356f6, 0x72914057, 0x1b5bcd6b]);
    expect(t[255]).toBe(0x557d6579);
  });

  it('depends on the seed and rejects seeds that are not 32 bytes', () => {
    const other = gearTable(new Uint8Array(32).fill(1));
    expect([...other]).not.toEqual([...zeroGear]);
    expect(() => gearTable(new Uint8Array(31))).toThrow(
      expect.objectContaining({ code: 'FORGE_REPO_INVALID' }),
    );
  });
});

describe('FastCdcChunker', () => {
  it('uses the documented masks', () => {
    const c = new FastCdcChunker({ gear: zeroGear });
    expect([c.min, c.avg, c.max]).toEqual([256 * KiB, MiB, 4 * MiB]);
    expect(c.maskS >>> 0).toBe(0xfffffc00);
    expect(c.maskL >>> 0).toBe(0xffffc000);
    expect(c.maxChunkSize).toBe(4 * MiB);
  });

  it('rejects impossible configurations', () => {
    expect(() => new FastCdcChunker({ gear: zeroGear, avg: 3 * MiB })).toThrow(RangeError);
    expect(() => new FastCdcChunker({ gear: zeroGear, min: MiB })).toThrow(RangeError);
    expect(() => new FastCdcChunker({ gear: zeroGear, max: MiB })).toThrow(RangeError);
    expect(() => new FastCdcChunker({ gear: zeroGear, min: 1.5 })).toThrow(RangeError);
    expect(() => new FastCdcChunker({ gear: new Uint32Array(10) })).toThrow(RangeError);
  });

  // Future chunker optimisations must not change this, or existing repositories will bloat.
  // (These values were also reproduced by an independent Python transcription of the spec.)
  it('golden: exact boundaries of 16 MiB of xorshift32 data with the zero seed and default params', () => {
    const data = xorshiftBytes(16 * MiB);
    const spans = spansOf(data, { gear: zeroGear });
    expect(spans.map((s) => s.offset)).toEqual([
      0, 699294, 1842188, 3117199, 4398516, 6064131, 7235935, 8482908, 8801129, 10225158, 11440581, 12278594,
      13635267, 14036316, 15202952, 16260948,
    ]);
    expect(spans.at(-1)).toEqual({ offset: 16260948, length: 516268 });
    expect(spansDigest(spans)).toBe('605af28d184d0f42b9dc139d16a53b9000aaa2eef4a4b16d1753dbbab0e34682');
  });

  // Future chunker optimisations must not change this, or existing repositories will bloat.
  it('golden: small params (4/16/64 KiB) over the first 4 MiB of the same data', () => {
    const data = xorshiftBytes(16 * MiB).subarray(0, 4 * MiB);
    const spans = spansOf(data, { gear: zeroGear, min: 4 * KiB, avg: 16 * KiB, max: 64 * KiB });
    expect(spans.length).toBe(232);
    expect(spans.slice(0, 8).map((s) => s.offset)).toEqual([
      0, 27038, 44033, 61121, 78127, 97326, 117116, 122473,
    ]);
    expect(spansDigest(spans)).toBe('d0a9476bc79d2151a8e226f5d8e1f5e6fa4a6441b52d895e06d51393c1d7da51');
  });

  it('matches a literal transcription of the spec', () => {
    const data = xorshiftBytes(3 * MiB, 12345);
    const gear = gearTable(new Uint8Array(32).fill(7));
    for (const [min, avg, max] of [
      [2 * KiB, 8 * KiB, 32 * KiB],
      [100, 256, 1000],
      [64 * KiB, 256 * KiB, 512 * KiB],
    ] as const) {
      expect(spansOf(data, { gear, min, avg, max })).toEqual(referenceSpans(data, min, avg, max, gear));
    }
  });

  it('gives different boundaries for different seeds on the same data', () => {
    const data = xorshiftBytes(16 * MiB);
    const a = spansOf(data, { gear: zeroGear }).map((s) => s.offset);
    const b = spansOf(data, { gear: gearTable(new Uint8Array(32).fill(0xab)) }).map((s) => s.offset);
    expect(b).not.toEqual(a);
    // Apart from offset 0, boundaries should essentially never coincide.
    const shared = b.filter((o) => o !== 0 && a.includes(o));
    expect(shared.length).toBeLessThanOrEqual(1);
  });

  it('keeps every chunk but the last within (min, max] and averages near avg over 64 MiB', () => {
    const data = xorshiftBytes(64 * MiB, 0xdecafbad);
    const spans = spansOf(data, { gear: zeroGear });
    let pos = 0;
    for (const [k, s] of spans.entries()) {
      expect(s.offset).toBe(pos);
      pos += s.length;
      if (k < spans.length - 1) {
        expect(s.length).toBeGreaterThan(256 * KiB);
        expect(s.length).toBeLessThanOrEqual(4 * MiB);
      }
    }
    expect(pos).toBe(data.length);
    const mean = data.length / spans.length;
    expect(mean).toBeGreaterThanOrEqual(0.5 * MiB);
    expect(mean).toBeLessThanOrEqual(2 * MiB);
  });

  it('streaming through cut() with random slices equals one-shot chunking', () => {
    const data = xorshiftBytes(24 * MiB, 42);
    const expected = spansOf(data, { gear: zeroGear });
    const rnd = intRng(7);
    const chunker = new FastCdcChunker({ gear: zeroGear });
    expect(streamSpans(data, chunker, () => rnd(1, 3 * MiB), 3 * MiB)).toEqual(expected);
    // Resume state off (re-scan every call) must give the same result.
    expect(streamSpans(data, chunker, () => rnd(1, 3 * MiB), 3 * MiB, { resetBetweenCalls: true })).toEqual(
      expected,
    );
    // Reads of exactly max, and of 64 KiB.
    expect(streamSpans(data, chunker, () => 4 * MiB, 4 * MiB)).toEqual(expected);
    expect(streamSpans(data, chunker, () => 64 * KiB, 64 * KiB)).toEqual(expected);
  });

  it('streaming with tiny slices exercises resume across the maskS/maskL switch', () => {
    const data = xorshiftBytes(2 * MiB, 99);
    const config = { gear: zeroGear, min: 2 * KiB, avg: 8 * KiB, max: 32 * KiB };
    const expected = spansOf(data, config);
    const rnd = intRng(3);
    for (const maxSlice of [1, 31, 33, 700, 5000]) {
      expect(streamSpans(data, new FastCdcChunker(config), () => rnd(1, maxSlice), maxSlice)).toEqual(
        expected,
      );
    }
  });

  describe('shift resistance on 64 MiB', () => {
    const original = xorshiftBytes(64 * MiB, 0x1234567);
    const config = { gear: zeroGear };
    const originalHashes = chunkHashes(original, spansOf(original, config));

    function survivingShare(modified: Uint8Array): number {
      const now = new Set(chunkHashes(modified, spansOf(modified, config)));
      return originalHashes.filter((h) => now.has(h)).length / originalHashes.length;
    }

    it('keeps >= 90% of chunks after inserting 100 bytes near the start', () => {
      const insert = xorshiftBytes(100, 5);
      const modified = new Uint8Array(original.length + 100);
      modified.set(original.subarray(0, 1000), 0);
      modified.set(insert, 1000);
      modified.set(original.subarray(1000), 1100);
      expect(survivingShare(modified)).toBeGreaterThanOrEqual(0.9);
    });

    it('keeps >= 90% of chunks after deleting 100 bytes near the start and in the middle', () => {
      const modified = new Uint8Array(original.length - 200);
      modified.set(original.subarray(0, 1000), 0);
      modified.set(original.subarray(1100, 32 * MiB), 1000);
      modified.set(original.subarray(32 * MiB + 100), 32 * MiB - 100);
      expect(survivingShare(modified)).toBeGreaterThanOrEqual(0.9);
    });

    it('keeps all but the last chunk when data is appended', () => {
      const modified = new Uint8Array(original.length + 3 * MiB);
      modified.set(original, 0);
      modified.set(xorshiftBytes(3 * MiB, 77), original.length);
      const now = new Set(chunkHashes(modified, spansOf(modified, config)));
      expect(originalHashes.slice(0, -1).every((h) => now.has(h))).toBe(true);
    });
  });

  describe('edge cases', () => {
    it('produces no chunks for empty input, and cut() returns -1', () => {
      expect(spansOf(new Uint8Array(0), { gear: zeroGear })).toEqual([]);
      const c = new FastCdcChunker({ gear: zeroGear });
      expect(c.cut(new Uint8Array(10), 5, 5, true)).toBe(-1);
      expect(c.cut(new Uint8Array(10), 5, 5, false)).toBe(-1);
    });

    it('produces one chunk for input up to min (and just above min with no match)', () => {
      expect(spansOf(xorshiftBytes(1000), { gear: zeroGear })).toEqual([{ offset: 0, length: 1000 }]);
      expect(spansOf(xorshiftBytes(256 * KiB), { gear: zeroGear })).toEqual([
        { offset: 0, length: 256 * KiB },
      ]);
      expect(spansOf(xorshiftBytes(256 * KiB + 1), { gear: zeroGear })).toEqual([
        { offset: 0, length: 256 * KiB + 1 },
      ]);
    });

    it('asks for more data until it has max bytes or eof', () => {
      const c = new FastCdcChunker({ gear: zeroGear, min: 2 * KiB, avg: 8 * KiB, max: 32 * KiB });
      const zeros = new Uint8Array(64 * KiB);
      expect(c.cut(zeros, 0, 2 * KiB, false)).toBe(-1);
      expect(c.cut(zeros, 0, 32 * KiB - 1, false)).toBe(-1);
      expect(c.cut(zeros, 0, 32 * KiB, false)).toBe(32 * KiB);
      expect(c.cut(zeros, 100, 200, true)).toBe(200);
    });

    it('chunks 20 MiB of zeros deterministically into chunks of at most max', () => {
      const zeros = new Uint8Array(20 * MiB);
      const a = spansOf(zeros, { gear: zeroGear });
      const b = spansOf(zeros, { gear: zeroGear });
      expect(b).toEqual(a);
      expect(a.every((s) => s.length <= 4 * MiB)).toBe(true);
      expect(a.reduce((sum, s) => sum + s.length, 0)).toBe(20 * MiB);
      // All chunks but the last are identical, so they deduplicate.
      expect(new Set(a.slice(0, -1).map((s) => s.length)).size).toBe(1);
    });

    it('works on a subarray view with a non-zero byteOffset and on a Buffer', () => {
      const data = xorshiftBytes(8 * MiB, 11);
      const expected = spansOf(data, { gear: zeroGear });
      const padded = new Uint8Array(data.length + 13);
      padded.set(data, 13);
      expect(spansOf(padded.subarray(13), { gear: zeroGear })).toEqual(expected);
      expect(spansOf(Buffer.from(data), { gear: zeroGear })).toEqual(expected);
    });
  });
});
