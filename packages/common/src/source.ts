import type { ForgeErrorCode } from './errors.ts';

/** What a node in a snapshot is. Only `file` nodes have content. */
export type NodeType = 'file' | 'dir' | 'symlink' | 'fifo' | 'socket' | 'chardev' | 'blockdev';

/**
 * Metadata of one filesystem object, as a source reports it and a snapshot tree stores it.
 * Times are nanoseconds since the Unix epoch (bigint: JavaScript numbers lose the nanoseconds).
 */
export interface FileMetadata {
  readonly type: NodeType;
  /** Permission bits including setuid/setgid/sticky (`st_mode & 0o7777`); no file-type bits. */
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  /** User and group names, when the source can resolve them. */
  readonly user?: string;
  readonly group?: string;
  /** Size in bytes for files; 0 for everything else. */
  readonly size: number;
  readonly mtimeNs: bigint;
  readonly atimeNs: bigint;
  readonly ctimeNs: bigint;
  /** Inode and device number: with `links`, they identify hardlinks and unchanged files. */
  readonly inode: bigint;
  readonly device: bigint;
  readonly links: number;
  /** Device number for chardev/blockdev nodes. */
  readonly rdev?: number;
  /** Target of a symlink, exactly as stored (may dangle). */
  readonly linkTarget?: string;
}

/** Reads the content of one file into caller-owned buffers (so buffers can be reused). */
export interface ContentReader {
  /** Fills `buf` from its start; resolves with the number of bytes read, 0 at end of file. */
  read(buf: Uint8Array): Promise<number>;
  close(): Promise<void>;
}

/**
 * One item a source yields. Entries come in depth-first pre-order, children of a directory
 * sorted by name (byte order of their UTF-8), so a consumer can build trees bottom-up with a
 * stack. Paths are arrays of components relative to the snapshot root; ancestors of a backup
 * target (e.g. `home`, `home/alice` for `/home/alice/docs`) are yielded too, before it.
 */
export interface SourceEntry {
  readonly kind: 'entry';
  readonly path: readonly string[];
  readonly meta: FileMetadata;
  /** Present for `file` entries: opens the content for reading. */
  open?(): Promise<ContentReader>;
  /**
   * True when `meta.size` is not known in advance (stdin, a command's output): the engine then
   * records the bytes it read without warning that the size changed.
   */
  readonly streamed?: boolean;
  /**
   * For a regular file on this machine: its absolute path. The engine may then read a small file
   * itself, on a worker thread, batched with others (open with `O_NOFOLLOW`, check it is still a
   * regular file, read, close) instead of calling `open()`: far fewer round trips for trees of
   * many small files. A large one it may read itself too, with O_DIRECT (around the page cache).
   * Sources whose content is not a local file leave it out.
   */
  readonly localPath?: string;
}

/** Something the source could not read: the backup goes on and ends as "partial". */
export interface SourceWarning {
  readonly kind: 'warning';
  /** The path as the user knows it (absolute for filesystem sources). */
  readonly path: string;
  readonly code: ForgeErrorCode;
  readonly message: string;
}

export type SourceEvent = SourceEntry | SourceWarning;

/**
 * Anything that can be backed up: a filesystem walk, stdin, a remote host, a VM image.
 * Implemented by the `@backupforge/agent-*` packages.
 */
export interface BackupSource {
  /** Short kind, e.g. `fs`, `stdin`, `ssh`, `proxmox`. Stored in the snapshot. */
  readonly kind: string;
  /** The paths the snapshot records (absolute for filesystem sources). */
  readonly paths: readonly string[];
  /** Chunker hint: `fixed` for disk images, `cdc` (default) for everything else. */
  readonly chunking?: 'cdc' | 'fixed';
  /** Streams the source's entries. May be called once. */
  entries(signal?: AbortSignal): AsyncIterable<SourceEvent>;
  /** Optional fast pre-scan of totals, for progress ETA. */
  scan?(signal?: AbortSignal): Promise<{ files: number; bytes: number }>;
}
