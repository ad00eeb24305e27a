// Helpers shared by the chunker tests (not exported from the package).
import { createHash } from 'node:crypto';
import type { Chunker, ChunkSpan } from './types.ts';

/** Deterministic xorshift32 byte stream: each step yields 4 bytes, little-endian, written explicitly. */
export function xorshiftBytes(length: number, seed = 0x9e3779b9): Uint8Array {
  const out = new Uint8Array(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff;
    if (i + 1 < length) out[i + 1] = (x >>> 8) & 0xff;
    if (i + 2 < length) out[i + 2] = (x >>> 16) & 0xff;
    if (i + 3 < length) out[i + 3] = x >>> 24;
  }
  return out;
}

/** A tiny deterministic PRNG returning integers in [lo, hi]. */
export function intRng(seed: number): (lo: number, hi: number) => number {
  let x = seed >>> 0 || 1;
  return (lo, hi) => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return lo + (x % (hi - lo + 1));
  };
}

/** SHA-256 (hex) over the chunk list encoded as "offset:length\n" lines. */
export function spansDigest(spans: readonly ChunkSpan[]): string {
  const h = createHash('sha256');
  for (const s of spans) h.update(`${s.offset}:${s.length}\n`);
  return h.digest('hex');
}

/** Content hashes (hex) of the given chunks of data. */
export function chunkHashes(data: Uint8Array, spans: readonly ChunkSpan[]): string[] {
  return spans.map((s) =>
    createHash('sha256')
      .update(data.subarray(s.offset, s.offset + s.length))
      .digest('hex'),
  );
}

/**
 * Feeds `data` through `chunker.cut` in slices of `nextSlice()` bytes, like a reader would, using a
 * carry buffer of maxChunkSize + maxSlice bytes that is compacted (copyWithin) between reads.
 */
export function streamSpans(
  data: Uint8Array,
  chunker: Chunker,
  nextSlice: () => number,
  maxSlice: number,
  options: { resetBetweenCalls?: boolean } = {},
): ChunkSpan[] {
  const buf = new Uint8Array(chunker.maxChunkSize + maxSlice);
  const out: ChunkSpan[] = [];
  let start = 0;
  let end = 0;
  let src = 0;
  let offset = 0;
  chunker.reset();
  for (;;) {
    const eof = src === data.length;
    for (;;) {
      if (options.resetBetweenCalls) chunker.reset();
      const c = chunker.cut(buf, start, end, eof);
      if (c < 0) break;
      out.push({ offset, length: c - start });
      offset += c - start;
      start = c;
    }
    if (eof) return out;
    if (start > 0) {
      buf.copyWithin(0, start, end);
      end -= start;
      start = 0;
    }
    const k = Math.min(nextSlice(), data.length - src, buf.length - end);
    if (k <= 0) throw new Error('carry buffer full: chunker asked for more than maxChunkSize bytes');
    buf.set(data.subarray(src, src + k), end);
    end += k;
    src += k;
  }
}
