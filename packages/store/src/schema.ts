/**
 * The row types of the store's tables, as kysely sees them (`Store.db` is a `Kysely<StoreSchema>`).
 *
 * Portable column conventions, the same on SQLite and PostgreSQL:
 * - ids and names are `text`;
 * - every timestamp is `bigint` milliseconds since the Unix epoch (UTC), in columns named `*_at`
 *   (plus `time`, `mtime`, `start_at`, `end_at`);
 * - counters are `bigint` (sizes, bytes) or `integer` (small counts, codes);
 * - JSON is `text` holding `JSON.stringify` output.
 *
 * PostgreSQL returns `bigint` as `number` here: the store's pool parses int8 with `Number()`.
 */

export interface SchemaTable {
  id: number;
  version: number;
  updated_at: number;
}

export interface RepositoriesTable {
  id: string;
  name: string;
  location: string;
  /** The id in the repository's own config (hex), when known. */
  repo_id: string | null;
  created_at: number;
}

export interface JobsTable {
  name: string;
  kind: string;
  repository: string;
  /** JSON text. */
  config: string;
  created_at: number;
  updated_at: number;
}

export interface SchedulesTable {
  job: string;
  cron: string;
  timezone: string;
  missed_policy: string;
  next_run_at: number | null;
  last_run_at: number | null;
}

export interface RunsTable {
  id: string;
  job: string;
  kind: string;
  status: string;
  started_at: number;
  finished_at: number | null;
  duration_ms: number | null;
  bytes_added: number | null;
  bytes_processed: number | null;
  files_new: number | null;
  files_changed: number | null;
  files_unchanged: number | null;
  snapshot_id: string | null;
  exit_code: number | null;
  error_code: string | null;
  error_message: string | null;
  log_excerpt: string | null;
  log_path: string | null;
  retries: number;
}

export interface CatalogSnapshotsTable {
  repository: string;
  snapshot_id: string;
  time: number;
  hostname: string;
  /** JSON text: string[]. */
  paths: string;
  /** JSON text: string[]. */
  tags: string;
  parent: string | null;
  tree: string;
  /** JSON text or null. */
  summary: string | null;
  /** When `addCatalogFiles` last completed a file listing of this snapshot; null when it never did. */
  files_indexed_at: number | null;
}

export interface CatalogFilesTable {
  repository: string;
  snapshot_id: string;
  path: string;
  /** Last path component (for name searches). */
  name: string;
  type: string;
  size: number | null;
  mtime: number | null;
}

/** Placeholder for the UniFi Protect agent. */
export interface ProtectEventsTable {
  camera: string;
  event_id: string;
  start_at: number;
  end_at: number | null;
  type: string;
  snapshot_id: string | null;
}

/** Placeholder for the btrfs agent. */
export interface BtrfsSentTable {
  subvolume: string;
  snapshot_uuid: string;
  parent_uuid: string | null;
  snapshot_id: string | null;
  sent_at: number;
}

/** Placeholder for the camera agent. */
export interface CameraBookingsTable {
  id: string;
  camera: string;
  start_at: number;
  end_at: number;
  label: string;
}

export interface StoreSchema {
  forge_schema: SchemaTable;
  repositories: RepositoriesTable;
  jobs: JobsTable;
  schedules: SchedulesTable;
  runs: RunsTable;
  catalog_snapshots: CatalogSnapshotsTable;
  catalog_files: CatalogFilesTable;
  protect_events: ProtectEventsTable;
  btrfs_sent: BtrfsSentTable;
  camera_bookings: CameraBookingsTable;
}
