import { ForgeError, type SnapshotRecord } from '@backupforge/common';

/** What `--group-by` may name. */
export type GroupByField = 'host' | 'paths' | 'tags';

/** restic's default for `forget`: one group per host and set of paths. */
export const DEFAULT_GROUP_BY: readonly GroupByField[] = ['host', 'paths'];

export interface SnapshotGroup {
  /** Stable identity of the group: JSON of {hostname, paths, tags} like restic's group key. */
  readonly key: string;
  /** Set when grouping by host. */
  readonly hostname?: string;
  /** Set (sorted) when grouping by paths. */
  readonly paths?: readonly string[];
  /** Set (sorted) when grouping by tags. */
  readonly tags?: readonly string[];
  /** The group's snapshots, in input order. */
  readonly snapshots: SnapshotRecord[];
}

const GROUP_BY_FIELDS: readonly string[] = ['host', 'paths', 'tags'];

/**
 * Parses a `--group-by` value such as `host,paths`. Accepts restic's spellings (`host`/`hosts`,
 * `path`/`paths`, `tag`/`tags`); empty entries are ignored, so `''` means "no grouping".
 */
export function parseGroupBy(s: string): GroupByField[] {
  const out = new Set<GroupByField>();
  for (const raw of s.split(',')) {
    const option = raw.trim();
    switch (option) {
      case 'host':
      case 'hosts':
        out.add('host');
        break;
      case 'path':
      case 'paths':
        out.add('paths');
        break;
      case 'tag':
      case 'tags':
        out.add('tags');
        break;
      case '':
        break;
      default:
        throw new ForgeError('FORGE_USAGE', `unknown grouping option '${option}'`, {
          hint: "group by any of host, paths, tags, comma-separated (e.g. --group-by host,paths), or '' for none",
          details: { option },
        });
    }
  }
  return GROUP_BY_FIELDS.filter((f) => out.has(f as GroupByField)) as GroupByField[];
}

/**
 * Splits snapshots into the groups a retention policy is applied to separately (restic
 * `GroupSnapshots`). Paths and tags compare as sets (sorted). With no fields everything is one
 * group. Groups come back sorted by host, then paths, then tags, so the order is independent of the
 * input order.
 */
export function groupSnapshots(
  snapshots: readonly SnapshotRecord[],
  groupBy: readonly GroupByField[] = DEFAULT_GROUP_BY,
): SnapshotGroup[] {
  for (const field of groupBy) {
    if (!GROUP_BY_FIELDS.includes(field)) {
      throw new ForgeError('FORGE_USAGE', `unknown grouping option '${String(field)}'`, {
        hint: 'group by any of host, paths, tags',
      });
    }
  }
  const byHost = groupBy.includes('host');
  const byPaths = groupBy.includes('paths');
  const byTags = groupBy.includes('tags');
  const groups = new Map<string, SnapshotGroup>();
  for (const sn of snapshots) {
    const hostname = byHost ? sn.hostname : undefined;
    const paths = byPaths ? [...sn.paths].sort() : undefined;
    const tags = byTags ? [...sn.tags].sort() : undefined;
    const key = JSON.stringify({ hostname: hostname ?? '', paths: paths ?? null, tags: tags ?? null });
    let g = groups.get(key);
    if (!g) {
      g = {
        key,
        ...(hostname !== undefined && { hostname }),
        ...(paths !== undefined && { paths }),
        ...(tags !== undefined && { tags }),
        snapshots: [],
      };
      groups.set(key, g);
    }
    g.snapshots.push(sn);
  }
  return [...groups.values()].sort(compareGroups);
}

function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function compareLists(a: readonly string[] = [], b: readonly string[] = []): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    const c = compareStrings(a[i]!, b[i]!);
    if (c !== 0) return c;
  }
  return a.length - b.length;
}

/** Host, then paths, then tags; lists element by element, a prefix before its extensions. */
function compareGroups(a: SnapshotGroup, b: SnapshotGroup): number {
  return (
    compareStrings(a.hostname ?? '', b.hostname ?? '') ||
    compareLists(a.paths, b.paths) ||
    compareLists(a.tags, b.tags)
  );
}

/** restic's group headline: `host h, path [/a /b], tags [x]` (empty when not grouped). */
export function describeGroup(g: SnapshotGroup): string {
  const parts: string[] = [];
  if (g.hostname) parts.push(`host ${g.hostname}`);
  if (g.paths && g.paths.length > 0) parts.push(`path [${g.paths.join(' ')}]`);
  if (g.tags && g.tags.length > 0) parts.push(`tags [${g.tags.join(' ')}]`);
  return parts.join(', ');
}
