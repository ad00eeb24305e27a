import type { StorageBackend } from '@backupforge/common';
import { createMemoryBackend } from '@backupforge/storage/memory';
import { describe, expect, it } from 'vitest';
import { backup } from './backup.ts';
import { diffSnapshots, findSnapshot, readFileContent, walkSnapshot } from './browse.ts';
import { Repository } from './repository.ts';
import { restore } from './restore.ts';
import { repositoryStats } from './stats.ts';
import { memSource, memTarget, prng, sha, TEST_KDF, text } from './testing/memory-fixtures.ts';

async function fresh(workers = 0): Promise<{ backend: StorageBackend; repo: Repository; workers: number }> {
  const backend = createMemoryBackend();
  const repo = await Repository.init(backend, { password: 'pw', kdf: TEST_KDF, packSize: 4 * 1024 * 1024 });
  return { backend, repo, workers };
}

function tree() {
  return {
    '/data/a.txt': { data: text(10_000) },
    '/data/big.bin': { data: prng(9 * 1024 * 1024, 7) },
    '/data/dup.bin': { data: prng(9 * 1024 * 1024, 7) },
    '/data/empty': { data: new Uint8Array() },
    '/data/sub/deep/x.txt': { data: Buffer.from('hello\n') },
    '/data/emptydir': { type: 'dir' as const },
    '/data/link': { type: 'symlink' as const, linkTarget: '../nowhere' },
    '/data/ünïcødé name\nwith newline': { data: Buffer.from('u') },
  };
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

describe('backup and restore', () => {
  for (const workers of [0, 2]) {
    it(`round-trips a tree byte-identically (workers=${workers})`, async () => {
      const { repo } = await fresh();
      const files = tree();
      const res = await backup(repo, memSource(files), { workers, host: 'h1' });
      expect(res.partial).toBe(false);
      expect(res.snapshotId).toMatch(/^[0-9a-f]{64}$/);
      const snap = await findSnapshot(repo, 'latest');
      const target = memTarget();
      const r = await restore(repo, snap, target, { verify: true });
      expect(r.errors).toEqual([]);
      for (const [p, f] of Object.entries(files)) {
        const got = target.out.get(p.slice(1));
        expect(got, p).toBeDefined();
        if ('data' in f && f.data)
          expect(`${p} ${got!.data!.length} ${sha(got!.data!)}`).toBe(`${p} ${f.data.length} ${sha(f.data)}`);
        if ('linkTarget' in f) expect(got!.meta.linkTarget).toBe(f.linkTarget);
      }
      expect(target.out.get('data/a.txt')!.meta.mtimeNs).toBe(1_700_000_000_123_456_789n);
      expect(r.verified).toBe(6);
      // dedup: the duplicate 9 MiB file adds no data
      expect(res.snapshot.summary!.dataAdded).toBeLessThan(9 * 1024 * 1024 + 20_000);
    });
  }

  it('an incremental backup does not read unchanged files and dedups', async () => {
    const { repo } = await fresh();
    const files = tree();
    await backup(repo, memSource(files), { workers: 0, host: 'h1' });
    const changed = { ...files, '/data/a.txt': { data: text(10_001), mtimeNs: 1_800_000_000_000_000_000n } };
    const src = memSource(changed);
    const second = await backup(repo, src, { workers: 0, host: 'h1' });
    expect(src.opened).toEqual(['/data/a.txt']);
    expect(second.parent).toBeDefined();
    expect(second.snapshot.summary!.filesUnmodified).toBe(5);
    expect(second.snapshot.summary!.filesChanged).toBe(1);
    const [s1, s2] = await repo.listSnapshots();
    const diff = await collect(diffSnapshots(repo, s1!, s2!));
    expect(diff.map((d) => [d.path, d.change])).toEqual([['/data/a.txt', 'modified']]);
    // --parent false reads everything
    const src3 = memSource(changed);
    await backup(repo, src3, { workers: 0, host: 'h1', parent: false });
    expect(src3.opened.length).toBe(6);
  });

  it('ls, dump and stats', async () => {
    const { repo } = await fresh();
    await backup(repo, memSource(tree()), { workers: 0 });
    const snap = await findSnapshot(repo, 'latest');
    const paths = (await collect(walkSnapshot(repo, snap, '/data/sub'))).map((i) => i.path);
    expect(paths).toEqual(['/data/sub', '/data/sub/deep', '/data/sub/deep/x.txt']);
    const dumped = Buffer.concat(await collect(readFileContent(repo, snap, '/data/sub/deep/x.txt')));
    expect(dumped.toString()).toBe('hello\n');
    await expect(collect(readFileContent(repo, snap, '/data/nope'))).rejects.toMatchObject({
      code: 'FORGE_PATH_NOT_FOUND',
    });
    const st = await repositoryStats(repo);
    expect(st.totalFiles).toBe(6);
    expect(st.restoreSize).toBe(10_000 + 2 * 9 * 1024 * 1024 + 6 + 1);
    expect(st.rawSize).toBeLessThan(st.restoreSize);
  });

  it('restores a subpath and honours include/exclude', async () => {
    const { repo } = await fresh();
    await backup(repo, memSource(tree()), { workers: 0 });
    const snap = await findSnapshot(repo, 'latest');
    const t1 = memTarget();
    await restore(repo, snap, t1, { subpath: '/data/sub' });
    expect([...t1.out.keys()].sort()).toEqual(['deep', 'deep/x.txt']);
    const t2 = memTarget();
    await restore(repo, snap, t2, { include: (p) => p.endsWith('.txt') });
    expect([...t2.out.keys()].filter((k) => t2.out.get(k)!.data).sort()).toEqual([
      'data/a.txt',
      'data/sub/deep/x.txt',
    ]);
    expect(t2.out.has('data/emptydir')).toBe(false);
    const t3 = memTarget();
    await restore(repo, snap, t3, { exclude: (p) => p === '/data/sub' });
    expect([...t3.out.keys()].some((k) => k.startsWith('data/sub'))).toBe(false);
    expect(t3.out.has('data/a.txt')).toBe(true);
  });

  it('an unreadable file is a warning and the snapshot is partial', async () => {
    const { repo } = await fresh();
    const res = await backup(
      repo,
      memSource({
        '/data/ok': { data: Buffer.from('ok') },
        '/data/secret': { data: Buffer.from('s'), unreadable: true },
      }),
      { workers: 0 },
    );
    expect(res.partial).toBe(true);
    expect(res.warnings[0]).toMatchObject({ code: 'FORGE_PERMISSION', path: '/data/secret' });
    expect(res.snapshotId).toBeDefined();
    const t = memTarget();
    await restore(repo, await findSnapshot(repo, 'latest'), t);
    expect(t.out.get('data/ok')!.data!.toString()).toBe('ok');
    expect(t.out.has('data/secret')).toBe(false);
  });

  it('a dry run writes nothing', async () => {
    const { backend, repo } = await fresh();
    const before: string[] = [];
    for await (const p of backend.list('pack')) before.push(p.name);
    await backup(repo, memSource(tree()), { workers: 0, dryRun: true });
    for (const t of ['pack', 'index', 'snapshot', 'lock'] as const) {
      const n: string[] = [];
      for await (const p of backend.list(t)) n.push(p.name);
      expect(n, t).toEqual([]);
    }
  });
});

describe('damage is detected, wrong bytes are never restored', () => {
  async function damaged(mutate: (backend: StorageBackend, packs: string[]) => Promise<void>) {
    const { backend, repo } = await fresh();
    await backup(
      repo,
      memSource({
        '/data/big.bin': { data: prng(6 * 1024 * 1024, 3) },
        '/data/small.txt': { data: text(5000) },
      }),
      { workers: 0 },
    );
    const packs: string[] = [];
    for await (const p of backend.list('pack')) packs.push(p.name);
    await mutate(backend, packs);
    const reopened = await Repository.open(backend, { password: 'pw' });
    return { repo: reopened, backend };
  }

  async function dataPack(backend: StorageBackend, packs: string[], repo?: Repository): Promise<string> {
    const r = repo ?? (await Repository.open(backend, { password: 'pw' }));
    await r.loadIndex();
    for (const p of packs) {
      for (const [, loc] of r.index.entries())
        if (loc.packId === p && loc.type === 'data' && loc.rawLength > 1_000_000) return p;
    }
    throw new Error('no data pack');
  }

  it('one flipped bit in a pack: the file fails with FORGE_INTEGRITY, others restore', async () => {
    const { repo } = await damaged(async (backend, packs) => {
      const p = await dataPack(backend, packs);
      const bytes = Buffer.from(await backend.load({ type: 'pack', name: p }));
      bytes[1000]! ^= 0x10;
      await backend.save({ type: 'pack', name: p }, bytes);
    });
    const t = memTarget();
    const r = await restore(repo, await findSnapshot(repo, 'latest'), t);
    expect(r.errors.map((e) => [e.path, e.code])).toEqual([['/data/big.bin', 'FORGE_INTEGRITY']]);
    expect(t.out.has('data/big.bin')).toBe(false);
    expect(t.out.get('data/small.txt')!.data!.length).toBe(5000);
  });

  it('a truncated pack fails the file with FORGE_PACK_TRUNCATED', async () => {
    const { repo } = await damaged(async (backend, packs) => {
      const p = await dataPack(backend, packs);
      const bytes = Buffer.from(await backend.load({ type: 'pack', name: p }));
      await backend.save({ type: 'pack', name: p }, bytes.subarray(0, 2 * 1024 * 1024));
    });
    const r = await restore(repo, await findSnapshot(repo, 'latest'), memTarget());
    expect(r.errors.map((e) => e.code)).toContain('FORGE_PACK_TRUNCATED');
  });

  it('a deleted index file makes blobs unfindable (FORGE_NOT_FOUND), not wrong', async () => {
    const { repo } = await damaged(async (backend) => {
      for await (const i of backend.list('index')) await backend.remove({ type: 'index', name: i.name });
    });
    const snap = await findSnapshot(repo, 'latest');
    await expect(restore(repo, snap, memTarget())).rejects.toMatchObject({ code: 'FORGE_NOT_FOUND' });
  });

  it('a snapshot file with a flipped bit is FORGE_INTEGRITY', async () => {
    const { repo } = await damaged(async (backend) => {
      for await (const s of backend.list('snapshot')) {
        const b = Buffer.from(await backend.load({ type: 'snapshot', name: s.name }));
        b[b.length - 5]! ^= 1;
        await backend.save({ type: 'snapshot', name: s.name }, b);
      }
    });
    // The damaged snapshot is left out (and named) instead of hiding every other one.
    expect(await repo.listSnapshots()).toEqual([]);
    expect(repo.unreadableSnapshots.map((u) => u.error.code)).toEqual(['FORGE_INTEGRITY']);
  });
});

describe('compression settings', () => {
  for (const compression of [
    { algorithm: 'lz4' as const },
    { algorithm: 'none' as const },
    { algorithm: 'zstd' as const, level: 19 },
  ]) {
    it(`round-trips with ${compression.algorithm}`, async () => {
      const backend = createMemoryBackend();
      const repo = await Repository.init(backend, { password: 'pw', kdf: TEST_KDF, compression });
      const data = text(3 * 1024 * 1024);
      const res = await backup(repo, memSource({ '/data/t.txt': { data } }), { workers: 0 });
      const s = res.snapshot.summary!;
      if (compression.algorithm === 'none') expect(s.dataAddedPacked).toBeGreaterThan(s.dataAdded);
      else expect(s.dataAddedPacked).toBeLessThan(s.dataAdded / 2);
      const again = await Repository.open(backend, { password: 'pw' });
      expect(again.config.compression).toEqual(compression);
      const t = memTarget();
      await restore(again, await findSnapshot(again, 'latest'), t);
      expect(sha(t.out.get('data/t.txt')!.data!)).toBe(sha(data));
    });
  }

  it('rejects nonsense settings before writing anything', async () => {
    const backend = createMemoryBackend();
    await expect(
      Repository.init(backend, {
        password: 'pw',
        kdf: TEST_KDF,
        compression: { algorithm: 'zstd', level: 99 },
      }),
    ).rejects.toMatchObject({ code: 'FORGE_USAGE' });
    await expect(
      Repository.init(backend, { password: 'pw', kdf: TEST_KDF, chunker: { avg: 1000 } }),
    ).rejects.toMatchObject({ code: 'FORGE_REPO_INVALID' });
    const objs: string[] = [];
    for (const t of ['config', 'key'] as const) for await (const o of backend.list(t)) objs.push(o.name);
    expect(objs).toEqual([]);
  });

  it('an aborted backup commits nothing', async () => {
    const { backend, repo } = await fresh();
    const ac = new AbortController();
    ac.abort();
    await expect(backup(repo, memSource(tree()), { workers: 0, signal: ac.signal })).rejects.toMatchObject({
      code: 'FORGE_ABORTED',
    });
    const snaps: string[] = [];
    for await (const s of backend.list('snapshot')) snaps.push(s.name);
    const locks: string[] = [];
    for await (const s of backend.list('lock')) locks.push(s.name);
    expect(snaps).toEqual([]);
    expect(locks).toEqual([]);
  });
});

describe('an error that stops the restore', () => {
  it('ends the walk at its next step (a full disk does not go on through the rest of the tree)', async () => {
    const { repo } = await fresh();
    const files: Record<string, { data: Uint8Array }> = {};
    for (let d = 0; d < 40; d++)
      files[`/t/d${String(d).padStart(2, '0')}/f.bin`] = { data: prng(300_000, d) };
    await backup(repo, memSource(files), { workers: 0 });
    const target = memTarget();
    const dirs: string[] = [];
    const { ForgeError } = await import('@backupforge/common');
    Object.assign(target, {
      async dir(p: readonly string[]) {
        dirs.push(p.join('/'));
      },
      async file(p: readonly string[]) {
        if (p.join('/') === 't/d03/f.bin') throw new ForgeError('FORGE_NO_SPACE', 'no space left on device');
        return memTarget().file(p, {} as never);
      },
    });
    await expect(restore(repo, await findSnapshot(repo, 'latest'), target)).rejects.toMatchObject({
      code: 'FORGE_NO_SPACE',
    });
    // Up to a few directories past d03 may have started (files restore 8 at a time), not all 40.
    expect(dirs.length).toBeLessThan(15);
  });
});

describe('a backup that fails into a local repository', () => {
  it('leaves no temporary pack file behind', async () => {
    const { mkdtemp, readdir, rm } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const { createLocalBackend } = await import('@backupforge/storage/local');
    const { ForgeError } = await import('@backupforge/common');
    const dir = await mkdtemp(join(tmpdir(), 'bf-failed-backup-'));
    try {
      const backend = createLocalBackend({ path: dir });
      const repo = await Repository.init(backend, { password: 'pw', kdf: TEST_KDF });
      const source = memSource({ '/data/a.bin': { data: prng(2 * 1024 * 1024, 5) } });
      const entries = source.entries.bind(source);
      let packAdded = false;
      source.entries = async function* () {
        yield* entries();
        // The file's chunks are in the pack being written (not full: 16 MiB) when the walk fails.
        for (let i = 0; i < 100 && !packAdded; i++) {
          packAdded = (await readdir(join(dir, 'data'))).some((n) => n.startsWith('.tmp-'));
          await new Promise((r) => setTimeout(r, 20));
        }
        throw new ForgeError('FORGE_IO', 'the source went away');
      };
      await expect(backup(repo, source, { workers: 0 })).rejects.toMatchObject({ code: 'FORGE_IO' });
      expect(packAdded).toBe(true);
      expect((await readdir(join(dir, 'data'))).filter((n) => n.startsWith('.'))).toEqual([]);
      await backend.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
