// Valid objects made with the real encoders, for the fuzz tests to mutate.
import { randomBytes } from 'node:crypto';
import { aadOf, seal } from '../crypto/aead.ts';
import { blobId } from '../crypto/master-key.ts';
import { type SealedBlob, sealBlob } from '../format/blob-codec.ts';
import { type FinishedPack, PackBuilder } from '../format/pack.ts';

export interface FuzzKeys {
  readonly encKey: Buffer;
  readonly macKey: Buffer;
}

export function fuzzKeys(): FuzzKeys {
  return { encKey: randomBytes(32), macKey: randomBytes(32) };
}

export const PACK_HEADER_AAD = aadOf('bf1:pack-header');

/** Seals a pack header plaintext the way PackBuilder does (to get past the AEAD on purpose). */
export function sealPackHeader(encKey: Uint8Array, plain: Uint8Array): Uint8Array {
  return seal(encKey, plain, PACK_HEADER_AAD);
}

/** A pack's blob area, sealed header and length field, assembled. */
export function assemblePack(blobArea: Uint8Array, sealedHeader: Uint8Array, lengthField?: number): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32LE((lengthField ?? sealedHeader.length) >>> 0, 0);
  return Buffer.concat([blobArea, sealedHeader, len]);
}

export interface BlobFixture {
  readonly plain: Uint8Array;
  readonly sealed: SealedBlob;
}

/**
 * The three blobs of the format's pack test: one zstd-compressed, one stored raw because it does
 * not compress, and an empty tree.
 */
export function sampleBlobs(keys: FuzzKeys): BlobFixture[] {
  const compressible = Buffer.from('forge '.repeat(400), 'utf8');
  const incompressible = randomBytes(700);
  const emptyTree = Buffer.from('{"nodes":[]}', 'utf8');
  const specs = [
    { type: 'data' as const, data: compressible, algorithm: 'zstd' as const },
    { type: 'data' as const, data: incompressible, algorithm: 'zstd' as const },
    { type: 'tree' as const, data: emptyTree, algorithm: 'zstd' as const },
    { type: 'data' as const, data: Buffer.from('lz4 '.repeat(300), 'utf8'), algorithm: 'lz4' as const },
  ];
  return specs.map((s) => ({
    plain: s.data,
    sealed: sealBlob(
      keys.encKey,
      { id: blobId(keys.macKey, s.data), type: s.type, data: s.data },
      {
        algorithm: s.algorithm,
      },
    ),
  }));
}

export function samplePack(keys: FuzzKeys, blobs: readonly BlobFixture[] = sampleBlobs(keys)): FinishedPack {
  const b = new PackBuilder();
  for (const blob of blobs) b.add(blob.sealed);
  const finished = b.finish(keys.encKey);
  return { ...finished, bytes: Buffer.from(finished.bytes) };
}

/** Header plaintext for `entries` with every field under the caller's control. */
export interface RawHeaderEntry {
  readonly type: number;
  readonly compression: number;
  readonly reserved: number;
  readonly length: number;
  readonly rawLength: number;
  readonly id: Uint8Array;
}

export function rawPackHeader(version: number, count: number, entries: readonly RawHeaderEntry[]): Buffer {
  const b = Buffer.alloc(5 + 44 * entries.length);
  b[0] = version;
  b.writeUInt32LE(count >>> 0, 1);
  let o = 5;
  for (const e of entries) {
    b[o] = e.type;
    b[o + 1] = e.compression;
    b.writeUInt16LE(e.reserved, o + 2);
    b.writeUInt32LE(e.length >>> 0, o + 4);
    b.writeUInt32LE(e.rawLength >>> 0, o + 8);
    b.set(e.id.subarray(0, 32), o + 12);
    o += 44;
  }
  return b;
}
