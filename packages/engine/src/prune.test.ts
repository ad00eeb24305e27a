import { ForgeError, type ObjectType, type ProgressEvent, type StorageBackend } from '@backupforge/common';
import { createMemoryBackend } from '@backupforge/storage/memory';
import { describe, expect, it } from 'vitest';
import { backup } from './backup.ts';
import { findSnapshot } from './browse.ts';
import { checkRepository } from './check.ts';
import { forget } from './forget.ts';
import { RepositoryLock } from './lock.ts';
import { prune, STALE_TEMPORARY_MS } from './prune.ts';
import { Repository } from './repository.ts';
import { restore } from './restore.ts';
import { forwardingTo, memSource, memTarget, prng, sha, TEST_KDF } from './testing/memory-fixtures.ts';

async function names(b: StorageBackend, t: ObjectType): Promise<string[]> {
  const out: string[] = [];
  for await (const o of b.list(t)) out.push(o.name);
  return out.sort();
}
async function bytes(b: StorageBackend): Promise<number> {
  let n = 0;
  for await (const o of b.list('pack')) n += o.size;
  return n;
}
const open = (b: StorageBackend) => Repository.open(b, { password: 'pw' });
const A = { '/data/a.bin': { data: prng(3 * 1024 * 1024, 1) } };
const B = { '/data/b.bin': { data: prng(3 * 1024 * 1024, 2) } };

async function twoSnapshots(mixed = false) {
  const backend = createMemoryBackend();
  const repo = await Repository.init(backend, { password: 'pw', kdf: TEST_KDF, packSize: 8 * 1024 * 1024 });
  if (mixed) {
    // a and b land in the same pack; the second snapshot uses b only.
    await backup(repo, memSource({ ...A, ...B }), { workers: 0, time: new Date('2026-01-01T00:00:00Z') });
    await backup(repo, memSource(B), { workers: 0, time: new Date('2026-01-02T00:00:00Z') });
  } else {
    await backup(repo, memSource(A), { workers: 0, time: new Date('2026-01-01T00:00:00Z') });
    await backup(repo, memSource(B), { workers: 0, time: new Date('2026-01-02T00:00:00Z'), parent: false });
  }
  return backend;
}

async function restoresB(backend: StorageBackend) {
  const repo = await open(backend);
  const t = memTarget();
  const r = await restore(repo, await findSnapshot(repo, 'latest'), t);
  expect(r.errors).toEqual([]);
  expect(sha(t.out.get('data/b.bin')!.data!)).toBe(sha(B['/data/b.bin'].data));
}

describe('prune', () => {
  it('removes packs only forgotten snapshots used; a dry run changes nothing; a second run is a no-op', async () => {
    const backend = await twoSnapshots();
    const [first] = await (await open(backend)).listSnapshots();
    await forget(await open(backend), { snapshots: [first!.id] });
    const before = await bytes(backend);
    const packsBefore = await names(backend, 'pack');
    const dry = await prune(await open(backend), { dryRun: true });
    expect(dry.plan.packs.remove).toBeGreaterThan(0);
    expect(dry.plan.bytesToDelete).toBeGreaterThan(3 * 1024 * 1024);
    expect(await names(backend, 'pack')).toEqual(packsBefore);
    const r = await prune(await open(backend));
    expect(r.packsDeleted).toBe(dry.plan.packs.remove);
    expect(await bytes(backend)).toBeLessThan(before - 3 * 1024 * 1024);
    expect((await checkRepository(await open(backend), { readData: true })).findings).toEqual([]);
    await restoresB(backend);
    const again = await prune(await open(backend));
    expect(again.packsDeleted).toBe(0);
    expect(again.plan.packs.repack + again.plan.packs.remove + again.plan.packs.unindexed).toBe(0);
    expect(await names(backend, 'lock')).toEqual([]);
  });

  it('repacks a pack whose unused share is above --max-unused', async () => {
    const backend = await twoSnapshots(true);
    const [first] = await (await open(backend)).listSnapshots();
    await forget(await open(backend), { snapshots: [first!.id] });
    const before = await bytes(backend);
    const r = await prune(await open(backend));
    expect(r.plan.packs.repack).toBeGreaterThan(0);
    expect(r.plan.bytesToRepack).toBeGreaterThan(2 * 1024 * 1024);
    expect(await bytes(backend)).toBeLessThan(before - 2 * 1024 * 1024);
    expect((await checkRepository(await open(backend), { readData: true })).findings).toEqual([]);
    await restoresB(backend);
    // With a generous limit the sparse pack would have been kept.
    const b2 = await twoSnapshots(true);
    const [f2] = await (await open(b2)).listSnapshots();
    await forget(await open(b2), { snapshots: [f2!.id] });
    expect((await prune(await open(b2), { maxUnused: 10 })).plan.packs.repack).toBe(0);
  });

  it('removes packs no index lists (left by an interrupted backup)', async () => {
    const backend = await twoSnapshots();
    const [p] = await names(backend, 'pack');
    const orphan = 'ab'.repeat(32);
    await backend.save({ type: 'pack', name: orphan }, await backend.load({ type: 'pack', name: p! }));
    const r = await prune(await open(backend));
    expect(r.plan.packs.unindexed).toBe(1);
    expect(await names(backend, 'pack')).not.toContain(orphan);
    expect((await checkRepository(await open(backend), { readData: true })).findings).toEqual([]);
  });

  it('defers deleting while an older backup runs, keeping everything restorable', async () => {
    const backend = await twoSnapshots();
    const [first] = await (await open(backend)).listSnapshots();
    await forget(await open(backend), { snapshots: [first!.id] });
    const backupLock = await RepositoryLock.acquire(backend, { exclusive: false }); // a backup in flight
    const packsBefore = await names(backend, 'pack');
    const r = await prune(await open(backend), { maxWaitMs: 0 });
    expect(r.packsDeferred).toBeGreaterThan(0);
    expect(r.packsDeleted).toBe(0);
    expect(await names(backend, 'pack')).toEqual(packsBefore);
    expect((await checkRepository(await open(backend), { readData: true })).ok).toBe(true);
    await backupLock.release();
    const later = await prune(await open(backend));
    expect(later.packsDeleted).toBeGreaterThan(0);
    await restoresB(backend);
  });

  it('a prune lock excludes another prune but not a backup', async () => {
    const backend = await twoSnapshots();
    const l = await RepositoryLock.acquire(backend, { exclusive: false, kind: 'prune' });
    await expect(prune(await open(backend))).rejects.toMatchObject({ code: 'FORGE_LOCK_CONFLICT' });
    const res = await backup(await open(backend), memSource(A), { workers: 0 });
    expect(res.snapshotId).toBeDefined();
    await l.release();
  });

  it('keeps data that a backup finishing during prune deduplicated against', async () => {
    const backend = await twoSnapshots();
    const [first] = await (await open(backend)).listSnapshots();
    await forget(await open(backend), { snapshots: [first!.id] });
    // A backup that loaded the index before prune switched it, and commits in the middle of prune.
    const stale = await open(backend);
    await stale.loadIndex();
    let fired = false;
    let lateId: string | undefined;
    const hooked: StorageBackend = {
      ...backend,
      location: backend.location,
      properties: () => backend.properties(),
      create: () => backend.create(),
      save: (h, d) => backend.save(h, d),
      load: (h, r) => backend.load(h, r),
      stat: (h) => backend.stat(h),
      list: (t) => backend.list(t),
      close: () => backend.close(),
      async remove(h) {
        await backend.remove(h);
        if (h.type === 'index' && !fired) {
          fired = true;
          const res = await backup(stale, memSource(A), { workers: 0, parent: false });
          lateId = res.snapshotId;
          expect(res.snapshot.summary!.dataAdded).toBeLessThan(1024 * 1024); // deduplicated against A's old blobs
        }
      },
    };
    const r = await prune(await Repository.open(hooked, { password: 'pw' }));
    expect(fired).toBe(true);
    expect(r.packsDeleted).toBe(0); // every candidate held A's data, which the late snapshot uses
    const c = await checkRepository(await open(backend), { readData: true });
    expect(c.findings.filter((f) => f.severity === 'error')).toEqual([]);
    const repo = await open(backend);
    const t = memTarget();
    const rr = await restore(repo, await findSnapshot(repo, lateId!), t);
    expect(rr.errors).toEqual([]);
    expect(sha(t.out.get('data/a.bin')!.data!)).toBe(sha(A['/data/a.bin'].data));
  });

  it('has the backend delete stale temporary files (counted in a dry run); a failure is a warning', async () => {
    const inner = await twoSnapshots();
    const calls: { olderThanMs: number; dryRun?: boolean }[] = [];
    let failure: Error | undefined;
    const backend = forwardingTo(inner, {
      sweepTemporaries: async (o) => {
        calls.push({ ...o });
        if (failure) throw failure;
        return { files: 3, bytes: 4096 };
      },
    });
    const dry = await prune(await open(backend), { dryRun: true });
    expect(dry.temporaries).toEqual({ files: 3, bytes: 4096 });
    const real = await prune(await open(backend));
    expect(real.temporaries).toEqual({ files: 3, bytes: 4096 });
    expect(calls).toEqual([
      { olderThanMs: STALE_TEMPORARY_MS, dryRun: true },
      { olderThanMs: STALE_TEMPORARY_MS, dryRun: false },
    ]);
    expect(STALE_TEMPORARY_MS).toBeGreaterThanOrEqual(60 * 60 * 1000);

    failure = new ForgeError('FORGE_PERMISSION', 'permission denied: data/ab/.tmp-01');
    const events: ProgressEvent[] = [];
    const warned = await prune(await open(backend), { reporter: (e) => events.push(e) });
    expect(warned.temporaries).toEqual({ files: 0, bytes: 0 });
    expect(events).toContainEqual(
      expect.objectContaining({
        type: 'warning',
        code: 'FORGE_PERMISSION',
        message: expect.stringContaining('permission denied: data/ab/.tmp-01'),
      }),
    );
    // A backend without the method (memory) sweeps nothing.
    expect((await prune(await open(inner))).temporaries).toEqual({ files: 0, bytes: 0 });
  });
});
