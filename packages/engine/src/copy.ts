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
import { type BlobType, type SealedBlob, sealBlob } from './format/blob-codec.ts';
import type { ChunkerConfig } from './format/config.ts';
import { encodeTree, type TreeNode } from './format/tree.ts';
import { mapLimit, Semaphore } from './internal/concurrency.ts';
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
const LOADS = 8;
/** Files mapped at the same time within one directory. */
const FILES = 4;
/** Files re-chunked at the same time (each holds a carry buffer of max chunk + slice). */
const RECHUNKS = 2;
/** Blobs loaded ahead of the re-chunker. */
const PREFETCH = 4;
const SLICE = 4 * 1024 * 1024;

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
  try {
    if (!dry && !opts.noSourceLock) srcLock = await RepositoryLock.acquire(src.backend, { exclusive: false });
    if (!dry) dstLock = await RepositoryLock.acquire(dst.backend, { exclusive: false });
    const srcSnaps = await src.listSnapshots();
    const selected = selectSnapshots(srcSnaps, opts);
    const dstSnaps = await dst.listSnapshots();

    const chunking: CopyChunking = sameChunkerParams(src.config.chunker, dst.config.chunker)
      ? 'same'
      : 'rechunk';
    const run = new CopyRun(src, dst, chunking, dry, reporter, opts.signal);
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

  constructor(repo: Repository, dry: boolean) {
    this.#repo = repo;
    this.#writer = dry ? undefined : new PackWriter(repo);
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
}

class CopyRun {
  readonly #src: Repository;
  readonly #dst: Repository;
  readonly #chunking: CopyChunking;
  readonly #reporter: Reporter;
  readonly #signal: AbortSignal | undefined;
  readonly #sink: Sink;
  readonly #loads = new Semaphore(LOADS);
  readonly #rechunks = new Semaphore(RECHUNKS);
  readonly #chunkers: Chunker[] = [];
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
    reporter: Reporter,
    signal: AbortSignal | undefined,
  ) {
    this.#src = src;
    this.#dst = dst;
    this.#chunking = chunking;
    this.#reporter = reporter;
    this.#signal = signal;
    this.#sink = new Sink(dst, dry);
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
    this.#checkAbort();
    const hit = this.#trees.get(srcTree);
    if (hit !== undefined && this.#sink.has(hit, 'tree')) return hit;
    const nodes = [...(await this.#src.loadTree(srcTree)).nodes];
    const files: number[] = [];
    nodes.forEach((n, i) => {
      if (n.type === 'file') files.push(i);
    });
    await mapLimit(files, FILES, async (i) => {
      const n = nodes[i]!;
      const where = `${path}/${n.name}`;
      const content = await this.#mapFile(n.content ?? [], where);
      nodes[i] = { ...n, content };
      this.#filesDone++;
      this.#bytesDone += n.size ?? 0;
      this.#path = where;
      this.progress();
    });
    for (const [i, n] of nodes.entries()) {
      if (n.type === 'dir' && n.subtree)
        nodes[i] = { ...n, subtree: await this.copyTree(n.subtree, `${path}/${n.name}`) };
    }
    const id = await this.#store('tree', encodeTree({ nodes }));
    this.#trees.set(srcTree, id);
    return id;
  }

  async #mapFile(content: readonly string[], where: string): Promise<string[]> {
    try {
      if (this.#chunking === 'same') return await mapLimit(content, LOADS, (id) => this.#mapBlob(id));
      return [...(await this.#rechunkFile(content))];
    } catch (e) {
      const fe = toForgeError(e);
      if (fe.code === 'FORGE_ABORTED' || fe.code === 'FORGE_INTERNAL') throw fe;
      throw new ForgeError(fe.code, `cannot copy ${where}: ${fe.message}`, {
        cause: e,
        ...(fe.hint ? { hint: fe.hint } : {}),
      });
    }
  }

  #mapBlob(srcId: string): Promise<string> {
    const known = this.#data.get(srcId);
    if (known !== undefined && this.#sink.has(known, 'data')) return Promise.resolve(known);
    let p = this.#inflight.get(srcId);
    if (!p) {
      // The slot is held until the blob is stored: at most LOADS plaintexts are in memory.
      p = this.#limited(async () => {
        const hex = await this.#store('data', await this.#load(srcId));
        this.#data.set(srcId, hex);
        return hex;
      }).finally(() => this.#inflight.delete(srcId));
      this.#inflight.set(srcId, p);
    }
    return p;
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
    const chunker = this.#chunkers.pop() ?? createChunker(cfg, Buffer.from(cfg.seed, 'hex'));
    chunker.reset();
    const buf = Buffer.allocUnsafe(cfg.max + SLICE);
    const ids: string[] = [];
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
        ids.push(await this.#store('data', Buffer.from(buf.subarray(start, cut))));
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
      this.#chunkers.push(chunker);
      return ids;
    } finally {
      await Promise.allSettled(ahead);
    }
  }

  /** Stores a blob in the destination unless it is there already; returns its destination id. */
  async #store(type: BlobType, plain: Uint8Array): Promise<string> {
    const id = blobId(this.#dst.keys.macKey, plain);
    const hex = id.toString('hex');
    if (this.#sink.claim(hex, type))
      await this.#sink.add(
        sealBlob(this.#dst.keys.encKey, { id, type, data: plain }, this.#dst.config.compression),
      );
    return hex;
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
