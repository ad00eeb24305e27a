import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { InternalError } from '@backupforge/common';
import type { ChunkerParams } from '../chunker/index.ts';
import type { CompressionAlgorithm, CompressionSettings } from '../compression.ts';
import { blobId } from '../crypto/master-key.ts';
import { type BlobType, type SealedBlob, sealBlob } from '../format/blob-codec.ts';
import { packId } from '../format/pack.ts';
import { isPoolBuffer } from './buffer-pool.ts';
import type { LaneStep } from './file-lane.ts';
import { type LocalWrite, type LocalWriter, openAndWrite, type WrittenRun } from './local-writes.ts';
import { openRun, type RunBlob, type RunFailure } from './open-run.ts';
import {
  readSmallBatch,
  type SealedSmall,
  type SmallFileRead,
  type SmallFileRequest,
  sealSmallBatch,
} from './small-files.ts';
import { type PackVerdict, verifyPack } from './verify-pack.ts';

/**
 * A batch of small files read (and hashed) by `readSmall`, held where it was read until `seal`
 * stores the new ones (or stores none: every batch must be sealed once, to free it).
 */
export interface SmallBatchHandle {
  readonly results: readonly SmallFileRead[];
  /** 32 bytes per file (zeros where there is no id). */
  readonly ids: Uint8Array;
  /** Seals the files marked 1 in `want`. `out` (a buffer from an earlier result) may be reused. */
  seal(want: Uint8Array, out?: Uint8Array): Promise<SealedSmall>;
}

/** What `open` gives back: the run buffer and the output buffer (both reusable), or a failure. */
export interface OpenedRun {
  readonly out: Uint8Array;
  readonly sealed: Uint8Array;
  readonly failure?: RunFailure;
}

/** A large file chunked on one worker thread, step by step (see `FileLane`). */
export interface FileLaneHandle {
  /** Hands over the previous segment's chunks marked in `want`, then reads and hashes the next segment. */
  step(want?: Uint8Array, spare?: Uint8Array): Promise<LaneStep>;
  close(): Promise<void>;
}

export interface BlobProcessor {
  /**
   * Compress + encrypt. `data` may be transferred away: don't use it afterwards. When its
   * ArrayBuffer has room, the sealed bytes come back in that same buffer.
   */
  seal(id: Buffer, type: BlobType, data: Uint8Array): Promise<SealedBlob>;
  /**
   * Computes the id of `data` where it will be sealed, so that this thread need not hash it;
   * `claim(id)` (called here, once) says whether to seal it (a new blob) or not (a duplicate).
   * `data` may be transferred away: `back` is the buffer to reuse (the sealed bytes' buffer when
   * sealed). Needs `macKey`; without worker threads everything happens here.
   */
  hashAndSeal(
    type: BlobType,
    data: Uint8Array,
    claim: (id: Buffer) => boolean,
  ): Promise<{ id: Buffer; sealed?: SealedBlob; back: Uint8Array }>;
  /**
   * Names a finished pack (the SHA-256 of its bytes, see `PackHasher`). `bytes` is moved away
   * with its whole buffer (a pack buffer of the pack writer's own) and comes back in the result.
   */
  hashPack(bytes: Uint8Array): Promise<{ id: string; bytes: Uint8Array }>;
  /**
   * Decrypt + decompress + verify a run of blobs read from one pack into `out` (their total raw
   * length). Both buffers may be transferred away and come back in the result: use those.
   * Needs `macKey`.
   */
  open(sealed: Uint8Array, blobs: RunBlob[], out: Uint8Array): Promise<OpenedRun>;
  /**
   * Opens a run of blobs (`rawLength` bytes of plaintext) and writes the small files it holds
   * with a restore target's worker-side writer, where it was opened. `sealed` may be
   * transferred away. Needs `macKey`.
   */
  openAndWrite(
    sealed: Uint8Array,
    blobs: RunBlob[],
    rawLength: number,
    files: LocalWrite[],
    writer: LocalWriter,
  ): Promise<WrittenRun>;
  /**
   * Reads small local files (expected size + 1 bytes each, so growth shows) and computes their
   * ids. Needs `macKey`.
   */
  readSmall(files: SmallFileRequest[]): Promise<SmallBatchHandle>;
  /**
   * Verifies a whole pack read from storage (`check --read-data`): its hash against `name` and
   * every blob in `blobs`. `bytes` may be transferred away: it comes back in the result, for
   * reuse. Needs `macKey`.
   */
  verifyPack(bytes: Uint8Array, name: string, blobs: RunBlob[]): Promise<PackVerdict & { bytes: Uint8Array }>;
  /**
   * Chunks a large local file on a worker thread (only when there are worker threads): lets a
   * second file be chunked while this thread chunks another; new chunks come back to be sealed
   * like any other. With `direct`, reads with O_DIRECT where the filesystem allows. Needs `macKey`.
   */
  openLane?(path: string, params: ChunkerParams, direct?: boolean): FileLaneHandle;
  /**
   * Starts the worker threads now rather than with the first task, for a caller sure to need
   * them: they boot while it does other work (a restore loading its index).
   */
  warm(): void;
  close(): Promise<void>;
}

export interface ProcessorOptions {
  readonly encKey: Uint8Array;
  /** Needed to open (verify) blobs. */
  readonly macKey?: Uint8Array;
  readonly compression: CompressionSettings;
  /** Worker threads; 0 runs everything on the calling thread. Default: cores - 1 (at least 1). */
  readonly workers?: number;
}

/** Same-thread implementation (tests, tiny jobs, environments without workers). */
export function createInlineProcessor(opts: ProcessorOptions): BlobProcessor {
  return {
    async seal(id, type, data) {
      return sealBlob(opts.encKey, { id, type, data }, opts.compression, true);
    },
    async hashAndSeal(type, data, claim) {
      const id = blobId(needMacKey(opts), data);
      if (!claim(id)) return { id, back: data };
      const sealed = sealBlob(opts.encKey, { id, type, data }, opts.compression, true);
      return { id, sealed, back: sealed.sealed };
    },
    async hashPack(bytes) {
      return { id: packId(bytes), bytes };
    },
    warm() {},
    async open(sealed, blobs, out) {
      const failure = openRun({ encKey: opts.encKey, macKey: needMacKey(opts) }, sealed, blobs, out);
      return failure ? { out, sealed, failure } : { out, sealed };
    },
    openAndWrite(sealed, blobs, rawLength, files, writer) {
      const keys = { encKey: opts.encKey, macKey: needMacKey(opts) };
      return openAndWrite(keys, sealed, blobs, rawLength, files, writer);
    },
    async verifyPack(bytes, name, blobs) {
      return { ...verifyPack({ encKey: opts.encKey, macKey: needMacKey(opts) }, bytes, name, blobs), bytes };
    },
    async readSmall(files) {
      const batch = readSmallBatch(needMacKey(opts), files);
      return {
        results: batch.results,
        ids: batch.ids,
        async seal(want, out) {
          return sealSmallBatch(opts.encKey, opts.compression, batch, want, out);
        },
      };
    },
    async close() {},
  };
}

function needMacKey(opts: ProcessorOptions): Uint8Array {
  if (!opts.macKey) throw new InternalError('blob processor: opening blobs needs the MAC key');
  return opts.macKey;
}

/** `FORGE_WORKERS`: worker threads when the caller does not say (a tuning knob for benchmarks). */
function envWorkers(): number | undefined {
  const v = process.env.FORGE_WORKERS;
  if (v === undefined || v === '') return undefined;
  const n = Number(v);
  return Number.isInteger(n) && n >= 0 && n <= 64 ? n : undefined;
}

/** Where a worker module of this package is: next to this file in src or dist, or in dist/internal. */
export function workerUrl(name = 'blob-worker'): URL | undefined {
  for (const rel of [`./internal/${name}.js`, `./${name}.js`, `./${name}.ts`]) {
    const u = new URL(rel, import.meta.url);
    if (existsSync(fileURLToPath(u))) return u;
  }
  return undefined;
}

/** A worker's reply to a seal: the sealed bytes (in the buffer that brought the plaintext). */
interface SealReply {
  readonly sealed: Uint8Array;
  readonly compression: CompressionAlgorithm;
  readonly rawLength: number;
}

function sealedBlob(id: Buffer, type: BlobType, r: SealReply): SealedBlob {
  const sealed = Buffer.from(r.sealed.buffer, r.sealed.byteOffset, r.sealed.byteLength);
  return { id, type, compression: r.compression, rawLength: r.rawLength, sealed };
}

interface Pending {
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
}

/** Worker threads a processor gets: `requested`, else `FORGE_WORKERS`, else the default below. */
export function workerCount(requested?: number): number {
  const cores = availableParallelism();
  return requested ?? envWorkers() ?? (cores <= 2 ? cores : cores - 1);
}

/** Hashing and sealing on worker threads, so reading/chunking overlaps with CPU work on all cores. */
export function createBlobProcessor(opts: ProcessorOptions): BlobProcessor {
  // One core stays with the main thread (reading, chunking, packing) on larger machines. On two
  // cores, two workers measured faster (small files are read on the workers, whose reads then
  // overlap with the other's compression), at ~40 MiB more memory.
  const n = workerCount(opts.workers);
  const found = n > 0 ? workerUrl() : undefined;
  if (!found) return createInlineProcessor(opts);
  const url: URL = found;
  const fromSource = url.pathname.endsWith('.ts');
  type Slot = { w: Worker; busy: number; lanes: number; pending: Map<number, Pending> };
  const workers: Slot[] = [];
  let seq = 0;
  let failed: Error | undefined;
  function startWorker(): Slot {
    const w = new Worker(url, {
      workerData: { encKey: opts.encKey, macKey: opts.macKey, compression: opts.compression },
      execArgv: fromSource
        ? ['--conditions=@backupforge/source', '--disable-warning=ExperimentalWarning']
        : [],
    });
    const slot: Slot = { w, busy: 0, lanes: 0, pending: new Map<number, Pending>() };
    w.on('message', (m: { seq: number; error?: string }) => {
      const p = slot.pending.get(m.seq);
      if (!p) return;
      slot.pending.delete(m.seq);
      slot.busy--;
      if (m.error) p.reject(new InternalError(`blob worker: ${m.error}`));
      else p.resolve(m);
    });
    w.on('error', (e) => {
      failed = e;
      for (const p of slot.pending.values())
        p.reject(new InternalError(`blob worker crashed: ${e.message}`, e));
      slot.pending.clear();
    });
    return slot;
  }
  // The workers start with the first task: a backup that finds nothing new (an unchanged
  // re-backup) needs none, and starting two costs ~0.1 s of CPU, on two cores, at the start.
  function start(): void {
    if (workers.length === 0) for (let i = 0; i < n; i++) workers.push(startWorker());
  }
  function leastBusy(): Slot {
    start();
    let best = workers[0]!;
    for (const s of workers) if (s.busy < best.busy) best = s;
    return best;
  }
  function post<T>(msg: Record<string, unknown>, transfer: ArrayBuffer[], slot?: Slot): Promise<T> {
    if (failed) return Promise.reject(new InternalError(`blob worker crashed: ${failed.message}`, failed));
    const best = slot ?? leastBusy();
    const id = ++seq;
    best.busy++;
    return new Promise<T>((resolve, reject) => {
      best.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      best.w.postMessage({ ...msg, seq: id }, transfer);
    });
  }
  // A view of a whole buffer, or of a pool buffer, moves to the worker; anything else (a slice of
  // Node's shared Buffer pool, say) is copied.
  function transferable(data: Uint8Array): ArrayBuffer[] {
    return (data.byteOffset === 0 && data.byteLength === data.buffer.byteLength) || isPoolBuffer(data.buffer)
      ? [data.buffer as ArrayBuffer]
      : [];
  }
  let batches = 0;
  return {
    openLane(path, params, direct = false) {
      needMacKey(opts);
      // On a worker with the fewest lanes open: a lane holds ~16 MiB of buffers (its segment
      // buffer, read-ahead and hand-over, kept for the worker's next lane), so two lanes on one
      // worker would cost a second set there.
      let slot = leastBusy();
      for (const s of workers) if (s.lanes < slot.lanes) slot = s;
      slot.lanes++;
      let closed = false;
      const lane = ++batches;
      let first = true;
      return {
        step(want, spare) {
          const msg: Record<string, unknown> = { kind: 'laneStep', lane, want, spare };
          if (first) Object.assign(msg, { path, params, direct });
          first = false;
          return post<LaneStep>(msg, spare ? [spare.buffer as ArrayBuffer] : [], slot);
        },
        async close() {
          if (!closed) slot.lanes--;
          closed = true;
          await post({ kind: 'laneClose', lane }, [], slot);
        },
      };
    },
    async readSmall(files) {
      needMacKey(opts);
      const slot = leastBusy();
      const batch = ++batches;
      const r = await post<{ results: SmallFileRead[]; ids: Uint8Array }>(
        { kind: 'readSmall', batch, files },
        [],
        slot,
      );
      return {
        results: r.results,
        ids: r.ids,
        seal(want, out) {
          const transfer = out ? [out.buffer as ArrayBuffer] : [];
          return post<SealedSmall>({ kind: 'sealSmall', batch, want, out }, transfer, slot);
        },
      };
    },
    async seal(id, type, data) {
      return sealedBlob(id, type, await post<SealReply>({ data, id, type }, transferable(data)));
    },
    warm: start,
    async hashPack(bytes) {
      return post<{ id: string; bytes: Uint8Array }>({ kind: 'packHash', bytes }, [
        bytes.buffer as ArrayBuffer,
      ]);
    },
    async open(sealed, blobs, out) {
      needMacKey(opts);
      // `out` is ours (a pool buffer, perhaps larger than the view): move its whole buffer.
      const transfer = [out.buffer as ArrayBuffer];
      if (sealed.buffer !== out.buffer) transfer.push(...transferable(sealed));
      return post<OpenedRun>({ kind: 'open', sealed, blobs, out }, transfer);
    },
    async hashAndSeal(type, data, claim) {
      needMacKey(opts);
      const slot = leastBusy();
      const h = await post<{ id: Uint8Array; held: number }>(
        { kind: 'hash', data },
        transferable(data),
        slot,
      );
      const id = Buffer.from(h.id.buffer, h.id.byteOffset, h.id.byteLength);
      const seal = claim(id);
      // The reply is the chunk handed back, or what `seal` replies.
      const r = await post<{ data: Uint8Array } | SealReply>(
        { kind: 'held', held: h.held, seal, id, type },
        [],
        slot,
      );
      if ('data' in r) return { id, back: r.data };
      return { id, sealed: sealedBlob(id, type, r), back: r.sealed };
    },
    async verifyPack(bytes, name, blobs) {
      needMacKey(opts);
      return post<PackVerdict & { bytes: Uint8Array }>(
        { kind: 'verifyPack', bytes, name, blobs },
        transferable(bytes),
      );
    },
    async openAndWrite(sealed, blobs, rawLength, files, writer) {
      needMacKey(opts);
      return post<WrittenRun>(
        { kind: 'openWrite', sealed, blobs, rawLength, files, writer },
        transferable(sealed),
      );
    },
    async close() {
      await Promise.all(workers.map((s) => s.w.terminate()));
    },
  };
}
