declare const brand: unique symbol;
type Brand<T, B extends string> = T & { readonly [brand]: B };

/** Keyed hash of a chunk's plaintext, 64 lowercase hex chars. */
export type ChunkId = Brand<string, 'ChunkId'>;
/** SHA-256 of a snapshot object's stored bytes, 64 lowercase hex chars. */
export type SnapshotId = Brand<string, 'SnapshotId'>;
/** SHA-256 of a pack file, 64 lowercase hex chars. */
export type PackId = Brand<string, 'PackId'>;

const HEX64 = /^[0-9a-f]{64}$/;

/** True for a full 64-char lowercase hex id. */
export function isHexId(s: string): boolean {
  return HEX64.test(s);
}

/** The 8-char prefix shown to people. */
export function shortId(id: string): string {
  return id.slice(0, 8);
}
