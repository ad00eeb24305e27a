import {
  ForgeError,
  type ForgeErrorCode,
  type Reporter,
  type RestoreTarget,
  type SnapshotRecord,
  silentReporter,
  toForgeError,
} from '@backupforge/common';
import { findNode, splitPath } from './browse.ts';
import { blobId } from './crypto/master-key.ts';
import type { BlobLocation } from './format/blob-codec.ts';
import { metadataFromNode, type TreeNode } from './format/tree.ts';
import { BufferPool } from './internal/buffer-pool.ts';
import { Semaphore } from './internal/concurrency.ts';
import { GcPacer } from './internal/gc.ts';
import type { LocalWrite, WrittenRun } from './internal/local-writes.ts';
import { openRun, type RunBlob } from './internal/open-run.ts';
import { createBlobProcessor, workerCount } from './internal/worker-pool.ts';
import type { Repository } from './repository.ts';

export interface RestoreOptions {
  /** Path inside the snapshot to restore (default `/`): a directory's contents or one file. */
  readonly subpath?: string;
  /** Restore only paths (absolute inside the snapshot) for which this is true, and what is below them. */
  readonly include?: (path: string) => boolean;
  /** Skip paths for which this is true, and what is below them. */
  readonly exclude?: (path: string) => boolean;
  /** Read every restored file back and compare it with the snapshot. */
  readonly verify?: boolean;
  readonly reporter?: Reporter;
  readonly signal?: AbortSignal;
  /** Worker threads that decrypt, verify and write small files (default: the cores up to 2, else cores - 1; 0 = this thread). */
  readonly workers?: number;
}

export interface RestoreError {
  readonly path: string;
  readonly code: ForgeErrorCode;
  readonly message: string;
}

export interface RestoreResult {
  readonly files: number;
  readonly dirs: number;
  readonly bytes: number;
  readonly errors: readonly RestoreError[];
  /** Files read back and matched (when `verify`). */
  readonly verified: number;
}

const DONE: Promise<Uint8Array | ReturnedRun> = Promise.resolve(new Uint8Array(0));

/** Runs loaded ahead per file, and files restored at once. */
const PREFETCH = Number(process.env.FORGE_RESTORE_PREFETCH) || 2;
const FILES_IN_PARALLEL = Number(process.env.FORGE_RESTORE_FILES) || 8;
/** Largest run of adjacent blobs read at once (a run of one larger blob is read whole). */
const RUN_MAX = 4 * 1024 * 1024;
/** Files of at most one run this size are restored in one call (`RestoreTarget.writeWhole`). */
const WHOLE_MAX = 1024 * 1024;
/** Bytes (sealed + plain) of runs in flight: what bounds restore memory. */
const BUDGET = (Number(process.env.FORGE_RESTORE_BUDGET_MIB) || 24) * 1024 * 1024;
/** Errors that make going on pointless. */
const FATAL = new Set<ForgeErrorCode>([
  'FORGE_NO_SPACE',
  'FORGE_PERMISSION',
  'FORGE_TARGET_NOT_EMPTY',
  'FORGE_ABORTED',
  'FORGE_INTERNAL',
]);

/**
 * Restores a snapshot (or a path in it) into a target. Every blob is authenticated and checked
 * against its id before a byte of it is written; a file whose data fails is removed and
 * reported in `errors`, and the restore goes on with the next file.
 */
export async function restore(
  repo: Repository,
  snapshot: SnapshotRecord,
  target: RestoreTarget,
  opts: RestoreOptions = {},
): Promise<RestoreResult> {
  const reporter = opts.reporter ?? silentReporter;
  const workers = workerCount(opts.workers);
  const processor = createBlobProcessor({
    encKey: repo.keys.encKey,
    macKey: repo.keys.macKey,
    compression: repo.config.compression,
    workers,
  });
  // The worker threads boot while the index and the first trees load.
  processor.warm();
  let start: Awaited<ReturnType<typeof findNode>>;
  try {
    await repo.loadIndex();
    start = await findNode(repo, snapshot, opts.subpath ?? '/');
  } catch (e) {
    await processor.close();
    throw e;
  }
  const basePath = `/${splitPath(opts.subpath ?? '/').join('/')}`;
  const errors: RestoreError[] = [];
  /** First restored name of each hardlinked inode, and whether restoring it worked. */
  const links = new Map<string, { rel: string[]; done: Promise<boolean> }>();
  const fileSlots = new Semaphore(FILES_IN_PARALLEL);
  const budget = new Semaphore(BUDGET);
  // Pack reads arrive in fresh buffers that die young; V8 collects them late unless asked.
  const gcEnv = process.env.FORGE_RESTORE_GC;
  const pacer = new GcPacer(
    Number(gcEnv?.split(',')[0]) || Number.POSITIVE_INFINITY,
    Number(gcEnv?.split(',')[1]) || 32 * 1024 * 1024,
  );
  const pool = new BufferPool(BUDGET);
  const restoredFiles: { rel: string[]; node: TreeNode }[] = [];
  let files = 0;
  let dirs = 0;
  let bytes = 0;
  let last = 0;
  const progress = (path: string, force = false) => {
    const now = Date.now();
    if (!force && now - last < 100) return;
    last = now;
    reporter({ type: 'progress', phase: 'restore', filesDone: files, bytesDone: bytes, currentPath: path });
  };
  /** The first error that stops the restore: the walk ends at its next step, not after the tree. */
  let fatal: ForgeError | undefined;
  const fail = (path: string, e: unknown) => {
    const fe = toForgeError(e);
    if (FATAL.has(fe.code)) {
      fatal ??= fe;
      throw fe;
    }
    errors.push({ path, code: fe.code, message: fe.message });
    reporter({ type: 'warning', phase: 'restore', path, code: fe.code, message: `${path}: ${fe.message}` });
  };

  // Directories are created lazily, so include filters do not leave empty directory skeletons.
  const pendingDirs: { rel: string[]; node: TreeNode; created: boolean }[] = [];
  const ensureDirs = async () => {
    for (const d of pendingDirs) {
      if (!d.created) {
        await target.dir(d.rel, metadataFromNode(d.node));
        d.created = true;
        dirs++;
      }
    }
  };

  const restoreFile = async (abs: string, rel: string[], node: TreeNode) => {
    const meta = metadataFromNode(node);
    let settle: ((ok: boolean) => void) | undefined;
    if (node.links > 1) {
      const key = `${node.device}:${node.inode}`;
      const first = links.get(key);
      if (first && (await first.done)) {
        await target.hardlink(rel, first.rel, meta);
        files++;
        return;
      }
      // The first name of this inode (or the first one failed): restore the content here.
      links.set(key, {
        rel,
        done: new Promise<boolean>((r) => {
          settle = r;
        }),
      });
    }
    try {
      await writeFile(abs, rel, node, meta);
      settle?.(true);
    } catch (e) {
      settle?.(false);
      throw e;
    }
  };

  const writeFile = async (
    abs: string,
    rel: string[],
    node: TreeNode,
    meta: ReturnType<typeof metadataFromNode>,
  ) => {
    const planned = smallRuns.get(abs);
    smallRuns.delete(abs);
    const batch = planned && batchOf.get(planned);
    if (planned && batch?.writing) {
      batchOf.delete(planned);
      const r = await batch.written(planned);
      if (r === true) {
        files++;
        bytes += planned.rawLength;
        progress(abs);
        restoredFiles.push({ rel, node });
        return;
      }
      if (r) throw r;
      // The batch could not be read or opened: this file goes on its own, the usual way.
    }
    const runs = planned ? [planned] : planRuns(repo, node.content ?? []);
    const single =
      runs.length === 0 || (runs.length === 1 && runs[0]!.loc && runs[0]!.rawLength <= WHOLE_MAX);
    if (target.writeWhole && single) {
      // Small files: one read, opened on this thread (a worker round trip costs more than the
      // work), and one call to write the file with its metadata.
      const data = runs.length === 0 ? new Uint8Array(0) : await fetchSmall(runs[0]!);
      if (data.length !== (node.size ?? 0)) {
        throw new ForgeError(
          'FORGE_INTEGRITY',
          `content is ${data.length} bytes but the snapshot says ${node.size}`,
        );
      }
      await target.writeWhole(rel, meta, data);
      files++;
      bytes += data.length;
      progress(abs);
      restoredFiles.push({ rel, node });
      return;
    }
    const w = await target.file(rel, meta);
    const results: Promise<Uint8Array | ReturnedRun>[] = [];
    const start = (i: number) => {
      const p = fetchRun(runs[i]!);
      p.catch(() => {});
      results[i] = p;
    };
    for (let i = 0; i < Math.min(PREFETCH, runs.length); i++) start(i);
    let offset = 0;
    try {
      for (let i = 0; i < runs.length; i++) {
        if (opts.signal?.aborted) throw new ForgeError('FORGE_ABORTED', 'restore was cancelled');
        const got = await results[i]!;
        // Drop the reference: a finished run must not keep its buffers alive until the file ends.
        results[i] = DONE;
        if (i + PREFETCH < runs.length) start(i + PREFETCH);
        const data = got instanceof Uint8Array ? got : got.plain;
        try {
          await w.write(data, offset);
        } finally {
          if (!(got instanceof Uint8Array)) got.release();
        }
        offset += data.length;
        bytes += data.length;
        progress(abs);
      }
      if (offset !== (node.size ?? 0)) {
        throw new ForgeError(
          'FORGE_INTEGRITY',
          `content is ${offset} bytes but the snapshot says ${node.size}`,
        );
      }
      await w.close();
      files++;
      restoredFiles.push({ rel, node });
    } catch (e) {
      // Wait for reads in flight, so their buffers go back to the pool and the budget.
      await Promise.allSettled(results).then((all) => {
        for (const r of all)
          if (r.status === 'fulfilled' && !(r.value instanceof Uint8Array)) r.value.release();
      });
      await w.abort().catch(() => {});
      throw e;
    }
  };

  /**
   * One read per run of adjacent blobs in a pack; decrypt, decompress and verify on the worker
   * threads. A run that fails falls back to blob-by-blob loads, which try every stored copy.
   */
  const fetchRun = async (run: Run): Promise<Uint8Array | ReturnedRun> => {
    if (!run.loc) return loadBlobs(run.ids);
    // FIFO grants keep this deadlock-free: a file's earlier run always gets budget before its later ones.
    const cost = Math.min(BUDGET, run.rawLength + run.sealedLength);
    await budget.acquire(cost);
    let released = false;
    const release = (out?: Uint8Array) => {
      if (released) return;
      released = true;
      if (out) pool.put(out.buffer as ArrayBuffer);
      budget.release(cost);
    };
    // Read into a pool buffer (a local repository reads into it; others return their own):
    // fresh buffers for every run made V8 run a full collection every few dozen MiB.
    const into = pool.get(run.sealedLength);
    try {
      const sealed = await repo.backend.load(
        { type: 'pack', name: run.loc.packId },
        { offset: run.loc.offset, length: run.sealedLength },
        new Uint8Array(into),
      );
      if (sealed.buffer !== into) pool.put(into); // the backend used a buffer of its own
      pacer.add(sealed.length);
      const out = new Uint8Array(pool.get(run.rawLength), 0, run.rawLength);
      const opened = await processor.open(sealed, run.blobs, out);
      if (opened.sealed.buffer !== opened.out.buffer) pool.put(opened.sealed.buffer as ArrayBuffer);
      if (opened.failure) {
        release(opened.out);
        return loadBlobs(run.ids);
      }
      const plain = opened.out;
      return { plain, release: () => release(plain) };
    } catch {
      release();
      // A short or missing pack, or a read error: let the per-blob path find another copy.
      return loadBlobs(run.ids);
    }
  };

  const fetchSmall = async (run: Run): Promise<Uint8Array> => {
    try {
      const batch = batchOf.get(run);
      batchOf.delete(run);
      const plain = await batch?.plain(run);
      if (plain) return plain;
      const sealed = await repo.backend.load(
        { type: 'pack', name: run.loc!.packId },
        { offset: run.loc!.offset, length: run.sealedLength },
      );
      const out = new Uint8Array(run.rawLength);
      if (!openRun(repo.keys, sealed, run.blobs, out)) return out;
    } catch {
      // fall through: the per-blob path tries other copies and reports the error
    }
    return loadBlobs(run.ids);
  };

  const openRuns: OpenRuns = async (sealed, blobs, out) => {
    const r = await processor.open(sealed, blobs, out);
    return r.failure ? undefined : r.out;
  };
  /** Runs of the small files of directories being restored (by path), planned with their directory. */
  const smallRuns = new Map<string, Run>();
  const batchOf = new Map<Run, SmallBatch>();
  const ahead = new BatchWindow(BATCHES_AHEAD);
  /** Directories (by path) whose small files are planned. */
  const plannedDirs = new Set<string>();
  /**
   * Small files are stored back to back in the order a backup walks them, which is the order a
   * restore walks them: one read per stretch of a pack (≤ BATCH_MAX) serves many files. Batches
   * are numbered in restore order, and the window reads a few ahead of the one being written.
   */
  const batchSmallFiles = (
    dirAbs: string,
    dirRel: readonly string[],
    nodes: readonly TreeNode[],
    dirIncluded: boolean,
  ) => {
    if (!target.writeWhole || plannedDirs.has(dirAbs)) return;
    plannedDirs.add(dirAbs);
    let batch: SmallBatch | undefined;
    const made: SmallBatch[] = [];
    for (const child of nodes) {
      if (child.type !== 'file' || !child.content || child.content.length === 0) continue;
      const childAbs = childPath(dirAbs, child.name);
      if (opts.exclude?.(childAbs)) continue;
      if (!(dirIncluded || !opts.include || opts.include(childAbs))) continue;
      const runs = planRuns(repo, child.content);
      const run = runs[0];
      if (runs.length !== 1 || !run?.loc || run.rawLength > WHOLE_MAX) continue;
      smallRuns.set(childAbs, run);
      // Written where they are opened: files whose size matches and that have no other names.
      const file =
        writeRuns && child.links <= 1 && run.rawLength === (child.size ?? 0)
          ? { run, rel: [...dirRel, child.name], node: child }
          : undefined;
      if (!batch || !batch.take(run, file)) {
        batch = new SmallBatch(repo, openRuns, run, ahead, writeRuns, file);
        made.push(batch);
      }
      batchOf.set(run, batch);
    }
    // Complete batches only: a started batch takes no more members.
    for (const b of made) ahead.add(b);
  };

  /**
   * Walks the snapshot in restore order ahead of the restore, loading trees and planning their
   * small files, so the reads of the next batches overlap the writing of this one. It stays a
   * few batches ahead, stops at the first error (the restore itself reports it) and when the
   * restore ends.
   */
  const walkAhead = async (
    dirAbs: string,
    dirRel: readonly string[],
    nodes: readonly TreeNode[],
    included: boolean,
  ) => {
    for (const child of nodes) {
      if (child.type !== 'dir' || !child.subtree) continue;
      const abs = childPath(dirAbs, child.name);
      if (opts.exclude?.(abs)) continue;
      await ahead.room();
      if (ahead.stopped) return;
      const inc = included || !opts.include || opts.include(abs);
      const rel = [...dirRel, child.name];
      const tree = await repo.loadTree(child.subtree);
      batchSmallFiles(abs, rel, tree.nodes, inc);
      repo.prefetchTrees(
        tree.nodes.flatMap((n) => (n.type === 'dir' && n.subtree ? [n.subtree] : [])).slice(0, TREE_PREFETCH),
      );
      await walkAhead(abs, rel, tree.nodes, inc);
    }
  };

  const loadBlobs = async (ids: readonly string[]): Promise<Uint8Array> => {
    const parts: Uint8Array[] = [];
    for (const id of ids) parts.push(await repo.loadBlob('data', id));
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  };

  const visit = async (
    abs: string,
    rel: string[],
    node: TreeNode,
    included: boolean,
    pending: Promise<void>[],
  ): Promise<void> => {
    if (fatal) throw fatal;
    if (opts.exclude?.(abs)) return;
    const inc = included || !opts.include || opts.include(abs);
    if (node.type === 'dir') {
      const entry = { rel, node, created: false };
      pendingDirs.push(entry);
      const mine: Promise<void>[] = [];
      try {
        if (inc) await ensureDirs();
        const tree = node.subtree ? await repo.loadTree(node.subtree) : { nodes: [] };
        batchSmallFiles(abs, rel, tree.nodes, inc);
        for (const child of tree.nodes) {
          await visit(childPath(abs, child.name), [...rel, child.name], child, inc, mine);
        }
      } catch (e) {
        fail(abs, e);
      } finally {
        pendingDirs.pop();
      }
      // The directory gets its final mode and times once everything in it is written; the walk
      // goes on to the next directory meanwhile.
      const finished = Promise.all(mine).then(async () => {
        if (!entry.created) return;
        try {
          await target.finishDir(rel, metadataFromNode(node));
        } catch (e) {
          fail(abs, e);
        }
      });
      finished.catch(() => {});
      pending.push(finished);
      return;
    }
    if (!inc) return;
    try {
      await ensureDirs();
      const small = node.type === 'file' ? smallRuns.get(abs) : undefined;
      const batch = small && batchOf.get(small);
      if (batch?.writing) {
        // Written by its batch, on a worker: no file slot, but only a few batches at a time.
        if (!batch.triggered) {
          await batchSlots.acquire();
          batch.trigger().finally(() => batchSlots.release());
        }
        const task = restoreFile(abs, rel, node).catch((e) => fail(abs, e));
        task.catch(() => {});
        pending.push(task);
      } else if (node.type === 'file') {
        await fileSlots.acquire();
        const task = restoreFile(abs, rel, node)
          .catch((e) => fail(abs, e))
          .finally(() => fileSlots.release());
        task.catch(() => {});
        pending.push(task);
      } else if (node.type === 'symlink') await target.symlink(rel, metadataFromNode(node));
      else await target.special(rel, metadataFromNode(node));
    } catch (e) {
      fail(abs, e);
    }
  };

  reporter({ type: 'start', phase: 'restore' });
  try {
    await target.prepare();
  } catch (e) {
    await processor.close();
    throw e;
  }
  const local = target.writeWhole ? target.localFiles : undefined;
  const writeRuns: WriteRuns | undefined = local && {
    prepare: (rel) => local.prepare(rel),
    run: (sealed, blobs, rawLength, files) =>
      processor.openAndWrite(sealed, blobs, rawLength, files, {
        module: local.module,
        options: local.options,
      }),
  };
  const batchSlots = new Semaphore(Math.max(2, workers + 1));
  try {
    const top: Promise<void>[] = [];
    try {
      if (start.type === 'dir') {
        // The target itself stands for the start directory: restore its children into it.
        const tree = start.subtree ? await repo.loadTree(start.subtree) : { nodes: [] };
        batchSmallFiles(basePath, [], tree.nodes, false);
        if (target.writeWhole) walkAhead(basePath, [], tree.nodes, false).catch(() => {});
        for (const child of tree.nodes) {
          await visit(childPath(basePath, child.name), [child.name], child, false, top);
        }
      } else {
        await visit(basePath, [start.name], start, false, top);
      }
    } finally {
      ahead.stop();
      await Promise.all(top);
    }
    progress('', true);
    let verified = 0;
    if (opts.verify) verified = await verifyFiles(repo, target, restoredFiles, fail);
    reporter({ type: 'done', phase: 'restore' });
    return { files, dirs, bytes, errors, verified };
  } finally {
    await processor.close();
    await target.close();
  }
}

interface Run {
  readonly ids: readonly string[];
  /** Where the run starts (undefined: a blob not in the index, loaded alone to report it). */
  readonly loc?: BlobLocation;
  readonly blobs: RunBlob[];
  readonly sealedLength: number;
  readonly rawLength: number;
}

/** Largest read that serves several small files, and the largest gap (other blobs) it reads over. */
const BATCH_MAX = 4 * 1024 * 1024;
const BATCH_GAP = 256 * 1024;

/** Plaintext of a batch that may be this large at most. */
const BATCH_RAW_MAX = 8 * 1024 * 1024;
/** Small-file batches read ahead of the one being written (each ≤ BATCH_MAX sealed, BATCH_RAW_MAX plain). */
const BATCHES_AHEAD = Number(process.env.FORGE_RESTORE_BATCHES_AHEAD) || 3;
/** How many batches the lookahead walk may plan beyond the read window before it waits. */
const PLAN_AHEAD = 8;
/** Subdirectory trees the lookahead walk loads ahead, per directory. */
const TREE_PREFETCH = 64;

/**
 * The small-file batches in restore order: starts reading each once it is at most `size`
 * batches after the furthest one the restore has asked for, and holds the lookahead walk back
 * when it has planned far enough.
 */
class BatchWindow {
  readonly #size: number;
  /** Planned batches not started yet, in order. */
  readonly #waiting: SmallBatch[] = [];
  #planned = 0;
  #reached = -1;
  #wake: (() => void) | undefined;
  #stopped = false;

  constructor(size: number) {
    this.#size = size;
  }

  /** Numbers a new batch; starts it when it is inside the window. */
  add(batch: SmallBatch): void {
    batch.seq = this.#planned++;
    this.#waiting.push(batch);
    this.#fill();
  }

  /** The restore asked for batch `seq`: move the window on. */
  reached(seq: number): void {
    if (seq <= this.#reached) return;
    this.#reached = seq;
    this.#fill();
    if (this.#planned - this.#reached <= PLAN_AHEAD) this.#wakeUp();
  }

  /** Resolves when the lookahead walk may plan another directory. */
  room(): Promise<void> {
    if (this.#stopped || this.#planned - this.#reached <= PLAN_AHEAD) return Promise.resolve();
    return new Promise((r) => {
      this.#wake = r;
    });
  }

  /** The restore is over (or failed): the lookahead walk ends. */
  get stopped(): boolean {
    return this.#stopped;
  }

  stop(): void {
    this.#stopped = true;
    this.#waiting.length = 0;
    this.#wakeUp();
  }

  #fill(): void {
    while (this.#waiting.length > 0 && this.#waiting[0]!.seq <= this.#reached + this.#size) {
      this.#waiting.shift()!.start();
    }
  }

  #wakeUp(): void {
    const w = this.#wake;
    this.#wake = undefined;
    w?.();
  }
}

/** Opens runs into `out`; resolves with the output (possibly a new view: `out` may be transferred) or undefined on failure. */
type OpenRuns = (sealed: Uint8Array, blobs: RunBlob[], out: Uint8Array) => Promise<Uint8Array | undefined>;

/**
 * One read of a stretch of a pack, shared by the small files whose blobs lie in it, opened
 * (decrypted, decompressed, verified) in one worker message.
 */
class SmallBatch {
  readonly #repo: Repository;
  readonly #open: OpenRuns;
  readonly #packId: string;
  readonly #start: number;
  #end: number;
  #raw: number;
  readonly #members: Run[] = [];
  readonly #window: BatchWindow;
  /** Set when the batch's files are written where they are opened (one per member). */
  readonly #write: WriteRuns | undefined;
  readonly #files: BatchFile[] = [];
  #plain: Promise<Map<Run, Uint8Array> | undefined> | undefined;
  #sealed: Promise<Uint8Array | undefined> | undefined;
  #written: Promise<Map<Run, true | ForgeError> | undefined> | undefined;
  /** Position in restore order (set by the window). */
  seq = 0;

  constructor(
    repo: Repository,
    open: OpenRuns,
    first: Run,
    window: BatchWindow,
    write?: WriteRuns,
    file?: BatchFile,
  ) {
    this.#repo = repo;
    this.#open = open;
    this.#window = window;
    this.#packId = first.loc!.packId;
    this.#start = first.loc!.offset;
    this.#end = first.loc!.offset + first.sealedLength;
    this.#raw = first.rawLength;
    this.#members.push(first);
    if (write && file) {
      this.#write = write;
      this.#files.push(file);
    }
  }

  /** Whether the members are written by the batch (`written`) rather than handed out (`plain`). */
  get writing(): boolean {
    return this.#write !== undefined;
  }

  /** Whether the writing has begun. */
  get triggered(): boolean {
    return this.#written !== undefined;
  }

  /**
   * Adds a run that lies just after this stretch (with its file, for a writing batch); false
   * when it does not fit.
   */
  take(run: Run, file?: BatchFile): boolean {
    const loc = run.loc!;
    const end = loc.offset + run.sealedLength;
    if (this.writing !== (file !== undefined)) return false;
    if (loc.packId !== this.#packId || loc.offset < this.#end || loc.offset - this.#end > BATCH_GAP)
      return false;
    if (end - this.#start > BATCH_MAX || this.#raw + run.rawLength > BATCH_RAW_MAX) return false;
    this.#end = end;
    this.#raw += run.rawLength;
    this.#members.push(run);
    if (file) this.#files.push(file);
    return true;
  }

  /** Starts reading the batch (and, unless it writes its files, opening it) once. */
  start(): void {
    if (this.#write) {
      this.#sealed ??= this.#load().catch(() => undefined);
      return;
    }
    this.#plain ??= this.#readAndOpen().catch(() => undefined);
  }

  /** The plaintext of `run`, or undefined when the batch failed (the caller retries alone). */
  async plain(run: Run): Promise<Uint8Array | undefined> {
    this.#window.reached(this.seq);
    this.start();
    return (await this.#plain)?.get(run);
  }

  /**
   * Writes every member's file (once; the first member visited calls it, when its directory
   * exists). Resolves when all are written or failed.
   */
  trigger(): Promise<unknown> {
    this.#window.reached(this.seq);
    this.start();
    this.#written ??= this.#writeAll().catch(() => undefined);
    return this.#written;
  }

  /**
   * Whether `run`'s file was written: true, the error that stopped it, or undefined when the
   * batch could not be read or opened (nothing was written; the caller restores it alone).
   */
  async written(run: Run): Promise<true | ForgeError | undefined> {
    return ((await this.trigger()) as Map<Run, true | ForgeError> | undefined)?.get(run);
  }

  #load(): Promise<Uint8Array> {
    return this.#repo.backend.load(
      { type: 'pack', name: this.#packId },
      { offset: this.#start, length: this.#end - this.#start },
    );
  }

  #blobs(): RunBlob[] {
    const blobs: RunBlob[] = [];
    for (const m of this.#members) {
      const base = m.loc!.offset - this.#start;
      for (const b of m.blobs) blobs.push({ ...b, at: base + b.at });
    }
    return blobs;
  }

  async #readAndOpen(): Promise<Map<Run, Uint8Array> | undefined> {
    const sealed = await this.#load();
    const out = await this.#open(sealed, this.#blobs(), new Uint8Array(this.#raw));
    if (!out) return undefined;
    const byRun = new Map<Run, Uint8Array>();
    let at = 0;
    for (const m of this.#members) {
      byRun.set(m, out.subarray(at, at + m.rawLength));
      at += m.rawLength;
    }
    return byRun;
  }

  async #writeAll(): Promise<Map<Run, true | ForgeError> | undefined> {
    const write = this.#write!;
    const sealed = await this.#sealed;
    if (!sealed) return undefined;
    const result = new Map<Run, true | ForgeError>();
    const files: LocalWrite[] = [];
    const runs: Run[] = [];
    let at = 0;
    for (const f of this.#files) {
      try {
        const path = await write.prepare(f.rel);
        files.push({ path, meta: metadataFromNode(f.node), at, length: f.run.rawLength });
        runs.push(f.run);
      } catch (e) {
        result.set(f.run, toForgeError(e));
      }
      at += f.run.rawLength;
    }
    const r = await write.run(sealed, this.#blobs(), this.#raw, files);
    if (!r.results) return undefined;
    r.results.forEach((failure, i) => {
      result.set(
        runs[i]!,
        failure
          ? new ForgeError(failure.code as ForgeErrorCode, failure.message, { hint: failure.hint })
          : true,
      );
    });
    return result;
  }
}

/** A small file a writing batch creates. */
interface BatchFile {
  readonly run: Run;
  readonly rel: readonly string[];
  readonly node: TreeNode;
}

/** Prepares paths and opens + writes runs, for batches that write their files (see `RestoreTarget.localFiles`). */
interface WriteRuns {
  prepare(rel: readonly string[]): Promise<string>;
  run(sealed: Uint8Array, blobs: RunBlob[], rawLength: number, files: LocalWrite[]): Promise<WrittenRun>;
}

interface ReturnedRun {
  readonly plain: Uint8Array;
  readonly release: () => void;
}

/** The snapshot path of `name` in the directory at `dir`. */
function childPath(dir: string, name: string): string {
  return dir === '/' ? `/${name}` : `${dir}/${name}`;
}

/** Splits a file's blobs into runs that lie back to back in one pack, each at most RUN_MAX bytes. */
function planRuns(repo: Repository, ids: readonly string[]): Run[] {
  const runs: Run[] = [];
  let cur: { ids: string[]; loc: BlobLocation; blobs: RunBlob[]; sealed: number; raw: number } | undefined;
  const flush = () => {
    if (cur)
      runs.push({
        ids: cur.ids,
        loc: cur.loc,
        blobs: cur.blobs,
        sealedLength: cur.sealed,
        rawLength: cur.raw,
      });
    cur = undefined;
  };
  for (const id of ids) {
    const loc = repo.index.lookupAll(id).find((l) => l.type === 'data');
    if (!loc) {
      flush();
      runs.push({ ids: [id], blobs: [], sealedLength: 0, rawLength: 0 });
      continue;
    }
    if (
      !cur ||
      cur.loc.packId !== loc.packId ||
      cur.loc.offset + cur.sealed !== loc.offset ||
      cur.sealed + loc.length > RUN_MAX ||
      cur.raw + loc.rawLength > RUN_MAX
    ) {
      flush();
      cur = { ids: [], loc, blobs: [], sealed: 0, raw: 0 };
    }
    cur.ids.push(id);
    cur.blobs.push({
      at: cur.sealed,
      length: loc.length,
      type: loc.type,
      compression: loc.compression,
      rawLength: loc.rawLength,
      id: Buffer.from(id, 'hex'),
    });
    cur.sealed += loc.length;
    cur.raw += loc.rawLength;
  }
  flush();
  return runs;
}

async function verifyFiles(
  repo: Repository,
  target: RestoreTarget,
  files: readonly { rel: string[]; node: TreeNode }[],
  fail: (path: string, e: unknown) => void,
): Promise<number> {
  if (!target.readBack)
    throw new ForgeError('FORGE_USAGE', 'this restore target cannot read files back', {
      hint: 'restore without --verify',
    });
  let ok = 0;
  for (const { rel, node } of files) {
    const path = rel.join('/');
    try {
      const reader = await target.readBack(rel);
      try {
        for (const id of node.content ?? []) {
          const loc = repo.index.lookup(id);
          if (!loc) throw new ForgeError('FORGE_NOT_FOUND', `blob ${id.slice(0, 12)} is not in the index`);
          const buf = new Uint8Array(loc.rawLength);
          let got = 0;
          while (got < buf.length) {
            const n = await reader.read(buf.subarray(got));
            if (n === 0) break;
            got += n;
          }
          const actual = blobId(repo.keys.macKey, buf.subarray(0, got)).toString('hex');
          if (got !== loc.rawLength || actual !== id) {
            throw new ForgeError('FORGE_INTEGRITY', `restored file ${path} differs from the snapshot`, {
              hint: 'restore it again',
            });
          }
        }
        const extra = await reader.read(new Uint8Array(1));
        if (extra !== 0)
          throw new ForgeError('FORGE_INTEGRITY', `restored file ${path} is longer than in the snapshot`);
      } finally {
        await reader.close();
      }
      ok++;
    } catch (e) {
      fail(path, e);
    }
  }
  return ok;
}
