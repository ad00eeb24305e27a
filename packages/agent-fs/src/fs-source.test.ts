import { chmod, link, lstat, mkdir, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isForgeError } from '@backupforge/common';
import { afterEach, describe, expect, it } from 'vitest';
import { createFsSource } from './fs-source.ts';
import {
  collect,
  entriesOf,
  execFileAsync,
  fixtureDir,
  readAll,
  relativePaths,
  removeTempDirs,
  tempDir,
  tryMountTmpfs,
  umount,
  walkRequest,
  warningsOf,
} from './internal/test-support.ts';
import { runWalk } from './internal/walk-run.ts';

afterEach(removeTempDirs);

const byteOrder = (a: string, b: string) => Buffer.compare(Buffer.from(a), Buffer.from(b));

describe('createFsSource: walk order', () => {
  it('yields ancestors first, then a depth-first pre-order sorted by UTF-8 bytes', async () => {
    // U+FF5A sorts before U+1F600 in UTF-8 byte order but after it in UTF-16 (JS) order.
    const names = ['b', 'a', 'B', 'é', 'z', 'a b', '\uFF5A', '\u{1F600}', 'new\nline'];
    const tree: Record<string, string | Record<string, string>> = {};
    for (const n of names) tree[n] = n;
    tree.dir = { y: '1', x: '2' };
    const root = await fixtureDir(tree);
    const events = await collect(createFsSource({ paths: [root] }));
    expect(warningsOf(events)).toEqual([]);
    const entries = entriesOf(events);
    const rootParts = root.split('/').filter(Boolean);
    // Every ancestor of the target, from the top, then the target itself.
    for (let i = 0; i < rootParts.length; i++) {
      expect(entries[i]?.path).toEqual(rootParts.slice(0, i + 1));
      expect(entries[i]?.meta.type).toBe('dir');
    }
    expect(entries.some((e) => e.path.length === 0)).toBe(false);
    const expected = [...names, 'dir']
      .sort(byteOrder)
      .flatMap((n) => (n === 'dir' ? ['dir', 'dir/x', 'dir/y'] : [n]));
    expect(relativePaths(events, root)).toEqual(expected);
    expect(expected.indexOf('\uFF5A')).toBeLessThan(expected.indexOf('\u{1F600}'));
  });

  it('merges several targets into one sorted tree, dropping duplicates and nested targets', async () => {
    const root = await fixtureDir({ a: { x: { f: '1' }, y: '2' }, b: { g: '3' }, c: { h: '4' } });
    const source = createFsSource({
      paths: [join(root, 'c'), join(root, 'a/x'), join(root, 'a'), `${root}/c/`],
    });
    expect(source.kind).toBe('fs');
    expect(source.paths).toEqual([join(root, 'a'), join(root, 'c')]);
    const events = await collect(source);
    const paths = entriesOf(events).map((e) => e.path.join('/'));
    expect(new Set(paths).size).toBe(paths.length);
    expect(relativePaths(events, root)).toEqual(['a', 'a/x', 'a/x/f', 'a/y', 'c', 'c/h']);
  });

  it('resolves relative paths against the working directory', () => {
    const source = createFsSource({ paths: ['some/rel'] });
    expect(source.paths).toEqual([join(process.cwd(), 'some/rel')]);
  });

  it('rejects an empty path list', () => {
    expect(() => createFsSource({ paths: [] })).toThrow(expect.objectContaining({ code: 'FORGE_USAGE' }));
  });

  it('records a symlink given as a target as a symlink, without following it', async () => {
    const root = await fixtureDir({ real: { inner: 'x' }, link: { symlink: 'real' } });
    const events = await collect(createFsSource({ paths: [join(root, 'link')] }));
    const last = entriesOf(events).at(-1);
    expect(last?.path.at(-1)).toBe('link');
    expect(last?.meta.type).toBe('symlink');
    expect(last?.meta.linkTarget).toBe('real');
    expect(relativePaths(events, root)).toEqual(['link']);
  });

  it('warns about a target that does not exist and still walks the others', async () => {
    const root = await fixtureDir({ ok: 'x' });
    const missing = join(root, 'nope', 'deeper');
    const events = await collect(createFsSource({ paths: [missing, join(root, 'ok')] }));
    expect(warningsOf(events)).toEqual([
      expect.objectContaining({ kind: 'warning', path: missing, code: 'FORGE_NOT_FOUND' }),
    ]);
    expect(warningsOf(events)[0]?.message).not.toContain('\n');
    expect(relativePaths(events, root)).toEqual(['ok']);
  });

  it('stops with FORGE_ABORTED when the signal fires', async () => {
    const root = await fixtureDir({ a: '1', b: '2', c: '3' });
    const ac = new AbortController();
    const seen: string[] = [];
    const run = async () => {
      for await (const ev of createFsSource({ paths: [root] }).entries(ac.signal)) {
        if (ev.kind === 'entry') seen.push(ev.path.join('/'));
        if (ev.kind === 'entry' && ev.path.at(-1) === 'a') ac.abort();
      }
    };
    await expect(run()).rejects.toSatisfy((e: unknown) => isForgeError(e, 'FORGE_ABORTED'));
    expect(seen.at(-1)?.endsWith('/a')).toBe(true);
  });
});

describe('createFsSource: metadata', () => {
  it('reports lstat metadata: nanosecond times, modes, owners, symlinks, hardlinks, fifos, devices', async () => {
    const root = await fixtureDir({ 'file.txt': 'hello', empty: {}, sub: { 'x.bin': new Uint8Array(1000) } });
    const f = join(root, 'file.txt');
    await execFileAsync('touch', ['-h', '-m', '-d', '@1577934245.123456789', f]);
    await execFileAsync('chmod', ['4750', f]);
    await symlink('file.txt', join(root, 'ln'));
    await symlink('/does/not/exist', join(root, 'dangling'));
    await link(f, join(root, 'hard'));
    await execFileAsync('mkfifo', [join(root, 'fifo')]);
    const asRoot = process.getuid?.() === 0;
    if (asRoot) {
      await execFileAsync('chown', ['-h', '1234:5678', join(root, 'ln')]);
      await execFileAsync('mknod', [join(root, 'null'), 'c', '1', '3']);
    }
    const events = await collect(createFsSource({ paths: [root] }));
    expect(warningsOf(events)).toEqual([]);
    const byName = new Map(entriesOf(events).map((e) => [e.path.slice(-1)[0], e]));

    const file = byName.get('file.txt');
    const st = await lstat(f, { bigint: true });
    expect(file?.meta).toMatchObject({
      type: 'file',
      mode: 0o4750,
      size: 5,
      mtimeNs: 1577934245123456789n,
      atimeNs: st.atimeNs,
      ctimeNs: st.ctimeNs,
      inode: st.ino,
      device: st.dev,
      links: 2,
      uid: Number(st.uid),
      gid: Number(st.gid),
    });
    if (asRoot) expect(file?.meta.user).toBe('root');
    expect(file?.meta.rdev).toBeUndefined();
    expect(file?.meta.linkTarget).toBeUndefined();
    expect(byName.get('hard')?.meta.inode).toBe(st.ino);
    expect(byName.get('ln')?.meta).toMatchObject({ type: 'symlink', linkTarget: 'file.txt', size: 0 });
    if (asRoot) expect(byName.get('ln')?.meta).toMatchObject({ uid: 1234, gid: 5678 });
    expect(byName.get('dangling')?.meta).toMatchObject({ type: 'symlink', linkTarget: '/does/not/exist' });
    expect(byName.get('ln')?.open).toBeUndefined();
    expect(byName.get('fifo')?.meta).toMatchObject({ type: 'fifo', size: 0 });
    expect(byName.get('empty')?.meta).toMatchObject({ type: 'dir', size: 0 });
    expect(relativePaths(events, root).filter((p) => p.startsWith('empty'))).toEqual(['empty']);
    if (asRoot) {
      expect(byName.get('null')?.meta).toMatchObject({
        type: 'chardev',
        rdev: Number((await lstat('/dev/null')).rdev),
      });
    }
    expect(await readAll(file as NonNullable<typeof file>, 2)).toEqual(Buffer.from('hello'));
    const bin = byName.get('x.bin');
    expect((await readAll(bin as NonNullable<typeof bin>, 333)).length).toBe(1000);
  });

  it('opens file content through a reader that fills buffers and closes idempotently', async () => {
    const content = Buffer.alloc(100_000, 7);
    const root = await fixtureDir({ big: content });
    const entry = entriesOf(await collect(createFsSource({ paths: [join(root, 'big')] }))).at(-1);
    const reader = await (entry?.open?.() ?? Promise.reject(new Error('no open')));
    const buf = new Uint8Array(65_536);
    expect(await reader.read(buf)).toBe(65_536);
    expect(await reader.read(buf)).toBe(100_000 - 65_536);
    expect(await reader.read(buf)).toBe(0);
    await reader.close();
    await reader.close();
  });

  it('reports a file replaced by a symlink after the walk instead of following it', async () => {
    const root = await fixtureDir({ f: 'data', secret: 'secret' });
    const entry = entriesOf(await collect(createFsSource({ paths: [join(root, 'f')] }))).at(-1);
    await unlink(join(root, 'f'));
    await symlink('secret', join(root, 'f'));
    await expect(entry?.open?.()).rejects.toSatisfy((e: unknown) => isForgeError(e));
  });
});

describe('createFsSource: directories listed ahead of the walk', () => {
  it('yields every entry of a wide, deep tree once, in order', async () => {
    // More directories than are listed ahead at once, nested, each with files and a subdirectory.
    const tree: Record<string, Record<string, string | Record<string, string>>> = {};
    const expected: string[] = [];
    for (let i = 0; i < 150; i++) {
      const d = `d${String(i).padStart(3, '0')}`;
      tree[d] = { a: `${i}a`, s: { x: `${i}x`, y: `${i}y` }, z: `${i}z` };
      expected.push(d, `${d}/a`, `${d}/s`, `${d}/s/x`, `${d}/s/y`, `${d}/z`);
    }
    const root = await fixtureDir(tree);
    const events = await collect(createFsSource({ paths: [root] }));
    expect(warningsOf(events)).toEqual([]);
    expect(relativePaths(events, root)).toEqual(expected);
  });
});

describe('createFsSource: things that go away or cannot be read', () => {
  // Tests run as root, so permission bits do not block reads. These tests remove things while
  // the walk is paused on an entry, which exercises the ENOENT paths of lstat and readdir.
  it('a file that vanishes after the listing: a walk warning, or an entry whose open fails', async () => {
    const root = await fixtureDir({ a: '1', b: '2', c: '3' });
    const events = [];
    for await (const ev of createFsSource({ paths: [root] }).entries()) {
      events.push(ev);
      // The parent's listing already holds `b`. Its lstat runs ahead of the walk (so it may have
      // seen `b` still there); either way `b` must never be read as if it existed.
      if (ev.kind === 'entry' && ev.path.at(-1) === 'a') await unlink(join(root, 'b'));
    }
    const b = events.find((ev) => ev.kind === 'entry' && ev.path.at(-1) === 'b');
    if (b) {
      expect(relativePaths(events, root)).toEqual(['a', 'b', 'c']);
      await expect((b as { open: () => Promise<unknown> }).open()).rejects.toMatchObject({
        code: 'FORGE_NOT_FOUND',
      });
    } else {
      expect(relativePaths(events, root)).toEqual(['a', 'c']);
      expect(warningsOf(events)).toEqual([
        expect.objectContaining({ path: join(root, 'b'), code: 'FORGE_NOT_FOUND' }),
      ]);
    }
  });

  it('warns about a directory removed after its entry was yielded and goes on (walk on this thread)', async () => {
    // `entries()` walks on a worker, ahead of its consumer, so a removal after an entry was
    // yielded may come too late to be seen at all; the walk itself is driven here directly.
    const root = await fixtureDir({ d: { x: '1' }, e: '2' });
    const events = [];
    for await (const ev of runWalk(walkRequest([root]))) {
      events.push(ev);
      // `d` is listed ahead of the walk (as soon as its lstat shows a directory), so the listing
      // may or may not still see `x`; either way `x` is never yielded and the walk goes on.
      if (ev.kind === 'entry' && ev.path.at(-1) === 'd') await rm(join(root, 'd'), { recursive: true });
    }
    expect(relativePaths(events, root)).toEqual(['d', 'e']);
    const warnings = warningsOf(events);
    expect(warnings.map((w) => w.code)).toEqual(['FORGE_NOT_FOUND']);
    expect([join(root, 'd'), join(root, 'd', 'x')]).toContain(warnings[0]!.path);
  });
});

describe('createFsSource: permission errors (real EACCES, walked as user nobody)', () => {
  // As root, permission bits do not block reads. So this test runs the walk in a child Node
  // process with uid/gid 65534 (nobody), which sees genuine EACCES from readdir and open.
  it('warns about an unreadable directory and fails to open an unreadable file', async (ctx) => {
    if (process.getuid?.() !== 0) {
      ctx.skip('needs root to start a process as another user');
      return;
    }
    const root = await fixtureDir({ locked: { f: 'x' }, ok: 'fine', secret: 's' });
    await chmod(root, 0o755);
    await chmod(join(root, 'locked'), 0o000);
    await chmod(join(root, 'secret'), 0o000);
    const script = join(root, 'probe.mjs');
    await writeFile(
      script,
      `const { createFsSource } = await import(${JSON.stringify(new URL('./index.ts', import.meta.url).href)});
const events = [];
for await (const ev of createFsSource({ paths: [process.argv[2]], exclude: ['probe.mjs'] }).entries()) {
  if (ev.kind === 'warning') { events.push(ev); continue; }
  let openError;
  if (ev.open) await ev.open().then((r) => r.close(), (e) => { openError = e.code; });
  events.push({ kind: 'entry', name: ev.path.at(-1), openError });
}
console.log(JSON.stringify(events));`,
    );
    await chmod(script, 0o644);
    let stdout: string;
    try {
      ({ stdout } = await execFileAsync(
        process.execPath,
        ['--conditions=@backupforge/source', script, root],
        {
          uid: 65534,
          gid: 65534,
        },
      ));
    } catch (e) {
      ctx.skip(`cannot run node as nobody here: ${String(e).split('\n')[0]}`);
      return;
    }
    const events = JSON.parse(stdout) as Array<Record<string, unknown>>;
    const mine = events.filter(
      (e) => e.kind === 'warning' || ['locked', 'ok', 'secret'].includes(String(e.name)),
    );
    expect(mine).toEqual([
      { kind: 'entry', name: 'locked' },
      expect.objectContaining({ kind: 'warning', path: join(root, 'locked'), code: 'FORGE_PERMISSION' }),
      { kind: 'entry', name: 'ok' },
      { kind: 'entry', name: 'secret', openError: 'FORGE_PERMISSION' },
    ]);
  });
});

describe('createFsSource: excludes', () => {
  const tree = {
    'a.log': '1',
    'B.LOG': '2',
    'b.txt': '3',
    'Copy (1).txt': '4',
    node_modules: { 'x.js': '5' },
    src: { node_modules: { 'y.js': '6' }, 'main.ts': '7' },
    deep: { a: { b: { c: { 'keep.txt': '8', 't.tmp': '9' } } }, 'top.tmp': '10' },
    cache: { 'CACHEDIR.TAG': 'Signature: 8a477f597d28d172789f06886806bc55\n# a cache', 'data.bin': '11' },
    fakecache: { 'CACHEDIR.TAG': 'not a signature', 'data.bin': '12' },
    keep: { '.nobackup': '', z: '13', sub: { w: '14' } },
  };
  const TAG = 'CACHEDIR.TAG:Signature: 8a477f597d28d172789f06886806bc55';

  async function walk(options: Partial<Parameters<typeof createFsSource>[0]>): Promise<string[]> {
    const root = await fixtureDir(tree);
    const source = createFsSource({ paths: [root], ...options });
    const events = await collect(source);
    expect(warningsOf(events)).toEqual([]);
    return relativePaths(events, root);
  }

  it('includes everything without excludes (control)', async () => {
    const all = await walk({});
    expect(all).toContain('node_modules/x.js');
    expect(all).toContain('cache/data.bin');
    expect(all).toHaveLength(28);
  });

  it('exclude: a pattern without "/" matches a name at any depth, case-sensitively', async () => {
    const paths = await walk({ exclude: ['*.log', 'node_modules'] });
    expect(paths).not.toContain('a.log');
    expect(paths).toContain('B.LOG');
    // Directories are not descended into: their (unmatched) children are absent too.
    expect(paths.filter((p) => p.includes('node_modules'))).toEqual([]);
    expect(paths).toContain('src/main.ts');
  });

  it('iexclude matches case-insensitively', async () => {
    const paths = await walk({ iexclude: ['*.LOG', 'NODE_MODULES'] });
    expect(paths.filter((p) => /\.log$/i.test(p) || p.includes('node_modules'))).toEqual([]);
    expect(paths).toContain('b.txt');
  });

  it('treats glob-looking characters of other syntaxes literally, like restic', async () => {
    const paths = await walk({ exclude: ['Copy (1).txt'] });
    expect(paths).not.toContain('Copy (1).txt');
    expect(paths).toContain('b.txt');
  });

  it('anchored patterns start at the filesystem root; unanchored ones match anywhere', async () => {
    const root = await fixtureDir(tree);
    const events = await collect(createFsSource({ paths: [root], exclude: [`${root}/node_modules`] }));
    const paths = relativePaths(events, root);
    expect(paths).not.toContain('node_modules');
    expect(paths).toContain('src/node_modules/y.js');
    // The same text without the leading root does not match a top-level anchored path.
    const paths2 = await walk({ exclude: ['/node_modules'] });
    expect(paths2).toContain('node_modules/x.js');
    // Unanchored patterns with a slash match trailing components anywhere.
    const paths3 = await walk({ exclude: ['src/node_modules'] });
    expect(paths3).toContain('node_modules/x.js');
    expect(paths3).not.toContain('src/node_modules');
  });

  it('"**" matches across directories', async () => {
    const root = await fixtureDir(tree);
    const events = await collect(createFsSource({ paths: [root], exclude: [`${root}/deep/**/*.tmp`] }));
    const paths = relativePaths(events, root);
    expect(paths).not.toContain('deep/a/b/c/t.tmp');
    expect(paths).not.toContain('deep/top.tmp');
    expect(paths).toContain('deep/a/b/c/keep.txt');
    const paths2 = await walk({ exclude: ['deep/**/c'] });
    expect(paths2.filter((p) => p.startsWith('deep/a/b/c'))).toEqual([]);
    expect(paths2).toContain('deep/a/b');
  });

  it('exclude-file: one pattern per line, comments and blank lines ignored', async () => {
    const dir = await tempDir();
    const file = join(dir, 'excludes.txt');
    await writeFile(file, '# build output\n\n  node_modules  \n*.tmp\n# b.txt\n');
    const paths = await walk({ excludeFile: [file] });
    expect(paths.filter((p) => p.includes('node_modules') || p.endsWith('.tmp'))).toEqual([]);
    // The commented-out `# b.txt` line is not a pattern.
    expect(paths).toContain('b.txt');
  });

  it('exclude-file that cannot be read is an error', async () => {
    const root = await fixtureDir({ a: '1' });
    const source = createFsSource({ paths: [root], excludeFile: [join(root, 'missing')] });
    await expect(collect(source)).rejects.toSatisfy((e: unknown) => isForgeError(e, 'FORGE_NOT_FOUND'));
  });

  it('exclude-if-present NAME: keeps the directory and the tag file, drops the rest', async () => {
    const paths = await walk({ excludeIfPresent: ['.nobackup'] });
    expect(paths.filter((p) => p.startsWith('keep'))).toEqual(['keep', 'keep/.nobackup']);
    expect(paths).toContain('cache/data.bin');
  });

  it('exclude-if-present NAME:header only matches tag files that start with the header', async () => {
    const paths = await walk({ excludeIfPresent: [TAG] });
    expect(paths.filter((p) => p.startsWith('cache'))).toEqual(['cache', 'cache/CACHEDIR.TAG']);
    expect(paths).toContain('fakecache/data.bin');
    expect(paths).toContain('keep/z');
  });

  it('rejects malformed exclude options up front', () => {
    expect(() => createFsSource({ paths: ['/x'], exclude: [''] })).toThrow(
      expect.objectContaining({ code: 'FORGE_USAGE' }),
    );
    expect(() => createFsSource({ paths: ['/x'], excludeIfPresent: ['a/b'] })).toThrow(
      expect.objectContaining({ code: 'FORGE_USAGE' }),
    );
  });

  it('a target that is itself excluded yields nothing', async () => {
    const root = await fixtureDir(tree);
    const events = await collect(
      createFsSource({ paths: [join(root, 'node_modules')], exclude: ['node_modules'] }),
    );
    expect(events).toEqual([]);
  });

  it('scan() counts files and bytes, honouring excludes', async () => {
    const root = await fixtureDir({ a: '12345', b: { c: '123', d: { e: '1' } }, 'x.log': '1234567890' });
    await symlink('a', join(root, 'ln'));
    const source = createFsSource({ paths: [root], exclude: ['*.log'] });
    expect(await source.scan?.()).toEqual({ files: 3, bytes: 9 });
  });
});

describe('createFsSource: --one-file-system', () => {
  it('records a mount point but does not descend into it', async (ctx) => {
    const root = await fixtureDir({ a: '1', mnt: {}, z: { y: '2' } });
    const mnt = join(root, 'mnt');
    if (!(await tryMountTmpfs(mnt, '1m'))) {
      ctx.skip('mounting a tmpfs is not permitted here (needs root on Linux)');
      return;
    }
    try {
      await mkdir(join(mnt, 'inner'));
      await writeFile(join(mnt, 'inner', 'f'), 'x');
      const crossing = relativePaths(await collect(createFsSource({ paths: [root] })), root);
      expect(crossing).toEqual(['a', 'mnt', 'mnt/inner', 'mnt/inner/f', 'z', 'z/y']);
      const events = await collect(createFsSource({ paths: [root], oneFileSystem: true }));
      expect(relativePaths(events, root)).toEqual(['a', 'mnt', 'z', 'z/y']);
      const mntEntry = entriesOf(events).find((e) => e.path.at(-1) === 'mnt');
      expect(mntEntry?.meta.device).toBe((await lstat(mnt, { bigint: true })).dev);
      // A target that is itself on the other filesystem is walked.
      const inside = await collect(createFsSource({ paths: [mnt], oneFileSystem: true }));
      expect(relativePaths(inside, mnt)).toEqual(['inner', 'inner/f']);
    } finally {
      await umount(mnt);
    }
  });
});
