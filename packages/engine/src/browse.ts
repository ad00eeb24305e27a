import { ForgeError, type SnapshotRecord } from '@backupforge/common';
import type { TreeNode } from './format/tree.ts';
import type { Repository } from './repository.ts';
import { resolveSnapshotRef, type SnapshotFilter } from './snapshot-filter.ts';

/** Resolves `latest`, an id or a prefix to a snapshot. */
export async function findSnapshot(
  repo: Repository,
  ref: string,
  filter?: SnapshotFilter,
): Promise<SnapshotRecord> {
  return resolveSnapshotRef(await repo.listSnapshots(), ref, filter);
}

/** Splits `/a/b/` into `['a','b']`. */
export function splitPath(path: string): string[] {
  return path.split('/').filter((c) => c !== '' && c !== '.');
}

/** A synthetic node for a snapshot's root directory. */
export function rootNode(snapshot: SnapshotRecord): TreeNode {
  return {
    name: '',
    type: 'dir',
    mode: 0o755,
    uid: 0,
    gid: 0,
    mtime: '0',
    atime: '0',
    ctime: '0',
    inode: '0',
    device: '0',
    links: 1,
    subtree: snapshot.tree,
  };
}

/** Finds the node at `path` inside a snapshot; `/` is the root. */
export async function findNode(repo: Repository, snapshot: SnapshotRecord, path: string): Promise<TreeNode> {
  let node = rootNode(snapshot);
  for (const c of splitPath(path)) {
    if (node.type !== 'dir' || !node.subtree) {
      throw new ForgeError('FORGE_PATH_NOT_FOUND', `${path} is not in snapshot ${snapshot.id.slice(0, 8)}`, {
        hint: "list its contents with 'forge ls'",
      });
    }
    const tree = await repo.loadTree(node.subtree);
    const next = tree.nodes.find((n) => n.name === c);
    if (!next) {
      throw new ForgeError('FORGE_PATH_NOT_FOUND', `${path} is not in snapshot ${snapshot.id.slice(0, 8)}`, {
        hint: "list its contents with 'forge ls'",
      });
    }
    node = next;
  }
  return node;
}

export interface WalkItem {
  /** Absolute path inside the snapshot, `/`-separated. */
  readonly path: string;
  readonly node: TreeNode;
}

/** Walks a snapshot depth-first from `path` (the start node itself first unless it is the root). */
export async function* walkSnapshot(
  repo: Repository,
  snapshot: SnapshotRecord,
  path = '/',
  opts: { recursive?: boolean } = {},
): AsyncGenerator<WalkItem> {
  const start = await findNode(repo, snapshot, path);
  const base = `/${splitPath(path).join('/')}`;
  if (base !== '/') yield { path: base, node: start };
  if (start.type !== 'dir' || !start.subtree) return;
  const recursive = opts.recursive ?? true;
  async function* walk(dir: string, subtree: string): AsyncGenerator<WalkItem> {
    const tree = await repo.loadTree(subtree);
    for (const n of tree.nodes) {
      const p = dir === '/' ? `/${n.name}` : `${dir}/${n.name}`;
      yield { path: p, node: n };
      if (recursive && n.type === 'dir' && n.subtree) yield* walk(p, n.subtree);
    }
  }
  yield* walk(base, start.subtree);
}

/** Streams the content of one file in a snapshot (for `forge dump`). */
export async function* readFileContent(
  repo: Repository,
  snapshot: SnapshotRecord,
  path: string,
): AsyncGenerator<Uint8Array> {
  const node = await findNode(repo, snapshot, path);
  if (node.type !== 'file') {
    throw new ForgeError('FORGE_USAGE', `${path} is a ${node.type}, not a file`, {
      hint: "dump a file; use 'forge restore' for directories",
    });
  }
  for (const id of node.content ?? []) yield await repo.loadBlob('data', id);
}

export type DiffChange = 'added' | 'removed' | 'modified' | 'type' | 'metadata';

export interface DiffItem {
  readonly path: string;
  readonly change: DiffChange;
  readonly before?: TreeNode;
  readonly after?: TreeNode;
}

function sameContent(a: TreeNode, b: TreeNode): boolean {
  const ca = a.content ?? [];
  const cb = b.content ?? [];
  return ca.length === cb.length && ca.every((c, i) => c === cb[i]) && a.linkTarget === b.linkTarget;
}

function sameMeta(a: TreeNode, b: TreeNode): boolean {
  return a.mode === b.mode && a.uid === b.uid && a.gid === b.gid && a.mtime === b.mtime;
}

/** Differences between two snapshots, in path order. Identical subtrees are skipped unread. */
export async function* diffSnapshots(
  repo: Repository,
  a: SnapshotRecord,
  b: SnapshotRecord,
): AsyncGenerator<DiffItem> {
  async function* all(dir: string, subtree: string, change: 'added' | 'removed'): AsyncGenerator<DiffItem> {
    for (const n of (await repo.loadTree(subtree)).nodes) {
      const p = `${dir}/${n.name}`;
      yield change === 'added' ? { path: p, change, after: n } : { path: p, change, before: n };
      if (n.type === 'dir' && n.subtree) yield* all(p, n.subtree, change);
    }
  }
  async function* cmp(dir: string, ta: string, tb: string): AsyncGenerator<DiffItem> {
    if (ta === tb) return;
    const na = new Map((await repo.loadTree(ta)).nodes.map((n) => [n.name, n]));
    const nb = (await repo.loadTree(tb)).nodes;
    const names = [...new Set([...na.keys(), ...nb.map((n) => n.name)])].sort((x, y) =>
      Buffer.compare(Buffer.from(x), Buffer.from(y)),
    );
    const mb = new Map(nb.map((n) => [n.name, n]));
    for (const name of names) {
      const x = na.get(name);
      const y = mb.get(name);
      const p = `${dir}/${name}`;
      if (x && !y) {
        yield { path: p, change: 'removed', before: x };
        if (x.type === 'dir' && x.subtree) yield* all(p, x.subtree, 'removed');
      } else if (!x && y) {
        yield { path: p, change: 'added', after: y };
        if (y.type === 'dir' && y.subtree) yield* all(p, y.subtree, 'added');
      } else if (x && y) {
        if (x.type !== y.type) {
          yield { path: p, change: 'type', before: x, after: y };
          continue;
        }
        if (x.type === 'dir') {
          if (!sameMeta(x, y)) yield { path: p, change: 'metadata', before: x, after: y };
          if (x.subtree && y.subtree) yield* cmp(p, x.subtree, y.subtree);
        } else if (!sameContent(x, y)) yield { path: p, change: 'modified', before: x, after: y };
        else if (!sameMeta(x, y)) yield { path: p, change: 'metadata', before: x, after: y };
      }
    }
  }
  yield* cmp('', a.tree, b.tree);
}
