import { type Reporter, silentReporter, toForgeError } from '@backupforge/common';
import { readPackHeader } from './format/pack.ts';
import { crashPoint } from './internal/crash.ts';
import { RepositoryLock } from './lock.ts';
import type { Repository } from './repository.ts';

export interface RepairIndexOptions {
  /** Report what would change, write nothing. */
  readonly dryRun?: boolean;
  readonly reporter?: Reporter;
}

export interface RepairIndexResult {
  readonly packs: number;
  readonly blobs: number;
  /** Packs whose header could not be read (left alone; their blobs are not indexed). */
  readonly unreadablePacks: readonly { readonly id: string; readonly message: string }[];
  readonly indexFilesWritten: readonly string[];
  readonly indexFilesRemoved: readonly string[];
}

const PACKS_PER_INDEX_FILE = 512;

/**
 * Rebuilds the index from the pack headers (the ground truth, format spec §7): reads every
 * pack's header, writes new index files, then removes the old ones — in that order, so a crash
 * at any point leaves a usable index. Deterministic (packs sorted by id), so a second run finds
 * the same index files and changes nothing. Takes an exclusive lock.
 */
export async function repairIndex(
  repo: Repository,
  opts: RepairIndexOptions = {},
): Promise<RepairIndexResult> {
  const reporter = opts.reporter ?? silentReporter;
  const lock = opts.dryRun ? undefined : await RepositoryLock.acquire(repo.backend, { exclusive: true });
  try {
    const packs: { name: string; size: number }[] = [];
    for await (const p of repo.backend.list('pack')) packs.push(p);
    packs.sort((a, b) => (a.name < b.name ? -1 : 1));
    const good: { id: string; entries: Awaited<ReturnType<typeof readPackHeader>> }[] = [];
    const unreadablePacks: { id: string; message: string }[] = [];
    let blobs = 0;
    for (const [i, p] of packs.entries()) {
      try {
        const entries = await readPackHeader(repo.backend, repo.keys.encKey, p.name, p.size);
        good.push({ id: p.name, entries });
        blobs += entries.length;
      } catch (e) {
        const fe = toForgeError(e);
        unreadablePacks.push({ id: p.name, message: fe.message });
        reporter({
          type: 'warning',
          phase: 'check',
          path: p.name,
          code: fe.code,
          message: `pack ${p.name.slice(0, 12)} skipped: ${fe.message}`,
        });
      }
      reporter({ type: 'progress', phase: 'check', filesDone: i + 1, bytesDone: 0 });
    }
    // What the current index says, as comparable lines; unreadable index files force a rewrite.
    const old: string[] = [];
    for await (const f of repo.backend.list('index')) old.push(f.name);
    const current = new Set<string>();
    let damaged = false;
    for (const name of old) {
      try {
        for (const p of (await repo.loadIndexFile(name)).packs) {
          for (const b of p.blobs)
            current.add(`${p.id} ${b.id} ${b.type} ${b.offset} ${b.length} ${b.rawLength} ${b.compression}`);
        }
      } catch {
        damaged = true;
      }
    }
    const rebuilt = new Set<string>();
    for (const p of good)
      for (const b of p.entries)
        rebuilt.add(`${p.id} ${b.id} ${b.type} ${b.offset} ${b.length} ${b.rawLength} ${b.compression}`);
    const same = !damaged && current.size === rebuilt.size && [...rebuilt].every((l) => current.has(l));
    if (same)
      return { packs: good.length, blobs, unreadablePacks, indexFilesWritten: [], indexFilesRemoved: [] };
    const written: string[] = [];
    if (!opts.dryRun) {
      for (let i = 0; i < good.length; i += PACKS_PER_INDEX_FILE)
        written.push(await repo.saveIndex(good.slice(i, i + PACKS_PER_INDEX_FILE)));
      crashPoint('repair-index:index-saved');
      await lock?.check();
      for (const n of old) await repo.backend.remove({ type: 'index', name: n });
      crashPoint('repair-index:old-index-removed');
    }
    return { packs: good.length, blobs, unreadablePacks, indexFilesWritten: written, indexFilesRemoved: old };
  } finally {
    await lock?.release().catch(() => {});
  }
}
