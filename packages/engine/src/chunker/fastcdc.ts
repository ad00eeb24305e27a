/*
 * FastCDC content-defined chunking (BackupForge repository format, chunker "fastcdc" v1)
 * =====================================================================================
 *
 * Parameters: min, avg, max (bytes, integers) with 0 < min < avg < max and avg = 2^bits a power
 * of two; gear = the 256-entry uint32 table derived from the repository seed (gear-table.ts).
 * Repository defaults: min = 256 KiB, avg = 1 MiB (bits = 20), max = 4 MiB.
 *
 * Masks (32-bit, one-bits taken from the HIGH end, bit 31 downward, because with a shift-left
 * gear hash bit k depends on the last k+1 bytes, so the top bits see the longest window):
 *   maskS = the (bits + 2) most significant bits set   (bits = 20: 0xFFFFFC00, 22 one-bits)
 *   maskL = the (bits - 2) most significant bits set   (bits = 20: 0xFFFFC000, 18 one-bits)
 *
 * Cutting a stream: a stream is split into consecutive chunks; each chunk starts where the
 * previous one ended (the first at offset 0). Let B[0..n) be the bytes from the current chunk's
 * start to the end of the stream. The chunk's length L is:
 *
 *   if n <= min:  L = n                       (last chunk of the stream; n = 0 means no chunk)
 *   else:
 *     h = 0                                    (fresh 32-bit state for every chunk)
 *     for i = min, min+1, ..., min(n, max) - 1:
 *       h = (2*h + gear[B[i]]) mod 2^32        (i.e. ((h << 1) + gear[B[i]]) >>> 0)
 *       mask = maskS if i < avg else maskL     (i is the 0-based offset of the byte just hashed)
 *       if (h AND mask) == 0:  L = i + 1, stop (the byte that completes the match is included)
 *     if no match:  L = min(n, max)
 *
 * So the bytes B[0..min) never feed the hash; every chunk but the last has min < L <= max
 * (L = min + 1 is the shortest content-defined cut); lengths up to avg are tested with the
 * stricter maskS and lengths above avg with the looser maskL ("normalized chunking", level 2).
 * Once i >= min + 31 the state h depends exactly on the 32 bytes B[i-31..i].
 *
 * Implementation notes (not part of the format): the table is held as an Int32Array with the same
 * bit patterns and the hash is computed as `((h << 1) + g) | 0`, which equals the spec modulo 2^32.
 * `FastCdcChunker.cut` is resumable: when it returns -1 it remembers only the chunk-relative offset
 * scanned so far; h is rebuilt from the 32 bytes before that offset (exact, see above), so a caller
 * appending small reads does not cause re-scans.
 */
import type { Chunker, ChunkSpan } from './types.ts';

export const DEFAULT_MIN_SIZE = 256 * 1024;
export const DEFAULT_AVG_SIZE = 1024 * 1024;
export const DEFAULT_MAX_SIZE = 4 * 1024 * 1024;

export interface FastCdcConfig {
  /** Minimum chunk length (except the last chunk of a stream). Default 256 KiB. */
  min?: number;
  /** Target average; must be a power of two. Default 1 MiB. */
  avg?: number;
  /** Maximum chunk length. Default 4 MiB. */
  max?: number;
  /** 256-entry gear table from `gearTable(seed)`. */
  gear: Uint32Array;
}

/** The mask with the `ones` most significant bits of a 32-bit word set, as an int32. */
function highMask(ones: number): number {
  return ones <= 0 ? 0 : ones >= 32 ? -1 : (-1 << (32 - ones)) | 0;
}

/** The gear hash of buf[from, to) starting from h = 0 (int32 form). */
function gearHash(buf: Uint8Array, from: number, to: number, g: Int32Array): number {
  let h = 0;
  for (let i = from; i < to; i++) h = ((h << 1) + g[buf[i]!]!) | 0;
  return h;
}

/**
 * The hot loop: rolls h over buf[i, limit) and returns the index of the first byte after which
 * (h & mask) === 0, or -1. A free function of its own, unrolled eight times: its bytecode is then
 * larger than V8's inlining limits (460 bytes), so it is never inlined into `cut`. Inlined, the
 * loop ran in `cut`'s Maglev code, which never tiered up to TurboFan: 0.37 GiB/s instead of
 * 1.3 GiB/s after the first few hundred chunks (a fresh process was fast, a long backup slow).
 * `bench/hash-bench.ts` measures the first and the last 256 MiB of a 2 GiB run.
 */
function scan(buf: Uint8Array, g: Int32Array, h: number, i: number, limit: number, mask: number): number {
  for (const last = limit - 8; i <= last; i += 8) {
    h = ((h << 1) + g[buf[i]!]!) | 0;
    if ((h & mask) === 0) return i;
    h = ((h << 1) + g[buf[i + 1]!]!) | 0;
    if ((h & mask) === 0) return i + 1;
    h = ((h << 1) + g[buf[i + 2]!]!) | 0;
    if ((h & mask) === 0) return i + 2;
    h = ((h << 1) + g[buf[i + 3]!]!) | 0;
    if ((h & mask) === 0) return i + 3;
    h = ((h << 1) + g[buf[i + 4]!]!) | 0;
    if ((h & mask) === 0) return i + 4;
    h = ((h << 1) + g[buf[i + 5]!]!) | 0;
    if ((h & mask) === 0) return i + 5;
    h = ((h << 1) + g[buf[i + 6]!]!) | 0;
    if ((h & mask) === 0) return i + 6;
    h = ((h << 1) + g[buf[i + 7]!]!) | 0;
    if ((h & mask) === 0) return i + 7;
  }
  for (; i < limit; i++) {
    h = ((h << 1) + g[buf[i]!]!) | 0;
    if ((h & mask) === 0) return i;
  }
  return -1;
}

/**
 * The hash state after hashing chunk bytes [hashStart, i): only the last 32 bytes still matter
 * (older contributions have been shifted out of the 32-bit word), so it is recomputed from them.
 * This is what makes resuming and the maskS -> maskL switch stateless.
 */
function stateAt(buf: Uint8Array, hashStart: number, i: number, g: Int32Array): number {
  return gearHash(buf, i - 32 > hashStart ? i - 32 : hashStart, i, g);
}

/**
 * Streaming FastCDC chunker; see the format comment at the top of this file.
 *
 * Resume contract: after `cut` returned -1 (with `eof` false), the next call must present the same
 * chunk again — the same bytes from its start, possibly moved to another `start` or another buffer
 * after compaction — plus any newly appended bytes. Calling `reset()` drops the resume state (the
 * next call then re-scans from the chunk start, which gives the same result, just slower).
 */
export class FastCdcChunker implements Chunker {
  readonly min: number;
  readonly avg: number;
  readonly max: number;
  readonly maskS: number;
  readonly maskL: number;
  readonly maxChunkSize: number;
  readonly #gear: Int32Array;
  /** Chunk-relative offset of the next byte to hash when resuming; 0 = start afresh. */
  #next = 0;

  constructor(config: FastCdcConfig) {
    const min = config.min ?? DEFAULT_MIN_SIZE;
    const avg = config.avg ?? DEFAULT_AVG_SIZE;
    const max = config.max ?? DEFAULT_MAX_SIZE;
    for (const [name, v] of [
      ['min', min],
      ['avg', avg],
      ['max', max],
    ] as const) {
      if (!Number.isSafeInteger(v) || v <= 0)
        throw new RangeError(`FastCDC ${name} must be a positive integer, got ${v}`);
    }
    const bits = Math.log2(avg);
    if (!Number.isInteger(bits) || bits < 8 || bits > 30) {
      throw new RangeError(`FastCDC avg must be a power of two between 2^8 and 2^30, got ${avg}`);
    }
    if (!(min < avg && avg < max))
      throw new RangeError(`FastCDC needs min < avg < max, got ${min}/${avg}/${max}`);
    if (config.gear.length !== 256) throw new RangeError(`FastCDC gear table must have 256 entries`);
    this.min = min;
    this.avg = avg;
    this.max = max;
    this.maxChunkSize = max;
    this.maskS = highMask(bits + 2);
    this.maskL = highMask(bits - 2);
    this.#gear = new Int32Array(256);
    this.#gear.set(new Int32Array(config.gear.buffer, config.gear.byteOffset, 256));
  }

  reset(): void {
    this.#next = 0;
  }

  cut(buf: Uint8Array, start: number, end: number, eof: boolean): number {
    const n = end - start;
    if (n <= 0) {
      this.#next = 0;
      return -1;
    }
    const min = this.min;
    if (n <= min) {
      if (!eof) return -1;
      this.#next = 0;
      return end;
    }
    const g = this.#gear;
    const hashStart = start + min;
    const limitS = start + (n < this.avg ? n : this.avg);
    const limitL = start + (n < this.max ? n : this.max);
    let i = this.#next === 0 || this.#next > n ? hashStart : start + this.#next;
    if (i < limitS) {
      const hit = scan(buf, g, stateAt(buf, hashStart, i, g), i, limitS, this.maskS);
      if (hit >= 0) {
        this.#next = 0;
        return hit + 1;
      }
      i = limitS;
    }
    if (i < limitL) {
      const hit = scan(buf, g, stateAt(buf, hashStart, i, g), i, limitL, this.maskL);
      if (hit >= 0) {
        this.#next = 0;
        return hit + 1;
      }
      i = limitL;
    }
    if (n >= this.max || eof) {
      this.#next = 0;
      return limitL;
    }
    this.#next = i - start;
    return -1;
  }
}

/**
 * Splits a whole in-memory buffer; yields the chunks in order. Accepts a ready chunker or a
 * FastCDC config. Mainly for tests and small inputs.
 */
export function* chunkBuffer(data: Uint8Array, chunker: Chunker | FastCdcConfig): Generator<ChunkSpan> {
  const c = 'cut' in chunker ? chunker : new FastCdcChunker(chunker);
  c.reset();
  let pos = 0;
  for (;;) {
    const cut = c.cut(data, pos, data.length, true);
    if (cut < 0) return;
    yield { offset: pos, length: cut - pos };
    pos = cut;
  }
}
