import { Buffer } from 'node:buffer';
import { ForgeError } from '@backupforge/common';
import type { CompressionAlgorithm } from '../compression.ts';
import { type BlobLocation, type BlobType, locationIn } from '../format/blob-codec.ts';
import type { PackEntry } from '../format/pack.ts';
import type { IndexFile, IndexPack } from '../master-index.ts';

/*
 * A drop-in replacement for `MasterIndex` that keeps the blob-id → location map in typed
 * arrays instead of a `Map<string, object>`, so that it costs ≤ 64 bytes per blob.
 *
 * Layout
 * - A slab of 48-byte records (12 u32 words) in insertion order, in fixed-size chunks of 2^12
 *   records (one Uint32Array of 192 KiB per chunk, allocated as needed: growing never copies
 *   the slab and wastes at most one partly filled chunk):
 *     words 0-7   the full blob id (ids are keyed hashes: uniformly random)
 *     word 8      pack ordinal (into the pack-id table) << 8 | meta, where meta is
 *                 bit 0 type, bits 1-2 compression, bit 3 "has alternates",
 *                 bit 4 "location kept verbatim in #odd"
 *     word 9-11   offset, length, rawLength
 *   A record spans at most two cache lines, so a hit reads the table and one or two lines.
 * - An open-addressing hash table (linear probing, 2^k slots, load ≤ 0.75) in a Uint32Array:
 *   4 B per slot, i.e. 5.3–10.7 B per entry depending on the load. The home slot comes from
 *   the id's first word. A slot holds record index + 1 (0 = empty) in its low k bits — enough,
 *   since the table never holds more than 0.75 × 2^k entries — and the high 32 - k bits of the
 *   id's second word as a fingerprint, so probing past other entries (misses in particular)
 *   almost never touches the slab (8 fingerprint bits at 10 M entries).
 *   The table is derived from the slab, so growing frees the old table and builds one twice as
 *   large from the slab (the old table, ≤ 5.3 B/entry, is garbage until V8 reclaims it).
 *   Worst point (load just above 0.375 after a doubling): 48 + 10.7 = 58.7 B/entry plus the
 *   unfilled part of the last chunk (< 192 KiB) and ~150 B per pack for the pack-id table,
 *   i.e. ≤ 64 B/entry from 2^16 entries on (below that it is at most ~0.25 MB in all).
 * - Blobs stored more than once (rare) keep their further locations in a Map keyed by hex id,
 *   as MasterIndex does. Locations whose numbers are not u32 or whose type/compression is not
 *   one of the known strings (never produced by validated index files or the pack writer) are
 *   kept verbatim in a Map too, so the semantics stay exactly those of MasterIndex.
 *
 * Differences from MasterIndex
 * - Blob ids must be 64 lowercase hex digits: adding any other id throws FORGE_FORMAT (index
 *   files are validated to that form and the pack writer only produces it). Looking one up just
 *   finds nothing, as with MasterIndex.
 * - At most 2^24 packs at a time (FORGE_RANGE beyond) and 2^31 slots (~1.6 G blobs).
 * - Locations are built on demand: `lookup` returns an equal but new object on every call.
 * - Do not change the index while iterating `entries()`.
 */

const CHUNK_BITS = 12;
const CHUNK = 1 << CHUNK_BITS;
const CHUNK_MASK = CHUNK - 1;
/** u32 words per record. */
const W = 12;
const MIN_SLOTS = 1024;
const MAX_LOAD = 0.75;
/** Record index + 1 must fit the low bits of a slot, which a mask (an int32) selects. */
const MAX_SLOTS = 2 ** 31;
const MAX_PACKS = 2 ** 24;

const META_TREE = 0x01;
const META_COMPRESSION_SHIFT = 1;
const META_ALT = 0x08;
const META_ODD = 0x10;

const TYPES: readonly BlobType[] = ['data', 'tree'];
const COMPRESSIONS: readonly CompressionAlgorithm[] = ['none', 'zstd', 'lz4'];

const HEX_VALUE = (() => {
  const t = new Int8Array(128).fill(-1);
  for (let c = 0; c < 10; c++) t[48 + c] = c;
  for (let c = 0; c < 6; c++) t[97 + c] = 10 + c;
  return t;
})();

type LocationFields = Pick<BlobLocation, 'type' | 'offset' | 'length' | 'rawLength' | 'compression'>;

function isU32(v: number): boolean {
  return v >>> 0 === v && (v !== 0 || 1 / v > 0);
}

function typeCode(t: string): number {
  return t === 'data' ? 0 : t === 'tree' ? 1 : -1;
}

function compressionCode(c: string): number {
  return c === 'none' ? 0 : c === 'zstd' ? 1 : c === 'lz4' ? 2 : -1;
}

/** Hash-table slots needed for `n` entries. */
function slotsFor(n: number): number {
  let s = MIN_SLOTS;
  while (n > s * MAX_LOAD) s *= 2;
  if (s > MAX_SLOTS) throw new ForgeError('FORGE_RANGE', `an index of ${n} blobs is too large`);
  return s;
}

/**
 * The in-memory map from blob id to location, merged from all index files, in ≤ 64 bytes per
 * blob. Same API and behaviour as `MasterIndex` (see the notes at the top of this file), plus
 * {@link lookupBytes} and {@link byteLength}.
 */
export class CompactIndex {
  /** Slab chunks of records, and the same memory as Buffers (for hex ids). */
  readonly #chunks: Uint32Array[] = [];
  readonly #chunkBytes: Buffer[] = [];
  #count = 0;

  #table = new Uint32Array(MIN_SLOTS);
  #mask = MIN_SLOTS - 1;
  #limit = MIN_SLOTS * MAX_LOAD;
  /** Set by #find when the id is absent: the slot where it would go. */
  #emptySlot = 0;

  /** The id being looked up or added, as words and as bytes. */
  readonly #scratch = new Uint32Array(8);
  readonly #scratchBytes = new Uint8Array(this.#scratch.buffer);

  /** Further copies of blobs stored more than once, by hex id. */
  readonly #alternates = new Map<string, BlobLocation[]>();
  /** Locations that do not fit the record fields, by hex id. */
  readonly #odd = new Map<string, BlobLocation>();

  /** Pack id → ordinal; its key order is the order packs were first added. */
  readonly #packOrdinals = new Map<string, number>();
  readonly #packIds: (string | undefined)[] = [];
  readonly #freeOrdinals: number[] = [];

  get size(): number {
    return this.#count;
  }

  get packCount(): number {
    return this.#packOrdinals.size;
  }

  /** Bytes of the typed arrays (slab chunks and hash table); excludes the pack table and maps. */
  get byteLength(): number {
    return this.#chunks.length * CHUNK * W * 4 + this.#table.length * 4;
  }

  addPack(packId: string, entries: readonly (PackEntry | IndexPack['blobs'][number])[]): void {
    let ord = this.#packOrdinals.get(packId);
    if (ord === undefined) {
      ord = this.#freeOrdinals.pop() ?? this.#packIds.length;
      if (ord >= MAX_PACKS) throw new ForgeError('FORGE_RANGE', `more than ${MAX_PACKS} packs in the index`);
      this.#packIds[ord] = packId;
      this.#packOrdinals.set(packId, ord);
    }
    const s = this.#scratch;
    for (const e of entries) {
      if (!this.#parseHex(e.id)) {
        throw new ForgeError(
          'FORGE_FORMAT',
          `blob id ${String(e.id).slice(0, 12)} is not 64 lowercase hex digits`,
        );
      }
      const found = this.#find();
      if (found < 0) {
        if (this.#count >= this.#limit) {
          this.#rebuild(slotsFor(this.#count + 1));
          this.#find();
        }
        const i = this.#count;
        const c = i >>> CHUNK_BITS;
        if (c === this.#chunks.length) this.#addChunk();
        const r = this.#chunks[c]!;
        r.set(s, (i & CHUNK_MASK) * W);
        this.#store(r, (i & CHUNK_MASK) * W, ord, e, packId, e.id, 0);
        this.#table[this.#emptySlot] = (s[1]! & ~this.#mask) | (i + 1);
        this.#count = i + 1;
        continue;
      }
      const r = this.#chunks[found >>> CHUNK_BITS]!;
      const b = (found & CHUNK_MASK) * W;
      const word = r[b + 8]!;
      if (word >>> 8 === ord) continue;
      let alts = this.#alternates.get(e.id);
      if (!alts) {
        alts = [];
        this.#alternates.set(e.id, alts);
        r[b + 8] = word | META_ALT;
      }
      if (!alts.some((a) => a.packId === packId)) {
        alts.push(locationIn(packId, e));
      }
    }
  }

  addIndexFile(file: IndexFile): void {
    for (const p of file.packs) this.addPack(p.id, p.blobs);
  }

  /** Forgets every blob of every pack not in `present`; returns what was dropped. */
  dropPacksNotIn(present: ReadonlySet<string>): { packs: number; blobs: number } {
    const goneIds: string[] = [];
    const gone = new Uint8Array(this.#packIds.length);
    for (const [p, ord] of this.#packOrdinals) {
      if (!present.has(p)) {
        goneIds.push(p);
        gone[ord] = 1;
      }
    }
    if (goneIds.length === 0) return { packs: 0, blobs: 0 };
    const goneSet = new Set(goneIds);
    for (const [id, alts] of this.#alternates) {
      const kept = alts.filter((a) => !goneSet.has(a.packId));
      if (kept.length > 0) this.#alternates.set(id, kept);
      else this.#alternates.delete(id);
    }
    let blobs = 0;
    let w = 0;
    const n = this.#count;
    for (let i = 0; i < n; i++) {
      const r = this.#chunks[i >>> CHUNK_BITS]!;
      const b = (i & CHUNK_MASK) * W;
      const word = r[b + 8]!;
      const m = word & 0xff;
      if (gone[word >>> 8] === 1) {
        const hex = m & (META_ALT | META_ODD) ? this.#hex(i) : '';
        if (m & META_ODD) this.#odd.delete(hex);
        const alts = m & META_ALT ? this.#alternates.get(hex) : undefined;
        const alt = alts?.shift();
        if (!alts || !alt) {
          if (m & META_ALT) this.#alternates.delete(hex);
          blobs++;
          continue;
        }
        let keepAlt = META_ALT;
        if (alts.length === 0) {
          this.#alternates.delete(hex);
          keepAlt = 0;
        }
        this.#store(r, b, this.#packOrdinals.get(alt.packId)!, alt, alt.packId, hex, keepAlt);
      } else if (m & META_ALT && !this.#alternates.has(this.#hex(i))) {
        r[b + 8] = word & ~META_ALT;
      }
      if (w !== i) {
        const to = this.#chunks[w >>> CHUNK_BITS]!;
        const tb = (w & CHUNK_MASK) * W;
        for (let k = 0; k < W; k++) to[tb + k] = r[b + k]!;
      }
      w++;
    }
    this.#count = w;
    const chunks = Math.ceil(w / CHUNK);
    this.#chunks.length = chunks;
    this.#chunkBytes.length = chunks;
    this.#rebuild(slotsFor(w));
    for (const p of goneIds) {
      const ord = this.#packOrdinals.get(p)!;
      this.#packOrdinals.delete(p);
      this.#packIds[ord] = undefined;
      this.#freeOrdinals.push(ord);
    }
    return { packs: goneIds.length, blobs };
  }

  lookup(id: string): BlobLocation | undefined {
    const i = this.#findHex(id);
    return i < 0 ? undefined : this.#location(i);
  }

  /** {@link lookup} by the id's 32 bytes (no hex conversion). */
  lookupBytes(id: Uint8Array): BlobLocation | undefined {
    if (id.length !== 32) return undefined;
    this.#scratchBytes.set(id);
    const i = this.#find();
    return i < 0 ? undefined : this.#location(i);
  }

  /** Every known location of a blob, the primary first. */
  lookupAll(id: string): BlobLocation[] {
    const i = this.#findHex(id);
    if (i < 0) return [];
    const first = this.#location(i);
    if (!(this.#chunks[i >>> CHUNK_BITS]![(i & CHUNK_MASK) * W + 8]! & META_ALT)) return [first];
    return [first, ...(this.#alternates.get(id) ?? [])];
  }

  has(id: string, type?: BlobType): boolean {
    const i = this.#findHex(id);
    if (i < 0) return false;
    if (type === undefined) return true;
    const m = this.#chunks[i >>> CHUNK_BITS]![(i & CHUNK_MASK) * W + 8]! & 0xff;
    if (m & META_ODD) return this.#odd.get(id)?.type === type;
    return TYPES[m & META_TREE] === type;
  }

  hasPack(packId: string): boolean {
    return this.#packOrdinals.has(packId);
  }

  /** Every blob once with its primary location, in the order the blobs were first added. */
  *entries(): IterableIterator<[string, BlobLocation]> {
    for (let i = 0; i < this.#count; i++) yield [this.#hex(i), this.#location(i)];
  }

  packs(): IterableIterator<string> {
    return this.#packOrdinals.keys();
  }

  // ---- internals ----

  /** Parses a 64-digit lowercase hex id into the scratch id; false when it is not one. */
  #parseHex(id: string): boolean {
    return typeof id === 'string' && id.length === 64 && this.#parseBytes(id, 0, 32);
  }

  /**
   * Parses bytes [from, to) of a 64-character id into the scratch id; false when they are not
   * lowercase hex.
   */
  #parseBytes(id: string, from: number, to: number): boolean {
    const b = this.#scratchBytes;
    for (let k = from; k < to; k++) {
      const a = id.charCodeAt(2 * k);
      const c = id.charCodeAt(2 * k + 1);
      if ((a | c) > 127) return false;
      const hi = HEX_VALUE[a]!;
      const lo = HEX_VALUE[c]!;
      if ((hi | lo) < 0) return false;
      b[k] = (hi << 4) | lo;
    }
    return true;
  }

  /**
   * Looks up a hex id parsing only its first 8 bytes up front (enough to probe the table: a
   * miss rarely needs more), the rest when a record matches them. The record index, or -1
   * when the id is absent or not 64 lowercase hex digits.
   */
  #findHex(id: string): number {
    if (typeof id !== 'string' || id.length !== 64 || !this.#parseBytes(id, 0, 8)) return -1;
    return this.#find(id);
  }

  /**
   * The record index of the scratch id, or -1 when it is absent (then #emptySlot is the slot
   * where it would go, unless `pending` was given). With `pending`, only the first two words
   * of the scratch id are parsed yet; the rest is parsed from it on the first candidate.
   */
  #find(pending?: string): number {
    const s = this.#scratch;
    const w0 = s[0]!;
    const w1 = s[1]!;
    const table = this.#table;
    const mask = this.#mask;
    const high = ~mask;
    let slot = w0 & mask;
    for (;;) {
      const v = table[slot]!;
      if (v === 0) {
        this.#emptySlot = slot;
        return -1;
      }
      if (((v ^ w1) & high) === 0) {
        const i = (v & mask) - 1;
        const r = this.#chunks[i >>> CHUNK_BITS]!;
        const b = (i & CHUNK_MASK) * W;
        if (r[b] === w0 && r[b + 1] === w1) {
          if (pending !== undefined) {
            if (!this.#parseBytes(pending, 8, 32)) return -1;
            pending = undefined;
          }
          if (
            r[b + 2] === s[2] &&
            r[b + 3] === s[3] &&
            r[b + 4] === s[4] &&
            r[b + 5] === s[5] &&
            r[b + 6] === s[6] &&
            r[b + 7] === s[7]
          ) {
            return i;
          }
        }
      }
      slot = (slot + 1) & mask;
    }
  }

  /** Replaces the hash table by one of `slots` slots indexing the whole slab. */
  #rebuild(slots: number): void {
    // Let go of the old table before allocating the new one.
    this.#table = new Uint32Array(0);
    const table = new Uint32Array(slots);
    const mask = slots - 1;
    const high = ~mask;
    for (let i = 0; i < this.#count; i++) {
      const r = this.#chunks[i >>> CHUNK_BITS]!;
      const b = (i & CHUNK_MASK) * W;
      let slot = r[b]! & mask;
      while (table[slot] !== 0) slot = (slot + 1) & mask;
      table[slot] = (r[b + 1]! & high) | (i + 1);
    }
    this.#table = table;
    this.#mask = mask;
    this.#limit = Math.floor(slots * MAX_LOAD);
  }

  #addChunk(): void {
    const r = new Uint32Array(CHUNK * W);
    this.#chunks.push(r);
    this.#chunkBytes.push(Buffer.from(r.buffer, r.byteOffset, r.byteLength));
  }

  /** Writes the location of the record at word `b` of chunk `r` (its id is already there). */
  #store(
    r: Uint32Array,
    b: number,
    ord: number,
    e: LocationFields,
    packId: string,
    hex: string,
    alt: number,
  ): void {
    const t = typeCode(e.type);
    const z = compressionCode(e.compression);
    const wasOdd = r[b + 8]! & META_ODD;
    if (t >= 0 && z >= 0 && isU32(e.offset) && isU32(e.length) && isU32(e.rawLength)) {
      r[b + 8] = (ord << 8) | t | (z << META_COMPRESSION_SHIFT) | alt;
      r[b + 9] = e.offset;
      r[b + 10] = e.length;
      r[b + 11] = e.rawLength;
      if (wasOdd) this.#odd.delete(hex);
    } else {
      r[b + 8] = (ord << 8) | META_ODD | alt;
      this.#odd.set(hex, locationIn(packId, e));
    }
  }

  #hex(i: number): string {
    const o = (i & CHUNK_MASK) * W * 4;
    return this.#chunkBytes[i >>> CHUNK_BITS]!.toString('hex', o, o + 32);
  }

  #location(i: number): BlobLocation {
    const r = this.#chunks[i >>> CHUNK_BITS]!;
    const b = (i & CHUNK_MASK) * W;
    const word = r[b + 8]!;
    if (word & META_ODD) return this.#odd.get(this.#hex(i))!;
    return {
      packId: this.#packIds[word >>> 8]!,
      type: TYPES[word & META_TREE]!,
      offset: r[b + 9]!,
      length: r[b + 10]!,
      rawLength: r[b + 11]!,
      compression: COMPRESSIONS[(word >>> META_COMPRESSION_SHIFT) & 3]!,
    };
  }
}
