import type { ObjectType, StorageBackend } from '@backupforge/common';
import { createMemoryBackend } from '@backupforge/storage/memory';
import { describe, expect, it } from 'vitest';
import { backup } from './backup.ts';
import { findSnapshot } from './browse.ts';
import { checkRepository } from './check.ts';
import { repairIndex } from './repair.ts';
import { Repository } from './repository.ts';
import { restore } from './restore.ts';
import { memSource, memTarget, prng, sha, TEST_KDF } from './testing/memory-fixtures.ts';

async function names(b: StorageBackend, t: ObjectType): Promise<string[]> {
  const out: string[] = [];
  for await (const o of b.list(t)) out.push(o.name);
  return out.sort();
}

const files = {
  '/data/a.bin': { data: prng(3 * 1024 * 1024, 1) },
  '/data/b.bin': { data: prng(2 * 1024 * 1024, 2) },
};

async function setup() {
  const backend = createMemoryBackend();
  const repo = await Repository.init(backend, { password: 'pw', kdf: TEST_KDF, packSize: 1024 * 1024 });
  await backup(repo, memSource(files), { workers: 0 });
  return backend;
}
const open = (b: StorageBackend) => Repository.open(b, { password: 'pw' });

describe('repairIndex', () => {
  it('rebuilds a deleted index from the pack headers; a second run changes nothing', async () => {
    const backend = await setup();
    for (const i of await names(backend, 'index')) await backend.remove({ type: 'index', name: i });
    expect((await checkRepository(await open(backend))).ok).toBe(false);
    const dry = await repairIndex(await open(backend), { dryRun: true });
    expect(dry.indexFilesWritten).toEqual([]);
    expect(await names(backend, 'index')).toEqual([]);
    const r = await repairIndex(await open(backend));
    expect(r.packs).toBe((await names(backend, 'pack')).length);
    expect(r.indexFilesWritten.length).toBe(1);
    expect((await checkRepository(await open(backend), { readData: true })).ok).toBe(true);
    const t = memTarget();
    const repo = await open(backend);
    await restore(repo, await findSnapshot(repo, 'latest'), t);
    expect(sha(t.out.get('data/a.bin')!.data!)).toBe(sha(files['/data/a.bin'].data));
    const before = await names(backend, 'index');
    const again = await repairIndex(await open(backend));
    expect(again.indexFilesWritten).toEqual([]);
    expect(await names(backend, 'index')).toEqual(before);
  });

  it('replaces a damaged index file and skips an unreadable pack without losing the others', async () => {
    const backend = await setup();
    const [i] = await names(backend, 'index');
    const ib = Buffer.from(await backend.load({ type: 'index', name: i! }));
    ib[10]! ^= 1;
    await backend.save({ type: 'index', name: i! }, ib);
    const packs = await names(backend, 'pack');
    const junk = Buffer.from(
      'not a pack at all, just some bytes that are long enough to look like one......',
    );
    await backend.save({ type: 'pack', name: 'ee'.repeat(32) }, junk);
    const r = await repairIndex(await open(backend));
    expect(r.unreadablePacks.map((p) => p.id)).toEqual(['ee'.repeat(32)]);
    expect(r.packs).toBe(packs.length);
    expect(await names(backend, 'index')).not.toContain(i);
    const c = await checkRepository(await open(backend), { readData: true });
    expect(c.findings.filter((f) => f.severity === 'error')).toEqual([]);
  });
});

describe('self-heal', () => {
  it('after a pack disappears, the next backup stores the lost data again', async () => {
    const backend = await setup();
    const repo0 = await open(backend);
    await repo0.loadIndex();
    const victim = [...repo0.index.entries()].find(([, l]) => l.type === 'data')![1].packId;
    await backend.remove({ type: 'pack', name: victim });
    const repo = await open(backend);
    const warnings: string[] = [];
    const res = await backup(repo, memSource(files), {
      workers: 0,
      reporter: (e) => {
        if (e.type === 'warning') warnings.push(e.message);
      },
    });
    expect(warnings.join('\n')).toMatch(/missing from the repository/);
    expect(res.snapshot.summary!.dataAdded).toBeGreaterThan(0);
    const t = memTarget();
    const r2 = await open(backend);
    const rr = await restore(r2, await findSnapshot(r2, res.snapshotId!), t);
    expect(rr.errors).toEqual([]);
    expect(sha(t.out.get('data/a.bin')!.data!)).toBe(sha(files['/data/a.bin'].data));
    expect(sha(t.out.get('data/b.bin')!.data!)).toBe(sha(files['/data/b.bin'].data));
  });
});

describe('repairSnapshots', () => {
  it('rewrites a snapshot that lost a pack, keeping every restorable file; a second run is a no-op', async () => {
    const { repairSnapshots } = await import('./repair.ts');
    const backend = await setup();
    const repo0 = await open(backend);
    await repo0.loadIndex();
    // Lose a pack of file data.
    const snap0 = (await repo0.listSnapshots())[0]!;
    const victim = [...repo0.index.entries()].find(([, l]) => l.type === 'data')![1].packId;
    await backend.remove({ type: 'pack', name: victim });
    await repairIndex(await open(backend));
    expect((await checkRepository(await open(backend))).ok).toBe(false);
    const dry = await repairSnapshots(await open(backend), { dryRun: true });
    expect(dry.length).toBe(1);
    expect(dry[0]!.repaired).toBeUndefined();
    expect((await names(backend, 'snapshot')).length).toBe(1);
    const r = await repairSnapshots(await open(backend), { forget: true });
    expect(r[0]!.damaged.length).toBeGreaterThan(0);
    const c = await checkRepository(await open(backend), { readData: true });
    expect(c.findings.filter((f) => f.severity === 'error')).toEqual([]);
    const repo = await open(backend);
    const snap = await findSnapshot(repo, 'latest');
    expect(snap.tags).toContain('repaired');
    expect(snap.repairedFrom).toBe(snap0.id);
    const t = memTarget();
    const rr = await restore(repo, snap, t);
    expect(rr.errors).toEqual([]);
    // Undamaged files are intact.
    for (const f of ['data/a.bin', 'data/b.bin']) {
      if (!r[0]!.damaged.includes(`/${f}`))
        expect(sha(t.out.get(f)!.data!)).toBe(sha(files[`/${f}` as keyof typeof files].data));
    }
    expect(await repairSnapshots(await open(backend))).toEqual([]);
  });
});
