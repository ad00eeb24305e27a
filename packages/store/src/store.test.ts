import { ForgeError } from '@backupforge/common';
import { sql } from 'kysely';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  type CatalogFileInput,
  type CatalogSnapshotInput,
  openStore,
  openStoreFromUrl,
  SCHEMA_VERSION,
  type Store,
} from './index.ts';
import { allTargets } from './test-targets.ts';

const TABLES = [
  'forge_schema',
  'repositories',
  'jobs',
  'schedules',
  'runs',
  'catalog_snapshots',
  'catalog_files',
  'protect_events',
  'btrfs_sent',
  'camera_bookings',
] as const;

function hex(n: number, len = 64): string {
  return n.toString(16).padStart(len, '0');
}

function snap(n: number, over: Partial<CatalogSnapshotInput> = {}): CatalogSnapshotInput {
  return {
    id: hex(n),
    time: `2024-05-0${n}T10:00:00.123456789Z`,
    tree: hex(1000 + n),
    hostname: n % 2 ? 'alpha' : 'beta',
    paths: ['/home'],
    tags: n === 2 ? ['daily', 'keep'] : ['daily'],
    parent: n > 1 ? hex(n - 1) : null,
    summary: null,
    ...over,
  };
}

async function expectForgeError(p: Promise<unknown>, code: string): Promise<ForgeError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e, `expected a ForgeError ${code}`).toBeInstanceOf(ForgeError);
  expect((e as ForgeError).code).toBe(code);
  return e as ForgeError;
}

describe.each(allTargets())('store on $name', (target) => {
  describe.skipIf(target.skip)(`${target.name}`, () => {
    const open: Store[] = [];
    async function openTracked(): Promise<Store> {
      const s = await openStore(target.options());
      open.push(s);
      return s;
    }

    beforeAll(() => target.setup());
    afterAll(() => target.teardown());
    beforeEach(() => target.reset());
    afterEach(async () => {
      for (const s of open.splice(0)) await s.close();
    });

    describe('migrations', () => {
      it('creates the whole schema in an empty database', async () => {
        const store = await openTracked();
        expect(store.kind).toBe(target.name);
        expect(store.schemaVersion).toBe(SCHEMA_VERSION);
        for (const table of TABLES) {
          const row = await store.db
            .selectFrom(table)
            .select((eb) => eb.fn.countAll<number>().as('n'))
            .executeTakeFirstOrThrow();
          expect(Number(row.n), table).toBe(table === 'forge_schema' ? 1 : 0);
        }
        const version = await store.db.selectFrom('forge_schema').select('version').executeTakeFirstOrThrow();
        expect(version.version).toBe(SCHEMA_VERSION);
        const applied = await sql<{ name: string }>`select name from forge_migrations order by name`.execute(
          store.db,
        );
        expect(applied.rows.map((r) => r.name)).toEqual(['0001_initial']);
      });

      it('re-opening a current database changes nothing', async () => {
        const first = await openTracked();
        await first.upsertJob({ name: 'home', kind: 'backup', repository: 'r1' });
        const before = await first.db.selectFrom('forge_schema').selectAll().executeTakeFirstOrThrow();
        await first.close();

        const second = await openTracked();
        expect(second.schemaVersion).toBe(SCHEMA_VERSION);
        const after = await second.db.selectFrom('forge_schema').selectAll().executeTakeFirstOrThrow();
        expect(after).toEqual(before);
        const applied = await sql<{ name: string }>`select name from forge_migrations`.execute(second.db);
        expect(applied.rows).toHaveLength(1);
        expect((await second.getJob('home'))?.kind).toBe('backup');
      });

      it('two stores opening the same empty database at once both succeed', async () => {
        const [a, b] = await Promise.all([openTracked(), openTracked()]);
        expect(a.schemaVersion).toBe(SCHEMA_VERSION);
        expect(b.schemaVersion).toBe(SCHEMA_VERSION);
        await a.upsertJob({ name: 'j', kind: 'backup', repository: 'r' });
        expect((await b.getJob('j'))?.name).toBe('j');
      });

      it('refuses a database whose schema version is newer than this build', async () => {
        const store = await openTracked();
        await store.db
          .updateTable('forge_schema')
          .set({ version: SCHEMA_VERSION + 1 })
          .execute();
        await store.close();
        const err = await expectForgeError(openStore(target.options()), 'FORGE_REPO_VERSION');
        expect(err.message).toBe(
          `database was written by a newer BackupForge (schema ${SCHEMA_VERSION + 1} > ${SCHEMA_VERSION}); upgrade forge or use another database`,
        );
        expect(err.message).not.toContain('\n');
      });

      it('refuses a database that has a migration this build does not know', async () => {
        const store = await openTracked();
        await sql`insert into forge_migrations (name, timestamp) values ('9999_from_the_future', ${new Date().toISOString()})`.execute(
          store.db,
        );
        await store.close();
        const err = await expectForgeError(openStore(target.options()), 'FORGE_REPO_VERSION');
        expect(err.message).toMatch(/^database was written by a newer BackupForge \(schema \d+ > 1\);/);
        // Nothing was changed: the future migration is still recorded.
        const again = await expectForgeError(openStore(target.options()), 'FORGE_REPO_VERSION');
        expect(again.message).toBe(err.message);
      });

      it('deleting the database loses the history, and the next open recreates the schema', async () => {
        const store = await openTracked();
        await store.upsertJob({ name: 'home', kind: 'backup', repository: 'r1' });
        const id = await store.startRun('home', 'backup');
        await store.finishRun(id, { status: 'success' });
        await store.close();

        await target.wipe();

        const fresh = await openTracked();
        expect(fresh.schemaVersion).toBe(SCHEMA_VERSION);
        expect(await fresh.listJobs()).toEqual([]);
        expect(await fresh.listRuns()).toEqual([]);
        await fresh.upsertJob({ name: 'home', kind: 'backup', repository: 'r1' });
        expect(await fresh.listJobs()).toHaveLength(1);
      });
    });

    describe('repositories and jobs', () => {
      it('upserts and reads repositories', async () => {
        const store = await openTracked();
        const r = await store.upsertRepository({ id: 'nas', name: 'NAS', location: '/mnt/nas/repo' });
        expect(r).toMatchObject({ id: 'nas', name: 'NAS', location: '/mnt/nas/repo', repoId: null });
        expect(r.createdAt).toBeInstanceOf(Date);
        const r2 = await store.upsertRepository({
          id: 'nas',
          name: 'NAS 2',
          location: 's3:bucket',
          repoId: 'ab12',
        });
        expect(r2).toMatchObject({ name: 'NAS 2', location: 's3:bucket', repoId: 'ab12' });
        expect(r2.createdAt.getTime()).toBe(r.createdAt.getTime());
        expect(await store.getRepository('nas')).toEqual(r2);
        expect(await store.getRepository('nope')).toBeUndefined();
        await store.upsertRepository({ id: 'cloud', name: 'Cloud', location: 'b2:x' });
        expect((await store.listRepositories()).map((x) => x.id)).toEqual(['cloud', 'nas']);
        expect(await store.deleteRepository('cloud')).toBe(true);
        expect(await store.deleteRepository('cloud')).toBe(false);
        await expectForgeError(store.upsertRepository({ id: '', name: 'x', location: 'y' }), 'FORGE_USAGE');
      });

      it('creates, lists, updates and deletes jobs', async () => {
        const store = await openTracked();
        expect(await store.listJobs()).toEqual([]);
        const a = await store.upsertJob({
          name: 'photos',
          kind: 'backup',
          repository: 'nas',
          config: { paths: ['/photos'], exclude: ['*.tmp'], nested: { n: 1 } },
        });
        expect(a).toMatchObject({ name: 'photos', kind: 'backup', repository: 'nas' });
        expect(a.config).toEqual({ paths: ['/photos'], exclude: ['*.tmp'], nested: { n: 1 } });
        await store.upsertJob({ name: 'check-nas', kind: 'check', repository: 'nas' });
        await store.upsertJob({ name: 'mail', kind: 'backup', repository: 'cloud' });

        expect((await store.listJobs()).map((j) => j.name)).toEqual(['check-nas', 'mail', 'photos']);
        expect((await store.listJobs({ repository: 'nas' })).map((j) => j.name)).toEqual([
          'check-nas',
          'photos',
        ]);
        expect((await store.listJobs({ kind: 'backup' })).map((j) => j.name)).toEqual(['mail', 'photos']);
        expect((await store.getJob('check-nas'))?.config).toEqual({});

        await new Promise((r) => setTimeout(r, 5));
        const updated = await store.upsertJob({
          name: 'photos',
          kind: 'backup',
          repository: 'cloud',
          config: { v: 2 },
        });
        expect(updated.config).toEqual({ v: 2 });
        expect(updated.repository).toBe('cloud');
        expect(updated.createdAt.getTime()).toBe(a.createdAt.getTime());
        expect(updated.updatedAt.getTime()).toBeGreaterThan(a.updatedAt.getTime());
        expect(await store.listJobs()).toHaveLength(3);

        expect(await store.deleteJob('photos')).toBe(true);
        expect(await store.deleteJob('photos')).toBe(false);
        expect(await store.getJob('photos')).toBeUndefined();
        await expectForgeError(store.upsertJob({ name: 'x', kind: '', repository: 'r' }), 'FORGE_USAGE');
      });

      it('keeps one schedule per job and drops it with the job', async () => {
        const store = await openTracked();
        await store.upsertJob({ name: 'a', kind: 'backup', repository: 'r' });
        await store.upsertJob({ name: 'b', kind: 'backup', repository: 'r' });
        await expectForgeError(store.setSchedule('ghost', { cron: '0 3 * * *' }), 'FORGE_NOT_FOUND');
        await expectForgeError(
          store.setSchedule('a', { cron: '0 3 * * *', missedPolicy: 'sometimes' as never }),
          'FORGE_USAGE',
        );

        const s = await store.setSchedule('a', {
          cron: '0 3 * * *',
          timezone: 'Europe/Berlin',
          nextRunAt: '2024-06-01T01:00:00Z',
        });
        expect(s).toEqual({
          job: 'a',
          cron: '0 3 * * *',
          timezone: 'Europe/Berlin',
          missedPolicy: 'run-once',
          nextRunAt: new Date('2024-06-01T01:00:00Z'),
          lastRunAt: null,
        });
        await store.setSchedule('b', {
          cron: '*/5 * * * *',
          missedPolicy: 'skip',
          nextRunAt: Date.UTC(2024, 5, 2),
        });
        // Updating keeps times not given.
        const s2 = await store.setSchedule('a', {
          cron: '0 4 * * *',
          lastRunAt: new Date('2024-05-31T01:00:00Z'),
        });
        expect(s2?.nextRunAt).toEqual(new Date('2024-06-01T01:00:00Z'));
        expect(s2?.lastRunAt).toEqual(new Date('2024-05-31T01:00:00Z'));
        expect(s2?.timezone).toBe('UTC');

        expect((await store.getSchedules()).map((x) => x.job)).toEqual(['a', 'b']);
        expect((await store.getSchedules({ dueBefore: '2024-06-01T12:00:00Z' })).map((x) => x.job)).toEqual([
          'a',
        ]);
        expect((await store.getSchedules({ job: 'b' }))[0]?.missedPolicy).toBe('skip');

        await store.deleteJob('a');
        expect((await store.getSchedules()).map((x) => x.job)).toEqual(['b']);
        expect(await store.setSchedule('b', null)).toBeUndefined();
        expect(await store.getSchedules()).toEqual([]);
      });
    });

    describe('runs', () => {
      it('records a run from start to finish', async () => {
        const store = await openTracked();
        const t0 = Date.now();
        const id = await store.startRun('photos', 'backup', { logPath: '/var/log/forge/1.log' });
        const started = await store.getRun(id);
        expect(started).toMatchObject({
          id,
          job: 'photos',
          kind: 'backup',
          status: 'running',
          finishedAt: null,
          durationMs: null,
          logPath: '/var/log/forge/1.log',
          retries: 0,
        });
        expect(started?.startedAt.getTime()).toBeGreaterThanOrEqual(t0 - 1);

        const finishedAt = new Date(started!.startedAt.getTime() + 1234);
        const done = await store.finishRun(id, {
          status: 'warning',
          finishedAt,
          snapshotId: hex(7),
          bytesAdded: 5_000_000_000,
          bytesProcessed: 9_007_199_254_740,
          filesNew: 3,
          filesChanged: 2,
          filesUnchanged: 100_000,
          exitCode: 3,
          errorCode: 'FORGE_PERMISSION',
          errorMessage: 'some files could not be read',
          logExcerpt: 'x'.repeat(70_000),
          retries: 1,
        });
        expect(done).toMatchObject({
          status: 'warning',
          durationMs: 1234,
          snapshotId: hex(7),
          bytesAdded: 5_000_000_000,
          bytesProcessed: 9_007_199_254_740,
          filesNew: 3,
          filesChanged: 2,
          filesUnchanged: 100_000,
          exitCode: 3,
          errorCode: 'FORGE_PERMISSION',
          errorMessage: 'some files could not be read',
          logPath: '/var/log/forge/1.log',
          retries: 1,
        });
        expect(done.finishedAt).toEqual(finishedAt);
        expect(done.logExcerpt).toHaveLength(65_536);
        expect(await store.getRun(id)).toEqual(done);

        await expectForgeError(store.finishRun(id, { status: 'success' }), 'FORGE_USAGE');
        await expectForgeError(store.finishRun('nope', { status: 'success' }), 'FORGE_NOT_FOUND');
        await expectForgeError(store.finishRun(id, { status: 'running' as never }), 'FORGE_USAGE');
      });

      it('moves a queued run to running', async () => {
        const store = await openTracked();
        const id = await store.startRun('j', 'prune', { status: 'queued', startedAt: 1000 });
        expect((await store.getRun(id))?.status).toBe('queued');
        const running = await store.markRunRunning(id, 5000);
        expect(running.status).toBe('running');
        expect(running.startedAt.getTime()).toBe(5000);
        await expectForgeError(store.markRunRunning(id), 'FORGE_USAGE');
        const done = await store.finishRun(id, { status: 'failed', finishedAt: 4000 });
        expect(done.durationMs).toBe(0);
      });

      it('lists history newest first, by job and status, page by page', async () => {
        const store = await openTracked();
        const base = Date.UTC(2024, 0, 1);
        const ids: string[] = [];
        // Two runs share a start time: the id breaks the tie, later one first.
        const starts = [0, 10, 20, 20, 30, 40];
        for (const [i, off] of starts.entries()) {
          const id = await store.startRun(i % 2 ? 'b' : 'a', 'backup', { startedAt: base + off * 60_000 });
          ids.push(id);
          if (i < 5)
            await store.finishRun(id, {
              status: i === 3 ? 'failed' : 'success',
              finishedAt: base + off * 60_000 + 1,
            });
        }
        const all = await store.listRuns();
        expect(all.map((r) => r.id)).toEqual([ids[5], ids[4], ids[3], ids[2], ids[1], ids[0]]);
        expect((await store.listRuns({ job: 'a' })).map((r) => r.id)).toEqual([ids[4], ids[2], ids[0]]);
        expect((await store.listRuns({ status: 'failed' })).map((r) => r.id)).toEqual([ids[3]]);
        expect((await store.listRuns({ status: ['running', 'failed'] })).map((r) => r.id)).toEqual([
          ids[5],
          ids[3],
        ]);

        const page1 = await store.listRuns({ limit: 2 });
        const page2 = await store.listRuns({ limit: 2, before: page1[1]!.id });
        const page3 = await store.listRuns({ limit: 2, before: page2[1]!.id });
        expect([...page1, ...page2, ...page3].map((r) => r.id)).toEqual(all.map((r) => r.id));
        expect(await store.listRuns({ before: page3[1]!.id })).toEqual([]);
        expect((await store.listRuns({ before: new Date(base + 20 * 60_000) })).map((r) => r.id)).toEqual([
          ids[1],
          ids[0],
        ]);

        expect((await store.lastRun('a'))?.id).toBe(ids[4]);
        expect((await store.lastRun('b'))?.id).toBe(ids[5]);
        expect((await store.lastRun('b', 'success'))?.id).toBe(ids[1]);
        expect(await store.lastRun('nobody')).toBeUndefined();
        await expectForgeError(store.listRuns({ before: 'no-such-run' }), 'FORGE_NOT_FOUND');
        await expectForgeError(store.listRuns({ limit: 0 }), 'FORGE_USAGE');
      });
    });

    describe('catalog', () => {
      async function withRepo(): Promise<Store> {
        const store = await openTracked();
        await store.upsertRepository({ id: 'nas', name: 'NAS', location: '/srv/repo' });
        return store;
      }

      it('replaces the snapshot list idempotently', async () => {
        const store = await withRepo();
        await expectForgeError(store.replaceSnapshotCatalog('unknown', [snap(1)]), 'FORGE_NOT_FOUND');

        expect(await store.replaceSnapshotCatalog('nas', [snap(1), snap(2), snap(3)])).toEqual({
          added: 3,
          kept: 0,
          removed: 0,
        });
        await store.addCatalogFiles('nas', hex(1), [{ path: '/home/a.txt', type: 'file', size: 1 }]);
        const before = await store.listCatalogSnapshots('nas');
        expect(before.map((s) => s.id)).toEqual([hex(1), hex(2), hex(3)]);
        expect(before[0]).toMatchObject({
          repository: 'nas',
          time: new Date('2024-05-01T10:00:00.123Z'),
          hostname: 'alpha',
          paths: ['/home'],
          tags: ['daily'],
          parent: null,
          tree: hex(1001),
          summary: null,
        });
        expect(before[0]?.filesIndexedAt).toBeInstanceOf(Date);
        expect(before[1]?.filesIndexedAt).toBeNull();

        // Same list again (in another order, with a duplicate): nothing changes.
        expect(await store.replaceSnapshotCatalog('nas', [snap(3), snap(1), snap(2), snap(1)])).toEqual({
          added: 0,
          kept: 3,
          removed: 0,
        });
        expect(await store.listCatalogSnapshots('nas')).toEqual(before);
        expect(await store.catalogStats('nas')).toEqual({ snapshots: 3, indexedSnapshots: 1, files: 1 });

        // Snapshot 1 was forgotten, 4 is new.
        expect(await store.replaceSnapshotCatalog('nas', [snap(2), snap(3), snap(4)])).toEqual({
          added: 1,
          kept: 2,
          removed: 1,
        });
        expect((await store.listCatalogSnapshots('nas')).map((s) => s.id)).toEqual([hex(2), hex(3), hex(4)]);
        expect(await store.catalogStats('nas')).toEqual({ snapshots: 3, indexedSnapshots: 0, files: 0 });

        expect(await store.replaceSnapshotCatalog('nas', [])).toEqual({ added: 0, kept: 0, removed: 3 });
        expect(await store.listCatalogSnapshots('nas')).toEqual([]);
      });

      it('adds, filters and removes single snapshots', async () => {
        const store = await withRepo();
        const summary = {
          backupStart: '2024-05-02T10:00:00Z',
          backupEnd: '2024-05-02T10:05:00Z',
          filesNew: 1,
          filesChanged: 0,
          filesUnmodified: 5,
          dirsNew: 0,
          dirsChanged: 0,
          dirsUnmodified: 1,
          dataBlobs: 1,
          treeBlobs: 1,
          dataAdded: 100,
          dataAddedPacked: 80,
          totalFilesProcessed: 6,
          totalBytesProcessed: 600,
          warnings: 0,
        };
        for (const n of [1, 2, 3, 4])
          await store.addSnapshotToCatalog('nas', snap(n, n === 2 ? { summary } : {}));
        await store.addSnapshotToCatalog('nas', snap(3, { hostname: 'gamma', paths: ['/etc'] }));
        await expectForgeError(store.addSnapshotToCatalog('nope', snap(1)), 'FORGE_NOT_FOUND');
        await expectForgeError(
          store.addSnapshotToCatalog('nas', snap(1, { time: 'yesterday' })),
          'FORGE_USAGE',
        );

        expect((await store.getCatalogSnapshot('nas', hex(2)))?.summary).toEqual(summary);
        expect(await store.getCatalogSnapshot('nas', hex(9))).toBeUndefined();
        const ids = async (f: Parameters<Store['listCatalogSnapshots']>[1]) =>
          (await store.listCatalogSnapshots('nas', f)).map((s) => s.id);
        expect(await ids({ hostname: 'alpha' })).toEqual([hex(1)]);
        expect(await ids({ hostname: ['beta', 'gamma'] })).toEqual([hex(2), hex(3), hex(4)]);
        expect(await ids({ tags: ['keep'] })).toEqual([hex(2)]);
        expect(await ids({ tags: ['daily', 'keep'] })).toEqual([hex(2)]);
        expect(await ids({ path: '/etc' })).toEqual([hex(3)]);
        expect(await ids({ since: '2024-05-02T00:00:00Z', until: new Date('2024-05-03T23:00:00Z') })).toEqual(
          [hex(2), hex(3)],
        );
        expect(await ids({ order: 'desc', limit: 2 })).toEqual([hex(4), hex(3)]);
        expect(await ids({ tags: ['daily'], limit: 1, order: 'desc' })).toEqual([hex(4)]);

        expect(await store.removeSnapshotsFromCatalog('nas', [hex(1), hex(3), hex(9)])).toBe(2);
        expect(await ids({})).toEqual([hex(2), hex(4)]);
        await store.clearCatalog('nas');
        expect(await ids({})).toEqual([]);
        expect(await store.getRepository('nas')).toBeDefined();
      });

      it('finds files across snapshots', async () => {
        const store = await withRepo();
        await store.upsertRepository({ id: 'other', name: 'Other', location: '/srv/other' });
        await store.replaceSnapshotCatalog('nas', [snap(1), snap(2), snap(3)]);
        await store.replaceSnapshotCatalog('other', [snap(1)]);
        const m = Date.UTC(2024, 3, 1);
        const common: CatalogFileInput[] = [
          { path: '/home', type: 'dir', mtime: m },
          { path: '/home/ann', type: 'dir', mtime: m },
          { path: '/home/ann/docs', type: 'dir', mtime: m },
          { path: '/home/ann/docs/Report.TXT', type: 'file', size: 10, mtime: m },
          { path: '/home/ann/photos', type: 'dir', mtime: m },
          { path: '/home/ann/photos/cat.jpg', type: 'file', size: 2000, mtime: m },
          { path: '/home/ann/odd%name_[1].txt', type: 'file', size: 5, mtime: m },
          { path: '/home/ann/odd-nameX1.txt', type: 'file', size: 5, mtime: m },
          { path: '/home/ann/link', type: 'symlink', mtime: null },
        ];
        await store.addCatalogFiles('nas', hex(1), [
          ...common,
          { path: '/home/ann/docs/notes.txt', type: 'file', size: 1, mtime: m },
        ]);
        // Snapshot 2: notes.txt changed, a new photo.
        await store.addCatalogFiles('nas', hex(2), [
          ...common,
          { path: '/home/ann/docs/notes.txt', type: 'file', size: 2, mtime: m + 1000 },
          { path: '/home/ann/photos/dog.JPG', type: 'file', size: 3000, mtime: m },
        ]);
        // Snapshot 3 is not indexed. Repository "other" has its own files.
        await store.addCatalogFiles('other', hex(1), [
          { path: '/home/ann/photos/cat.jpg', type: 'file', size: 1 },
        ]);
        await expectForgeError(
          store.addCatalogFiles('nas', hex(9), [{ path: '/x', type: 'file' }]),
          'FORGE_SNAPSHOT_NOT_FOUND',
        );

        // Substring: the same version of a file in two snapshots is one match, newest snapshot first.
        const cat = await store.searchFiles('nas', 'cat.jp', 10);
        expect(cat).toEqual([
          {
            path: '/home/ann/photos/cat.jpg',
            name: 'cat.jpg',
            type: 'file',
            size: 2000,
            mtime: new Date(m),
            snapshotIds: [hex(2), hex(1)],
          },
        ]);
        // A changed file is two versions.
        const notes = await store.searchFiles('nas', 'notes');
        expect(notes.map((x) => [x.size, x.snapshotIds])).toEqual([
          [1, [hex(1)]],
          [2, [hex(2)]],
        ]);
        // Name globs are case-sensitive unless asked; they do not match directories in the path.
        expect((await store.searchFiles('nas', '*.jpg')).map((x) => x.path)).toEqual([
          '/home/ann/photos/cat.jpg',
        ]);
        expect((await store.searchFiles('nas', '*.jpg', { ignoreCase: true })).map((x) => x.path)).toEqual([
          '/home/ann/photos/cat.jpg',
          '/home/ann/photos/dog.JPG',
        ]);
        expect((await store.searchFiles('nas', 'report')).map((x) => x.path)).toEqual([]);
        expect((await store.searchFiles('nas', 'report', { ignoreCase: true })).map((x) => x.name)).toEqual([
          'Report.TXT',
        ]);
        expect((await store.searchFiles('nas', 'ann*')).map((x) => x.path)).toEqual(['/home/ann']);
        // Anchored and trailing-component globs.
        expect((await store.searchFiles('nas', '/home/*/docs/*')).map((x) => x.name)).toEqual([
          'Report.TXT',
          'notes.txt',
          'notes.txt',
        ]);
        expect((await store.searchFiles('nas', '/home/ann/??????')).map((x) => x.path)).toEqual([
          '/home/ann/photos',
        ]);
        expect((await store.searchFiles('nas', 'photos/*.???')).map((x) => x.name)).toEqual([
          'cat.jpg',
          'dog.JPG',
        ]);
        // %, _ and [ are literal characters.
        expect((await store.searchFiles('nas', 'odd%name_[1]')).map((x) => x.path)).toEqual([
          '/home/ann/odd%name_[1].txt',
        ]);
        expect((await store.searchFiles('nas', 'odd%name_[1]*')).map((x) => x.path)).toEqual([
          '/home/ann/odd%name_[1].txt',
        ]);
        expect((await store.searchFiles('nas', 'odd?name?1.txt')).map((x) => x.path)).toEqual([
          '/home/ann/odd-nameX1.txt',
        ]);
        expect((await store.searchFiles('nas', 'odd?name?1*')).map((x) => x.path)).toEqual([
          '/home/ann/odd-nameX1.txt',
        ]);
        expect((await store.searchFiles('nas', 'odd?name?[1].txt')).map((x) => x.path)).toEqual([
          '/home/ann/odd%name_[1].txt',
        ]);
        // Filters and limit.
        expect(
          (await store.searchFiles('nas', '/home/ann/*', { type: 'symlink' })).map((x) => x.path),
        ).toEqual(['/home/ann/link']);
        expect(
          (await store.searchFiles('nas', 'photos/', { snapshotIds: [hex(1)] })).map((x) => [
            x.path,
            x.snapshotIds,
          ]),
        ).toEqual([['/home/ann/photos/cat.jpg', [hex(1)]]]);
        const limited = await store.searchFiles('nas', '/home*', { limit: 3 });
        expect(limited.map((x) => x.path)).toEqual(['/home', '/home/ann', '/home/ann/docs']);
        // The other repository is separate.
        expect((await store.searchFiles('other', 'cat')).map((x) => x.size)).toEqual([1]);
        await expectForgeError(store.searchFiles('nas', ''), 'FORGE_USAGE');

        // Removing a snapshot removes its files from the results.
        await store.removeSnapshotsFromCatalog('nas', [hex(2)]);
        expect((await store.searchFiles('nas', 'cat.jpg'))[0]?.snapshotIds).toEqual([hex(1)]);
        expect(await store.searchFiles('nas', 'dog')).toEqual([]);
        await store.clearCatalog('nas');
        expect(await store.searchFiles('nas', 'home')).toEqual([]);
        expect(await store.catalogStats('other')).toEqual({ snapshots: 1, indexedSnapshots: 1, files: 1 });
      });

      it('inserts 50k catalog files in batches', async () => {
        const store = await withRepo();
        await store.replaceSnapshotCatalog('nas', [snap(1), snap(2)]);
        const N = 50_000;
        function* files(): Generator<CatalogFileInput> {
          for (let i = 0; i < N; i++) {
            const dir = `/data/d${String(i % 100).padStart(3, '0')}`;
            yield {
              path: `${dir}/file-${String(i).padStart(6, '0')}.bin`,
              type: 'file',
              size: i,
              mtime: 1_700_000_000_000 + i,
            };
          }
        }
        expect(await store.addCatalogFiles('nas', hex(1), files())).toBe(N);
        expect(await store.catalogStats('nas')).toEqual({ snapshots: 2, indexedSnapshots: 1, files: N });

        // Adding the same listing again is harmless; an async iterable works too.
        async function* again(): AsyncGenerator<CatalogFileInput> {
          for (let i = 0; i < 1000; i++)
            yield {
              path: `/data/d${String(i % 100).padStart(3, '0')}/file-${String(i).padStart(6, '0')}.bin`,
              type: 'file',
              size: i,
            };
        }
        expect(await store.addCatalogFiles('nas', hex(1), again(), { complete: false, batchSize: 333 })).toBe(
          1000,
        );
        expect((await store.catalogStats('nas')).files).toBe(N);

        const hit = await store.searchFiles('nas', 'file-012345.bin');
        expect(hit).toEqual([
          {
            path: '/data/d045/file-012345.bin',
            name: 'file-012345.bin',
            type: 'file',
            size: 12345,
            mtime: new Date(1_700_000_000_000 + 12345),
            snapshotIds: [hex(1)],
          },
        ]);
        expect(await store.searchFiles('nas', '/data/d007/*', { limit: 10_000 })).toHaveLength(500);

        expect(await store.removeSnapshotsFromCatalog('nas', [hex(1)])).toBe(1);
        expect(await store.catalogStats('nas')).toEqual({ snapshots: 1, indexedSnapshots: 0, files: 0 });
      });
    });

    it('serves concurrent calls on one store', async () => {
      const store = await openTracked();
      await store.upsertRepository({ id: 'nas', name: 'NAS', location: '/srv/repo' });
      await store.replaceSnapshotCatalog('nas', [snap(1)]);
      async function* slowFiles(): AsyncGenerator<CatalogFileInput> {
        for (let i = 0; i < 30; i++) {
          if (i % 10 === 0) await new Promise((r) => setTimeout(r, 2));
          yield { path: `/f${i}`, type: 'file', size: i };
        }
      }
      const work: Promise<unknown>[] = [];
      for (let i = 0; i < 10; i++) {
        work.push(store.upsertJob({ name: `job-${i}`, kind: 'backup', repository: 'nas' }));
        work.push(
          store.startRun(`job-${i}`, 'backup').then((id) => store.finishRun(id, { status: 'success' })),
        );
        work.push(store.listRuns());
      }
      work.push(store.addCatalogFiles('nas', hex(1), slowFiles()));
      work.push(store.replaceSnapshotCatalog('nas', [snap(1), snap(2)]));
      await Promise.all(work);
      expect(await store.listJobs()).toHaveLength(10);
      expect(await store.listRuns({ status: 'success' })).toHaveLength(10);
      expect(await store.catalogStats('nas')).toEqual({ snapshots: 2, indexedSnapshots: 1, files: 30 });
    });

    it('opens from a URL', async () => {
      const opts = target.options();
      const url = opts.kind === 'postgres' ? opts.url : `sqlite:${opts.path}`;
      const store = await openStoreFromUrl(url);
      open.push(store);
      expect(store.kind).toBe(target.name);
      await store.upsertJob({ name: 'u', kind: 'backup', repository: 'r' });
      expect(await store.listJobs()).toHaveLength(1);
    });

    it('rejects calls after close', async () => {
      const store = await openStore(target.options());
      await store.close();
      await store.close();
      await expectForgeError(store.listJobs(), 'FORGE_USAGE');
    });
  });
});
