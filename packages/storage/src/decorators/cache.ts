import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import type { ByteRange, ObjectHandle, ObjectInfo, ObjectType, StorageBackend } from '@backupforge/common';
import { ForgeError, ForgeErrorCodes } from '@backupforge/common';
import { errnoOf } from '../internal/errno.ts';
import { checkNumber, ForwardingBackend } from './forwarding.ts';

export interface CacheOptions {
  /** The cache directory of one repository, typically {@link defaultCacheDir}. Created on first write. */
  readonly dir: string;
  /** Longest pack header range kept. Default 4 MiB (the header of a full 65536-blob pack is 2.9 MiB). */
  readonly maxRangeBytes?: number;
  /** Told once when the cache stops writing (disk full, permission denied…). */
  readonly onWarning?: (message: string) => void;
}

/** Counters since the decorator was made. */
export interface CacheStats {
  /** Loads served from the cache (after verification). */
  readonly hits: number;
  /** Cacheable loads that went to the backend (nothing cached, or the entry failed verification). */
  readonly misses: number;
  /** Cache reads or writes that failed (I/O error, disk full, not writable) and were skipped. */
  readonly bypassed: number;
  /** Cached entries that failed verification, were dropped and fetched again. */
  readonly invalid: number;
  /** Cached entries dropped because a complete listing no longer showed their object. */
  readonly evicted: number;
}

/** A backend with a local cache in front of it. */
export interface CachingBackend extends StorageBackend {
  /** The absolute cache directory. */
  readonly cacheDir: string;
  cacheStats(): CacheStats;
}

const WHOLE_DIRS: Readonly<Partial<Record<ObjectType, string>>> = {
  key: 'keys',
  index: 'index',
  snapshot: 'snapshots',
};
const PACK_DIR = 'packs';
/** Only names that are object ids are cached (and used as file names). */
const OBJECT_ID = /^[0-9a-f]{64}$/;
/** A pack ends with the 4-byte length of its header (format spec §6); a sealed blob is ≥ 28 bytes. */
const TAIL_LENGTH = 4;
/** Pack tails remembered in memory, to recognise the header read that follows a tail read. */
const MAX_TAILS = 4096;
const CHECKSUM_LENGTH = 32;
const TEMP_PREFIX = '.tmp-';
/** Temporary files older than this are leftovers of a crash, removed when a listing evicts. */
const STALE_TEMP_MS = 60 * 60 * 1000;
const FILE_MODE = 0o600;
const DIR_MODE = 0o700;
/** Errors after which the cache stops writing for the rest of the process. */
const STOP_WRITING = new Set(['ENOSPC', 'EDQUOT', 'EACCES', 'EPERM', 'EROFS', 'ENOTDIR', 'EEXIST']);
const CACHEDIR_TAG =
  'Signature: 8a477f597d28d172789f06886806bc55\n' +
  '# This file is a cache directory tag created by BackupForge.\n' +
  '# For information about cache directory tags, see https://bford.info/cachedir/\n';

/**
 * `$XDG_CACHE_HOME/backupforge/<repo id>` (or `~/.cache/backupforge/<repo id>`): where a
 * repository's cache lives by default.
 */
export function defaultCacheDir(repoId: string, env: NodeJS.ProcessEnv = process.env): string {
  if (typeof repoId !== 'string' || !/^[0-9a-f]{8,}$/.test(repoId)) {
    throw new ForgeError(ForgeErrorCodes.FORGE_USAGE, `invalid repository id ${JSON.stringify(repoId)}`);
  }
  const xdg = env.XDG_CACHE_HOME;
  const base = xdg !== undefined && isAbsolute(xdg) ? xdg : join(homedir(), '.cache');
  return join(base, 'backupforge', repoId);
}

/**
 * A local on-disk cache of immutable objects in front of any backend:
 *
 * - whole loads of key, index and snapshot files, kept under `keys/`, `index/`, `snapshots/`;
 * - pack header reads: the 4-byte header length at the end of a pack, and the header range that
 *   ends where that length begins (the two ranged loads of `readPackHeader`, format spec §6),
 *   kept under `packs/<pack id>/<offset>-<length>`.
 *
 * Nothing read from the cache is trusted: a whole object must hash (SHA-256) to its name, a range
 * must match the checksum stored with it (over the pack id, offset, length and bytes). An entry
 * that fails is deleted and the object fetched from the backend again. Only objects whose bytes
 * hash to their name are cached, so a damaged object on the backend is never kept.
 *
 * `save` of a key, index or snapshot writes its bytes through to the cache; `remove` drops the
 * entry; a complete `list` of key, index, snapshot or pack drops the entries of objects it did not
 * show (an aborted or failed listing evicts nothing). `config` and locks are never cached, nor
 * are whole packs or blob reads.
 *
 * Cache writes are atomic (temporary file + rename). The cache never fails an operation: a read
 * or write error just bypasses it (counted in `cacheStats().bypassed`), and after a disk-full or
 * permission error the cache stops writing for the rest of the process (reads still work).
 *
 * Commands that verify the repository (`check`) should not read pack headers through a cache:
 * they are meant to read what the backend holds.
 *
 * ```ts
 * const backend = withCache(s3, { dir: defaultCacheDir(repoId) });
 * ```
 */
export function withCache(backend: StorageBackend, options: CacheOptions): CachingBackend {
  return new CacheBackend(backend, options);
}

class CacheBackend extends ForwardingBackend implements CachingBackend {
  readonly cacheDir: string;
  readonly #maxRangeBytes: number;
  readonly #onWarning: ((message: string) => void) | undefined;
  /** Where the 4-byte tail of recently read packs starts, i.e. their size − 4. Map order is age. */
  readonly #tails = new Map<string, number>();
  #writable = true;
  #tagged = false;
  #hits = 0;
  #misses = 0;
  #bypassed = 0;
  #invalid = 0;
  #evicted = 0;

  constructor(inner: StorageBackend, options: CacheOptions) {
    super(inner);
    if (typeof options?.dir !== 'string' || options.dir === '') {
      throw new ForgeError(ForgeErrorCodes.FORGE_USAGE, 'the cache needs a directory');
    }
    this.cacheDir = resolve(options.dir);
    this.#maxRangeBytes = checkNumber(options.maxRangeBytes ?? 4 * 1024 * 1024, 'cache maxRangeBytes', {
      min: 0,
      integer: true,
    });
    this.#onWarning = options.onWarning;
  }

  cacheStats(): CacheStats {
    return {
      hits: this.#hits,
      misses: this.#misses,
      bypassed: this.#bypassed,
      invalid: this.#invalid,
      evicted: this.#evicted,
    };
  }

  override async save(handle: ObjectHandle, data: Uint8Array): Promise<void> {
    await this.inner.save(handle, data);
    const path = this.#wholePath(handle);
    if (path !== undefined && sha256Hex(data) === handle.name) await this.#write(path, data);
  }

  override async load(handle: ObjectHandle, range?: ByteRange, into?: Uint8Array): Promise<Uint8Array> {
    if (range === undefined) {
      const path = this.#wholePath(handle);
      return path === undefined ? this.inner.load(handle) : this.#loadWhole(handle, path);
    }
    if (this.#isHeaderRead(handle, range)) return this.#loadRange(handle, range);
    return this.inner.load(handle, range, into);
  }

  override async remove(handle: ObjectHandle): Promise<void> {
    try {
      await this.inner.remove(handle);
    } finally {
      const path = this.#wholePath(handle);
      if (path !== undefined) await this.#drop(path);
      else if (handle.type === 'pack' && OBJECT_ID.test(handle.name)) {
        this.#tails.delete(handle.name);
        await this.#drop(join(this.cacheDir, PACK_DIR, handle.name));
      }
    }
  }

  override async *list(type: ObjectType): AsyncIterable<ObjectInfo> {
    const dir = type === 'pack' ? PACK_DIR : WHOLE_DIRS[type];
    if (dir === undefined) {
      yield* this.inner.list(type);
      return;
    }
    const listed = new Set<string>();
    for await (const info of this.inner.list(type)) {
      listed.add(info.name);
      yield info;
    }
    // Reached only when the listing completed: a partial one must not evict anything.
    await this.#evict(type, join(this.cacheDir, dir), listed);
  }

  async #loadWhole(handle: ObjectHandle, path: string): Promise<Uint8Array> {
    const cached = await this.#read(path);
    if (cached !== undefined) {
      if (sha256Hex(cached) === handle.name) {
        this.#hits++;
        return cached;
      }
      this.#invalid++;
      await this.#drop(path);
    }
    this.#misses++;
    const data = await this.inner.load(handle);
    if (sha256Hex(data) === handle.name) await this.#write(path, data);
    return data;
  }

  async #loadRange(handle: ObjectHandle, range: ByteRange): Promise<Uint8Array> {
    const path = join(this.cacheDir, PACK_DIR, handle.name, `${range.offset}-${range.length}`);
    const entry = await this.#read(path);
    if (entry !== undefined) {
      const sum = rangeChecksum(handle.name, range, entry.subarray(CHECKSUM_LENGTH));
      if (entry.length === CHECKSUM_LENGTH + range.length && sum.equals(entry.subarray(0, CHECKSUM_LENGTH))) {
        this.#hits++;
        this.#noteTail(handle.name, range);
        return entry.slice(CHECKSUM_LENGTH);
      }
      this.#invalid++;
      await this.#drop(path);
    }
    this.#misses++;
    const data = await this.inner.load(handle, range);
    if (data.length === range.length) {
      this.#noteTail(handle.name, range);
      const sealed = new Uint8Array(CHECKSUM_LENGTH + data.length);
      sealed.set(rangeChecksum(handle.name, range, data), 0);
      sealed.set(data, CHECKSUM_LENGTH);
      await this.#write(path, sealed);
    }
    return data;
  }

  /** The 4-byte header length of a pack, or the range that ends where a known tail starts. */
  #isHeaderRead(handle: ObjectHandle, range: ByteRange): boolean {
    if (handle.type !== 'pack' || !OBJECT_ID.test(handle.name)) return false;
    const { offset, length } = range;
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length <= 0) {
      return false;
    }
    if (length === TAIL_LENGTH) return true;
    return length <= this.#maxRangeBytes && this.#tails.get(handle.name) === offset + length;
  }

  #noteTail(name: string, range: ByteRange): void {
    if (range.length !== TAIL_LENGTH) return;
    this.#tails.delete(name);
    this.#tails.set(name, range.offset);
    if (this.#tails.size > MAX_TAILS) this.#tails.delete(this.#tails.keys().next().value!);
  }

  #wholePath(handle: ObjectHandle): string | undefined {
    const dir = WHOLE_DIRS[handle.type];
    if (dir === undefined || !OBJECT_ID.test(handle.name)) return undefined;
    return join(this.cacheDir, dir, handle.name);
  }

  /** The file's bytes, or `undefined` when it is missing or unreadable (counted as bypassed). */
  async #read(path: string): Promise<Uint8Array | undefined> {
    try {
      const buf = await readFile(path);
      return buf.byteOffset === 0 && buf.byteLength === buf.buffer.byteLength
        ? new Uint8Array(buf.buffer, 0, buf.byteLength)
        : new Uint8Array(buf);
    } catch (e) {
      if (errnoOf(e) !== 'ENOENT') this.#bypassed++;
      return undefined;
    }
  }

  /** Writes `bytes` to `path` atomically; failures are counted, never thrown. */
  async #write(path: string, bytes: Uint8Array): Promise<void> {
    if (!this.#writable) {
      this.#bypassed++;
      return;
    }
    const dir = dirname(path);
    const temp = join(dir, `${TEMP_PREFIX}${randomBytes(8).toString('hex')}`);
    try {
      try {
        await writeFile(temp, bytes, { flag: 'wx', mode: FILE_MODE });
      } catch (e) {
        if (errnoOf(e) !== 'ENOENT') throw e;
        await this.#makeDir(dir);
        await writeFile(temp, bytes, { flag: 'wx', mode: FILE_MODE });
      }
      await rename(temp, path);
    } catch (e) {
      this.#bypassed++;
      await rm(temp, { force: true }).catch(() => {});
      const errno = errnoOf(e);
      if (errno !== undefined && STOP_WRITING.has(errno) && this.#writable) {
        this.#writable = false;
        this.#warn(`cannot write to the cache in ${this.cacheDir} (${errno}); continuing without caching`);
      }
    }
  }

  async #makeDir(dir: string): Promise<void> {
    await mkdir(dir, { recursive: true, mode: DIR_MODE });
    if (this.#tagged) return;
    this.#tagged = true;
    // Lets backup tools that honour cache directory tags skip the cache.
    await writeFile(join(this.cacheDir, 'CACHEDIR.TAG'), CACHEDIR_TAG, { flag: 'wx', mode: FILE_MODE }).catch(
      () => {},
    );
  }

  async #drop(path: string): Promise<void> {
    try {
      await rm(path, { force: true, recursive: true });
    } catch {
      this.#bypassed++;
    }
  }

  /** Drops the entries of `dir` whose object is not in `listed`, and stale temporary files. */
  async #evict(type: ObjectType, dir: string, listed: ReadonlySet<string>): Promise<void> {
    let names: string[];
    try {
      names = await readdir(dir);
    } catch (e) {
      if (errnoOf(e) !== 'ENOENT') this.#bypassed++;
      return;
    }
    for (const name of names) {
      if (name.startsWith(TEMP_PREFIX)) {
        const info = await stat(join(dir, name)).catch(() => undefined);
        if (info !== undefined && Date.now() - info.mtimeMs > STALE_TEMP_MS)
          await this.#drop(join(dir, name));
      } else if (OBJECT_ID.test(name) && !listed.has(name)) {
        if (type === 'pack') this.#tails.delete(name);
        await this.#drop(join(dir, name));
        this.#evicted++;
      }
    }
  }

  #warn(message: string): void {
    try {
      this.#onWarning?.(message);
    } catch {
      // A warning callback must not change what the backend does.
    }
  }
}

function sha256Hex(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Binds cached range bytes to the pack and the place they came from. */
function rangeChecksum(name: string, range: ByteRange, data: Uint8Array): Buffer {
  return createHash('sha256')
    .update(`bf-cache-range\0${name}\0${range.offset}\0${range.length}\0`)
    .update(data)
    .digest();
}
