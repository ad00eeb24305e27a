import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { ForgeError, isForgeError, type StorageBackend } from '@backupforge/common';
import { safeUsername } from './crypto/key-file.ts';

/** What a lock is for: backups share; prunes exclude each other but not backups. */
export type LockKind = 'shared' | 'prune' | 'exclusive';

export interface LockInfo {
  /** Last refresh. */
  readonly time: string;
  /** When the lock was taken (older locks lack it: then `time` stands in). */
  readonly created?: string;
  readonly exclusive: boolean;
  readonly kind?: LockKind;
  readonly hostname: string;
  readonly username: string;
  readonly pid: number;
}

export function lockKind(l: LockInfo): LockKind {
  return l.exclusive ? 'exclusive' : (l.kind ?? 'shared');
}

/** Whether two lock kinds may be held at the same time. */
export function compatible(a: LockKind, b: LockKind): boolean {
  if (a === 'exclusive' || b === 'exclusive') return false;
  return !(a === 'prune' && b === 'prune');
}

function envMs(name: string, fallback: number): number {
  const v = Number(process.env[name]);
  return Number.isFinite(v) && v > 0 ? v : fallback;
}

/**
 * A lock not refreshed for this long is stale (refreshes happen every 5 minutes). Tests shorten
 * both with FORGE_LOCK_STALE_MS and FORGE_LOCK_REFRESH_MS.
 */
export const STALE_AFTER_MS = envMs('FORGE_LOCK_STALE_MS', 30 * 60 * 1000);
const REFRESH_MS = envMs('FORGE_LOCK_REFRESH_MS', 5 * 60 * 1000);

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as { code?: string }).code === 'EPERM';
  }
}

/** A lock is stale when it was not refreshed in time, or its process on this host is gone. */
export function isStale(l: LockInfo, now = Date.now()): boolean {
  if (now - Date.parse(l.time) > STALE_AFTER_MS) return true;
  return l.hostname === hostname() && !pidAlive(l.pid);
}

export async function listLocks(backend: StorageBackend): Promise<{ id: string; lock: LockInfo }[]> {
  const out: { id: string; lock: LockInfo }[] = [];
  for await (const info of backend.list('lock')) {
    try {
      const lock = JSON.parse(
        Buffer.from(await backend.load({ type: 'lock', name: info.name })).toString('utf8'),
      ) as LockInfo;
      out.push({ id: info.name, lock });
    } catch (e) {
      if (!isForgeError(e, 'FORGE_NOT_FOUND'))
        out.push({
          id: info.name,
          lock: { time: new Date(0).toISOString(), exclusive: false, hostname: '?', username: '?', pid: 0 },
        });
    }
  }
  return out;
}

/**
 * A held lock (locks/<random id>, plaintext JSON). Shared locks coexist; an exclusive lock
 * excludes every other live lock. Refreshed in the background until released.
 */
export class RepositoryLock {
  readonly #backend: StorageBackend;
  readonly id: string;
  readonly #info: LockInfo;
  #timer: NodeJS.Timeout | undefined;
  #lost: unknown;
  #refreshedAt = Date.now();

  private constructor(backend: StorageBackend, id: string, info: LockInfo) {
    this.#backend = backend;
    this.id = id;
    this.#info = info;
  }

  /** When this lock was taken. */
  get created(): Date {
    return new Date(this.#info.created ?? this.#info.time);
  }

  /**
   * Takes a lock. `exclusive` (or kind 'exclusive') excludes every other live lock; kind 'prune'
   * excludes other prunes and exclusive locks but lets backups (kind 'shared') run.
   */
  static async acquire(
    backend: StorageBackend,
    opts: { exclusive: boolean; kind?: LockKind },
  ): Promise<RepositoryLock> {
    const kind: LockKind = opts.exclusive ? 'exclusive' : (opts.kind ?? 'shared');
    let mine = '';
    const conflict = async () => {
      for (const { id, lock } of await listLocks(backend)) {
        if (id === mine || isStale(lock)) continue;
        if (!compatible(kind, lockKind(lock))) {
          const what = lockKind(lock) === 'shared' ? '' : `${lockKind(lock)} `;
          return new ForgeError(
            'FORGE_LOCK_CONFLICT',
            `repository is locked (${what}lock) by ${lock.username}@${lock.hostname} (pid ${lock.pid}) since ${lock.created ?? lock.time}`,
            {
              hint: "wait for that run to finish; if it is gone, remove the lock with 'forge unlock'",
              details: { lockId: id },
            },
          );
        }
      }
      return undefined;
    };
    const early = await conflict();
    if (early) throw early;
    mine = randomBytes(32).toString('hex');
    const now = new Date().toISOString();
    const info: LockInfo = {
      time: now,
      created: now,
      exclusive: kind === 'exclusive',
      kind,
      hostname: hostname(),
      username: safeUsername(),
      pid: process.pid,
    };
    await backend.save({ type: 'lock', name: mine }, Buffer.from(JSON.stringify(info)));
    // Check again after writing: two processes racing both see each other's lock.
    const late = await conflict();
    if (late) {
      await backend.remove({ type: 'lock', name: mine });
      throw late;
    }
    const lock = new RepositoryLock(backend, mine, info);
    lock.#timer = setInterval(() => void lock.#refresh(), REFRESH_MS);
    lock.#timer.unref();
    return lock;
  }

  async #refresh(): Promise<void> {
    if (this.#lost) return;
    // Paused (SIGSTOP, suspend) past the stale time: others may have removed the lock and
    // started pruning; never revive it.
    if (Date.now() - this.#refreshedAt > STALE_AFTER_MS) {
      this.#lost = new Error('the lock went stale before it could be refreshed');
      return;
    }
    try {
      await this.#backend.stat({ type: 'lock', name: this.id });
      const time = new Date().toISOString();
      await this.#backend.save(
        { type: 'lock', name: this.id },
        Buffer.from(JSON.stringify({ ...this.#info, time })),
      );
      this.#refreshedAt = Date.parse(time);
    } catch (e) {
      this.#lost ??= e;
    }
  }

  /**
   * Throws FORGE_LOCK_EXPIRED unless the lock is still ours and fresh: call right before
   * committing (saving a snapshot, deleting data).
   */
  async check(): Promise<void> {
    if (!this.#lost && Date.now() - this.#refreshedAt > STALE_AFTER_MS)
      this.#lost = new Error('the lock went stale');
    if (!this.#lost) {
      try {
        await this.#backend.stat({ type: 'lock', name: this.id });
      } catch (e) {
        this.#lost = e;
      }
    }
    if (this.#lost) {
      throw new ForgeError(
        'FORGE_LOCK_EXPIRED',
        'the repository lock was lost while working (stale or removed); nothing was committed',
        {
          cause: this.#lost,
          hint: 'run the command again',
        },
      );
    }
  }

  async release(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    await this.#backend.remove({ type: 'lock', name: this.id });
  }
}
