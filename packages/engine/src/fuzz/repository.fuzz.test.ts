// Fuzzes Repository.open end to end: a memory backend whose config or key files are replaced by
// fuzzed bytes. Every run that gets past the config header runs a (fast) Argon2id, so the run
// counts here are small.
import type { ForgeErrorCode, StorageBackend } from '@backupforge/common';
import { createMemoryBackend } from '@backupforge/storage/memory';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseKeyFile } from '../crypto/key-file.ts';
import { sha256Hex } from '../format/envelope.ts';
import { Repository } from '../repository.ts';
import {
  corrupted,
  evilLeaf,
  type FuzzBudget,
  fuzzAsync,
  jsonBytes,
  mutate,
  mutationsArb,
  outcomeAsync,
  randomBytesArb,
  testTimeout,
} from './harness.ts';

const FAST_KDF = { memoryKiB: 8192, iterations: 1, parallelism: 1 } as const;
const CONFIG = { type: 'config', name: 'config' } as const;
const BUDGET: FuzzBudget = { numRuns: 200, ms: 2500, runTimeoutMs: 10_000 };
const CODES: readonly ForgeErrorCode[] = [
  'FORGE_REPO_INVALID',
  'FORGE_REPO_VERSION',
  'FORGE_KEY_INVALID',
  'FORGE_WRONG_PASSWORD',
  'FORGE_INTEGRITY',
];

/** The most Argon2id work one fuzz run may ask for (the spec allows up to 2 GiB × 32 passes). */
function cheapEnough(keyBytes: Uint8Array): boolean {
  try {
    const { kdf } = parseKeyFile(keyBytes);
    return kdf.memoryKiB * kdf.iterations * kdf.parallelism <= 4 * FAST_KDF.memoryKiB;
  } catch {
    return true; // refused before any KDF
  }
}

describe('fuzz: Repository.open', () => {
  let config: Buffer;
  let key: Buffer;
  let repoId: string;

  beforeAll(async () => {
    const backend = createMemoryBackend();
    const repo = await Repository.init(backend, { password: 'pw', kdf: FAST_KDF });
    repoId = repo.config.id;
    config = Buffer.from(await backend.load(CONFIG));
    for await (const info of backend.list('key'))
      key = Buffer.from(await backend.load({ type: 'key', name: info.name }));
  });

  async function backendWith(
    configBytes: Uint8Array | undefined,
    keyFiles: readonly Uint8Array[],
  ): Promise<StorageBackend> {
    const b = createMemoryBackend();
    await b.create();
    if (configBytes) await b.save(CONFIG, configBytes);
    for (const k of keyFiles) await b.save({ type: 'key', name: sha256Hex(k) }, k);
    return b;
  }

  it('no false positives: the untouched repository opens; a wrong password is FORGE_WRONG_PASSWORD', async () => {
    const repo = await Repository.open(await backendWith(config, [key]), { password: 'pw' });
    expect(repo.config.id).toBe(repoId);
    await expect(
      Repository.open(await backendWith(config, [key]), { password: 'nope' }),
    ).rejects.toMatchObject({
      code: 'FORGE_WRONG_PASSWORD',
    });
  });

  it('absurd KDF parameters are refused before any KDF runs, and do not stop a good key file', async () => {
    const kf = JSON.parse(key.toString('utf8')) as Record<string, Record<string, unknown>>;
    const absurd = [
      { memoryKiB: 2 ** 31 },
      { memoryKiB: 2097152 * 4 },
      { iterations: 2 ** 31 },
      { parallelism: 1024 },
    ].map((over) => jsonBytes({ ...kf, kdf: { ...kf.kdf, ...over } }));
    for (const bad of absurd) {
      const t0 = performance.now();
      await expect(
        Repository.open(await backendWith(config, [bad]), { password: 'pw' }),
      ).rejects.toMatchObject({
        code: 'FORGE_KEY_INVALID',
      });
      // Argon2id with any of these would take minutes and gigabytes.
      expect(performance.now() - t0).toBeLessThan(1000);
    }
    const repo = await Repository.open(await backendWith(config, [...absurd, key]), { password: 'pw' });
    expect(repo.config.id).toBe(repoId);
  });

  it(
    'fuzzed config (random or mutated) with a good key file',
    async () => {
      await fuzzAsync(
        'Repository.open/config',
        fc.asyncProperty(fc.oneof(randomBytesArb, mutationsArb), async (input) => {
          const bytes = input instanceof Uint8Array ? input : mutate(config, input);
          const backend = await backendWith(bytes, [key]);
          const r = await outcomeAsync(
            () => Repository.open(backend, { password: 'pw' }),
            CODES,
            'Repository.open',
          );
          if (r.ok) expect(r.value.config.id).toBe(repoId);
        }),
        BUDGET,
      );
    },
    testTimeout(BUDGET),
  );

  it(
    'fuzzed key file (random, mutated, evil JSON), alone or next to the good one',
    async () => {
      const kfJson = JSON.parse(key.toString('utf8')) as unknown;
      await fuzzAsync(
        'Repository.open/key',
        fc.asyncProperty(
          fc.oneof(randomBytesArb, mutationsArb, corrupted(kfJson, evilLeaf).map(jsonBytes)),
          fc.boolean(),
          async (input, withGood) => {
            const bytes = Array.isArray(input) ? mutate(key, input) : (input as Uint8Array);
            fc.pre(cheapEnough(bytes));
            const backend = await backendWith(config, withGood ? [bytes, key] : [bytes]);
            const r = await outcomeAsync(
              () => Repository.open(backend, { password: 'pw' }),
              CODES,
              'Repository.open',
            );
            if (r.ok) expect(r.value.config.id).toBe(repoId);
            else if (withGood)
              throw new Error(`a bad key file next to a good one stopped open: ${r.error.code}`);
          },
        ),
        BUDGET,
      );
    },
    testTimeout(BUDGET),
  );

  it('no config at all, or no key files', async () => {
    await expect(
      Repository.open(await backendWith(undefined, [key]), { password: 'pw' }),
    ).rejects.toMatchObject({
      code: 'FORGE_REPO_NOT_FOUND',
    });
    await expect(Repository.open(await backendWith(config, []), { password: 'pw' })).rejects.toMatchObject({
      code: 'FORGE_REPO_INVALID',
    });
  });

  // FIXED (was a bug found by this fuzzer) (known, open) — needs only write access to keys/, no password: parseKeyFile throws a
  // TypeError on `{"version":{"toString":1}}` (String() of an object whose toString is not a
  // function, src/crypto/key-file.ts:67; see key-file.fuzz.test.ts), and Repository.open
  // (src/repository.ts:139-141) rethrows anything that is not FORGE_KEY_INVALID. So one planted
  // file in keys/ makes the repository impossible to open with ANY password, with a TypeError.
  // Fix: make parseKeyFile never throw anything but FORGE_KEY_INVALID (see key-file.fuzz.test.ts);
  // defensively, Repository.open could treat any non-ForgeError from parseKeyFile as an invalid key file.
  it('regression: a planted key file with {"version":{"toString":1}} does not stop a good key', async () => {
    const planted = Buffer.from('{"version":{"toString":1}}');
    const repo = await Repository.open(await backendWith(config, [planted, key]), { password: 'pw' });
    expect(repo.config.id).toBe(repoId);
  });
});
