import { createHash, type Hash } from 'node:crypto';
import type { ObjectUpload, StorageBackend } from '@backupforge/common';
import type { BlobType, SealedBlob } from './format/blob-codec.ts';
import {
  type FinishedPack,
  MAX_BLOBS_PER_PACK,
  PackBuilder,
  type PackEntry,
  packEntry,
  packId,
  packTrailer,
} from './format/pack.ts';
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
 * Memory is bounded: where the backend takes packs piece by piece (`createUpload`: a local
 * repository), data packs go to storage as their blobs come and are never whole in memory;
 * elsewhere they are built in place in reused buffers (filling, waiting and uploading: at most
 * two). While a full pack waits for the upload slot every `add` waits too, which stops the
 * readers upstream.
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
  /** Whether data packs go to storage as they are filled (the backend has `createUpload`). */
  readonly #spooling: boolean;
  /** The data pack being filled, when spooling. */
  #spool: SpooledPack | undefined;

  /** With `hashPack`, data packs built in memory are named by it (off this thread) instead of here. */
  constructor(repo: Repository, opts: { dryRun?: boolean; hashPack?: PackHasher } = {}) {
    this.#repo = repo;
    this.#dryRun = opts.dryRun ?? false;
    this.#hashPack = opts.hashPack;
    this.#spooling = !this.#dryRun && typeof repo.backend.createUpload === 'function';
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
    if (this.#spooling && blob.type === 'data') return this.#addSpooled(blob);
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

  async #addSpooled(blob: SealedBlob): Promise<void> {
    this.#spool ??= new SpooledPack(this.#repo.backend);
    const s = this.#spool;
    const written = s.add(blob);
    this.stats.blobs.data++;
    this.stats.rawBytes += blob.rawLength;
    this.stats.packedBytes += blob.sealed.length;
    const full = s.size >= this.#repo.config.packSize || s.count >= MAX_BLOBS_PER_PACK;
    // Gate the next adds before waiting for this one's bytes to be taken, so none joins a full pack.
    const finished = full ? this.#finishGated('data') : undefined;
    finished?.catch(() => {}); // awaited below, unless this blob's write fails first
    try {
      await written;
    } catch (e) {
      this.#error ??= e;
      if (this.#spool === s) this.#spool = undefined;
      await s.abort();
      throw e;
    }
    await finished;
  }

  #finishGated(type: BlobType): Promise<void> {
    const w = this.#finishPack(type).finally(() => {
      if (this.#waiting === w) this.#waiting = undefined;
    });
    this.#waiting = w;
    return w;
  }

  async #finishPack(type: BlobType): Promise<void> {
    if (this.#spooling && type === 'data') return this.#finishSpooled();
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

  /** Like the rest of `#finishPack`, for a spooled pack: its trailer, name and commit. */
  async #finishSpooled(): Promise<void> {
    if (!this.#spool?.count) return;
    await this.#uploadSlots.acquire();
    const s = this.#spool;
    if (this.#error || !s || s.count === 0) {
      this.#uploadSlots.release();
      if (this.#error) throw this.#error;
      return;
    }
    this.#spool = undefined;
    const done = () => {
      this.#uploads.delete(p);
      this.#uploadSlots.release();
    };
    const p = s
      .finish(this.#repo.keys.encKey)
      .then(async (pack) => {
        crashPoint('backup:pack-saved');
        await this.#stored(pack);
      })
      .then(done, async (e: unknown) => {
        this.#error ??= e;
        await s.abort();
        done();
      });
    this.#uploads.add(p);
  }

  async #upload(pack: FinishedPack): Promise<void> {
    if (!this.#dryRun) {
      await this.#repo.backend.save({ type: 'pack', name: pack.id }, pack.bytes);
      crashPoint('backup:pack-saved');
    }
    await this.#stored(pack);
  }

  /** Records a stored (durable) pack: the master index, and an index file now and then. */
  async #stored(pack: Pick<FinishedPack, 'id' | 'entries'>): Promise<void> {
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

  /**
   * After a failure (instead of `flush`): discards the data pack being filled, so it leaves no
   * temporary file behind, and waits for the packs being stored.
   */
  async discard(): Promise<void> {
    const s = this.#spool;
    this.#spool = undefined;
    await s?.abort();
    await Promise.allSettled([...this.#uploads]);
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

/**
 * A data pack written to storage as its blobs come (`StorageBackend.createUpload`), named at the
 * end by the SHA-256 hashed along the way. Blobs are taken in the order `add` is called: their
 * offsets, the hash and the bytes written agree whatever the callers await.
 */
class SpooledPack {
  readonly #upload: Promise<ObjectUpload>;
  /** The last write queued (resolves with the upload once its bytes are taken). */
  #tail: Promise<ObjectUpload>;
  readonly #hash: Hash = createHash('sha256');
  readonly #entries: PackEntry[] = [];
  #size = 0;

  constructor(backend: StorageBackend) {
    this.#upload = backend.createUpload!('pack');
    this.#upload.catch(() => {});
    this.#tail = this.#upload;
  }

  get size(): number {
    return this.#size;
  }

  get count(): number {
    return this.#entries.length;
  }

  /** Resolves once the blob's bytes are taken (`blob.sealed` may then be reused). */
  add(blob: SealedBlob): Promise<void> {
    this.#entries.push(packEntry(blob, this.#size));
    this.#size += blob.sealed.length;
    this.#hash.update(blob.sealed);
    return this.#write(blob.sealed);
  }

  /** Writes the trailer and commits the pack under its name. */
  async finish(encKey: Uint8Array): Promise<{ id: string; entries: readonly PackEntry[] }> {
    const trailer = packTrailer(encKey, this.#entries);
    this.#hash.update(trailer);
    await this.#write(trailer);
    const id = this.#hash.digest('hex');
    await (await this.#tail).commit({ type: 'pack', name: id });
    return { id, entries: this.#entries };
  }

  /** Discards the pack (its temporary file). */
  async abort(): Promise<void> {
    await this.#tail.catch(() => {});
    await this.#upload.then(
      (u) => u.abort(),
      () => {},
    );
  }

  #write(bytes: Uint8Array): Promise<void> {
    const next = this.#tail.then(async (u) => {
      await u.write(bytes);
      return u;
    });
    next.catch(() => {});
    this.#tail = next;
    return next.then(() => {});
  }
}
