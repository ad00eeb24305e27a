import { createHash } from 'node:crypto';
import { toForgeError } from '@backupforge/common';
import { openBlob } from '../format/blob-codec.ts';
import type { RunBlob, RunFailure } from './open-run.ts';

/** What reading a whole pack found: whether it matches its name, and every blob that failed. */
export interface PackVerdict {
  readonly hashMatches: boolean;
  readonly failures: RunFailure[];
}

/**
 * Verifies a whole pack as `check --read-data` does: its SHA-256 against its name, then every
 * blob listed (`at` is the blob's offset in the pack): decrypt, decompress, re-hash. Unlike
 * `openRun` it goes on after a failure, so each damaged blob is reported.
 */
export function verifyPack(
  keys: { encKey: Uint8Array; macKey: Uint8Array },
  bytes: Uint8Array,
  name: string,
  blobs: readonly RunBlob[],
  /** Told the plaintext bytes of each blob opened (a worker paces its collections with it). */
  opened?: (bytes: number) => void,
): PackVerdict {
  const hashMatches = createHash('sha256').update(bytes).digest('hex') === name;
  const failures: RunFailure[] = [];
  for (let i = 0; i < blobs.length; i++) {
    const b = blobs[i]!;
    try {
      if (b.at + b.length > bytes.length) throw new Error('blob reaches past the end of the pack');
      openBlob(keys, b.id, b, bytes.subarray(b.at, b.at + b.length));
      opened?.(b.rawLength);
    } catch (e) {
      const fe = toForgeError(e);
      failures.push({ index: i, code: fe.code, message: fe.message });
    }
  }
  return { hashMatches, failures };
}
