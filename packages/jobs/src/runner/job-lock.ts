import { mkdir, open, readFile, unlink } from 'node:fs/promises';
import { hostname } from 'node:os';
import { dirname } from 'node:path';
import { ForgeError, toForgeError } from '@backupforge/common';

/** What a job lock file holds. */
export interface JobLockInfo {
  readonly pid: number;
  readonly host: string;
  readonly startedAt: string;
  readonly runId: string;
}

/**
 * A per-job lock file (`<stateDir>/locks/<job>.lock`), so a cron run that overlaps the previous
 * one exits instead of running twice. Created with O_EXCL; a lock whose process is gone (same
 * host, pid not alive) is stale and taken over.
 */
export class JobLock {
  readonly path: string;
  #released = false;

  private constructor(path: string) {
    this.path = path;
  }

  static async acquire(path: string, runId: string): Promise<JobLock> {
    await mkdir(dirname(path), { recursive: true });
    const info: JobLockInfo = {
      pid: process.pid,
      host: hostname(),
      startedAt: new Date().toISOString(),
      runId,
    };
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        const fh = await open(path, 'wx', 0o600);
        try {
          await fh.writeFile(`${JSON.stringify(info)}\n`);
          await fh.sync();
        } finally {
          await fh.close();
        }
        return new JobLock(path);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw toForgeError(e, `cannot create ${path}`);
      }
      const held = await readLock(path);
      if (held && isAlive(held)) {
        throw new ForgeError(
          'FORGE_LOCK_CONFLICT',
          `job is already running (pid ${held.pid} since ${held.startedAt})`,
          {
            hint: `wait for it to finish; if no forge is running, remove ${path}`,
            details: { lock: path, pid: held.pid, runId: held.runId },
          },
        );
      }
      // Stale (its process is gone) or unreadable (a crash between create and write): take it over.
      await unlink(path).catch(() => undefined);
    }
    throw new ForgeError('FORGE_LOCK_CONFLICT', `could not take the job lock ${path}`, {
      hint: 'another run keeps taking it; try again',
    });
  }

  async release(): Promise<void> {
    if (this.#released) return;
    this.#released = true;
    await unlink(this.path).catch(() => undefined);
  }
}

async function readLock(path: string): Promise<JobLockInfo | undefined> {
  try {
    const parsed = JSON.parse(await readFile(path, 'utf8')) as Partial<JobLockInfo>;
    if (typeof parsed.pid !== 'number' || typeof parsed.host !== 'string') return undefined;
    return parsed as JobLockInfo;
  } catch {
    return undefined;
  }
}

function isAlive(info: JobLockInfo): boolean {
  // A lock from another host (shared state dir) cannot be checked: treat it as live.
  if (info.host !== hostname()) return true;
  try {
    process.kill(info.pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
