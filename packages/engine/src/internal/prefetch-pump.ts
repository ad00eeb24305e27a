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

export interface PrefetchPump {
  add(paths: readonly string[]): void;
  /** Forgets the paths not started yet. */
  stop(): void;
}

/** A queue of paths read ahead DEPTH at a time into one scratch buffer. */
export function createPrefetchPump(): PrefetchPump {
  const scratch = Buffer.allocUnsafe(SCRATCH);
  const queue: string[] = [];
  let head = 0;
  let inFlight = 0;
  const done = (): void => {
    inFlight--;
    pump();
  };
  function pump(): void {
    while (inFlight < DEPTH && head < queue.length) {
      const path = queue[head++]!;
      inFlight++;
      open(path, FLAGS, (err, fd) => {
        if (err) return done();
        read(fd, scratch, 0, SCRATCH, 0, () => close(fd, done));
      });
    }
    if (head === queue.length) {
      queue.length = 0;
      head = 0;
    }
  }
  return {
    add(paths) {
      for (const p of paths) queue.push(p);
      pump();
    },
    stop() {
      queue.length = 0;
      head = 0;
    },
  };
}
