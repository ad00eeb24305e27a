import {
  ForgeError,
  type ForgeErrorCode,
  type Reporter,
  type RestoreTarget,
  type SnapshotRecord,
  silentReporter,
  toForgeError,
} from '@backupforge/common';
import { findNode, splitPath } from './browse.ts';
import { blobId } from './crypto/master-key.ts';
import { metadataFromNode, type TreeNode } from './format/tree.ts';
import { Semaphore } from './internal/concurrency.ts';
import type { Repository } from './repository.ts';

export interface RestoreOptions {
  /** Path inside the snapshot to restore (default `/`): a directory's contents or one file. */
  readonly subpath?: string;
  /** Restore only paths (absolute inside the snapshot) for which this is true, and what is below them. */
  readonly include?: (path: string) => boolean;
  /** Skip paths for which this is true, and what is below them. */
  readonly exclude?: (path: string) => boolean;
  /** Read every restored file back and compare it with the snapshot. */
  readonly verify?: boolean;
  readonly reporter?: Reporter;
  readonly signal?: AbortSignal;
}

export interface RestoreError {
  readonly path: string;
  readonly code: ForgeErrorCode;
  readonly message: string;
}

export interface RestoreResult {
  readonly files: number;
  readonly dirs: number;
  readonly bytes: number;
  readonly errors: readonly RestoreError[];
  /** Files read back and matched (when `verify`). */
  readonly verified: number;
}

/** Blobs loaded ahead per file, and files restored at once: at most 8 × 2 chunks (≤ 64 MiB) in memory. */
const PREFETCH = 2;
const FILES_IN_PARALLEL = 8;
/** Errors that make going on pointless. */
const FATAL = new Set<ForgeErrorCode>([
  'FORGE_NO_SPACE',
  'FORGE_PERMISSION',
  'FORGE_TARGET_NOT_EMPTY',
  'FORGE_ABORTED',
  'FORGE_INTERNAL',
]);

/**
 * Restores a snapshot (or a path in it) into a target. Every blob is authenticated and checked
 * against its id before a byte of it is written; a file whose data fails is removed and
 * reported in `errors`, and the restore goes on with the next file.
 */
export async function restore(
  repo: Repository,
  snapshot: SnapshotRecord,
  target: RestoreTarget,
  opts: RestoreOptions = {},
): Promise<RestoreResult> {
  const reporter = opts.reporter ?? silentReporter;
  await repo.loadIndex();
  const start = await findNode(repo, snapshot, opts.subpath ?? '/');
  const basePath = `/${splitPath(opts.subpath ?? '/').join('/')}`;
  const errors: RestoreError[] = [];
  /** First restored name of each hardlinked inode, and whether restoring it worked. */
  const links = new Map<string, { rel: string[]; done: Promise<boolean> }>();
  const fileSlots = new Semaphore(FILES_IN_PARALLEL);
  const restoredFiles: { rel: string[]; node: TreeNode }[] = [];
  let files = 0;
  let dirs = 0;
  let bytes = 0;
  let last = 0;
  const progress = (path: string, force = false) => {
    const now = Date.now();
    if (!force && now - last < 100) return;
    last = now;
    reporter({ type: 'progress', phase: 'restore', filesDone: files, bytesDone: bytes, currentPath: path });
  };
  const fail = (path: string, e: unknown) => {
    const fe = toForgeError(e);
    if (FATAL.has(fe.code)) throw fe;
    errors.push({ path, code: fe.code, message: fe.message });
    reporter({ type: 'warning', phase: 'restore', path, code: fe.code, message: `${path}: ${fe.message}` });
  };

  // Directories are created lazily, so include filters do not leave empty directory skeletons.
  const pendingDirs: { rel: string[]; node: TreeNode; created: boolean }[] = [];
  const ensureDirs = async () => {
    for (const d of pendingDirs) {
      if (!d.created) {
        await target.dir(d.rel, metadataFromNode(d.node));
        d.created = true;
        dirs++;
      }
    }
  };

  const restoreFile = async (abs: string, rel: string[], node: TreeNode) => {
    const meta = metadataFromNode(node);
    let settle: ((ok: boolean) => void) | undefined;
    if (node.links > 1) {
      const key = `${node.device}:${node.inode}`;
      const first = links.get(key);
      if (first && (await first.done)) {
        await target.hardlink(rel, first.rel, meta);
        files++;
        return;
      }
      // The first name of this inode (or the first one failed): restore the content here.
      links.set(key, {
        rel,
        done: new Promise<boolean>((r) => {
          settle = r;
        }),
      });
    }
    try {
      await writeFile(abs, rel, node, meta);
      settle?.(true);
    } catch (e) {
      settle?.(false);
      throw e;
    }
  };

  const writeFile = async (
    abs: string,
    rel: string[],
    node: TreeNode,
    meta: ReturnType<typeof metadataFromNode>,
  ) => {
    const w = await target.file(rel, meta);
    const ids = node.content ?? [];
    const loads: Promise<Uint8Array>[] = [];
    const load = (i: number) => {
      const p = repo.loadBlob('data', ids[i]!);
      p.catch(() => {});
      loads[i] = p;
    };
    for (let i = 0; i < Math.min(PREFETCH, ids.length); i++) load(i);
    let offset = 0;
    try {
      for (let i = 0; i < ids.length; i++) {
        if (opts.signal?.aborted) throw new ForgeError('FORGE_ABORTED', 'restore was cancelled');
        const data = await loads[i]!;
        if (i + PREFETCH < ids.length) load(i + PREFETCH);
        await w.write(data, offset);
        offset += data.length;
        bytes += data.length;
        progress(abs);
      }
      if (offset !== (node.size ?? 0)) {
        throw new ForgeError(
          'FORGE_INTEGRITY',
          `content is ${offset} bytes but the snapshot says ${node.size}`,
        );
      }
      await w.close();
      files++;
      restoredFiles.push({ rel, node });
    } catch (e) {
      await w.abort().catch(() => {});
      throw e;
    }
  };

  const visit = async (
    abs: string,
    rel: string[],
    node: TreeNode,
    included: boolean,
    pending: Promise<void>[],
  ): Promise<void> => {
    if (opts.exclude?.(abs)) return;
    const inc = included || !opts.include || opts.include(abs);
    if (node.type === 'dir') {
      const entry = { rel, node, created: false };
      pendingDirs.push(entry);
      try {
        if (inc) await ensureDirs();
        const tree = node.subtree ? await repo.loadTree(node.subtree) : { nodes: [] };
        const mine: Promise<void>[] = [];
        try {
          for (const child of tree.nodes) {
            await visit(
              abs === '/' ? `/${child.name}` : `${abs}/${child.name}`,
              [...rel, child.name],
              child,
              inc,
              mine,
            );
          }
        } finally {
          // Files still being written finish before the directory gets its final mode and times.
          await Promise.all(mine);
        }
      } catch (e) {
        fail(abs, e);
      } finally {
        pendingDirs.pop();
      }
      if (entry.created) {
        try {
          await target.finishDir(rel, metadataFromNode(node));
        } catch (e) {
          fail(abs, e);
        }
      }
      return;
    }
    if (!inc) return;
    try {
      await ensureDirs();
      if (node.type === 'file') {
        await fileSlots.acquire();
        const task = restoreFile(abs, rel, node)
          .catch((e) => fail(abs, e))
          .finally(() => fileSlots.release());
        task.catch(() => {});
        pending.push(task);
      } else if (node.type === 'symlink') await target.symlink(rel, metadataFromNode(node));
      else await target.special(rel, metadataFromNode(node));
    } catch (e) {
      fail(abs, e);
    }
  };

  reporter({ type: 'start', phase: 'restore' });
  await target.prepare();
  try {
    const top: Promise<void>[] = [];
    try {
      if (start.type === 'dir') {
        // The target itself stands for the start directory: restore its children into it.
        const tree = start.subtree ? await repo.loadTree(start.subtree) : { nodes: [] };
        for (const child of tree.nodes) {
          await visit(
            basePath === '/' ? `/${child.name}` : `${basePath}/${child.name}`,
            [child.name],
            child,
            false,
            top,
          );
        }
      } else {
        await visit(basePath, [start.name], start, false, top);
      }
    } finally {
      await Promise.all(top);
    }
    progress('', true);
    let verified = 0;
    if (opts.verify) verified = await verifyFiles(repo, target, restoredFiles, fail);
    reporter({ type: 'done', phase: 'restore' });
    return { files, dirs, bytes, errors, verified };
  } finally {
    await target.close();
  }
}

async function verifyFiles(
  repo: Repository,
  target: RestoreTarget,
  files: readonly { rel: string[]; node: TreeNode }[],
  fail: (path: string, e: unknown) => void,
): Promise<number> {
  if (!target.readBack)
    throw new ForgeError('FORGE_USAGE', 'this restore target cannot read files back', {
      hint: 'restore without --verify',
    });
  let ok = 0;
  for (const { rel, node } of files) {
    const path = rel.join('/');
    try {
      const reader = await target.readBack(rel);
      try {
        for (const id of node.content ?? []) {
          const loc = repo.index.lookup(id);
          if (!loc) throw new ForgeError('FORGE_NOT_FOUND', `blob ${id.slice(0, 12)} is not in the index`);
          const buf = new Uint8Array(loc.rawLength);
          let got = 0;
          while (got < buf.length) {
            const n = await reader.read(buf.subarray(got));
            if (n === 0) break;
            got += n;
          }
          const actual = blobId(repo.keys.macKey, buf.subarray(0, got)).toString('hex');
          if (got !== loc.rawLength || actual !== id) {
            throw new ForgeError('FORGE_INTEGRITY', `restored file ${path} differs from the snapshot`, {
              hint: 'restore it again',
            });
          }
        }
        const extra = await reader.read(new Uint8Array(1));
        if (extra !== 0)
          throw new ForgeError('FORGE_INTEGRITY', `restored file ${path} is longer than in the snapshot`);
      } finally {
        await reader.close();
      }
      ok++;
    } catch (e) {
      fail(path, e);
    }
  }
  return ok;
}
