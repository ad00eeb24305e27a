// Large local files are read with O_DIRECT where the system allows it: the disk's DMA lands in
// our own page-aligned buffer instead of the page cache, and the kernel no longer copies every
// byte out of the page cache into user memory. On the benchmark machine that copy cost about a
// second of CPU per GiB read on a cold cache (`_copy_to_iter` in `perf`, against 0.1 s with
// O_DIRECT), on a thread that competes with the workers for the same cores. It also keeps a
// backup from flushing the machine's page cache with data it will not read again.
//
// The same file is opened a second time through /proc/self/fd (never by its name again, so it
// cannot be another file); where that or a direct read is refused (no O_DIRECT, no /proc, a
// filesystem without direct I/O such as tmpfs, a buffer that is not aligned), reading goes on
// through the ordinary descriptor from the same offset.
import { closeSync, constants, openSync, read, readSync } from 'node:fs';
import { alignedBuffer, type ContentReader, DIRECT_ALIGN, toForgeError } from '@backupforge/common';

const O_DIRECT: number = constants.O_DIRECT ?? 0;
const NOATIME: number = constants.O_NOATIME ?? 0;

/** Files at least this large are read with O_DIRECT (smaller ones take one or two reads). */
export const DIRECT_MIN_SIZE = 8 * 1024 * 1024;
/** Aligned buffers given back, for the next taker of the same size (a few, per thread). */
const spare: Buffer[] = [];

/** An aligned buffer of `size` bytes, reused from an earlier {@link giveAligned} when one fits. */
export function takeAligned(size: number): Buffer {
  const i = spare.findIndex((b) => b.length === size);
  return i >= 0 ? spare.splice(i, 1)[0]! : alignedBuffer(size);
}

/** Gives back a buffer from {@link takeAligned} that nothing reads into any more. */
export function giveAligned(buf: Buffer): void {
  if (spare.length < 4) spare.push(buf);
}

let directRefused = O_DIRECT === 0;

/**
 * A second descriptor of the open file `fd` with O_DIRECT, or -1 where the system refuses it
 * (then the caller reads through `fd`).
 */
export function reopenDirect(fd: number): number {
  if (directRefused) return -1;
  const path = `/proc/self/fd/${fd}`;
  for (const flags of [constants.O_RDONLY | O_DIRECT | NOATIME, constants.O_RDONLY | O_DIRECT]) {
    try {
      return openSync(path, flags);
    } catch (e) {
      const code = (e as { code?: unknown }).code;
      if (code === 'EPERM' && flags & NOATIME) continue; // O_NOATIME is for the owner only
      if (code === 'ENOENT' || code === 'ENOTDIR') directRefused = true; // no /proc here
      return -1; // EINVAL: this filesystem has no direct I/O; buffered reads then
    }
  }
  return -1;
}

function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // read-only: nothing a failed close could lose
  }
}

/**
 * Positional reads of one open file, direct while the kernel accepts them. Owns neither
 * descriptor's opening; `close()` closes both.
 */
export class DirectFile {
  readonly #fd: number;
  /** The O_DIRECT descriptor, open until close() even once refused (reads may be in flight on it). */
  readonly #directFd: number;
  #useDirect: boolean;
  /** Bytes read around the page cache so far. */
  directBytes = 0;

  /** Takes `fd` over; `direct: false` reads through it only (buffered). */
  constructor(fd: number, direct = true) {
    this.#fd = fd;
    this.#directFd = direct ? reopenDirect(fd) : -1;
    this.#useDirect = this.#directFd >= 0;
  }

  /** True while reads go around the page cache. */
  get direct(): boolean {
    return this.#useDirect;
  }

  #usable(buf: Uint8Array, offset: number, length: number, position: number): boolean {
    return (
      this.#useDirect &&
      (buf.byteOffset + offset) % DIRECT_ALIGN === 0 &&
      length % DIRECT_ALIGN === 0 &&
      position % DIRECT_ALIGN === 0
    );
  }

  /** Reads up to `length` bytes at `position`; fewer only at the end of the file. */
  readSync(buf: Uint8Array, offset: number, length: number, position: number): number {
    if (this.#usable(buf, offset, length, position)) {
      try {
        const n = readSync(this.#directFd, buf, offset, length, position);
        this.directBytes += n;
        return n;
      } catch (e) {
        if ((e as { code?: unknown }).code !== 'EINVAL') throw e;
        this.#useDirect = false;
      }
    }
    return readSync(this.#fd, buf, offset, length, position);
  }

  /** As readSync, on the thread pool; several may be in flight. */
  read(buf: Uint8Array, offset: number, length: number, position: number): Promise<number> {
    return new Promise((resolve, reject) => {
      const buffered = (): void =>
        read(this.#fd, buf, offset, length, position, (err, n) => (err ? reject(err) : resolve(n)));
      if (!this.#usable(buf, offset, length, position)) return buffered();
      read(this.#directFd, buf, offset, length, position, (err, n) => {
        if (!err) {
          this.directBytes += n;
          return resolve(n);
        }
        if (err.code !== 'EINVAL') return reject(err);
        // Refused: this read and every later one go buffered. The descriptor stays open until
        // close(), so that no read still queued on it can meet its number reused by another file.
        this.#useDirect = false;
        buffered();
      });
    });
  }

  #closed = false;

  /** Closes both descriptors, once (a second close could hit a reused number); every read must have ended. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#directFd >= 0) closeQuietly(this.#directFd);
    closeQuietly(this.#fd);
  }
}

/** A file read front to back in pieces, with reads ahead in flight. */
export interface SequentialReads {
  /** The next bytes of the file (a view valid until the next call); empty at its end. */
  next(): Promise<Uint8Array>;
  /** Waits for reads still in flight, then closes the file. */
  close(): Promise<void>;
}

/**
 * Reads a local file front to back with a read in flight in each of `buffers` (page-aligned,
 * all the same size) but the one the caller holds: the disk works on the next pieces while the
 * caller works on this one. Direct reads get no kernel read-ahead, so this is the only overlap
 * they have. `path` names the file in errors.
 */
export function sequentialReads(file: DirectFile, buffers: readonly Buffer[], path: string): SequentialReads {
  const size = buffers[0]!.length;
  const queue: { buf: Buffer; read: Promise<number> }[] = [];
  let pos = 0;
  let short = false; // a read came back short: the file ends there
  let lent: Buffer | undefined; // the buffer behind the view last handed out
  const issue = (buf: Buffer): void => {
    const read = file.read(buf, 0, size, pos);
    read.catch(() => {}); // seen by next() when taken
    queue.push({ buf, read });
    pos += size;
  };
  for (const b of buffers) issue(b);
  return {
    async next(): Promise<Uint8Array> {
      if (lent && !short) issue(lent); // the caller is done with the previous view
      lent = undefined;
      const head = queue.shift();
      if (!head || short) return new Uint8Array(0);
      let n: number;
      try {
        n = await head.read;
      } catch (e) {
        short = true;
        throw toForgeError(e, `reading ${path}`);
      }
      if (n < size) short = true;
      lent = head.buf;
      return head.buf.subarray(0, n);
    },
    async close(): Promise<void> {
      await Promise.allSettled(queue.map((q) => q.read));
      queue.length = 0;
      file.close();
    },
  };
}

/**
 * SequentialReads over a source's reader: one read in flight, into one of `buffers` (two, the
 * same size), while the caller uses the other.
 */
export function readerReads(reader: ContentReader, buffers: readonly [Buffer, Buffer]): SequentialReads {
  let into = 0;
  let pending: Promise<number> | undefined = reader.read(buffers[0]);
  pending.catch(() => {}); // seen by next()
  return {
    async next(): Promise<Uint8Array> {
      if (!pending) return new Uint8Array(0);
      const n = await pending.finally(() => {
        pending = undefined;
      });
      if (n === 0) return new Uint8Array(0);
      const held = buffers[into]!;
      into ^= 1;
      pending = reader.read(buffers[into]!);
      pending.catch(() => {});
      return held.subarray(0, n);
    },
    async close(): Promise<void> {
      if (pending) await pending.catch(() => 0);
      pending = undefined;
      await reader.close();
    },
  };
}
