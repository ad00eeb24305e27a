// Fuzzes key files (§5): parseKeyFile must refuse anything malformed, and absurd KDF parameters,
// with FORGE_KEY_INVALID before any key derivation runs. Key files are plain JSON: anyone with
// write access to the storage can put any bytes there, no key needed.
import type { ForgeErrorCode } from '@backupforge/common';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { createKeyFile, KDF_LIMITS, type KeyFile, openKeyFile, parseKeyFile } from '../crypto/key-file.ts';
import { generateMasterKey } from '../crypto/master-key.ts';
import {
  corrupted,
  DEEP_ARRAY,
  evilJsonArb,
  evilLeaf,
  evilNumberArb,
  type FuzzBudget,
  fuzz,
  jsonBytes,
  mutate,
  mutationsArb,
  outcome,
  randomBytesArb,
  testTimeout,
} from './harness.ts';

const CODES: readonly ForgeErrorCode[] = ['FORGE_KEY_INVALID'];
const BUDGET: FuzzBudget = { numRuns: 3000, ms: 1200 };
const FAST_KDF = { memoryKiB: 8192, iterations: 1, parallelism: 1 } as const;

function inRange(v: unknown, [lo, hi]: readonly [number, number]): boolean {
  return typeof v === 'number' && Number.isInteger(v) && v >= lo && v <= hi;
}

/** What parseKeyFile promises about a key file it returns (§3, §5): safe to run the KDF on. */
function expectValidKeyFile(kf: KeyFile): void {
  expect(kf.version).toBe(1);
  expect(kf.kdf.algorithm).toBe('argon2id');
  expect(inRange(kf.kdf.memoryKiB, KDF_LIMITS.memoryKiB)).toBe(true);
  expect(inRange(kf.kdf.iterations, KDF_LIMITS.iterations)).toBe(true);
  expect(inRange(kf.kdf.parallelism, KDF_LIMITS.parallelism)).toBe(true);
  expect(inRange(Buffer.from(kf.kdf.salt, 'base64').length, KDF_LIMITS.saltBytes)).toBe(true);
  expect(Buffer.from(kf.masterKey, 'base64').length).toBe(64 + 28);
}

describe('fuzz: parseKeyFile', () => {
  let master: Buffer;
  let valid: Buffer;
  let validJson: KeyFile;

  beforeAll(async () => {
    master = generateMasterKey();
    valid = await createKeyFile(master, 'pw', { kdf: FAST_KDF, hostname: 'h', username: 'u' });
    validJson = JSON.parse(valid.toString('utf8')) as KeyFile;
  });

  it('no false positives: a created key file parses and opens', async () => {
    const kf = parseKeyFile(valid);
    expectValidKeyFile(kf);
    expect(Buffer.from((await openKeyFile(kf, 'pw'))!).equals(master)).toBe(true);
    expect(await openKeyFile(kf, 'wrong')).toBeNull();
  });

  it('absurd KDF parameters are refused (sync, so before any KDF could run)', () => {
    const absurd: Record<string, unknown>[] = [
      { memoryKiB: 2 ** 31 },
      { memoryKiB: 2097153 },
      { memoryKiB: 8191 },
      { memoryKiB: 1e300 },
      { memoryKiB: 65536.5 },
      { memoryKiB: '65536' },
      { iterations: 33 },
      { iterations: 0 },
      { iterations: 2 ** 32 },
      { parallelism: 17 },
      { parallelism: 0 },
      { parallelism: -1 },
      { salt: '' },
      { salt: Buffer.alloc(15).toString('base64') },
      { salt: Buffer.alloc(65).toString('base64') },
      { salt: Buffer.alloc(1 << 20).toString('base64') },
      { algorithm: 'scrypt' },
    ];
    for (const over of absurd) {
      const bytes = jsonBytes({ ...validJson, kdf: { ...validJson.kdf, ...over } });
      const t0 = performance.now();
      expect(() => parseKeyFile(bytes), JSON.stringify(over).slice(0, 80)).toThrow(/key file/);
      expect(performance.now() - t0).toBeLessThan(200);
    }
  });

  it(
    'random bytes',
    () => {
      fuzz(
        'parseKeyFile/random',
        fc.property(randomBytesArb, (bytes) => {
          const r = outcome(() => parseKeyFile(bytes), CODES, 'parseKeyFile');
          if (r.ok) expectValidKeyFile(r.value);
        }),
        BUDGET,
      );
    },
    testTimeout(BUDGET),
  );

  it(
    'mutated valid key file',
    () => {
      fuzz(
        'parseKeyFile/mutated',
        fc.property(mutationsArb, (ms) => {
          const r = outcome(() => parseKeyFile(mutate(valid, ms)), CODES, 'parseKeyFile');
          if (r.ok) expectValidKeyFile(r.value);
        }),
        BUDGET,
      );
    },
    testTimeout(BUDGET),
  );

  it(
    'evil JSON: the valid key file with fields replaced, KDF numbers out of range',
    () => {
      const kdfNumber = fc.oneof(evilNumberArb, fc.integer({ min: -5, max: 2 ** 32 + 5 }));
      fuzz(
        'parseKeyFile/evil',
        fc.property(
          fc.oneof(
            corrupted(validJson, evilLeaf),
            fc
              .record(
                { memoryKiB: kdfNumber, iterations: kdfNumber, parallelism: kdfNumber },
                { requiredKeys: [] },
              )
              .map((over) => ({ ...validJson, kdf: { ...validJson.kdf, ...over } })),
            evilJsonArb(),
          ),
          (v) => {
            const bytes = jsonBytes(v);
            const r = outcome(() => parseKeyFile(bytes), CODES, 'parseKeyFile');
            if (r.ok) expectValidKeyFile(r.value);
          },
        ),
        BUDGET,
      );
    },
    testTimeout(BUDGET),
  );

  // FIXED (was a bug found by this fuzzer) (known, open) — reachable by anyone who can write to the storage, no key needed:
  // parseKeyFile formats rejected values with String() (src/crypto/key-file.ts:67
  // `String(k.version)`, :71 `String(kdf.memoryKiB)`, :73 `String(kdf.iterations)`, :75
  // `String(kdf.parallelism)`). String() of a JSON object whose `toString` is not a function
  // (`{"toString":1}`) throws TypeError "Cannot convert object to primitive value"; of an array
  // nested ~10 000 deep, RangeError "Maximum call stack size exceeded". Repository.open
  // (src/repository.ts:139-141) only swallows FORGE_KEY_INVALID, so ONE such file in keys/
  // makes the repository impossible to open with any password (see repository.fuzz.test.ts).
  // Fix: never stringify untrusted values whole in messages, e.g.
  // `const show = (v: unknown) => (typeof v === 'number' || typeof v === 'string' ? String(v).slice(0, 40) : typeof v)`.
  it('regression: {"version":{"toString":1}} makes parseKeyFile throw a TypeError', () => {
    const bytes = jsonBytes({ ...validJson, version: { toString: 1 } });
    outcome(() => parseKeyFile(bytes), CODES, 'parseKeyFile');
  });

  it('regression: a deeply nested kdf.memoryKiB makes parseKeyFile overflow the stack', () => {
    const bytes = jsonBytes({ ...validJson, kdf: { ...validJson.kdf, memoryKiB: DEEP_ARRAY } });
    expect(JSON.parse(bytes.toString()).kdf.memoryKiB).toBeInstanceOf(Array);
    outcome(() => parseKeyFile(bytes), CODES, 'parseKeyFile');
  });

  it(
    'known bug (fuzz, gadgets on, fixed seed): parseKeyFile never throws a non-ForgeError',
    () => {
      fuzz(
        'parseKeyFile/gadgets',
        fc.property(corrupted(validJson, evilJsonArb({ toPrimitiveGadgets: true })), (v) => {
          const bytes = jsonBytes(v);
          outcome(() => parseKeyFile(bytes), CODES, 'parseKeyFile');
        }),
        { numRuns: 2000, ms: 2000 },
        42,
      );
    },
    testTimeout(BUDGET),
  );
});
