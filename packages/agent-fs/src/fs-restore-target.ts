import { execFile } from 'node:child_process';
import { existsSync, fchmod, fchown, futimes } from 'node:fs';
import {
  chmod,
  type FileHandle,
  lchown,
  link,
  lstat,
  lutimes,
  mkdir,
  open,
  readdir,
  stat,
  symlink,
  unlink,
} from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import {
  type ContentReader,
  type FileMetadata,
  ForgeError,
  type ForgeErrorCode,
  ForgeErrorCodes,
  InternalError,
  type LocalFileWriting,
  type RestoreFileWriter,
  type RestoreTarget,
  toForgeError,
} from '@backupforge/common';
import { splitDeviceNumber } from './internal/device-number.ts';
import { DIRECT_WRITE_MIN, DirectFileWriter } from './internal/direct-file-writer.ts';
import { errnoOf } from './internal/errno.ts';
import { openFileReader } from './internal/file-content-reader.ts';
import { checkComponents, checkEntryPath } from './internal/restore-path.ts';
import { nsToUtimeSeconds } from './internal/utime-seconds.ts';
import { isAllZero } from './internal/zero-bytes.ts';
import { CREATE_FLAGS, type WholeFileOptions, writeWholeFile } from './whole-file-writer.ts';

const execFileAsync = promisify(execFile);
const fchownAsync = promisify(fchown);
const fchmodAsync = promisify(fchmod);
const futimesAsync = promisify(futimes);

/** Something the restore target skipped or could not do; the restore goes on. */
export interface RestoreWarning {
  /** Absolute path on disk. */
  readonly path: string;
  readonly code: ForgeErrorCode;
  readonly message: string;
}

/** Options of {@link createFsRestoreTarget}. */
export interface FsRestoreTargetOptions {
  /** Directory to restore into; created when missing. */
  readonly root: string;
  /** Allow a non-empty root and replace files in the way. Default false. */
  readonly overwrite?: boolean;
  /** Restore owners (uid/gid). Default: only when running as root. */
  readonly owner?: boolean;
  /** Receives what could not be restored (sockets, device nodes without root, …). */
  readonly onWarning?: (warning: RestoreWarning) => void;
  /**
   * Write files of 1 MiB and more with O_DIRECT, around the page cache, where the filesystem
   * allows it (default true; `FORGE_DIRECT_IO=0` turns it off when this is not given). Saves the
   * kernel's copy of every byte into the page cache, and leaves the machine's cache as it was.
   */
  readonly directIo?: boolean;
}

/** The module worker threads import to write small files (built next to this one, or the source). */
function writerModule(): string {
  for (const rel of ['./whole-file-writer.js', './whole-file-writer.ts']) {
    const u = new URL(rel, import.meta.url);
    if (existsSync(fileURLToPath(u))) return u.href;
  }
  return new URL('./whole-file-writer.js', import.meta.url).href;
}

/**
 * A {@link RestoreTarget} writing into a local directory. Files are created fresh (never
 * written through a symlink or an existing hardlink), all-zero chunks become holes, and mode,
 * times and (as root) owners are restored from the snapshot.
 */
class FsRestoreTarget implements RestoreTarget {
  readonly #root: string;
  readonly #overwrite: boolean;
  readonly #owner: boolean;
  readonly #directIo: boolean;
  readonly #onWarning: (warning: RestoreWarning) => void;
  /** Directories created by `dir` and not finished yet: their children need no symlink check. */
  readonly #openDirs = new Set<string>();
  /** Writers not closed or aborted yet, aborted by `close`. */
  readonly #openWriters = new Set<RestoreFileWriter>();
  readonly #writeOptions: WholeFileOptions;

  constructor(options: FsRestoreTargetOptions) {
    this.#root = resolve(options.root);
    this.#overwrite = options.overwrite ?? false;
    this.#owner = options.owner ?? process.getuid?.() === 0;
    this.#directIo = options.directIo ?? process.env.FORGE_DIRECT_IO !== '0';
    this.#writeOptions = { owner: this.#owner };
    this.localFiles = {
      prepare: (path) => this.#prepareLeaf(path),
      module: writerModule(),
      options: this.#writeOptions,
    };
    this.#onWarning =
      options.onWarning ?? ((w) => process.emitWarning(w.message, { code: w.code, detail: w.path }));
  }

  async prepare(): Promise<void> {
    const root = this.#root;
    try {
      await mkdir(root, { recursive: true });
      const st = await stat(root);
      if (!st.isDirectory()) {
        throw new ForgeError(ForgeErrorCodes.FORGE_USAGE, `restore target ${root} is not a directory`, {
          hint: 'choose a directory to restore into',
        });
      }
      const names = await readdir(root);
      if (names.length > 0 && !this.#overwrite) {
        throw new ForgeError(ForgeErrorCodes.FORGE_TARGET_NOT_EMPTY, `restore target ${root} is not empty`, {
          hint: 'restore into an empty directory or pass --overwrite',
          details: { root, entries: names.length },
        });
      }
    } catch (e) {
      throw toForgeError(e, 'preparing the restore target');
    }
  }

  async dir(path: readonly string[], _meta: FileMetadata): Promise<void> {
    checkComponents(path);
    if (path.length === 0) return;
    const abs = await this.#prepareParent(path);
    try {
      try {
        // 0o700 while restoring, so the directory stays writable; finishDir sets the real mode.
        await mkdir(abs, { mode: 0o700 });
      } catch (e) {
        if (errnoOf(e) !== 'EEXIST') throw e;
        const st = await lstat(abs);
        if (st.isDirectory()) {
          await chmod(abs, 0o700);
        } else {
          if (!this.#overwrite) throw e;
          await unlink(abs);
          await mkdir(abs, { mode: 0o700 });
        }
      }
    } catch (e) {
      throw toForgeError(e, `restoring directory ${abs}`);
    }
    this.#openDirs.add(path.join('/'));
  }

  async finishDir(path: readonly string[], meta: FileMetadata): Promise<void> {
    checkComponents(path);
    const abs = join(this.#root, ...path);
    this.#openDirs.delete(path.join('/'));
    try {
      const st = await lstat(abs);
      if (!st.isDirectory()) {
        throw new ForgeError(ForgeErrorCodes.FORGE_FORMAT, `${abs} is no longer a directory`);
      }
      if (this.#owner) await lchown(abs, meta.uid, meta.gid);
      await chmod(abs, meta.mode);
      await lutimes(abs, nsToUtimeSeconds(meta.atimeNs), nsToUtimeSeconds(meta.mtimeNs));
    } catch (e) {
      throw toForgeError(e, `restoring directory ${abs}`);
    }
  }

  async file(path: readonly string[], meta: FileMetadata): Promise<RestoreFileWriter> {
    const abs = await this.#prepareLeaf(path);
    let sink: FileSink | undefined;
    try {
      if (this.#directIo && meta.size >= DIRECT_WRITE_MIN)
        sink = await DirectFileWriter.create(abs, CREATE_FLAGS, 0o600);
      sink ??= new PlainFileSink(await open(abs, CREATE_FLAGS, 0o600));
    } catch (e) {
      throw toForgeError(e, `restoring file ${abs}`);
    }
    const writer = this.#writer(abs, sink, meta);
    this.#openWriters.add(writer);
    return writer;
  }

  /** Small files in one go, with synchronous calls (see `writeWholeFile`). */
  async writeWhole(path: readonly string[], meta: FileMetadata, data: Uint8Array): Promise<void> {
    writeWholeFile(await this.#prepareLeaf(path), meta, data, this.#writeOptions);
  }

  readonly localFiles: LocalFileWriting;

  async hardlink(path: readonly string[], existing: readonly string[], _meta: FileMetadata): Promise<void> {
    checkEntryPath(existing);
    await this.#prepareParent(existing, false);
    const abs = await this.#prepareLeaf(path);
    try {
      await link(join(this.#root, ...existing), abs);
    } catch (e) {
      throw toForgeError(e, `restoring hardlink ${abs}`);
    }
  }

  async symlink(path: readonly string[], meta: FileMetadata): Promise<void> {
    if (meta.linkTarget === undefined) {
      throw new ForgeError(
        ForgeErrorCodes.FORGE_FORMAT,
        `symlink ${path.join('/')} has no target in the snapshot`,
      );
    }
    const abs = await this.#prepareLeaf(path);
    try {
      await symlink(meta.linkTarget, abs);
      await this.#setOwnerAndTimes(abs, meta);
    } catch (e) {
      throw toForgeError(e, `restoring symlink ${abs}`);
    }
  }

  async special(path: readonly string[], meta: FileMetadata): Promise<void> {
    const abs = await this.#prepareLeaf(path);
    const mode = (meta.mode & 0o777).toString(8);
    try {
      switch (meta.type) {
        case 'fifo':
          await runTool('mkfifo', ['-m', mode, '--', abs]);
          break;
        case 'chardev':
        case 'blockdev': {
          if (process.getuid?.() !== 0) {
            this.#warn(
              abs,
              ForgeErrorCodes.FORGE_PERMISSION,
              `skipped ${meta.type} ${abs}: only root can create it`,
            );
            return;
          }
          const { major, minor } = splitDeviceNumber(meta.rdev ?? 0);
          const kind = meta.type === 'chardev' ? 'c' : 'b';
          await runTool('mknod', ['-m', mode, '--', abs, kind, String(major), String(minor)]);
          break;
        }
        case 'socket':
          this.#warn(abs, ForgeErrorCodes.FORGE_USAGE, `skipped socket ${abs}: sockets are not restored`);
          return;
        default:
          this.#warn(abs, ForgeErrorCodes.FORGE_FORMAT, `skipped ${abs}: ${meta.type} is not a special file`);
          return;
      }
      if (this.#owner) await lchown(abs, meta.uid, meta.gid);
      // After chown, which clears setuid/setgid bits.
      await chmod(abs, meta.mode);
      await lutimes(abs, nsToUtimeSeconds(meta.atimeNs), nsToUtimeSeconds(meta.mtimeNs));
    } catch (e) {
      const err = toForgeError(e, `restoring ${meta.type} ${abs}`);
      this.#warn(abs, err.code, err.message);
    }
  }

  async readBack(path: readonly string[]): Promise<ContentReader> {
    checkEntryPath(path);
    return openFileReader(join(this.#root, ...path));
  }

  async close(): Promise<void> {
    const writers = [...this.#openWriters];
    this.#openWriters.clear();
    await Promise.all(writers.map((w) => w.abort().catch(() => undefined)));
    this.#openDirs.clear();
  }

  #warn(path: string, code: ForgeErrorCode, message: string): void {
    this.#onWarning({ path, code, message });
  }

  async #setOwnerAndTimes(abs: string, meta: FileMetadata): Promise<void> {
    if (this.#owner) await lchown(abs, meta.uid, meta.gid);
    await lutimes(abs, nsToUtimeSeconds(meta.atimeNs), nsToUtimeSeconds(meta.mtimeNs));
  }

  /**
   * Makes sure the parent of `path` is a real directory inside the root and returns the
   * absolute path. Parents made by `dir` are trusted; any other parent is checked component
   * by component, so a symlink planted in the tree (by the snapshot or beforehand) is never
   * followed out of the root. Missing parents are created (mode 0o700) when `create` is set.
   */
  async #prepareParent(path: readonly string[], create = true): Promise<string> {
    checkComponents(path);
    const parent = path.slice(0, -1);
    if (parent.length > 0 && !this.#openDirs.has(parent.join('/'))) {
      let dir = this.#root;
      for (const name of parent) {
        dir = join(dir, name);
        try {
          const st = await lstat(dir);
          if (!st.isDirectory()) {
            throw new ForgeError(
              ForgeErrorCodes.FORGE_FORMAT,
              `refusing to restore ${join(this.#root, ...path)}: ${dir} is not a directory`,
              { hint: 'a symlink or file is in the way; restore into an empty directory' },
            );
          }
        } catch (e) {
          if (!create || errnoOf(e) !== 'ENOENT') throw toForgeError(e, 'restoring');
          try {
            await mkdir(dir, { mode: 0o700 });
          } catch (e2) {
            throw toForgeError(e2, 'restoring');
          }
        }
      }
    }
    return join(this.#root, ...path);
  }

  /** Prepares the path of a non-directory: parent checked, anything in the way removed. */
  async #prepareLeaf(path: readonly string[]): Promise<string> {
    checkEntryPath(path);
    const abs = await this.#prepareParent(path);
    if (!this.#overwrite) return abs;
    try {
      const st = await lstat(abs);
      if (st.isDirectory()) {
        throw new ForgeError(
          ForgeErrorCodes.FORGE_ALREADY_EXISTS,
          `cannot restore ${abs}: a directory is in the way`,
          {
            hint: 'remove the directory or restore into an empty directory',
          },
        );
      }
      // Unlink rather than truncate: another hardlink to the old file must keep its content.
      await unlink(abs);
    } catch (e) {
      if (errnoOf(e) !== 'ENOENT') throw toForgeError(e, `restoring ${abs}`);
    }
    return abs;
  }

  /** A file's writer: the bytes go to `sink` (ordinary or direct writes), then owner, mode and times. */
  #writer(abs: string, sink: FileSink, meta: FileMetadata): RestoreFileWriter {
    let finished = false;
    let end = 0;
    const writer: RestoreFileWriter = {
      write: async (data: Uint8Array, offset: number): Promise<void> => {
        if (finished) throw new InternalError(`write after close of ${abs}`);
        end = Math.max(end, offset + data.length);
        if (isAllZero(data)) return; // left as a hole
        try {
          await sink.write(data, offset);
        } catch (e) {
          throw toForgeError(e, `writing ${abs}`);
        }
      },
      close: async (): Promise<void> => {
        if (finished) return;
        finished = true;
        this.#openWriters.delete(writer);
        try {
          // The recorded size wins, but never cut off data that was written.
          await sink.finish(Math.max(meta.size, end));
          if (this.#owner) await fchownAsync(sink.fd, meta.uid, meta.gid);
          // After chown, which clears setuid/setgid bits.
          await fchmodAsync(sink.fd, meta.mode);
          await futimesAsync(sink.fd, nsToUtimeSeconds(meta.atimeNs), nsToUtimeSeconds(meta.mtimeNs));
          await sink.close();
        } catch (e) {
          await sink.close().catch(() => undefined);
          throw toForgeError(e, `finishing ${abs}`);
        }
      },
      abort: async (): Promise<void> => {
        finished = true;
        this.#openWriters.delete(writer);
        await sink.close().catch(() => undefined);
        try {
          await unlink(abs);
        } catch (e) {
          if (errnoOf(e) !== 'ENOENT') throw toForgeError(e, `removing ${abs}`);
        }
      },
    };
    return writer;
  }
}

/** Where a restored file's bytes go: `DirectFileWriter`, or ordinary writes (`PlainFileSink`). */
interface FileSink {
  write(data: Uint8Array, offset: number): Promise<void>;
  /** All bytes are written: make the file `size` bytes long. */
  finish(size: number): Promise<void>;
  /** The descriptor, for owner, mode and times. */
  readonly fd: number;
  /** Closes the descriptor; once. */
  close(): Promise<void>;
}

/** Ordinary writes through a file handle. */
class PlainFileSink implements FileSink {
  readonly #handle: FileHandle;
  /** Where the written bytes end: the file's length on disk until it is truncated. */
  #writtenEnd = 0;
  #open = true;

  constructor(handle: FileHandle) {
    this.#handle = handle;
  }

  get fd(): number {
    return this.#handle.fd;
  }

  async write(data: Uint8Array, offset: number): Promise<void> {
    this.#writtenEnd = Math.max(this.#writtenEnd, offset + data.length);
    for (let done = 0; done < data.length; ) {
      const { bytesWritten } = await this.#handle.write(data, done, data.length - done, offset + done);
      done += bytesWritten;
    }
  }

  async finish(size: number): Promise<void> {
    // Only needed when the file ends in a hole (zero runs are skipped): a call saved otherwise.
    if (size !== this.#writtenEnd) await this.#handle.truncate(size);
  }

  async close(): Promise<void> {
    if (!this.#open) return;
    this.#open = false;
    await this.#handle.close();
  }
}

async function runTool(tool: string, args: string[]): Promise<void> {
  try {
    await execFileAsync(tool, args);
  } catch (e) {
    const stderr = (e as { stderr?: unknown }).stderr;
    if (typeof stderr === 'string' && stderr.trim() !== '') {
      throw new ForgeError(ForgeErrorCodes.FORGE_IO, `${tool}: ${stderr.trim().split('\n')[0]}`, {
        cause: e,
      });
    }
    throw toForgeError(e, `running ${tool}`);
  }
}

/**
 * Creates a {@link RestoreTarget} that writes into the local directory `root`.
 *
 * ```ts
 * const target = createFsRestoreTarget({ root: '/srv/restore', overwrite: false });
 * await target.prepare(); // throws FORGE_TARGET_NOT_EMPTY unless /srv/restore is empty
 * ```
 */
export function createFsRestoreTarget(options: FsRestoreTargetOptions): RestoreTarget {
  return new FsRestoreTarget(options);
}
