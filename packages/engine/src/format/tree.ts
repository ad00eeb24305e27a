import { type FileMetadata, ForgeError, type NodeType } from '@backupforge/common';
import { describeValue } from '../internal/describe-value.ts';

/** One entry of a tree blob (§9), as stored (JSON). */
export interface TreeNode {
  readonly name: string;
  readonly type: NodeType;
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly user?: string;
  readonly group?: string;
  readonly size?: number;
  readonly mtime: string;
  readonly atime: string;
  readonly ctime: string;
  readonly inode: string;
  readonly device: string;
  readonly links: number;
  readonly rdev?: number;
  readonly linkTarget?: string;
  readonly content?: readonly string[];
  readonly subtree?: string;
}

export interface Tree {
  readonly nodes: readonly TreeNode[];
}

const NODE_TYPES = new Set<NodeType>(['file', 'dir', 'symlink', 'fifo', 'socket', 'chardev', 'blockdev']);
const HEX64 = /^[0-9a-f]{64}$/;
const DEC = /^-?\d+$/;

export function nodeFromMetadata(
  name: string,
  m: FileMetadata,
  extra: { content?: string[]; subtree?: string; size?: number } = {},
): TreeNode {
  const n: Record<string, unknown> = {
    name,
    type: m.type,
    mode: m.mode,
    uid: m.uid,
    gid: m.gid,
  };
  if (m.user !== undefined) n.user = m.user;
  if (m.group !== undefined) n.group = m.group;
  if (m.type === 'file') n.size = extra.size ?? m.size;
  n.mtime = m.mtimeNs.toString();
  n.atime = m.atimeNs.toString();
  n.ctime = m.ctimeNs.toString();
  n.inode = m.inode.toString();
  n.device = m.device.toString();
  n.links = m.links;
  if (m.rdev !== undefined && (m.type === 'chardev' || m.type === 'blockdev')) n.rdev = m.rdev;
  if (m.linkTarget !== undefined) n.linkTarget = m.linkTarget;
  if (extra.content) n.content = extra.content;
  if (extra.subtree) n.subtree = extra.subtree;
  return n as unknown as TreeNode;
}

export function metadataFromNode(n: TreeNode): FileMetadata {
  return {
    type: n.type,
    mode: n.mode,
    uid: n.uid,
    gid: n.gid,
    ...(n.user !== undefined ? { user: n.user } : {}),
    ...(n.group !== undefined ? { group: n.group } : {}),
    size: n.size ?? 0,
    mtimeNs: BigInt(n.mtime),
    atimeNs: BigInt(n.atime),
    ctimeNs: BigInt(n.ctime),
    inode: BigInt(n.inode),
    device: BigInt(n.device),
    links: n.links,
    ...(n.rdev !== undefined ? { rdev: n.rdev } : {}),
    ...(n.linkTarget !== undefined ? { linkTarget: n.linkTarget } : {}),
  };
}

/** A path component that cannot escape a restore target. */
export function isSafeName(name: unknown): name is string {
  return (
    typeof name === 'string' &&
    name !== '' &&
    name !== '.' &&
    name !== '..' &&
    !name.includes('/') &&
    !name.includes('\0')
  );
}

export function encodeTree(tree: Tree): Buffer {
  return Buffer.from(JSON.stringify(tree), 'utf8');
}

function bad(id: string, msg: string): ForgeError {
  return new ForgeError('FORGE_FORMAT', `tree ${id.slice(0, 12)} ${msg}`);
}

/** Parses and validates a tree blob; a malformed tree is `FORGE_FORMAT`. */
export function decodeTree(bytes: Uint8Array, id: string): Tree {
  let t: unknown;
  try {
    t = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8'));
  } catch {
    throw bad(id, 'is not valid JSON');
  }
  const nodes = (t as { nodes?: unknown } | null)?.nodes;
  if (!Array.isArray(nodes)) throw bad(id, 'has no node list');
  let prev: Buffer | undefined;
  for (const raw of nodes) {
    const n = raw as Record<string, unknown>;
    if (!n || typeof n !== 'object' || !isSafeName(n.name))
      throw bad(id, `has an unsafe or missing name ${describeValue(n?.name)}`);
    const nameBytes = Buffer.from(n.name, 'utf8');
    if (prev && Buffer.compare(prev, nameBytes) >= 0)
      throw bad(id, `is not sorted or has duplicate name ${describeValue(n.name)}`);
    prev = nameBytes;
    if (!NODE_TYPES.has(n.type as NodeType))
      throw bad(id, `has an unknown node type ${describeValue(n.type)}`);
    for (const k of ['mtime', 'atime', 'ctime', 'inode', 'device'] as const) {
      if (typeof n[k] !== 'string' || !DEC.test(n[k] as string))
        throw bad(id, `has a bad ${k} for ${describeValue(n.name)}`);
    }
    for (const k of ['mode', 'uid', 'gid', 'links'] as const) {
      if (typeof n[k] !== 'number' || !Number.isInteger(n[k]))
        throw bad(id, `has a bad ${k} for ${describeValue(n.name)}`);
    }
    if (n.type === 'file') {
      if (!Array.isArray(n.content) || !n.content.every((c) => typeof c === 'string' && HEX64.test(c))) {
        throw bad(id, `has a file without valid content for ${describeValue(n.name)}`);
      }
      if (typeof n.size !== 'number' || !Number.isSafeInteger(n.size) || n.size < 0)
        throw bad(id, `has a bad size for ${describeValue(n.name)}`);
    }
    if (n.type === 'dir' && (typeof n.subtree !== 'string' || !HEX64.test(n.subtree))) {
      throw bad(id, `has a directory without subtree for ${describeValue(n.name)}`);
    }
    if (n.type === 'symlink' && typeof n.linkTarget !== 'string')
      throw bad(id, `has a symlink without target for ${describeValue(n.name)}`);
  }
  return t as Tree;
}

/** Sort helper: byte order of UTF-8 names (the order trees are stored in). */
export function compareNames(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}
