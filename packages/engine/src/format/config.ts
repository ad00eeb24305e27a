import { randomBytes } from 'node:crypto';
import { ForgeError } from '@backupforge/common';
import { validateChunkerParams } from '../chunker/index.ts';
import { type CompressionSettings, validateCompression } from '../compression.ts';
import { aadOf, open, seal } from '../crypto/aead.ts';

export const FORMAT_VERSION = 1;
const MAGIC = Buffer.from('BFRGCFG1', 'ascii');

export interface ChunkerConfig {
  readonly algorithm: 'fastcdc' | 'fixed';
  readonly min: number;
  readonly avg: number;
  readonly max: number;
  /** 64 hex chars; secret (the config body is encrypted). */
  readonly seed: string;
}

/** The repository config (§4). */
export interface RepositoryConfig {
  readonly id: string;
  readonly version: number;
  readonly createdAt: string;
  readonly idAlgorithm: 'hmac-sha256';
  readonly cipher: 'aes-256-gcm';
  readonly chunker: ChunkerConfig;
  readonly compression: CompressionSettings;
  readonly packSize: number;
}

export const DEFAULT_CHUNKER = {
  algorithm: 'fastcdc',
  min: 256 * 1024,
  avg: 1024 * 1024,
  max: 4 * 1024 * 1024,
} as const;
export const DEFAULT_PACK_SIZE = 16 * 1024 * 1024;

export function newConfig(opts: {
  chunker?: Partial<Omit<ChunkerConfig, 'seed'>>;
  compression?: CompressionSettings;
  packSize?: number;
}): RepositoryConfig {
  return {
    id: randomBytes(32).toString('hex'),
    version: FORMAT_VERSION,
    createdAt: new Date().toISOString(),
    idAlgorithm: 'hmac-sha256',
    cipher: 'aes-256-gcm',
    chunker: { ...DEFAULT_CHUNKER, ...opts.chunker, seed: randomBytes(32).toString('hex') },
    compression: opts.compression ?? { algorithm: 'zstd', level: 3 },
    packSize: opts.packSize ?? DEFAULT_PACK_SIZE,
  };
}

function versionBytes(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v, 0);
  return b;
}

export function encodeConfig(encKey: Uint8Array, config: RepositoryConfig): Buffer {
  const v = versionBytes(config.version);
  const body = seal(encKey, Buffer.from(JSON.stringify(config), 'utf8'), aadOf('bf1:config', v));
  return Buffer.concat([MAGIC, v, body]);
}

/**
 * Reads the plaintext header of a config: checks the magic and the version, so an unknown
 * version is refused before any password is asked for.
 */
export function checkConfigHeader(bytes: Uint8Array, location: string): number {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (b.length < 12 || !b.subarray(0, 8).equals(MAGIC)) {
    throw new ForgeError(
      'FORGE_REPO_INVALID',
      `${location} does not contain a BackupForge repository (bad config)`,
      {
        hint: "check the repository path; 'forge init' creates a new repository",
      },
    );
  }
  const version = b.readUInt32LE(8);
  if (version !== FORMAT_VERSION) {
    throw new ForgeError(
      'FORGE_REPO_VERSION',
      `repository format version ${version} is not supported (this forge reads version ${FORMAT_VERSION})`,
      {
        hint:
          version > FORMAT_VERSION
            ? 'upgrade forge to a newer release'
            : 'migrate the repository with a forge release that reads it',
      },
    );
  }
  return version;
}

export function decodeConfig(encKey: Uint8Array, bytes: Uint8Array, location: string): RepositoryConfig {
  const version = checkConfigHeader(bytes, location);
  const plain = open(
    encKey,
    bytes.subarray(12),
    aadOf('bf1:config', versionBytes(version)),
    'repository config',
  );
  let c: RepositoryConfig;
  try {
    c = JSON.parse(plain.toString('utf8')) as RepositoryConfig;
  } catch (e) {
    throw new ForgeError('FORGE_REPO_INVALID', 'repository config is not valid JSON', { cause: e });
  }
  const incomplete = (why: string, cause?: unknown) =>
    new ForgeError('FORGE_REPO_INVALID', `repository config is invalid: ${why}`, {
      cause,
      hint: 'restore the config file from a copy',
    });
  if (!c || typeof c !== 'object' || c.version !== version || typeof c.id !== 'string')
    throw incomplete('missing fields');
  if (
    !c.chunker ||
    typeof c.chunker !== 'object' ||
    typeof c.chunker.seed !== 'string' ||
    !/^[0-9a-f]{64}$/.test(c.chunker.seed)
  ) {
    throw incomplete('bad chunker seed');
  }
  if (!Number.isSafeInteger(c.packSize) || c.packSize < 1024 * 1024 || c.packSize > 1024 * 1024 * 1024)
    throw incomplete('bad pack size');
  try {
    validateChunkerParams(c.chunker);
    validateCompression(c.compression ?? { algorithm: 'none' });
  } catch (e) {
    throw incomplete(e instanceof Error ? e.message : 'bad parameters', e);
  }
  return c;
}
