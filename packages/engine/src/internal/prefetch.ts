// Reads small files ahead, several at a time, so that their data is in the page cache when a
// blob worker reads it (synchronously, one file at a time). What is read is thrown away; a file
// that cannot be read is skipped (the real read reports it).
import { close, constants, open, read } from 'node:fs';

/** Reads in flight (the libuv pool has 4 threads; the walk's lstat calls share them). */
const DEPTH = 8;
/** Small files are below the minimum chunk size; reads stop here either way. */
const SCRATCH = 1024 * 1024;
// The same flags as the real read: no symlink followed, no FIFO waited on, atime untouched. A
// file whose atime could only be kept by its owner is not read ahead.
const FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | (constants.O_NOATIME ?? 0);

/**
 * Reads small files into the page cache ahead of the blob workers. Reading them one at a time
 * left the workers waiting for the disk: a cold read of 20,000 small files took 2.97 s one at a
 * time and 0.76 s eight at a time here. Advisory only: nothing read here is used.
 *
 * The reads are asynchronous (libuv's pool) and their callbacks tiny, so they run on the calling
 * thread: a thread of their own measured no faster (half-size first backup, 3 rounds) and cost
 * an isolate, 10–20 MiB.
 */
export class Prefetcher {
  #scratch: Buffer | undefined;
  #queue: string[] = [];
  #head = 0;
  #inFlight = 0;

  /** Asks for these files to be read soon. */
  hint(paths: string[]): void {
    for (const p of paths) this.#queue.push(p);
    this.#pump();
  }

  /** Drops what is not read yet (reads in flight end on their own). */
  async close(): Promise<void> {
    this.#queue = [];
    this.#head = 0;
  }

  #pump(): void {
    while (this.#inFlight < DEPTH && this.#head < this.#queue.length) {
      const path = this.#queue[this.#head++]!;
      this.#scratch ??= Buffer.allocUnsafe(SCRATCH);
      const scratch = this.#scratch;
      this.#inFlight++;
      const done = () => {
        this.#inFlight--;
        this.#pump();
      };
      open(path, FLAGS, (err, fd) => {
        if (err) return done();
        read(fd, scratch, 0, SCRATCH, 0, () => close(fd, done));
      });
    }
    if (this.#head === this.#queue.length) {
      this.#queue = [];
      this.#head = 0;
    }
  }
}
