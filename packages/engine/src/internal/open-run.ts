import { toForgeError } from '@backupforge/common';
import { type BlobLocation, openBlob } from '../format/blob-codec.ts';

/** One blob of a run: where its sealed bytes sit in the run buffer, and what it must open to. */
export interface RunBlob extends Pick<BlobLocation, 'type' | 'compression' | 'rawLength'> {
  /** Offset of the sealed bytes in the run buffer. */
  readonly at: number;
  /** Sealed length. */
  readonly length: number;
  readonly id: Uint8Array;
}

/** Why a run could not be opened: the first blob that failed and its error. */
export interface RunFailure {
  readonly index: number;
  readonly code: string;
  readonly message: string;
}

/**
 * Opens (decrypts, decompresses, verifies) each blob of a run read from one pack and writes the
 * plaintexts back to back into `out`. Returns the first failure instead of throwing, so a worker
 * can report it and the caller can retry that blob from another copy.
 */
export function openRun(
  keys: { encKey: Uint8Array; macKey: Uint8Array },
  sealed: Uint8Array,
  blobs: readonly RunBlob[],
  out: Uint8Array,
): RunFailure | undefined {
  let pos = 0;
  for (let i = 0; i < blobs.length; i++) {
    const b = blobs[i]!;
    try {
      const into = out.subarray(pos, pos + b.rawLength);
      const plain = openBlob(keys, b.id, b, sealed.subarray(b.at, b.at + b.length), into);
      if (plain !== into) out.set(plain, pos);
      pos += plain.length;
    } catch (e) {
      const fe = toForgeError(e);
      return { index: i, code: fe.code, message: fe.message };
    }
  }
  return undefined;
}
