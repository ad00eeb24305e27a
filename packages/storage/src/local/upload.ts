// A pack written to its temporary file as it is made (`StorageBackend.createUpload`), so the
// writer never holds a whole pack in memory: bytes gather in a 2 MiB page-aligned buffer, which
// goes to the disk (with O_DIRECT where the filesystem allows, see direct-write.ts) while the
// next one fills. `commit` pads the last block, cuts the file to its size, fsyncs it and renames
// it into place, exactly like `save`.
import { constants } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import {
  alignedBuffer,
  DIRECT_ALIGN,
  type ObjectHandle,
  type ObjectUpload,
  toForgeError,
} from '@backupforge/common';
import { errnoOf } from '../internal/errno.ts';
import {
  closeAsync,
  directRefused,
  fsyncAsync,
  ftruncateAsync,
  O_DIRECT,
  openAsync,
  refuseDirect,
  writeAsync,
} from './direct-write.ts';

/** Bytes gathered per write. */
const PIECE = 2 * 1024 * 1024;
/** Aligned buffers kept for later uploads (two per upload in use). */
const spare: Buffer[] = [];

/** What the upload needs from its backend. */
export interface UploadPlace {
  /** The temporary file to create (in a directory `list` does not look into, or named so it skips it). */
  readonly temp: string;
  /** The final path of `handle` (checked by the backend). */
  target(handle: ObjectHandle): string;
  /** Creates a missing directory of the repository (durably). */
  makeDir(dir: string): Promise<void>;
  /** Called before the final name is replaced (closes cached read descriptors). */
  evict(file: string): Promise<void>;
  /** fsyncs a directory after an entry was renamed into it. */
  syncDir(dir: string): Promise<void>;
}

export class LocalUpload implements ObjectUpload {
  readonly #place: UploadPlace;
  #fd: number | undefined;
  #direct: boolean;
  /** The buffer filling, and the one being written (if any). */
  #cur: Buffer;
  #other: Buffer;
  #fill = 0;
  /** File offset of `#cur`'s first byte. */
  #pos = 0;
  #writing: Promise<void> | undefined;
  #error: unknown;
  #done = false;
  #released = false;

  private constructor(place: UploadPlace, fd: number, direct: boolean) {
    this.#place = place;
    this.#fd = fd;
    this.#direct = direct;
    this.#cur = spare.pop() ?? alignedBuffer(PIECE);
    this.#other = spare.pop() ?? alignedBuffer(PIECE);
  }

  /** Creates the temporary file (and `dir`, when missing). */
  static async start(place: UploadPlace): Promise<LocalUpload> {
    const create = async (): Promise<{ fd: number; direct: boolean }> => {
      const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL;
      if (!directRefused()) {
        try {
          return { fd: await openAsync(place.temp, flags | O_DIRECT, 0o600), direct: true };
        } catch (e) {
          if (errnoOf(e) !== 'EINVAL') throw e;
          refuseDirect(); // this filesystem has no direct I/O
        }
      }
      return { fd: await openAsync(place.temp, flags, 0o600), direct: false };
    };
    try {
      let opened: { fd: number; direct: boolean };
      try {
        opened = await create();
      } catch (e) {
        if (errnoOf(e) !== 'ENOENT') throw e;
        await place.makeDir(dirname(place.temp));
        opened = await create();
      }
      return new LocalUpload(place, opened.fd, opened.direct);
    } catch (e) {
      throw toForgeError(e, `cannot create ${place.temp}`);
    }
  }

  async write(data: Uint8Array): Promise<void> {
    this.#check();
    let at = 0;
    while (at < data.length) {
      const n = Math.min(PIECE - this.#fill, data.length - at);
      this.#cur.set(data.subarray(at, at + n), this.#fill);
      this.#fill += n;
      at += n;
      if (this.#fill === PIECE) await this.#flip();
    }
  }

  async commit(handle: ObjectHandle): Promise<void> {
    this.#check();
    const file = this.#place.target(handle); // a bad handle throws here: the upload stays open
    this.#done = true;
    try {
      await this.#settle();
      const size = this.#pos + this.#fill;
      if (this.#fill > 0) {
        // Direct writes go in whole blocks: pad the last one and cut the file back below.
        const n = this.#direct ? Math.ceil(this.#fill / DIRECT_ALIGN) * DIRECT_ALIGN : this.#fill;
        this.#cur.fill(0, this.#fill, n);
        await this.#writeAt(this.#cur, n, this.#pos);
        if (n !== this.#fill) await ftruncateAsync(this.#fd!, size);
      }
      await fsyncAsync(this.#fd!);
      const fd = this.#fd!;
      this.#fd = undefined;
      await closeAsync(fd);
      await this.#place.evict(file);
      const dir = dirname(file);
      try {
        await rename(this.#place.temp, file);
      } catch (e) {
        if (errnoOf(e) !== 'ENOENT') throw e;
        await this.#place.makeDir(dir); // data/<xx>/ is created on demand
        await rename(this.#place.temp, file);
      }
      await this.#place.syncDir(dir);
    } catch (e) {
      await this.#discard();
      throw toForgeError(e, `cannot save ${file}`);
    } finally {
      this.#release();
    }
  }

  async abort(): Promise<void> {
    this.#done = true;
    await this.#writing?.catch(() => {});
    this.#writing = undefined;
    await this.#discard();
    this.#release();
  }

  #check(): void {
    if (this.#done) throw new Error('upload: already committed or aborted');
    if (this.#error !== undefined) throw toForgeError(this.#error, `cannot write ${this.#place.temp}`);
  }

  /** Starts writing the full buffer and goes on filling the other one. */
  async #flip(): Promise<void> {
    await this.#settle();
    const full = this.#cur;
    const at = this.#pos;
    this.#writing = this.#writeAt(full, PIECE, at).catch((e: unknown) => {
      this.#error ??= e;
    });
    this.#cur = this.#other;
    this.#other = full;
    this.#fill = 0;
    this.#pos += PIECE;
  }

  /** Waits for the write in flight; throws what it failed with. */
  async #settle(): Promise<void> {
    if (this.#writing) await this.#writing;
    this.#writing = undefined;
    if (this.#error !== undefined) throw toForgeError(this.#error, `cannot write ${this.#place.temp}`);
  }

  async #writeAt(buf: Buffer, length: number, position: number): Promise<void> {
    for (let done = 0; done < length; ) {
      let n: number;
      try {
        n = await writeAsync(this.#fd!, buf, done, length - done, position + done);
      } catch (e) {
        if (!this.#direct || errnoOf(e) !== 'EINVAL') throw e;
        // Opened with O_DIRECT but the writes are refused: go on without it (the bytes written
        // so far stay where they are).
        refuseDirect();
        const fd = await openAsync(this.#place.temp, constants.O_WRONLY);
        await closeAsync(this.#fd!).catch(() => {});
        this.#fd = fd;
        this.#direct = false;
        continue;
      }
      if (n <= 0) throw Object.assign(new Error(`no progress writing ${this.#place.temp}`), { code: 'EIO' });
      done += n;
    }
  }

  async #discard(): Promise<void> {
    const fd = this.#fd;
    this.#fd = undefined;
    if (fd !== undefined) await closeAsync(fd).catch(() => {});
    await rm(this.#place.temp, { force: true }).catch(() => {});
  }

  /** Gives the buffers back for later uploads, once (abort may be called again). */
  #release(): void {
    if (this.#released) return;
    this.#released = true;
    for (const b of [this.#cur, this.#other]) if (spare.length < 4) spare.push(b);
  }
}
