import type { ObjectType, SnapshotRecord, StorageBackend } from '@backupforge/common';
import { createMemoryBackend } from '@backupforge/storage/memory';
import { describe, expect, it, vi } from 'vitest';
import { backup } from './backup.ts';
import { findNode, walkSnapshot } from './browse.ts';
import { checkRepository } from './check.ts';
import { type CopyChunking, copySnapshots, snapshotOriginal } from './copy.ts';
import type { ChunkerConfig } from './format/config.ts';
import { type InitOptions, Repository } from './repository.ts';
import { restore } from './restore.ts';
import { type MemFile, memSource, memTarget, prng, sha, TEST_KDF, text } from './testing/memory-fixtures.ts';

const PW = 'pw';

async function fresh(
  chunker?: InitOptions['chunker'],
): Promise<{ backend: StorageBackend; repo: Repository }> {
  const backend = createMemoryBackend();
  const repo = await Repository.init(backend, {
    password: PW,
    kdf: TEST_KDF,
    packSize: 4 * 1024 * 1024,
    ...(chunker ? { chunker } : {}),
  });
  return { backend, repo };
}

/** A source repository and a destination whose chunker matches it (`same`) or not (`rechunk`). */
async function pair(chunking: CopyChunking) {
  const src = await fresh();
  // Different sizes and seed: every file must be cut again.
  const other: Partial<ChunkerConfig> = { min: 64 * 1024, avg: 256 * 1024, max: 1024 * 1024 };
  const dst = await fresh(chunking === 'same' ? { ...src.repo.config.chunker } : other);
  return { src, dst };
}

function files(): Record<string, MemFile> {
  return {
    '/data/a.txt': { data: text(10_000) },
    '/data/big.bin': { data: prng(5 * 1024 * 1024 + 123, 7) },
    '/data/dup.bin': { data: prng(5 * 1024 * 1024 + 123, 7) },
    '/data/empty': { data: new Uint8Array() },
    '/data/sub/deep/x.txt': { data: Buffer.from('hello\n'), mode: 0o600 },
    '/data/sub/mid.bin': { data: prng(700_000, 11) },
    '/data/emptydir': { type: 'dir' },
    '/data/link': { type: 'symlink', linkTarget: '../nowhere' },
    '/data/ünïcødé name\nwith newline': { data: Buffer.from('u') },
  };
}

/** The second backup: one small file changed, one new file; the rest untouched. */
function changedFiles(): Record<string, MemFile> {
  return {
    ...files(),
    '/data/a.txt': { data: text(12_345), mtimeNs: 1_800_000_000_000_000_000n },
    '/data/new.bin': { data: prng(1_500_000, 99) },
  };
}

async function names(backend: StorageBackend, type: ObjectType): Promise<string[]> {
  const out: string[] = [];
  for await (const o of backend.list(type)) out.push(o.name);
  return out.sort();
}

async function allObjects(backend: StorageBackend): Promise<Record<string, string[]>> {
  const out: Record<string, string[]> = {};
  for (const t of ['pack', 'index', 'snapshot', 'lock', 'key', 'config'] as const)
    out[t] = await names(backend, t);
  return out;
}

async function restoreAll(repo: Repository, snap: SnapshotRecord) {
  const target = memTarget();
  const r = await restore(repo, snap, target, { workers: 0 });
  expect(r.errors).toEqual([]);
  return target.out;
}

/** Content ids of the data blobs a snapshot references. */
async function dataIds(repo: Repository, snap: SnapshotRecord, only?: (path: string) => boolean) {
  const ids = new Set<string>();
  for await (const { path, node } of walkSnapshot(repo, snap)) {
    if (node.type === 'file' && (!only || only(path))) for (const c of node.content ?? []) ids.add(c);
  }
  return ids;
}

function spyDataLoads(repo: Repository): string[] {
  const loaded: string[] = [];
  const orig = repo.loadBlob.bind(repo);
  vi.spyOn(repo, 'loadBlob').mockImplementation(async (type, id) => {
    if (type === 'data') loaded.push(id);
    return orig(type, id);
  });
  return loaded;
}

describe('copySnapshots', () => {
  for (const chunking of ['same', 'rechunk'] as const) {
    it(`copies byte- and metadata-identically (${chunking} chunker)`, async () => {
      const { src, dst } = await pair(chunking);
      const fs = files();
      const b = await backup(src.repo, memSource(fs), { workers: 0, host: 'h1', tags: ['daily'] });
      const res = await copySnapshots(src.repo, dst.repo);
      expect(res.chunking).toBe(chunking);
      expect(res.copied).toHaveLength(1);
      expect(res.snapshotIds).toHaveLength(1);
      expect(res.copied[0]).toEqual({
        source: b.snapshotId,
        original: b.snapshotId,
        copy: res.snapshotIds[0],
      });
      expect(res.skipped).toEqual([]);
      // Every data blob read once, even the duplicate file's.
      const srcSnap = (await src.repo.listSnapshots())[0]!;
      expect(res.blobsRead).toBe((await dataIds(src.repo, srcSnap)).size);
      expect(await names(dst.backend, 'lock')).toEqual([]);
      expect(await names(src.backend, 'lock')).toEqual([]);

      // Reopen: nothing may depend on in-memory state.
      const dr = await Repository.open(dst.backend, { password: PW });
      const [copy, ...more] = await dr.listSnapshots();
      expect(more).toEqual([]);
      expect(copy!.id).toBe(res.snapshotIds[0]);
      expect(snapshotOriginal(copy!)).toBe(b.snapshotId);
      for (const k of ['time', 'paths', 'hostname', 'username', 'tags', 'source', 'summary'] as const)
        expect(copy![k], k).toEqual(srcSnap[k]);
      expect(copy!.tree).not.toBe(srcSnap.tree); // keyed ids differ per repository

      const want = await restoreAll(src.repo, srcSnap);
      const got = await restoreAll(dr, copy!);
      expect([...got.keys()].sort()).toEqual([...want.keys()].sort());
      for (const [p, w] of want) {
        const g = got.get(p)!;
        expect(g.meta, p).toEqual(w.meta);
        expect(g.data && sha(g.data), p).toBe(w.data && sha(w.data));
      }
      for (const [p, f] of Object.entries(fs))
        if (f.data) expect(sha(got.get(p.slice(1))!.data!), p).toBe(sha(f.data));

      const chk = await checkRepository(dr, { readData: true });
      expect(chk.findings).toEqual([]);
      expect(chk.ok).toBe(true);

      // Same chunker: blob for blob. Other chunker: cut again (smaller chunks, more of them).
      const srcBlobs = await dataIds(src.repo, srcSnap);
      const dstBlobs = await dataIds(dr, copy!);
      if (chunking === 'same') expect(dstBlobs.size).toBe(srcBlobs.size);
      else expect(dstBlobs.size).toBeGreaterThan(srcBlobs.size);
    });

    it(`a backup of the same files into the destination adds no data (${chunking} chunker)`, async () => {
      const { src, dst } = await pair(chunking);
      await backup(src.repo, memSource(files()), { workers: 0, host: 'h1' });
      const res = await copySnapshots(src.repo, dst.repo);
      expect(res.dataBlobs).toBeGreaterThan(0);
      // parent: false reads every file, so only the chunk ids can deduplicate.
      const b = await backup(dst.repo, memSource(files()), { workers: 0, host: 'h1', parent: false });
      expect(b.snapshot.summary!.dataBlobs).toBe(0);
      expect(b.snapshot.summary!.treeBlobs).toBe(0);
      expect(b.snapshot.tree).toBe((await dst.repo.loadSnapshot(res.snapshotIds[0]!)).tree);
    });

    it(`a later snapshot reads only changed data from the source (${chunking} chunker)`, async () => {
      const { src, dst } = await pair(chunking);
      const s1 = await backup(src.repo, memSource(files()), { workers: 0, host: 'h1' });
      const s2 = await backup(src.repo, memSource(changedFiles()), { workers: 0, host: 'h1' });
      const first = await copySnapshots(src.repo, dst.repo, { snapshots: [s1.snapshotId!] });
      expect(first.copied.map((c) => c.source)).toEqual([s1.snapshotId]);

      // New sessions: the memo must come from walking the earlier copy beside its original.
      const sr = await Repository.open(src.backend, { password: PW });
      const dr = await Repository.open(dst.backend, { password: PW });
      const loaded = spyDataLoads(sr);
      const second = await copySnapshots(sr, dr);
      expect(second.skipped).toEqual([{ source: s1.snapshotId, existing: first.snapshotIds[0] }]);
      expect(second.copied.map((c) => c.source)).toEqual([s2.snapshotId]);
      const snap2 = await sr.loadSnapshot(s2.snapshotId!);
      const changed = await dataIds(sr, { ...snap2, id: s2.snapshotId! }, (p) =>
        ['/data/a.txt', '/data/new.bin'].includes(p),
      );
      expect(changed.size).toBeGreaterThanOrEqual(2);
      expect(new Set(loaded)).toEqual(changed);
      expect(loaded).toHaveLength(changed.size);
      expect(second.blobsRead).toBe(changed.size);
      expect(second.bytesRead).toBe(12_345 + 1_500_000);

      const copy = await dr.loadSnapshot(second.snapshotIds[0]!);
      expect(copy.parent).toBe(first.snapshotIds[0]); // the source's parent, as a destination id
      const got = await restoreAll(dr, copy);
      for (const [p, f] of Object.entries(changedFiles()))
        if (f.data) expect(sha(got.get(p.slice(1))!.data!), p).toBe(sha(f.data));
    });
  }

  for (const chunking of ['same', 'rechunk'] as const) {
    it(`stores blobs in walk order, however the workers finish them (${chunking} chunker)`, async () => {
      const { src, dst } = await pair(chunking);
      // Small files of varied sizes and compressibility in several directories: the workers seal
      // them in varied times; the destination must still hold them back to back in walk order,
      // which is how a restore reads small files (one read per stretch of a pack).
      const fs: Record<string, MemFile> = {};
      for (let i = 0; i < 90; i++) {
        const n = 500 + ((i * 7919) % 40_000);
        fs[`/t/d${i % 3}/s${Math.floor(i / 9)}/f${String(i).padStart(2, '0')}`] = {
          data: i % 2 ? prng(n, i) : text(n),
        };
      }
      await backup(src.repo, memSource(fs), { workers: 0, host: 'h1' });
      const res = await copySnapshots(src.repo, dst.repo, { workers: 2 });
      expect(res.dataBlobs).toBe(90);
      const copy = (await dst.repo.listSnapshots())[0]!;
      const order: string[] = [];
      for await (const { node } of walkSnapshot(dst.repo, copy))
        if (node.type === 'file') order.push(...(node.content ?? []));
      expect(order).toHaveLength(90);
      const locs = order.map((id) => dst.repo.index.lookup(id)!);
      const packs = [...new Set(locs.map((l) => l.packId))];
      const pos = locs.map((l) => [packs.indexOf(l.packId), l.offset] as const);
      const sorted = [...pos].sort((a, b) => a[0] - b[0] || a[1] - b[1]);
      expect(pos).toEqual(sorted);
    });
  }

  it('within one run, data shared by several snapshots is read once', async () => {
    const { src, dst } = await pair('rechunk');
    await backup(src.repo, memSource(files()), { workers: 0, host: 'h1' });
    await backup(src.repo, memSource(changedFiles()), { workers: 0, host: 'h1' });
    const [a, b] = await src.repo.listSnapshots();
    const union = new Set([...(await dataIds(src.repo, a!)), ...(await dataIds(src.repo, b!))]);
    const loaded = spyDataLoads(src.repo);
    const res = await copySnapshots(src.repo, dst.repo);
    expect(res.copied).toHaveLength(2);
    expect(loaded).toHaveLength(union.size);
    expect(res.blobsRead).toBe(union.size);
  });

  it('a second copy skips, also back into the source', async () => {
    const { src, dst } = await pair('rechunk');
    await backup(src.repo, memSource(files()), { workers: 0, host: 'h1' });
    const first = await copySnapshots(src.repo, dst.repo);
    const before = await allObjects(dst.backend);
    const again = await copySnapshots(src.repo, dst.repo);
    expect(again.copied).toEqual([]);
    expect(again.skipped).toEqual([{ source: first.copied[0]!.source, existing: first.snapshotIds[0] }]);
    expect(again.blobsRead).toBe(0);
    expect(await allObjects(dst.backend)).toEqual(before);
    // The copy's original is a source snapshot: copying it back is a no-op too.
    const back = await copySnapshots(dst.repo, src.repo);
    expect(back.copied).toEqual([]);
    expect(back.skipped).toHaveLength(1);
  });

  it('selects by ref and filter; a wrong ref is FORGE_SNAPSHOT_NOT_FOUND and writes nothing', async () => {
    const { src, dst } = await pair('rechunk');
    const h1 = await backup(src.repo, memSource({ '/data/a': { data: text(100) } }), {
      workers: 0,
      host: 'h1',
    });
    const h2 = await backup(src.repo, memSource({ '/data/b': { data: text(200) } }), {
      workers: 0,
      host: 'h2',
    });
    const before = await allObjects(dst.backend);
    await expect(copySnapshots(src.repo, dst.repo, { snapshots: ['deadbeef'] })).rejects.toMatchObject({
      code: 'FORGE_SNAPSHOT_NOT_FOUND',
    });
    await expect(copySnapshots(src.repo, dst.repo, { snapshots: ['nope!'] })).rejects.toMatchObject({
      code: 'FORGE_USAGE',
    });
    await expect(copySnapshots(src.repo, src.repo)).rejects.toMatchObject({ code: 'FORGE_USAGE' });
    expect(await allObjects(dst.backend)).toEqual(before);
    expect(await names(src.backend, 'lock')).toEqual([]);

    const byHost = await copySnapshots(src.repo, dst.repo, { filter: { hosts: ['h2'] } });
    expect(byHost.copied.map((c) => c.source)).toEqual([h2.snapshotId]);
    const byRef = await copySnapshots(src.repo, dst.repo, {
      snapshots: ['latest', h1.snapshotId!.slice(0, 8)],
      filter: { hosts: ['h1'] },
    });
    expect(byRef.copied.map((c) => c.source)).toEqual([h1.snapshotId]);
    expect((await dst.repo.listSnapshots()).map((s) => s.hostname).sort()).toEqual(['h1', 'h2']);
  });

  it('a dry run writes nothing to either repository', async () => {
    const { src, dst } = await pair('rechunk');
    await backup(src.repo, memSource(files()), { workers: 0, host: 'h1' });
    const beforeDst = await allObjects(dst.backend);
    const beforeSrc = await allObjects(src.backend);
    const dry = await copySnapshots(src.repo, dst.repo, { dryRun: true });
    expect(dry.copied).toHaveLength(1);
    expect(dry.copied[0]!.copy).toBeUndefined();
    expect(dry.snapshotIds).toEqual([]);
    expect(dry.dataBlobs).toBeGreaterThan(0);
    expect(dry.bytesAdded).toBeGreaterThan(5 * 1024 * 1024); // the duplicate file adds nothing
    expect(await allObjects(dst.backend)).toEqual(beforeDst);
    expect(await allObjects(src.backend)).toEqual(beforeSrc);
    // The same session then really copies (a dry run leaves no false "already stored" behind).
    const real = await copySnapshots(src.repo, dst.repo);
    expect(real.dataBlobs).toBe(dry.dataBlobs);
    expect(real.bytesAdded).toBe(dry.bytesAdded);
    const got = await restoreAll(dst.repo, (await dst.repo.listSnapshots())[0]!);
    expect(sha(got.get('data/big.bin')!.data!)).toBe(sha(files()['/data/big.bin']!.data!));
  });

  it('an interrupted copy leaves the destination consistent; the next run reuses what was uploaded', async () => {
    const { src, dst } = await pair('rechunk');
    await backup(src.repo, memSource(files()), { workers: 0, host: 'h1' });
    await backup(src.repo, memSource(changedFiles()), { workers: 0, host: 'h1' });
    let snapshotSaves = 0;
    const failing = new Proxy(dst.backend, {
      get(t, k, r) {
        if (k === 'save')
          return async (h: { type: ObjectType; name: string }, d: Uint8Array) => {
            if (h.type === 'snapshot' && ++snapshotSaves === 2) throw new Error('connection lost');
            return t.save(h, d);
          };
        const v = Reflect.get(t, k, r);
        return typeof v === 'function' ? v.bind(t) : v;
      },
    });
    const dr = await Repository.open(failing, { password: PW });
    await expect(copySnapshots(src.repo, dr)).rejects.toThrow(/connection lost/);
    expect(await names(dst.backend, 'snapshot')).toHaveLength(1);
    expect(await names(dst.backend, 'lock')).toEqual([]);
    const reopened = await Repository.open(dst.backend, { password: PW });
    expect((await checkRepository(reopened, { readData: true })).ok).toBe(true);

    const rest = await copySnapshots(src.repo, reopened);
    expect(rest.skipped).toHaveLength(1);
    expect(rest.copied).toHaveLength(1);
    expect(rest.dataBlobs).toBe(0); // packs and index of the failed run are reused
    const snap = await reopened.loadSnapshot(rest.snapshotIds[0]!);
    const node = await findNode(reopened, snap, '/data/new.bin');
    expect(node.size).toBe(1_500_000);
    expect((await checkRepository(reopened, { readData: true })).ok).toBe(true);
  });

  it('an aborted copy commits nothing and releases its locks', async () => {
    const { src, dst } = await pair('same');
    await backup(src.repo, memSource(files()), { workers: 0, host: 'h1' });
    const ac = new AbortController();
    let events = 0;
    const reporter = () => {
      if (++events === 2) ac.abort(); // after 'start', before any file is done
    };
    await expect(copySnapshots(src.repo, dst.repo, { signal: ac.signal, reporter })).rejects.toMatchObject({
      code: 'FORGE_ABORTED',
    });
    expect(await names(dst.backend, 'snapshot')).toEqual([]);
    expect(await names(dst.backend, 'lock')).toEqual([]);
    expect(await names(src.backend, 'lock')).toEqual([]);
  });

  it('init can take another repository chunker config, seed included', async () => {
    const { repo } = await fresh();
    const { repo: twin } = await fresh({ ...repo.config.chunker });
    expect(twin.config.chunker).toEqual(repo.config.chunker);
    const { repo: other } = await fresh();
    expect(other.config.chunker.seed).not.toBe(repo.config.chunker.seed);
    await expect(fresh({ seed: 'xyz' })).rejects.toMatchObject({ code: 'FORGE_REPO_INVALID' });
  });
});
