import { type BigIntStats, constants } from 'node:fs';
import type { FileMetadata, NodeType } from '@backupforge/common';
import type { IdNames } from './user-names.ts';

/** The node type encoded in the file-type bits of `st_mode`. */
export function nodeTypeOf(mode: number): NodeType | undefined {
  switch (mode & constants.S_IFMT) {
    case constants.S_IFREG:
      return 'file';
    case constants.S_IFDIR:
      return 'dir';
    case constants.S_IFLNK:
      return 'symlink';
    case constants.S_IFIFO:
      return 'fifo';
    case constants.S_IFSOCK:
      return 'socket';
    case constants.S_IFCHR:
      return 'chardev';
    case constants.S_IFBLK:
      return 'blockdev';
    default:
      return undefined;
  }
}

export interface MetadataExtras {
  readonly users: IdNames;
  readonly groups: IdNames;
  readonly linkTarget?: string;
}

/** Builds a snapshot {@link FileMetadata} from `lstat(…, { bigint: true })`. */
export function toFileMetadata(st: BigIntStats, type: NodeType, extras: MetadataExtras): FileMetadata {
  const uid = Number(st.uid);
  const gid = Number(st.gid);
  const user = extras.users.get(uid);
  const group = extras.groups.get(gid);
  const isDevice = type === 'chardev' || type === 'blockdev';
  return {
    type,
    mode: Number(st.mode) & 0o7777,
    uid,
    gid,
    ...(user === undefined ? {} : { user }),
    ...(group === undefined ? {} : { group }),
    size: type === 'file' ? Number(st.size) : 0,
    mtimeNs: st.mtimeNs,
    atimeNs: st.atimeNs,
    ctimeNs: st.ctimeNs,
    inode: st.ino,
    device: st.dev,
    links: Number(st.nlink),
    ...(isDevice ? { rdev: Number(st.rdev) } : {}),
    ...(extras.linkTarget === undefined ? {} : { linkTarget: extras.linkTarget }),
  };
}
