import { ForgeError } from '@backupforge/common';
import { type Expression, type Kysely, sql } from 'kysely';
import { type Migration, type MigrationProvider, Migrator } from 'kysely/migration';

export type Dialect = 'sqlite' | 'postgres';

/** Kysely's migration bookkeeping tables (renamed so they sort with ours and say whose they are). */
export const MIGRATION_TABLE = 'forge_migrations';
export const MIGRATION_LOCK_TABLE = 'forge_migrations_lock';
/** One row (id 1): the schema version the migrations brought the database to. */
export const SCHEMA_TABLE = 'forge_schema';

// biome-ignore lint/suspicious/noExplicitAny: migrations work on an untyped database by design
type AnyDb = Kysely<any>;

/**
 * Column type for paths and names: byte order on both dialects (SQLite's BINARY is the default;
 * PostgreSQL needs `collate "C"`). Sorting then agrees across dialects and prefix searches
 * (`LIKE 'abc%'`, `GLOB 'abc*'`) can use the index.
 */
function binaryText(dialect: Dialect): 'text' | Expression<unknown> {
  return dialect === 'postgres' ? sql`text collate "C"` : 'text';
}

async function setSchemaVersion(db: AnyDb, version: number): Promise<void> {
  await db.deleteFrom(SCHEMA_TABLE).execute();
  await db.insertInto(SCHEMA_TABLE).values({ id: 1, version, updated_at: Date.now() }).execute();
}

function m0001Initial(dialect: Dialect): Migration {
  const bin = binaryText(dialect);
  return {
    async up(db: AnyDb) {
      await db.schema
        .createTable(SCHEMA_TABLE)
        .addColumn('id', 'integer', (c) => c.primaryKey())
        .addColumn('version', 'integer', (c) => c.notNull())
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .execute();

      await db.schema
        .createTable('repositories')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('location', 'text', (c) => c.notNull())
        .addColumn('repo_id', 'text')
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('repositories_location').on('repositories').column('location').execute();

      await db.schema
        .createTable('jobs')
        .addColumn('name', 'text', (c) => c.primaryKey())
        .addColumn('kind', 'text', (c) => c.notNull())
        .addColumn('repository', 'text', (c) => c.notNull())
        .addColumn('config', 'text', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .execute();

      await db.schema
        .createTable('schedules')
        .addColumn('job', 'text', (c) => c.primaryKey().references('jobs.name').onDelete('cascade'))
        .addColumn('cron', 'text', (c) => c.notNull())
        .addColumn('timezone', 'text', (c) => c.notNull())
        .addColumn('missed_policy', 'text', (c) => c.notNull())
        .addColumn('next_run_at', 'bigint')
        .addColumn('last_run_at', 'bigint')
        .execute();
      await db.schema.createIndex('schedules_next_run_at').on('schedules').column('next_run_at').execute();

      // No foreign key to jobs: the history of a job outlives the job, and ad-hoc commands
      // (`forge backup` without a job) are recorded under a free-form job name.
      await db.schema
        .createTable('runs')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('job', 'text', (c) => c.notNull())
        .addColumn('kind', 'text', (c) => c.notNull())
        .addColumn('status', 'text', (c) => c.notNull())
        .addColumn('started_at', 'bigint', (c) => c.notNull())
        .addColumn('finished_at', 'bigint')
        .addColumn('duration_ms', 'bigint')
        .addColumn('bytes_added', 'bigint')
        .addColumn('bytes_processed', 'bigint')
        .addColumn('files_new', 'bigint')
        .addColumn('files_changed', 'bigint')
        .addColumn('files_unchanged', 'bigint')
        .addColumn('snapshot_id', 'text')
        .addColumn('exit_code', 'integer')
        .addColumn('error_code', 'text')
        .addColumn('error_message', 'text')
        .addColumn('log_excerpt', 'text')
        .addColumn('log_path', 'text')
        .addColumn('retries', 'integer', (c) => c.notNull().defaultTo(0))
        .execute();
      await db.schema
        .createIndex('runs_job_started')
        .on('runs')
        .columns(['job', 'started_at', 'id'])
        .execute();
      await db.schema.createIndex('runs_started').on('runs').columns(['started_at', 'id']).execute();
      await db.schema.createIndex('runs_status').on('runs').column('status').execute();

      await db.schema
        .createTable('catalog_snapshots')
        .addColumn('repository', 'text', (c) => c.notNull().references('repositories.id').onDelete('cascade'))
        .addColumn('snapshot_id', 'text', (c) => c.notNull())
        .addColumn('time', 'bigint', (c) => c.notNull())
        .addColumn('hostname', 'text', (c) => c.notNull())
        .addColumn('paths', 'text', (c) => c.notNull())
        .addColumn('tags', 'text', (c) => c.notNull())
        .addColumn('parent', 'text')
        .addColumn('tree', 'text', (c) => c.notNull())
        .addColumn('summary', 'text')
        .addColumn('files_indexed_at', 'bigint')
        .addPrimaryKeyConstraint('catalog_snapshots_pk', ['repository', 'snapshot_id'])
        .execute();
      await db.schema
        .createIndex('catalog_snapshots_time')
        .on('catalog_snapshots')
        .columns(['repository', 'time'])
        .execute();

      await db.schema
        .createTable('catalog_files')
        .addColumn('repository', 'text', (c) => c.notNull())
        .addColumn('snapshot_id', 'text', (c) => c.notNull())
        .addColumn('path', bin, (c) => c.notNull())
        .addColumn('name', bin, (c) => c.notNull())
        .addColumn('type', 'text', (c) => c.notNull())
        .addColumn('size', 'bigint')
        .addColumn('mtime', 'bigint')
        .addPrimaryKeyConstraint('catalog_files_pk', ['repository', 'snapshot_id', 'path'])
        .addForeignKeyConstraint(
          'catalog_files_snapshot_fk',
          ['repository', 'snapshot_id'],
          'catalog_snapshots',
          ['repository', 'snapshot_id'],
          (fk) => fk.onDelete('cascade'),
        )
        .execute();
      // The primary key serves "files of a snapshot" (listing, deletion); this index serves path
      // searches across snapshots. Name searches (`*.jpg`) scan: a leading wildcard cannot use an
      // index, and every index slows down the bulk inserts of file listings.
      await db.schema
        .createIndex('catalog_files_path')
        .on('catalog_files')
        .columns(['repository', 'path'])
        .execute();

      // Placeholders for the agents; their APIs come with the agents (use `Store.db` until then).
      await db.schema
        .createTable('protect_events')
        .addColumn('camera', 'text', (c) => c.notNull())
        .addColumn('event_id', 'text', (c) => c.notNull())
        .addColumn('start_at', 'bigint', (c) => c.notNull())
        .addColumn('end_at', 'bigint')
        .addColumn('type', 'text', (c) => c.notNull())
        .addColumn('snapshot_id', 'text')
        .addPrimaryKeyConstraint('protect_events_pk', ['camera', 'event_id'])
        .execute();
      await db.schema
        .createIndex('protect_events_start')
        .on('protect_events')
        .columns(['camera', 'start_at'])
        .execute();

      await db.schema
        .createTable('btrfs_sent')
        .addColumn('subvolume', 'text', (c) => c.notNull())
        .addColumn('snapshot_uuid', 'text', (c) => c.notNull())
        .addColumn('parent_uuid', 'text')
        .addColumn('snapshot_id', 'text')
        .addColumn('sent_at', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('btrfs_sent_pk', ['subvolume', 'snapshot_uuid'])
        .execute();

      await db.schema
        .createTable('camera_bookings')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('camera', 'text', (c) => c.notNull())
        .addColumn('start_at', 'bigint', (c) => c.notNull())
        .addColumn('end_at', 'bigint', (c) => c.notNull())
        .addColumn('label', 'text', (c) => c.notNull())
        .execute();
      await db.schema
        .createIndex('camera_bookings_start')
        .on('camera_bookings')
        .columns(['camera', 'start_at'])
        .execute();

      await setSchemaVersion(db, 1);
    },
  };
}

/**
 * Every migration, in order. Names sort in the order they run; the schema version is the position
 * of the last one applied (1-based). Append only: never edit or reorder a released migration.
 */
const MIGRATION_FACTORIES: ReadonlyArray<readonly [string, (dialect: Dialect) => Migration]> = [
  ['0001_initial', m0001Initial],
];

/** The schema version this build writes and understands. */
export const SCHEMA_VERSION = MIGRATION_FACTORIES.length;

export const MIGRATION_NAMES: readonly string[] = MIGRATION_FACTORIES.map(([name]) => name);

export function migrationsFor(dialect: Dialect): Record<string, Migration> {
  return Object.fromEntries(MIGRATION_FACTORIES.map(([name, make]) => [name, make(dialect)]));
}

class InCodeMigrationProvider implements MigrationProvider {
  readonly #dialect: Dialect;
  constructor(dialect: Dialect) {
    this.#dialect = dialect;
  }
  async getMigrations(): Promise<Record<string, Migration>> {
    return migrationsFor(this.#dialect);
  }
}

export function newerSchemaError(found: number): ForgeError {
  return new ForgeError(
    'FORGE_REPO_VERSION',
    `database was written by a newer BackupForge (schema ${found} > ${SCHEMA_VERSION}); upgrade forge or use another database`,
    { details: { schemaVersion: found, supportedSchemaVersion: SCHEMA_VERSION } },
  );
}

async function existingTables(db: AnyDb, dialect: Dialect): Promise<Set<string>> {
  const names = [SCHEMA_TABLE, MIGRATION_TABLE];
  const rows =
    dialect === 'sqlite'
      ? await sql<{
          name: string;
        }>`select name from sqlite_master where type = 'table' and name in (${sql.join(names)})`.execute(db)
      : await sql<{
          name: string;
        }>`select table_name as name from information_schema.tables where table_schema = current_schema() and table_name in (${sql.join(names)})`.execute(
          db,
        );
  return new Set(rows.rows.map((r) => r.name));
}

/**
 * Reads the schema version (0 for an empty database) and refuses a database that a newer build
 * migrated: a version above ours, or an applied migration this build does not know.
 */
export async function checkSchemaVersion(db: AnyDb, dialect: Dialect): Promise<number> {
  const tables = await existingTables(db, dialect);
  let version = 0;
  if (tables.has(SCHEMA_TABLE)) {
    const row = await db
      .selectFrom(SCHEMA_TABLE)
      .select((eb) => eb.fn.max<number | null>('version').as('v'))
      .executeTakeFirst();
    version = Number(row?.v ?? 0);
  }
  if (tables.has(MIGRATION_TABLE)) {
    const applied: { name: string }[] = await db.selectFrom(MIGRATION_TABLE).select('name').execute();
    const unknown = applied.filter((r) => !MIGRATION_NAMES.includes(r.name));
    if (unknown.length > 0) version = Math.max(version, SCHEMA_VERSION + unknown.length, applied.length);
  }
  if (version > SCHEMA_VERSION) throw newerSchemaError(version);
  return version;
}

export interface MigrationOutcome {
  /** Schema version before and after. */
  readonly from: number;
  readonly to: number;
  /** Names of the migrations this call applied (empty when the schema was current). */
  readonly applied: readonly string[];
}

/**
 * Brings the database to `SCHEMA_VERSION`. On SQLite the caller holds a write transaction
 * (`BEGIN IMMEDIATE`) on the only connection around this call; on PostgreSQL kysely's migrator
 * takes an advisory lock and runs the migrations in one transaction.
 */
export async function migrateToLatest(db: AnyDb, dialect: Dialect): Promise<MigrationOutcome> {
  const from = await checkSchemaVersion(db, dialect);
  if (from === SCHEMA_VERSION) return { from, to: from, applied: [] };
  const migrator = new Migrator({
    db,
    provider: new InCodeMigrationProvider(dialect),
    migrationTableName: MIGRATION_TABLE,
    migrationLockTableName: MIGRATION_LOCK_TABLE,
  });
  const { error, results } = await migrator.migrateToLatest();
  if (error !== undefined) {
    if (error instanceof ForgeError) throw error;
    const msg = error instanceof Error ? error.message : String(error);
    if (/previously executed migration .* is missing/.test(msg)) {
      // Another, newer process migrated between our check and the migrator's.
      throw newerSchemaError(await checkSchemaVersion(db, dialect).catch(() => SCHEMA_VERSION + 1));
    }
    const failed = results?.find((r) => r.status === 'Error')?.migrationName;
    throw Object.assign(new Error(failed ? `migration ${failed} failed: ${msg}` : msg), { cause: error });
  }
  const applied = (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
  const to = await checkSchemaVersion(db, dialect);
  return { from, to, applied };
}
