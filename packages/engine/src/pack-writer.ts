import type { BlobType, SealedBlob } from './format/blob-codec.ts';
import { type FinishedPack, MAX_BLOBS_PER_PACK, PackBuilder, type PackEntry } from './format/pack.ts';
import type { Repository } from './repository.ts';

/** Writes an index file after this many packs, so a crash loses little finished work. */
const PACKS_PER_INDEX = 64;
const MAX_UPLOADS = 2;

export interface PackWriterStats {
  packs: number;
  blobs: Record<BlobType, number>;
  rawBytes: number;
  packedBytes: number;
}

/**
 * Collects sealed blobs into packs of the repository's target size, uploads them (at most two
 * in flight) and writes index files for uploaded packs. Order (§11): a pack is durable before
 * any index lists it; `flush()` resolves once every pack and index is durable.
 */
export class PackWriter {
  readonly #repo: Repository;
  readonly #builders: Record<BlobType, PackBuilder> = { data: new PackBuilder(), tree: new PackBuilder() };
  readonly #uploads = new Set<Promise<void>>();
  #unindexed: { id: string; entries: readonly PackEntry[] }[] = [];
  /** Ids added in this session but not yet in the master index (dedup of in-flight blobs). */
  readonly #pending = new Set<string>();
  #error: unknown;
  readonly stats: PackWriterStats = { packs: 0, blobs: { data: 0, tree: 0 }, rawBytes: 0, packedBytes: 0 };
  readonly #dryRun: boolean;

  constructor(repo: Repository, opts: { dryRun?: boolean } = {}) {
    this.#repo = repo;
    this.#dryRun = opts.dryRun ?? false;
  }

  /** True when the blob is stored or about to be. */
  has(id: string, type: BlobType): boolean {
    return this.#pending.has(id) || this.#repo.index.has(id, type);
  }

  /** Marks an id as being processed, so a concurrent duplicate is not sealed twice. Returns false if known. */
  claim(id: string, type: BlobType): boolean {
    if (this.has(id, type)) return false;
    this.#pending.add(id);
    return true;
  }

  async add(blob: SealedBlob): Promise<void> {
    this.#throwIfFailed();
    const b = this.#builders[blob.type];
    b.add(blob);
    this.stats.blobs[blob.type]++;
    this.stats.rawBytes += blob.rawLength;
    this.stats.packedBytes += blob.sealed.length;
    if (b.size >= this.#repo.config.packSize || b.count >= MAX_BLOBS_PER_PACK)
      await this.#finishPack(blob.type);
  }

  async #finishPack(type: BlobType): Promise<void> {
    const b = this.#builders[type];
    if (b.count === 0) return;
    this.#builders[type] = new PackBuilder();
    const pack = b.finish(this.#repo.keys.encKey);
    while (this.#uploads.size >= MAX_UPLOADS) await Promise.race(this.#uploads);
    this.#throwIfFailed();
    const p = this.#upload(pack).then(
      () => {
        this.#uploads.delete(p);
      },
      (e) => {
        this.#uploads.delete(p);
        this.#error ??= e;
      },
    );
    this.#uploads.add(p);
  }

  async #upload(pack: FinishedPack): Promise<void> {
    if (!this.#dryRun) await this.#repo.backend.save({ type: 'pack', name: pack.id }, pack.bytes);
    this.stats.packs++;
    this.#repo.index.addPack(pack.id, pack.entries);
    for (const e of pack.entries) this.#pending.delete(e.id);
    this.#unindexed.push({ id: pack.id, entries: pack.entries });
    if (this.#unindexed.length >= PACKS_PER_INDEX) await this.#writeIndex();
  }

  async #writeIndex(): Promise<void> {
    const packs = this.#unindexed;
    this.#unindexed = [];
    if (packs.length > 0 && !this.#dryRun) await this.#repo.saveIndex(packs);
  }

  #throwIfFailed(): void {
    if (this.#error) throw this.#error;
  }

  /** Finishes open packs, waits for uploads, writes the remaining index. */
  async flush(): Promise<void> {
    await this.#finishPack('data');
    await this.#finishPack('tree');
    await Promise.all(this.#uploads);
    this.#throwIfFailed();
    await this.#writeIndex();
  }
}
