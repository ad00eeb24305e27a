import { constants } from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';
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

async function openNoAtime(path: string): Promise<FileHandle> {
  if (NOATIME !== 0) {
    try {
      return await open(path, BASE_FLAGS | NOATIME);
    } catch (e) {
      const code = (e as { code?: unknown }).code;
      if (code !== 'EPERM' && code !== 'EINVAL') throw e;
    }
  }
  return open(path, BASE_FLAGS);
}

/**
 * Opens a regular file for sequential reading. Tries `O_NOATIME` first (so a backup does not
 * touch access times) and falls back silently when the kernel refuses it.
 */
export async function openFileReader(path: string): Promise<ContentReader> {
  let handle: FileHandle;
  try {
    handle = await openNoAtime(path);
  } catch (e) {
    throw toForgeError(e, `opening ${path}`);
  }
  try {
    const st = await handle.stat();
    if (!st.isFile()) {
      throw new ForgeError(ForgeErrorCodes.FORGE_IO, `${path} is no longer a regular file`, {
        hint: 'the file was replaced while the backup ran; run the backup again',
      });
    }
  } catch (e) {
    await handle.close().catch(() => undefined);
    throw toForgeError(e, `opening ${path}`);
  }
  let closed = false;
  return {
    async read(buf: Uint8Array): Promise<number> {
      if (closed) throw new InternalError(`read after close of ${path}`);
      let got = 0;
      try {
        while (got < buf.length) {
          const { bytesRead } = await handle.read(buf, got, buf.length - got, null);
          if (bytesRead === 0) break;
          got += bytesRead;
        }
      } catch (e) {
        throw toForgeError(e, `reading ${path}`);
      }
      return got;
    },
    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      await handle.close();
    },
  };
}
