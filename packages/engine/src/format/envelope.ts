import { createHash } from 'node:crypto';
import { zstdCompressSync, zstdDecompressSync } from 'node:zlib';
import { ForgeError } from '@backupforge/common';
import { aadOf, open, seal } from '../crypto/aead.ts';

/** Upper bound for one decoded JSON object (index, snapshot): refuses decompression bombs. */
const MAX_OBJECT_BYTES = 512 * 1024 * 1024;

export type EnvelopeLabel = 'index' | 'snapshot';

export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

function aad(label: EnvelopeLabel, version: number, compression: number): Buffer {
  return aadOf(`bf1:${label}`, Buffer.from([version, compression]));
}

/** Encodes a JSON value as an encrypted object (§7, §8): `u8 version || u8 compression || sealed`. */
export function encodeObject(encKey: Uint8Array, label: EnvelopeLabel, value: unknown): Buffer {
  const json = Buffer.from(JSON.stringify(value), 'utf8');
  const body = zstdCompressSync(json);
  return Buffer.concat([Buffer.from([1, 1]), seal(encKey, body, aad(label, 1, 1))]);
}

/** Decodes an encrypted object, checking its name (SHA-256 of its bytes) when given. */
export function decodeObject(
  encKey: Uint8Array,
  label: EnvelopeLabel,
  bytes: Uint8Array,
  name?: string,
): unknown {
  const what = `${label} ${name ? name.slice(0, 12) : ''}`.trim();
  if (name !== undefined && sha256Hex(bytes) !== name) {
    throw new ForgeError('FORGE_INTEGRITY', `${what} does not match its name (damaged)`);
  }
  if (bytes.length < 2) throw new ForgeError('FORGE_FORMAT', `${what} is truncated`);
  const version = bytes[0] ?? 0;
  const compression = bytes[1] ?? 0;
  if (version !== 1) throw new ForgeError('FORGE_FORMAT', `${what} has unknown version ${version}`);
  if (compression !== 0 && compression !== 1)
    throw new ForgeError('FORGE_FORMAT', `${what} has unknown compression ${compression}`);
  const plain = open(encKey, bytes.subarray(2), aad(label, version, compression), what);
  let json: Buffer;
  try {
    json = compression === 1 ? zstdDecompressSync(plain, { maxOutputLength: MAX_OBJECT_BYTES }) : plain;
  } catch (e) {
    throw new ForgeError('FORGE_FORMAT', `${what} does not decompress`, { cause: e });
  }
  try {
    return JSON.parse(json.toString('utf8'));
  } catch (e) {
    throw new ForgeError('FORGE_FORMAT', `${what} is not valid JSON`, { cause: e });
  }
}
