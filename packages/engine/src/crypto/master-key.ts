import { createHmac, randomBytes } from 'node:crypto';
import { keyObject } from './key-object.ts';

/** The repository's secret keys: `encKey` for AEAD, `macKey` for blob ids. */
export interface MasterKey {
  readonly encKey: Buffer;
  readonly macKey: Buffer;
}

export const MASTER_KEY_LENGTH = 64;

export function generateMasterKey(): Buffer {
  return randomBytes(MASTER_KEY_LENGTH);
}

export function splitMasterKey(raw: Uint8Array): MasterKey {
  const b = Buffer.from(raw);
  return { encKey: b.subarray(0, 32), macKey: b.subarray(32, 64) };
}

/** Blob id: HMAC-SHA256 of the plaintext under the MAC key. */
export function blobId(macKey: Uint8Array, plaintext: Uint8Array): Buffer {
  return createHmac('sha256', keyObject(macKey)).update(plaintext).digest();
}
