import { randomBytes } from 'node:crypto';
import { ForgeError } from '@backupforge/common';
import { describe, expect, it } from 'vitest';
import type { CompressionAlgorithm } from '../compression.ts';
import type { BlobLocation, BlobType } from '../format/blob-codec.ts';
import { MasterIndex } from '../master-index.ts';
import { CompactIndex } from './compact-index.ts';

/** xorshift32: deterministic, seeded. */
function rng(seed: number): (n: number) => number {
  let x = seed >>> 0 || 1;
  return (n: number) => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) % n;
  };
}

function hexId(rnd: (n: number) => number): string {
  let s = '';
  for (let i = 0; i < 8; i++) s += (rnd(0x10000) * 0x10000 + rnd(0x10000)).toString(16).padStart(8, '0');
  return s;
}

const TYPES: BlobType[] = ['data', 'tree'];
const COMPRESSIONS: CompressionAlgorithm[] = ['none', 'zstd', 'lz4'];

type Entry = {
  id: string;
  type: BlobType;
  offset: number;
  length: number;
  rawLength: number;
  compression: CompressionAlgorithm;
};

function entry(id: string, rnd: (n: number) => number, odd = false): Entry {
  const e: Entry = {
    id,
    type: TYPES[rnd(2)]!,
    offset: rnd(2 ** 31) * 2 + rnd(2),
    length: 28 + rnd(1 << 24),
    rawLength: rnd(2 ** 31) * 2,
    compression: COMPRESSIONS[rnd(3)]!,
  };
  if (odd) {
    // Values that do not fit the slab fields: kept verbatim.
    const k = rnd(5);
    if (k === 0) e.offset = 2 ** 40 + rnd(1000);
    else if (k === 1) e.length = 2 ** 32;
    else if (k === 2) e.rawLength = 1.5;
    else if (k === 3) e.offset = -1;
    else e.compression = 'brotli' as CompressionAlgorithm;
  }
  return e;
}

function expectSame(
  c: CompactIndex,
  m: MasterIndex,
  ids: readonly string[],
  packIds: readonly string[],
): void {
  expect(c.size).toBe(m.size);
  expect(c.packCount).toBe(m.packCount);
  expect([...c.entries()]).toEqual([...m.entries()]);
  expect([...c.packs()]).toEqual([...m.packs()]);
  for (const id of ids) {
    expect(c.lookup(id)).toEqual(m.lookup(id));
    expect(c.lookupAll(id)).toEqual(m.lookupAll(id));
    expect(c.has(id)).toBe(m.has(id));
    expect(c.has(id, 'data')).toBe(m.has(id, 'data'));
    expect(c.has(id, 'tree')).toBe(m.has(id, 'tree'));
    expect(c.lookupBytes(Buffer.from(id, 'hex'))).toEqual(m.lookup(id));
  }
  for (const p of packIds) expect(c.hasPack(p)).toBe(m.hasPack(p));
}

const P = (n: number) => n.toString(16).padStart(64, 'p');

describe('CompactIndex', () => {
  it('stores and returns locations like MasterIndex', () => {
    const c = new CompactIndex();
    const id = 'ab'.repeat(32);
    c.addPack(P(1), [{ id, type: 'tree', offset: 0xffffffff, length: 28, rawLength: 0, compression: 'lz4' }]);
    expect(c.size).toBe(1);
    expect(c.packCount).toBe(1);
    expect(c.lookup(id)).toEqual({
      packId: P(1),
      type: 'tree',
      offset: 0xffffffff,
      length: 28,
      rawLength: 0,
      compression: 'lz4',
    });
    expect(c.has(id)).toBe(true);
    expect(c.has(id, 'tree')).toBe(true);
    expect(c.has(id, 'data')).toBe(false);
    expect(c.hasPack(P(1))).toBe(true);
    expect(c.hasPack(P(2))).toBe(false);
    expect(c.lookupBytes(Buffer.from(id, 'hex'))).toEqual(c.lookup(id));
    expect([...c.entries()]).toEqual([[id, c.lookup(id)]]);
    expect([...c.packs()]).toEqual([P(1)]);
  });

  it('finds nothing for absent or malformed ids', () => {
    const c = new CompactIndex();
    const id = 'ab'.repeat(32);
    c.addPack(P(1), [{ id, type: 'data', offset: 0, length: 40, rawLength: 12, compression: 'none' }]);
    for (const bad of [
      'cd'.repeat(32),
      'AB'.repeat(32),
      'ab'.repeat(31),
      `${'ab'.repeat(32)}0`,
      `${'ab'.repeat(31)}g0`,
      `${'ab'.repeat(31)}\u0100b`,
      `${'ab'.repeat(31)}a\u00e1`,
      // Same first 8 bytes as a stored id (only those are parsed before a candidate is found).
      `${'ab'.repeat(8)}${'cd'.repeat(24)}`,
      `${'ab'.repeat(8)}${'AB'.repeat(24)}`,
      `${'ab'.repeat(8)}${'zz'.repeat(24)}`,
      `${'ab'.repeat(31)}aB`,
      '',
    ]) {
      expect(c.lookup(bad)).toBeUndefined();
      expect(c.lookupAll(bad)).toEqual([]);
      expect(c.has(bad)).toBe(false);
      expect(c.has(bad, 'data')).toBe(false);
    }
    expect(c.lookupBytes(new Uint8Array(32))).toBeUndefined();
    expect(c.lookupBytes(new Uint8Array(31))).toBeUndefined();
    expect(c.lookupBytes(Buffer.from(id + id, 'hex'))).toBeUndefined();
  });

  it('refuses to add an id that is not 64 lowercase hex digits', () => {
    const c = new CompactIndex();
    for (const id of ['AB'.repeat(32), 'blob1', 'ab'.repeat(33)]) {
      let err: unknown;
      try {
        c.addPack(P(1), [{ id, type: 'data', offset: 0, length: 40, rawLength: 12, compression: 'none' }]);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ForgeError);
      expect((err as ForgeError).code).toBe('FORGE_FORMAT');
    }
  });

  it('keeps the first location, ignores repeats from the same pack, and lists alternates', () => {
    const c = new CompactIndex();
    const m = new MasterIndex();
    const id = '01'.repeat(32);
    const loc = (offset: number) =>
      ({ id, type: 'data', offset, length: 40, rawLength: 12, compression: 'zstd' }) as const;
    for (const x of [c, m]) {
      x.addPack(P(1), [loc(0), loc(100)]);
      x.addPack(P(2), [loc(200), loc(300)]);
      x.addPack(P(1), [loc(400)]);
      x.addPack(P(3), [loc(500)]);
      x.addPack(P(2), [loc(600)]);
    }
    expect(c.lookupAll(id).map((l) => [l.packId, l.offset])).toEqual([
      [P(1), 0],
      [P(2), 200],
      [P(3), 500],
    ]);
    expectSame(c, m, [id], [P(1), P(2), P(3), P(4)]);
  });

  it('promotes an alternate when the primary pack is dropped, and counts like MasterIndex', () => {
    const c = new CompactIndex();
    const m = new MasterIndex();
    const a = 'aa'.repeat(32);
    const b = 'bb'.repeat(32);
    const d = 'dd'.repeat(32);
    const e = (id: string, offset: number) =>
      ({ id, type: 'tree', offset, length: 40, rawLength: 12, compression: 'none' }) as const;
    for (const x of [c, m]) {
      x.addPack(P(1), [e(a, 0), e(b, 50), e(d, 90)]);
      x.addPack(P(2), [e(a, 100)]);
      x.addPack(P(3), [e(a, 200), e(b, 250)]);
      x.addPack(P(4), []);
    }
    expect(c.dropPacksNotIn(new Set([P(1), P(2), P(3), P(4)]))).toEqual({ packs: 0, blobs: 0 });
    const present = new Set([P(3)]);
    expect(c.dropPacksNotIn(present)).toEqual(m.dropPacksNotIn(present));
    expect(c.lookup(a)?.packId).toBe(P(3));
    expect(c.lookup(b)?.offset).toBe(250);
    expect(c.lookup(d)).toBeUndefined();
    expect([...c.entries()].map(([id]) => id)).toEqual([a, b]);
    expectSame(c, m, [a, b, d], [P(1), P(2), P(3), P(4)]);
    // Pack ordinals are reused: a new pack must not inherit anything from a dropped one.
    for (const x of [c, m]) x.addPack(P(5), [e(d, 7), e(a, 8)]);
    expect(c.lookupAll(a).map((l) => l.packId)).toEqual([P(3), P(5)]);
    expectSame(c, m, [a, b, d], [P(1), P(2), P(3), P(4), P(5)]);
  });

  it('keeps locations that do not fit the compact fields verbatim', () => {
    const c = new CompactIndex();
    const m = new MasterIndex();
    const rnd = rng(7);
    const ids = Array.from({ length: 50 }, () => hexId(rnd));
    for (const x of [c, m]) x.addPack(P(1), []);
    const entries = ids.map((id, i) => entry(id, rnd, i % 2 === 0));
    const later = ids.map((id, i) => entry(id, rnd, i % 3 === 0));
    for (const x of [c, m]) {
      x.addPack(P(1), entries);
      x.addPack(P(2), later);
    }
    expect(c.lookup(ids[0]!)?.offset).toBe(m.lookup(ids[0]!)?.offset);
    const z = 'ee'.repeat(32);
    c.addPack(P(3), [{ id: z, type: 'data', offset: -0, length: 40, rawLength: 0, compression: 'none' }]);
    expect(Object.is(c.lookup(z)?.offset, -0)).toBe(true);
    expect(Object.is(c.lookup(z)?.rawLength, 0)).toBe(true);
    for (const x of [c, m]) x.dropPacksNotIn(new Set([P(1), P(2)]));
    expectSame(c, m, ids, [P(1), P(2)]);
    const present = new Set([P(2)]);
    expect(c.dropPacksNotIn(present)).toEqual(m.dropPacksNotIn(present));
    expectSame(c, m, ids, [P(1), P(2)]);
  });

  it('adds index files', () => {
    const c = new CompactIndex();
    const m = new MasterIndex();
    const rnd = rng(11);
    const ids = Array.from({ length: 30 }, () => hexId(rnd));
    const file = {
      packs: [
        { id: P(1), blobs: ids.slice(0, 20).map((id) => entry(id, rnd)) },
        { id: P(2), blobs: ids.slice(10).map((id) => entry(id, rnd)) },
      ],
    };
    c.addIndexFile(file);
    m.addIndexFile(file);
    expectSame(c, m, ids, [P(1), P(2)]);
  });

  for (const seed of [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]) {
    it(`behaves like MasterIndex on a random sequence of operations (seed ${seed})`, () => {
      const rnd = rng(seed * 7919);
      const c = new CompactIndex();
      const m = new MasterIndex();
      const ids = Array.from({ length: 40 + rnd(200) }, () => hexId(rnd));
      const absent = Array.from({ length: 10 }, () => hexId(rnd));
      const packIds = Array.from({ length: 3 + rnd(12) }, (_, i) => P(i));
      for (let step = 0; step < 60; step++) {
        const op = rnd(10);
        if (op < 6) {
          const pack = packIds[rnd(packIds.length)]!;
          const entries = Array.from({ length: rnd(30) }, () =>
            entry(ids[rnd(ids.length)]!, rnd, rnd(20) === 0),
          );
          c.addPack(pack, entries);
          m.addPack(pack, entries);
        } else if (op < 8) {
          const file = {
            packs: Array.from({ length: 1 + rnd(3) }, () => ({
              id: packIds[rnd(packIds.length)]!,
              blobs: Array.from({ length: rnd(20) }, () => entry(ids[rnd(ids.length)]!, rnd)),
            })),
          };
          c.addIndexFile(file);
          m.addIndexFile(file);
        } else {
          const present = new Set(packIds.filter(() => rnd(3) !== 0));
          if (rnd(4) === 0) present.add(P(999));
          expect(c.dropPacksNotIn(present)).toEqual(m.dropPacksNotIn(present));
        }
        expectSame(c, m, step % 10 === 9 ? [...ids, ...absent] : ids.slice(0, 20), packIds);
      }
      expectSame(c, m, [...ids, ...absent], packIds);
    });
  }

  it('grows across many resizes, stays ≤ 64 bytes per entry from 2^16 entries on, and drops', () => {
    const c = new CompactIndex();
    const ids: string[] = [];
    const bytes = randomBytes(32 * 300_000);
    let worst = 0;
    for (let p = 0; p < 300; p++) {
      const entries: Entry[] = [];
      for (let k = 0; k < 1000; k++) {
        const i = p * 1000 + k;
        const id = bytes.toString('hex', i * 32, i * 32 + 32);
        ids.push(id);
        entries.push({ id, type: 'data', offset: k * 100, length: 100, rawLength: i, compression: 'zstd' });
      }
      // One entry at a time around the worst points, so every size is checked.
      for (const e of entries) {
        c.addPack(P(p), [e]);
        if (c.size >= 2 ** 16) worst = Math.max(worst, c.byteLength / c.size);
      }
    }
    expect(c.size).toBe(300_000);
    expect(worst).toBeGreaterThan(55);
    expect(worst).toBeLessThanOrEqual(64);
    for (let i = 0; i < ids.length; i += 7) {
      const l = c.lookup(ids[i]!);
      expect(l?.rawLength).toBe(i);
      expect(l?.packId).toBe(P(Math.floor(i / 1000)));
    }
    const misses = randomBytes(32 * 10_000);
    let found = 0;
    for (let i = 0; i < 10_000; i++) if (c.has(misses.toString('hex', i * 32, i * 32 + 32))) found++;
    expect(found).toBe(0);

    const present = new Set(Array.from({ length: 300 }, (_, p) => P(p)).filter((_, p) => p % 3 !== 0));
    expect(c.dropPacksNotIn(present)).toEqual({ packs: 100, blobs: 100_000 });
    expect(c.size).toBe(200_000);
    let n = 0;
    for (const [id, loc] of c.entries()) {
      expect(id).toBe(ids[loc.rawLength]);
      n++;
    }
    expect(n).toBe(200_000);
    for (let i = 0; i < ids.length; i += 5) {
      const kept = Math.floor(i / 1000) % 3 !== 0;
      expect(c.lookup(ids[i]!)?.rawLength).toBe(kept ? i : undefined);
    }
  });

  it('yields each blob once with its primary location from entries()', () => {
    const c = new CompactIndex();
    const rnd = rng(99);
    const ids = Array.from({ length: 500 }, () => hexId(rnd));
    for (let p = 0; p < 10; p++)
      c.addPack(
        P(p),
        ids.map((id) => entry(id, rnd)),
      );
    const seen = new Map<string, BlobLocation>();
    for (const [id, loc] of c.entries()) {
      expect(seen.has(id)).toBe(false);
      seen.set(id, loc);
      expect(loc.packId).toBe(P(0));
      expect(c.lookupAll(id)).toHaveLength(10);
    }
    expect([...seen.keys()]).toEqual(ids);
  });
});
