import { type Reporter, silentReporter, toForgeError } from '@backupforge/common';
import { blobId } from './crypto/master-key.ts';
import { sealBlob } from './format/blob-codec.ts';
import { readPackHeader } from './format/pack.ts';
import { encodeTree, type TreeNode } from './format/tree.ts';
import { crashPoint } from './internal/crash.ts';
import { RepositoryLock } from './lock.ts';
import { PackWriter } from './pack-writer.ts';
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

export interface RepairSnapshotsOptions {
  /** Report what would be rewritten, write nothing. */
  readonly dryRun?: boolean;
  /** Remove the damaged originals after writing the repaired snapshots (default: keep both). */
  readonly forget?: boolean;
  readonly reporter?: Reporter;
}

export interface RepairedSnapshot {
  readonly original: string;
  /** The new snapshot's id (undefined for a dry run). */
  readonly repaired: string | undefined;
  /** Paths whose content lost blobs (kept, shortened to what remains), or whose directory was unreadable (now empty). */
  readonly damaged: readonly string[];
}

/**
 * Rewrites snapshots that reference missing or unreadable data (restic `repair snapshots`):
 * a file keeps its name and the blobs that remain (its size shrinks to match), an unreadable
 * directory becomes empty, and the new snapshot carries the tag `repaired` and lists the damaged
 * paths. Originals stay unless `forget`. Every file that could be restored before can be
 * restored after; running it again finds nothing to do.
 */
export async function repairSnapshots(
  repo: Repository,
  opts: RepairSnapshotsOptions = {},
): Promise<RepairedSnapshot[]> {
  const reporter = opts.reporter ?? silentReporter;
  await repo.loadIndex();
  const out: RepairedSnapshot[] = [];
  const lock = opts.dryRun ? undefined : await RepositoryLock.acquire(repo.backend, { exclusive: false });
  try {
    const writer = new PackWriter(repo, { dryRun: opts.dryRun ?? false });
    const storeTree = async (nodes: readonly TreeNode[]): Promise<string> => {
      const bytes = encodeTree({ nodes });
      const id = blobId(repo.keys.macKey, bytes);
      const hex = id.toString('hex');
      if (writer.claim(hex, 'tree'))
        await writer.add(
          sealBlob(repo.keys.encKey, { id, type: 'tree', data: bytes }, repo.config.compression),
        );
      return hex;
    };
    const fixTree = async (treeId: string, path: string, damaged: string[]): Promise<string> => {
      let nodes: readonly TreeNode[];
      try {
        nodes = (await repo.loadTree(treeId)).nodes;
      } catch {
        damaged.push(path || '/');
        return storeTree([]);
      }
      let changed = false;
      const fixed = [];
      for (const n of nodes) {
        const p = `${path}/${n.name}`;
        if (n.type === 'dir' && n.subtree) {
          const sub = await fixTree(n.subtree, p, damaged);
          if (sub !== n.subtree) changed = true;
          fixed.push(sub === n.subtree ? n : { ...n, subtree: sub });
        } else if (n.type === 'file' && n.content?.some((c) => !repo.index.has(c, 'data'))) {
          const content = n.content.filter((c) => repo.index.has(c, 'data'));
          const size = content.reduce((a, c) => a + (repo.index.lookup(c)?.rawLength ?? 0), 0);
          damaged.push(p);
          changed = true;
          fixed.push({ ...n, content, size });
        } else fixed.push(n);
      }
      return changed ? storeTree(fixed) : treeId;
    };
    for (const s of await repo.listSnapshots()) {
      const damaged: string[] = [];
      const root = await fixTree(s.tree, '', damaged);
      if (root === s.tree) continue;
      reporter({
        type: 'warning',
        phase: 'check',
        path: s.id,
        code: 'FORGE_INTEGRITY',
        message: `snapshot ${s.id.slice(0, 8)}: ${damaged.length} damaged paths`,
      });
      let repaired: string | undefined;
      if (!opts.dryRun) {
        await writer.flush();
        await lock?.check();
        const { id: _id, ...body } = s;
        repaired = await repo.saveSnapshot({
          ...body,
          tree: root,
          tags: [...new Set([...s.tags, 'repaired'])],
          repairedFrom: s.id,
          damagedPaths: damaged,
        });
        if (opts.forget) await repo.removeSnapshot(s.id);
      }
      out.push({ original: s.id, repaired, damaged });
    }
    return out;
  } finally {
    await lock?.release().catch(() => {});
  }
}
