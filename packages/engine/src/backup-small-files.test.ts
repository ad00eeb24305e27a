// Small local files (entries with `localPath`) are read, hashed and sealed on a worker in
// batches. These tests use real files in a temp folder and check what the batch path must keep:
// byte-identical content, dedup, and one warning per problem file without losing the others.
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BackupSource, ContentReader, SourceEvent } from '@backupforge/common';
import { createMemoryBackend } from '@backupforge/storage/memory';
import { afterEach, describe, expect, it } from 'vitest';
import { backup } from './backup.ts';
import { findSnapshot, walkSnapshot } from './browse.ts';
import { Repository } from './repository.ts';
import { restore } from './restore.ts';
import { memSource, memTarget, prng, sha, TEST_KDF, text as words } from './testing/memory-fixtures.ts';

/** `n` bytes of text (about), distinct per seed. */
function text(n: number, seed: number): Buffer {
  return Buffer.concat([Buffer.from(`#${seed}\n`), words(n)]);
}

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

async function fresh(): Promise<Repository> {
  return Repository.init(createMemoryBackend(), { password: 'pw', kdf: TEST_KDF, packSize: 4 * 1024 * 1024 });
}

function diskReader(path: string): ContentReader {
  let data: Buffer | undefined;
  let pos = 0;
  return {
    async read(buf) {
      data ??= await readFile(path);
      const n = Math.min(buf.length, data.length - pos);
      buf.set(data.subarray(pos, pos + n));
      pos += n;
      return n;
    },
    async close() {},
  };
}

/**
 * A source listing `files` as they were (sizes from the map) while the content is read from
 * `root` on disk, as the filesystem agent does: `localPath` set, `open()` reading the disk.
 */
function localSource(
  root: string,
  files: Record<string, Uint8Array>,
): BackupSource & { opened: string[]; root: string } {
  const listed = memSource(Object.fromEntries(Object.entries(files).map(([p, data]) => [p, { data }])));
  const opened: string[] = [];
  return {
    kind: 'local-test',
    paths: listed.paths,
    opened,
    root,
    async *entries(signal?: AbortSignal): AsyncGenerator<SourceEvent> {
      for await (const ev of listed.entries(signal)) {
        if (ev.kind !== 'entry' || ev.meta.type !== 'file') {
          yield ev;
          continue;
        }
        const localPath = join(root, ...ev.path);
        yield {
          ...ev,
          localPath,
          open: async () => {
            opened.push(`/${ev.path.join('/')}`);
            return diskReader(localPath);
          },
        };
      }
    },
  };
}

async function writeTree(files: Record<string, Uint8Array>): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'forge-small-'));
  dirs.push(root);
  for (const [p, data] of Object.entries(files)) {
    const abs = join(root, p);
    await mkdir(join(abs, '..'), { recursive: true });
    await writeFile(abs, data);
  }
  return root;
}

describe('small local files in batches', () => {
  for (const workers of [0, 2]) {
    it(`round-trips hundreds of small files and stores duplicates once (workers=${workers})`, async () => {
      const files: Record<string, Uint8Array> = {};
      const unique = new Set<string>();
      for (let i = 0; i < 420; i++) {
        // Sizes from empty to ~40 KiB; every 7th file repeats an earlier one (dedup in and across batches).
        const data =
          i % 7 === 6 ? files[`/data/d${(i - 6) % 5}/f${i - 6}.txt`]! : text((i * 997) % 40_000, i);
        files[`/data/d${i % 5}/f${i}.txt`] = data;
        if (data.length > 0) unique.add(sha(data));
      }
      files['/data/big.bin'] = prng(600 * 1024, 3); // chunked path, next to the batches
      unique.add('big');
      const src = localSource(await writeTree(files), files);
      const repo = await fresh();
      const res = await backup(repo, src, { workers });
      expect(res.partial).toBe(false);
      // The small files went in batches; the large one was opened through the source on this
      // thread (no workers) or chunked on a worker's lane.
      expect(src.opened).toEqual(workers === 0 ? ['/data/big.bin'] : []);
      const t = memTarget();
      const r = await restore(repo, await findSnapshot(repo, 'latest'), t, { verify: true });
      expect(r.errors).toEqual([]);
      for (const [p, data] of Object.entries(files)) {
        const got = t.out.get(p.slice(1));
        expect(`${p} ${got?.data?.length} ${got?.data ? sha(got.data) : ''}`).toBe(
          `${p} ${data.length} ${sha(data)}`,
        );
      }
      // One blob per distinct small content, and the large file's chunks (1 or more).
      const blobs = res.snapshot.summary!.dataBlobs!;
      expect(blobs).toBeGreaterThanOrEqual(unique.size);
      expect(blobs).toBeLessThanOrEqual(unique.size + 3);
      expect(res.snapshot.summary!.filesNew).toBe(421);

      // A second backup with the first as parent reads nothing: the files are gone from the disk
      // (only the listing remains), so any read would be a warning.
      await rm(join(src.root, 'data'), { recursive: true });
      const again = await backup(repo, localSource(src.root, files), { workers });
      expect(again.warnings).toEqual([]);
      expect(again.snapshot.summary!.filesUnmodified).toBe(421);
      expect(again.snapshot.summary!.dataBlobs).toBe(0);
    });
  }

  for (const workers of [0, 1]) {
    it(`warns once per problem file and keeps the rest (workers=${workers})`, async () => {
      const files: Record<string, Uint8Array> = {
        '/data/a-ok.txt': text(5000, 1),
        '/data/b-vanished.txt': text(100, 2),
        '/data/c-now-dir.txt': text(100, 3),
        '/data/d-now-link.txt': text(100, 4),
        '/data/e-shrunk.txt': text(3000, 5),
        '/data/f-grew.txt': text(3000, 6),
        '/data/g-grew-big.txt': text(3000, 7),
        '/data/h-ok.txt': text(7000, 8),
      };
      const root = await writeTree(files);
      // Changes after the listing, before the content is read.
      await rm(join(root, 'data/b-vanished.txt'));
      await rm(join(root, 'data/c-now-dir.txt'));
      await mkdir(join(root, 'data/c-now-dir.txt'));
      await rm(join(root, 'data/d-now-link.txt'));
      await symlink('a-ok.txt', join(root, 'data/d-now-link.txt'));
      const shrunk = files['/data/e-shrunk.txt']!.subarray(0, 1000);
      await writeFile(join(root, 'data/e-shrunk.txt'), shrunk);
      const grew = Buffer.concat([files['/data/f-grew.txt']!, text(500, 9)]);
      await writeFile(join(root, 'data/f-grew.txt'), grew);
      const grewBig = Buffer.concat([files['/data/g-grew-big.txt']!, prng(700 * 1024, 10)]);
      await writeFile(join(root, 'data/g-grew-big.txt'), grewBig);

      const repo = await fresh();
      const res = await backup(repo, localSource(root, files), { workers });
      expect(res.partial).toBe(true);
      const byPath = new Map(res.warnings.map((w) => [w.path, w]));
      expect(byPath.get('/data/b-vanished.txt')).toMatchObject({ code: 'FORGE_NOT_FOUND' });
      expect(byPath.get('/data/b-vanished.txt')!.message).toMatch(/^cannot read \/data\/b-vanished\.txt: /);
      expect(byPath.get('/data/c-now-dir.txt')!.message).toMatch(/no longer a regular file/);
      expect(byPath.get('/data/d-now-link.txt')!.message).toMatch(/^cannot read /);
      for (const p of ['/data/e-shrunk.txt', '/data/f-grew.txt', '/data/g-grew-big.txt']) {
        expect(byPath.get(p), p).toMatchObject({ code: 'FORGE_IO' });
        expect(byPath.get(p)!.message).toMatch(/changed size while being read/);
      }
      expect(res.warnings).toHaveLength(6);

      const t = memTarget();
      const r = await restore(repo, await findSnapshot(repo, 'latest'), t, { verify: true });
      expect(r.errors).toEqual([]);
      const got = (p: string) => t.out.get(p)?.data;
      expect(sha(got('data/a-ok.txt')!)).toBe(sha(files['/data/a-ok.txt']!));
      expect(sha(got('data/h-ok.txt')!)).toBe(sha(files['/data/h-ok.txt']!));
      expect(got('data/b-vanished.txt')).toBeUndefined();
      expect(got('data/c-now-dir.txt')).toBeUndefined();
      expect(got('data/d-now-link.txt')).toBeUndefined();
      // What was read is what is saved: the shorter content, and the grown files whole.
      expect(sha(got('data/e-shrunk.txt')!)).toBe(sha(shrunk));
      expect(sha(got('data/f-grew.txt')!)).toBe(sha(grew));
      expect(sha(got('data/g-grew-big.txt')!)).toBe(sha(grewBig));
    });
  }

  it('chunks large files on a worker lane next to the main thread: identical content, dedup, warnings', async () => {
    const files: Record<string, Uint8Array> = {};
    for (let i = 0; i < 6; i++) files[`/data/big${i}.bin`] = prng(900 * 1024 + i * 333_333, 20 + i);
    files['/data/big6-copy.bin'] = files['/data/big2.bin']!; // the same chunks again
    files['/data/big7-log.txt'] = Buffer.concat([text(3_000_000, 7), prng(200_000, 8)]);
    files['/data/big8-vanishes.bin'] = prng(1_500_000, 9);
    files['/data/big9-shrinks.bin'] = prng(2_000_000, 10);
    const root = await writeTree(files);
    await rm(join(root, 'data/big8-vanishes.bin'));
    const shrunk = files['/data/big9-shrinks.bin']!.subarray(0, 1_200_000);
    await writeFile(join(root, 'data/big9-shrinks.bin'), shrunk);

    const repo = await fresh();
    const src = localSource(root, files);
    const res = await backup(repo, src, { workers: 2 });
    // Some large files went to the lane (not opened through the source), some to this thread.
    expect(src.opened.length).toBeGreaterThan(0);
    expect(src.opened.length).toBeLessThan(10);
    expect(res.warnings.map((w) => w.path).sort()).toEqual([
      '/data/big8-vanishes.bin',
      '/data/big9-shrinks.bin',
    ]);
    const t = memTarget();
    const r = await restore(repo, await findSnapshot(repo, 'latest'), t, { verify: true });
    expect(r.errors).toEqual([]);
    for (const [p, data] of Object.entries(files)) {
      if (p.includes('vanishes')) continue;
      const want = p.includes('shrinks') ? shrunk : data;
      const got = t.out.get(p.slice(1))?.data;
      expect(`${p} ${got ? sha(got) : 'missing'}`).toBe(`${p} ${sha(want)}`);
    }
    // The copy shares big2's chunks, whichever thread chunked each.
    const content = new Map<string, readonly string[]>();
    for await (const n of walkSnapshot(repo, await findSnapshot(repo, 'latest')))
      if (n.node.type === 'file') content.set(n.path, n.node.content ?? []);
    expect(content.get('/data/big6-copy.bin')).toEqual(content.get('/data/big2.bin'));
    // The lane cuts exactly where this thread does: reading everything again here adds nothing.
    const again = await backup(repo, localSource(root, files), { workers: 0, parent: false });
    expect(again.snapshot.summary!.dataBlobs).toBe(0);
  });

  it('reads large local files itself (direct I/O where the filesystem has it): same snapshot as through open()', async () => {
    const files: Record<string, Uint8Array> = {
      '/data/vm/disk.img': Buffer.concat([
        prng(5 * 1024 * 1024 + 4096, 31),
        new Uint8Array(3 * 1024 * 1024),
        prng(777, 32),
      ]),
      '/data/vm/odd.bin': prng(8 * 1024 * 1024 + 1, 33),
      '/data/vm/shrinks.bin': prng(9 * 1024 * 1024, 34),
      '/data/small.txt': text(10_000, 35),
    };
    const root = await writeTree(files);
    const shrunk = files['/data/vm/shrinks.bin']!.subarray(0, 8 * 1024 * 1024 + 100);
    await writeFile(join(root, 'data/vm/shrinks.bin'), shrunk);

    const repo = await fresh();
    const src = localSource(root, files);
    const res = await backup(repo, src, { workers: 0, directIo: true });
    // Files of 8 MiB and more are opened by the engine, not through the source.
    expect(src.opened).toEqual([]);
    expect(res.warnings.map((w) => w.path)).toEqual(['/data/vm/shrinks.bin']);
    const t = memTarget();
    const r = await restore(repo, await findSnapshot(repo, 'latest'), t, { verify: true });
    expect(r.errors).toEqual([]);
    for (const [p, data] of Object.entries(files)) {
      const want = p.includes('shrinks') ? shrunk : data;
      const got = t.out.get(p.slice(1))?.data;
      expect(`${p} ${got ? sha(got) : 'missing'}`).toBe(`${p} ${sha(want)}`);
    }
    // Read buffered (direct I/O off), the chunks are the same ones.
    const again = await backup(repo, localSource(root, files), {
      workers: 0,
      parent: false,
      directIo: false,
    });
    expect(again.snapshot.summary!.dataBlobs).toBe(0);
    // And through the source's reader (no local path) too.
    const remote = localSource(root, files);
    const entries = remote.entries.bind(remote);
    remote.entries = async function* (signal) {
      for await (const ev of entries(signal))
        yield ev.kind === 'entry' ? { ...ev, localPath: undefined } : ev;
    };
    const third = await backup(repo, remote, { workers: 0, parent: false });
    expect(remote.opened.sort()).toEqual([
      '/data/small.txt',
      '/data/vm/disk.img',
      '/data/vm/odd.bin',
      '/data/vm/shrinks.bin',
    ]);
    expect(third.snapshot.summary!.dataBlobs).toBe(0);
  });
});
