import type { ForgeErrorCode } from '@backupforge/common';

/**
 * Exit codes of `forge`, compatible with restic's where they overlap, so scripts written for
 * one read the other. Documented in the README.
 */
export const ExitCode = {
  OK: 0,
  /** Fatal error: nothing (more) was done. */
  FATAL: 1,
  /** Bad command line. */
  USAGE: 2,
  /** Done, but some files could not be read or restored. */
  PARTIAL: 3,
  /** The repository does not exist, is not a repository, or has an unsupported version. */
  REPO: 10,
  /** The repository is locked by another process. */
  LOCKED: 11,
  /** Wrong password, no password available, or no usable key file. */
  PASSWORD: 12,
  /** forge run: the previous run of this job is still going; nothing was done. */
  JOB_RUNNING: 13,
  /** forge run: the job's before hook failed, so the run was skipped. */
  SKIPPED: 14,
  /** Interrupted (Ctrl-C, SIGTERM). */
  INTERRUPTED: 130,
} as const;

export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

export function exitCodeFor(code: ForgeErrorCode): ExitCodeValue {
  switch (code) {
    case 'FORGE_USAGE':
      return ExitCode.USAGE;
    case 'FORGE_REPO_NOT_FOUND':
    case 'FORGE_REPO_INVALID':
    case 'FORGE_REPO_VERSION':
      return ExitCode.REPO;
    case 'FORGE_LOCK_CONFLICT':
      return ExitCode.LOCKED;
    case 'FORGE_WRONG_PASSWORD':
    case 'FORGE_PASSWORD_REQUIRED':
    case 'FORGE_KEY_INVALID':
      return ExitCode.PASSWORD;
    case 'FORGE_ABORTED':
      return ExitCode.INTERRUPTED;
    default:
      return ExitCode.FATAL;
  }
}
