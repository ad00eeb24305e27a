import { createHash } from 'node:crypto';
import { ForgeError } from '@backupforge/common';

/** Length in bytes of the per-repository chunker seed. */
export const GEAR_SEED_BYTES = 32;

/**
 * Derives the 256-entry gear table of the FastCDC rolling hash from a repository's secret seed.
 *
 * Part of the on-disk format (changing it moves every chunk boundary):
 *
 *   stream = SHA-256(seed || be32(0)) || SHA-256(seed || be32(1)) || ... || SHA-256(seed || be32(31))
 *            (32 digests of 32 bytes = 1024 bytes; be32 = 4-byte big-endian unsigned counter)
 *   gear[i] = big-endian uint32 at stream[4*i .. 4*i+4), for i = 0..255
 *
 * The seed is random per repository and stored only inside the encrypted config, so chunk
 * boundaries (and thus chunk sizes) do not fingerprint content across repositories.
 */
export function gearTable(seed: Uint8Array): Uint32Array {
  if (seed.length !== GEAR_SEED_BYTES) {
    throw new ForgeError(
      'FORGE_REPO_INVALID',
      `chunker seed must be ${GEAR_SEED_BYTES} bytes, got ${seed.length}`,
    );
  }
  const table = new Uint32Array(256);
  const counter = Buffer.alloc(4);
  for (let c = 0; c < 32; c++) {
    counter.writeUInt32BE(c, 0);
    const digest = createHash('sha256').update(seed).update(counter).digest();
    for (let j = 0; j < 8; j++) table[c * 8 + j] = digest.readUInt32BE(j * 4);
  }
  return table;
}
