import { timingSafeEqual } from 'node:crypto';
import { ForgeError } from '@backupforge/common';
import {
  COMPRESSION_CODES,
  type CompressionAlgorithm,
  type CompressionSettings,
  compress,
  decompress,
} from '../compression.ts';
import { aadOf, open, SEAL_OVERHEAD, seal } from '../crypto/aead.ts';
import { blobId } from '../crypto/master-key.ts';

/** Blob type as stored (u8): 0 data, 1 tree. */
export type BlobType = 'data' | 'tree';
export const BLOB_TYPE_CODES: Readonly<Record<BlobType, number>> = { data: 0, tree: 1 };

export function blobTypeFromCode(code: number): BlobType {
  if (code === 0) return 'data';
  if (code === 1) return 'tree';
  throw new ForgeError('FORGE_FORMAT', `unknown blob type code ${code}`);
}

/** Where a blob lives and how it is stored. */
export interface BlobLocation {
  readonly packId: string;
  readonly type: BlobType;
  readonly offset: number;
  /** Sealed length in the pack. */
  readonly length: number;
  readonly rawLength: number;
  readonly compression: CompressionAlgorithm;
}

/** The location of `entry` (an index-file or pack-header entry) in pack `packId`. */
export function locationIn(
  packId: string,
  entry: Pick<BlobLocation, 'type' | 'offset' | 'length' | 'rawLength' | 'compression'>,
): BlobLocation {
  return {
    packId,
    type: entry.type,
    offset: entry.offset,
    length: entry.length,
    rawLength: entry.rawLength,
    compression: entry.compression,
  };
}

export function blobAad(
  type: BlobType,
  compression: CompressionAlgorithm,
  id: Uint8Array,
  rawLength: number,
): Buffer {
  const b = Buffer.alloc(2 + 32 + 4);
  b[0] = BLOB_TYPE_CODES[type];
  b[1] = COMPRESSION_CODES[compression];
  b.set(id, 2);
  b.writeUInt32LE(rawLength, 34);
  return aadOf('bf1:blob', b);
}

export interface SealedBlob {
  readonly id: Buffer;
  readonly type: BlobType;
  readonly compression: CompressionAlgorithm;
  readonly rawLength: number;
  readonly sealed: Uint8Array;
}

/**
 * Compresses (when it pays) and encrypts one blob whose id is known. With `inPlace`, the
 * sealed bytes are written over `blob.data` when its ArrayBuffer has room for them (the
 * backup pipeline allocates chunk buffers with that room), so no buffer is allocated per blob.
 */
export function sealBlob(
  encKey: Uint8Array,
  blob: { id: Uint8Array; type: BlobType; data: Uint8Array },
  compression: CompressionSettings,
  inPlace = false,
): SealedBlob {
  const c = compress(blob.data, compression, { scratch: true }); // sealed at once
  const id = Buffer.from(blob.id);
  const aad = blobAad(blob.type, c.algorithm, id, blob.data.length);
  const need = c.data.length + SEAL_OVERHEAD;
  const d = blob.data;
  const out =
    inPlace && d.buffer.byteLength - d.byteOffset >= need
      ? new Uint8Array(d.buffer, d.byteOffset, need)
      : undefined;
  return {
    id,
    type: blob.type,
    compression: c.algorithm,
    rawLength: blob.data.length,
    sealed: seal(encKey, c.data, aad, undefined, out),
  };
}

/**
 * Decrypts, decompresses and verifies one blob. Wrong bytes are never returned: any mismatch
 * is `FORGE_INTEGRITY`. With `into` (`rawLength` bytes), a compressed blob may be decompressed
 * straight into it: the result is then `into` itself (check with `===`); after an error `into`
 * may hold anything.
 */
export function openBlob(
  keys: { encKey: Uint8Array; macKey: Uint8Array },
  id: Uint8Array,
  loc: Pick<BlobLocation, 'type' | 'compression' | 'rawLength'>,
  sealed: Uint8Array,
  into?: Uint8Array,
): Uint8Array {
  const hex = Buffer.from(id).toString('hex');
  if (id.length !== 32) throw new ForgeError('FORGE_FORMAT', `blob id ${hex.slice(0, 12)} is not 32 bytes`);
  if (!Number.isInteger(loc.rawLength) || loc.rawLength < 0 || loc.rawLength > 0xffffffff) {
    throw new ForgeError(
      'FORGE_FORMAT',
      `blob ${hex.slice(0, 12)} has an impossible length ${loc.rawLength}`,
    );
  }
  const aad = blobAad(loc.type, loc.compression, id, loc.rawLength);
  const stored = open(keys.encKey, sealed, aad, `${loc.type} blob ${hex.slice(0, 12)}`);
  const plain = decompress(stored, loc.compression, loc.rawLength, into);
  const actual = blobId(keys.macKey, plain);
  if (actual.length !== id.length || !timingSafeEqual(actual, id)) {
    throw new ForgeError('FORGE_INTEGRITY', `${loc.type} blob ${hex.slice(0, 12)} does not match its id`);
  }
  return plain;
}
