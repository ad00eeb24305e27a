import type { ContentReader, FileMetadata } from './source.ts';

/** Writes one restored file. Created by {@link RestoreTarget.file}. */
export interface RestoreFileWriter {
  /**
   * Writes `data` at byte `offset`. The engine calls it with increasing, contiguous offsets.
   * A target that supports sparse files SHOULD skip all-zero `data` (leaving a hole) and
   * extend the file to its full size in `close`.
   */
  write(data: Uint8Array, offset: number): Promise<void>;
  /** Finishes the file: sets its final size, then mode, owner and times from its metadata. */
  close(): Promise<void>;
  /** Gives up on the file (an error happened); removes what was written. */
  abort(): Promise<void>;
}

/**
 * How a target that is a local directory lets the engine create small files itself, on the
 * worker threads that decrypt them: their data then never travels back to the main thread, and
 * the per-file system calls (create, write, owner, mode, times, close) run on several threads.
 */
export interface LocalFileWriting {
  /**
   * Prepares `path` for a new file as `file` would (parents checked or made, anything in the way
   * removed when overwriting) and returns its absolute path.
   */
  prepare(path: readonly string[]): Promise<string>;
  /**
   * URL of an ES module that worker threads can import. It exports
   * `writeWholeFile(path: string, meta: FileMetadata, data: Uint8Array, options: unknown): void`,
   * which does synchronously what `writeWhole` does for the prepared path, throwing a
   * `ForgeError` on failure.
   */
  readonly module: string;
  /** Passed to every `writeWholeFile` call (structured-cloned to the worker). */
  readonly options: unknown;
}

/**
 * Where a restore writes to: a local directory (`@backupforge/agent-fs`), later a remote host.
 * Paths are arrays of components relative to the restore root. The engine calls `dir` in
 * pre-order before a directory's children and `finishDir` in post-order after them (so a
 * directory's mtime and read-only mode are set last).
 */
export interface RestoreTarget {
  /**
   * Called once before anything is written. MUST throw `FORGE_TARGET_NOT_EMPTY` when the
   * target holds files and overwriting was not allowed, so nothing is overwritten silently.
   */
  prepare(): Promise<void>;
  dir(path: readonly string[], meta: FileMetadata): Promise<void>;
  file(path: readonly string[], meta: FileMetadata): Promise<RestoreFileWriter>;
  /**
   * Restores a whole small file in one call: content, final size, owner, mode and times, as
   * `file` + `write` + `close` would. Optional: the engine uses it for files it reads in one
   * piece, which saves most of the per-file overhead when restoring many small files. On error
   * it leaves no partial file behind.
   */
  writeWhole?(path: readonly string[], meta: FileMetadata, data: Uint8Array): Promise<void>;
  /** Optional, with `writeWhole`: lets the engine write small files on its worker threads. */
  readonly localFiles?: LocalFileWriting;
  /** Makes `path` another name for the already restored file at `existing`. */
  hardlink(path: readonly string[], existing: readonly string[], meta: FileMetadata): Promise<void>;
  symlink(path: readonly string[], meta: FileMetadata): Promise<void>;
  /** fifo, socket, chardev, blockdev. A target that cannot create one SHOULD warn, not fail. */
  special(path: readonly string[], meta: FileMetadata): Promise<void>;
  finishDir(path: readonly string[], meta: FileMetadata): Promise<void>;
  /** Reads a restored file back (for `restore --verify`). Optional: targets without it cannot verify. */
  readBack?(path: readonly string[]): Promise<ContentReader>;
  /** Called once at the end (also after errors). */
  close(): Promise<void>;
}
