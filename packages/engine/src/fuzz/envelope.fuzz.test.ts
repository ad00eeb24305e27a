// Fuzzes index and snapshot objects (§7, §8): decodeObject, then validateIndexFile and
// validateSnapshot on the decoded JSON.
import { zstdCompressSync } from 'node:zlib';
import { ForgeError, type ForgeErrorCode, type Snapshot } from '@backupforge/common';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { aadOf, seal } from '../crypto/aead.ts';
import { decodeObject, type EnvelopeLabel, encodeObject, sha256Hex } from '../format/envelope.ts';
import { type IndexFile, validateIndexFile } from '../master-index.ts';
import { findParentSnapshot, matchesFilter, validateSnapshot } from '../snapshot-filter.ts';
import { type FuzzKeys, fuzzKeys } from './fixtures.ts';
import {
  corrupted,
  DEEP_ARRAY,
  deeplyNested,
  evilJsonArb,
  evilLeaf,
  type FuzzBudget,
  fuzz,
  jsonBytes,
  mutate,
  mutationsArb,
  outcome,
  randomBytesArb,
  testTimeout,
} from './harness.ts';

const DECODE_CODES: readonly ForgeErrorCode[] = ['FORGE_FORMAT', 'FORGE_INTEGRITY'];
const VALIDATE_CODES: readonly ForgeErrorCode[] = ['FORGE_FORMAT'];
const BUDGET: FuzzBudget = { numRuns: 2000, ms: 1200 };
const NAME = '12'.repeat(32);
const labelArb = fc.constantFrom<EnvelopeLabel>('index', 'snapshot');

const SAMPLE_INDEX: IndexFile = {
  packs: [
    {
      id: 'ab'.repeat(32),
      blobs: [
        {
          id: 'cd'.repeat(32),
          type: 'data',
          offset: 0,
          length: 1048604,
          rawLength: 1048576,
          compression: 'zstd',
        },
        {
          id: 'ef'.repeat(32),
          type: 'tree',
          offset: 1048604,
          length: 40,
          rawLength: 12,
          compression: 'none',
        },
      ],
    },
  ],
};

const SAMPLE_SNAPSHOT: Snapshot = {
  time: '2026-11-21T22:49:12.123456789Z',
  tree: '01'.repeat(32),
  paths: ['/home/alice'],
  hostname: 'nas',
  username: 'alice',
  uid: 1000,
  gid: 1000,
  tags: ['daily'],
  source: 'fs',
  programVersion: 'forge 0.1.0',
};

/** Seals arbitrary body bytes as an envelope, so the parser behind the AEAD sees them. */
function sealBody(encKey: Uint8Array, label: EnvelopeLabel, compression: 0 | 1, body: Uint8Array): Buffer {
  const sealed = seal(encKey, body, aadOf(`bf1:${label}`, Buffer.from([1, compression])));
  return Buffer.concat([Buffer.from([1, compression]), sealed]);
}

describe('fuzz: decodeObject (index and snapshot envelopes)', () => {
  let keys: FuzzKeys;
  let encoded: Record<EnvelopeLabel, Buffer>;

  beforeAll(() => {
    keys = fuzzKeys();
    encoded = {
      index: encodeObject(keys.encKey, 'index', SAMPLE_INDEX),
      snapshot: encodeObject(keys.encKey, 'snapshot', SAMPLE_SNAPSHOT),
    };
  });

  it('no false positives: encoded objects decode and validate, with and without their name', () => {
    const idx = encoded.index;
    expect(validateIndexFile(decodeObject(keys.encKey, 'index', idx, sha256Hex(idx)), NAME)).toEqual(
      SAMPLE_INDEX,
    );
    const snap = encoded.snapshot;
    expect(validateSnapshot(decodeObject(keys.encKey, 'snapshot', snap), NAME)).toEqual(SAMPLE_SNAPSHOT);
    const raw = sealBody(keys.encKey, 'index', 0, jsonBytes(SAMPLE_INDEX));
    expect(decodeObject(keys.encKey, 'index', raw)).toEqual(SAMPLE_INDEX);
  });

  it('an object under the other label fails authentication', () => {
    expect(() => decodeObject(keys.encKey, 'snapshot', encoded.index)).toThrow(ForgeError);
  });

  it(
    'random bytes (with and without a name)',
    () => {
      fuzz(
        'decodeObject/random',
        fc.property(labelArb, randomBytesArb, fc.boolean(), (label, bytes, named) => {
          const name = named ? sha256Hex(bytes) : undefined;
          outcome(() => decodeObject(keys.encKey, label, bytes, name), DECODE_CODES, 'decodeObject');
        }),
        BUDGET,
      );
    },
    testTimeout(BUDGET),
  );

  it(
    'mutated valid objects: a name that no longer matches is FORGE_INTEGRITY',
    () => {
      fuzz(
        'decodeObject/mutated',
        fc.property(
          labelArb,
          mutationsArb,
          fc.constantFrom('none', 'original', 'mutated'),
          (label, ms, naming) => {
            const original = encoded[label];
            const bytes = mutate(original, ms);
            const name =
              naming === 'none' ? undefined : naming === 'original' ? sha256Hex(original) : sha256Hex(bytes);
            const r = outcome(
              () => decodeObject(keys.encKey, label, bytes, name),
              DECODE_CODES,
              'decodeObject',
            );
            if (r.ok) expect(bytes.subarray(2).equals(original.subarray(2))).toBe(true);
            else if (naming === 'original' && !bytes.equals(original))
              expect(r.error.code).toBe('FORGE_INTEGRITY');
          },
        ),
        BUDGET,
      );
    },
    testTimeout(BUDGET),
  );

  const bodyArb = fc.oneof(
    randomBytesArb,
    evilJsonArb().map(jsonBytes),
    fc.constantFrom(
      Buffer.from(deeplyNested(100_000, 'array')),
      Buffer.from(deeplyNested(50_000, 'object')),
      Buffer.from('{"packs":[], "__proto__": {"polluted": true}}'),
      Buffer.from('{"__proto__": {"packs": []}}'),
      Buffer.from('\uFEFF{"packs":[]}'),
      Buffer.from([0xff, 0xfe, 0x7b, 0x7d]),
      Buffer.from('1e999999'),
      Buffer.from(''),
    ),
  );

  it(
    'evil bodies sealed with the right key: plain or zstd, valid or broken JSON, deep nesting',
    () => {
      fuzz(
        'decodeObject/evil-sealed',
        fc.property(
          labelArb,
          bodyArb,
          fc.constantFrom('plain', 'zstd', 'zstd-mutated', 'claims-zstd'),
          mutationsArb,
          (label, body, how, ms) => {
            const bytes =
              how === 'plain'
                ? sealBody(keys.encKey, label, 0, body)
                : how === 'claims-zstd'
                  ? sealBody(keys.encKey, label, 1, body)
                  : sealBody(
                      keys.encKey,
                      label,
                      1,
                      how === 'zstd' ? zstdCompressSync(body) : mutate(zstdCompressSync(body), ms),
                    );
            outcome(() => decodeObject(keys.encKey, label, bytes), ['FORGE_FORMAT'], 'decodeObject');
          },
        ),
        BUDGET,
      );
    },
    testTimeout(BUDGET),
  );

  it('a prototype-pollution key in a decoded body stays an own property', () => {
    const bytes = sealBody(
      keys.encKey,
      'index',
      0,
      Buffer.from('{"packs":[],"__proto__":{"polluted":true}}'),
    );
    const v = decodeObject(keys.encKey, 'index', bytes) as Record<string, unknown>;
    expect(Object.hasOwn(v, '__proto__')).toBe(true);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(validateIndexFile(v, NAME).packs).toEqual([]);
  });
});

/** What an index file the validator accepted must look like, strictly (types, not just `test`). */
function expectStrictIndex(f: IndexFile): void {
  for (const p of f.packs) {
    expect(typeof p.id === 'string' && /^[0-9a-f]{64}$/.test(p.id)).toBe(true);
    for (const b of p.blobs) {
      expect(typeof b.id === 'string' && /^[0-9a-f]{64}$/.test(b.id)).toBe(true);
      expect(b.offset >= 0 && b.length >= 28 && b.length <= 0xffffffff).toBe(true);
      expect(b.rawLength >= 0 && b.rawLength <= 0xffffffff).toBe(true);
    }
  }
}

/** What a snapshot the validator accepted must look like, strictly. */
function expectStrictSnapshot(s: Snapshot): void {
  expect(s.paths.every((p) => typeof p === 'string')).toBe(true);
  expect(s.tags.every((t) => typeof t === 'string')).toBe(true);
}

describe('fuzz: validateIndexFile', () => {
  it(
    'evil JSON (random, and the sample index with fields replaced)',
    () => {
      fuzz(
        'validateIndexFile/evil',
        fc.property(fc.oneof(evilJsonArb(), corrupted(SAMPLE_INDEX, evilLeaf)), (v) => {
          const r = outcome(() => validateIndexFile(v, NAME), VALIDATE_CODES, 'validateIndexFile');
          if (r.ok) {
            expect(Array.isArray(r.value.packs)).toBe(true);
            for (const p of r.value.packs) expect(Array.isArray(p.blobs)).toBe(true);
          }
        }),
        BUDGET,
      );
    },
    testTimeout(BUDGET),
  );

  // FIXED (was a bug found by this fuzzer) (known, open): validateIndexFile (src/master-index.ts:38) calls HEX64.test(b.id) without
  // checking that b.id is a string. RegExp#test converts its argument with ToString, so
  //  - `{"id":{"toString":1}}` throws TypeError "Cannot convert object to primitive value";
  //  - `{"id":[[[…20 000 deep…]]]}` throws RangeError "Maximum call stack size exceeded";
  //  - `{"id":["<64 hex>"]}` is ACCEPTED (String(["x"]) === "x"): the MasterIndex then keys a Map
  //    by an array, so the blob is never found.
  // Fix: `typeof b.id === 'string' && HEX64.test(b.id)` (as already done for p.id on line 33), and
  // bound offset/length/rawLength (see blob.fuzz.test.ts).
  it('regression: a blob id that is an object makes validateIndexFile throw a TypeError', () => {
    const v = { packs: [{ id: 'ab'.repeat(32), blobs: [{ id: { toString: 1 } }] }] };
    outcome(() => validateIndexFile(v, NAME), VALIDATE_CODES, 'validateIndexFile');
  });

  it('regression: a deeply nested blob id makes validateIndexFile overflow the stack', () => {
    const v = { packs: [{ id: 'ab'.repeat(32), blobs: [{ id: DEEP_ARRAY }] }] };
    outcome(() => validateIndexFile(v, NAME), VALIDATE_CODES, 'validateIndexFile');
  });

  it('regression: validateIndexFile accepts a blob id that is an array, and out-of-range numbers', () => {
    const blob = SAMPLE_INDEX.packs[0]!.blobs[0]!;
    for (const bad of [{ id: [blob.id] }, { offset: -1 }, { length: -5 }, { rawLength: 2 ** 40 }]) {
      const v = { packs: [{ id: 'ab'.repeat(32), blobs: [{ ...blob, ...bad }] }] };
      const r = outcome(() => validateIndexFile(v, NAME), VALIDATE_CODES, 'validateIndexFile');
      if (r.ok) expectStrictIndex(r.value);
    }
  });

  it(
    'known bug (fuzz, gadgets on, fixed seed): validateIndexFile never throws a non-ForgeError',
    () => {
      fuzz(
        'validateIndexFile/gadgets',
        fc.property(corrupted(SAMPLE_INDEX, evilJsonArb({ toPrimitiveGadgets: true })), (v) => {
          outcome(() => validateIndexFile(v, NAME), VALIDATE_CODES, 'validateIndexFile');
        }),
        { numRuns: 2000, ms: 2000 },
        42,
      );
    },
    testTimeout(BUDGET),
  );
});

describe('fuzz: validateSnapshot', () => {
  it(
    'evil JSON (random, and the sample snapshot with fields replaced)',
    () => {
      fuzz(
        'validateSnapshot/evil',
        fc.property(fc.oneof(evilJsonArb(), corrupted(SAMPLE_SNAPSHOT, evilLeaf)), (v) => {
          const r = outcome(() => validateSnapshot(v, NAME), VALIDATE_CODES, 'validateSnapshot');
          if (r.ok) {
            const s = r.value;
            expect(typeof s.time === 'string' && typeof s.hostname === 'string').toBe(true);
            expect(typeof s.tree === 'string' && /^[0-9a-f]{64}$/.test(s.tree)).toBe(true);
            expect(Array.isArray(s.paths) && Array.isArray(s.tags)).toBe(true);
          }
        }),
        BUDGET,
      );
    },
    testTimeout(BUDGET),
  );

  // FIXED (was a bug found by this fuzzer) (known, open): validateSnapshot (src/snapshot-filter.ts:10-15) checks that `paths` and
  // `tags` are arrays but not that their elements are strings. A snapshot with
  // `"paths":[{"toString":1}]` (or a deeply nested array) validates, and then
  // findParentSnapshot (`[...s.paths].sort().join('\0')`, line 95) throws a TypeError
  // (RangeError for deep nesting) during the next backup of that host; `tags` with non-strings
  // silently never match filters. Fix: require
  // `s.paths.every((p) => typeof p === 'string') && s.tags.every((t) => typeof t === 'string')`
  // (and check `username`, `source`, `programVersion`, the other required string fields).
  it('regression: validateSnapshot accepts non-string paths, which crash findParentSnapshot', () => {
    const v = { ...SAMPLE_SNAPSHOT, paths: [{ toString: 1 }, '/a'] };
    const r = outcome(() => validateSnapshot(v, NAME), VALIDATE_CODES, 'validateSnapshot');
    if (r.ok) {
      const rec = { ...r.value, id: NAME } as Parameters<typeof findParentSnapshot>[0][number];
      expect(() => findParentSnapshot([rec], 'nas', ['/a'])).not.toThrow();
      expect(matchesFilter(rec, {})).toBe(true);
      expectStrictSnapshot(r.value);
    }
  });
});
