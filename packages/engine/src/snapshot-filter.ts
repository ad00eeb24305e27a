import { ForgeError, type Snapshot, type SnapshotRecord } from '@backupforge/common';

const HEX64 = /^[0-9a-f]{64}$/;

export function validateSnapshot(v: unknown, id: string): Snapshot {
  const s = v as Partial<Snapshot> | null;
  if (
    !s ||
    typeof s.time !== 'string' ||
    typeof s.tree !== 'string' ||
    !HEX64.test(s.tree) ||
    !Array.isArray(s.paths) ||
    !s.paths.every((p) => typeof p === 'string') ||
    typeof s.hostname !== 'string' ||
    !Array.isArray(s.tags) ||
    !s.tags.every((t) => typeof t === 'string')
  ) {
    throw new ForgeError('FORGE_FORMAT', `snapshot ${id.slice(0, 12)} is malformed`);
  }
  return s as Snapshot;
}

/** Filters that select snapshots (CLI `--host`, `--tag`, `--path`). */
export interface SnapshotFilter {
  readonly hosts?: readonly string[];
  /** Each entry is a comma-separated list that must all match (restic semantics): `a,b` OR `c`. */
  readonly tags?: readonly string[];
  readonly paths?: readonly string[];
}

export function matchesFilter(s: Snapshot, f: SnapshotFilter = {}): boolean {
  if (f.hosts?.length && !f.hosts.includes(s.hostname)) return false;
  if (f.tags?.length) {
    const ok = f.tags.some((group) =>
      group
        .split(',')
        .filter(Boolean)
        .every((t) => s.tags.includes(t)),
    );
    if (!ok) return false;
  }
  if (f.paths?.length) {
    if (!f.paths.every((p) => s.paths.includes(p))) return false;
  }
  return true;
}

/**
 * Resolves `latest`, a full id, or a unique id prefix (at least 4 hex chars) among `snapshots`
 * (oldest first). `latest` honours the filter.
 */
export function resolveSnapshotRef(
  snapshots: readonly SnapshotRecord[],
  ref: string,
  filter?: SnapshotFilter,
): SnapshotRecord {
  if (ref === 'latest') {
    const candidates = snapshots.filter((s) => matchesFilter(s, filter));
    const last = candidates[candidates.length - 1];
    if (!last) {
      throw new ForgeError('FORGE_SNAPSHOT_NOT_FOUND', 'no snapshot matches (latest)', {
        hint: "list snapshots with 'forge snapshots'",
      });
    }
    return last;
  }
  if (!/^[0-9a-f]{4,64}$/.test(ref)) {
    throw new ForgeError('FORGE_USAGE', `'${ref}' is not a snapshot id`, {
      hint: "give 'latest', a full id or an id prefix of at least 4 hex digits",
    });
  }
  const hits = snapshots.filter((s) => s.id.startsWith(ref));
  if (hits.length === 0) {
    throw new ForgeError('FORGE_SNAPSHOT_NOT_FOUND', `no snapshot with id ${ref}`, {
      hint: "list snapshots with 'forge snapshots'",
    });
  }
  if (hits.length > 1) {
    throw new ForgeError(
      'FORGE_SNAPSHOT_AMBIGUOUS',
      `snapshot id prefix ${ref} matches ${hits.length} snapshots`,
      { hint: 'give more digits of the id' },
    );
  }
  return hits[0]!;
}

/** The newest snapshot with the same host and the same set of paths: the parent of a new backup. */
export function findParentSnapshot(
  snapshots: readonly SnapshotRecord[],
  host: string,
  paths: readonly string[],
): SnapshotRecord | undefined {
  const want = [...paths].sort().join('\0');
  for (let i = snapshots.length - 1; i >= 0; i--) {
    const s = snapshots[i]!;
    if (s.hostname === host && [...s.paths].sort().join('\0') === want) return s;
  }
  return undefined;
}
