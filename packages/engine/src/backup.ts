import { hostname as osHostname, userInfo } from 'node:os';
import {
  alignedBuffer,
  type BackupSource,
  type ContentReader,
  type FileMetadata,
  ForgeError,
  type ForgeErrorCode,
  InternalError,
  isForgeError,
  type Reporter,
  type Snapshot,
  type SnapshotId,
  type SnapshotRecord,
  type SnapshotSummary,
  type SourceEntry,
  type SourceEvent,
  type SourceWarning,
  silentReporter,
  toForgeError,
} from '@backupforge/common';
import { createChunker } from './chunker/index.ts';
import { SEAL_OVERHEAD } from './crypto/aead.ts';
import { blobId } from './crypto/master-key.ts';
import { sealBlob } from './format/blob-codec.ts';
import { compareNames, encodeTree, nodeFromMetadata, type TreeNode } from './format/tree.ts';
import { BufferPool } from './internal/buffer-pool.ts';
import { Semaphore } from './internal/concurrency.ts';
import { crashPoint } from './internal/crash.ts';
import {
  DIRECT_MIN_SIZE,
  DirectFile,
  readerReads,
  type SequentialReads,
  sequentialReads,
} from './internal/direct-read.ts';
import { GcPacer } from './internal/gc.ts';
import { Prefetcher } from './internal/prefetch.ts';
import { openRegularFile, type ReadFailure, type SmallFileRequest } from './internal/small-files.ts';
import { type BlobProcessor, createBlobProcessor, workerCount } from './internal/worker-pool.ts';
import { RepositoryLock } from './lock.ts';
import { PackWriter } from './pack-writer.ts';
import type { Repository } from './repository.ts';
import { findParentSnapshot, resolveSnapshotRef } from './snapshot-filter.ts';
import { PROGRAM_VERSION } from './version.ts';

export interface BackupOptions {
  readonly tags?: readonly string[];
  /** Hostname recorded in the snapshot (default: this machine's). */
  readonly host?: string;
  /** Parent snapshot ref (`latest`, id, prefix); `false` to read every file. Default: newest snapshot with the same host and paths. */
  readonly parent?: string | false;
  /** Do everything but write to the repository. */
  readonly dryRun?: boolean;
  readonly reporter?: Reporter;
  readonly signal?: AbortSignal;
  /** Worker threads that read small files and compress/encrypt; default: cores - 1, but 2 on a 2-core machine (`FORGE_WORKERS` overrides); 0: same thread. */
  readonly workers?: number;
  /**
   * Read local files of 8 MiB and more with O_DIRECT, around the page cache, where the
   * filesystem allows it (default true; `FORGE_DIRECT_IO=0` turns it off when this is not given).
   * Saves the kernel's copy of every byte out of the page cache, and leaves the machine's cache
   * to what it was caching.
   */
  readonly directIo?: boolean;
  /** Run the source's pre-scan for progress totals (the CLI does on a TTY). */
  readonly scan?: boolean;
  /** Snapshot time (default: now). */
  readonly time?: Date;
}

export interface BackupResult {
  /** Undefined for a dry run. */
  readonly snapshotId: SnapshotId | undefined;
  readonly snapshot: Snapshot;
  readonly parent: SnapshotRecord | undefined;
  readonly warnings: readonly SourceWarning[];
  /** True when some files could not be read: the snapshot is saved but incomplete. */
  readonly partial: boolean;
}

/** Chunk bytes hashed/sealed concurrently; bounds memory whatever the file sizes. */
const IN_FLIGHT_BYTES = 16 * 1024 * 1024;
const READ_SIZE = 4 * 1024 * 1024;
/**
 * Buffers of READ_SIZE the main thread's large-file reads go into: one being cut, the others'
 * reads in flight (direct reads get no kernel read-ahead). Half-size VM image, 2 → 3 buffers:
 * 4.06/4.06/3.69 s → 3.81/3.95/3.81 s; 4 buffers no better.
 */
const READ_BUFFERS = 3;
/** Subdirectory trees of the parent snapshot loaded ahead of the walk, per directory. */
const TREE_PREFETCH = 64;
/** Largest file chunked on a worker's lane (larger ones are chunked on the main thread). */
const LANE_MAX_FILE = (Number(process.env.FORGE_LANE_MAX_MIB) || 64) * 1024 * 1024;
/**
 * Large files chunked on workers' lanes at once (at most one per worker). Two let this thread
 * walk on while two changed files are re-read (half-size backup after mutation: 1.98–2.42 s with
 * one lane, 1.87–2.14 s with two, five rounds each; first backup unchanged within the noise).
 */
const MAX_LANES = 2;
/** Small local files go to a worker in batches of at most this many files or bytes. */
const BATCH_FILES = 128;
const BATCH_BYTES = 1024 * 1024;
/** Batches in flight per worker thread (one being read, others being sealed or packed). */
const BATCHES_PER_WORKER = 3;

/** A small local file waiting in the current batch, with what settles its tree node. */
interface Batched {
  readonly entry: SourceEntry;
  readonly name: string;
  readonly where: string;
  readonly prev: TreeNode | undefined;
  readonly resolve: (node: TreeNode | undefined) => void;
  readonly reject: (e: unknown) => void;
}

interface Frame {
  readonly path: readonly string[];
  readonly meta: FileMetadata | undefined;
  readonly nodes: Promise<TreeNode | undefined>[];
  readonly parent: Map<string, TreeNode> | undefined;
  readonly parentNode: TreeNode | undefined;
}

interface Counters {
  filesNew: number;
  filesChanged: number;
  filesUnmodified: number;
  dirsNew: number;
  dirsChanged: number;
  dirsUnmodified: number;
  files: number;
  bytes: number;
}

function handled<T>(p: Promise<T>): Promise<T> {
  p.catch(() => {});
  return p;
}

/**
 * Backs up a source into the repository and saves a snapshot. Writes packs, then index files,
 * then the snapshot (format spec §11). Files whose size, mtime, ctime and inode match the
 * parent snapshot are not read.
 *
 * ```ts
 * const result = await backup(repo, createFsSource({ paths: ['/home/alice'] }), { tags: ['daily'] });
 * console.log(result.snapshotId, result.partial);
 * ```
 */
export async function backup(
  repo: Repository,
  source: BackupSource,
  opts: BackupOptions = {},
): Promise<BackupResult> {
  const start = opts.time ?? new Date();
  const host = opts.host ?? osHostname();
  // A source may start walking when asked for its iterator (the filesystem source starts its
  // walk worker): that overlaps with loading the index, the lock and the parent snapshot.
  const walk = source.entries(opts.signal)[Symbol.asyncIterator]();
  try {
    return await backupWith(repo, source, walk, opts, start, host);
  } finally {
    await walk.return?.(undefined)?.catch(() => {});
  }
}

async function backupWith(
  repo: Repository,
  source: BackupSource,
  walk: AsyncIterator<SourceEvent>,
  opts: BackupOptions,
  start: Date,
  host: string,
): Promise<BackupResult> {
  const reporter = opts.reporter ?? silentReporter;
  await repo.loadIndex();
  // Self-heal: blobs whose pack has gone missing are forgotten, so this backup stores them again
  // instead of referencing lost data.
  const onStorage = new Set<string>();
  for await (const p of repo.backend.list('pack')) onStorage.add(p.name);
  const dropped = repo.index.dropPacksNotIn(onStorage);
  if (dropped.packs > 0) {
    (opts.reporter ?? silentReporter)({
      type: 'warning',
      phase: 'backup',
      code: 'FORGE_NOT_FOUND',
      message: `${dropped.packs} pack${dropped.packs === 1 ? ' is' : 's are'} missing from the repository; their ${dropped.blobs} blobs will be stored again if needed ('forge check' tells more)`,
    });
  }
  const lock = opts.dryRun ? undefined : await RepositoryLock.acquire(repo.backend, { exclusive: false });
  const processor = createBlobProcessor({
    encKey: repo.keys.encKey,
    macKey: repo.keys.macKey,
    compression: repo.config.compression,
    ...(opts.workers !== undefined ? { workers: opts.workers } : {}),
  });
  const prefetcher = new Prefetcher();
  let run: BackupRun | undefined;
  try {
    const snapshots = await repo.listSnapshots();
    let parent: SnapshotRecord | undefined;
    if (typeof opts.parent === 'string') parent = resolveSnapshotRef(snapshots, opts.parent);
    else if (opts.parent !== false) parent = findParentSnapshot(snapshots, host, source.paths);
    run = new BackupRun(repo, source, processor, prefetcher, reporter, opts);
    const treeId = await run.run(parent, walk);
    const summary: SnapshotSummary = {
      backupStart: start.toISOString(),
      backupEnd: new Date().toISOString(),
      ...run.summaryCounts(),
    };
    const user = safeUser();
    const snapshot: Snapshot = {
      time: start.toISOString(),
      tree: treeId,
      paths: [...source.paths],
      hostname: host,
      username: user.username,
      ...(user.uid >= 0 ? { uid: user.uid, gid: user.gid } : {}),
      tags: [...(opts.tags ?? [])],
      ...(parent ? { parent: parent.id } : {}),
      source: source.kind,
      ...(run.warnings.length > 0 ? { partial: true } : {}),
      programVersion: PROGRAM_VERSION,
      summary,
    };
    let snapshotId: SnapshotId | undefined;
    if (!opts.dryRun) {
      await lock?.check();
      crashPoint('backup:before-snapshot');
      snapshotId = await repo.saveSnapshot(snapshot);
      crashPoint('backup:snapshot-saved');
    }
    reporter({ type: 'done', phase: 'backup' });
    return { snapshotId, snapshot, parent, warnings: run.warnings, partial: run.warnings.length > 0 };
  } finally {
    // After a failure, the pack being written leaves no temporary file (a no-op after success).
    await run?.discard();
    await Promise.all([processor.close(), prefetcher.close()]);
    await lock?.release().catch(() => {});
  }
}

function safeUser(): { username: string; uid: number; gid: number } {
  try {
    const u = userInfo();
    return { username: u.username, uid: u.uid, gid: u.gid };
  } catch {
    return { username: process.env.USER ?? 'unknown', uid: -1, gid: -1 };
  }
}

class BackupRun {
  readonly warnings: SourceWarning[] = [];
  readonly #repo: Repository;
  readonly #source: BackupSource;
  readonly #processor: BlobProcessor;
  readonly #prefetcher: Prefetcher;
  readonly #reporter: Reporter;
  readonly #opts: BackupOptions;
  readonly #writer: PackWriter;
  readonly #inflight = new Semaphore(IN_FLIGHT_BYTES);
  // Chunk buffers are pooled and move to the workers and back, so little dies here: a full
  // collection every 256 MiB read (64 MiB plus a minor one every 4 MiB cost ~10% of a backup
  // after mutation, for no lower peak). FORGE_BACKUP_GC=major,minor (bytes) tunes it.
  readonly #gc = new GcPacer(
    Number(process.env.FORGE_BACKUP_GC?.split(',')[0]) || 256 * 1024 * 1024,
    Number(process.env.FORGE_BACKUP_GC?.split(',')[1]) || Number.POSITIVE_INFINITY,
  );
  readonly #pool = new BufferPool(IN_FLIGHT_BYTES);
  /** Small files read at the same time. */
  readonly #smallSlots = new Semaphore(16);
  /** The chunked path owns the shared read buffer. */
  readonly #readLock = new Semaphore(1);
  readonly #c: Counters = {
    filesNew: 0,
    filesChanged: 0,
    filesUnmodified: 0,
    dirsNew: 0,
    dirsChanged: 0,
    dirsUnmodified: 0,
    files: 0,
    bytes: 0,
  };
  #readBuf: Buffer | undefined;
  #ahead: Buffer[] | undefined;
  #lastReport = 0;
  /** Small local files waiting to go to a worker together. */
  #batch: Batched[] = [];
  #batchBytes = 0;
  readonly #batchSlots = new Semaphore(BATCHES_PER_WORKER);
  /** Output buffers of sealed batches, handed back to the worker for the next batch. */
  readonly #spareOut: Uint8Array[] = [];
  /** Large files being chunked on workers' lanes, and how many may be. */
  #lanes = 0;
  readonly #maxLanes: number;
  readonly #directIo: boolean;
  /** The first error of work that runs behind the walk (directory trees, batches): stops the walk. */
  #failure: unknown;

  constructor(
    repo: Repository,
    source: BackupSource,
    processor: BlobProcessor,
    prefetcher: Prefetcher,
    reporter: Reporter,
    opts: BackupOptions,
  ) {
    this.#repo = repo;
    this.#source = source;
    this.#processor = processor;
    this.#prefetcher = prefetcher;
    this.#reporter = reporter;
    this.#opts = opts;
    // Packs are named (SHA-256 of 16 MiB) on a worker: this thread chunks, packs and reads.
    this.#writer = new PackWriter(repo, {
      dryRun: opts.dryRun ?? false,
      hashPack: (bytes) => processor.hashPack(bytes),
    });
    this.#maxLanes = Math.min(MAX_LANES, workerCount(opts.workers));
    this.#directIo = opts.directIo ?? process.env.FORGE_DIRECT_IO !== '0';
  }

  /** Discards what the pack writer has not finished (see `PackWriter.discard`). */
  discard(): Promise<void> {
    return this.#writer.discard();
  }

  summaryCounts(): Omit<SnapshotSummary, 'backupStart' | 'backupEnd'> {
    const s = this.#writer.stats;
    return {
      filesNew: this.#c.filesNew,
      filesChanged: this.#c.filesChanged,
      filesUnmodified: this.#c.filesUnmodified,
      dirsNew: this.#c.dirsNew,
      dirsChanged: this.#c.dirsChanged,
      dirsUnmodified: this.#c.dirsUnmodified,
      dataBlobs: s.blobs.data,
      treeBlobs: s.blobs.tree,
      dataAdded: s.rawBytes,
      dataAddedPacked: s.packedBytes,
      totalFilesProcessed: this.#c.files,
      totalBytesProcessed: this.#c.bytes,
      warnings: this.warnings.length,
    };
  }

  #warn(w: SourceWarning): void {
    this.warnings.push(w);
    this.#reporter({ type: 'warning', phase: 'backup', path: w.path, code: w.code, message: w.message });
  }

  #progress(path: string, force = false): void {
    const now = Date.now();
    if (!force && now - this.#lastReport < 100) return;
    this.#lastReport = now;
    this.#reporter({
      type: 'progress',
      phase: 'backup',
      filesDone: this.#c.files,
      bytesDone: this.#c.bytes,
      currentPath: path,
    });
  }

  async #loadParentTree(
    node: TreeNode | undefined,
    where: string,
  ): Promise<Map<string, TreeNode> | undefined> {
    if (!node?.subtree) return undefined;
    try {
      const t = await this.#repo.loadTree(node.subtree);
      // The walk visits these directories next: their parent trees load meanwhile.
      const subtrees: string[] = [];
      for (const n of t.nodes) if (n.type === 'dir' && n.subtree) subtrees.push(n.subtree);
      this.#repo.prefetchTrees(subtrees.slice(0, TREE_PREFETCH));
      return new Map(t.nodes.map((n) => [n.name, n]));
    } catch (e) {
      // A damaged parent only costs speed: read everything below this directory.
      this.#reporter({
        type: 'warning',
        phase: 'backup',
        path: where,
        code: toForgeError(e).code,
        message: `parent snapshot tree unreadable, reading all files: ${toForgeError(e).message}`,
      });
      return undefined;
    }
  }

  async run(parent: SnapshotRecord | undefined, walk: AsyncIterator<SourceEvent>): Promise<string> {
    const { signal } = this.#opts;
    this.#reporter({ type: 'start', phase: 'backup' });
    if (this.#opts.scan && this.#source.scan) {
      this.#source.scan(signal).then(
        (t) => this.#reporter({ type: 'totals', phase: 'backup', totalFiles: t.files, totalBytes: t.bytes }),
        () => {},
      );
    }
    const rootParent = parent
      ? await this.#loadParentTree({ subtree: parent.tree } as TreeNode, '/')
      : undefined;
    const stack: Frame[] = [
      { path: [], meta: undefined, nodes: [], parent: rootParent, parentNode: undefined },
    ];
    // Entries at or below a backup target (ancestors like /home for /home/alice don't count).
    const targets = this.#source.paths.map((p) => p.split('/').filter(Boolean));
    let entries = 0;
    // The walk is read one entry at a time, except that a large file may look at whether
    // anything follows it (see `#file`): that entry is then the next one taken.
    let ahead: Promise<IteratorResult<SourceEvent>> | undefined;
    const more = (): Promise<boolean> => {
      ahead ??= walk.next();
      return ahead.then(
        (r) => !r.done,
        () => true, // the walk's error surfaces where the walk is read
      );
    };
    let finished = false;
    try {
      for (;;) {
        const step = await (ahead ?? walk.next());
        ahead = undefined;
        if (step.done) {
          finished = true;
          break;
        }
        const ev = step.value;
        if (signal?.aborted)
          throw new ForgeError('FORGE_ABORTED', 'backup was cancelled; nothing was committed');
        if (this.#failure !== undefined) throw this.#failure;
        if (ev.kind === 'warning') {
          this.#warn(ev);
          continue;
        }
        if (targets.some((t) => t.length <= ev.path.length && t.every((c, i) => c === ev.path[i]))) entries++;
        const depth = ev.path.length;
        if (depth === 0) throw new InternalError('source yielded an entry with an empty path');
        while (stack.length > depth) this.#closeFrame(stack);
        const top = stack[stack.length - 1]!;
        if (stack.length !== depth || top.path.some((c, i) => c !== ev.path[i])) {
          throw new InternalError(`source yielded ${ev.path.join('/')} out of order`);
        }
        const name = ev.path[depth - 1]!;
        const parentNode = top.parent?.get(name);
        if (ev.meta.type === 'dir') {
          const parentMap =
            parentNode?.type === 'dir'
              ? await this.#loadParentTree(parentNode, `/${ev.path.join('/')}`)
              : undefined;
          stack.push({ path: ev.path, meta: ev.meta, nodes: [], parent: parentMap, parentNode });
        } else if (ev.meta.type === 'file') {
          // Reading is sequential (one shared read buffer); hashing and sealing continue in the background.
          const { node } = await this.#file(ev, name, parentNode, more);
          top.nodes.push(handled(node));
        } else {
          top.nodes.push(Promise.resolve(nodeFromMetadata(name, ev.meta)));
        }
      }
    } finally {
      if (!finished) await walk.return?.(undefined).catch(() => {});
    }
    while (stack.length > 1) this.#closeFrame(stack);
    await this.#dispatchBatch();
    const root = stack[0]!;
    if (entries === 0 && this.warnings.length > 0) {
      throw new ForgeError('FORGE_NOT_FOUND', `nothing to back up: ${this.warnings[0]!.message}`, {
        hint: 'check the paths given',
      });
    }
    const rootId = await this.#storeTree(await this.#settle(root));
    await this.#writer.flush();
    this.#progress('', true);
    return rootId;
  }

  async #settle(frame: Frame): Promise<TreeNode[]> {
    const nodes = (await Promise.all(frame.nodes)).filter((n): n is TreeNode => n !== undefined);
    nodes.sort((a, b) => compareNames(a.name, b.name));
    return nodes;
  }

  /**
   * Ends a directory: its tree is stored once all its entries are, behind the walk (its small
   * files may still sit in a batch that later files fill). A failure there stops the walk.
   */
  #closeFrame(stack: Frame[]): void {
    const frame = stack.pop()!;
    const name = frame.path[frame.path.length - 1]!;
    const node = (async () => {
      const subtree = await this.#storeTree(await this.#settle(frame));
      const prev = frame.parentNode;
      if (!prev || prev.type !== 'dir') this.#c.dirsNew++;
      else if (prev.subtree === subtree) this.#c.dirsUnmodified++;
      else this.#c.dirsChanged++;
      return nodeFromMetadata(name, frame.meta!, { subtree });
    })();
    node.catch((e: unknown) => {
      this.#failure ??= e;
    });
    stack[stack.length - 1]!.nodes.push(node);
  }

  async #storeTree(nodes: TreeNode[]): Promise<string> {
    const bytes = encodeTree({ nodes });
    const id = blobId(this.#repo.keys.macKey, bytes);
    const hex = id.toString('hex');
    if (this.#writer.claim(hex, 'tree')) {
      await this.#writer.add(
        sealBlob(this.#repo.keys.encKey, { id, type: 'tree', data: bytes }, this.#repo.config.compression),
      );
    }
    return hex;
  }

  /** Resolves once the file has been read; `node` resolves once its chunks are stored. */
  async #file(
    entry: SourceEntry,
    name: string,
    prev: TreeNode | undefined,
    more: () => Promise<boolean>,
  ): Promise<{ node: Promise<TreeNode | undefined> }> {
    const m = entry.meta;
    const where = `/${entry.path.join('/')}`;
    if (
      prev &&
      prev.type === 'file' &&
      !entry.streamed &&
      prev.size === m.size &&
      prev.mtime === m.mtimeNs.toString() &&
      prev.ctime === m.ctimeNs.toString() &&
      prev.inode === m.inode.toString() &&
      prev.content?.every((id) => this.#writer.has(id, 'data'))
    ) {
      this.#c.filesUnmodified++;
      this.#c.files++;
      this.#c.bytes += m.size;
      this.#progress(where);
      return { node: Promise.resolve(nodeFromMetadata(name, m, { content: [...prev.content] })) };
    }
    const counted = (read: { size: number; content: Promise<string[]> } | undefined) =>
      this.#counted(prev, where, read);
    if (entry.localPath && !entry.streamed && m.size < this.#repo.config.chunker.min) {
      return this.#enqueueSmall(entry, name, where, prev);
    }
    // Files smaller than the minimum chunk are one chunk: many are read at once, each into its
    // own buffer, so their open/read/close calls overlap (tens of thousands of small files).
    if (!entry.streamed && m.size < this.#repo.config.chunker.min) {
      await this.#smallSlots.acquire();
      const done = this.#readSmall(entry, where).finally(() => this.#smallSlots.release());
      return {
        node: done.then(async (r) => {
          const read = counted(r);
          return read
            ? nodeFromMetadata(name, m, { content: await read.content, size: read.size })
            : undefined;
        }),
      };
    }
    // A large file goes to a worker's lane when it is free, so that this thread can walk on and
    // chunk the next one meanwhile. Very large files stay here: the lane copies each new chunk
    // once more, and a lone huge file (a disk image) gains nothing from it (measured slower) —
    // unless it changed since the parent (most of its chunks are known, so little is copied)
    // and more of the walk follows it (the walk would otherwise wait for the whole file).
    if (
      entry.localPath &&
      !entry.streamed &&
      this.#processor.openLane &&
      this.#lanes < this.#maxLanes &&
      (m.size <= LANE_MAX_FILE || ((prev?.content?.length ?? 0) > 0 && (await more())))
    ) {
      this.#lanes++;
      const node = this.#laneFile(entry, name, where, prev).finally(() => {
        this.#lanes--;
      });
      node.catch((e: unknown) => {
        this.#failure ??= e;
      });
      return { node };
    }
    const read = counted(await this.#readLarge(entry, where));
    if (!read) return { node: Promise.resolve(undefined) };
    return { node: read.content.then((content) => nodeFromMetadata(name, m, { content, size: read.size })) };
  }

  #counted<T extends { size: number }>(prev: TreeNode | undefined, where: string, read: T | undefined) {
    if (!read) return undefined;
    if (prev) this.#c.filesChanged++;
    else this.#c.filesNew++;
    this.#c.files++;
    this.#progress(where);
    return read;
  }

  /** Adds a small local file to the current batch; sends the batch when it is full. */
  async #enqueueSmall(
    entry: SourceEntry,
    name: string,
    where: string,
    prev: TreeNode | undefined,
  ): Promise<{ node: Promise<TreeNode | undefined> }> {
    let resolve!: (n: TreeNode | undefined) => void;
    let reject!: (e: unknown) => void;
    const node = handled(
      new Promise<TreeNode | undefined>((res, rej) => {
        resolve = res;
        reject = rej;
      }),
    );
    this.#batch.push({ entry, name, where, prev, resolve, reject });
    this.#batchBytes += entry.meta.size + 1;
    if (this.#batch.length >= BATCH_FILES || this.#batchBytes >= BATCH_BYTES) await this.#dispatchBatch();
    return { node };
  }

  /** Sends the current batch to a worker (waiting while enough batches are in flight). */
  async #dispatchBatch(): Promise<void> {
    if (this.#batch.length === 0) return;
    const items = this.#batch;
    this.#batch = [];
    this.#batchBytes = 0;
    // Read ahead while this batch waits for a slot and the ones before it are read.
    this.#prefetcher.hint(items.map((b) => b.entry.localPath!));
    await this.#batchSlots.acquire();
    this.#runBatch(items)
      .catch((e: unknown) => {
        this.#failure ??= e;
        for (const it of items) it.reject(e);
      })
      .finally(() => this.#batchSlots.release());
  }

  /**
   * One batch: the worker reads the files and computes their ids; the new ones are sealed there
   * and added to packs here. Files that cannot be read are warned about (the backup goes on,
   * partial); files that grew past the small-file size are read again the chunked way.
   */
  async #runBatch(items: Batched[]): Promise<void> {
    const files: SmallFileRequest[] = items.map((b) => ({
      path: b.entry.localPath!,
      size: b.entry.meta.size,
    }));
    const batch = await this.#processor.readSmall(files);
    const want = new Uint8Array(items.length);
    const done: Array<() => void> = [];
    for (let i = 0; i < items.length; i++) {
      const it = items[i]!;
      const r = batch.results[i]!;
      const m = it.entry.meta;
      if (r.error) {
        this.#warnUnreadable(it.where, r.error);
        it.resolve(undefined);
        continue;
      }
      if (r.grew) {
        // It grew past what the walk saw: read it again, chunked (and warned about there).
        this.#readLarge(it.entry, it.where).then((read) => {
          const c = this.#counted(it.prev, it.where, read);
          if (!c) return it.resolve(undefined);
          c.content.then(
            (content) => it.resolve(nodeFromMetadata(it.name, m, { content, size: c.size })),
            it.reject,
          );
        }, it.reject);
        continue;
      }
      const size = r.size;
      this.#c.bytes += size;
      if (size !== m.size) this.#warnSizeChanged(it.where, m.size, size);
      this.#counted(it.prev, it.where, r);
      if (size === 0) {
        it.resolve(nodeFromMetadata(it.name, m, { content: [], size }));
        continue;
      }
      const hex = Buffer.from(batch.ids.buffer, batch.ids.byteOffset + 32 * i, 32).toString('hex');
      if (this.#writer.claim(hex, 'data')) want[i] = 1;
      done.push(() => it.resolve(nodeFromMetadata(it.name, m, { content: [hex], size })));
    }
    const sealed = await batch.seal(want, this.#spareOut.pop());
    for (let i = 0; i < items.length; i++) {
      const b = sealed.blobs[i];
      if (!b) continue;
      await this.#writer.add({
        id: Buffer.from(batch.ids.subarray(32 * i, 32 * i + 32)),
        type: 'data',
        compression: b.compression,
        rawLength: batch.results[i]!.size,
        sealed: sealed.out.subarray(b.at, b.at + b.length),
      });
    }
    if (this.#spareOut.length < BATCHES_PER_WORKER) this.#spareOut.push(sealed.out);
    for (const f of done) f();
  }

  /**
   * A large local file chunked on a worker: each step brings a segment's ids; this thread claims
   * the new ones, and the next step hands them back (and reads on) to be sealed on any worker. Read errors are warnings,
   * as on the main thread's path; every chunk claimed here is stored before this resolves.
   */
  async #laneFile(
    entry: SourceEntry,
    name: string,
    where: string,
    prev: TreeNode | undefined,
  ): Promise<TreeNode | undefined> {
    const m = entry.meta;
    const cfg = this.#repo.config.chunker;
    const lane = this.#processor.openLane!(
      entry.localPath!,
      this.#source.chunking === 'fixed' ? { ...cfg, algorithm: 'fixed' } : cfg,
      this.#directIo,
    );
    const content: string[] = [];
    let want: Uint8Array | undefined;
    /** Ids of the chunks marked in `want`, in order: the next step brings them sealed. */
    let claimed: Buffer[] = [];
    const parts: Promise<void>[] = [];
    let size = 0;
    let failure: ReadFailure | undefined;
    try {
      while (true) {
        if (this.#opts.signal?.aborted)
          throw new ForgeError('FORGE_ABORTED', 'backup was cancelled; nothing was committed');
        const step = await lane.step(want, this.#spareOut.pop());
        if (step.wanted.length !== claimed.length)
          throw new InternalError('file lane handed over other chunks than asked');
        for (let k = 0; k < step.wanted.length; k++) {
          const w = step.wanted[k]!;
          // Into a pool buffer with room to seal in place, then to whichever worker is free.
          const cap = BufferPool.capacity(w.length + SEAL_OVERHEAD);
          await this.#inflight.acquire(cap);
          const chunk = new Uint8Array(this.#pool.get(w.length + SEAL_OVERHEAD), 0, w.length);
          chunk.set(step.out!.subarray(w.at, w.at + w.length));
          this.#gc.add(w.length);
          parts.push(handled(this.#sealAndAdd(claimed[k]!, chunk, cap)));
        }
        if (step.out && this.#spareOut.length < BATCHES_PER_WORKER) this.#spareOut.push(step.out);
        this.#c.bytes += step.size - size;
        size = step.size;
        this.#progress(where);
        if (step.failure) {
          failure = step.failure;
          break;
        }
        if (step.finished) break;
        want = new Uint8Array(step.count);
        claimed = [];
        for (let i = 0; i < step.count; i++) {
          const id = Buffer.from(step.ids.subarray(32 * i, 32 * i + 32));
          const hex = id.toString('hex');
          content.push(hex);
          if (this.#writer.claim(hex, 'data')) {
            want[i] = 1;
            claimed.push(id);
          }
        }
      }
    } finally {
      await lane.close().catch(() => {});
      await Promise.allSettled(parts);
    }
    await Promise.all(parts); // a failed seal or pack write fails the backup
    if (failure) {
      if (failure.code === 'FORGE_INTERNAL') throw new InternalError(failure.message);
      this.#warnUnreadable(where, failure);
      return undefined;
    }
    if (size !== m.size) this.#warnSizeChanged(where, m.size, size);
    this.#counted(prev, where, { size });
    return nodeFromMetadata(name, m, { content, size });
  }

  /** A local file read on a worker could not be opened or read: the backup goes on, partial. */
  #warnUnreadable(where: string, f: ReadFailure): void {
    this.#warn({
      kind: 'warning',
      path: where,
      code: f.code as ForgeErrorCode,
      message: `${f.stage === 'open' ? 'cannot read' : 'error reading'} ${where}: ${f.message}`,
    });
  }

  #warnSizeChanged(where: string, listed: number, read: number): void {
    this.#warn({
      kind: 'warning',
      path: where,
      code: 'FORGE_IO',
      message: `${where} changed size while being read (${listed} → ${read} bytes); saved what was read`,
    });
  }

  /** Opens a file's content, or warns (the backup goes on, partial) and returns undefined. */
  async #open(entry: SourceEntry, where: string): Promise<ContentReader | undefined> {
    try {
      if (!entry.open) throw new InternalError(`file entry ${where} cannot be opened`);
      return await entry.open();
    } catch (e) {
      this.#warnCannotRead(where, e);
      return undefined;
    }
  }

  #warnCannotRead(where: string, e: unknown): void {
    const fe = toForgeError(e);
    this.#warn({
      kind: 'warning',
      path: where,
      code: fe.code,
      message: `cannot read ${where}: ${fe.message}`,
    });
  }

  /**
   * Opens a large local file itself, to read it with O_DIRECT where the system allows, with
   * reads in flight in each of the look-ahead buffers.
   */
  #openLocal(path: string, where: string): SequentialReads | undefined {
    try {
      return sequentialReads(new DirectFile(openRegularFile(path), this.#directIo), this.#aheadBufs(), path);
    } catch (e) {
      this.#warnCannotRead(where, e);
      return undefined;
    }
  }

  /** Page-aligned buffers the chunked path reads into ahead of the chunker. */
  #aheadBufs(): Buffer[] {
    this.#ahead ??= Array.from({ length: READ_BUFFERS }, () => alignedBuffer(READ_SIZE));
    return this.#ahead;
  }

  /** The chunked path, one file at a time (it uses the shared read buffer). */
  async #readLarge(
    entry: SourceEntry,
    where: string,
  ): Promise<{ size: number; content: Promise<string[]> } | undefined> {
    await this.#readLock.acquire();
    try {
      return await this.#readFile(entry, where);
    } finally {
      this.#readLock.release();
    }
  }

  /**
   * Reads a file expected to be smaller than the minimum chunk into a buffer of its own. A file
   * that grew past that since it was listed goes the chunked way instead.
   */
  async #readSmall(
    entry: SourceEntry,
    where: string,
  ): Promise<{ size: number; content: Promise<string[]> } | undefined> {
    const m = entry.meta;
    const want = m.size + 1; // one byte more than expected shows growth
    const cap = BufferPool.capacity(want + SEAL_OVERHEAD);
    await this.#inflight.acquire(cap);
    let owned = true;
    const ab = this.#pool.get(want + SEAL_OVERHEAD);
    const release = () => {
      if (!owned) return;
      owned = false;
      this.#pool.put(ab);
      this.#inflight.release(cap);
    };
    const reader = await this.#open(entry, where);
    if (!reader) {
      release();
      return undefined;
    }
    let size = 0;
    try {
      const view = new Uint8Array(ab, 0, want);
      while (size < want) {
        const n = await reader.read(view.subarray(size));
        if (n === 0) break;
        size += n;
      }
    } catch (e) {
      release();
      const fe = toForgeError(e);
      if (fe.code === 'FORGE_NO_SPACE' || fe.code === 'FORGE_INTERNAL') throw fe;
      this.#warn({
        kind: 'warning',
        path: where,
        code: fe.code,
        message: `error reading ${where}: ${fe.message}`,
      });
      return undefined;
    } finally {
      await reader.close().catch(() => {});
    }
    if (size === want) {
      release();
      return this.#readLarge(entry, where); // it grew: read it again, chunked (and warned about there)
    }
    this.#c.bytes += size;
    if (size !== m.size) this.#warnSizeChanged(where, m.size, size);
    if (size === 0) {
      release();
      return { size, content: Promise.resolve([]) };
    }
    this.#gc.add(size);
    owned = false; // #storeChunk returns the buffer and the budget
    return { size, content: handled(this.#storeChunk(new Uint8Array(ab, 0, size), cap)).then((id) => [id]) };
  }

  /**
   * Reads and chunks one file on this thread; hashing and sealing go to the workers. Resolves
   * when the file has been read (so reading stays sequential and bounded); `content` resolves
   * when every chunk is stored.
   */
  async #readFile(
    entry: SourceEntry,
    where: string,
  ): Promise<{ size: number; content: Promise<string[]> } | undefined> {
    const m = entry.meta;
    const cfg = this.#repo.config.chunker;
    const chunker = createChunker(
      this.#source.chunking === 'fixed' ? { ...cfg, algorithm: 'fixed' } : cfg,
      Buffer.from(cfg.seed, 'hex'),
    );
    const cap = cfg.max + READ_SIZE;
    if (!this.#readBuf || this.#readBuf.length < cap) this.#readBuf = Buffer.allocUnsafe(cap);
    const buf = this.#readBuf;
    const local = entry.localPath && !entry.streamed && m.size >= DIRECT_MIN_SIZE;
    let reads: SequentialReads | undefined;
    if (local) reads = this.#openLocal(entry.localPath!, where);
    else {
      const reader = await this.#open(entry, where);
      const [a, b] = this.#aheadBufs();
      if (reader) reads = readerReads(reader, [a!, b!]);
    }
    if (!reads) return undefined;
    const parts: Promise<string>[] = [];
    let size = 0;
    let start = 0;
    let end = 0;
    let eof = false;
    try {
      while (true) {
        if (this.#opts.signal?.aborted)
          throw new ForgeError('FORGE_ABORTED', 'backup was cancelled; nothing was committed');
        if (!eof && end - start < cfg.max) {
          if (buf.length - end < READ_SIZE) {
            buf.copy(buf, 0, start, end);
            end -= start;
            start = 0;
          }
          // While this thread cuts what it has, the next pieces are being read: on a cold
          // cache the disk and the CPU work at the same time.
          const piece = await reads.next();
          const n = piece.length;
          if (n > 0) buf.set(piece, end);
          else eof = true;
          end += n;
          size += n;
          this.#c.bytes += n;
          continue;
        }
        if (start === end) break;
        const cut = chunker.cut(buf, start, end, eof);
        if (cut < 0) {
          if (eof) throw new InternalError('chunker asked for more data at end of file');
          continue;
        }
        const len = cut - start;
        // Room for the sealed form (+28 bytes) lets the workers seal in place.
        const cap = BufferPool.capacity(len + SEAL_OVERHEAD);
        await this.#inflight.acquire(cap);
        const chunk = new Uint8Array(this.#pool.get(len + SEAL_OVERHEAD), 0, len);
        chunk.set(buf.subarray(start, cut));
        this.#gc.add(len);
        start = cut;
        parts.push(handled(this.#storeChunk(chunk, cap)));
        this.#progress(where);
      }
    } catch (e) {
      const fe = toForgeError(e);
      if (fe.code === 'FORGE_INTERNAL' || fe.code === 'FORGE_NO_SPACE' || isForgeError(e, 'FORGE_ABORTED'))
        throw fe;
      this.#warn({
        kind: 'warning',
        path: where,
        code: fe.code,
        message: `error reading ${where}: ${fe.message}`,
      });
      await Promise.allSettled(parts);
      return undefined;
    } finally {
      await reads.close().catch(() => {});
    }
    if (!entry.streamed && size !== m.size) this.#warnSizeChanged(where, m.size, size);
    return { size, content: Promise.all(parts) };
  }

  async #storeChunk(chunk: Uint8Array, cap: number): Promise<string> {
    // The id is computed on the worker that seals the chunk: this thread only reads and cuts,
    // and it is the bottleneck while a large file goes (a lone disk image above all). The
    // worker holds the chunk until this thread has claimed the id (a second message: seal it,
    // or hand it back as a duplicate). Half-size VM image 4.42–5.19 s → 3.96–4.11 s, first
    // backup 6.23–6.36 s → 5.95–6.31 s; after mutation and the VM re-backup within the noise.
    let back: ArrayBuffer | undefined;
    try {
      const r = await this.#processor.hashAndSeal('data', chunk, (id) =>
        this.#writer.claim(id.toString('hex'), 'data'),
      );
      back = r.back.buffer as ArrayBuffer;
      if (r.sealed) await this.#writer.add(r.sealed);
      return r.id.toString('hex');
    } finally {
      if (back) this.#pool.put(back);
      this.#inflight.release(cap);
    }
  }

  /** Seals a claimed chunk (a pool buffer of `cap` in-flight bytes) on a worker and packs it. */
  async #sealAndAdd(id: Buffer, chunk: Uint8Array, cap: number): Promise<void> {
    let back: ArrayBuffer | undefined;
    try {
      const sealed = await this.#processor.seal(id, 'data', chunk); // the buffer moves and comes back
      back = sealed.sealed.buffer as ArrayBuffer;
      await this.#writer.add(sealed);
    } finally {
      if (back) this.#pool.put(back);
      this.#inflight.release(cap);
    }
  }
}
