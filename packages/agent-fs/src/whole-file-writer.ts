// Writes one small restored file with synchronous system calls. Used by the filesystem restore
// target's `writeWhole` and, through `RestoreTarget.localFiles`, imported by the engine's worker
// threads, which write the small files they decrypt (see fs-restore-target.ts).
import {
  closeSync,
  constants,
  fchmodSync,
  fchownSync,
  ftruncateSync,
  futimesSync,
  openSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { type FileMetadata, toForgeError } from '@backupforge/common';
import { nsToUtimeSeconds } from './internal/utime-seconds.ts';
import { isAllZero } from './internal/zero-bytes.ts';

// O_EXCL with O_CREAT never follows a symlink at the path: it fails with EEXIST instead.
export const CREATE_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;

/** Options of {@link writeWholeFile}. */
export interface WholeFileOptions {
  /** Restore the owner (uid/gid). */
  readonly owner: boolean;
}

/**
 * Creates `abs` (which must not exist), writes `data` (all-zero content stays a hole), and sets
 * the size, owner, mode and times from `meta`; on error removes the file and throws a
 * `ForgeError`. On a fast disk each of these calls takes a few microseconds, far less than a
 * trip through the libuv thread pool.
 */
export function writeWholeFile(
  abs: string,
  meta: FileMetadata,
  data: Uint8Array,
  options: WholeFileOptions,
): void {
  let fd: number | undefined;
  try {
    fd = openSync(abs, CREATE_FLAGS, 0o600);
    const written = isAllZero(data) ? 0 : data.length;
    for (let done = 0; done < written; ) done += writeSync(fd, data, done, written - done, done);
    const size = Math.max(meta.size, data.length);
    if (size !== written) ftruncateSync(fd, size);
    if (options.owner) fchownSync(fd, meta.uid, meta.gid);
    // After chown, which clears setuid/setgid bits.
    fchmodSync(fd, meta.mode);
    futimesSync(fd, nsToUtimeSeconds(meta.atimeNs), nsToUtimeSeconds(meta.mtimeNs));
    const closing = fd;
    fd = undefined;
    closeSync(closing);
  } catch (e) {
    if (fd !== undefined) {
      try {
        closeSync(fd);
      } catch {}
      try {
        unlinkSync(abs);
      } catch {}
    }
    throw toForgeError(e, `restoring file ${abs}`);
  }
}
