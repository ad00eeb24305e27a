import type { SnapshotRecord } from '@backupforge/common';
import type { Repository } from './repository.ts';

export interface RepositoryStats {
  readonly snapshots: number;
  /** Files and bytes a full restore of the selected snapshots would write. */
  readonly totalFiles: number;
  readonly restoreSize: number;
  /** Distinct data blobs the selected snapshots reference, their plaintext and stored sizes. */
  readonly uniqueBlobs: number;
  readonly rawSize: number;
  readonly storedSize: number;
  /** Everything in the repository's packs. */
  readonly packs: number;
  readonly packBytes: number;
  /** rawSize / storedSize. */
  readonly compressionRatio: number;
  /** restoreSize / storedSize: what deduplication and compression save together. */
  readonly spaceSavingRatio: number;
}

/** Totals for `snapshots` (default: all). Reads every tree once; no data blobs. */
export async function repositoryStats(
  repo: Repository,
  snapshots?: readonly SnapshotRecord[],
): Promise<RepositoryStats> {
  await repo.loadIndex();
  const snaps = snapshots ?? (await repo.listSnapshots());
  const seenTrees = new Set<string>();
  const treeTotals = new Map<string, { files: number; bytes: number }>();
  const blobs = new Set<string>();
  async function walk(id: string): Promise<{ files: number; bytes: number }> {
    const cached = treeTotals.get(id);
    if (cached) return cached;
    seenTrees.add(id);
    let files = 0;
    let bytes = 0;
    for (const n of (await repo.loadTree(id)).nodes) {
      if (n.type === 'file') {
        files++;
        bytes += n.size ?? 0;
        for (const c of n.content ?? []) blobs.add(c);
      } else if (n.type === 'dir' && n.subtree) {
        const t = await walk(n.subtree);
        files += t.files;
        bytes += t.bytes;
      }
    }
    const t = { files, bytes };
    treeTotals.set(id, t);
    return t;
  }
  let totalFiles = 0;
  let restoreSize = 0;
  for (const s of snaps) {
    const t = await walk(s.tree);
    totalFiles += t.files;
    restoreSize += t.bytes;
  }
  let rawSize = 0;
  let storedSize = 0;
  for (const id of blobs) {
    const loc = repo.index.lookup(id);
    if (!loc) continue;
    rawSize += loc.rawLength;
    storedSize += loc.length;
  }
  let packs = 0;
  let packBytes = 0;
  for await (const p of repo.backend.list('pack')) {
    packs++;
    packBytes += p.size;
  }
  return {
    snapshots: snaps.length,
    totalFiles,
    restoreSize,
    uniqueBlobs: blobs.size,
    rawSize,
    storedSize,
    packs,
    packBytes,
    compressionRatio: storedSize > 0 ? rawSize / storedSize : 1,
    spaceSavingRatio: storedSize > 0 ? restoreSize / storedSize : 1,
  };
}
