/**
 * The kinds of object a repository stores. Each maps onto a key prefix of a plain key-value store:
 *
 * | type       | key                         |
 * |------------|-----------------------------|
 * | `config`   | `config` (name is always `config`) |
 * | `key`      | `keys/<name>`               |
 * | `pack`     | `data/<name[0..2]>/<name>`  |
 * | `index`    | `index/<name>`              |
 * | `snapshot` | `snapshots/<name>`          |
 * | `lock`     | `locks/<name>`              |
 */
export type ObjectType = 'config' | 'key' | 'pack' | 'index' | 'snapshot' | 'lock';

export const OBJECT_TYPES: readonly ObjectType[] = ['config', 'key', 'pack', 'index', 'snapshot', 'lock'];

/** Names one stored object. Names are lowercase hex (64 chars) except for `config`. */
export interface ObjectHandle {
  readonly type: ObjectType;
  readonly name: string;
}

export interface ObjectInfo {
  readonly name: string;
  /** Size in bytes. */
  readonly size: number;
}

export interface ByteRange {
  readonly offset: number;
  readonly length: number;
}

export interface BackendProperties {
  /** True when `save` replaces an existing object atomically (readers see old or new, never a mix). */
  readonly atomicReplace: boolean;
  /** How many concurrent calls the backend handles well. */
  readonly connections: number;
  /** True when the backend keeps no data across process restarts (in-memory backends). */
  readonly ephemeral?: boolean;
}

/** The folder (key prefix) of each object type but `config`, which is a single object. */
export const OBJECT_DIRS: Readonly<Record<Exclude<ObjectType, 'config'>, string>> = {
  key: 'keys',
  pack: 'data',
  index: 'index',
  snapshot: 'snapshots',
  lock: 'locks',
};

/** The key of an object in a flat key-value store: see {@link ObjectType}. */
export function objectKey(handle: ObjectHandle): string {
  switch (handle.type) {
    case 'config':
      return 'config';
    case 'key':
      return `keys/${handle.name}`;
    case 'pack':
      return `data/${handle.name.slice(0, 2)}/${handle.name}`;
    case 'index':
      return `index/${handle.name}`;
    case 'snapshot':
      return `snapshots/${handle.name}`;
    case 'lock':
      return `locks/${handle.name}`;
  }
}

/**
 * Where a repository's objects live. Small on purpose: every backend (local disk, S3, SFTP,
 * rclone, REST) implements exactly this, and cross-cutting concerns (retries, rate limits,
 * logging, fault injection) are decorators around it. Every implementation MUST pass
 * `describeBackend` from `@backupforge/storage/testing`.
 *
 * Errors: every method MUST reject with a `ForgeError`. Transient failures (network drops,
 * timeouts, 5xx) set `retryable: true`; everything else is permanent.
 */
export interface StorageBackend {
  /** A human-readable location, e.g. `/srv/backup` or `s3:host/bucket/prefix`. Never contains secrets. */
  readonly location: string;

  properties(): BackendProperties;

  /**
   * Prepares an empty location for a new repository (creates directories, buckets…).
   * MUST NOT delete or overwrite anything. Calling it on a location that already holds
   * objects MUST succeed without changing them (callers check for an existing config first).
   */
  create(): Promise<void>;

  /**
   * Stores `data` under `handle`. MUST be atomic: a concurrent or later `load`/`list`/`stat`
   * sees either no object or the whole object, never a partial one, even if the process is
   * killed or the machine loses power mid-call. When it resolves, the object MUST be durable
   * (fsynced, or acknowledged by the remote service). Saving a name that exists replaces it
   * (callers only do so with identical content, except for `config` and `lock`).
   */
  save(handle: ObjectHandle, data: Uint8Array): Promise<void>;

  /**
   * Reads an object, or `range` of it. A missing object MUST reject with `FORGE_NOT_FOUND`.
   * A range that reaches past the end MUST reject with `FORGE_RANGE` (permanent): never return
   * fewer bytes than asked for. A zero-length range at offset <= size returns an empty array.
   *
   * `into`, with a `range`, is a buffer at least `range.length` long the backend MAY read the
   * bytes into (the result is then a view of it at offset 0), so a caller can reuse buffers;
   * backends that cannot simply ignore it. On failure its contents are undefined.
   */
  load(handle: ObjectHandle, range?: ByteRange, into?: Uint8Array): Promise<Uint8Array>;

  /** Size of an object. A missing object MUST reject with `FORGE_NOT_FOUND`. */
  stat(handle: ObjectHandle): Promise<ObjectInfo>;

  /**
   * Lists every object of `type`, in no particular order. MUST throw (not end early or return
   * nothing) when the listing fails part-way: callers delete based on listings. Temporary
   * files of in-progress `save` calls MUST NOT be listed.
   */
  list(type: ObjectType): AsyncIterable<ObjectInfo>;

  /** Deletes an object. Deleting a missing object MUST succeed (idempotent). */
  remove(handle: ObjectHandle): Promise<void>;

  /**
   * Optional. Starts a pack whose name is known only once it is complete (a pack is named by
   * the SHA-256 of its bytes): the caller appends its bytes as they are made and never holds
   * the whole pack in memory, then `commit`s it under its name, with every guarantee of
   * `save` (atomic, durable, replaces). Until then, and after `abort`, nothing is visible to
   * `load`/`list`/`stat`. Backends without it get whole packs through `save`.
   */
  createUpload?(type: 'pack'): Promise<ObjectUpload>;

  /**
   * Optional. Deletes the temporary files that interrupted writes left behind (a `save` or an
   * upload in a process that was killed, or on a machine that lost power) and that were last
   * modified more than `olderThanMs` ago; with `dryRun`, only counts them. MUST NOT touch an
   * object, nor a temporary file modified more recently (a write in progress). Backends whose
   * writes leave nothing behind (S3, REST) do not have it.
   */
  sweepTemporaries?(opts: {
    readonly olderThanMs: number;
    readonly dryRun?: boolean;
  }): Promise<TemporarySweep>;

  /** Releases connections and file handles. Further calls are undefined. */
  close(): Promise<void>;
}

/** What `StorageBackend.sweepTemporaries` found (and, unless a dry run, deleted). */
export interface TemporarySweep {
  readonly files: number;
  readonly bytes: number;
}

/** An object being written piece by piece (see `StorageBackend.createUpload`). */
export interface ObjectUpload {
  /** Appends `data`. The caller may reuse `data` once this resolves. */
  write(data: Uint8Array): Promise<void>;
  /** Stores the bytes written under `handle` (atomic and durable when it resolves). Call once. */
  commit(handle: ObjectHandle): Promise<void>;
  /** Discards the bytes written. Safe to call after a failed `write` or `commit`, and twice. */
  abort(): Promise<void>;
}
