import * as nodeCrypto from 'node:crypto';
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { hostname, userInfo } from 'node:os';
import { Worker } from 'node:worker_threads';
import { ForgeError, InternalError } from '@backupforge/common';
import { argon2id } from 'hash-wasm';
import { describeValue } from '../internal/describe-value.ts';
import { aadOf, open, seal } from './aead.ts';
import { MASTER_KEY_LENGTH } from './master-key.ts';

export interface KdfParams {
  readonly algorithm: 'argon2id';
  readonly memoryKiB: number;
  readonly iterations: number;
  readonly parallelism: number;
  /** base64 */
  readonly salt: string;
}

export interface KeyFile {
  readonly version: 1;
  readonly created: string;
  readonly hostname: string;
  readonly username: string;
  readonly kdf: KdfParams;
  /** base64 of sealed master key */
  readonly masterKey: string;
}

/**
 * Default Argon2id cost: RFC 9106's second recommended option (64 MiB, 3 passes, 4 lanes). The
 * lanes run on libuv's threads: 110–115 ms on a 2-core server against 153–156 ms with one lane,
 * for the same memory and work per guess.
 */
export const DEFAULT_KDF = { memoryKiB: 65536, iterations: 3, parallelism: 4 } as const;

/** Accepted ranges; anything outside is rejected before running the KDF (DoS guard). */
export const KDF_LIMITS = {
  memoryKiB: [8192, 2097152],
  iterations: [1, 32],
  parallelism: [1, 16],
  saltBytes: [16, 64],
} as const;

const KEY_AAD = aadOf('bf1:key');

function invalid(msg: string): ForgeError {
  return new ForgeError('FORGE_KEY_INVALID', `key file ${msg}`, {
    hint: 'the key file is damaged or was tampered with; use another key or restore keys/ from a copy',
  });
}

function inRange(v: unknown, [lo, hi]: readonly [number, number]): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= lo && v <= hi;
}

/** Parses and validates a key file's bytes. Throws FORGE_KEY_INVALID. */
export function parseKeyFile(bytes: Uint8Array): KeyFile {
  let kf: unknown;
  try {
    kf = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch {
    throw invalid('is not valid JSON');
  }
  if (!kf || typeof kf !== 'object') throw invalid('is not an object');
  const k = kf as Record<string, unknown>;
  if (k.version !== 1) throw invalid(`has unsupported version ${describeValue(k.version)}`);
  const kdf = k.kdf as Record<string, unknown> | undefined;
  if (!kdf || kdf.algorithm !== 'argon2id') throw invalid('uses an unknown KDF');
  if (!inRange(kdf.memoryKiB, KDF_LIMITS.memoryKiB))
    throw invalid(`has out-of-range KDF memory ${describeValue(kdf.memoryKiB)} KiB`);
  if (!inRange(kdf.iterations, KDF_LIMITS.iterations))
    throw invalid(`has out-of-range KDF iterations ${describeValue(kdf.iterations)}`);
  if (!inRange(kdf.parallelism, KDF_LIMITS.parallelism))
    throw invalid(`has out-of-range KDF parallelism ${describeValue(kdf.parallelism)}`);
  if (typeof kdf.salt !== 'string') throw invalid('has no salt');
  const salt = Buffer.from(kdf.salt, 'base64');
  if (!inRange(salt.length, KDF_LIMITS.saltBytes)) throw invalid(`has a ${salt.length}-byte salt`);
  if (typeof k.masterKey !== 'string') throw invalid('has no master key');
  if (Buffer.from(k.masterKey, 'base64').length !== MASTER_KEY_LENGTH + 28)
    throw invalid('has a master key of the wrong length');
  return kf as KeyFile;
}

function argon2Options(password: string, kdf: KdfParams) {
  return {
    password,
    salt: Buffer.from(kdf.salt, 'base64'),
    parallelism: kdf.parallelism,
    iterations: kdf.iterations,
    memorySize: kdf.memoryKiB,
    hashLength: 32,
    outputType: 'binary' as const,
  };
}

// Runs Argon2id in a short-lived worker: the WebAssembly memory it needs (64 MiB by default)
// can never shrink, so deriving on the main thread would keep it resident for the whole run.
const KDF_WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
require(workerData.lib).argon2id(workerData.options).then(
  (key) => parentPort.postMessage({ key }),
  (e) => parentPort.postMessage({ error: String(e && e.message || e) }),
);`;

/** Node's own Argon2 (OpenSSL; Node ≥ 24.7), where there is one. */
type NativeArgon2 = (
  algorithm: 'argon2id',
  params: {
    message: Buffer;
    nonce: Buffer;
    parallelism: number;
    tagLength: number;
    memory: number;
    passes: number;
  },
  callback: (err: Error | null, key: Buffer) => void,
) => void;
const nativeArgon2 = (nodeCrypto as unknown as { argon2?: NativeArgon2 }).argon2;

/**
 * Argon2id through Node's OpenSSL (in the libuv thread pool): measured 165–196 ms for the
 * default parameters against 270–290 ms in WebAssembly plus a worker's start-up, and its memory
 * goes back to the system when it ends. The key is the same either way (a test compares them).
 */
export function deriveKeyNative(password: string, kdf: KdfParams): Promise<Uint8Array> | undefined {
  if (typeof nativeArgon2 !== 'function') return undefined;
  const argon2 = nativeArgon2;
  const params = {
    message: Buffer.from(password, 'utf8'),
    nonce: Buffer.from(kdf.salt, 'base64'),
    parallelism: kdf.parallelism,
    tagLength: 32,
    memory: kdf.memoryKiB,
    passes: kdf.iterations,
  };
  return new Promise<Uint8Array>((resolve, reject) => {
    const fail = (e: Error) => reject(new InternalError(`key derivation failed: ${e.message}`, e));
    try {
      argon2('argon2id', params, (err, key) => {
        if (err) fail(err);
        else resolve(new Uint8Array(key.buffer, key.byteOffset, key.byteLength));
      });
    } catch (e) {
      fail(e as Error);
    }
  });
}

async function deriveKey(password: string, kdf: KdfParams): Promise<Uint8Array> {
  if (password === '') throw new ForgeError('FORGE_PASSWORD_REQUIRED', 'an empty password is not allowed');
  return deriveKeyNative(password, kdf) ?? deriveKeyWasm(password, kdf);
}

/** Argon2id in WebAssembly (hash-wasm), for Node versions without `crypto.argon2`. */
export async function deriveKeyWasm(password: string, kdf: KdfParams): Promise<Uint8Array> {
  const options = argon2Options(password, kdf);
  let lib: string;
  try {
    lib = createRequire(import.meta.url).resolve('hash-wasm');
  } catch {
    return argon2id(options);
  }
  return new Promise<Uint8Array>((resolve, reject) => {
    const w = new Worker(KDF_WORKER, { eval: true, workerData: { lib, options } });
    let settled = false;
    w.once('message', (m: { key?: Uint8Array; error?: string }) => {
      settled = true;
      void w.terminate();
      if (m.key) resolve(m.key);
      else reject(new InternalError(`key derivation failed: ${m.error}`));
    });
    w.once('error', (e) => {
      if (!settled) reject(new InternalError(`key derivation failed: ${e.message}`, e));
    });
    w.once('exit', (code) => {
      if (!settled) reject(new InternalError(`key derivation worker exited with code ${code}`));
    });
  });
}

export interface CreateKeyFileOptions {
  readonly kdf?: Partial<Pick<KdfParams, 'memoryKiB' | 'iterations' | 'parallelism'>>;
  readonly hostname?: string;
  readonly username?: string;
}

/** Wraps `masterKey` under `password`. Returns the key file's bytes (its name is their SHA-256). */
export async function createKeyFile(
  masterKey: Uint8Array,
  password: string,
  opts: CreateKeyFileOptions = {},
): Promise<Buffer> {
  const kdf: KdfParams = {
    algorithm: 'argon2id',
    memoryKiB: opts.kdf?.memoryKiB ?? DEFAULT_KDF.memoryKiB,
    iterations: opts.kdf?.iterations ?? DEFAULT_KDF.iterations,
    parallelism: opts.kdf?.parallelism ?? DEFAULT_KDF.parallelism,
    salt: randomBytes(16).toString('base64'),
  };
  const kf: KeyFile = {
    version: 1,
    created: new Date().toISOString(),
    hostname: opts.hostname ?? hostname(),
    username: opts.username ?? safeUsername(),
    kdf,
    masterKey: Buffer.from(seal(await deriveKey(password, kdf), masterKey, KEY_AAD)).toString('base64'),
  };
  const bytes = Buffer.from(`${JSON.stringify(kf, null, 2)}\n`, 'utf8');
  parseKeyFile(bytes); // never write a key file we would refuse to read
  return bytes;
}

/** Returns the master key, or null when the password does not open this key file. */
export async function openKeyFile(kf: KeyFile, password: string): Promise<Buffer | null> {
  const key = await deriveKey(password, kf.kdf);
  try {
    return open(key, Buffer.from(kf.masterKey, 'base64'), KEY_AAD, 'key file');
  } catch {
    return null;
  }
}

export function safeUsername(): string {
  try {
    return userInfo().username;
  } catch {
    return process.env.USER ?? 'unknown';
  }
}
