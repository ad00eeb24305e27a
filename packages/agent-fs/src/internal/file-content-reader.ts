import { close, constants, fstat, open, read } from 'node:fs';
import { promisify } from 'node:util';
import {
  type ContentReader,
  ForgeError,
  ForgeErrorCodes,
  InternalError,
  toForgeError,
} from '@backupforge/common';

// O_NOFOLLOW: a file swapped for a symlink after lstat is not followed (ELOOP instead).
// O_NONBLOCK: a file swapped for a FIFO cannot hang the backup; regular files ignore it.
const BASE_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;
// O_NOATIME is Linux-only and permitted only to the file's owner (or CAP_FOWNER).
const NOATIME = constants.O_NOATIME ?? 0;

// Raw file descriptors with the callback API: a backup opens tens of thousands of small files,
// and FileHandle's promise machinery costs several times more per call.
const openAsync = promisify(open);
const fstatAsync = promisify(fstat);
const closeAsync = promisify(close);
function readAsync(fd: number, buf: Uint8Array, offset: number, length: number): Promise<number> {
  return new Promise((resolve, reject) => {
    read(fd, buf, offset, length, null, (err, n) => (err ? reject(err) : resolve(n)));
  });
}

let noAtimeRefused = NOATIME === 0;

async function openNoAtime(path: string): Promise<number> {
  if (!noAtimeRefused) {
    try {
      return await openAsync(path, BASE_FLAGS | NOATIME);
    } catch (e) {
      const code = (e as { code?: unknown }).code;
      if (code !== 'EPERM' && code !== 'EINVAL') throw e;
      if (code === 'EINVAL') noAtimeRefused = true; // the kernel does not know the flag
    }
  }
  return openAsync(path, BASE_FLAGS);
}

/**
 * Opens a regular file for sequential reading. Tries `O_NOATIME` first (so a backup does not
 * touch access times) and falls back silently when the kernel refuses it.
 */
export async function openFileReader(path: string): Promise<ContentReader> {
  let fd: number;
  try {
    fd = await openNoAtime(path);
  } catch (e) {
    throw toForgeError(e, `opening ${path}`);
  }
  try {
    const st = await fstatAsync(fd);
    if (!st.isFile()) {
      throw new ForgeError(ForgeErrorCodes.FORGE_IO, `${path} is no longer a regular file`, {
        hint: 'the file was replaced while the backup ran; run the backup again',
      });
    }
  } catch (e) {
    await closeAsync(fd).catch(() => undefined);
    throw toForgeError(e, `opening ${path}`);
  }
  let closed = false;
  let eof = false;
  return {
    async read(buf: Uint8Array): Promise<number> {
      if (closed) throw new InternalError(`read after close of ${path}`);
      if (eof) return 0;
      let got = 0;
      try {
        while (got < buf.length) {
          const want = buf.length - got;
          const n = await readAsync(fd, buf, got, want);
          got += n;
          // A regular file reads short only at its end: no extra call to learn that.
          if (n < want) {
            eof = true;
            break;
          }
        }
      } catch (e) {
        throw toForgeError(e, `reading ${path}`);
      }
      return got;
    },
    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      await closeAsync(fd);
    },
  };
}
