export { catalogFileFromTreeNode } from './catalog-helpers.ts';
export { redactUrl } from './errors.ts';
export type { Dialect, MigrationOutcome } from './migrations.ts';
export { SCHEMA_VERSION } from './migrations.ts';
export type { StoreUrlOptions } from './open.ts';
export { DEFAULT_BUSY_TIMEOUT_MS, openStore, openStoreFromUrl, parseStoreUrl } from './open.ts';
export type {
  BtrfsSentTable,
  CameraBookingsTable,
  CatalogFilesTable,
  CatalogSnapshotsTable,
  JobsTable,
  ProtectEventsTable,
  RepositoriesTable,
  RunsTable,
  SchedulesTable,
  SchemaTable,
  StoreSchema,
} from './schema.ts';
export { LOG_EXCERPT_MAX } from './store.ts';
export type {
  AddCatalogFilesOptions,
  CatalogFileInput,
  CatalogSnapshot,
  CatalogSnapshotFilter,
  CatalogSnapshotInput,
  CatalogStats,
  FileMatch,
  FinalRunStatus,
  GetSchedulesOptions,
  Job,
  JobInput,
  ListJobsOptions,
  ListRunsOptions,
  MissedPolicy,
  PostgresStoreOptions,
  ReplaceCatalogResult,
  RepositoryInput,
  RepositoryRecord,
  Run,
  RunResult,
  RunStatus,
  Schedule,
  ScheduleInput,
  SearchFilesOptions,
  SqliteStoreOptions,
  StartRunOptions,
  Store,
  StoreOptions,
  TimeInput,
} from './types.ts';
export { MISSED_POLICIES, RUN_STATUSES } from './types.ts';
