// Bad input of every kind: each case fails with one clear line and a stable code, and nothing
// in the repository is written or lost.
import { randomBytes } from 'node:crypto';
import { appendFileSync } from 'node:fs';
import { mkdir, open, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import {
  blobPlaces,
  dataPacks,
  dirState,
  expectCleanError,
  expectNoStack,
  expectOnlyJson,
  forge,
  forgeBytes,
  forgePw,
  listNames,
  pseudoRandom,
  run,
  sha256,
  spawnForge,
} from '../cli/helpers.ts';
import { tempDir } from '../support/cli.ts';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

async function scratch(): Promise<string> {
  const t = await tempDir('forge-bad-');
  cleanups.push(t.cleanup);
  return t.path;
}

/** A temp dir with a repository `repo` holding one snapshot of `src` (small files unless given). */
async function repoWithSnapshot(
  files: Record<string, Buffer | string> = { 'a.txt': 'alpha\n', 'sub/b.bin': pseudoRandom(300_000, 1) },
): Promise<{ base: string; repo: string; src: string }> {
  const base = await scratch();
  const repo = join(base, 'repo');
  const src = join(base, 'src');
  for (const [p, c] of Object.entries(files)) {
    await mkdir(join(src, p, '..'), { recursive: true });
    await writeFile(join(src, p), c);
  }
  const i = await forgePw(['init', '-r', repo]);
  expect(i.code, i.stderr).toBe(0);
  const b = await forgePw(['backup', '-r', repo, src]);
  expect(b.code, b.stderr).toBe(0);
  return { base, repo, src };
}

async function flipBit(path: string, offset: number, bit = 0): Promise<void> {
  const fh = await open(path, 'r+');
  try {
    const b = Buffer.alloc(1);
    await fh.read(b, 0, 1, offset);
    b[0] = b[0]! ^ (1 << bit);
    await fh.write(b, 0, 1, offset);
  } finally {
    await fh.close();
  }
}

function warningsOf(stdout: string): Record<string, unknown>[] {
  return expectOnlyJson(stdout).filter((l) => l.message_type === 'warning');
}

describe('bad input', () => {
  it('wrong password: exit 12 FORGE_WRONG_PASSWORD, nothing written', async () => {
    const { base, repo, src } = await repoWithSnapshot();
    const before = await dirState(repo);
    const env = { FORGE_PASSWORD: 'not-the-password' };
    const s = await forge(['snapshots', '-r', repo, '--json'], { env });
    expect(expectCleanError(s, 12, 'FORGE_WRONG_PASSWORD')).toContain('wrong password');
    expectCleanError(await forge(['backup', '-r', repo, src, '--json'], { env }), 12, 'FORGE_WRONG_PASSWORD');
    const target = join(base, 'target');
    expectCleanError(
      await forge(['restore', '-r', repo, 'latest', '--target', target, '--json'], { env }),
      12,
      'FORGE_WRONG_PASSWORD',
    );
    expectCleanError(await forge(['unlock', '-r', repo, '--remove-all'], { env }), 12);
    expect(await dirState(repo)).toEqual(before);
    await expect(stat(target)).rejects.toThrow();
  });

  it('missing repository: exit 10 FORGE_REPO_NOT_FOUND, nothing created', async () => {
    const base = await scratch();
    const missing = join(base, 'missing', 'repo');
    for (const args of [
      ['snapshots'],
      ['ls', 'latest'],
      ['backup', base],
      ['restore', 'latest', '--target', join(base, 't')],
      ['stats'],
    ]) {
      const r = await forgePw([...args, '-r', missing, '--json']);
      expect(expectCleanError(r, 10, 'FORGE_REPO_NOT_FOUND')).toContain(missing);
    }
    expect([...(await dirState(base)).keys()]).toEqual([]);
  });

  it('a directory that is not a repository: exit 10, its files untouched', async () => {
    const base = await scratch();
    const dir = join(base, 'not-a-repo');
    await mkdir(join(dir, 'data'), { recursive: true });
    await writeFile(join(dir, 'notes.txt'), 'hello\n');
    await writeFile(join(dir, 'data', 'blob'), randomBytes(1000));
    await writeFile(join(dir, 'keys'), 'not a directory\n');
    const before = await dirState(dir);
    const r = await forgePw(['snapshots', '-r', dir, '--json']);
    expectCleanError(r, 10);
    const err = expectOnlyJson(r.stdout).find((l) => l.message_type === 'error')!;
    expect(['FORGE_REPO_NOT_FOUND', 'FORGE_REPO_INVALID']).toContain(err.code);
    expectCleanError(await forgePw(['backup', '-r', dir, base]), 10);
    // init into a non-empty non-repository directory must not wipe anything either.
    expect(await dirState(dir)).toEqual(before);
  });

  it('a garbage config: exit 10 FORGE_REPO_INVALID', async () => {
    const { repo } = await repoWithSnapshot();
    for (const garbage of [randomBytes(300), Buffer.alloc(0), Buffer.from('BFRGCFG')]) {
      await writeFile(join(repo, 'config'), garbage);
      const before = await dirState(repo);
      const r = await forgePw(['snapshots', '-r', repo, '--json']);
      expectCleanError(r, 10, 'FORGE_REPO_INVALID');
      expect(await dirState(repo)).toEqual(before);
    }
  });

  it('an unknown repository version: exit 10 FORGE_REPO_VERSION, checked before the password', async () => {
    const { base, repo, src } = await repoWithSnapshot();
    const cfg = await readFile(join(repo, 'config'));
    expect(cfg.subarray(0, 8).toString('latin1')).toBe('BFRGCFG1');
    expect(cfg.readUInt32LE(8)).toBe(1);
    cfg.writeUInt32LE(99, 8);
    await writeFile(join(repo, 'config'), cfg);
    const before = await dirState(repo);
    const ok = await forgePw(['snapshots', '-r', repo, '--json']);
    expect(expectCleanError(ok, 10, 'FORGE_REPO_VERSION')).toContain('99');
    const wrong = await forge(['snapshots', '-r', repo, '--json'], { env: { FORGE_PASSWORD: 'wrong' } });
    expectCleanError(wrong, 10, 'FORGE_REPO_VERSION');
    // Quickly: no Argon2id run (64 MiB, ~0.3 s) for a version that cannot be read.
    expectCleanError(await forgePw(['backup', '-r', repo, src, '--json']), 10, 'FORGE_REPO_VERSION');
    expectCleanError(
      await forgePw(['restore', '-r', repo, 'latest', '--target', join(base, 't'), '--json']),
      10,
      'FORGE_REPO_VERSION',
    );
    expect(await dirState(repo)).toEqual(before);
  });

  it('an unknown repository version is reported even when no password is available', async () => {
    const { repo } = await repoWithSnapshot();
    const cfg = await readFile(join(repo, 'config'));
    cfg.writeUInt32LE(99, 8);
    await writeFile(join(repo, 'config'), cfg);
    const r = await forge(['snapshots', '-r', repo, '--json']);
    expectCleanError(r, 10, 'FORGE_REPO_VERSION');
  });

  it('a truncated pack: restore leaves out exactly the files whose data were lost', async () => {
    // Two backups, so the second one's pack holds only the data of f2 and f3.
    const { base, repo, src } = await repoWithSnapshot({
      'f1.bin': pseudoRandom(2 * 1024 * 1024, 21),
      'small.txt': Buffer.from('small file\n'),
    });
    await writeFile(join(src, 'f2.bin'), pseudoRandom(4 * 1024 * 1024, 22));
    await writeFile(join(src, 'f3.bin'), pseudoRandom(4 * 1024 * 1024, 23));
    const b2 = await forgePw(['backup', '-r', repo, src]);
    expect(b2.code, b2.stderr).toBe(0);
    const { places } = await blobPlaces(repo);
    const newFiles = new Set([join(src, 'f2.bin'), join(src, 'f3.bin')]);
    const newPacks = new Set(places.filter((p) => newFiles.has(p.file)).map((p) => p.pack));
    const oldPacks = new Set(places.filter((p) => !newFiles.has(p.file)).map((p) => p.pack));
    expect([...newPacks].filter((p) => oldPacks.has(p))).toEqual([]);
    expect(newPacks.size).toBe(1);
    const [packId] = [...newPacks] as [string];
    const packPath = join(repo, 'data', packId.slice(0, 2), packId);
    const half = Math.floor((await stat(packPath)).size / 2);
    await truncate(packPath, half);
    const lost = new Set(
      places.filter((p) => p.pack === packId && p.offset + p.length > half).map((p) => p.file),
    );
    const kept = ['f1.bin', 'small.txt', 'f2.bin', 'f3.bin']
      .map((f) => join(src, f))
      .filter((f) => !lost.has(f));
    expect(lost.size).toBeGreaterThan(0);
    expect(kept).toEqual(expect.arrayContaining([join(src, 'f1.bin'), join(src, 'small.txt')]));
    const before = await dirState(repo);

    const target = join(base, 'target');
    const r = await forgePw(['restore', '-r', repo, 'latest', '--target', target, '--json']);
    expectCleanError(r, 1);
    const warnings = warningsOf(r.stdout);
    expect(new Set(warnings.map((w) => w.path))).toEqual(lost);
    for (const w of warnings) expect(w.code).toBe('FORGE_PACK_TRUNCATED');
    for (const f of lost) await expect(stat(join(target, f)), `${f} must not be restored`).rejects.toThrow();
    for (const f of kept) expect(sha256(await readFile(join(target, f)))).toBe(sha256(await readFile(f)));
    expect(await dirState(repo)).toEqual(before);

    // dump of a damaged file: exit 1, one line; whatever was written is a correct prefix.
    const victim = [...lost][0]!;
    const d = await forgeBytes(['dump', '-r', repo, 'latest', victim]);
    expect(expectCleanError(d, 1)).toMatch(/shorter|truncated/);
    const orig = await readFile(victim);
    expect(d.stdout.length).toBeLessThan(orig.length);
    expect(d.stdout.equals(orig.subarray(0, d.stdout.length))).toBe(true);
    const ok = await forgeBytes(['dump', '-r', repo, 'latest', kept[0]!]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(sha256(ok.stdout)).toBe(sha256(await readFile(kept[0]!)));
    expect(await dirState(repo)).toEqual(before);
  });

  it('a pack with one flipped bit: the affected file is left out (never wrong bytes), FORGE_INTEGRITY', async () => {
    const files: Record<string, Buffer> = {
      'a.bin': pseudoRandom(2 * 1024 * 1024, 31),
      'b.bin': pseudoRandom(2 * 1024 * 1024, 32),
      'c.txt': Buffer.from('c\n'),
    };
    const { base, repo, src } = await repoWithSnapshot(files);
    const { places } = await blobPlaces(repo);
    const packs = [...new Set(places.map((p) => p.pack))];
    expect(packs).toHaveLength(1);
    const packId = packs[0]!;
    const packPath = join(repo, 'data', packId.slice(0, 2), packId);
    const middle = Math.floor((await stat(packPath)).size / 2);
    const hit = places.filter((p) => p.offset <= middle && middle < p.offset + p.length);
    expect(hit, 'the middle of the pack is inside a data blob').toHaveLength(1);
    await flipBit(packPath, middle, 3);
    const damaged = hit[0]!.file;
    const before = await dirState(repo);

    const target = join(base, 'target');
    const r = await forgePw(['restore', '-r', repo, 'latest', '--target', target, '--json']);
    expectCleanError(r, 1);
    expect(warningsOf(r.stdout)).toMatchObject([{ path: damaged, code: 'FORGE_INTEGRITY' }]);
    await expect(stat(join(target, damaged))).rejects.toThrow();
    for (const f of Object.keys(files)
      .map((n) => join(src, n))
      .filter((f) => f !== damaged))
      expect(sha256(await readFile(join(target, f)))).toBe(sha256(await readFile(f)));
    const d = await forgeBytes(['dump', '-r', repo, 'latest', damaged]);
    expectCleanError(d, 1);
    const orig = await readFile(damaged);
    expect(d.stdout.equals(orig.subarray(0, d.stdout.length))).toBe(true);
    expect(await dirState(repo)).toEqual(before);
  });

  // The README promises "`error` with its stable `code`" for --json; restore's final error line
  // (apps/forge/src/commands/restore.ts, `ctx.out.error(...)` after the summary) has none.
  it('restore with damaged files ends with a JSON error line that carries a code', async () => {
    const { base, repo } = await repoWithSnapshot({ 'x.bin': pseudoRandom(1024 * 1024, 41) });
    const [pack] = await dataPacks(repo);
    await flipBit(pack!, 100, 0);
    const r = await forgePw(['restore', '-r', repo, 'latest', '--target', join(base, 't'), '--json']);
    expect(r.code).toBe(1);
    const err = expectOnlyJson(r.stdout).filter((l) => l.message_type === 'error');
    expect(err).toHaveLength(1);
    expect(err[0]!.code).toMatch(/^FORGE_[A-Z_]+$/);
  });

  it('a deleted index file: restore, ls and dump fail with FORGE_NOT_FOUND; target stays empty', async () => {
    const { base, repo, src } = await repoWithSnapshot();
    const indexes = await listNames(repo, 'index');
    expect(indexes).toHaveLength(1);
    await rm(join(repo, 'index', indexes[0]!));
    const before = await dirState(repo);
    const target = join(base, 'target');
    const r = await forgePw(['restore', '-r', repo, 'latest', '--target', target, '--json']);
    expect(expectCleanError(r, 1, 'FORGE_NOT_FOUND')).toContain('index');
    // At most the (documented) empty target directory exists.
    expect([...(await dirState(target)).keys()]).toEqual([]);
    const l = await forgePw(['ls', '-r', repo, 'latest', '--json']);
    expectCleanError(l, 1, 'FORGE_NOT_FOUND');
    expect(expectOnlyJson(l.stdout).filter((x) => x.message_type === 'node')).toEqual([]);
    const d = await forgeBytes(['dump', '-r', repo, 'latest', join(src, 'a.txt')]);
    expectCleanError(d, 1);
    expect(d.stdout.length).toBe(0);
    // The snapshot list needs no index.
    const s = await forgePw(['snapshots', '-r', repo, '--json']);
    expect(s.code).toBe(0);
    expect(expectOnlyJson(s.stdout)).toHaveLength(1);
    expect(await dirState(repo)).toEqual(before);
  });

  describe('repository disk full during a backup', () => {
    it('exit 1 FORGE_NO_SPACE, one line, no temporary pack file left, repository still checks clean', async (ctx) => {
      const base = await scratch();
      const mnt = join(base, 'mnt');
      await mkdir(mnt);
      const m = await run('mount', ['-t', 'tmpfs', '-o', 'size=3m', 'tmpfs', mnt]);
      if (m.code !== 0) ctx.skip(`cannot mount a tmpfs (${m.stderr.trim()}): not root or no CAP_SYS_ADMIN`);
      cleanups.push(async () => {
        await run('umount', ['-l', mnt]);
      });
      const src = join(base, 'src');
      await mkdir(src);
      await writeFile(join(src, 'big.bin'), pseudoRandom(8 * 1024 * 1024, 61));
      await writeFile(join(src, 'small.txt'), 'small\n');
      const repo = join(mnt, 'repo');
      expect((await forgePw(['init', '-r', repo])).code).toBe(0);
      const r = await forgePw(['backup', '-r', repo, src, '--json']);
      expect(expectCleanError(r, 1, 'FORGE_NO_SPACE')).toContain('no space');
      // The pack being written when the disk filled was removed: nothing but real objects remain.
      const left = await run('find', [repo, '-name', '.tmp-*']);
      expect(left.stdout.trim()).toBe('');
      const s = await forgePw(['snapshots', '-r', repo, '--json']);
      expect(s.code, s.stderr).toBe(0);
      expect(expectOnlyJson(s.stdout)).toEqual([]);
      const c = await forgePw(['check', '-r', repo]);
      expect(c.code, c.stderr).toBe(0);
    });
  });

  describe('restore target disk full', () => {
    const mounts: string[] = [];
    afterAll(async () => {
      for (const m of mounts) await run('umount', ['-l', m]);
    });

    it('exit 1 FORGE_NO_SPACE, one line mentioning "no space", no partial file, repository unchanged', async (ctx) => {
      const { base, repo, src } = await repoWithSnapshot({
        'big.bin': pseudoRandom(5 * 1024 * 1024, 51),
        'small.txt': 'small\n',
      });
      const mnt = join(base, 'mnt');
      await mkdir(mnt);
      const m = await run('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', mnt]);
      if (m.code !== 0) ctx.skip(`cannot mount a tmpfs (${m.stderr.trim()}): not root or no CAP_SYS_ADMIN`);
      mounts.push(mnt);
      // Runs before the temp dir is removed (cleanups run last-in, first-out).
      cleanups.push(async () => {
        await run('umount', ['-l', mnt]);
      });
      const before = await dirState(repo);
      const target = join(mnt, 'out');
      const r = await forgePw(['restore', '-r', repo, 'latest', '--target', target, '--json']);
      expect(expectCleanError(r, 1, 'FORGE_NO_SPACE')).toContain('no space');
      const r2 = await forgePw(['restore', '-r', repo, 'latest', '--target', join(mnt, 'out2')]);
      expect(expectCleanError(r2, 1)).toContain('no space');
      // No truncated big.bin is left behind.
      await expect(stat(join(target, src, 'big.bin'))).rejects.toThrow();
      await expect(stat(join(mnt, 'out2', src, 'big.bin'))).rejects.toThrow();
      expect(await dirState(repo)).toEqual(before);
    });
  });

  it('a source file that grows while it is read: exit 3 with a warning, snapshot consistent', async () => {
    const base = await scratch();
    const repo = join(base, 'repo');
    const dir = join(base, 'src');
    await mkdir(dir);
    expect((await forgePw(['init', '-r', repo])).code).toBe(0);
    const file = join(dir, 'growing.bin');
    let observed = false;
    for (let attempt = 1; attempt <= 3 && !observed; attempt++) {
      await rm(file, { force: true });
      const fh = await open(file, 'w');
      for (let i = 0; i < 25; i++) await fh.write(randomBytes(8 * 1024 * 1024));
      await fh.close();
      const child = spawnForge(['backup', '-r', repo, '--json', '--force', dir]);
      const lines: string[] = [];
      let stderr = '';
      child.stderr!.on('data', (d: Buffer) => {
        stderr += d.toString();
      });
      let appended = false;
      const rl = createInterface({ input: child.stdout! });
      rl.on('line', (l) => {
        lines.push(l);
        // The first progress report comes while the file is being read: append 1 MiB now.
        if (!appended && l.includes('"message_type":"status"')) {
          appended = true;
          appendFileSync(file, randomBytes(1024 * 1024));
        }
      });
      const code = await new Promise<number>((res) => child.on('close', (c) => res(c ?? -1)));
      const out = lines.join('\n');
      expectNoStack({ stdout: out, stderr });
      const warnings = warningsOf(out);
      const changed = warnings.filter((w) => /changed size/.test(String(w.message)));
      if (changed.length > 0) {
        observed = true;
        expect(code, stderr).toBe(3);
        expect(changed[0]).toMatchObject({ path: file, code: 'FORGE_IO' });
        expect(stderr).toMatch(/^warning: .*growing\.bin changed size/m);
      } else {
        expect(code, stderr).toBe(0);
      }
      // Whatever happened, the snapshot is consistent: size as listed, bytes a prefix of the file.
      const ls = await forgePw(['ls', '-r', repo, 'latest', file, '--json']);
      const node = expectOnlyJson(ls.stdout).find((n) => n.path === file)!;
      const size = node.size as number;
      const target = join(base, `restore-${attempt}`);
      const r = await forgePw(['restore', '-r', repo, `latest:${file}`, '--target', target]);
      expect(r.code, r.stderr).toBe(0);
      const restored = await readFile(join(target, 'growing.bin'));
      const final = await readFile(file);
      expect(restored.length).toBe(size);
      expect(size).toBeGreaterThanOrEqual(200 * 1024 * 1024);
      expect(restored.equals(final.subarray(0, size))).toBe(true);
      await rm(target, { recursive: true });
    }
    if (!observed)
      throw new Error(
        'the file was never seen changing size during the backup in 3 attempts: the race was not hit',
      );
  }, 240_000);

  it('an unreadable password file: exit 12, one line naming it', async () => {
    const { base, repo } = await repoWithSnapshot({ 'a.txt': 'a' });
    const before = await dirState(repo);
    const r = await forge(['snapshots', '-r', repo, '--password-file', '/nonexistent/pw', '--json']);
    expect(expectCleanError(r, 12, 'FORGE_PASSWORD_REQUIRED')).toContain('/nonexistent/pw');
    const env = await forge(['snapshots', '-r', repo], { env: { FORGE_PASSWORD_FILE: '/nonexistent/pw' } });
    expect(expectCleanError(env, 12)).toContain('/nonexistent/pw');
    const dirAsFile = await forge(['snapshots', '-r', repo, '--password-file', base]);
    expectCleanError(dirAsFile, 12);
    const empty = join(base, 'empty-pw');
    await writeFile(empty, '');
    expect(expectCleanError(await forge(['snapshots', '-r', repo, '--password-file', empty]), 12)).toContain(
      'empty',
    );
    expect(await dirState(repo)).toEqual(before);
  });

  it('backing up a path that does not exist: exit 1 naming it, no snapshot written', async () => {
    const { base, repo } = await repoWithSnapshot({ 'a.txt': 'a' });
    const before = await dirState(repo);
    const missing = join(base, 'no-such-dir');
    const r = await forgePw(['backup', '-r', repo, missing, '--json']);
    expect(await dirState(repo)).toEqual(before);
    expect(expectCleanError(r, 1, 'FORGE_NOT_FOUND')).toContain(missing);
  });

  it('backing up a path that does not exist: non-zero exit and a line naming it', async () => {
    const { base, repo, src } = await repoWithSnapshot({ 'a.txt': 'a' });
    const missing = join(base, 'no-such-dir');
    const r = await forgePw(['backup', '-r', repo, missing]);
    expect(r.code).not.toBe(0);
    expectNoStack(r);
    // One error line names it (a warning from the walk may name it too, as it happens).
    expect(r.stderr.split('\n').filter((l) => /^error: /.test(l) && l.includes(missing))).toHaveLength(1);
    // Together with a path that exists: a partial snapshot (exit 3), with a warning naming it.
    const snapsBefore = (await listNames(repo, 'snapshots')).length;
    const mixed = await forgePw(['backup', '-r', repo, src, missing]);
    expect(mixed.code, mixed.stderr).toBe(3);
    expect(mixed.stderr.split('\n').filter((l) => l.startsWith('warning: '))).toEqual([
      expect.stringContaining(missing),
    ]);
    expect(mixed.stderr).not.toMatch(/^error: /m);
    expect(await listNames(repo, 'snapshots')).toHaveLength(snapsBefore + 1);
    const snaps = expectOnlyJson((await forgePw(['snapshots', '-r', repo, '--json'])).stdout);
    expect(snaps[snaps.length - 1]).toMatchObject({ partial: true, paths: [missing, src].sort() });
  });

  it('bad arguments: usage errors (exit 2) and paths not in the snapshot (exit 1) write nothing', async () => {
    const { base, repo, src } = await repoWithSnapshot({ 'a.txt': 'a' });
    const before = await dirState(repo);
    const cases: [string[], number, string][] = [
      [['init', '-r', join(base, 'r2'), '--compression', 'bogus'], 2, 'FORGE_USAGE'],
      [['init', '-r', join(base, 'r3'), '--compression', 'zstd:99'], 2, 'FORGE_USAGE'],
      [['snapshots', '-r', 's3:Bad_Bucket/x'], 2, 'FORGE_USAGE'],
      [['snapshots', '-r', 'sftp:'], 2, 'FORGE_USAGE'],
      [['snapshots', '-r', 's3:bucket/x', '-o', 's3.colour=blue'], 2, 'FORGE_USAGE'],
      [['snapshots', '-r', repo, '--limit-upload', 'fast'], 2, 'FORGE_USAGE'],
      [['snapshots', '-r', 'ftp://host/x'], 2, 'FORGE_USAGE'],
      [['ls', '-r', repo, 'latest', `${src}/nope`], 1, 'FORGE_PATH_NOT_FOUND'],
      [['dump', '-r', repo, 'latest', src], 2, 'FORGE_USAGE'],
      [['dump', '-r', repo, 'latest', `${src}/nope`], 1, 'FORGE_PATH_NOT_FOUND'],
      [
        ['restore', '-r', repo, `latest:${src}/nope`, '--target', join(base, 't1')],
        1,
        'FORGE_PATH_NOT_FOUND',
      ],
      [['backup', '-r', repo, '--stdin', '--stdin-filename', 'a/b'], 2, 'FORGE_USAGE'],
      [['backup', '-r', repo, '--stdin', '--stdin-filename', '..'], 2, 'FORGE_USAGE'],
      [['diff', '-r', repo, 'latest', 'ffffffff'], 1, 'FORGE_SNAPSHOT_NOT_FOUND'],
      [['stats', '-r', repo, '--host', 'x'], 2, 'FORGE_USAGE'],
    ];
    for (const [args, exit, code] of cases) {
      const r = await forgePw([...args, '--json']);
      expectCleanError(r, exit, code);
    }
    expect(await dirState(repo)).toEqual(before);
    expect((await dirState(base)).has('r2')).toBe(false);
    expect((await dirState(base)).has('r3')).toBe(false);
    expect((await dirState(base)).has('t1')).toBe(false);
  });

  it('a corrupted snapshot file: snapshots names it and exits 1, the other snapshots stay usable, nothing touched', async () => {
    const { repo, src } = await repoWithSnapshot({ 'a.txt': 'a' });
    expect((await forgePw(['backup', '-r', repo, '--force', src])).code).toBe(0);
    const [victim] = await listNames(repo, 'snapshots');
    const path = join(repo, 'snapshots', victim!);
    await flipBit(path, Math.floor((await stat(path)).size / 2), 5);
    const before = await dirState(repo);
    const r = await forgePw(['snapshots', '-r', repo, '--json']);
    expect(expectCleanError(r, 1, 'FORGE_INTEGRITY')).toContain(victim!.slice(0, 12));
    // The damaged snapshot is left out; the other one is still listed and usable.
    const listed = expectOnlyJson(r.stdout).filter((l) => l.message_type === 'snapshot');
    expect(listed.map((l) => l.id)).not.toContain(victim);
    expect(listed).toHaveLength(1);
    expect((await forgePw(['ls', '-r', repo, 'latest', '--json'])).code).toBe(0);
    expect(await dirState(repo)).toEqual(before);
  });
});
