import { randomBytes } from 'node:crypto';
import {
  chmod,
  link,
  lstat,
  mkdir,
  readdir,
  readFile,
  readlink,
  stat,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { join } from 'node:path';
import {
  type BackupSource,
  type FileMetadata,
  isForgeError,
  type RestoreTarget,
  type SourceEntry,
} from '@backupforge/common';
import { afterEach, describe, expect, it } from 'vitest';
import { createFsRestoreTarget, type RestoreWarning } from './fs-restore-target.ts';
import { createFsSource } from './fs-source.ts';
import {
  collect,
  entriesOf,
  execFileAsync,
  fixtureDir,
  removeTempDirs,
  tempDir,
  tryMountTmpfs,
  umount,
  warningsOf,
} from './internal/test-support.ts';

afterEach(removeTempDirs);

const asRoot = process.getuid?.() === 0;

function fileMeta(over: Partial<FileMetadata> = {}): FileMetadata {
  return {
    type: 'file',
    mode: 0o644,
    uid: 0,
    gid: 0,
    size: 0,
    mtimeNs: 1_600_000_000_123_456_789n,
    atimeNs: 1_600_000_001_000_000_000n,
    ctimeNs: 0n,
    inode: 1n,
    device: 1n,
    links: 1,
    ...over,
  };
}

const isCode = (code: string) => (e: unknown) => isForgeError(e) && e.code === code;

/**
 * A tiny stand-in for the engine's restore: replays a source walk into a target in the order
 * the RestoreTarget contract promises (dir pre-order, finishDir post-order, hardlinks to the
 * first name seen).
 */
async function copyInto(source: BackupSource, target: RestoreTarget, chunk = 64 * 1024): Promise<void> {
  await target.prepare();
  const open: SourceEntry[] = [];
  const firstName = new Map<string, readonly string[]>();
  const isAncestor = (dir: SourceEntry, path: readonly string[]) =>
    dir.path.length < path.length && dir.path.every((c, i) => path[i] === c);
  try {
    for await (const ev of source.entries()) {
      if (ev.kind !== 'entry') throw new Error(`unexpected warning ${ev.message}`);
      while (open.length > 0 && !isAncestor(open[open.length - 1] as SourceEntry, ev.path)) {
        const done = open.pop() as SourceEntry;
        await target.finishDir(done.path, done.meta);
      }
      const { meta, path } = ev;
      switch (meta.type) {
        case 'dir':
          await target.dir(path, meta);
          open.push(ev);
          break;
        case 'file': {
          const key = `${meta.device}:${meta.inode}`;
          const first = meta.links > 1 ? firstName.get(key) : undefined;
          if (first) {
            await target.hardlink(path, first, meta);
            break;
          }
          if (meta.links > 1) firstName.set(key, path);
          const writer = await target.file(path, meta);
          const reader = await (ev.open?.() ?? Promise.reject(new Error('no open')));
          const buf = new Uint8Array(chunk);
          let offset = 0;
          try {
            for (let n = await reader.read(buf); n > 0; n = await reader.read(buf)) {
              await writer.write(buf.subarray(0, n), offset);
              offset += n;
            }
            await writer.close();
          } catch (e) {
            await writer.abort();
            throw e;
          } finally {
            await reader.close();
          }
          break;
        }
        case 'symlink':
          await target.symlink(path, meta);
          break;
        default:
          await target.special(path, meta);
      }
    }
    for (const done of open.reverse()) await target.finishDir(done.path, done.meta);
  } finally {
    await target.close();
  }
}

describe('createFsRestoreTarget: round trip', () => {
  it('restores a walked tree with identical content and metadata', async () => {
    const big = randomBytes(300_000);
    const src = await fixtureDir({
      'a.txt': 'alpha',
      'big.bin': big,
      'sp ace & ünï\ncode': 'names',
      empty: {},
      ro: { inner: 'read-only dir' },
      sub: { deeper: { 'x.txt': 'x' }, 'zeros.bin': new Uint8Array(200_000) },
    });
    await symlink('a.txt', join(src, 'ln'));
    await symlink('../missing/target', join(src, 'dangling'));
    await link(join(src, 'a.txt'), join(src, 'sub', 'hard-a'));
    await execFileAsync('mkfifo', ['-m', '0640', join(src, 'fifo')]);
    await chmod(join(src, 'a.txt'), 0o4751);
    await chmod(join(src, 'sub'), 0o1777);
    if (asRoot) {
      await execFileAsync('chown', ['1234:5678', join(src, 'big.bin')]);
      await execFileAsync('chown', ['-h', '4321:8765', join(src, 'ln')]);
      await execFileAsync('mknod', ['-m', '0600', join(src, 'null'), 'c', '1', '3']);
    }
    await execFileAsync('touch', ['-h', '-d', '@1000000000.987654321', join(src, 'ln')]);
    await execFileAsync('touch', ['-d', '@1234567890.123456789', join(src, 'big.bin')]);
    await chmod(join(src, 'ro'), 0o555);

    const dest = await tempDir();
    const warnings: RestoreWarning[] = [];
    await copyInto(
      createFsSource({ paths: [src] }),
      createFsRestoreTarget({ root: dest, onWarning: (w) => warnings.push(w) }),
      7777,
    );
    expect(warnings).toEqual([]);

    const restored = join(dest, src);
    const before = entriesOf(await collect(createFsSource({ paths: [src] })));
    const afterEvents = await collect(createFsSource({ paths: [restored] }));
    expect(warningsOf(afterEvents)).toEqual([]);
    const after = entriesOf(afterEvents);
    const rel = (e: SourceEntry, base: string) => e.path.slice(base.split('/').length - 1).join('/');
    const within = (list: SourceEntry[], base: string) =>
      list.filter((e) => e.path.length >= base.split('/').length - 1);
    const b = within(before, src);
    const a = within(after, restored);
    expect(a.map((e) => rel(e, restored))).toEqual(b.map((e) => rel(e, src)));
    expect(b.length).toBeGreaterThan(12);

    const inodeGroups = (list: SourceEntry[], base: string) => {
      const m = new Map<bigint, string[]>();
      for (const e of list)
        if (e.meta.type === 'file') m.set(e.meta.inode, [...(m.get(e.meta.inode) ?? []), rel(e, base)]);
      return [...m.values()].filter((g) => g.length > 1);
    };
    expect(inodeGroups(a, restored)).toEqual([['a.txt', 'sub/hard-a']]);
    expect(inodeGroups(a, restored)).toEqual(inodeGroups(b, src));

    for (let i = 0; i < b.length; i++) {
      const x = b[i] as SourceEntry;
      const y = a[i] as SourceEntry;
      const name = rel(x, src);
      const pick = (m: FileMetadata) => ({
        type: m.type,
        mode: m.type === 'symlink' ? 0 : m.mode,
        uid: m.uid,
        gid: m.gid,
        size: m.size,
        rdev: m.rdev,
        linkTarget: m.linkTarget,
        mtimeUs: m.mtimeNs / 1000n,
      });
      expect({ name, ...pick(y.meta) }).toEqual({ name, ...pick(x.meta) });
      if (x.meta.type === 'file') {
        const [c1, c2] = await Promise.all([readFile(join('/', ...x.path)), readFile(join('/', ...y.path))]);
        expect(c2.equals(c1), name).toBe(true);
      }
    }
    if (asRoot) {
      expect((await lstat(join(restored, 'big.bin'))).uid).toBe(1234);
      expect((await lstat(join(restored, 'ln'))).gid).toBe(8765);
      expect((await lstat(join(restored, 'null'))).isCharacterDevice()).toBe(true);
    }
    expect((await lstat(join(restored, 'fifo'))).isFIFO()).toBe(true);
    expect(await readlink(join(restored, 'dangling'))).toBe('../missing/target');
    expect((await stat(join(restored, 'sub', 'zeros.bin'))).blocks).toBe(0);
  });

  it('keeps a file whose writer was aborted out of the tree', async () => {
    const dest = await tempDir();
    const target = createFsRestoreTarget({ root: dest });
    await target.prepare();
    const w = await target.file(['part'], fileMeta({ size: 10 }));
    await w.write(Buffer.from('12345'), 0);
    await w.abort();
    expect(await readdir(dest)).toEqual([]);
    const w2 = await target.file(['left-open'], fileMeta({ size: 3 }));
    await w2.write(Buffer.from('abc'), 0);
    await target.close();
    expect(await readdir(dest)).toEqual([]);
  });
});

describe('createFsRestoreTarget: files', () => {
  it('leaves holes for all-zero chunks: a 1 GiB sparse file uses almost no blocks', async () => {
    const dest = await tempDir();
    const target = createFsRestoreTarget({ root: dest });
    await target.prepare();
    const size = 1024 * 1024 * 1024;
    const chunk = 1024 * 1024;
    const w = await target.file(['sparse.img'], fileMeta({ size }));
    const zeros = new Uint8Array(chunk);
    const data = new Uint8Array(chunk).fill(0xab);
    for (let off = 0; off < size; off += chunk) await w.write(off === chunk * 10 ? data : zeros, off);
    await w.close();
    const st = await stat(join(dest, 'sparse.img'));
    expect(st.size).toBe(size);
    expect(st.blocks * 512).toBeLessThan(8 * chunk);
    const fh = await import('node:fs/promises').then((m) => m.open(join(dest, 'sparse.img')));
    const probe = Buffer.alloc(4);
    await fh.read(probe, 0, 4, chunk * 10 + 5);
    await fh.close();
    expect([...probe]).toEqual([0xab, 0xab, 0xab, 0xab]);
  });

  it('sets the size from the metadata, keeping trailing holes, and times to the microsecond', async () => {
    const dest = await tempDir();
    const target = createFsRestoreTarget({ root: dest });
    await target.prepare();
    const meta = fileMeta({ size: 5000, mode: 0o600, mtimeNs: 1_700_000_000_999_999_999n });
    const w = await target.file(['f'], meta);
    await w.write(Buffer.from('head'), 0);
    await w.write(new Uint8Array(4996), 4);
    await w.close();
    const st = await stat(join(dest, 'f'), { bigint: true });
    expect(st.size).toBe(5000n);
    expect(Number(st.mode) & 0o7777).toBe(0o600);
    expect(st.mtimeNs / 1000n).toBe(1_700_000_000_999_999n);
    expect(st.atimeNs / 1000n).toBe(1_600_000_001_000_000n);
  });

  it('refuses to restore into a non-empty directory unless overwrite is set', async () => {
    const dest = await fixtureDir({ existing: 'x' });
    const err = await createFsRestoreTarget({ root: dest })
      .prepare()
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(isForgeError(err, 'FORGE_TARGET_NOT_EMPTY')).toBe(true);
    expect(isForgeError(err) && err.message).toContain(dest);
    expect(isForgeError(err) && err.hint).toBe('restore into an empty directory or pass --overwrite');
    await expect(createFsRestoreTarget({ root: dest, overwrite: true }).prepare()).resolves.toBeUndefined();
  });

  it('creates a missing root', async () => {
    const dest = join(await tempDir(), 'new', 'root');
    await createFsRestoreTarget({ root: dest }).prepare();
    expect((await stat(dest)).isDirectory()).toBe(true);
  });

  it('overwrite replaces files without writing through hardlinks or symlinks', async () => {
    const outside = await fixtureDir({ victim: 'outside' });
    const dest = await fixtureDir({ f: 'old', other: 'old2' });
    await link(join(dest, 'f'), join(outside, 'hardlinked'));
    await symlink(join(outside, 'victim'), join(dest, 'other-link'));
    const target = createFsRestoreTarget({ root: dest, overwrite: true });
    await target.prepare();
    for (const name of ['f', 'other-link']) {
      const w = await target.file([name], fileMeta({ size: 3 }));
      await w.write(Buffer.from('new'), 0);
      await w.close();
    }
    await target.close();
    expect(await readFile(join(dest, 'f'), 'utf8')).toBe('new');
    expect(await readFile(join(outside, 'hardlinked'), 'utf8')).toBe('old');
    expect((await lstat(join(dest, 'other-link'))).isFile()).toBe(true);
    expect(await readFile(join(outside, 'victim'), 'utf8')).toBe('outside');
  });

  it('without overwrite, an existing name is an error, not a silent overwrite', async () => {
    const dest = await tempDir();
    const target = createFsRestoreTarget({ root: dest });
    await target.prepare();
    await (await target.file(['f'], fileMeta())).close();
    await expect(target.file(['f'], fileMeta())).rejects.toSatisfy(isCode('FORGE_ALREADY_EXISTS'));
  });
});

describe('createFsRestoreTarget: path safety', () => {
  it.each([[['..', 'escape']], [['a', '..', '..', 'x']], [['a/b']], [['']], [['.']], [['nul\0']], [[]]])(
    'rejects %j with FORGE_FORMAT',
    async (path) => {
      const dest = await tempDir();
      const target = createFsRestoreTarget({ root: dest });
      await target.prepare();
      await expect(target.file(path, fileMeta())).rejects.toSatisfy(isCode('FORGE_FORMAT'));
      await expect(target.symlink(path, fileMeta({ type: 'symlink', linkTarget: 'x' }))).rejects.toSatisfy(
        isCode('FORGE_FORMAT'),
      );
      await expect(target.hardlink(['ok'], path, fileMeta())).rejects.toSatisfy(isCode('FORGE_FORMAT'));
      await expect(target.special(path, fileMeta({ type: 'fifo' }))).rejects.toSatisfy(
        isCode('FORGE_FORMAT'),
      );
      if (path.length > 0) {
        await expect(target.dir(path, fileMeta({ type: 'dir' }))).rejects.toSatisfy(isCode('FORGE_FORMAT'));
      }
      expect(await readdir(dest)).toEqual([]);
    },
  );

  it('does not follow a symlink from the snapshot when writing below it', async () => {
    const outside = await tempDir();
    const dest = await tempDir();
    const target = createFsRestoreTarget({ root: dest });
    await target.prepare();
    await target.symlink(['evil'], fileMeta({ type: 'symlink', linkTarget: outside }));
    await expect(target.file(['evil', 'passwd'], fileMeta())).rejects.toSatisfy(isCode('FORGE_FORMAT'));
    await expect(target.dir(['evil', 'd'], fileMeta({ type: 'dir' }))).rejects.toSatisfy(
      isCode('FORGE_FORMAT'),
    );
    await writeFile(join(outside, 'secret'), 's');
    await expect(target.hardlink(['copy'], ['evil', 'secret'], fileMeta())).rejects.toSatisfy(
      isCode('FORGE_FORMAT'),
    );
    expect(await readdir(outside)).toEqual(['secret']);
  });

  it('creates missing parents that the engine did not announce, as real directories', async () => {
    const dest = await tempDir();
    const target = createFsRestoreTarget({ root: dest });
    await target.prepare();
    await (await target.file(['a', 'b', 'c'], fileMeta())).close();
    expect((await lstat(join(dest, 'a', 'b'))).isDirectory()).toBe(true);
  });
});

describe('createFsRestoreTarget: special files', () => {
  it('creates fifos and warns (without throwing) about sockets', async () => {
    const dest = await tempDir();
    const warnings: RestoreWarning[] = [];
    const target = createFsRestoreTarget({ root: dest, onWarning: (w) => warnings.push(w) });
    await target.prepare();
    await target.special(['p'], fileMeta({ type: 'fifo', mode: 0o640 }));
    await target.special(['s'], fileMeta({ type: 'socket' }));
    const st = await lstat(join(dest, 'p'));
    expect(st.isFIFO()).toBe(true);
    expect(st.mode & 0o7777).toBe(0o640);
    expect(warnings).toEqual([expect.objectContaining({ path: join(dest, 's') })]);
    expect(await readdir(dest)).toEqual(['p']);
  });

  it('reports a failing mknod through onWarning', async () => {
    const dest = await tempDir();
    const warnings: RestoreWarning[] = [];
    const target = createFsRestoreTarget({ root: dest, onWarning: (w) => warnings.push(w) });
    await target.prepare();
    await target.special(['p'], fileMeta({ type: 'fifo' }));
    // The name is taken now, so creating a device there fails.
    await target.special(['p'], fileMeta({ type: 'chardev', rdev: 0x103 }));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]?.path).toBe(join(dest, 'p'));
  });
});

describe('createFsRestoreTarget: full disk', () => {
  it('fails with FORGE_NO_SPACE when the target filesystem fills up', async (ctx) => {
    const dest = await tempDir();
    await mkdir(join(dest, 'mnt'));
    const mnt = join(dest, 'mnt');
    if (!(await tryMountTmpfs(mnt, '1m'))) {
      ctx.skip('mounting a tmpfs is not permitted here (needs root on Linux)');
      return;
    }
    try {
      const target = createFsRestoreTarget({ root: join(mnt, 'restore') });
      await target.prepare();
      const size = 4 * 1024 * 1024;
      const w = await target.file(['big.bin'], fileMeta({ size }));
      const data = randomBytes(64 * 1024);
      const run = async () => {
        for (let off = 0; off < size; off += data.length) await w.write(data, off);
        await w.close();
      };
      const err = await run().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(isForgeError(err, 'FORGE_NO_SPACE')).toBe(true);
      expect(isForgeError(err) && err.message).toMatch(/no space left on device/);
      expect(isForgeError(err) && err.message).toContain('big.bin');
      await w.abort();
      await target.close();
      expect(await readdir(join(mnt, 'restore'))).toEqual([]);
    } finally {
      await umount(mnt);
    }
  });
});
