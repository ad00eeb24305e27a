// Reading, hashing and sealing a batch of small local files in one go, on a worker thread (or
// inline). A backup of many small files is bound by per-file round trips (open, fstat, read and
// close each a thread-pool job, then one worker message per blob); here a batch of files costs
// two messages, and the system calls are plain synchronous ones on a thread that is not the one
// walking the tree.
import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';
import { ForgeError, ForgeErrorCodes, toForgeError } from '@backupforge/common';
import type { CompressionAlgorithm, CompressionSettings } from '../compression.ts';
import { compress } from '../compression.ts';
import { SEAL_OVERHEAD, seal } from '../crypto/aead.ts';
import { blobId } from '../crypto/master-key.ts';
import { blobAad } from '../format/blob-codec.ts';

/** One file to read: its absolute path and the size the walk saw. */
export interface SmallFileRequest {
  readonly path: string;
  readonly size: number;
}

/** Why a local file could not be opened (`open`) or read (`read`), for a warning. */
export interface ReadFailure {
  readonly stage: 'open' | 'read';
  readonly code: string;
  readonly message: string;
}

/** What reading one file gave. */
export interface SmallFileRead {
  /** Bytes read (at most the expected size; `grew` when there was more). */
  readonly size: number;
  /** More than the expected size was there: read it the chunked way instead. */
  readonly grew?: true;
  /** The file could not be opened or read; nothing was read. */
  readonly error?: ReadFailure;
}

/** A batch read into memory: the files back to back in `arena`, their ids in `ids` (32 bytes each). */
export interface SmallBatch {
  readonly arena: Uint8Array;
  readonly offsets: number[];
  readonly results: SmallFileRead[];
  /** 32 bytes per file; zeros for files with an error, that grew, or that are empty. */
  readonly ids: Uint8Array;
}

/** Where each wanted file's sealed blob sits in `out`. */
export interface SealedSmall {
  readonly out: Uint8Array;
  /** Per file of the batch, in order; `undefined` for files not asked for. */
  readonly blobs: ({ at: number; length: number; compression: CompressionAlgorithm } | undefined)[];
}

// O_NOFOLLOW: a file swapped for a symlink after the walk is not followed (ELOOP instead).
// O_NONBLOCK: a file swapped for a FIFO cannot hang the backup; regular files ignore it.
const BASE_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;
// O_NOATIME is Linux-only and permitted only to the file's owner (or CAP_FOWNER).
const NOATIME = constants.O_NOATIME ?? 0;
let noAtimeRefused = NOATIME === 0;

function openNoAtime(path: string): number {
  if (!noAtimeRefused) {
    try {
      return openSync(path, BASE_FLAGS | NOATIME);
    } catch (e) {
      const code = (e as { code?: unknown }).code;
      if (code !== 'EPERM' && code !== 'EINVAL') throw e;
      if (code === 'EINVAL') noAtimeRefused = true; // the kernel does not know the flag
    }
  }
  return openSync(path, BASE_FLAGS);
}

/** A read failure as a warning can state it. */
export function readFailure(stage: ReadFailure['stage'], e: unknown, what: string): ReadFailure {
  const fe = toForgeError(e, what);
  return { stage, code: fe.code, message: fe.message };
}

/**
 * Opens a local file for reading without following a final symlink (and without touching its
 * atime when allowed), and checks it is still a regular file; otherwise closes it and throws a
 * ForgeError naming the path.
 */
export function openRegularFile(path: string): number {
  let fd = -1;
  try {
    fd = openNoAtime(path);
    if (!fstatSync(fd).isFile()) {
      throw new ForgeError(ForgeErrorCodes.FORGE_IO, `${path} is no longer a regular file`);
    }
    return fd;
  } catch (e) {
    if (fd >= 0) closeQuietly(fd);
    throw toForgeError(e, `opening ${path}`);
  }
}

/** Closes a read-only descriptor: nothing was written that a failed close could lose. */
export function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // see above
  }
}

/** Reads one file into `view` (expected size + 1 bytes, so growth shows). */
function readOne(path: string, view: Uint8Array): SmallFileRead {
  let fd: number;
  try {
    fd = openRegularFile(path);
  } catch (e) {
    return { size: 0, error: readFailure('open', e, `opening ${path}`) };
  }
  try {
    let got = 0;
    try {
      while (got < view.length) {
        const n = readSync(fd, view, got, view.length - got, null);
        if (n === 0) break;
        got += n;
      }
    } catch (e) {
      return { size: 0, error: readFailure('read', e, `reading ${path}`) };
    }
    return got === view.length ? { size: got - 1, grew: true } : { size: got };
  } finally {
    closeQuietly(fd);
  }
}

/** Total arena bytes a batch needs: each file's expected size plus one. */
export function arenaSize(files: readonly SmallFileRequest[]): number {
  let n = 0;
  for (const f of files) n += f.size + 1;
  return n;
}

/**
 * Reads every file of the batch into one arena (reusing `arena` when it is large enough) and
 * computes the id of each complete read.
 */
export function readSmallBatch(
  macKey: Uint8Array,
  files: readonly SmallFileRequest[],
  arena?: Uint8Array,
): SmallBatch {
  const need = arenaSize(files);
  const buf = arena && arena.byteLength >= need ? arena : new Uint8Array(Math.max(need, 64 * 1024));
  const offsets: number[] = [];
  const results: SmallFileRead[] = [];
  const ids = new Uint8Array(32 * files.length);
  let at = 0;
  for (let i = 0; i < files.length; i++) {
    const f = files[i]!;
    offsets.push(at);
    const r = readOne(f.path, buf.subarray(at, at + f.size + 1));
    results.push(r);
    if (!r.error && !r.grew && r.size > 0) ids.set(blobId(macKey, buf.subarray(at, at + r.size)), 32 * i);
    at += f.size + 1;
  }
  return { arena: buf, offsets, results, ids };
}

/**
 * Compresses and encrypts the files marked in `want` (1 = store it) into one output buffer
 * (reusing `out` when it is large enough).
 */
export function sealSmallBatch(
  encKey: Uint8Array,
  compression: CompressionSettings,
  batch: SmallBatch,
  want: Uint8Array,
  out?: Uint8Array,
): SealedSmall {
  let need = 0;
  for (let i = 0; i < want.length; i++) if (want[i]) need += batch.results[i]!.size + SEAL_OVERHEAD;
  const buf = out && out.byteLength >= need ? out : new Uint8Array(Math.max(need, 64 * 1024));
  const blobs: SealedSmall['blobs'] = [];
  let at = 0;
  for (let i = 0; i < want.length; i++) {
    if (!want[i]) {
      blobs.push(undefined);
      continue;
    }
    const r = batch.results[i]!;
    const start = batch.offsets[i]!;
    const data = batch.arena.subarray(start, start + r.size);
    const id = batch.ids.subarray(32 * i, 32 * i + 32);
    const c = compress(data, compression, { scratch: true }); // sealed at once
    const sealed = seal(
      encKey,
      c.data,
      blobAad('data', c.algorithm, id, data.length),
      undefined,
      buf.subarray(at),
    );
    blobs.push({ at, length: sealed.length, compression: c.algorithm });
    at += sealed.length;
  }
  return { out: buf, blobs };
}
