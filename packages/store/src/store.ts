import type { SnapshotSummary } from '@backupforge/common';
import { ForgeError, InternalError } from '@backupforge/common';
import { CompiledQuery, type Insertable, type Kysely, type Selectable, sql } from 'kysely';
import { type ErrorContext, mapDbError } from './errors.ts';
import type { Dialect } from './migrations.ts';
import type {
  CatalogFilesTable,
  CatalogSnapshotsTable,
  JobsTable,
  RepositoriesTable,
  RunsTable,
  SchedulesTable,
  StoreSchema,
} from './schema.ts';
import { planSearch, searchCondition } from './search.ts';
import {
  type AddCatalogFilesOptions,
  type CatalogFileInput,
  type CatalogSnapshot,
  type CatalogSnapshotFilter,
  type CatalogSnapshotInput,
  type CatalogStats,
  type FileMatch,
  type FinalRunStatus,
  type GetSchedulesOptions,
  type Job,
  type JobInput,
  type ListJobsOptions,
  type ListRunsOptions,
  MISSED_POLICIES,
  type MissedPolicy,
  type ReplaceCatalogResult,
  type RepositoryInput,
  type RepositoryRecord,
  RUN_STATUSES,
  type Run,
  type RunResult,
  type RunStatus,
  type Schedule,
  type ScheduleInput,
  type SearchFilesOptions,
  type StartRunOptions,
  type Store,
  type TimeInput,
} from './types.ts';
import {
  chunks,
  clampLimit,
  dateOrNull,
  newRunId,
  numOrNull,
  parseJson,
  requireText,
  toMs,
  toMsOrNull,
  withProcessLock,
} from './util.ts';

type Db = Kysely<StoreSchema>;

/** Longest `logExcerpt` kept, in characters (the tail is kept). */
export const LOG_EXCERPT_MAX = 65_536;

const FINAL_STATUSES: readonly FinalRunStatus[] = ['success', 'warning', 'failed', 'skipped', 'aborted'];
/** Rows gathered from the caller's iterable before they are written in one transaction. */
const FILES_PER_TRANSACTION = 10_000;
/** Columns of a `catalog_files` row, in the order `fileRow` builds them. */
const FILE_COLUMNS = 7;
/** Ids per `IN (...)` list. */
const IN_CHUNK = 500;

function toRepository(r: Selectable<RepositoriesTable>): RepositoryRecord {
  return {
    id: r.id,
    name: r.name,
    location: r.location,
    repoId: r.repo_id,
    createdAt: new Date(Number(r.created_at)),
  };
}

function toJob(r: Selectable<JobsTable>): Job {
  return {
    name: r.name,
    kind: r.kind,
    repository: r.repository,
    config: parseJson<Record<string, unknown>>(r.config, {}),
    createdAt: new Date(Number(r.created_at)),
    updatedAt: new Date(Number(r.updated_at)),
  };
}

function toSchedule(r: Selectable<SchedulesTable>): Schedule {
  return {
    job: r.job,
    cron: r.cron,
    timezone: r.timezone,
    missedPolicy: r.missed_policy as MissedPolicy,
    nextRunAt: dateOrNull(r.next_run_at),
    lastRunAt: dateOrNull(r.last_run_at),
  };
}

function toRun(r: Selectable<RunsTable>): Run {
  return {
    id: r.id,
    job: r.job,
    kind: r.kind,
    status: r.status as RunStatus,
    startedAt: new Date(Number(r.started_at)),
    finishedAt: dateOrNull(r.finished_at),
    durationMs: numOrNull(r.duration_ms),
    bytesAdded: numOrNull(r.bytes_added),
    bytesProcessed: numOrNull(r.bytes_processed),
    filesNew: numOrNull(r.files_new),
    filesChanged: numOrNull(r.files_changed),
    filesUnchanged: numOrNull(r.files_unchanged),
    snapshotId: r.snapshot_id,
    exitCode: numOrNull(r.exit_code),
    errorCode: r.error_code,
    errorMessage: r.error_message,
    logExcerpt: r.log_excerpt,
    logPath: r.log_path,
    retries: Number(r.retries),
  };
}

function toCatalogSnapshot(r: Selectable<CatalogSnapshotsTable>): CatalogSnapshot {
  return {
    repository: r.repository,
    id: r.snapshot_id,
    time: new Date(Number(r.time)),
    hostname: r.hostname,
    paths: parseJson<string[]>(r.paths, []),
    tags: parseJson<string[]>(r.tags, []),
    parent: r.parent,
    tree: r.tree,
    summary: parseJson<SnapshotSummary | null>(r.summary, null),
    filesIndexedAt: dateOrNull(r.files_indexed_at),
  };
}

function snapshotRow(repository: string, s: CatalogSnapshotInput): Insertable<CatalogSnapshotsTable> {
  requireText(s?.id, 'snapshot id');
  requireText(s.tree, `tree of snapshot ${s.id}`);
  if (!Array.isArray(s.paths)) {
    throw new ForgeError('FORGE_USAGE', `paths of snapshot ${s.id} must be an array`);
  }
  return {
    repository,
    snapshot_id: s.id,
    time: toMs(s.time, `time of snapshot ${s.id}`),
    hostname: typeof s.hostname === 'string' ? s.hostname : '',
    paths: JSON.stringify([...s.paths]),
    tags: JSON.stringify([...(s.tags ?? [])]),
    parent: s.parent ?? null,
    tree: s.tree,
    summary: s.summary === undefined || s.summary === null ? null : JSON.stringify(s.summary),
  };
}

function baseName(path: string): string {
  const trimmed = path.length > 1 && path.endsWith('/') ? path.slice(0, -1) : path;
  const i = trimmed.lastIndexOf('/');
  return i < 0 ? trimmed : trimmed.slice(i + 1);
}

function fileRow(repository: string, snapshotId: string, f: CatalogFileInput): CatalogFilesTable {
  if (!f || typeof f.path !== 'string' || f.path.length === 0) {
    throw new ForgeError('FORGE_USAGE', `catalog file of snapshot ${snapshotId} has no path`);
  }
  const size = f.size === undefined || f.size === null ? null : Number(f.size);
  return {
    repository,
    snapshot_id: snapshotId,
    path: f.path,
    name: baseName(f.path),
    type: typeof f.type === 'string' && f.type !== '' ? f.type : 'file',
    size: size !== null && Number.isFinite(size) ? size : null,
    mtime: toMsOrNull(f.mtime, `mtime of ${f.path}`),
  };
}

function statusList(status: RunStatus | readonly RunStatus[] | undefined): RunStatus[] | undefined {
  if (status === undefined) return undefined;
  const list = typeof status === 'string' ? [status] : [...status];
  for (const s of list) {
    if (!RUN_STATUSES.includes(s)) throw new ForgeError('FORGE_USAGE', `unknown run status ${String(s)}`);
  }
  return list;
}

function optInt(v: number | null | undefined, what: string): number | null | undefined {
  if (v === undefined || v === null) return v;
  if (typeof v !== 'number' || !Number.isFinite(v)) {
    throw new ForgeError('FORGE_USAGE', `${what} must be a finite number, got ${String(v)}`);
  }
  return Math.trunc(v);
}

export class KyselyStore implements Store {
  readonly kind: Dialect;
  readonly location: string;
  readonly schemaVersion: number;
  readonly db: Db;
  readonly #ctx: ErrorContext;
  #closed: Promise<void> | undefined;

  constructor(db: Db, ctx: ErrorContext, schemaVersion: number) {
    this.db = db;
    this.kind = ctx.dialect;
    this.location = ctx.target;
    this.schemaVersion = schemaVersion;
    this.#ctx = ctx;
  }

  /** Runs `fn`, turning every error into a ForgeError. */
  async #op<T>(what: string, fn: () => Promise<T>): Promise<T> {
    if (this.#closed) throw new ForgeError('FORGE_USAGE', `${what}: the store is closed`);
    try {
      // Stores on the same SQLite file in one process take turns (see withProcessLock).
      if (this.kind === 'sqlite' && this.#ctx.target !== ':memory:') {
        return await withProcessLock(this.#ctx.target, fn);
      }
      return await fn();
    } catch (e) {
      throw mapDbError(e, this.#ctx, what);
    }
  }

  /**
   * A write transaction. SQLite: `BEGIN IMMEDIATE` on the one connection, so the write lock is
   * taken (waiting up to the busy timeout) before anything is read. PostgreSQL: a kysely
   * transaction on a pooled connection.
   */
  async #tx<T>(fn: (db: Db) => Promise<T>): Promise<T> {
    if (this.kind === 'postgres') return this.db.transaction().execute(fn);
    return this.db.connection().execute(async (conn) => {
      await sql`begin immediate`.execute(conn);
      try {
        const result = await fn(conn);
        await sql`commit`.execute(conn);
        return result;
      } catch (e) {
        await sql`rollback`.execute(conn).catch(() => undefined);
        throw e;
      }
    });
  }

  // -------------------------------------------------------------------------------------------
  // Repositories

  upsertRepository(repo: RepositoryInput): Promise<RepositoryRecord> {
    return this.#op('saving repository', async () => {
      const id = requireText(repo?.id, 'repository id');
      const name = requireText(repo.name, 'repository name');
      const location = requireText(repo.location, 'repository location');
      const row = await this.db
        .insertInto('repositories')
        .values({ id, name, location, repo_id: repo.repoId ?? null, created_at: Date.now() })
        .onConflict((oc) =>
          oc.column('id').doUpdateSet({
            name,
            location,
            ...(repo.repoId !== undefined ? { repo_id: repo.repoId } : {}),
          }),
        )
        .returningAll()
        .executeTakeFirstOrThrow();
      return toRepository(row);
    });
  }

  getRepository(id: string): Promise<RepositoryRecord | undefined> {
    return this.#op('reading repository', async () => {
      const row = await this.db
        .selectFrom('repositories')
        .selectAll()
        .where('id', '=', id)
        .executeTakeFirst();
      return row ? toRepository(row) : undefined;
    });
  }

  listRepositories(): Promise<RepositoryRecord[]> {
    return this.#op('listing repositories', async () => {
      const rows = await this.db.selectFrom('repositories').selectAll().orderBy('id').execute();
      return rows.map(toRepository);
    });
  }

  deleteRepository(id: string): Promise<boolean> {
    return this.#op('deleting repository', () =>
      this.#tx(async (db) => {
        await db.deleteFrom('catalog_files').where('repository', '=', id).execute();
        await db.deleteFrom('catalog_snapshots').where('repository', '=', id).execute();
        const r = await db.deleteFrom('repositories').where('id', '=', id).executeTakeFirst();
        return Number(r.numDeletedRows) > 0;
      }),
    );
  }

  async #requireRepository(db: Db, id: string): Promise<void> {
    requireText(id, 'repository');
    const row = await db.selectFrom('repositories').select('id').where('id', '=', id).executeTakeFirst();
    if (!row) {
      throw new ForgeError('FORGE_NOT_FOUND', `repository ${id} is not registered in the store`, {
        hint: 'register it with upsertRepository first',
      });
    }
  }

  // -------------------------------------------------------------------------------------------
  // Jobs

  upsertJob(job: JobInput): Promise<Job> {
    return this.#op('saving job', async () => {
      const name = requireText(job?.name, 'job name');
      const kind = requireText(job.kind, `kind of job ${name}`);
      const repository = requireText(job.repository, `repository of job ${name}`);
      let config: string;
      try {
        config = JSON.stringify(job.config ?? {});
      } catch (e) {
        throw new ForgeError('FORGE_USAGE', `config of job ${name} is not JSON-serialisable`, { cause: e });
      }
      const now = Date.now();
      const row = await this.db
        .insertInto('jobs')
        .values({ name, kind, repository, config, created_at: now, updated_at: now })
        .onConflict((oc) => oc.column('name').doUpdateSet({ kind, repository, config, updated_at: now }))
        .returningAll()
        .executeTakeFirstOrThrow();
      return toJob(row);
    });
  }

  getJob(name: string): Promise<Job | undefined> {
    return this.#op('reading job', async () => {
      const row = await this.db.selectFrom('jobs').selectAll().where('name', '=', name).executeTakeFirst();
      return row ? toJob(row) : undefined;
    });
  }

  listJobs(options: ListJobsOptions = {}): Promise<Job[]> {
    return this.#op('listing jobs', async () => {
      let q = this.db.selectFrom('jobs').selectAll();
      if (options.repository !== undefined) q = q.where('repository', '=', options.repository);
      if (options.kind !== undefined) q = q.where('kind', '=', options.kind);
      const rows = await q.orderBy('name').execute();
      return rows.map(toJob);
    });
  }

  deleteJob(name: string): Promise<boolean> {
    return this.#op('deleting job', () =>
      this.#tx(async (db) => {
        await db.deleteFrom('schedules').where('job', '=', name).execute();
        const r = await db.deleteFrom('jobs').where('name', '=', name).executeTakeFirst();
        return Number(r.numDeletedRows) > 0;
      }),
    );
  }

  // -------------------------------------------------------------------------------------------
  // Schedules

  setSchedule(job: string, schedule: ScheduleInput | null): Promise<Schedule | undefined> {
    return this.#op('saving schedule', () =>
      this.#tx(async (db) => {
        requireText(job, 'job');
        if (schedule === null) {
          await db.deleteFrom('schedules').where('job', '=', job).execute();
          return undefined;
        }
        const cron = requireText(schedule?.cron, `cron of job ${job}`).trim();
        const timezone = schedule.timezone ?? 'UTC';
        requireText(timezone, `timezone of job ${job}`);
        const missedPolicy = schedule.missedPolicy ?? 'run-once';
        if (!MISSED_POLICIES.includes(missedPolicy)) {
          throw new ForgeError('FORGE_USAGE', `unknown missed-run policy ${String(missedPolicy)}`, {
            hint: `use one of ${MISSED_POLICIES.join(', ')}`,
          });
        }
        const exists = await db.selectFrom('jobs').select('name').where('name', '=', job).executeTakeFirst();
        if (!exists) {
          throw new ForgeError('FORGE_NOT_FOUND', `job ${job} does not exist`, {
            hint: 'create the job before scheduling it',
          });
        }
        const next =
          schedule.nextRunAt === undefined ? undefined : toMsOrNull(schedule.nextRunAt, 'nextRunAt');
        const last =
          schedule.lastRunAt === undefined ? undefined : toMsOrNull(schedule.lastRunAt, 'lastRunAt');
        const row = await db
          .insertInto('schedules')
          .values({
            job,
            cron,
            timezone,
            missed_policy: missedPolicy,
            next_run_at: next ?? null,
            last_run_at: last ?? null,
          })
          .onConflict((oc) =>
            oc.column('job').doUpdateSet({
              cron,
              timezone,
              missed_policy: missedPolicy,
              ...(next !== undefined ? { next_run_at: next } : {}),
              ...(last !== undefined ? { last_run_at: last } : {}),
            }),
          )
          .returningAll()
          .executeTakeFirstOrThrow();
        return toSchedule(row);
      }),
    );
  }

  getSchedules(options: GetSchedulesOptions = {}): Promise<Schedule[]> {
    return this.#op('listing schedules', async () => {
      let q = this.db.selectFrom('schedules').selectAll();
      if (options.job !== undefined) q = q.where('job', '=', options.job);
      if (options.dueBefore !== undefined) {
        q = q
          .where('next_run_at', 'is not', null)
          .where('next_run_at', '<=', toMs(options.dueBefore, 'dueBefore'));
      }
      const rows = await q.orderBy('job').execute();
      return rows.map(toSchedule);
    });
  }

  // -------------------------------------------------------------------------------------------
  // Runs

  startRun(job: string, kind: string, options: StartRunOptions = {}): Promise<string> {
    return this.#op('recording run start', async () => {
      requireText(job, 'job');
      requireText(kind, 'run kind');
      const status = options.status ?? 'running';
      if (status !== 'running' && status !== 'queued') {
        throw new ForgeError('FORGE_USAGE', `a run starts as queued or running, not ${String(status)}`);
      }
      const startedAt = options.startedAt === undefined ? Date.now() : toMs(options.startedAt, 'startedAt');
      const id = newRunId();
      await this.db
        .insertInto('runs')
        .values({
          id,
          job,
          kind,
          status,
          started_at: startedAt,
          log_path: options.logPath ?? null,
          retries: optInt(options.retries, 'retries') ?? 0,
        })
        .execute();
      return id;
    });
  }

  async #runOrThrow(db: Db, id: string): Promise<Selectable<RunsTable>> {
    const row = await db.selectFrom('runs').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row) throw new ForgeError('FORGE_NOT_FOUND', `run ${id} does not exist`);
    return row;
  }

  markRunRunning(id: string, startedAt?: TimeInput): Promise<Run> {
    return this.#op('recording run start', async () => {
      const at = startedAt === undefined ? Date.now() : toMs(startedAt, 'startedAt');
      const row = await this.db
        .updateTable('runs')
        .set({ status: 'running', started_at: at })
        .where('id', '=', id)
        .where('status', '=', 'queued')
        .returningAll()
        .executeTakeFirst();
      if (row) return toRun(row);
      const existing = await this.#runOrThrow(this.db, id);
      throw new ForgeError('FORGE_USAGE', `run ${id} is not queued (status ${existing.status})`);
    });
  }

  finishRun(id: string, result: RunResult): Promise<Run> {
    return this.#op('recording run result', async () => {
      if (!result || !FINAL_STATUSES.includes(result.status)) {
        throw new ForgeError(
          'FORGE_USAGE',
          `a run finishes as ${FINAL_STATUSES.join('/')}, not ${String(result?.status)}`,
        );
      }
      const finishedAt = result.finishedAt === undefined ? Date.now() : toMs(result.finishedAt, 'finishedAt');
      let excerpt = result.logExcerpt;
      if (typeof excerpt === 'string' && excerpt.length > LOG_EXCERPT_MAX)
        excerpt = excerpt.slice(-LOG_EXCERPT_MAX);
      const row = await this.db
        .updateTable('runs')
        .set({
          status: result.status,
          finished_at: finishedAt,
          duration_ms: sql<number>`case when ${finishedAt} > started_at then ${finishedAt} - started_at else 0 end`,
          bytes_added: optInt(result.bytesAdded, 'bytesAdded') ?? null,
          bytes_processed: optInt(result.bytesProcessed, 'bytesProcessed') ?? null,
          files_new: optInt(result.filesNew, 'filesNew') ?? null,
          files_changed: optInt(result.filesChanged, 'filesChanged') ?? null,
          files_unchanged: optInt(result.filesUnchanged, 'filesUnchanged') ?? null,
          snapshot_id: result.snapshotId ?? null,
          exit_code: optInt(result.exitCode, 'exitCode') ?? null,
          error_code: result.errorCode ?? null,
          error_message: result.errorMessage ?? null,
          log_excerpt: excerpt ?? null,
          ...(result.logPath !== undefined ? { log_path: result.logPath } : {}),
          ...(result.retries !== undefined ? { retries: optInt(result.retries, 'retries') ?? 0 } : {}),
        })
        .where('id', '=', id)
        .where('status', 'in', ['queued', 'running'])
        .returningAll()
        .executeTakeFirst();
      if (row) return toRun(row);
      const existing = await this.#runOrThrow(this.db, id);
      throw new ForgeError('FORGE_USAGE', `run ${id} has already finished (status ${existing.status})`);
    });
  }

  getRun(id: string): Promise<Run | undefined> {
    return this.#op('reading run', async () => {
      const row = await this.db.selectFrom('runs').selectAll().where('id', '=', id).executeTakeFirst();
      return row ? toRun(row) : undefined;
    });
  }

  listRuns(options: ListRunsOptions = {}): Promise<Run[]> {
    return this.#op('listing runs', async () => {
      const limit = clampLimit(options.limit, 50, 10_000);
      let q = this.db.selectFrom('runs').selectAll();
      if (options.job !== undefined) q = q.where('job', '=', options.job);
      const statuses = statusList(options.status);
      if (statuses) q = q.where('status', 'in', statuses);
      const before = options.before;
      if (before instanceof Date) {
        q = q.where('started_at', '<', toMs(before, 'before'));
      } else if (typeof before === 'string') {
        const ref = await this.db
          .selectFrom('runs')
          .select(['started_at', 'id'])
          .where('id', '=', before)
          .executeTakeFirst();
        if (!ref) throw new ForgeError('FORGE_NOT_FOUND', `run ${before} does not exist`);
        const at = Number(ref.started_at);
        q = q.where((eb) =>
          eb.or([eb('started_at', '<', at), eb.and([eb('started_at', '=', at), eb('id', '<', ref.id)])]),
        );
      }
      const rows = await q.orderBy('started_at', 'desc').orderBy('id', 'desc').limit(limit).execute();
      return rows.map(toRun);
    });
  }

  async lastRun(job: string, status?: RunStatus | readonly RunStatus[]): Promise<Run | undefined> {
    const runs = await this.listRuns({ job, limit: 1, ...(status !== undefined ? { status } : {}) });
    return runs[0];
  }

  // -------------------------------------------------------------------------------------------
  // Catalog

  async #upsertSnapshots(db: Db, rows: Insertable<CatalogSnapshotsTable>[]): Promise<void> {
    for (const batch of chunks(rows, 200)) {
      await db
        .insertInto('catalog_snapshots')
        .values(batch)
        .onConflict((oc) =>
          oc.columns(['repository', 'snapshot_id']).doUpdateSet((eb) => ({
            time: eb.ref('excluded.time'),
            hostname: eb.ref('excluded.hostname'),
            paths: eb.ref('excluded.paths'),
            tags: eb.ref('excluded.tags'),
            parent: eb.ref('excluded.parent'),
            tree: eb.ref('excluded.tree'),
            summary: eb.ref('excluded.summary'),
          })),
        )
        .execute();
    }
  }

  async #deleteSnapshots(db: Db, repository: string, ids: readonly string[]): Promise<number> {
    let removed = 0;
    for (const batch of chunks(ids, IN_CHUNK)) {
      await db
        .deleteFrom('catalog_files')
        .where('repository', '=', repository)
        .where('snapshot_id', 'in', batch)
        .execute();
      const r = await db
        .deleteFrom('catalog_snapshots')
        .where('repository', '=', repository)
        .where('snapshot_id', 'in', batch)
        .executeTakeFirst();
      removed += Number(r.numDeletedRows);
    }
    return removed;
  }

  replaceSnapshotCatalog(
    repository: string,
    snapshots: readonly CatalogSnapshotInput[],
  ): Promise<ReplaceCatalogResult> {
    return this.#op('replacing the snapshot catalog', async () => {
      if (!Array.isArray(snapshots)) throw new ForgeError('FORGE_USAGE', 'snapshots must be an array');
      const byId = new Map<string, Insertable<CatalogSnapshotsTable>>();
      for (const s of snapshots) byId.set(s?.id, snapshotRow(repository, s));
      return this.#tx(async (db) => {
        await this.#requireRepository(db, repository);
        const existing = await db
          .selectFrom('catalog_snapshots')
          .select('snapshot_id')
          .where('repository', '=', repository)
          .execute();
        const known = new Set(existing.map((r) => r.snapshot_id));
        const gone = [...known].filter((id) => !byId.has(id));
        const removed = await this.#deleteSnapshots(db, repository, gone);
        await this.#upsertSnapshots(db, [...byId.values()]);
        let kept = 0;
        for (const id of byId.keys()) if (known.has(id)) kept++;
        return { added: byId.size - kept, kept, removed };
      });
    });
  }

  addSnapshotToCatalog(repository: string, snapshot: CatalogSnapshotInput): Promise<void> {
    return this.#op('adding a snapshot to the catalog', async () => {
      const row = snapshotRow(repository, snapshot);
      await this.#tx(async (db) => {
        await this.#requireRepository(db, repository);
        await this.#upsertSnapshots(db, [row]);
      });
    });
  }

  removeSnapshotsFromCatalog(repository: string, snapshotIds: readonly string[]): Promise<number> {
    return this.#op('removing snapshots from the catalog', async () => {
      if (snapshotIds.length === 0) return 0;
      return this.#tx((db) => this.#deleteSnapshots(db, repository, [...new Set(snapshotIds)]));
    });
  }

  listCatalogSnapshots(repository: string, filter: CatalogSnapshotFilter = {}): Promise<CatalogSnapshot[]> {
    return this.#op('listing catalog snapshots', async () => {
      const limit =
        filter.limit === undefined ? undefined : clampLimit(filter.limit, 0, Number.MAX_SAFE_INTEGER);
      const order = filter.order ?? 'asc';
      let q = this.db.selectFrom('catalog_snapshots').selectAll().where('repository', '=', repository);
      if (filter.hostname !== undefined) {
        const hosts = typeof filter.hostname === 'string' ? [filter.hostname] : [...filter.hostname];
        if (hosts.length === 0) return [];
        q = q.where('hostname', 'in', hosts);
      }
      if (filter.since !== undefined) q = q.where('time', '>=', toMs(filter.since, 'since'));
      if (filter.until !== undefined) q = q.where('time', '<=', toMs(filter.until, 'until'));
      q = q.orderBy('time', order).orderBy('snapshot_id', order);
      const filterInJs = (filter.tags !== undefined && filter.tags.length > 0) || filter.path !== undefined;
      if (limit !== undefined && !filterInJs) q = q.limit(limit);
      let result = (await q.execute()).map(toCatalogSnapshot);
      if (filterInJs) {
        const tags = filter.tags ?? [];
        result = result.filter(
          (s) =>
            tags.every((t) => s.tags.includes(t)) &&
            (filter.path === undefined || s.paths.includes(filter.path)),
        );
        if (limit !== undefined) result = result.slice(0, limit);
      }
      return result;
    });
  }

  getCatalogSnapshot(repository: string, snapshotId: string): Promise<CatalogSnapshot | undefined> {
    return this.#op('reading a catalog snapshot', async () => {
      const row = await this.db
        .selectFrom('catalog_snapshots')
        .selectAll()
        .where('repository', '=', repository)
        .where('snapshot_id', '=', snapshotId)
        .executeTakeFirst();
      return row ? toCatalogSnapshot(row) : undefined;
    });
  }

  addCatalogFiles(
    repository: string,
    snapshotId: string,
    files: Iterable<CatalogFileInput> | AsyncIterable<CatalogFileInput>,
    options: AddCatalogFilesOptions = {},
  ): Promise<number> {
    return this.#op('adding files to the catalog', async () => {
      const batchSize = clampLimit(options.batchSize, 500, 4000);
      const snap = await this.db
        .selectFrom('catalog_snapshots')
        .select('snapshot_id')
        .where('repository', '=', repository)
        .where('snapshot_id', '=', snapshotId)
        .executeTakeFirst();
      if (!snap) {
        throw new ForgeError(
          'FORGE_SNAPSHOT_NOT_FOUND',
          `snapshot ${snapshotId} is not in the catalog of repository ${repository}`,
          { hint: 'add it with addSnapshotToCatalog (or replaceSnapshotCatalog) first' },
        );
      }
      let total = 0;
      const compiled = new Map<number, string>();
      let pending: CatalogFilesTable[] = [];
      const flush = async () => {
        if (pending.length === 0) return;
        const rows = pending;
        pending = [];
        await this.#tx(async (db) => {
          for (const batch of chunks(rows, batchSize)) {
            // Building and compiling a multi-row INSERT costs more than running it; the SQL text
            // depends only on the row count, so it is compiled once per count and reused.
            let text = compiled.get(batch.length);
            if (text === undefined) {
              const q = db
                .insertInto('catalog_files')
                .values(batch)
                .onConflict((oc) => oc.doNothing())
                .compile();
              if (q.parameters.length !== batch.length * FILE_COLUMNS) {
                throw new InternalError(`catalog insert has ${q.parameters.length} parameters`);
              }
              text = q.sql;
              compiled.set(batch.length, text);
            }
            const params: unknown[] = [];
            for (const r of batch)
              params.push(r.repository, r.snapshot_id, r.path, r.name, r.type, r.size, r.mtime);
            await db.executeQuery(CompiledQuery.raw(text, params));
          }
        });
      };
      // Rows are gathered outside the transaction: the iterable may be slow (a repository walk)
      // and must not hold the write lock while it produces them.
      for await (const f of files as AsyncIterable<CatalogFileInput>) {
        pending.push(fileRow(repository, snapshotId, f));
        total++;
        if (pending.length >= FILES_PER_TRANSACTION) await flush();
      }
      await flush();
      if (options.complete ?? true) {
        await this.db
          .updateTable('catalog_snapshots')
          .set({ files_indexed_at: Date.now() })
          .where('repository', '=', repository)
          .where('snapshot_id', '=', snapshotId)
          .execute();
      }
      return total;
    });
  }

  searchFiles(
    repository: string,
    pattern: string,
    options: SearchFilesOptions | number = {},
  ): Promise<FileMatch[]> {
    return this.#op('searching the catalog', async () => {
      const opts: SearchFilesOptions = typeof options === 'number' ? { limit: options } : options;
      const limit = clampLimit(opts.limit, 100, 10_000);
      const plan = planSearch(pattern, opts.ignoreCase ?? false);
      const snapshotIds = opts.snapshotIds ? [...new Set(opts.snapshotIds)] : undefined;
      if (snapshotIds && snapshotIds.length === 0) return [];

      let groupsQ = this.db
        .selectFrom('catalog_files')
        .select(['path', 'name', 'type', 'size', 'mtime'])
        .where('repository', '=', repository)
        .where(searchCondition(this.kind, plan));
      if (opts.type !== undefined) groupsQ = groupsQ.where('type', '=', opts.type);
      if (snapshotIds) groupsQ = groupsQ.where('snapshot_id', 'in', snapshotIds);
      const groups = await groupsQ
        .groupBy(['path', 'name', 'type', 'size', 'mtime'])
        .orderBy('path')
        .orderBy('type')
        .orderBy(sql`coalesce(size, -1)`)
        .orderBy(sql`coalesce(mtime, -1)`)
        .limit(limit)
        .execute();
      if (groups.length === 0) return [];

      const key = (r: { path: string; type: string; size: number | null; mtime: number | null }) =>
        `${r.path}\u0000${r.type}\u0000${numOrNull(r.size)}\u0000${numOrNull(r.mtime)}`;
      const holders = new Map<string, { id: string; time: number }[]>();
      for (const g of groups) holders.set(key(g), []);
      const paths = [...new Set(groups.map((g) => g.path))];
      for (const batch of chunks(paths, IN_CHUNK)) {
        let q = this.db
          .selectFrom('catalog_files as f')
          .innerJoin('catalog_snapshots as s', (j) =>
            j.onRef('s.repository', '=', 'f.repository').onRef('s.snapshot_id', '=', 'f.snapshot_id'),
          )
          .select(['f.path', 'f.type', 'f.size', 'f.mtime', 'f.snapshot_id', 's.time'])
          .where('f.repository', '=', repository)
          .where('f.path', 'in', batch);
        if (opts.type !== undefined) q = q.where('f.type', '=', opts.type);
        if (snapshotIds) q = q.where('f.snapshot_id', 'in', snapshotIds);
        for (const r of await q.execute()) {
          holders.get(key(r))?.push({ id: r.snapshot_id, time: Number(r.time) });
        }
      }
      return groups.map((g) => {
        const snaps = holders.get(key(g)) ?? [];
        snaps.sort((a, b) => b.time - a.time || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0));
        return {
          path: g.path,
          name: g.name,
          type: g.type,
          size: numOrNull(g.size),
          mtime: dateOrNull(g.mtime),
          snapshotIds: snaps.map((s) => s.id),
        };
      });
    });
  }

  catalogStats(repository: string): Promise<CatalogStats> {
    return this.#op('reading catalog statistics', async () => {
      const snaps = await this.db
        .selectFrom('catalog_snapshots')
        .select((eb) => [
          eb.fn.countAll<number>().as('n'),
          eb.fn.count<number>('files_indexed_at').as('indexed'),
        ])
        .where('repository', '=', repository)
        .executeTakeFirstOrThrow();
      const files = await this.db
        .selectFrom('catalog_files')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .where('repository', '=', repository)
        .executeTakeFirstOrThrow();
      return { snapshots: Number(snaps.n), indexedSnapshots: Number(snaps.indexed), files: Number(files.n) };
    });
  }

  clearCatalog(repository: string): Promise<void> {
    return this.#op('clearing the catalog', () =>
      this.#tx(async (db) => {
        await db.deleteFrom('catalog_files').where('repository', '=', repository).execute();
        await db.deleteFrom('catalog_snapshots').where('repository', '=', repository).execute();
      }),
    );
  }

  close(): Promise<void> {
    this.#closed ??= this.db.destroy().catch((e) => {
      throw mapDbError(e, this.#ctx, 'closing the store');
    });
    return this.#closed;
  }
}
