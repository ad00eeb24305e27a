import { createRequire } from 'node:module';
import { constants, ZstdCompress, ZstdDecompress, zstdCompressSync, zstdDecompressSync } from 'node:zlib';
import { ForgeError } from '@backupforge/common';

/** Compression of one blob, as stored in pack headers (u8): 0 none, 1 zstd, 2 lz4. */
export type CompressionAlgorithm = 'none' | 'zstd' | 'lz4';

export const COMPRESSION_CODES: Readonly<Record<CompressionAlgorithm, number>> = { none: 0, zstd: 1, lz4: 2 };
const BY_CODE: readonly CompressionAlgorithm[] = ['none', 'zstd', 'lz4'];

export interface CompressionSettings {
  readonly algorithm: CompressionAlgorithm;
  /** zstd level 1..19 (default 3); ignored for lz4 and none. */
  readonly level?: number;
}

export function compressionFromCode(code: number): CompressionAlgorithm {
  const a = BY_CODE[code];
  if (!a) throw new ForgeError('FORGE_FORMAT', `unknown compression code ${code}`);
  return a;
}

/** Blobs below this size are never compressed. */
const MIN_COMPRESS = 64;

interface Lz4 {
  compressSync(data: Uint8Array): Buffer;
  uncompressSync(data: Uint8Array): Buffer;
}
let lz4: Lz4 | undefined;
function loadLz4(): Lz4 {
  lz4 ??= createRequire(import.meta.url)('lz4-napi') as Lz4;
  return lz4;
}

/**
 * The native side of a `ZstdCompress` stream: `zstdCompressSync` builds one (a JS stream, a native
 * handle and a fresh zstd context) for every call and closes it after, which cost ~30% of zstd's
 * time on small files. One per thread and level is kept and driven directly instead: the same
 * context compresses frame after frame (after a frame ends, zstd starts the next one with the
 * same parameters), and the bytes are the ones `zstdCompressSync` makes (checked once per
 * context, below, and by the tests). These are Node's internal fields: where they are missing,
 * differ, or a call does not finish its frame, this falls back to `zstdCompressSync` for good.
 */
interface ZstdHandle {
  writeSync(
    flush: number,
    input: Uint8Array,
    inOff: number,
    inLen: number,
    out: Uint8Array,
    outOff: number,
    outLen: number,
  ): void;
}
interface ZstdEngine {
  readonly _handle?: ZstdHandle;
  /** [output bytes left, input bytes left] after writeSync. */
  readonly _writeState?: Uint32Array;
  /** Set when the native side reported an error (the stream destroys itself). */
  readonly destroyed?: boolean;
}
interface Kept {
  readonly stream: ZstdEngine;
  readonly handle: ZstdHandle;
  readonly state: Uint32Array;
}
const zstdEngines = new Map<number, Kept | null>();
/** Levels whose compression context is kept (see zstdKept). */
const KEEP_MAX_LEVEL = 9;

function keep(z: ZstdEngine & { on(event: 'error', f: () => void): unknown }): Kept | null {
  // A native error destroys the stream, which then emits 'error' a tick later: seen (as
  // `destroyed`) by the caller, never an uncaught exception.
  z.on('error', () => {});
  return typeof z._handle?.writeSync === 'function' && z._writeState instanceof Uint32Array
    ? { stream: z, handle: z._handle, state: z._writeState }
    : null;
}

function zstdParams(level: number) {
  return { [constants.ZSTD_c_compressionLevel]: level, [constants.ZSTD_c_checksumFlag]: 0 };
}

/** zstd's worst case for `n` input bytes (ZSTD_COMPRESSBOUND), with room to spare. */
function zstdBound(n: number): number {
  return n + (n >>> 7) + 128;
}

/** Whether compress() at `level` runs on a kept zstd context in this thread (for tests). */
export function zstdContextKept(level = 3): boolean {
  return Boolean(zstdEngines.get(level));
}

/** This thread's reusable output buffer for `compress(…, { scratch: true })`. */
let scratchOut: Buffer | undefined;

/**
 * One frame on the kept context, or undefined where that cannot be done (then: zstdCompressSync).
 * With `scratch`, the frame is written into this thread's reusable buffer.
 */
function zstdKept(data: Uint8Array, level: number, scratch = false): Buffer | undefined {
  // High levels build contexts of tens of MiB and spend long enough per blob that a fresh
  // context costs nothing in comparison: those are not kept alive between backups.
  if (level > KEEP_MAX_LEVEL) return undefined;
  let e = zstdEngines.get(level);
  if (e === undefined) {
    e = null;
    try {
      e = keep(new ZstdCompress({ params: zstdParams(level) }) as unknown as Parameters<typeof keep>[0]);
    } catch {
      // no zstd here, or a Node whose streams look different
    }
    zstdEngines.set(level, e);
    if (e) {
      const probe = Buffer.from('BackupForge checks its kept zstd context once. '.repeat(40));
      const a = zstdKept(probe, level);
      if (!a?.equals(zstdCompressSync(probe, { params: zstdParams(level) }))) {
        e = null;
        zstdEngines.set(level, null);
      }
    }
  }
  if (!e) return undefined;
  const bound = zstdBound(data.length);
  let out: Buffer;
  if (scratch) {
    // Grown to a power of two: chunk sizes vary, and growing to each new largest one allocated
    // (and left to the collector) a buffer every few chunks.
    if (!scratchOut || scratchOut.length < bound)
      scratchOut = Buffer.allocUnsafeSlow(2 ** Math.ceil(Math.log2(bound)));
    out = scratchOut.subarray(0, bound);
  } else out = Buffer.allocUnsafeSlow(bound); // never a slice of the shared pool
  try {
    e.handle.writeSync(constants.ZSTD_e_end, data, 0, data.length, out, 0, out.length);
  } catch {
    zstdEngines.set(level, null);
    return undefined;
  }
  const outLeft = e.state[0]!;
  const inLeft = e.state[1]!;
  if (e.stream.destroyed || inLeft !== 0 || outLeft === 0) {
    // The frame did not end: the context is in an unknown state; never use it again.
    zstdEngines.set(level, null);
    return undefined;
  }
  return out.subarray(0, out.length - outLeft);
}

/**
 * Compresses `data`; returns the algorithm actually used. Falls back to `none` when
 * compression does not save at least 1/32 of the size (incompressible data is stored raw).
 * With `scratch`, zstd output may be written into a buffer this thread reuses: the result is
 * then only valid until the next such call (for callers that encrypt it at once).
 */
export function compress(
  data: Uint8Array,
  settings: CompressionSettings,
  opts: { scratch?: boolean } = {},
): { algorithm: CompressionAlgorithm; data: Uint8Array } {
  if (settings.algorithm === 'none' || data.length < MIN_COMPRESS) return { algorithm: 'none', data };
  let out: Uint8Array;
  if (settings.algorithm === 'zstd') {
    const level = settings.level ?? 3;
    out = zstdKept(data, level, opts.scratch) ?? zstdCompressSync(data, { params: zstdParams(level) });
  } else {
    out = loadLz4().compressSync(data);
  }
  if (out.length > data.length - (data.length >>> 5)) return { algorithm: 'none', data };
  return { algorithm: settings.algorithm, data: out };
}

/** The decompression side of the same idea: one kept context per thread (undefined: not made yet). */
let unzstd: Kept | null | undefined;

/** Whether the last zstd decompression in this thread ran on the kept context (for tests). */
export function unzstdContextKept(): boolean {
  return Boolean(unzstd);
}

/**
 * One frame decompressed on the kept context into exactly `rawLength` bytes; undefined where
 * that cannot be done or the frame is not exactly that long (then zstdDecompressSync decides, and
 * reports the error). A context left inside a frame, or destroyed by an error, is dropped and
 * the next call makes a new one.
 */
function unzstdKept(data: Uint8Array, rawLength: number, into?: Uint8Array): Uint8Array | undefined {
  if (unzstd === undefined) {
    try {
      unzstd = keep(new ZstdDecompress() as unknown as Parameters<typeof keep>[0]);
    } catch {
      unzstd = null;
    }
  }
  const e = unzstd;
  if (!e || rawLength === 0) return undefined;
  // Never a slice of the shared pool: it may be transferred.
  const out = into && into.length === rawLength ? into : Buffer.allocUnsafeSlow(rawLength);
  try {
    e.handle.writeSync(constants.ZSTD_e_end, data, 0, data.length, out, 0, rawLength);
  } catch {
    unzstd = undefined;
    return undefined;
  }
  if (e.stream.destroyed || e.state[1] !== 0 || e.state[0] !== 0) {
    // An error (a truncated frame is one: the handle is told each frame ends here), a frame
    // longer or shorter than expected: start afresh with a new context next time.
    unzstd = undefined;
    return undefined;
  }
  return out;
}

/**
 * Decompresses to exactly `rawLength` bytes; anything else is `FORGE_INTEGRITY`. zstd writes
 * straight into `into` (exactly `rawLength` long) when it can: the result is then `into`
 * itself, otherwise a new buffer (and `into` may hold partial output).
 */
export function decompress(
  data: Uint8Array,
  algorithm: CompressionAlgorithm,
  rawLength: number,
  into?: Uint8Array,
): Uint8Array {
  let out: Uint8Array;
  try {
    if (algorithm === 'none') out = data;
    else if (algorithm === 'zstd')
      out =
        unzstdKept(data, rawLength, into) ??
        zstdDecompressSync(data, { maxOutputLength: Math.max(rawLength, 1) });
    else {
      // lz4-napi trusts the 4-byte size prefix and allocates it up front: check it first.
      if (data.length < 4 || Buffer.from(data.buffer, data.byteOffset, 4).readUInt32LE(0) !== rawLength) {
        throw new ForgeError('FORGE_INTEGRITY', `lz4 blob does not declare its expected size ${rawLength}`);
      }
      out = loadLz4().uncompressSync(data);
    }
  } catch (e) {
    throw new ForgeError('FORGE_INTEGRITY', `blob does not decompress (${algorithm})`, { cause: e });
  }
  if (out.length !== rawLength) {
    throw new ForgeError(
      'FORGE_INTEGRITY',
      `blob decompressed to ${out.length} bytes, expected ${rawLength}`,
    );
  }
  return out;
}

/** Validates user-given settings. */
export function validateCompression(s: CompressionSettings): CompressionSettings {
  if (!(s.algorithm in COMPRESSION_CODES)) {
    throw new ForgeError('FORGE_USAGE', `unknown compression '${s.algorithm}'`, {
      hint: 'use zstd, lz4 or none',
    });
  }
  if (
    s.algorithm === 'zstd' &&
    s.level !== undefined &&
    !(Number.isInteger(s.level) && s.level >= 1 && s.level <= 19)
  ) {
    throw new ForgeError('FORGE_USAGE', `zstd level ${s.level} is out of range`, {
      hint: 'use a level from 1 to 19',
    });
  }
  return s;
}
