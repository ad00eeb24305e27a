import { randomBytes } from 'node:crypto';
import type { Dirent, Stats } from 'node:fs';
import { close as fsClose, fstat as fsFstat, open as fsOpen, read as fsRead } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { lstat, mkdir, open, readdir, rename, rm, stat, unlink } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import type {
  BackendProperties,
  ByteRange,
  ObjectHandle,
  ObjectInfo,
  ObjectType,
  ObjectUpload,
  StorageBackend,
  TemporarySweep,
} from '@backupforge/common';
import { ForgeError, ForgeErrorCodes, OBJECT_DIRS, objectKey, toForgeError } from '@backupforge/common';
import { checkHandle, checkRange, checkType } from '../internal/check-handle.ts';
import { errnoOf } from '../internal/errno.ts';
import { writeFileDirect } from './direct-write.ts';
import { LocalUpload } from './upload.ts';

export interface LocalBackendOptions {
  /** The repository directory. Relative paths are resolved against the current directory. */
  readonly path: string;
}

/** Objects are secret-free (encrypted) but still nobody else's business: owner-only. */
const FILE_MODE = 0o600;
const DIR_MODE = 0o700;
/** Prefix of in-progress `save` files. Valid object names never start with '.', so `list` skips them. */
const TEMP_PREFIX = '.tmp-';
const TYPE_DIRS = OBJECT_DIRS;
/** How many `lstat` calls `list` keeps in flight. */
const STAT_BATCH = 64;

const PROPERTIES: BackendProperties = Object.freeze({ atomicReplace: true, connections: 4 });

/**
 * A repository in a local directory (or anything mounted as one: NFS, SMB, a USB disk).
 *
 * Layout: `config`, `keys/<name>`, `data/<name[0..2]>/<name>`, `index/<name>`,
 * `snapshots/<name>`, `locks/<name>` (see `objectKey`). Files are written with mode 0o600 and
 * directories with 0o700 (before umask): the content is encrypted, but listing sizes and times
 * is still nobody else's business.
 *
 * `save` is atomic and durable: it writes `.tmp-<random>` in the target directory, fsyncs it,
 * renames it over the final name and fsyncs the directory. A crash leaves at most a stale
 * `.tmp-*` file, never a partial object, and `list` never reports temporary files.
 *
 * ```ts
 * const backend = createLocalBackend({ path: '/srv/backup' });
 * await backend.create();
 * await backend.save({ type: 'snapshot', name: id }, bytes);
 * ```
 */
export function createLocalBackend(options: LocalBackendOptions): StorageBackend {
  return new LocalBackend(options);
}

class LocalBackend implements StorageBackend {
  readonly #root: string;
  /** Open pack files, least recently used first. */
  readonly #fds = new Map<string, { fd: number; size: number; refs: number }>();
  readonly location: string;

  constructor(options: LocalBackendOptions) {
    if (typeof options.path !== 'string' || options.path === '') {
      throw new ForgeError(ForgeErrorCodes.FORGE_USAGE, 'the local backend needs a non-empty path');
    }
    this.#root = resolve(options.path);
    this.location = this.#root;
  }

  properties(): BackendProperties {
    return PROPERTIES;
  }

  async create(): Promise<void> {
    try {
      const firstCreated = await mkdir(this.#root, { recursive: true, mode: DIR_MODE }).catch(
        (e: unknown) => {
          if (errnoOf(e) === 'EEXIST') return undefined; // a file is in the way: reported just below
          throw e;
        },
      );
      if (firstCreated !== undefined) await syncCreatedChain(this.#root, firstCreated);
      await assertDirectory(this.#root);
      for (const dir of Object.values(TYPE_DIRS)) {
        await this.#makeDir(join(this.#root, dir));
        await assertDirectory(join(this.#root, dir));
      }
    } catch (e) {
      throw toForgeError(e, `cannot create repository directories in ${this.#root}`);
    }
  }

  async save(handle: ObjectHandle, data: Uint8Array): Promise<void> {
    checkHandle(handle);
    const file = this.#file(handle);
    if (handle.type === 'pack') await this.#evict(file);
    const dir = dirname(file);
    const temp = join(dir, `${TEMP_PREFIX}${randomBytes(8).toString('hex')}`);
    let fh: FileHandle | undefined;
    try {
      // Packs go around the page cache where the filesystem allows (direct-write.ts).
      let direct = false;
      if (handle.type === 'pack') {
        try {
          direct = await writeFileDirect(temp, data, FILE_MODE);
        } catch (e) {
          if (errnoOf(e) !== 'ENOENT') throw e;
          await this.#makeDir(dir); // data/<xx>/ is created on demand
          direct = await writeFileDirect(temp, data, FILE_MODE);
        }
      }
      if (!direct) {
        try {
          fh = await open(temp, 'wx', FILE_MODE);
        } catch (e) {
          if (errnoOf(e) !== 'ENOENT') throw e;
          // The directory is missing: data/<xx>/ is created on demand, type dirs if create() was skipped.
          await this.#makeDir(dir);
          fh = await open(temp, 'wx', FILE_MODE);
        }
        await fh.writeFile(data);
        await fh.sync();
        await fh.close();
        fh = undefined;
      }
      await rename(temp, file);
      await syncDir(dir);
    } catch (e) {
      await fh?.close().catch(() => {});
      await rm(temp, { force: true }).catch(() => {});
      throw toForgeError(e, `cannot save ${file}`);
    }
  }

  /**
   * A pack written as it is made: into `data/.tmp-<random>` (which `list` skips), renamed to
   * its place on `commit`.
   */
  async createUpload(type: 'pack'): Promise<ObjectUpload> {
    checkType(type);
    if (type !== 'pack')
      throw new ForgeError(ForgeErrorCodes.FORGE_USAGE, `uploads are for packs, not ${type}s`);
    return LocalUpload.start({
      temp: join(this.#root, TYPE_DIRS.pack, `${TEMP_PREFIX}${randomBytes(8).toString('hex')}`),
      target: (handle) => {
        checkHandle(handle);
        if (handle.type !== 'pack')
          throw new ForgeError(ForgeErrorCodes.FORGE_USAGE, 'an upload stores a pack');
        return this.#file(handle);
      },
      makeDir: (dir) => this.#makeDir(dir),
      evict: (file) => this.#evict(file),
      syncDir,
    });
  }

  async load(handle: ObjectHandle, range?: ByteRange, into?: Uint8Array): Promise<Uint8Array> {
    checkHandle(handle);
    const file = this.#file(handle);
    // Packs are written once and read in many small ranges (restore, check): keep a few open.
    const pack = handle.type === 'pack';
    let fd: { fd: number; size: number } | undefined;
    try {
      fd = pack ? await this.#packFd(file) : await openFd(file);
      const { offset, length } = range ?? { offset: 0, length: fd.size };
      checkRange({ offset, length }, fd.size, file);
      const out = range && into && into.length >= length ? into.subarray(0, length) : new Uint8Array(length);
      let done = 0;
      while (done < length) {
        const bytesRead = await readFd(fd.fd, out, done, length - done, offset + done);
        if (bytesRead === 0) {
          throw new ForgeError(
            ForgeErrorCodes.FORGE_RANGE,
            `${file} ended after ${offset + done} bytes while reading ${length} bytes at offset ${offset}`,
          );
        }
        done += bytesRead;
      }
      return out;
    } catch (e) {
      throw toForgeError(e, `cannot load ${file}`);
    } finally {
      if (fd) {
        if (pack) this.#releasePackFd(file);
        else await closeFd(fd.fd).catch(() => {});
      }
    }
  }

  async #packFd(file: string): Promise<{ fd: number; size: number }> {
    const hit = this.#fds.get(file);
    if (hit) {
      hit.refs++;
      this.#fds.delete(file); // re-insert: Map order is the LRU order
      this.#fds.set(file, hit);
      return hit;
    }
    const opened = await openFd(file);
    const raced = this.#fds.get(file);
    if (raced) {
      await closeFd(opened.fd).catch(() => {});
      raced.refs++;
      return raced;
    }
    const entry = { ...opened, refs: 1 };
    this.#fds.set(file, entry);
    for (const [f, e] of this.#fds) {
      if (this.#fds.size <= MAX_OPEN_PACKS) break;
      if (e.refs === 0) {
        this.#fds.delete(f);
        await closeFd(e.fd).catch(() => {});
      }
    }
    return entry;
  }

  #releasePackFd(file: string): void {
    const e = this.#fds.get(file);
    if (e) e.refs--;
  }

  /** Forgets a cached descriptor (the pack was removed or replaced). */
  async #evict(file: string): Promise<void> {
    const e = this.#fds.get(file);
    if (!e) return;
    this.#fds.delete(file);
    if (e.refs === 0) await closeFd(e.fd).catch(() => {});
    // else: in use; the reader's close path no longer finds it and the fd leaks until exit —
    // acceptable for the rare remove-while-reading, and never yields wrong data (positional reads).
  }

  async stat(handle: ObjectHandle): Promise<ObjectInfo> {
    checkHandle(handle);
    const file = this.#file(handle);
    try {
      const st = await stat(file);
      if (!st.isFile()) {
        throw new ForgeError(ForgeErrorCodes.FORGE_IO, `${file} is not a regular file`);
      }
      return { name: handle.type === 'config' ? 'config' : handle.name, size: st.size };
    } catch (e) {
      throw toForgeError(e, `cannot stat ${file}`);
    }
  }

  async *list(type: ObjectType): AsyncIterable<ObjectInfo> {
    if (type === 'config') {
      const info = await statIfExists(join(this.#root, 'config'));
      if (info?.isFile()) yield { name: 'config', size: info.size };
      return;
    }
    checkType(type);
    const typeDir = join(this.#root, TYPE_DIRS[type]);
    if (type !== 'pack') {
      yield* listFiles(typeDir);
      return;
    }
    const subdirs = await readDirIfExists(typeDir);
    for (const entry of subdirs ?? []) {
      if (entry.name.startsWith('.') || !entry.isDirectory()) continue;
      yield* listFiles(join(typeDir, entry.name));
    }
  }

  async remove(handle: ObjectHandle): Promise<void> {
    checkHandle(handle);
    const file = this.#file(handle);
    if (handle.type === 'pack') await this.#evict(file);
    try {
      await unlink(file);
    } catch (e) {
      if (errnoOf(e) === 'ENOENT') return;
      throw toForgeError(e, `cannot remove ${file}`);
    }
  }

  /**
   * Deletes `.tmp-*` files (of `save` and of uploads) last modified more than `olderThanMs` ago,
   * in the repository directory, every type directory and every `data/<xx>/`.
   */
  async sweepTemporaries(opts: {
    readonly olderThanMs: number;
    readonly dryRun?: boolean;
  }): Promise<TemporarySweep> {
    const before = Date.now() - opts.olderThanMs;
    const dirs = [this.#root, ...Object.values(TYPE_DIRS).map((d) => join(this.#root, d))];
    const packDir = join(this.#root, TYPE_DIRS.pack);
    for (const e of (await readDirIfExists(packDir)) ?? []) {
      if (!e.name.startsWith('.') && e.isDirectory()) dirs.push(join(packDir, e.name));
    }
    let files = 0;
    let bytes = 0;
    for (const dir of dirs) {
      for (const e of (await readDirIfExists(dir)) ?? []) {
        if (!e.name.startsWith(TEMP_PREFIX) || !e.isFile()) continue;
        const path = join(dir, e.name);
        // Gone meanwhile (committed or aborted), or being written: not stale.
        const st = await lstat(path).catch(() => undefined);
        if (st === undefined || !st.isFile() || st.mtimeMs > before) continue;
        if (!opts.dryRun) {
          try {
            await unlink(path);
          } catch (err) {
            if (errnoOf(err) === 'ENOENT') continue;
            throw toForgeError(err, `cannot remove ${path}`);
          }
        }
        files++;
        bytes += st.size;
      }
    }
    return { files, bytes };
  }

  async close(): Promise<void> {
    const all = [...this.#fds.values()];
    this.#fds.clear();
    await Promise.all(all.map((e) => closeFd(e.fd).catch(() => {})));
  }

  #file(handle: ObjectHandle): string {
    return join(this.#root, objectKey(handle));
  }

  /**
   * Creates `dir` and any missing parents inside the repository, fsyncing each parent so the new
   * entries survive a crash. Never creates the repository root itself: a missing root usually
   * means an unmounted disk or a typo, and writing there would fill the wrong filesystem.
   */
  async #makeDir(dir: string): Promise<void> {
    if (dir.length <= this.#root.length) {
      throw new ForgeError(
        ForgeErrorCodes.FORGE_REPO_NOT_FOUND,
        `repository directory ${this.#root} does not exist`,
        {
          hint: 'check that the path is right and its disk is mounted, or create the repository first',
        },
      );
    }
    try {
      await mkdir(dir, { mode: DIR_MODE });
    } catch (e) {
      const errno = errnoOf(e);
      if (errno === 'EEXIST') return;
      if (errno !== 'ENOENT') throw e;
      await this.#makeDir(dirname(dir));
      try {
        await mkdir(dir, { mode: DIR_MODE });
      } catch (e2) {
        if (errnoOf(e2) === 'EEXIST') return;
        throw e2;
      }
    }
    await syncDir(dirname(dir));
  }
}

async function* listFiles(dir: string): AsyncGenerator<ObjectInfo> {
  const entries = await readDirIfExists(dir);
  if (entries === undefined) return;
  const names = entries.filter((e) => !e.name.startsWith('.') && !e.isDirectory()).map((e) => e.name);
  for (let i = 0; i < names.length; i += STAT_BATCH) {
    const batch = names.slice(i, i + STAT_BATCH);
    const infos = await Promise.all(batch.map((name) => statIfExists(join(dir, name))));
    for (let j = 0; j < batch.length; j++) {
      const info = infos[j];
      // A missing entry was removed since readdir: it is correctly absent from the listing.
      if (info?.isFile()) yield { name: batch[j]!, size: info.size };
    }
  }
}

/** `readdir`, or `undefined` when `dir` does not exist. Any other failure throws: callers delete based on listings. */
async function readDirIfExists(dir: string): Promise<Dirent[] | undefined> {
  try {
    return await readdir(dir, { withFileTypes: true });
  } catch (e) {
    if (errnoOf(e) === 'ENOENT') return undefined;
    throw toForgeError(e, `cannot list ${dir}`);
  }
}

async function statIfExists(path: string): Promise<Stats | undefined> {
  try {
    return await stat(path);
  } catch (e) {
    if (errnoOf(e) === 'ENOENT') return undefined;
    throw toForgeError(e, `cannot stat ${path}`);
  }
}

async function assertDirectory(dir: string): Promise<void> {
  const st = await stat(dir);
  if (!st.isDirectory()) {
    throw new ForgeError(ForgeErrorCodes.FORGE_USAGE, `${dir} exists and is not a directory`, {
      hint: 'choose another repository location or move the file away',
    });
  }
}

/** fsyncs a directory so that entries created or renamed in it are durable. */
async function syncDir(dir: string): Promise<void> {
  let fh: FileHandle | undefined;
  try {
    fh = await open(dir, 'r');
    await fh.sync();
  } catch (e) {
    // Some filesystems (certain network and FUSE mounts) cannot fsync directories; nothing more can be done there.
    const errno = errnoOf(e);
    if (errno !== 'EINVAL' && errno !== 'ENOTSUP' && errno !== 'EISDIR') throw e;
  } finally {
    await fh?.close().catch(() => {});
  }
}

/** After `mkdir -p` created `firstCreated` and its descendants down to `dir`, fsyncs each new entry's parent. */
async function syncCreatedChain(dir: string, firstCreated: string): Promise<void> {
  for (let d = dir; ; d = dirname(d)) {
    await syncDir(dirname(d));
    if (d === firstCreated || dirname(d) === d) return;
  }
}

const MAX_OPEN_PACKS = 32;
const fsOpenAsync = promisify(fsOpen);
const fsFstatAsync = promisify(fsFstat);
const closeFd = promisify(fsClose);

/** Opens a file read-only with the callback API (cheaper than FileHandle for many small reads). */
async function openFd(file: string): Promise<{ fd: number; size: number }> {
  const fd = await fsOpenAsync(file, 'r');
  try {
    return { fd, size: (await fsFstatAsync(fd)).size };
  } catch (e) {
    await closeFd(fd).catch(() => {});
    throw e;
  }
}

function readFd(
  fd: number,
  buf: Uint8Array,
  offset: number,
  length: number,
  position: number,
): Promise<number> {
  return new Promise((res, rej) =>
    fsRead(fd, buf, offset, length, position, (err, n) => (err ? rej(err) : res(n))),
  );
}
