// Fuzzes the pack header parser (§6): parsePackHeader on plaintext, readPackHeader end to end.
import { ForgeError, type ForgeErrorCode } from '@backupforge/common';
import { createMemoryBackend } from '@backupforge/storage/memory';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { open } from '../crypto/aead.ts';
import { type PackEntry, parsePackHeader, readPackHeader } from '../format/pack.ts';
import {
  assemblePack,
  type FuzzKeys,
  fuzzKeys,
  PACK_HEADER_AAD,
  type RawHeaderEntry,
  rawPackHeader,
  samplePack,
  sealPackHeader,
} from './fixtures.ts';
import {
  type FuzzBudget,
  fuzz,
  fuzzAsync,
  mutate,
  mutationsArb,
  outcome,
  outcomeAsync,
  randomBytesArb,
  testTimeout,
} from './harness.ts';

const PARSE_CODES: readonly ForgeErrorCode[] = ['FORGE_FORMAT', 'FORGE_PACK_TRUNCATED'];
const READ_CODES: readonly ForgeErrorCode[] = ['FORGE_FORMAT', 'FORGE_PACK_TRUNCATED', 'FORGE_INTEGRITY'];
const PACK_ID = 'ab'.repeat(32);

const SYNC: FuzzBudget = { numRuns: 3000, ms: 1500 };
const ASYNC: FuzzBudget = { numRuns: 1500, ms: 1500, runTimeoutMs: 5000 };

/** What a header the parser accepted must look like. */
function expectValidEntries(entries: readonly PackEntry[], blobArea: number): void {
  let offset = 0;
  for (const e of entries) {
    expect(['data', 'tree']).toContain(e.type);
    expect(['none', 'zstd', 'lz4']).toContain(e.compression);
    expect(Number.isSafeInteger(e.length) && e.length >= 28 && e.length <= 0xffffffff).toBe(true);
    expect(Number.isSafeInteger(e.rawLength) && e.rawLength >= 0 && e.rawLength <= 0xffffffff).toBe(true);
    expect(e.id).toMatch(/^[0-9a-f]{64}$/);
    expect(e.offset).toBe(offset);
    offset += e.length;
  }
  expect(offset).toBe(blobArea);
}

const entryArb: fc.Arbitrary<RawHeaderEntry> = fc.record({
  type: fc.oneof({ weight: 4, arbitrary: fc.constantFrom(0, 1) }, { weight: 1, arbitrary: fc.nat(255) }),
  compression: fc.oneof(
    { weight: 4, arbitrary: fc.constantFrom(0, 1, 2) },
    { weight: 1, arbitrary: fc.nat(255) },
  ),
  reserved: fc.oneof({ weight: 4, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.nat(0xffff) }),
  length: fc.oneof(
    fc.integer({ min: 28, max: 4096 }),
    fc.constantFrom(0, 1, 27, 28, 0x7fffffff, 0x80000000, 0xffffffff),
    fc.nat({ max: 0xffffffff }),
  ),
  rawLength: fc.oneof(fc.nat(4096), fc.constantFrom(0, 0xffffffff), fc.nat({ max: 0xffffffff })),
  id: fc.uint8Array({ minLength: 32, maxLength: 32 }),
});

/** A plaintext header whose count, lengths and reserved bits may lie, with the blob area it claims. */
const evilHeaderArb = fc
  .record({
    version: fc.oneof({ weight: 5, arbitrary: fc.constant(1) }, { weight: 1, arbitrary: fc.nat(255) }),
    entries: fc.array(entryArb, { maxLength: 8 }),
    countDelta: fc.oneof(
      { weight: 4, arbitrary: fc.constant(0) },
      { weight: 1, arbitrary: fc.integer({ min: -3, max: 3 }) },
      { weight: 1, arbitrary: fc.constantFrom(65536, 65537, 0x7fffffff, 0xffffffff) },
    ),
    areaDelta: fc.oneof(
      { weight: 4, arbitrary: fc.constant(0) },
      { weight: 1, arbitrary: fc.integer({ min: -64, max: 64 }) },
    ),
    trailing: fc.oneof(
      { weight: 5, arbitrary: fc.constant(0) },
      { weight: 1, arbitrary: fc.integer({ min: -5, max: 50 }) },
    ),
  })
  .map(({ version, entries, countDelta, areaDelta, trailing }) => {
    const count = countDelta > 3 ? countDelta : Math.max(0, entries.length + countDelta);
    let plain = rawPackHeader(version, count, entries);
    if (trailing > 0) plain = Buffer.concat([plain, Buffer.alloc(trailing, 0x5a)]);
    else if (trailing < 0) plain = plain.subarray(0, Math.max(0, plain.length + trailing));
    const sum = entries.reduce((s, e) => s + e.length, 0);
    return { plain, blobArea: Math.max(0, sum + areaDelta) };
  });

describe('fuzz: parsePackHeader', () => {
  let keys: FuzzKeys;
  let pack: ReturnType<typeof samplePack>;
  let plainHeader: Buffer;
  let blobArea: number;

  beforeAll(() => {
    keys = fuzzKeys();
    pack = samplePack(keys);
    const b = Buffer.from(pack.bytes);
    const hlen = b.readUInt32LE(b.length - 4);
    blobArea = b.length - 4 - hlen;
    plainHeader = open(keys.encKey, b.subarray(blobArea, b.length - 4), PACK_HEADER_AAD);
  });

  it('no false positives: a valid header parses to the entries written', () => {
    expect(parsePackHeader(plainHeader, blobArea)).toEqual(pack.entries);
    const empty = rawPackHeader(1, 0, []);
    expect(parsePackHeader(empty, 0)).toEqual([]);
  });

  it(
    'random bytes: entries or FORGE_FORMAT / FORGE_PACK_TRUNCATED',
    () => {
      fuzz(
        'parsePackHeader/random',
        fc.property(randomBytesArb, fc.oneof(fc.nat(10_000), fc.nat()), (bytes, area) => {
          const r = outcome(() => parsePackHeader(bytes, area), PARSE_CODES, 'parsePackHeader');
          if (r.ok) expectValidEntries(r.value, area);
        }),
        SYNC,
      );
    },
    testTimeout(SYNC),
  );

  it(
    'mutated valid header',
    () => {
      fuzz(
        'parsePackHeader/mutated',
        fc.property(mutationsArb, fc.integer({ min: -100, max: 100 }), (ms, areaDelta) => {
          const area = Math.max(0, blobArea + areaDelta);
          const r = outcome(
            () => parsePackHeader(mutate(plainHeader, ms), area),
            PARSE_CODES,
            'parsePackHeader',
          );
          if (r.ok) expectValidEntries(r.value, area);
        }),
        SYNC,
      );
    },
    testTimeout(SYNC),
  );

  it(
    'evil plaintext headers: lying counts, lengths past the end, reserved bits, unknown codes',
    () => {
      fuzz(
        'parsePackHeader/evil',
        fc.property(evilHeaderArb, ({ plain, blobArea: area }) => {
          const r = outcome(() => parsePackHeader(plain, area), PARSE_CODES, 'parsePackHeader');
          if (r.ok) expectValidEntries(r.value, area);
        }),
        SYNC,
      );
    },
    testTimeout(SYNC),
  );

  it('a count of 2^32-1 with a short header is refused without allocating', () => {
    const plain = rawPackHeader(1, 0xffffffff, []);
    expect(() => parsePackHeader(plain, 0)).toThrow(ForgeError);
    const tooMany = rawPackHeader(1, 65537, []);
    expect(() => parsePackHeader(tooMany, 0)).toThrow(/lists 65537 blobs/);
  });
});

describe('fuzz: readPackHeader', () => {
  let keys: FuzzKeys;
  let pack: ReturnType<typeof samplePack>;

  beforeAll(() => {
    keys = fuzzKeys();
    pack = samplePack(keys);
  });

  async function read(bytes: Uint8Array, size?: number): Promise<PackEntry[]> {
    const backend = createMemoryBackend();
    await backend.save({ type: 'pack', name: PACK_ID }, bytes);
    return readPackHeader(backend, keys.encKey, PACK_ID, size);
  }

  it('no false positives: a valid pack reads back, with and without a known size', async () => {
    expect(await read(pack.bytes)).toEqual(pack.entries);
    expect(await read(pack.bytes, pack.bytes.length)).toEqual(pack.entries);
  });

  it(
    'random bytes',
    async () => {
      await fuzzAsync(
        'readPackHeader/random',
        fc.asyncProperty(randomBytesArb, async (bytes) => {
          await outcomeAsync(() => read(bytes), READ_CODES, 'readPackHeader');
        }),
        ASYNC,
      );
    },
    testTimeout(ASYNC),
  );

  it(
    'mutated valid pack (size from stat, or a stated size that may lie)',
    async () => {
      await fuzzAsync(
        'readPackHeader/mutated',
        fc.asyncProperty(
          mutationsArb,
          fc.oneof(
            { weight: 3, arbitrary: fc.constant(0) },
            { weight: 1, arbitrary: fc.integer({ min: -40, max: 40 }) },
          ),
          async (ms, sizeDelta) => {
            const bytes = mutate(pack.bytes, ms);
            // A stated size that is not the object's size may also fail in the backend (FORGE_RANGE).
            const codes: readonly ForgeErrorCode[] =
              sizeDelta === 0 ? READ_CODES : [...READ_CODES, 'FORGE_RANGE'];
            const size = sizeDelta === 0 ? undefined : Math.max(0, bytes.length + sizeDelta);
            const r = await outcomeAsync(() => read(bytes, size), codes, 'readPackHeader');
            const total = size ?? bytes.length;
            if (r.ok) expectValidEntries(r.value, total - 4 - bytes.readUInt32LE(total - 4));
          },
        ),
        ASYNC,
      );
    },
    testTimeout(ASYNC),
  );

  it(
    'evil headers sealed with the right key (the AEAD does not stop them)',
    async () => {
      await fuzzAsync(
        'readPackHeader/evil-sealed',
        fc.asyncProperty(
          evilHeaderArb,
          fc.integer({ min: -2, max: 2 }),
          async ({ plain, blobArea }, lenLie) => {
            const sealed = sealPackHeader(keys.encKey, plain);
            const area = Buffer.alloc(Math.min(blobArea, 1 << 20), 0x11);
            const bytes = assemblePack(area, sealed, sealed.length + lenLie);
            const r = await outcomeAsync(() => read(bytes), READ_CODES, 'readPackHeader');
            if (r.ok) expectValidEntries(r.value, area.length);
          },
        ),
        ASYNC,
      );
    },
    testTimeout(ASYNC),
  );
});
