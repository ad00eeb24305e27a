import type { SnapshotId } from './ids.ts';

/** Totals of one backup run, stored in the snapshot. */
export interface SnapshotSummary {
  readonly backupStart: string;
  readonly backupEnd: string;
  readonly filesNew: number;
  readonly filesChanged: number;
  readonly filesUnmodified: number;
  readonly dirsNew: number;
  readonly dirsChanged: number;
  readonly dirsUnmodified: number;
  /** Blobs and bytes this run added to the repository. */
  readonly dataBlobs: number;
  readonly treeBlobs: number;
  readonly dataAdded: number;
  /** Same, after compression (what was written into packs). */
  readonly dataAddedPacked: number;
  readonly totalFilesProcessed: number;
  readonly totalBytesProcessed: number;
  readonly warnings: number;
}

/** A snapshot as stored in the repository (`snapshots/<id>`). */
export interface Snapshot {
  /** RFC 3339 time with nanoseconds, UTC. */
  readonly time: string;
  /** Id (hex) of the root tree blob. */
  readonly tree: string;
  readonly paths: readonly string[];
  readonly hostname: string;
  readonly username: string;
  readonly uid?: number;
  readonly gid?: number;
  readonly tags: readonly string[];
  /** Id of the snapshot this one was made incrementally from. */
  readonly parent?: SnapshotId;
  /** Source kind (`fs`, `stdin`, …). */
  readonly source: string;
  /** True when some files could not be read (the backup exited "partial"). */
  readonly partial?: boolean;
  readonly programVersion: string;
  readonly summary?: SnapshotSummary;
  /** Set by `repair snapshots`: the damaged snapshot this one replaces, and what was lost. */
  readonly repairedFrom?: SnapshotId;
  readonly damagedPaths?: readonly string[];
  /** Set by `forge copy`: the id of the snapshot this is a copy of (kept across copies of copies). */
  readonly original?: SnapshotId;
}

/** A snapshot together with its id. */
export interface SnapshotRecord extends Snapshot {
  readonly id: SnapshotId;
}

/** What to back up, where to, and how: the unit a scheduler or the server runs. */
export interface BackupJob {
  readonly name: string;
  readonly repository: string;
  readonly source: {
    readonly type: string;
    readonly paths: readonly string[];
    readonly options?: Record<string, unknown>;
  };
  readonly tags?: readonly string[];
  readonly host?: string;
}
