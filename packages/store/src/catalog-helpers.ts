import type { CatalogFileInput } from './types.ts';

/** The parts of an engine `TreeNode` the catalog keeps (`mtime` is nanoseconds, as text). */
export interface TreeNodeLike {
  readonly type: string;
  readonly size?: number;
  readonly mtime?: string;
}

/**
 * A catalog row for a node met while walking a snapshot (`walkSnapshot` in the engine yields
 * `{ path, node }`): `for await (const { path, node } of walk) yield catalogFileFromTreeNode(path, node)`.
 */
export function catalogFileFromTreeNode(path: string, node: TreeNodeLike): CatalogFileInput {
  let mtime: number | null = null;
  if (typeof node.mtime === 'string' && /^-?\d+$/.test(node.mtime)) {
    mtime = Number(BigInt(node.mtime) / 1_000_000n);
  }
  return { path, type: node.type, size: node.size ?? null, mtime };
}
