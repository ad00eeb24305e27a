// Restore fidelity through the public APIs: a seeded random tree (odd names, deep paths,
// symlinks, hardlinks, FIFOs, modes, owners, nanosecond times) must come back identical.
import { randomBytes } from 'node:crypto';
import { link, lstat, mkdir, readFile, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createFsRestoreTarget, createFsSource } from '@backupforge/agent-fs';
import type { BackupSource, SourceEvent } from '@backupforge/common';
import { backup, findSnapshot, Repository, restore } from '@backupforge/engine';
import { openBackend } from '@backupforge/storage';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../support/cli.ts';
import { compareTrees, generateTree, isRoot, scanTree, setTimeNs, sha256File } from './tree.ts';

const KDF = { memoryKiB: 8192, iterations: 1, parallelism: 1 };
const PASSWORD = 'fidelity-test-password';

const SEED = process.env.FORGE_FIDELITY_SEED
  ? Number(process.env.FORGE_FIDELITY_SEED)
  : Math.floor(Math.random() * 2 ** 31);

let work: { path: string; cleanup: () => Promise<void> };

beforeAll(async () => {
  work = await tempDir('forge-fidelity-');
});
afterAll(async () => {
  await work?.cleanup();
});

let n = 0;
async function newRepo(): Promise<Repository> {
  const backend = await openBackend(join(work.path, `repo-${++n}`));
  return Repository.init(backend, { password: PASSWORD, kdf: KDF });
}

/** Where a backed-up absolute path lands in a full restore (ancestors are restored too). */
const inRestore = (target: string, abs: string) => join(target, abs);

/** A source wrapper that records which files the engine opened. */
function countingSource(src: BackupSource, opened: string[]): BackupSource {
  return {
    kind: src.kind,
    paths: src.paths,
    ...(src.chunking ? { chunking: src.chunking } : {}),
    async *entries(signal?: AbortSignal): AsyncIterable<SourceEvent> {
      for await (const ev of src.entries(signal)) {
        if (ev.kind === 'entry' && ev.open) {
          const open = ev.open.bind(ev);
          // Without `localPath` the engine reads every file through `open()`, where it is counted
          // (small local files are otherwise read on a worker, unseen from here).
          const { localPath: _direct, ...rest } = ev;
          yield {
            ...rest,
            open: () => {
              opened.push(`/${ev.path.join('/')}`);
              return open();
            },
          };
        } else {
          yield ev;
        }
      }
    },
  };
}

describe(`restore fidelity (seed ${SEED}; replay with FORGE_FIDELITY_SEED=${SEED})`, () => {
  it('restores a random tree identically: content, types, modes, owners, µs mtimes, links, fifos', async () => {
    console.log(`restore-fidelity seed: ${SEED}`);
    const src = join(work.path, 'tree-src');
    const tree = await generateTree(src, SEED);
    expect(tree.counts.hardlink).toBeGreaterThan(0);
    const before = await scanTree(src);

    const repo = await newRepo();
    const result = await backup(repo, createFsSource({ paths: [src] }));
    expect(result.warnings, JSON.stringify(result.warnings)).toEqual([]);
    expect(result.partial).toBe(false);

    const target = join(work.path, 'tree-dst');
    const warnings: string[] = [];
    const snap = await findSnapshot(repo, result.snapshotId!);
    const res = await restore(
      repo,
      snap,
      createFsRestoreTarget({ root: target, onWarning: (w) => warnings.push(`${w.path}: ${w.message}`) }),
      { verify: true },
    );
    await repo.close();
    expect(res.errors).toEqual([]);
    expect(warnings).toEqual([]);

    // The backup did not disturb the source.
    expect(compareTrees(before, await scanTree(src), { owners: true, rootMeta: true })).toEqual([]);
    const after = await scanTree(inRestore(target, src));
    const diffs = compareTrees(before, after, { owners: isRoot, rootMeta: true });
    expect(diffs, `seed ${SEED}: ${diffs.length} differences`).toEqual([]);

    // Every restored regular file was read back once per inode (hardlinks share their content).
    const inodes = new Set([...before.values()].filter((e) => e.type === 'file').map((e) => e.ino));
    expect(res.verified).toBe(inodes.size);
    expect(res.files).toBe(tree.files.length);
  });

  it('restores a 2 GiB sparse file with the same content and keeps it sparse', async () => {
    const dir = join(work.path, 'sparse-src');
    await mkdir(dir);
    const file = join(dir, 'disk.img');
    const size = 2 * 1024 ** 3;
    await writeFile(file, '');
    const fh = await (await import('node:fs/promises')).open(file, 'r+');
    try {
      await fh.truncate(size);
      const mib = 1024 * 1024;
      await fh.write(randomBytes(2 * mib), 0, 2 * mib, 0);
      await fh.write(randomBytes(3 * mib), 0, 3 * mib, 1024 ** 3);
      await fh.write(randomBytes(mib), 0, mib, size - mib);
      await fh.write(Buffer.from('tail'), 0, 4, size - 4);
    } finally {
      await fh.close();
    }
    const srcStat = await stat(file);
    expect(srcStat.size).toBe(size);
    expect(srcStat.blocks * 512).toBeLessThan(64 * 1024 * 1024);
    const srcSha = await sha256File(file);

    const repo = await newRepo();
    const result = await backup(repo, createFsSource({ paths: [dir] }));
    expect(result.partial).toBe(false);
    const target = join(work.path, 'sparse-dst');
    const res = await restore(
      repo,
      await findSnapshot(repo, result.snapshotId!),
      createFsRestoreTarget({ root: target }),
      { subpath: dir },
    );
    await repo.close();
    expect(res.errors).toEqual([]);
    const out = join(target, 'disk.img');
    const st = await stat(out);
    expect(st.size).toBe(size);
    expect(st.blocks * 512, `restored file allocates ${st.blocks * 512} bytes`).toBeLessThan(
      64 * 1024 * 1024,
    );
    expect(await sha256File(out)).toBe(srcSha);
  });

  describe('restoring into a non-empty directory', () => {
    let repo: Repository;
    let dir: string;
    let snapId: string;

    beforeAll(async () => {
      dir = join(work.path, 'overwrite-src');
      await mkdir(join(dir, 'sub'), { recursive: true });
      await writeFile(join(dir, 'a.txt'), 'snapshot a\n');
      await writeFile(join(dir, 'b.txt'), 'snapshot b\n');
      await writeFile(join(dir, 'sub', 'c.txt'), 'snapshot c\n');
      repo = await newRepo();
      snapId = (await backup(repo, createFsSource({ paths: [dir] }))).snapshotId!;
    });
    afterAll(async () => {
      await repo?.close();
    });

    it('fails with FORGE_TARGET_NOT_EMPTY without overwrite and leaves the target alone', async () => {
      const target = join(work.path, 'ne-target');
      await mkdir(target);
      await writeFile(join(target, 'a.txt'), 'precious\n');
      await utimes(join(target, 'a.txt'), 1_000_000, 1_000_000);
      const before = await lstat(join(target, 'a.txt'), { bigint: true });
      const err = await restore(
        repo,
        await findSnapshot(repo, snapId),
        createFsRestoreTarget({ root: target }),
        {
          subpath: dir,
        },
      ).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toMatchObject({ code: 'FORGE_TARGET_NOT_EMPTY' });
      expect(await readFile(join(target, 'a.txt'), 'utf8')).toBe('precious\n');
      const after = await lstat(join(target, 'a.txt'), { bigint: true });
      expect(after.mtimeNs).toBe(before.mtimeNs);
      expect(after.ino).toBe(before.ino);
      expect(await lstat(join(target, 'b.txt')).catch(() => 'absent')).toBe('absent');
    });

    it('with overwrite, replaces the files in the way (never writing through links) and keeps unrelated files', async () => {
      const target = join(work.path, 'ow-target');
      const outside = join(work.path, 'ow-outside.txt');
      await mkdir(join(target, 'sub'), { recursive: true });
      await writeFile(outside, 'outside\n');
      await writeFile(join(target, 'a.txt'), 'old a, longer than the snapshot version\n');
      await link(join(target, 'a.txt'), join(target, 'a-hardlink.txt'));
      await symlink(outside, join(target, 'b.txt'));
      await writeFile(join(target, 'sub', 'c.txt'), 'old c\n');
      await writeFile(join(target, 'unrelated.txt'), 'keep me\n');
      await writeFile(join(target, 'sub', 'unrelated-too.txt'), 'keep me too\n');

      const res = await restore(
        repo,
        await findSnapshot(repo, snapId),
        createFsRestoreTarget({ root: target, overwrite: true }),
        { subpath: dir },
      );
      expect(res.errors).toEqual([]);
      expect(await readFile(join(target, 'a.txt'), 'utf8')).toBe('snapshot a\n');
      expect((await lstat(join(target, 'b.txt'))).isFile()).toBe(true);
      expect(await readFile(join(target, 'b.txt'), 'utf8')).toBe('snapshot b\n');
      expect(await readFile(join(target, 'sub', 'c.txt'), 'utf8')).toBe('snapshot c\n');
      // Unrelated files stay; the old file's other name and the symlink's target are untouched.
      expect(await readFile(join(target, 'unrelated.txt'), 'utf8')).toBe('keep me\n');
      expect(await readFile(join(target, 'sub', 'unrelated-too.txt'), 'utf8')).toBe('keep me too\n');
      expect(await readFile(join(target, 'a-hardlink.txt'), 'utf8')).toBe(
        'old a, longer than the snapshot version\n',
      );
      expect(await readFile(outside, 'utf8')).toBe('outside\n');
    });
  });

  it('incremental backup notices a same-size, same-mtime change through ctime and reads only changed files', async () => {
    const dir = join(work.path, 'incr-src');
    await mkdir(dir);
    const names = ['a.txt', 'b.txt', 'c.bin', 'd.txt', 'e.txt'];
    for (const name of names) await writeFile(join(dir, name), `${name} version 1 ${'x'.repeat(1000)}\n`);
    await writeFile(join(dir, 'c.bin'), randomBytes(3 * 1024 * 1024));
    const repo = await newRepo();
    const opened1: string[] = [];
    const r1 = await backup(repo, countingSource(createFsSource({ paths: [dir] }), opened1));
    expect(opened1.sort()).toEqual(names.map((n) => join(dir, n)).sort());

    // Same size, same mtime (to the nanosecond), new content: only ctime tells.
    const file = join(dir, 'b.txt');
    const st1 = await lstat(file, { bigint: true });
    await new Promise((r) => setTimeout(r, 30)); // past coarse ctime granularity
    const old = await readFile(file, 'utf8');
    const changed = old.replace('version 1', 'VERSION 2');
    expect(Buffer.byteLength(changed)).toBe(Buffer.byteLength(old));
    await writeFile(file, changed);
    await setTimeNs(file, st1.mtimeNs);
    const st2 = await lstat(file, { bigint: true });
    expect(st2.size).toBe(st1.size);
    expect(st2.mtimeNs).toBe(st1.mtimeNs);
    expect(st2.ino).toBe(st1.ino);
    expect(st2.ctimeNs).not.toBe(st1.ctimeNs);

    const opened2: string[] = [];
    const r2 = await backup(repo, countingSource(createFsSource({ paths: [dir] }), opened2));
    expect(r2.parent?.id).toBe(r1.snapshotId);
    expect(opened2).toEqual([file]);
    expect(r2.snapshot.summary).toMatchObject({
      filesChanged: 1,
      filesUnmodified: names.length - 1,
      filesNew: 0,
    });

    const target = join(work.path, 'incr-dst');
    const res = await restore(
      repo,
      await findSnapshot(repo, r2.snapshotId!),
      createFsRestoreTarget({ root: target }),
      {
        subpath: dir,
      },
    );
    await repo.close();
    expect(res.errors).toEqual([]);
    expect(await readFile(join(target, 'b.txt'), 'utf8')).toBe(changed);
    for (const name of names) {
      expect(await readFile(join(target, name))).toEqual(await readFile(join(dir, name)));
    }
  });

  it('restore with verify reads back every regular file', async () => {
    const dir = join(work.path, 'verify-src');
    await mkdir(join(dir, 'x', 'y'), { recursive: true });
    const files = ['one', 'two.bin', join('x', 'three'), join('x', 'y', 'four'), join('x', 'y', 'empty')];
    for (const [i, f] of files.entries())
      await writeFile(join(dir, f), randomBytes(i === 4 ? 0 : i * 700_000 + 1));
    await symlink('one', join(dir, 'link-to-one'));
    const repo = await newRepo();
    const r = await backup(repo, createFsSource({ paths: [dir] }));
    const res = await restore(
      repo,
      await findSnapshot(repo, r.snapshotId!),
      createFsRestoreTarget({ root: join(work.path, 'verify-dst') }),
      { verify: true, subpath: dir },
    );
    await repo.close();
    expect(res.errors).toEqual([]);
    expect(res.files).toBe(files.length);
    expect(res.verified).toBe(files.length);
  });
});
