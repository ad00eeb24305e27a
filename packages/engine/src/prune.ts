import { setTimeout as sleep } from 'node:timers/promises';
import {
  ForgeError,
  type Reporter,
  silentReporter,
  type TemporarySweep,
  toForgeError,
} from '@backupforge/common';
import { crashPoint } from './internal/crash.ts';
import { isStale, listLocks, lockKind, RepositoryLock } from './lock.ts';
import { blobsByPack, type IndexFile, type PackedBlob } from './master-index.ts';
import { PackWriter } from './pack-writer.ts';
import type { Repository } from './repository.ts';

export interface PruneOptions {
  /** Plan only: report what would be removed and repacked, write and delete nothing. */
  readonly dryRun?: boolean;
  /**
   * Unused bytes tolerated in kept packs, as a fraction of the used bytes (default 0.05 = 5%).
   * Packs with the largest unused share are repacked until the rest is within the limit.
   */
  readonly maxUnused?: number;
  /**
   * How long to wait for backups that started before the new index was in place before
   * deleting packs (default 0: don't wait; such packs stay, and a later prune removes them).
   */
  readonly maxWaitMs?: number;
  readonly reporter?: Reporter;
}

export interface PrunePlan {
  readonly snapshots: number;
  readonly usedBlobs: number;
  readonly usedBytes: number;
  readonly unusedBytes: number;
  readonly packs: {
    readonly keep: number;
    readonly repack: number;
    readonly remove: number;
    readonly unindexed: number;
  };
  /** Bytes of packs that will be deleted (removed + repacked + unindexed). */
  readonly bytesToDelete: number;
  /** Bytes of used blobs copied into new packs by repacking. */
  readonly bytesToRepack: number;
}

export interface PruneResult {
  readonly plan: PrunePlan;
  readonly packsDeleted: number;
  readonly bytesFreed: number;
  /** Packs not deleted this time because backups that might use them were still running. */
  readonly packsDeferred: number;
  /**
   * Temporary files that interrupted writes left in the repository (a process killed while it
   * saved or uploaded), untouched for {@link STALE_TEMPORARY_MS}: deleted (counted in a dry run).
   * Zero where the backend leaves none (S3, REST).
   */
  readonly temporaries: TemporarySweep;
}

/**
 * A temporary file untouched this long belongs to no write in progress: a save writes its file
 * within seconds, an upload writes to it every 2 MiB of pack data. Even a writer stalled past
 * this only fails (its rename finds nothing): no index lists a pack before it is committed.
 */
export const STALE_TEMPORARY_MS = 60 * 60 * 1000;

interface PackInfo {
  readonly id: string;
  readonly size: number;
  readonly blobs: readonly PackedBlob[];
  used: number;
  unused: number;
}

/**
 * Removes data no snapshot uses (restic `prune`), without stopping backups.
 *
 * Safety with concurrent backups (format spec §11, reliability scenario 9):
 * 1. Prune takes a 'prune' lock: other prunes and exclusive operations wait, backups go on.
 * 2. Mark: every blob reachable from the snapshots listed now is "used"; packs are classified
 *    as keep / repack (used blobs copied into new packs first) / remove. Packs on storage that no
 *    index lists (interrupted or still-running backups) are candidates too.
 * 3. New index files (kept + new packs) are written, then the old ones deleted: from then on,
 *    new backups cannot deduplicate against data about to go, and store it again if needed.
 * 4. Before deleting packs, prune waits (up to `maxWaitMs`) until every backup that started
 *    before step 3 finished, then re-reads the snapshot list: a pack holding a blob that a
 *    snapshot written meanwhile uses is kept and indexed again. If backups are still running,
 *    deletion is deferred to the next prune (the candidates stay on storage, unindexed).
 * Deletes happen only after the index no longer lists the pack (indexes first, then packs).
 */
export async function prune(repo: Repository, opts: PruneOptions = {}): Promise<PruneResult> {
  const reporter = opts.reporter ?? silentReporter;
  const maxUnused = opts.maxUnused ?? 0.05;
  const lock = opts.dryRun
    ? undefined
    : await RepositoryLock.acquire(repo.backend, { exclusive: false, kind: 'prune' });
  try {
    const temporaries = await sweepTemporaries(repo, opts.dryRun ?? false, reporter);
    // --- mark
    const snapshots = await repo.listSnapshots();
    const seenSnapshots = new Set(snapshots.map((s) => s.id));
    const indexNames: string[] = [];
    for await (const f of repo.backend.list('index')) indexNames.push(f.name);
    const files: IndexFile[] = [];
    for (const n of indexNames) files.push(await repo.loadIndexFile(n)); // a damaged index stops prune: run repair index
    repo.adoptIndexFiles(files);
    const used = new Set<string>();
    const seenTrees = new Set<string>();
    const markTree = async (id: string): Promise<void> => {
      if (seenTrees.has(id)) return;
      seenTrees.add(id);
      used.add(id);
      for (const n of (await repo.loadTree(id)).nodes) {
        for (const c of n.content ?? []) used.add(c);
        if (n.subtree) await markTree(n.subtree);
      }
    };
    for (const s of snapshots) await markTree(s.tree);
    for (const id of used) {
      if (!repo.index.has(id)) {
        throw new ForgeError(
          'FORGE_INTEGRITY',
          `blob ${id.slice(0, 12)} is used by a snapshot but not in the index; prune stops so nothing more is lost`,
          {
            hint: "run 'forge repair index', then 'forge check'",
          },
        );
      }
    }

    const packSizes = new Map<string, number>();
    for await (const p of repo.backend.list('pack')) packSizes.set(p.name, p.size);
    const packs = new Map<string, PackInfo>();
    const counted = new Set<string>(); // a blob stored twice counts as used once
    for (const [id, blobs] of blobsByPack(files)) {
      const info: PackInfo = { id, size: packSizes.get(id) ?? 0, blobs, used: 0, unused: 0 };
      for (const b of blobs) {
        if (used.has(b.id) && !counted.has(b.id)) {
          counted.add(b.id);
          info.used += b.loc.length;
        } else info.unused += b.loc.length;
      }
      packs.set(id, info);
    }
    for (const info of packs.values()) {
      if (!packSizes.has(info.id)) {
        throw new ForgeError('FORGE_INTEGRITY', `pack ${info.id.slice(0, 12)} is in the index but missing`, {
          hint: "run 'forge check'; a backup stores its data again",
        });
      }
    }
    const keep: PackInfo[] = [];
    const remove: PackInfo[] = [];
    const partial: PackInfo[] = [];
    for (const info of packs.values()) {
      if (info.used === 0) remove.push(info);
      else if (info.unused === 0) keep.push(info);
      else partial.push(info);
    }
    const unindexed = [...packSizes].filter(([id]) => !packs.has(id)).map(([id, size]) => ({ id, size }));
    const usedBytes = [...packs.values()].reduce((a, p) => a + p.used, 0);
    let unusedInKept = partial.reduce((a, p) => a + p.unused, 0);
    partial.sort((a, b) => b.unused / (a.used + a.unused) - a.unused / (b.used + b.unused));
    const repack: PackInfo[] = [];
    for (const p of partial) {
      if (unusedInKept > maxUnused * usedBytes) {
        repack.push(p);
        unusedInKept -= p.unused;
      } else keep.push(p);
    }
    const plan: PrunePlan = {
      snapshots: snapshots.length,
      usedBlobs: used.size,
      usedBytes,
      unusedBytes: [...packs.values()].reduce((a, p) => a + p.unused, 0),
      packs: { keep: keep.length, repack: repack.length, remove: remove.length, unindexed: unindexed.length },
      bytesToDelete:
        [...remove, ...repack].reduce((a, p) => a + p.size, 0) + unindexed.reduce((a, p) => a + p.size, 0),
      bytesToRepack: repack.reduce((a, p) => a + p.used, 0),
    };
    if (opts.dryRun || (remove.length === 0 && repack.length === 0 && unindexed.length === 0)) {
      return { plan, packsDeleted: 0, bytesFreed: 0, packsDeferred: 0, temporaries };
    }

    // --- repack: copy used blobs of sparse packs into new packs (durable, with their index)
    const writer = new PackWriter(repo);
    try {
      const inKept = new Set<string>();
      for (const p of keep) for (const b of p.blobs) inKept.add(b.id);
      const repackedIds = new Set<string>();
      for (const p of repack) {
        for (const b of p.blobs) {
          if (!used.has(b.id) || inKept.has(b.id) || repackedIds.has(b.id)) continue;
          const sealed = (await repo.backend.load(
            { type: 'pack', name: p.id },
            { offset: b.loc.offset, length: b.loc.length },
          )) as Uint8Array;
          repackedIds.add(b.id);
          // The sealed bytes move as they are: same key, same AAD, same id.
          await writer.add({
            id: Buffer.from(b.id, 'hex'),
            type: b.loc.type,
            compression: b.loc.compression,
            rawLength: b.loc.rawLength,
            sealed,
          });
        }
        reporter({
          type: 'progress',
          phase: 'check',
          filesDone: repackedIds.size,
          bytesDone: 0,
          currentPath: p.id,
        });
      }
      await writer.flush();
    } catch (e) {
      // The pack being written leaves no temporary file.
      await writer.discard();
      throw e;
    }

    // --- new index (kept packs; the repacked blobs' new packs are indexed by the writer), then drop the old files
    await lock!.check();
    const keepIndex = keep.map((p) => ({ id: p.id, entries: p.blobs.map((b) => ({ id: b.id, ...b.loc })) }));
    for (let i = 0; i < keepIndex.length; i += 512) await repo.saveIndex(keepIndex.slice(i, i + 512));
    crashPoint('prune:index-saved');
    for (const n of indexNames) {
      await repo.backend.remove({ type: 'index', name: n });
    }
    crashPoint('prune:old-index-removed');
    const indexSwitchedAt = Date.now();

    // --- wait for backups that may have deduplicated against data about to go
    const candidates = new Map<string, number>();
    for (const p of [...remove, ...repack]) candidates.set(p.id, p.size);
    for (const p of unindexed) candidates.set(p.id, p.size);
    const deadline = Date.now() + (opts.maxWaitMs ?? 0);
    const olderBackupsRunning = async () =>
      (await listLocks(repo.backend)).some(
        ({ id, lock: l }) =>
          id !== lock!.id &&
          !isStale(l) &&
          lockKind(l) === 'shared' &&
          Date.parse(l.created ?? l.time) <= indexSwitchedAt,
      );
    while (await olderBackupsRunning()) {
      if (Date.now() >= deadline) {
        // Put the candidates back in the index so nothing a running backup references goes missing.
        const back = [...remove, ...repack].filter((p) => candidates.has(p.id));
        if (back.length > 0)
          await repo.saveIndex(
            back.map((p) => ({ id: p.id, entries: p.blobs.map((b) => ({ id: b.id, ...b.loc })) })),
          );
        reporter({
          type: 'warning',
          phase: 'check',
          code: 'FORGE_LOCK_CONFLICT',
          message: `backups are running: ${candidates.size} packs were kept this time; run prune again later`,
        });
        return { plan, packsDeleted: 0, bytesFreed: 0, packsDeferred: candidates.size, temporaries };
      }
      await sleep(2000);
    }

    // --- re-mark: snapshots written meanwhile may use blobs of candidate packs
    const late = (await repo.listSnapshots()).filter((s) => !seenSnapshots.has(s.id));
    if (late.length > 0) {
      const lateUsed = new Set<string>();
      const lateTrees = new Set<string>();
      const walk = async (id: string, locate: (blob: string) => Promise<void>): Promise<void> => {
        if (lateTrees.has(id)) return;
        lateTrees.add(id);
        await locate(id);
        for (const n of (await repo.loadTree(id)).nodes) {
          for (const c of n.content ?? []) lateUsed.add(c);
          if (n.subtree) await walk(n.subtree, locate);
        }
      };
      // Their trees are in index files written after the mark (or in candidate packs, which the
      // in-memory index still knows from the mark).
      const newer: IndexFile[] = [];
      for await (const f of repo.backend.list('index')) {
        if (!indexNames.includes(f.name)) newer.push(await repo.loadIndexFile(f.name));
      }
      repo.adoptIndexFiles(newer);
      for (const s of late) await walk(s.tree, async (id) => void lateUsed.add(id));
      const rescue = [...remove, ...repack].filter((p) => p.blobs.some((b) => lateUsed.has(b.id)));
      if (rescue.length > 0) {
        await repo.saveIndex(
          rescue.map((p) => ({ id: p.id, entries: p.blobs.map((b) => ({ id: b.id, ...b.loc })) })),
        );
        for (const p of rescue) candidates.delete(p.id);
      }
    }

    // --- sweep: the index no longer lists these packs
    await lock!.check();
    let packsDeleted = 0;
    let bytesFreed = 0;
    for (const [id, size] of candidates) {
      try {
        await repo.backend.remove({ type: 'pack', name: id });
        packsDeleted++;
        bytesFreed += size;
        crashPoint('prune:pack-removed');
      } catch (e) {
        reporter({
          type: 'warning',
          phase: 'check',
          code: toForgeError(e).code,
          message: `pack ${id.slice(0, 12)} could not be deleted: ${toForgeError(e).message}`,
        });
      }
    }
    return { plan, packsDeleted, bytesFreed, packsDeferred: 0, temporaries };
  } finally {
    await lock?.release().catch(() => {});
  }
}

/** Deletes (counts, in a dry run) stale temporary files; a failure is a warning, not the end of prune. */
async function sweepTemporaries(
  repo: Repository,
  dryRun: boolean,
  reporter: Reporter,
): Promise<TemporarySweep> {
  try {
    return (
      (await repo.backend.sweepTemporaries?.({ olderThanMs: STALE_TEMPORARY_MS, dryRun })) ?? NO_TEMPORARIES
    );
  } catch (e) {
    const fe = toForgeError(e);
    reporter({
      type: 'warning',
      phase: 'check',
      code: fe.code,
      message: `temporary files of interrupted writes could not be ${dryRun ? 'counted' : 'removed'}: ${fe.message}`,
    });
    return NO_TEMPORARIES;
  }
}

const NO_TEMPORARIES: TemporarySweep = Object.freeze({ files: 0, bytes: 0 });
