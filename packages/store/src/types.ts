import type { SnapshotSummary } from '@backupforge/common';
import type { Kysely } from 'kysely';
import type { Dialect } from './migrations.ts';
import type { StoreSchema } from './schema.ts';

export type { Dialect } from './migrations.ts';

/** A point in time: a `Date`, milliseconds since the epoch, or an RFC 3339 / ISO 8601 string. */
export type TimeInput = Date | number | string;

// ---------------------------------------------------------------------------------------------
// Opening

/** The embedded default: one SQLite file (WAL mode). */
export interface SqliteStoreOptions {
  readonly kind?: 'sqlite';
  /** The database file; its parent directory is created. `:memory:` for a throw-away store. */
  readonly path: string;
  /** How long to wait for another connection's write lock before failing. Default 5000 ms. */
  readonly busyTimeoutMs?: number;
}

/** A PostgreSQL database (it must exist; the store creates its tables). */
export interface PostgresStoreOptions {
  readonly kind: 'postgres';
  /** `postgres://user:password@host:port/database` (any `pg` connection string). */
  readonly url: string;
  /** Pool size. Default 10. */
  readonly poolSize?: number;
  /** How long to wait for a connection. Default 10000 ms. */
  readonly connectTimeoutMs?: number;
}

export type StoreOptions = SqliteStoreOptions | PostgresStoreOptions;

// ---------------------------------------------------------------------------------------------
// Repositories and jobs

export interface RepositoryInput {
  /** The store's key for the repository (the catalog refers to it). */
  readonly id: string;
  readonly name: string;
  /** Where it lives: a path or a backend URL. */
  readonly location: string;
  /** The id in the repository's own config, when known. */
  readonly repoId?: string | null;
}

export interface RepositoryRecord {
  readonly id: string;
  readonly name: string;
  readonly location: string;
  readonly repoId: string | null;
  readonly createdAt: Date;
}

export interface JobInput {
  /** Unique; the key of the job. */
  readonly name: string;
  /** What it runs: `backup`, `check`, `prune`, `copy`, … */
  readonly kind: string;
  /** The repository it works on (id, name or location; not checked against `repositories`). */
  readonly repository: string;
  /** Anything JSON-serialisable; stored as JSON text. */
  readonly config?: Readonly<Record<string, unknown>>;
}

export interface Job {
  readonly name: string;
  readonly kind: string;
  readonly repository: string;
  readonly config: Record<string, unknown>;
  readonly createdAt: Date;
  readonly updatedAt: Date;
}

export interface ListJobsOptions {
  readonly repository?: string;
  readonly kind?: string;
}

// ---------------------------------------------------------------------------------------------
// Schedules

/** What the scheduler does about runs it missed while it was not running. */
export type MissedPolicy = 'skip' | 'run-once' | 'run-all';
export const MISSED_POLICIES: readonly MissedPolicy[] = ['skip', 'run-once', 'run-all'];

export interface ScheduleInput {
  /** A cron expression; the store keeps it as text and does not parse it. */
  readonly cron: string;
  /** IANA zone the cron expression is read in. Default `UTC`. */
  readonly timezone?: string;
  /** Default `run-once`. */
  readonly missedPolicy?: MissedPolicy;
  /** `undefined` keeps the stored value (null for a new schedule). */
  readonly nextRunAt?: TimeInput | null;
  readonly lastRunAt?: TimeInput | null;
}

export interface Schedule {
  readonly job: string;
  readonly cron: string;
  readonly timezone: string;
  readonly missedPolicy: MissedPolicy;
  readonly nextRunAt: Date | null;
  readonly lastRunAt: Date | null;
}

export interface GetSchedulesOptions {
  readonly job?: string;
  /** Only schedules whose `nextRunAt` is at or before this time. */
  readonly dueBefore?: TimeInput;
}

// ---------------------------------------------------------------------------------------------
// Runs

export type RunStatus = 'queued' | 'running' | 'success' | 'warning' | 'failed' | 'skipped' | 'aborted';
export const RUN_STATUSES: readonly RunStatus[] = [
  'queued',
  'running',
  'success',
  'warning',
  'failed',
  'skipped',
  'aborted',
];
/** The statuses a run can finish with. */
export type FinalRunStatus = Exclude<RunStatus, 'queued' | 'running'>;

export interface StartRunOptions {
  /** Default `running`. A `queued` run becomes `running` with `markRunRunning`. */
  readonly status?: 'queued' | 'running';
  /** Default now. */
  readonly startedAt?: TimeInput;
  readonly logPath?: string;
  readonly retries?: number;
}

export interface RunResult {
  readonly status: FinalRunStatus;
  /** Default now. */
  readonly finishedAt?: TimeInput;
  readonly snapshotId?: string | null;
  readonly bytesAdded?: number | null;
  readonly bytesProcessed?: number | null;
  readonly filesNew?: number | null;
  readonly filesChanged?: number | null;
  readonly filesUnchanged?: number | null;
  readonly exitCode?: number | null;
  readonly errorCode?: string | null;
  readonly errorMessage?: string | null;
  /** The tail of the log; longer text is cut to its last `LOG_EXCERPT_MAX` characters. */
  readonly logExcerpt?: string | null;
  readonly logPath?: string | null;
  readonly retries?: number;
}

export interface Run {
  readonly id: string;
  readonly job: string;
  readonly kind: string;
  readonly status: RunStatus;
  readonly startedAt: Date;
  readonly finishedAt: Date | null;
  readonly durationMs: number | null;
  readonly bytesAdded: number | null;
  readonly bytesProcessed: number | null;
  readonly filesNew: number | null;
  readonly filesChanged: number | null;
  readonly filesUnchanged: number | null;
  readonly snapshotId: string | null;
  readonly exitCode: number | null;
  readonly errorCode: string | null;
  readonly errorMessage: string | null;
  readonly logExcerpt: string | null;
  readonly logPath: string | null;
  readonly retries: number;
}

export interface ListRunsOptions {
  readonly job?: string;
  readonly status?: RunStatus | readonly RunStatus[];
  /** Default 50, at most 10000. */
  readonly limit?: number;
  /**
   * Page backwards: a run id (runs strictly older than that run) or a time (runs that started
   * before it).
   */
  readonly before?: string | Date;
}

// ---------------------------------------------------------------------------------------------
// Catalog

/** What the catalog keeps of a snapshot. A `SnapshotRecord` from the engine fits as is. */
export interface CatalogSnapshotInput {
  readonly id: string;
  readonly time: TimeInput;
  readonly tree: string;
  readonly hostname: string;
  readonly paths: readonly string[];
  readonly tags?: readonly string[];
  readonly parent?: string | null;
  readonly summary?: SnapshotSummary | Readonly<Record<string, unknown>> | null;
}

export interface CatalogSnapshot {
  readonly repository: string;
  readonly id: string;
  readonly time: Date;
  readonly hostname: string;
  readonly paths: string[];
  readonly tags: string[];
  readonly parent: string | null;
  readonly tree: string;
  readonly summary: SnapshotSummary | null;
  /** When a complete file listing was last added (`addCatalogFiles`); null if never. */
  readonly filesIndexedAt: Date | null;
}

export interface CatalogSnapshotFilter {
  readonly hostname?: string | readonly string[];
  /** The snapshot has every one of these tags. */
  readonly tags?: readonly string[];
  /** The snapshot has this path among its backed-up paths. */
  readonly path?: string;
  readonly since?: TimeInput;
  readonly until?: TimeInput;
  /** Default `asc` (oldest first, like `forge snapshots`). */
  readonly order?: 'asc' | 'desc';
  readonly limit?: number;
}

export interface ReplaceCatalogResult {
  /** Snapshots that were not in the catalog. */
  readonly added: number;
  /** Snapshots that were (their metadata is refreshed, their file listings stay). */
  readonly kept: number;
  /** Snapshots removed, with their files. */
  readonly removed: number;
}

/** One entry of a snapshot's file listing. */
export interface CatalogFileInput {
  /** Absolute path inside the snapshot, `/`-separated. */
  readonly path: string;
  /** `file`, `dir`, `symlink`, … */
  readonly type: string;
  readonly size?: number | null;
  readonly mtime?: TimeInput | null;
}

export interface AddCatalogFilesOptions {
  /**
   * The files are the snapshot's complete listing: mark the snapshot indexed when done
   * (`filesIndexedAt`). Default true; pass false when adding a listing in several calls.
   */
  readonly complete?: boolean;
  /** Rows per INSERT statement. Default 500. */
  readonly batchSize?: number;
}

export interface SearchFilesOptions {
  /** Maximum number of matches (distinct file versions). Default 100, at most 10000. */
  readonly limit?: number;
  /** Fold ASCII letters (A–Z) only; the same on both dialects. */
  readonly ignoreCase?: boolean;
  /** Only these snapshots. */
  readonly snapshotIds?: readonly string[];
  /** Only this node type (`file`, `dir`, …). */
  readonly type?: string;
}

/** One version of a file (same path, type, size and mtime) and the snapshots that hold it. */
export interface FileMatch {
  readonly path: string;
  readonly name: string;
  readonly type: string;
  readonly size: number | null;
  readonly mtime: Date | null;
  /** Newest snapshot first. */
  readonly snapshotIds: string[];
}

export interface CatalogStats {
  readonly snapshots: number;
  /** Snapshots with a complete file listing. */
  readonly indexedSnapshots: number;
  readonly files: number;
}

// ---------------------------------------------------------------------------------------------
// The store

/**
 * BackupForge's metadata store: jobs, schedules, run history and a catalog of snapshots and
 * their files. The repository is the source of truth; the catalog is a rebuildable cache.
 * Every method throws `ForgeError`.
 */
export interface Store {
  readonly kind: Dialect;
  /** The SQLite file (absolute path, or `:memory:`) or the PostgreSQL URL without its password. */
  readonly location: string;
  /** The schema version of the open database (`SCHEMA_VERSION`). */
  readonly schemaVersion: number;
  /** The kysely instance, for queries the API does not cover. Errors from it are not mapped. */
  readonly db: Kysely<StoreSchema>;

  upsertRepository(repo: RepositoryInput): Promise<RepositoryRecord>;
  getRepository(id: string): Promise<RepositoryRecord | undefined>;
  listRepositories(): Promise<RepositoryRecord[]>;
  /** Deletes the repository and its catalog. Returns false when there was none. */
  deleteRepository(id: string): Promise<boolean>;

  upsertJob(job: JobInput): Promise<Job>;
  getJob(name: string): Promise<Job | undefined>;
  listJobs(options?: ListJobsOptions): Promise<Job[]>;
  /** Deletes the job and its schedule; its run history stays. Returns false when there was none. */
  deleteJob(name: string): Promise<boolean>;

  /** Sets (or with null removes) the schedule of an existing job. */
  setSchedule(job: string, schedule: ScheduleInput | null): Promise<Schedule | undefined>;
  getSchedules(options?: GetSchedulesOptions): Promise<Schedule[]>;

  /** Records the start of a run and returns its id (ids sort by creation time). */
  startRun(job: string, kind: string, options?: StartRunOptions): Promise<string>;
  /** Moves a queued run to running and sets its start time (default now). */
  markRunRunning(id: string, startedAt?: TimeInput): Promise<Run>;
  /** Records the outcome of a queued or running run; computes `durationMs`. */
  finishRun(id: string, result: RunResult): Promise<Run>;
  getRun(id: string): Promise<Run | undefined>;
  /** Newest first. */
  listRuns(options?: ListRunsOptions): Promise<Run[]>;
  /** The newest run of a job (optionally of the given statuses). */
  lastRun(job: string, status?: RunStatus | readonly RunStatus[]): Promise<Run | undefined>;

  /**
   * Makes the catalog of `repository` hold exactly these snapshots, in one transaction: adds the
   * new ones, updates the known ones (keeping their file listings), removes the rest with their
   * files. Running it twice with the same list changes nothing.
   */
  replaceSnapshotCatalog(
    repository: string,
    snapshots: readonly CatalogSnapshotInput[],
  ): Promise<ReplaceCatalogResult>;
  /** Adds or updates one snapshot (its file listing stays). */
  addSnapshotToCatalog(repository: string, snapshot: CatalogSnapshotInput): Promise<void>;
  /** Removes snapshots and their files; returns how many were in the catalog. */
  removeSnapshotsFromCatalog(repository: string, snapshotIds: readonly string[]): Promise<number>;
  listCatalogSnapshots(repository: string, filter?: CatalogSnapshotFilter): Promise<CatalogSnapshot[]>;
  getCatalogSnapshot(repository: string, snapshotId: string): Promise<CatalogSnapshot | undefined>;
  /**
   * Adds a snapshot's file listing (the snapshot must be in the catalog). Batched inserts;
   * paths already listed for that snapshot are left alone. Returns the number of rows given.
   */
  addCatalogFiles(
    repository: string,
    snapshotId: string,
    files: Iterable<CatalogFileInput> | AsyncIterable<CatalogFileInput>,
    options?: AddCatalogFilesOptions,
  ): Promise<number>;
  /**
   * Finds files across the catalogued snapshots of a repository. A pattern without `*` or `?` is
   * a substring of the path. With wildcards it is a glob (`*` any run of characters, `/`
   * included; `?` one character): matched against the whole path when it starts with `/`,
   * against the trailing path components when it holds a `/` elsewhere, else against the name.
   */
  searchFiles(
    repository: string,
    pattern: string,
    options?: SearchFilesOptions | number,
  ): Promise<FileMatch[]>;
  catalogStats(repository: string): Promise<CatalogStats>;
  /** Removes every snapshot and file of the repository from the catalog (the repository row stays). */
  clearCatalog(repository: string): Promise<void>;

  /** Closes the database (the pool, for PostgreSQL). Idempotent. */
  close(): Promise<void>;
}
