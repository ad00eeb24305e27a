import { createHash } from 'node:crypto';
import { ForgeError, type StorageBackend } from '@backupforge/common';
import { COMPRESSION_CODES, compressionFromCode } from '../compression.ts';
import { aadOf, open, SEAL_OVERHEAD, seal } from '../crypto/aead.ts';
import { BLOB_TYPE_CODES, type BlobLocation, blobTypeFromCode, type SealedBlob } from './blob-codec.ts';

const HEADER_AAD = aadOf('bf1:pack-header');
const ENTRY_SIZE = 44;
export const MAX_BLOBS_PER_PACK = 65536;

export interface PackEntry extends Omit<BlobLocation, 'packId'> {
  readonly id: string;
}

export interface FinishedPack {
  readonly id: string;
  /** The whole pack file. May be a view into the builder's buffer. */
  readonly bytes: Uint8Array;
  readonly entries: readonly PackEntry[];
}

/** Bytes the sealed header and length field of a pack with `count` blobs take. */
export function packTrailerSize(count: number): number {
  return 5 + ENTRY_SIZE * count + SEAL_OVERHEAD + 4;
}

/**
 * Accumulates sealed blobs into one pack (§6 of the format spec). With a `buffer`, blobs are
 * copied into it and the pack is finished in place (no per-pack allocation: the backup reuses
 * a few pack buffers); the caller checks {@link fits} before each `add`. Without one, blobs are
 * kept as parts and concatenated at the end.
 */
export class PackBuilder {
  readonly #buffer: Uint8Array | undefined;
  readonly #parts: Uint8Array[] = [];
  readonly #entries: PackEntry[] = [];
  #size = 0;

  constructor(buffer?: Uint8Array) {
    this.#buffer = buffer;
  }

  get size(): number {
    return this.#size;
  }
  get count(): number {
    return this.#entries.length;
  }
  /** The buffer given to the constructor, to reuse once the finished pack is stored. */
  get buffer(): Uint8Array | undefined {
    return this.#buffer;
  }

  /** True when a blob of `sealedLength` bytes and the final header still fit the buffer. */
  fits(sealedLength: number): boolean {
    return (
      !this.#buffer || this.#size + sealedLength + packTrailerSize(this.count + 1) <= this.#buffer.length
    );
  }

  add(blob: SealedBlob): void {
    if (this.#buffer) {
      if (!this.fits(blob.sealed.length))
        throw new RangeError('PackBuilder: blob does not fit the pack buffer');
      this.#buffer.set(blob.sealed, this.#size);
    } else {
      this.#parts.push(blob.sealed);
    }
    this.#entries.push(packEntry(blob, this.#size));
    this.#size += blob.sealed.length;
  }

  finish(encKey: Uint8Array): FinishedPack {
    const pack = this.finishUnnamed(encKey);
    return { id: packId(pack.bytes), ...pack };
  }

  /**
   * Seals the header and completes the pack's bytes, without hashing them: the caller names the
   * pack ({@link packId}), perhaps on another thread.
   */
  finishUnnamed(encKey: Uint8Array): Omit<FinishedPack, 'id'> {
    const trailer = packTrailer(encKey, this.#entries);
    let bytes: Uint8Array;
    if (this.#buffer) {
      this.#buffer.set(trailer, this.#size);
      bytes = this.#buffer.subarray(0, this.#size + trailer.length);
    } else {
      bytes = Buffer.concat([...this.#parts, trailer]);
      this.#parts.length = 0; // the pack's bytes are in `bytes` now; let the parts go
    }
    return { bytes, entries: this.#entries.slice() };
  }
}

/** The header entry of `blob`, stored at `offset` in its pack. */
export function packEntry(blob: SealedBlob, offset: number): PackEntry {
  return {
    id: blob.id.toString('hex'),
    type: blob.type,
    offset,
    length: blob.sealed.length,
    rawLength: blob.rawLength,
    compression: blob.compression,
  };
}

/**
 * The end of a pack (§6): its header, listing `entries` in order, sealed, and the sealed
 * header's length (4 bytes, little-endian).
 */
export function packTrailer(encKey: Uint8Array, entries: readonly PackEntry[]): Buffer {
  const header = Buffer.alloc(5 + ENTRY_SIZE * entries.length);
  header[0] = 1;
  header.writeUInt32LE(entries.length, 1);
  let o = 5;
  for (const e of entries) {
    header[o] = BLOB_TYPE_CODES[e.type];
    header[o + 1] = COMPRESSION_CODES[e.compression];
    header.writeUInt16LE(0, o + 2);
    header.writeUInt32LE(e.length, o + 4);
    header.writeUInt32LE(e.rawLength, o + 8);
    header.write(e.id, o + 12, 'hex');
    o += ENTRY_SIZE;
  }
  const sealedHeader = seal(encKey, header, HEADER_AAD);
  const trailer = Buffer.alloc(sealedHeader.length + 4);
  trailer.set(sealedHeader, 0);
  trailer.writeUInt32LE(sealedHeader.length, sealedHeader.length);
  return trailer;
}

/** A pack's name: the SHA-256 of its bytes, in hex. */
export function packId(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** Parses a decrypted pack header. `blobArea` is pack size minus header and length field. */
export function parsePackHeader(plain: Uint8Array, blobArea: number): PackEntry[] {
  const b = Buffer.from(plain.buffer, plain.byteOffset, plain.byteLength);
  if (b.length < 5 || b[0] !== 1) throw new ForgeError('FORGE_FORMAT', 'pack header has an unknown version');
  const n = b.readUInt32LE(1);
  if (n > MAX_BLOBS_PER_PACK || b.length !== 5 + n * ENTRY_SIZE) {
    throw new ForgeError('FORGE_FORMAT', `pack header lists ${n} blobs but has ${b.length} bytes`);
  }
  const entries: PackEntry[] = [];
  let offset = 0;
  for (let i = 0, o = 5; i < n; i++, o += ENTRY_SIZE) {
    const length = b.readUInt32LE(o + 4);
    if (b.readUInt16LE(o + 2) !== 0 || length < SEAL_OVERHEAD)
      throw new ForgeError('FORGE_FORMAT', `pack header entry ${i} is malformed`);
    entries.push({
      type: blobTypeFromCode(b[o] ?? 255),
      compression: compressionFromCode(b[o + 1] ?? 255),
      length,
      rawLength: b.readUInt32LE(o + 8),
      id: b.toString('hex', o + 12, o + 44),
      offset,
    });
    offset += length;
  }
  if (offset !== blobArea) {
    throw new ForgeError(
      'FORGE_PACK_TRUNCATED',
      `pack blobs occupy ${offset} bytes but the pack has room for ${blobArea}`,
    );
  }
  return entries;
}

/** Reads and decrypts the header of a stored pack (two ranged reads). */
export async function readPackHeader(
  backend: StorageBackend,
  encKey: Uint8Array,
  packId: string,
  size?: number,
): Promise<PackEntry[]> {
  const handle = { type: 'pack' as const, name: packId };
  const total = size ?? (await backend.stat(handle)).size;
  if (total < 4 + SEAL_OVERHEAD + 5)
    throw new ForgeError('FORGE_PACK_TRUNCATED', `pack ${packId.slice(0, 12)} is too small (${total} bytes)`);
  const lenBuf = Buffer.from(await backend.load(handle, { offset: total - 4, length: 4 }));
  const hlen = lenBuf.readUInt32LE(0);
  if (hlen < SEAL_OVERHEAD + 5 || hlen + 4 > total) {
    throw new ForgeError(
      'FORGE_PACK_TRUNCATED',
      `pack ${packId.slice(0, 12)} has a header length of ${hlen} in ${total} bytes`,
    );
  }
  const sealed = await backend.load(handle, { offset: total - 4 - hlen, length: hlen });
  const plain = open(encKey, sealed, HEADER_AAD, `header of pack ${packId.slice(0, 12)}`);
  return parsePackHeader(plain, total - 4 - hlen);
}
