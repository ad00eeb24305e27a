import type { BlobType, SealedBlob } from './format/blob-codec.ts';
import { type FinishedPack, MAX_BLOBS_PER_PACK, PackBuilder, type PackEntry, packId } from './format/pack.ts';
import { Semaphore } from './internal/concurrency.ts';
import { crashPoint } from './internal/crash.ts';
import type { Repository } from './repository.ts';

/**
 * Writes an index file after this many packs, or with the first pack stored once the last index
 * file is this old (restic uses 10 minutes), so a crash or a network failure loses little finished work: the next
 * backup reuses every indexed pack.
 */
const PACKS_PER_INDEX = 64;
const INDEX_MAX_AGE_MS = Number(process.env.FORGE_INDEX_MAX_AGE_MS) || 5 * 60_000;
/** Packs stored concurrently. One upload overlaps with filling the next pack. */
const MAX_UPLOADS = 1;
/**
 * Room beyond the target pack size for the blob that crosses it (≤ max chunk) and a small
 * header; a pack of very many tiny blobs closes early instead, when its header no longer fits.
 */
const PACK_SLACK = 128 * 1024;

/** The size of a data pack buffer: the largest pack the writer builds in one (all but huge trees). */
export function packBufferBytes(config: { packSize: number; chunker: { max: number } }): number {
  return config.packSize + config.chunker.max + PACK_SLACK;
}

/**
 * Names a finished pack (the SHA-256 of its bytes) somewhere else, a worker thread say. `bytes`
 * may be transferred away: use the view that comes back.
 */
export type PackHasher = (bytes: Uint8Array) => Promise<{ id: string; bytes: Uint8Array }>;

export interface PackWriterStats {
  packs: number;
  blobs: Record<BlobType, number>;
  rawBytes: number;
  packedBytes: number;
}

/**
 * Collects sealed blobs into packs of the repository's target size, stores them (one upload
 * overlapping with filling the next pack) and writes index files for stored packs. Order
 * (format spec §11): a pack is durable before any index lists it; `flush()` resolves once
 * every pack and index is durable.
 *
 * Memory is bounded: data packs are built in place in reused buffers (filling, waiting and
 * uploading: at most two), and while a full pack waits for the upload slot every `add` waits
 * too, which stops the readers upstream.
 */
export class PackWriter {
  readonly #repo: Repository;
  readonly #builders: Partial<Record<BlobType, PackBuilder>> = {};
  readonly #uploads = new Set<Promise<void>>();
  readonly #uploadSlots = new Semaphore(MAX_UPLOADS);
  readonly #freeBuffers: Uint8Array[] = [];
  #waiting: Promise<void> | undefined;
  #unindexed: { id: string; entries: readonly PackEntry[] }[] = [];
  /** When the last index file was written (or the writer started). */
  #lastIndexAt = Date.now();
  /** Ids added in this session but not yet in the master index (dedup of in-flight blobs). */
  readonly #pending = new Set<string>();
  #error: unknown;
  readonly stats: PackWriterStats = { packs: 0, blobs: { data: 0, tree: 0 }, rawBytes: 0, packedBytes: 0 };
  readonly #dryRun: boolean;
  readonly #hashPack: PackHasher | undefined;

  /** With `hashPack`, data packs are named by it (off this thread) instead of here. */
  constructor(repo: Repository, opts: { dryRun?: boolean; hashPack?: PackHasher } = {}) {
    this.#repo = repo;
    this.#dryRun = opts.dryRun ?? false;
    this.#hashPack = opts.hashPack;
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

  #builder(type: BlobType): PackBuilder {
    let b = this.#builders[type];
    if (!b) {
      // Tree blobs are few and small: they go into a growable builder.
      b = new PackBuilder(type === 'data' ? this.#takeBuffer() : undefined);
      this.#builders[type] = b;
    }
    return b;
  }

  #takeBuffer(): Uint8Array {
    return this.#freeBuffers.pop() ?? new Uint8Array(packBufferBytes(this.#repo.config));
  }

  /** Copies the blob into the current pack; `blob.sealed` may be reused once this resolves. */
  async add(blob: SealedBlob): Promise<void> {
    while (this.#waiting) await this.#waiting;
    this.#throwIfFailed();
    let b = this.#builder(blob.type);
    if (!b.fits(blob.sealed.length)) {
      if (b.count > 0) {
        await this.#finishGated(blob.type);
        while (this.#waiting) await this.#waiting;
        b = this.#builder(blob.type);
      }
      if (!b.fits(blob.sealed.length)) {
        // Larger than a pack buffer (a huge tree): give it a pack of its own.
        if (b.buffer) this.#freeBuffers.push(b.buffer);
        b = new PackBuilder();
        this.#builders[blob.type] = b;
      }
    }
    b.add(blob);
    this.stats.blobs[blob.type]++;
    this.stats.rawBytes += blob.rawLength;
    this.stats.packedBytes += blob.sealed.length;
    if (b.size >= this.#repo.config.packSize || b.count >= MAX_BLOBS_PER_PACK)
      await this.#finishGated(blob.type);
  }

  #finishGated(type: BlobType): Promise<void> {
    const w = this.#finishPack(type).finally(() => {
      if (this.#waiting === w) this.#waiting = undefined;
    });
    this.#waiting = w;
    return w;
  }

  async #finishPack(type: BlobType): Promise<void> {
    if (!this.#builders[type]?.count) return;
    // Wait for the upload slot before finishing: the full pack stays in its buffer meanwhile,
    // so at most two pack buffers exist (one uploading, one filling or full).
    await this.#uploadSlots.acquire();
    const b = this.#builders[type];
    if (this.#error || !b || b.count === 0) {
      this.#uploadSlots.release();
      if (this.#error) throw this.#error;
      return;
    }
    delete this.#builders[type];
    const unnamed = b.finishUnnamed(this.#repo.keys.encKey);
    /** The pack buffer to reuse once stored: it moves to the hasher and comes back from it. */
    let reuse: Uint8Array | undefined;
    let named: Promise<FinishedPack>;
    if (this.#hashPack && b.buffer) {
      named = this.#hashPack(unnamed.bytes).then((r) => {
        reuse = new Uint8Array(r.bytes.buffer);
        return { id: r.id, bytes: r.bytes, entries: unnamed.entries };
      });
    } else {
      reuse = b.buffer;
      named = Promise.resolve({ id: packId(unnamed.bytes), ...unnamed });
    }
    const done = () => {
      this.#uploads.delete(p);
      this.#uploadSlots.release();
      if (reuse) this.#freeBuffers.push(reuse);
    };
    const p = named
      .then((pack) => this.#upload(pack))
      .then(done, (e) => {
        done();
        this.#error ??= e;
      });
    this.#uploads.add(p);
  }

  async #upload(pack: FinishedPack): Promise<void> {
    if (!this.#dryRun) {
      await this.#repo.backend.save({ type: 'pack', name: pack.id }, pack.bytes);
      crashPoint('backup:pack-saved');
    }
    this.stats.packs++;
    this.#repo.index.addPack(pack.id, pack.entries);
    for (const e of pack.entries) this.#pending.delete(e.id);
    this.#unindexed.push({ id: pack.id, entries: pack.entries });
    if (this.#unindexed.length >= PACKS_PER_INDEX || Date.now() - this.#lastIndexAt >= INDEX_MAX_AGE_MS)
      await this.#writeIndex();
  }

  async #writeIndex(): Promise<void> {
    const packs = this.#unindexed;
    this.#unindexed = [];
    this.#lastIndexAt = Date.now();
    if (packs.length > 0 && !this.#dryRun) {
      await this.#repo.saveIndex(packs);
      crashPoint('backup:index-saved');
    }
  }

  #throwIfFailed(): void {
    if (this.#error) throw this.#error;
  }

  /** Finishes open packs, waits for uploads, writes the remaining index. */
  async flush(): Promise<void> {
    while (this.#waiting) await this.#waiting;
    await this.#finishPack('data');
    await this.#finishPack('tree');
    await Promise.all(this.#uploads);
    this.#throwIfFailed();
    await this.#writeIndex();
    this.#freeBuffers.length = 0;
  }
}
