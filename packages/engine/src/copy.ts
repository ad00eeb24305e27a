import { createHash } from 'node:crypto';
import {
  ForgeError,
  type Reporter,
  type Snapshot,
  type SnapshotId,
  type SnapshotRecord,
  silentReporter,
  toForgeError,
} from '@backupforge/common';
import { type Chunker, createChunker } from './chunker/index.ts';
import { blobId } from './crypto/master-key.ts';
import type { BlobType, SealedBlob } from './format/blob-codec.ts';
import type { ChunkerConfig } from './format/config.ts';
import { encodeTree, type TreeNode } from './format/tree.ts';
import { Semaphore } from './internal/concurrency.ts';
import { GcPacer } from './internal/gc.ts';
import { InOrder } from './internal/in-order.ts';
import { type BlobProcessor, createBlobProcessor } from './internal/worker-pool.ts';
import { RepositoryLock } from './lock.ts';
import { PackWriter } from './pack-writer.ts';
import type { Repository } from './repository.ts';
import { matchesFilter, resolveSnapshotRef, type SnapshotFilter } from './snapshot-filter.ts';

export interface CopyOptions {
  /** Source snapshots to copy (`latest`, ids, id prefixes; `latest` honours `filter`). Default: every source snapshot matching `filter`. */
  readonly snapshots?: readonly string[];
  /** Host/tag/path filter on the source snapshots (CLI `--host`, `--tag`, `--path`). */
  readonly filter?: SnapshotFilter;
  /** Read and compute everything, write nothing to either repository (no locks either). */
  readonly dryRun?: boolean;
  /** Do not take a lock on the source (read-only storage). A prune there may then break the copy. */
  readonly noSourceLock?: boolean;
  readonly reporter?: Reporter;
  readonly signal?: AbortSignal;
  /** Worker threads that hash, compress and encrypt for the destination (default as for backup; 0 = this thread). */
  readonly workers?: number;
}

/**
 * How data blobs were carried over: `same` when both repositories have identical chunker
 * parameters (algorithm, sizes, seed) and each source blob maps to one destination blob; `rechunk`
 * when they differ and file contents were cut again by the destination's chunker.
 */
export type CopyChunking = 'same' | 'rechunk';

export interface CopiedSnapshot {
  /** The source snapshot. */
  readonly source: SnapshotId;
  /** Recorded as `original` in the copy: the source's own `original`, else its id. */
  readonly original: SnapshotId;
  /** The new snapshot in the destination (undefined for a dry run). */
  readonly copy: SnapshotId | undefined;
}

export interface SkippedSnapshot {
  readonly source: SnapshotId;
  /** The destination snapshot that already is a copy of it. */
  readonly existing: SnapshotId;
}

export interface CopyResult {
  readonly chunking: CopyChunking;
  /** Snapshots copied (or that would be, for a dry run), oldest first. */
  readonly copied: readonly CopiedSnapshot[];
  readonly skipped: readonly SkippedSnapshot[];
  /** Ids of the new destination snapshots (empty for a dry run). */
  readonly snapshotIds: readonly SnapshotId[];
  /** Blobs added to the destination, their plaintext bytes and their bytes as stored in packs. */
  readonly dataBlobs: number;
  readonly treeBlobs: number;
  readonly bytesAdded: number;
  readonly bytesAddedPacked: number;
  /** Data blobs loaded from the source and their plaintext bytes (memoized files are not read). */
  readonly blobsRead: number;
  readonly bytesRead: number;
}

const HEX64 = /^[0-9a-f]{64}$/;
/** Data blobs loaded from the source at the same time. */
const LOADS = 16;
/** Files the walk has started copying and that are not stored yet, at most. */
const QUEUED_FILES = 256;
/** Files re-chunked at the same time (each holds a carry buffer of max chunk + slice). */
const RECHUNKS = 2;
/** Blobs loaded ahead of the re-chunker. */
const PREFETCH = 4;
const SLICE = 4 * 1024 * 1024;
/** Blobs smaller than this are hashed on this thread, larger ones on the workers. */
const HASH_HERE = 64 * 1024;
/** Bytes of re-cut chunks being hashed and sealed on the workers at once (per copy). */
const SEALING = 16 * 1024 * 1024;

type CopySnapshot = Snapshot & { readonly original?: SnapshotId };

/** The `original` of a snapshot made by copy (format spec §8), if it has a valid one. */
export function snapshotOriginal(s: Snapshot): SnapshotId | undefined {
  const o = (s as CopySnapshot).original;
  return typeof o === 'string' && HEX64.test(o) ? o : undefined;
}

/** True when two chunker configs cut identical chunks (for `fixed`, the seed does not matter). */
export function sameChunkerParams(a: ChunkerConfig, b: ChunkerConfig): boolean {
  return (
    a.algorithm === b.algorithm &&
    a.min === b.min &&
    a.avg === b.avg &&
    a.max === b.max &&
    (a.algorithm === 'fixed' || a.seed === b.seed)
  );
}

function persistentId(s: SnapshotRecord): SnapshotId {
  return snapshotOriginal(s) ?? s.id;
}

function pathsKey(paths: readonly string[]): string {
  return [...paths].sort().join('\0');
}

function aborted(): ForgeError {
  return new ForgeError('FORGE_ABORTED', 'copy was cancelled; snapshots already copied are kept', {
    hint: 'run the copy again: it skips what was copied and reuses data already uploaded',
  });
}

/**
 * Copies snapshots from `src` into `dst` (restic `copy`). Blob ids are keyed per repository, so
 * every tree is rewritten with destination ids; data is stored only when the destination lacks
 * it. With identical chunker parameters blobs map 1:1, otherwise file contents are re-chunked
 * with the destination's chunker (so they deduplicate against its own backups). A source
 * snapshot already copied (its id or `original` appears as an `original`, or id, in `dst`) is
 * skipped. Data unchanged since an earlier copy of the same host and paths is mapped without
 * being read, from a walk of the earlier copy's trees beside its source.
 *
 * Writes packs, then index files, then each snapshot (format spec §11), one snapshot at a time:
 * an interrupted copy keeps the snapshots finished, and a new run reuses the uploaded packs.
 * Takes a shared lock on both repositories (none for a dry run).
 *
 * ```ts
 * const r = await copySnapshots(src, dst, { filter: { hosts: ['nas'] } });
 * console.log(r.chunking, r.snapshotIds, r.skipped.length);
 * ```
 */
export async function copySnapshots(
  src: Repository,
  dst: Repository,
  opts: CopyOptions = {},
): Promise<CopyResult> {
  const reporter = opts.reporter ?? silentReporter;
  if (src.config.id === dst.config.id) {
    throw new ForgeError('FORGE_USAGE', 'source and destination are the same repository', {
      hint: 'give a different repository with --from-repo',
    });
  }
  await src.loadIndex();
  await dst.loadIndex();
  // Self-heal as backup does: blobs whose pack is gone are stored again rather than referenced.
  const onStorage = new Set<string>();
  for await (const p of dst.backend.list('pack')) onStorage.add(p.name);
  const dropped = dst.index.dropPacksNotIn(onStorage);
  if (dropped.packs > 0) {
    reporter({
      type: 'warning',
      phase: 'copy',
      code: 'FORGE_NOT_FOUND',
      message: `${dropped.packs} pack${dropped.packs === 1 ? ' is' : 's are'} missing from the destination; their ${dropped.blobs} blobs will be stored again if needed ('forge check' tells more)`,
    });
  }
  const dry = opts.dryRun ?? false;
  let srcLock: RepositoryLock | undefined;
  let dstLock: RepositoryLock | undefined;
  let processor: BlobProcessor | undefined;
  let run: CopyRun | undefined;
  try {
    if (!dry && !opts.noSourceLock) srcLock = await RepositoryLock.acquire(src.backend, { exclusive: false });
    if (!dry) dstLock = await RepositoryLock.acquire(dst.backend, { exclusive: false });
    const srcSnaps = await src.listSnapshots();
    const selected = selectSnapshots(srcSnaps, opts);
    const dstSnaps = await dst.listSnapshots();

    const chunking: CopyChunking = sameChunkerParams(src.config.chunker, dst.config.chunker)
      ? 'same'
      : 'rechunk';
    // The destination's hashing, compression and encryption run on worker threads; this thread
    // reads and opens the source's blobs (and re-cuts them when the chunkers differ).
    processor = createBlobProcessor({
      encKey: dst.keys.encKey,
      macKey: dst.keys.macKey,
      compression: dst.config.compression,
      ...(opts.workers !== undefined ? { workers: opts.workers } : {}),
    });
    run = new CopyRun(src, dst, chunking, dry, processor, reporter, opts.signal);
    reporter({ type: 'start', phase: 'copy' });

    /** Persistent id → destination snapshot carrying it (as `original`, or as its own id). */
    const copies = new Map<string, SnapshotRecord>();
    for (const d of dstSnaps) {
      copies.set(d.id, d);
      const o = snapshotOriginal(d);
      if (o) copies.set(o, d);
    }
    const srcByPersistent = new Map<string, SnapshotRecord>();
    const srcById = new Map<string, SnapshotRecord>();
    for (const s of srcSnaps) {
      srcByPersistent.set(persistentId(s), s);
      srcById.set(s.id, s);
    }
    /** Destination snapshots usable as memo bases: `[dst copy, its source]`. */
    const bases: { dst: SnapshotRecord; src: SnapshotRecord; learned: boolean }[] = [];
    for (const d of dstSnaps) {
      const o = snapshotOriginal(d);
      const s = o ? srcByPersistent.get(o) : undefined;
      if (s && d.repairedFrom === undefined) bases.push({ dst: d, src: s, learned: false });
    }

    const copied: CopiedSnapshot[] = [];
    const skipped: SkippedSnapshot[] = [];
    const snapshotIds: SnapshotId[] = [];
    for (const s of selected) {
      if (opts.signal?.aborted) throw aborted();
      const pid = persistentId(s);
      const existing = copies.get(s.id) ?? copies.get(pid);
      if (existing) {
        skipped.push({ source: s.id, existing: existing.id });
        continue;
      }
      // Memo base: the newest earlier copy of the same host and paths.
      const want = pathsKey(s.paths);
      const base = bases
        .filter((b) => b.dst.hostname === s.hostname && pathsKey(b.dst.paths) === want)
        .at(-1);
      if (base && !base.learned) {
        base.learned = true;
        await run.learn(base.src.tree, base.dst.tree);
      }
      const tree = await run.copyTree(s.tree, '');
      await run.flush();

      const { id: _id, parent: srcParent, repairedFrom: _r, ...body } = s as CopySnapshot & SnapshotRecord;
      const parentSrc = srcParent ? srcById.get(srcParent) : undefined;
      const parent = parentSrc ? copies.get(persistentId(parentSrc))?.id : undefined;
      const snapshot: CopySnapshot = {
        ...body,
        tree,
        ...(parent ? { parent } : {}),
        original: pid,
      };
      let copyId: SnapshotId | undefined;
      if (opts.signal?.aborted) throw aborted();
      if (!dry) {
        await dstLock?.check();
        copyId = await dst.saveSnapshot(snapshot);
        snapshotIds.push(copyId);
        const record: SnapshotRecord = { ...snapshot, id: copyId };
        copies.set(pid, record);
        copies.set(copyId, record);
        bases.push({ dst: record, src: s, learned: true });
      } else {
        // A dry run cannot name the copy; later selections of the same original are still skipped.
        const record: SnapshotRecord = { ...snapshot, id: s.id };
        copies.set(pid, record);
      }
      copied.push({ source: s.id, original: pid, copy: copyId });
    }
    run.progress(true);
    reporter({ type: 'done', phase: 'copy' });
    const st = run.stats;
    return {
      chunking,
      copied,
      skipped,
      snapshotIds,
      dataBlobs: st.blobs.data,
      treeBlobs: st.blobs.tree,
      bytesAdded: st.rawBytes,
      bytesAddedPacked: st.packedBytes,
      blobsRead: run.blobsRead,
      bytesRead: run.bytesRead,
    };
  } finally {
    // After a failure, the pack being written leaves no temporary file (a no-op after success).
    await run?.discard();
    await processor?.close();
    await dstLock?.release().catch(() => {});
    await srcLock?.release().catch(() => {});
  }
}

/** The source snapshots to consider, oldest first, each once. */
function selectSnapshots(all: readonly SnapshotRecord[], opts: CopyOptions): SnapshotRecord[] {
  if (!opts.snapshots?.length) return all.filter((s) => matchesFilter(s, opts.filter));
  const picked = new Map<string, SnapshotRecord>();
  for (const ref of opts.snapshots) {
    const s = resolveSnapshotRef(all, ref, opts.filter);
    picked.set(s.id, s);
  }
  return all.filter((s) => picked.has(s.id));
}

/** Where copied blobs go: a PackWriter, or for a dry run only the bookkeeping. */
class Sink {
  readonly #repo: Repository;
  readonly #writer: PackWriter | undefined;
  readonly #claimed = new Set<string>();
  readonly #dryStats = { blobs: { data: 0, tree: 0 }, rawBytes: 0, packedBytes: 0 };

  constructor(repo: Repository, dry: boolean, processor: BlobProcessor) {
    this.#repo = repo;
    this.#writer = dry ? undefined : new PackWriter(repo, { hashPack: (bytes) => processor.hashPack(bytes) });
  }

  get stats(): { blobs: Record<BlobType, number>; rawBytes: number; packedBytes: number } {
    return this.#writer?.stats ?? this.#dryStats;
  }

  has(id: string, type: BlobType): boolean {
    if (this.#writer) return this.#writer.has(id, type);
    return this.#claimed.has(id) || this.#repo.index.has(id, type);
  }

  claim(id: string, type: BlobType): boolean {
    if (this.#writer) return this.#writer.claim(id, type);
    if (this.has(id, type)) return false;
    this.#claimed.add(id);
    return true;
  }

  async add(blob: SealedBlob): Promise<void> {
    if (this.#writer) return this.#writer.add(blob);
    this.#dryStats.blobs[blob.type]++;
    this.#dryStats.rawBytes += blob.rawLength;
    this.#dryStats.packedBytes += blob.sealed.length;
  }

  async flush(): Promise<void> {
    await this.#writer?.flush();
  }

  /** Discards what the pack writer has not finished (see `PackWriter.discard`). */
  async discard(): Promise<void> {
    await this.#writer?.discard();
  }
}

class CopyRun {
  readonly #src: Repository;
  readonly #dst: Repository;
  readonly #chunking: CopyChunking;
  readonly #reporter: Reporter;
  readonly #signal: AbortSignal | undefined;
  readonly #sink: Sink;
  readonly #processor: BlobProcessor;
  readonly #loads = new Semaphore(LOADS);
  readonly #rechunks = new Semaphore(RECHUNKS);
  readonly #sealing = new Semaphore(SEALING);
  readonly #queued = new Semaphore(QUEUED_FILES);
  /**
   * Each source blob arrives in fresh buffers (read, decrypted, decompressed) that V8 collects
   * late: a full collection every 64 MiB read. Half-size copy: 286–314 → 270–278 MiB, ~4% slower.
   */
  readonly #gc = new GcPacer(64 * 1024 * 1024);
  readonly #order: InOrder<SealedBlob>;
  /** The first failure of a file being copied behind the walk: stops the walk. */
  #failure: unknown;
  /** Chunkers and their carry buffers, reused from file to file (a fresh 12 MiB buffer per file made V8 collect nonstop). */
  readonly #chunkers: { chunker: Chunker; buf: Buffer }[] = [];
  /** Source id → destination id, for tree and data blobs (`same` chunking). */
  readonly #trees = new Map<string, string>();
  readonly #data = new Map<string, string>();
  /** Digest of a file's source content ids → its destination content (`rechunk`). */
  readonly #files = new Map<string, readonly string[]>();
  readonly #inflight = new Map<string, Promise<string>>();
  readonly #inflightFiles = new Map<string, Promise<readonly string[]>>();
  blobsRead = 0;
  bytesRead = 0;
  #filesDone = 0;
  #bytesDone = 0;
  #path = '';
  #lastReport = 0;

  constructor(
    src: Repository,
    dst: Repository,
    chunking: CopyChunking,
    dry: boolean,
    processor: BlobProcessor,
    reporter: Reporter,
    signal: AbortSignal | undefined,
  ) {
    this.#src = src;
    this.#dst = dst;
    this.#chunking = chunking;
    this.#processor = processor;
    this.#reporter = reporter;
    this.#signal = signal;
    this.#sink = new Sink(dst, dry, processor);
    this.#order = new InOrder<SealedBlob>((blob) => this.#sink.add(blob));
  }

  get stats(): Sink['stats'] {
    return this.#sink.stats;
  }

  progress(force = false): void {
    const now = Date.now();
    if (!force && now - this.#lastReport < 100) return;
    this.#lastReport = now;
    this.#reporter({
      type: 'progress',
      phase: 'backup',
      filesDone: this.#filesDone,
      bytesDone: this.#bytesDone,
      currentPath: this.#path,
    });
  }

  flush(): Promise<void> {
    return this.#sink.flush();
  }

  /** Discards what the pack writer has not finished (see `PackWriter.discard`). */
  discard(): Promise<void> {
    return this.#sink.discard();
  }

  #checkAbort(): void {
    if (this.#signal?.aborted) throw aborted();
  }

  /**
   * Walks a source tree and its copy in the destination in lockstep and records which source
   * ids map to which destination ids (trees only are read). A subtree is recorded only when its
   * copy matches it entry by entry (every field but the ids), so a damaged or rewritten copy
   * only costs speed. Returns whether the pair matched.
   */
  async learn(srcTree: string, dstTree: string): Promise<boolean> {
    if (this.#trees.get(srcTree) === dstTree) return true;
    this.#checkAbort();
    let a: readonly TreeNode[];
    let b: readonly TreeNode[];
    try {
      a = (await this.#src.loadTree(srcTree)).nodes;
      b = (await this.#dst.loadTree(dstTree)).nodes;
    } catch (e) {
      const fe = toForgeError(e);
      this.#reporter({
        type: 'warning',
        phase: 'backup',
        code: fe.code,
        message: `earlier copy unreadable, its data will be read again: ${fe.message}`,
      });
      return false;
    }
    if (a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) {
      const x = a[i]!;
      const y = b[i]!;
      if (!sameNodeMetadata(x, y)) return false;
    }
    let ok = true;
    for (let i = 0; i < a.length; i++) {
      const x = a[i]!;
      const y = b[i]!;
      if (x.type === 'dir') {
        if (!x.subtree || !y.subtree || !(await this.learn(x.subtree, y.subtree))) ok = false;
      } else if (x.type === 'file') {
        if (!this.#learnFile(x.content ?? [], y.content ?? [])) ok = false;
      }
    }
    if (ok) this.#trees.set(srcTree, dstTree);
    return ok;
  }

  #learnFile(from: readonly string[], to: readonly string[]): boolean {
    if (this.#chunking === 'rechunk') {
      if (from.length > 0) this.#files.set(contentKey(from), to);
      return true;
    }
    if (from.length !== to.length) return false;
    let ok = true;
    for (let j = 0; j < from.length; j++) {
      const s = this.#src.index.lookup(from[j]!);
      const d = this.#dst.index.lookup(to[j]!);
      if (s && d && s.rawLength === d.rawLength) this.#data.set(from[j]!, to[j]!);
      else ok = false;
    }
    return ok;
  }

  /** Copies a source tree (and everything below it) into the destination; returns its new id. */
  async copyTree(srcTree: string, path: string): Promise<string> {
    const { done } = await this.#queueTree(srcTree, path);
    return done;
  }

  /**
   * Walks a source tree depth-first, in order, and starts copying each file as it goes, without
   * waiting for them (at most QUEUED_FILES wait at once): the blobs are loaded and stored in the
   * order a backup stores them, so small files stay together in the destination's packs, and the
   * workers never wait for a directory to finish. `done` resolves with the tree's new id once
   * everything below it is stored.
   */
  async #queueTree(srcTree: string, path: string): Promise<{ done: Promise<string> }> {
    this.#checkAbort();
    if (this.#failure) throw this.#failure;
    const hit = this.#trees.get(srcTree);
    if (hit !== undefined && this.#sink.has(hit, 'tree')) return { done: Promise.resolve(hit) };
    const nodes = [...(await this.#src.loadTree(srcTree)).nodes];
    const work: Promise<void>[] = [];
    const watch = (p: Promise<void>) => {
      p.catch((e: unknown) => {
        this.#failure ??= e;
      });
      work.push(p);
    };
    for (const [i, n] of nodes.entries()) {
      if (n.type === 'file') {
        await this.#queued.acquire();
        if (this.#failure) {
          this.#queued.release();
          throw this.#failure;
        }
        const where = `${path}/${n.name}`;
        const file = await this.#startFile(n.content ?? [], where);
        watch(
          file.done
            .then((content) => {
              nodes[i] = { ...n, content };
              this.#filesDone++;
              this.#bytesDone += n.size ?? 0;
              this.#path = where;
              this.progress();
            })
            .finally(() => this.#queued.release()),
        );
      } else if (n.type === 'dir' && n.subtree) {
        const sub = await this.#queueTree(n.subtree, `${path}/${n.name}`);
        watch(
          sub.done.then((subtree) => {
            nodes[i] = { ...n, subtree };
          }),
        );
      }
    }
    const done = Promise.all(work).then(async () => {
      const id = await this.#store('tree', encodeTree({ nodes }));
      this.#trees.set(srcTree, id);
      return id;
    });
    done.catch(() => {});
    return { done };
  }

  /**
   * Starts copying a file. With the same chunker its blobs are started here, in order, each once
   * a load slot is free (so the walk waits here when the workers are busy); re-cut files start
   * whole. Resolves, once started, to the promise of the file's new content.
   */
  async #startFile(content: readonly string[], where: string): Promise<{ done: Promise<string[]> }> {
    let done: Promise<string[]>;
    if (this.#chunking === 'same') {
      const blobs: Promise<string>[] = [];
      for (const id of content) blobs.push((await this.#startBlob(id)).done);
      done = Promise.all(blobs);
    } else if (this.#wholeChunk(content)) {
      // Re-cut, a file no larger than the smallest chunk is one chunk: its blob as it is.
      const known = this.#files.get(contentKey(content));
      if (known?.every((id) => this.#sink.has(id, 'data'))) done = Promise.resolve([...known]);
      else done = (await this.#startBlob(content[0]!)).done.then((id) => [id]);
    } else done = this.#rechunkFile(content).then((ids) => [...ids]);
    const named = done.catch((e: unknown) => {
      const fe = toForgeError(e);
      if (fe.code === 'FORGE_ABORTED' || fe.code === 'FORGE_INTERNAL') throw fe;
      throw new ForgeError(fe.code, `cannot copy ${where}: ${fe.message}`, {
        cause: e,
        ...(fe.hint ? { hint: fe.hint } : {}),
      });
    });
    named.catch(() => {});
    return { done: named };
  }

  /** Whether a file's content is one non-empty source blob no larger than the destination's smallest chunk. */
  #wholeChunk(content: readonly string[]): boolean {
    if (content.length !== 1) return false;
    const loc = this.#src.index.lookup(content[0]!);
    return loc !== undefined && loc.rawLength > 0 && loc.rawLength <= this.#dst.config.chunker.min;
  }

  /** Starts copying one data blob once a load slot is free (a blob already copied or on its way is not copied again). */
  async #startBlob(srcId: string): Promise<{ done: Promise<string> }> {
    const known = this.#data.get(srcId);
    if (known !== undefined && this.#sink.has(known, 'data')) return { done: Promise.resolve(known) };
    const inflight = this.#inflight.get(srcId);
    if (inflight) return { done: inflight };
    // The slot is held until the blob is stored: at most LOADS plaintexts are in memory.
    await this.#loads.acquire();
    const turn = this.#order.take();
    const p = this.#store('data', this.#load(srcId), turn)
      .then((hex) => {
        this.#data.set(srcId, hex);
        return hex;
      })
      .finally(() => {
        this.#loads.release();
        this.#inflight.delete(srcId);
      });
    p.catch(() => {});
    this.#inflight.set(srcId, p);
    return { done: p };
  }

  async #limited<T>(fn: () => Promise<T>): Promise<T> {
    await this.#loads.acquire();
    try {
      return await fn();
    } finally {
      this.#loads.release();
    }
  }

  async #load(srcId: string): Promise<Uint8Array> {
    this.#checkAbort();
    const plain = await this.#src.loadBlob('data', srcId);
    this.blobsRead++;
    this.bytesRead += plain.length;
    this.#gc.add(plain.length);
    return plain;
  }

  #rechunkFile(content: readonly string[]): Promise<readonly string[]> {
    if (content.length === 0) return Promise.resolve([]);
    const key = contentKey(content);
    const known = this.#files.get(key);
    if (known?.every((id) => this.#sink.has(id, 'data'))) return Promise.resolve(known);
    let p = this.#inflightFiles.get(key);
    if (!p) {
      p = (async () => {
        await this.#rechunks.acquire();
        try {
          const ids = await this.#rechunk(content);
          this.#files.set(key, ids);
          return ids;
        } finally {
          this.#rechunks.release();
        }
      })().finally(() => this.#inflightFiles.delete(key));
      this.#inflightFiles.set(key, p);
    }
    return p;
  }

  /** Streams a file's plaintext (its source blobs in order) through the destination's chunker. */
  async #rechunk(content: readonly string[]): Promise<string[]> {
    const cfg = this.#dst.config.chunker;
    const kept = this.#chunkers.pop();
    const chunker = kept?.chunker ?? createChunker(cfg, Buffer.from(cfg.seed, 'hex'));
    const buf = kept?.buf ?? Buffer.allocUnsafe(cfg.max + SLICE);
    chunker.reset();
    // Chunks are hashed and sealed on the workers while the next ones are cut; ids stay in order.
    const ids: Promise<string>[] = [];
    const ahead: Promise<Uint8Array>[] = [];
    let next = 0;
    const fetch = () => {
      while (ahead.length < PREFETCH && next < content.length) {
        const id = content[next++]!;
        const p = this.#limited(() => this.#load(id));
        p.catch(() => {});
        ahead.push(p);
      }
    };
    let start = 0;
    let end = 0;
    const drain = async (eof: boolean) => {
      for (;;) {
        const cut = chunker.cut(buf, start, end, eof);
        if (cut < 0) break;
        const cost = Math.min(SEALING, cut - start);
        await this.#sealing.acquire(cost);
        const chunk = Buffer.from(buf.subarray(start, cut));
        const p = this.#store('data', chunk, this.#order.take()).finally(() => this.#sealing.release(cost));
        p.catch(() => {});
        ids.push(p);
        start = cut;
      }
      if (start > 0) {
        buf.copyWithin(0, start, end);
        end -= start;
        start = 0;
      }
    };
    try {
      fetch();
      while (ahead.length > 0) {
        const plain = await ahead.shift()!;
        fetch();
        for (let off = 0; off < plain.length; ) {
          const k = Math.min(buf.length - end, plain.length - off);
          buf.set(plain.subarray(off, off + k), end);
          end += k;
          off += k;
          await drain(false);
        }
      }
      await drain(true);
      const stored = await Promise.all(ids);
      this.#chunkers.push({ chunker, buf });
      return stored;
    } finally {
      await Promise.allSettled([...ahead, ...ids]);
    }
  }

  /**
   * Stores a blob in the destination unless it is there already; returns its destination id.
   * The id is computed, and a new blob sealed, on a worker: `plain` may be moved there. Blobs
   * go into packs in the order of their `turn` (taken where the walk reached them).
   */
  async #store(
    type: BlobType,
    plain: Uint8Array | Promise<Uint8Array>,
    turn = this.#order.take(),
  ): Promise<string> {
    let sealed: SealedBlob | undefined;
    try {
      const data = await plain;
      if (data.length < HASH_HERE) {
        // A small blob: hashing it here costs less than a worker round trip.
        const id = blobId(this.#dst.keys.macKey, data);
        const hex = id.toString('hex');
        if (this.#sink.claim(hex, type)) sealed = await this.#processor.seal(id, type, data);
        return hex;
      }
      const r = await this.#processor.hashAndSeal(type, data, (id) =>
        this.#sink.claim(id.toString('hex'), type),
      );
      sealed = r.sealed;
      return r.id.toString('hex');
    } finally {
      // Every turn is taken up, stored or not, so that later blobs are never held back.
      await this.#order.done(turn, sealed);
    }
  }
}

/** Whether two nodes agree in everything but their blob ids (content, subtree). */
function sameNodeMetadata(a: TreeNode, b: TreeNode): boolean {
  const { content: _ca, subtree: _sa, ...ma } = a;
  const { content: _cb, subtree: _sb, ...mb } = b;
  return JSON.stringify(ma) === JSON.stringify(mb);
}

/** A compact key for a file's list of content ids. */
function contentKey(content: readonly string[]): string {
  const h = createHash('sha256');
  for (const id of content) h.update(id);
  return h.digest('base64');
}
