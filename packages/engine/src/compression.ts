import { createRequire } from 'node:module';
import { constants, zstdCompressSync, zstdDecompressSync } from 'node:zlib';
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
 * Compresses `data`; returns the algorithm actually used. Falls back to `none` when
 * compression does not save at least 1/32 of the size (incompressible data is stored raw).
 */
export function compress(
  data: Uint8Array,
  settings: CompressionSettings,
): { algorithm: CompressionAlgorithm; data: Uint8Array } {
  if (settings.algorithm === 'none' || data.length < MIN_COMPRESS) return { algorithm: 'none', data };
  let out: Uint8Array;
  if (settings.algorithm === 'zstd') {
    out = zstdCompressSync(data, {
      params: {
        [constants.ZSTD_c_compressionLevel]: settings.level ?? 3,
        [constants.ZSTD_c_checksumFlag]: 0,
      },
    });
  } else {
    out = loadLz4().compressSync(data);
  }
  if (out.length > data.length - (data.length >>> 5)) return { algorithm: 'none', data };
  return { algorithm: settings.algorithm, data: out };
}

/** Decompresses to exactly `rawLength` bytes; anything else is `FORGE_INTEGRITY`. */
export function decompress(data: Uint8Array, algorithm: CompressionAlgorithm, rawLength: number): Uint8Array {
  let out: Uint8Array;
  try {
    if (algorithm === 'none') out = data;
    else if (algorithm === 'zstd')
      out = zstdDecompressSync(data, { maxOutputLength: Math.max(rawLength, 1) });
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
