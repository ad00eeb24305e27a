import { ForgeError } from '@backupforge/common';
import type { CompressionAlgorithm } from './compression.ts';
import { type BlobLocation, type BlobType, locationIn } from './format/blob-codec.ts';
import type { PackEntry } from './format/pack.ts';

/** One pack and its blobs, as index files list them (§7). */
export interface IndexPack {
  readonly id: string;
  readonly blobs: readonly {
    readonly id: string;
    readonly type: BlobType;
    readonly offset: number;
    readonly length: number;
    readonly rawLength: number;
    readonly compression: CompressionAlgorithm;
  }[];
}

export interface IndexFile {
  readonly packs: readonly IndexPack[];
}

const HEX64 = /^[0-9a-f]{64}$/;

export function validateIndexFile(v: unknown, name: string): IndexFile {
  const packs = (v as { packs?: unknown } | null)?.packs;
  const bad = (m: string) =>
    new ForgeError('FORGE_FORMAT', `index ${name.slice(0, 12)} ${m}`, { hint: "run 'forge repair index'" });
  if (!Array.isArray(packs)) throw bad('has no pack list');
  for (const p of packs as IndexPack[]) {
    if (
      !p ||
      typeof p !== 'object' ||
      typeof p.id !== 'string' ||
      !HEX64.test(p.id) ||
      !Array.isArray(p.blobs)
    )
      throw bad('has a malformed pack entry');
    for (const b of p.blobs) {
      if (
        !b ||
        typeof b.id !== 'string' ||
        !HEX64.test(b.id) ||
        (b.type !== 'data' && b.type !== 'tree') ||
        !Number.isSafeInteger(b.offset) ||
        b.offset < 0 ||
        !Number.isSafeInteger(b.length) ||
        b.length < 28 ||
        b.length > 0xffffffff ||
        !Number.isSafeInteger(b.rawLength) ||
        b.rawLength < 0 ||
        b.rawLength > 0xffffffff ||
        !['none', 'zstd', 'lz4'].includes(b.compression)
      ) {
        throw bad('has a malformed blob entry');
      }
    }
  }
  return v as IndexFile;
}

/**
 * The in-memory map from blob id to location, merged from all index files: the simple
 * reference implementation (a Map, ~180 bytes per blob). Repositories use `CompactIndex`
 * (internal/compact-index.ts, ~55 bytes per blob), whose tests check it against this one.
 */
export class MasterIndex {
  readonly #blobs = new Map<string, BlobLocation>();
  /** Further copies of blobs stored more than once (rare: concurrent writers, repacks, self-heal). */
  readonly #alternates = new Map<string, BlobLocation[]>();
  readonly #packs = new Set<string>();

  get size(): number {
    return this.#blobs.size;
  }

  get packCount(): number {
    return this.#packs.size;
  }

  addPack(packId: string, entries: readonly (PackEntry | IndexPack['blobs'][number])[]): void {
    this.#packs.add(packId);
    for (const e of entries) {
      const loc = locationIn(packId, e);
      const first = this.#blobs.get(e.id);
      if (!first) {
        this.#blobs.set(e.id, loc);
        continue;
      }
      if (first.packId === packId) continue;
      const alts = this.#alternates.get(e.id) ?? [];
      if (!alts.some((a) => a.packId === packId)) alts.push(loc);
      this.#alternates.set(e.id, alts);
    }
  }

  addIndexFile(file: IndexFile): void {
    for (const p of file.packs) this.addPack(p.id, p.blobs);
  }

  /** Forgets every blob of every pack not in `present`; returns what was dropped. */
  dropPacksNotIn(present: ReadonlySet<string>): { packs: number; blobs: number } {
    const gone = new Set<string>();
    for (const p of this.#packs) if (!present.has(p)) gone.add(p);
    if (gone.size === 0) return { packs: 0, blobs: 0 };
    let blobs = 0;
    for (const [id, alts] of this.#alternates) {
      const kept = alts.filter((a) => !gone.has(a.packId));
      if (kept.length > 0) this.#alternates.set(id, kept);
      else this.#alternates.delete(id);
    }
    for (const [id, loc] of this.#blobs) {
      if (gone.has(loc.packId)) {
        const alt = this.#alternates.get(id)?.shift();
        if (alt) this.#blobs.set(id, alt);
        else {
          this.#blobs.delete(id);
          blobs++;
        }
      }
    }
    for (const p of gone) this.#packs.delete(p);
    return { packs: gone.size, blobs };
  }

  lookup(id: string): BlobLocation | undefined {
    return this.#blobs.get(id);
  }

  /** Every known location of a blob, the primary first. */
  lookupAll(id: string): BlobLocation[] {
    const first = this.#blobs.get(id);
    return first ? [first, ...(this.#alternates.get(id) ?? [])] : [];
  }

  has(id: string, type?: BlobType): boolean {
    const l = this.#blobs.get(id);
    return l !== undefined && (type === undefined || l.type === type);
  }

  hasPack(packId: string): boolean {
    return this.#packs.has(packId);
  }

  *entries(): IterableIterator<[string, BlobLocation]> {
    yield* this.#blobs.entries();
  }

  packs(): IterableIterator<string> {
    return this.#packs.values();
  }
}

/** One blob of a pack, as index files place it. */
export interface PackedBlob {
  readonly id: string;
  readonly loc: BlobLocation;
}

/**
 * The blobs of every pack the given index files list, each blob once per pack (a pack listed by
 * two index files is merged), in the order the files list them.
 */
export function blobsByPack(files: readonly IndexFile[]): Map<string, PackedBlob[]> {
  const out = new Map<string, PackedBlob[]>();
  const seen = new Map<string, Set<string>>();
  for (const f of files) {
    for (const p of f.packs) {
      let list = out.get(p.id);
      let ids = seen.get(p.id);
      if (!list || !ids) {
        list = [];
        ids = new Set();
        out.set(p.id, list);
        seen.set(p.id, ids);
      }
      for (const b of p.blobs) {
        if (ids.has(b.id)) continue;
        ids.add(b.id);
        list.push({
          id: b.id,
          loc: locationIn(p.id, b),
        });
      }
    }
  }
  return out;
}
