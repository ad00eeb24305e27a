// End-to-end tests of the built `forge` binary: every command, exit codes and output rules.
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, open, readFile, stat, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterEach, describe, expect, it } from 'vitest';
import { tempDir } from '../support/cli.ts';
import {
  describeTree,
  dirState,
  expectCleanError,
  expectNoStack,
  expectOnlyJson,
  FORGE_BIN,
  forge,
  forgeBytes,
  forgePw,
  haveCommand,
  listNames,
  makeAmbiguousPrefix,
  makeFixture,
  PASSWORD,
  PW_ENV,
  pseudoRandom,
  run,
  sha256,
  shq,
  spawnForge,
} from './helpers.ts';

const HEX64 = /^[0-9a-f]{64}$/;

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

async function scratch(): Promise<string> {
  const t = await tempDir('forge-cli-');
  cleanups.push(t.cleanup);
  return t.path;
}

/** A temp dir with an initialised repository `repo` and a fixture `src`. */
async function setup(opts: { fixture?: boolean } = {}): Promise<{ base: string; repo: string; src: string }> {
  const base = await scratch();
  const repo = join(base, 'repo');
  const src = join(base, 'src');
  await mkdir(src);
  if (opts.fixture ?? true) await makeFixture(src);
  const r = await forgePw(['init', '-r', repo]);
  expect(r.code, r.stderr).toBe(0);
  return { base, repo, src };
}

function summaryOf(stdout: string): Record<string, unknown> {
  const lines = expectOnlyJson(stdout);
  const last = lines[lines.length - 1];
  expect(last?.message_type, stdout).toBe('summary');
  return last!;
}

async function backupJson(repo: string, args: string[]): Promise<Record<string, unknown>> {
  const r = await forgePw(['backup', '-r', repo, '--json', ...args]);
  expect(r.code, r.stderr).toBe(0);
  expect(r.stderr).toBe('');
  return summaryOf(r.stdout);
}

describe('forge end to end', () => {
  it('init → backup → snapshots → ls → restore → dump → diff → stats', async () => {
    const { base, repo, src } = await setup();

    // Backup without a terminal: silent on success.
    const b1 = await forgePw(['backup', '-r', repo, src]);
    expect(b1).toEqual({ code: 0, stdout: '', stderr: '' });
    const [id1] = await listNames(repo, 'snapshots');
    expect(id1).toMatch(HEX64);

    // snapshots: table and JSON lines.
    const tbl = await forgePw(['snapshots', '-r', repo]);
    expect(tbl.code).toBe(0);
    expect(tbl.stderr).toBe('');
    const rows = tbl.stdout.trimEnd().split('\n');
    expect(rows).toHaveLength(3);
    expect(rows[0]).toMatch(/^ID\s+Time\s+Host\s+Tags\s+Paths$/);
    expect(rows[1]).toMatch(
      new RegExp(`^${id1!.slice(0, 8)}  \\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d  ${hostname()}\\s+${src}$`),
    );
    expect(rows[2]).toBe('1 snapshot');
    const sj = await forgePw(['snapshots', '-r', repo, '--json']);
    expect(sj.code).toBe(0);
    const snaps = expectOnlyJson(sj.stdout);
    expect(snaps).toHaveLength(1);
    expect(snaps[0]).toMatchObject({
      message_type: 'snapshot',
      id: id1,
      short_id: id1!.slice(0, 8),
      paths: [src],
      hostname: hostname(),
      tags: [],
    });

    // ls: plain lists every path (ancestors of the backed-up dir included).
    const expectedRel = [...(await describeTree(src)).keys()];
    const ls = await forgePw(['ls', '-r', repo, 'latest']);
    expect(ls.code).toBe(0);
    expect(ls.stderr).toBe('');
    const lsLines = ls.stdout.trimEnd().split('\n');
    expect(lsLines.filter((l) => l.startsWith(`${src}/`)).sort()).toEqual(
      expectedRel.map((r) => `${src}/${r}`).sort(),
    );
    expect(lsLines).toContain(src);
    expect(lsLines).toContain('/tmp');

    const ll = await forgePw(['ls', '-r', repo, 'latest', '-l']);
    expect(ll.code).toBe(0);
    const llLines = ll.stdout.trimEnd().split('\n');
    const lineFor = (p: string) => llLines.find((l) => l.endsWith(` ${p}`) || l.includes(` ${p} -> `));
    const ts = '\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d';
    expect(lineFor(`${src}/a.txt`)).toMatch(new RegExp(`^-rw-r--r--\\s+0\\s+0\\s+12 ${ts} ${src}/a.txt$`));
    expect(lineFor(`${src}/run.sh`)).toMatch(/^-rwxr-xr-x /);
    expect(lineFor(`${src}/readonly.txt`)).toMatch(/^-r-------- /);
    expect(lineFor(`${src}/sub/notes.md`)).toMatch(/^-rw-r----- /);
    expect(lineFor(`${src}/bin/big.bin`)).toMatch(/\s3145745 /);
    expect(lineFor(`${src}/link-to-a`)).toMatch(new RegExp(`^lrwxrwxrwx .* ${src}/link-to-a -> a\\.txt$`));
    expect(lineFor(`${src}/sub`)).toMatch(/^drwxr-xr-x /);

    const lj = await forgePw(['ls', '-r', repo, 'latest', '--json']);
    expect(lj.code).toBe(0);
    const nodes = expectOnlyJson(lj.stdout);
    expect(nodes.every((n) => n.message_type === 'node')).toBe(true);
    const big = nodes.find((n) => n.path === `${src}/bin/big.bin`);
    expect(big).toMatchObject({ name: 'big.bin', type: 'file', size: 3 * 1024 * 1024 + 17, mode: 0o644 });
    expect(nodes.find((n) => n.path === `${src}/link-to-a`)).toMatchObject({
      type: 'symlink',
      linkTarget: 'a.txt',
    });

    // ls of a subpath (recursive, and not).
    const lsSub = await forgePw(['ls', '-r', repo, 'latest', `${src}/sub`]);
    expect(lsSub.code).toBe(0);
    expect(lsSub.stdout.trimEnd().split('\n')).toEqual([
      `${src}/sub`,
      `${src}/sub/deep`,
      `${src}/sub/deep/x.txt`,
      `${src}/sub/notes.md`,
    ]);
    const lsFlat = await forgePw(['ls', '-r', repo, 'latest', `${src}/sub`, '--no-recursive']);
    expect(lsFlat.stdout.trimEnd().split('\n')).toEqual([
      `${src}/sub`,
      `${src}/sub/deep`,
      `${src}/sub/notes.md`,
    ]);

    // restore: every file byte-identical with its mode and mtime (µs).
    const out = join(base, 'out');
    const rs = await forgePw(['restore', '-r', repo, 'latest', '--target', out]);
    expect(rs).toEqual({ code: 0, stdout: '', stderr: '' });
    const want = await describeTree(src);
    const got = await describeTree(join(out, src));
    expect(got).toEqual(want);
    expect([...want.values()].filter((e) => e.type === 'file')).toHaveLength(9);

    // dump: binary content with NULs, byte-identical.
    const dump = await forgeBytes(['dump', '-r', repo, 'latest', `${src}/bin/nul.bin`]);
    expect(dump.code, dump.stderr).toBe(0);
    expect(dump.stderr).toBe('');
    expect(sha256(dump.stdout)).toBe(sha256(await readFile(join(src, 'bin/nul.bin'))));
    expect(dump.stdout.includes(0)).toBe(true);
    const dumpEmpty = await forgeBytes(['dump', '-r', repo, 'latest', `${src}/empty.txt`]);
    expect(dumpEmpty.code).toBe(0);
    expect(dumpEmpty.stdout.length).toBe(0);

    // modify a file, back up again, diff.
    await writeFile(join(src, 'a.txt'), 'hello changed world\n');
    const b2 = await forgePw(['backup', '-r', repo, src]);
    expect(b2).toEqual({ code: 0, stdout: '', stderr: '' });
    const names = await listNames(repo, 'snapshots');
    expect(names).toHaveLength(2);
    const id2 = names.find((n) => n !== id1)!;
    const diff = await forgePw(['diff', '-r', repo, id1!.slice(0, 8), id2.slice(0, 8)]);
    expect(diff.code, diff.stderr).toBe(0);
    expect(diff.stderr).toBe('');
    const diffLines = diff.stdout.trimEnd().split('\n');
    expect(diffLines).toContain(`M    ${src}/a.txt`);
    // Nothing else below the source changed.
    expect(diffLines.filter((l) => l.includes(`${src}/`))).toEqual([`M    ${src}/a.txt`]);
    const dj = await forgePw(['diff', '-r', repo, id1!, id2, '--json']);
    const dLines = expectOnlyJson(dj.stdout);
    expect(dLines).toContainEqual({
      message_type: 'change',
      path: `${src}/a.txt`,
      modifier: 'M',
      change: 'modified',
    });
    expect(dLines[dLines.length - 1]).toMatchObject({
      message_type: 'statistics',
      source_snapshot: id1,
      target_snapshot: id2,
    });

    // stats: sizes computed independently from the fixture.
    const sizes = [...want.values()].filter((e) => e.type === 'file').map((e) => Number(e.size));
    const oneSnap = sizes.reduce((a, b) => a + b, 0);
    const secondSnap = oneSnap - 12 + 'hello changed world\n'.length;
    let packBytes = 0;
    let packs = 0;
    for (const d of await listNames(repo, 'data')) {
      for (const f of await listNames(repo, join('data', d))) {
        packs++;
        packBytes += (await stat(join(repo, 'data', d, f))).size;
      }
    }
    const st = await forgePw(['stats', '-r', repo, '--json']);
    expect(st.code, st.stderr).toBe(0);
    const [stats] = expectOnlyJson(st.stdout);
    expect(stats).toMatchObject({
      message_type: 'stats',
      snapshots: 2,
      totalFiles: 18,
      restoreSize: oneSnap + secondSnap,
      rawSize: oneSnap + 'hello changed world\n'.length,
      packs,
      packBytes,
    });
    expect(stats!.storedSize as number).toBeGreaterThan(0);
    expect(stats!.compressionRatio as number).toBeCloseTo(
      (stats!.rawSize as number) / (stats!.storedSize as number),
    );
    expect(stats!.spaceSavingRatio as number).toBeCloseTo(
      (stats!.restoreSize as number) / (stats!.storedSize as number),
    );
    const stH = await forgePw(['stats', '-r', repo]);
    expect(stH.code).toBe(0);
    expect(stH.stdout).toMatch(/^ {2}snapshots: +2$/m);
    expect(stH.stdout).toMatch(/^ {2}files \(all snapshots\): 18$/m);
    expect(stH.stdout).toMatch(new RegExp(`^  packs on storage: +${packs} \\(`, 'm'));
    const stLatest = await forgePw(['stats', '-r', repo, 'latest', '--json']);
    expect(expectOnlyJson(stLatest.stdout)[0]).toMatchObject({
      snapshots: 1,
      totalFiles: 9,
      restoreSize: secondSnap,
    });
  });

  it('incremental backups skip unchanged files; --force reads everything', async () => {
    const { repo, src } = await setup();
    const s1 = await backupJson(repo, [src]);
    expect(s1).toMatchObject({
      files_new: 9,
      files_changed: 0,
      files_unmodified: 0,
      parent: null,
      partial: false,
    });
    expect(s1.snapshot_id).toMatch(HEX64);
    expect(s1.data_added as number).toBeGreaterThan(3 * 1024 * 1024);

    const s2 = await backupJson(repo, [src]);
    expect(s2).toMatchObject({
      files_new: 0,
      files_changed: 0,
      files_unmodified: 9,
      parent: s1.snapshot_id,
      data_blobs: 0,
      total_files_processed: 9,
    });

    const s3 = await backupJson(repo, ['--force', src]);
    expect(s3).toMatchObject({
      files_new: 9,
      files_changed: 0,
      files_unmodified: 0,
      parent: null,
      data_blobs: 0,
    });
    expect(s3.total_bytes_processed).toBe(s1.total_bytes_processed);

    // One changed file: only it is read.
    await writeFile(join(src, 'sub/notes.md'), 'new notes\n');
    const s4 = await backupJson(repo, [src]);
    expect(s4).toMatchObject({ files_new: 0, files_changed: 1, files_unmodified: 8, parent: s3.snapshot_id });
  });

  it('selects snapshots by latest, id prefix, --host and --tag', async () => {
    const { repo, src } = await setup({ fixture: false });
    const f = join(src, 'v.txt');
    await writeFile(f, 'version 1\n');
    const s1 = await backupJson(repo, ['--tag', 'a,b', src]);
    await writeFile(f, 'version 2 (h2)\n');
    const s2 = await backupJson(repo, ['--host', 'h2', src]);
    await writeFile(f, 'version 3\n');
    const s3 = await backupJson(repo, ['--tag', 'c', src]);
    const id1 = s1.snapshot_id as string;
    const id2 = s2.snapshot_id as string;
    const id3 = s3.snapshot_id as string;

    const list = async (...args: string[]) => {
      const r = await forgePw(['snapshots', '-r', repo, '--json', ...args]);
      expect(r.code, r.stderr).toBe(0);
      return expectOnlyJson(r.stdout).map((s) => s.id);
    };
    expect(await list()).toEqual([id1, id2, id3]);
    expect(await list('--host', 'h2')).toEqual([id2]);
    expect(await list('--host', hostname())).toEqual([id1, id3]);
    expect(await list('--tag', 'a')).toEqual([id1]);
    expect(await list('--tag', 'a,b')).toEqual([id1]);
    expect(await list('--tag', 'a,c')).toEqual([]);
    expect(await list('--tag', 'b', '--tag', 'c')).toEqual([id1, id3]);
    const h2 = expectOnlyJson((await forgePw(['snapshots', '-r', repo, '--json', '--host', 'h2'])).stdout)[0];
    expect(h2).toMatchObject({ hostname: 'h2', tags: [] });
    expect(
      expectOnlyJson((await forgePw(['snapshots', '-r', repo, '--json', '--tag', 'a'])).stdout)[0],
    ).toMatchObject({
      tags: ['a', 'b'],
    });

    const dump = async (ref: string, ...args: string[]) => {
      const r = await forgeBytes(['dump', '-r', repo, ref, f, ...args]);
      expect(r.code, r.stderr).toBe(0);
      return r.stdout.toString();
    };
    expect(await dump('latest')).toBe('version 3\n');
    expect(await dump('latest', '--host', 'h2')).toBe('version 2 (h2)\n');
    expect(await dump('latest', '--tag', 'a')).toBe('version 1\n');
    expect(await dump(id1.slice(0, 4))).toBe('version 1\n');
    expect(await dump(id2.slice(0, 5))).toBe('version 2 (h2)\n');
    expect(await dump(id3)).toBe('version 3\n');

    // An unknown prefix: exit 1, one line.
    let unknown = '0000';
    for (let i = 0; [id1, id2, id3].some((id) => id.startsWith(unknown)); i++)
      unknown = i.toString(16).padStart(4, '0');
    const u = await forgePw(['ls', '-r', repo, unknown, '--json']);
    expect(expectCleanError(u, 1, 'FORGE_SNAPSHOT_NOT_FOUND')).toContain(unknown);
    const u2 = await forgePw(['dump', '-r', repo, unknown, f]);
    expectCleanError(u2, 1);
    // latest with a filter that matches nothing.
    expectCleanError(
      await forgePw(['ls', '-r', repo, 'latest', '--host', 'nohost', '--json']),
      1,
      'FORGE_SNAPSHOT_NOT_FOUND',
    );
    // Too short / not hex: a usage error.
    expectCleanError(await forgePw(['ls', '-r', repo, id1.slice(0, 3), '--json']), 2, 'FORGE_USAGE');
    expectCleanError(await forgePw(['ls', '-r', repo, 'zzzz', '--json']), 2, 'FORGE_USAGE');

    // An ambiguous prefix: a second snapshot whose id shares the first 4 digits.
    const prefix = await makeAmbiguousPrefix(repo, [id1, id2, id3]);
    const amb = await forgePw(['ls', '-r', repo, prefix, '--json']);
    expect(expectCleanError(amb, 1, 'FORGE_SNAPSHOT_AMBIGUOUS')).toContain(prefix);
    expectCleanError(
      await forgePw(['restore', '-r', repo, prefix, '--target', join(repo, '..', 'never')]),
      1,
    );
    await expect(stat(join(repo, '..', 'never'))).rejects.toThrow();
  }, 180_000);

  it('restores a subtree, honours --include/--exclude, refuses a non-empty target unless --overwrite', async () => {
    const { base, repo, src } = await setup();
    expect((await forgePw(['backup', '-r', repo, src])).code).toBe(0);

    // latest:/sub/path restores only that subtree, into the target itself.
    const subOut = join(base, 'sub-out');
    const r1 = await forgePw(['restore', '-r', repo, `latest:${src}/sub`, '--target', subOut]);
    expect(r1).toEqual({ code: 0, stdout: '', stderr: '' });
    expect(await describeTree(subOut)).toEqual(await describeTree(join(src, 'sub')));

    // One file as the subpath.
    const oneOut = join(base, 'one-out');
    const r1b = await forgePw(['restore', '-r', repo, `latest:${src}/bin/big.bin`, '--target', oneOut]);
    expect(r1b.code, r1b.stderr).toBe(0);
    expect([...(await dirState(oneOut)).keys()]).toEqual(['big.bin']);
    expect((await dirState(oneOut)).get('big.bin')).toBe((await dirState(src)).get('bin/big.bin'));

    // --include: only matching files (and the directories leading to them).
    const incOut = join(base, 'inc-out');
    const r2 = await forgePw([
      'restore',
      '-r',
      repo,
      'latest',
      '--target',
      incOut,
      '--include',
      '*.md',
      '--include',
      'deep',
    ]);
    expect(r2.code, r2.stderr).toBe(0);
    const inc = await dirState(join(incOut, src));
    expect([...inc].filter(([, v]) => v !== '<dir>').map(([k]) => k)).toEqual([
      'sub/deep/x.txt',
      'sub/notes.md',
    ]);
    expect(inc.get('sub/notes.md')).toBe((await dirState(src)).get('sub/notes.md'));

    // --exclude: everything but the matches.
    const excOut = join(base, 'exc-out');
    const r3 = await forgePw([
      'restore',
      '-r',
      repo,
      'latest',
      '--target',
      excOut,
      '--exclude',
      '*.bin',
      '--exclude',
      `${src}/sub`,
    ]);
    expect(r3.code, r3.stderr).toBe(0);
    const exc = await describeTree(join(excOut, src));
    const all = await describeTree(src);
    const expected = new Map(
      [...all].filter(([k]) => !k.endsWith('.bin') && k !== 'sub' && !k.startsWith('sub/')),
    );
    // bin/ itself is restored (empty): its mtime is kept.
    expect(exc).toEqual(expected);

    // A non-empty target: refused, nothing written.
    const busy = join(base, 'busy');
    await mkdir(busy);
    await writeFile(join(busy, 'keep.txt'), 'mine\n');
    const before = await dirState(busy);
    const r4 = await forgePw(['restore', '-r', repo, 'latest', '--target', busy, '--json']);
    const line = expectCleanError(r4, 1, 'FORGE_TARGET_NOT_EMPTY');
    expect(line).toContain('not empty');
    expect(line).toContain('--overwrite');
    expect(await dirState(busy)).toEqual(before);
    const r4b = await forgePw(['restore', '-r', repo, 'latest', '--target', busy]);
    expectCleanError(r4b, 1);
    expect(r4b.stdout).toBe('');

    // --overwrite: allowed; files in the way replaced, others left alone.
    await mkdir(join(busy, src), { recursive: true });
    await writeFile(join(busy, src, 'a.txt'), 'stale content that must be replaced\n');
    await writeFile(join(busy, src, 'extra.txt'), 'not in the snapshot\n');
    const r5 = await forgePw(['restore', '-r', repo, 'latest', '--target', busy, '--overwrite']);
    expect(r5).toEqual({ code: 0, stdout: '', stderr: '' });
    expect(await readFile(join(busy, 'keep.txt'), 'utf8')).toBe('mine\n');
    expect(await readFile(join(busy, src, 'extra.txt'), 'utf8')).toBe('not in the snapshot\n');
    expect(await describeTree(join(busy, src), (rel) => rel === 'extra.txt')).toEqual(all);
  });

  it('backs up standard input with --stdin --stdin-filename and dumps the same bytes', async () => {
    const { repo } = await setup({ fixture: false });
    const input = Buffer.concat([
      Buffer.from('-- dump\nINSERT INTO t VALUES (1);\n'),
      Buffer.from([0, 0, 0, 255, 0]),
      pseudoRandom(2 * 1024 * 1024 + 3, 11),
    ]);
    const b = await forgePw(['backup', '-r', repo, '--stdin', '--stdin-filename', 'db.sql', '--json'], {
      input,
    });
    expect(b.code, b.stderr).toBe(0);
    expect(summaryOf(b.stdout)).toMatchObject({ files_new: 1, total_bytes_processed: input.length });
    const d = await forgeBytes(['dump', '-r', repo, 'latest', '/db.sql']);
    expect(d.code, d.stderr).toBe(0);
    expect(d.stdout.length).toBe(input.length);
    expect(sha256(d.stdout)).toBe(sha256(input));
    const ls = await forgePw(['ls', '-r', repo, 'latest', '-l']);
    expect(ls.stdout.trim()).toMatch(new RegExp(`^-rw-r--r-- .* ${input.length} .* /db\\.sql$`));
    const sj = expectOnlyJson((await forgePw(['snapshots', '-r', repo, '--json'])).stdout);
    expect(sj).toHaveLength(1);
    expect(sj[0]).toMatchObject({ paths: ['/db.sql'], source: 'stdin' });
    // --stdin with paths is a usage error.
    expectCleanError(
      await forgePw(['backup', '-r', repo, '--stdin', '/etc/hostname', '--json']),
      2,
      'FORGE_USAGE',
    );
  });

  it('--dry-run writes nothing to the repository', async () => {
    const { repo, src } = await setup();
    expect((await forgePw(['backup', '-r', repo, src])).code).toBe(0);
    await writeFile(join(src, 'new-file.bin'), pseudoRandom(500_000, 3));
    await writeFile(join(src, 'a.txt'), 'changed\n');
    const before = await dirState(repo);
    const d = await forgePw(['backup', '-r', repo, '--dry-run', '--json', src]);
    expect(d.code, d.stderr).toBe(0);
    expect(summaryOf(d.stdout)).toMatchObject({
      dry_run: true,
      snapshot_id: null,
      files_new: 1,
      files_changed: 1,
    });
    const v = await forgePw(['backup', '-r', repo, '-n', '--verbose', src]);
    expect(v.code).toBe(0);
    expect(v.stdout).toContain('dry run: nothing was written');
    expect(v.stdout).not.toMatch(/snapshot [0-9a-f]{8} saved/);
    expect(await dirState(repo)).toEqual(before);
    // Also into a repository with existing locks dir etc.: no lock left, no temp file.
    expect(await listNames(repo, 'locks')).toEqual([]);
  });

  it('uses $XDG_DATA_HOME/backupforge/repository by default, created by the first backup', async () => {
    const base = await scratch();
    const xdg = join(base, 'xdg');
    const src = join(base, 'src');
    await mkdir(src);
    await writeFile(join(src, 'f.txt'), 'default repo\n');
    const env = { ...PW_ENV, XDG_DATA_HOME: xdg, HOME: join(base, 'home') };
    // Before any backup: reading commands do not create it.
    const none = await forge(['snapshots', '--json'], { env });
    const l0 = expectCleanError(none, 10, 'FORGE_REPO_NOT_FOUND');
    expect(l0).toContain(join(xdg, 'backupforge/repository'));
    await expect(stat(xdg)).rejects.toThrow();

    const b = await forge(['backup', src], { env });
    expect(b).toEqual({ code: 0, stdout: '', stderr: '' });
    const repo = join(xdg, 'backupforge', 'repository');
    expect((await stat(join(repo, 'config'))).isFile()).toBe(true);
    expect(await listNames(repo, 'snapshots')).toHaveLength(1);
    const s = await forge(['snapshots', '--json'], { env });
    expect(s.code, s.stderr).toBe(0);
    expect(expectOnlyJson(s.stdout)).toHaveLength(1);
    const d = await forgeBytes(['dump', 'latest', join(src, 'f.txt')], env);
    expect(d.stdout.toString()).toBe('default repo\n');

    // FORGE_REPOSITORY wins over the default; -r pointing nowhere: exit 10, one line, nothing created.
    const missing = join(base, 'no', 'such', 'repo');
    const m = await forge(['snapshots', '-r', missing], { env });
    expect(expectCleanError(m, 10)).toContain(missing);
    expect(m.stdout).toBe('');
    const m2 = await forge(['snapshots', '--json'], { env: { ...env, FORGE_REPOSITORY: missing } });
    expectCleanError(m2, 10, 'FORGE_REPO_NOT_FOUND');
    const m3 = await forge(['backup', src], { env: { ...env, FORGE_REPOSITORY: missing } });
    expectCleanError(m3, 10);
    await expect(stat(join(base, 'no'))).rejects.toThrow();
  });

  it('follows the output rules: silent without a TTY, --verbose, --json, --quiet', async () => {
    const { base, repo, src } = await setup();
    const silent = await forgePw(['backup', '-r', repo, src]);
    expect(silent).toEqual({ code: 0, stdout: '', stderr: '' });

    await writeFile(join(src, 'a.txt'), 'v2\n');
    const verbose = await forgePw(['backup', '-r', repo, '--verbose', src]);
    expect(verbose.code).toBe(0);
    expect(verbose.stderr).toBe('');
    expect(verbose.stdout).toMatch(/^Files: +0 new, 1 changed, 8 unmodified$/m);
    const saved = /^snapshot ([0-9a-f]{8}) saved$/m.exec(verbose.stdout);
    expect(saved, verbose.stdout).not.toBeNull();
    expect((await listNames(repo, 'snapshots')).some((n) => n.startsWith(saved![1]!))).toBe(true);

    await writeFile(join(src, 'a.txt'), 'v3\n');
    const json = await forgePw(['backup', '-r', repo, '--json', src]);
    expect(json.code).toBe(0);
    expect(json.stderr).toBe('');
    const lines = expectOnlyJson(json.stdout);
    expect(lines.every((l) => ['status', 'summary'].includes(l.message_type as string))).toBe(true);
    const sum = lines[lines.length - 1]!;
    expect(sum.message_type).toBe('summary');
    expect(sum.snapshot_id).toMatch(HEX64);
    expect(await listNames(repo, 'snapshots')).toContain(sum.snapshot_id);

    await writeFile(join(src, 'a.txt'), 'v4\n');
    const quiet = await forgePw(['backup', '-r', repo, '--quiet', '--verbose', src]);
    expect(quiet).toEqual({ code: 0, stdout: '', stderr: '' });
    const quiet2 = await forgePw(['backup', '-r', repo, '-q', src]);
    expect(quiet2).toEqual({ code: 0, stdout: '', stderr: '' });
    expect(await listNames(repo, 'snapshots')).toHaveLength(5);

    // restore: silent without a TTY; --verbose prints what it did.
    const rv = await forgePw(['restore', '-r', repo, 'latest', '--target', join(base, 'o1'), '--verbose']);
    expect(rv.code).toBe(0);
    expect(rv.stdout).toMatch(/^restored 9 files, /m);
    const rj = await forgePw([
      'restore',
      '-r',
      repo,
      'latest',
      '--target',
      join(base, 'o2'),
      '--json',
      '--verify',
    ]);
    expect(rj.code).toBe(0);
    expect(expectOnlyJson(rj.stdout).pop()).toMatchObject({
      message_type: 'summary',
      files_restored: 9,
      files_verified: 9,
      errors: 0,
    });
  });

  it('shows a progress line and a summary on a terminal', async (ctx) => {
    if (!(await haveCommand('script')))
      ctx.skip('util-linux `script` is not installed: cannot make a pseudo-terminal');
    const { base, repo } = await setup({ fixture: false });
    const big = join(base, 'big');
    await mkdir(big);
    await writeFile(join(big, 'f.bin'), pseudoRandom(50 * 1024 * 1024, 5));
    const cmd = `stty cols 150 rows 40; ${shq(process.execPath)} ${shq(FORGE_BIN)} backup -r ${shq(repo)} ${shq(big)}`;
    const r = await run('script', ['-qfec', cmd, '/dev/null'], { env: { FORGE_PASSWORD: PASSWORD } });
    expect(r.code, r.stdout).toBe(0);
    const segments = r.stdout.split(/\r\x1b\[K/);
    const progress = segments.filter((s) => /^\[\d+:\d\d\] /.test(s));
    expect(progress.length, r.stdout).toBeGreaterThan(0);
    expect(progress.some((s) => /\d+(\/\d+)? files, .*B\/s/.test(s) && s.includes('MiB/s'))).toBe(true);
    expect(r.stdout).toMatch(/Files: +1 new, 0 changed, 0 unmodified/);
    expect(r.stdout).toMatch(/snapshot [0-9a-f]{8} saved/);
    expect(r.stdout).not.toMatch(/^\s+at /m);
  }, 120_000);

  it('progress lines are not cut short on a terminal that reports 0 columns', async (ctx) => {
    if (!(await haveCommand('script'))) ctx.skip('util-linux `script` is not installed');
    const { base, repo } = await setup({ fixture: false });
    const big = join(base, 'big');
    await mkdir(big);
    await writeFile(join(big, 'f.bin'), pseudoRandom(40 * 1024 * 1024, 6));
    const cmd = `stty cols 0 rows 0; ${shq(process.execPath)} ${shq(FORGE_BIN)} backup -r ${shq(repo)} ${shq(big)}`;
    const r = await run('script', ['-qfec', cmd, '/dev/null'], { env: { FORGE_PASSWORD: PASSWORD } });
    expect(r.code).toBe(0);
    const progress = r.stdout.split(/\r\x1b\[K/).filter((s) => /^\[\d+:\d\d\] /.test(s));
    expect(progress.length).toBeGreaterThan(0);
    // Each line has the rate (`… MiB/s`) or the ETA (`ETA m:ss`) whole, then at most the current path.
    expect(progress.filter((s) => !/(B\/s|ETA \d+:\d\d)( {2}\S.*)?$/.test(s))).toEqual([]);
  }, 120_000);

  it('reads the password from --password-file, --password-command and the environment; none → exit 12', async () => {
    const { base, repo } = await setup({ fixture: false });
    const pwFile = join(base, 'pw');
    await writeFile(pwFile, `${PASSWORD}\n`);
    const f = await forge(['snapshots', '-r', repo, '--password-file', pwFile]);
    expect(f.code, f.stderr).toBe(0);
    expect(f.stdout.trim()).toMatch(/0 snapshots$/);
    const fe = await forge(['snapshots', '-r', repo], { env: { FORGE_PASSWORD_FILE: pwFile } });
    expect(fe.code, fe.stderr).toBe(0);
    const c = await forge(['snapshots', '-r', repo, '--password-command', `printf '%s\\n' ${shq(PASSWORD)}`]);
    expect(c.code, c.stderr).toBe(0);
    const ce = await forge(['snapshots', '-r', repo], {
      env: { FORGE_PASSWORD_COMMAND: `cat ${shq(pwFile)}` },
    });
    expect(ce.code, ce.stderr).toBe(0);

    const none = await forge(['snapshots', '-r', repo]);
    expect(expectCleanError(none, 12)).toContain('FORGE_PASSWORD');
    expect(none.stdout).toBe('');
    const noneJ = await forge(['backup', '-r', repo, base, '--json']);
    expectCleanError(noneJ, 12, 'FORGE_PASSWORD_REQUIRED');
    expect(await listNames(repo, 'snapshots')).toEqual([]);

    const badCmd = await forge(['snapshots', '-r', repo, '--password-command', 'exit 3', '--json']);
    expectCleanError(badCmd, 12, 'FORGE_PASSWORD_REQUIRED');
    const wrong = await forge(['snapshots', '-r', repo, '--password-command', 'echo nope', '--json']);
    expectCleanError(wrong, 12, 'FORGE_WRONG_PASSWORD');
    // An empty FORGE_PASSWORD is no password.
    expectCleanError(await forge(['snapshots', '-r', repo], { env: { FORGE_PASSWORD: '' } }), 12);
  });

  it('handles --help, --version, unknown options and commands', async () => {
    const h = await forge(['--help']);
    expect(h.code).toBe(0);
    expect(h.stdout).toMatch(/^Usage: forge /m);
    expect(h.stdout).toContain('Exit codes');
    const hb = await forge(['backup', '--help']);
    expect(hb.code).toBe(0);
    expect(hb.stdout).toContain('--stdin-filename');
    const v = await forge(['--version']);
    expect(v.code).toBe(0);
    expect(v.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);

    const uo = await forge(['snapshots', '--no-such-option']);
    expect(expectCleanError(uo, 2)).toContain('--no-such-option');
    expect(uo.stdout).toBe('');
    const uc = await forge(['frobnicate']);
    expect(expectCleanError(uc, 2)).toContain('frobnicate');
    const missingTarget = await forge(['restore', 'latest']);
    expect(expectCleanError(missingTarget, 2)).toContain('--target');
    const nothing = await forgePw(['backup', '-r', '/nonexistent-forge-repo', '--json']);
    expectCleanError(nothing, 2, 'FORGE_USAGE');
  });

  it('exits 3 with a warning when a file cannot be read, and saves the rest', async (ctx) => {
    if (!(await haveCommand('setpriv'))) ctx.skip('setpriv (util-linux) is not installed: cannot drop root');
    if (process.getuid?.() !== 0) ctx.skip('needs root to switch to user nobody');
    const base = await scratch();
    await chmod(base, 0o755);
    const src = join(base, 'src');
    const repo = join(base, 'repo');
    await mkdir(join(src, 'sub'), { recursive: true });
    await mkdir(repo, { mode: 0o777 });
    await chmod(repo, 0o777);
    await writeFile(join(src, 'ok.txt'), 'readable\n');
    await writeFile(join(src, 'sub', 'also-ok.txt'), 'readable too\n');
    await writeFile(join(src, 'secret.txt'), 'nobody may read this\n');
    await chmod(join(src, 'secret.txt'), 0o000);
    const asNobody = (args: string[]) =>
      run(
        'setpriv',
        ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, FORGE_BIN, ...args],
        {
          env: { ...PW_ENV, HOME: base },
        },
      );
    const init = await asNobody(['init', '-r', repo]);
    expect(init.code, init.stderr).toBe(0);
    const b = await asNobody(['backup', '-r', repo, src]);
    expect(b.code, b.stderr).toBe(3);
    expect(b.stdout).toBe('');
    const warnings = b.stderr.split('\n').filter((l) => l.startsWith('warning: '));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain(join(src, 'secret.txt'));
    expect(b.stderr).not.toMatch(/^error: /m);
    expect(b.stderr).not.toMatch(/^\s+at /m);

    const bj = await asNobody(['backup', '-r', repo, '--json', src]);
    expect(bj.code).toBe(3);
    const jl = expectOnlyJson(bj.stdout);
    expect(jl.filter((l) => l.message_type === 'warning')).toMatchObject([
      { path: join(src, 'secret.txt'), code: 'FORGE_PERMISSION' },
    ]);
    expect(jl[jl.length - 1]).toMatchObject({ message_type: 'summary', partial: true, warnings: 1 });

    const snaps = expectOnlyJson((await forgePw(['snapshots', '-r', repo, '--json'])).stdout);
    expect(snaps).toHaveLength(2);
    expect(snaps[0]).toMatchObject({ partial: true, username: 'nobody' });
    const out = join(base, 'out');
    const r = await forgePw(['restore', '-r', repo, snaps[0]!.id as string, '--target', out]);
    expect(r.code, r.stderr).toBe(0);
    const state = await dirState(join(out, src));
    expect([...state.keys()].sort()).toEqual(['ok.txt', 'sub', 'sub/also-ok.txt']);
    expect(await readFile(join(out, src, 'ok.txt'), 'utf8')).toBe('readable\n');
  });

  it('stops cleanly on SIGTERM during a backup: exit 130, no snapshot, no lock left', async () => {
    const { base, repo } = await setup({ fixture: false });
    const big = join(base, 'big');
    await mkdir(big);
    const fh = await open(join(big, 'f.bin'), 'w');
    for (let i = 0; i < 16; i++) await fh.write(randomBytes(8 * 1024 * 1024));
    await fh.close();
    const child = spawnForge(['backup', '-r', repo, '--json', big]);
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const lines: string[] = [];
    let killed = false;
    createInterface({ input: child.stdout! }).on('line', (l) => {
      lines.push(l);
      if (!killed && l.includes('"message_type":"status"')) {
        killed = true;
        child.kill('SIGTERM');
      }
    });
    const code = await new Promise<number>((res) => child.on('close', (c) => res(c ?? -1)));
    expect(killed, 'saw a progress report before the end').toBe(true);
    expect(code, stderr).toBe(130);
    expectNoStack({ stdout: lines.join('\n'), stderr });
    expect(stderr.split('\n').filter((l) => l.startsWith('error: ')).length).toBeLessThanOrEqual(1);
    expect(lines.filter((l) => l.includes('"message_type":"summary"'))).toEqual([]);
    expect(await listNames(repo, 'snapshots')).toEqual([]);
    expect(await listNames(repo, 'locks')).toEqual([]);
    // The repository is still usable.
    const after = await forgePw(['snapshots', '-r', repo]);
    expect(after.code, after.stderr).toBe(0);
    expect(after.stdout.trim()).toMatch(/0 snapshots$/);
  });

  it('refuses to init over an existing repository', async () => {
    const { repo } = await setup({ fixture: false });
    const before = await dirState(repo);
    const r = await forgePw(['init', '-r', repo, '--json']);
    expect(expectCleanError(r, 1, 'FORGE_REPO_EXISTS')).toContain(repo);
    expect(await dirState(repo)).toEqual(before);
  });

  it('respects locks: live exclusive lock → exit 11; stale locks are ignored and removed by unlock', async () => {
    const { repo, src } = await setup();
    const lockId = 'ab'.repeat(32);
    const lockPath = join(repo, 'locks', lockId);
    const writeLock = (time: Date, exclusive = true) =>
      writeFile(
        lockPath,
        JSON.stringify({ time: time.toISOString(), exclusive, hostname: 'otherhost', username: 'x', pid: 1 }),
      );
    await writeLock(new Date());
    const before = await dirState(repo);
    const b = await forgePw(['backup', '-r', repo, src, '--json']);
    const line = expectCleanError(b, 11, 'FORGE_LOCK_CONFLICT');
    expect(line).toContain('x@otherhost');
    expect(await dirState(repo)).toEqual(before);
    const b2 = await forgePw(['backup', '-r', repo, src]);
    expectCleanError(b2, 11);
    expect(b2.stdout).toBe('');

    // unlock leaves a live lock alone.
    const u = await forgePw(['unlock', '-r', repo]);
    expect(u.code, u.stderr).toBe(0);
    expect(await listNames(repo, 'locks')).toEqual([lockId]);

    // A shared lock of another host does not stop a backup.
    await writeLock(new Date(), false);
    const shared = await forgePw(['backup', '-r', repo, src]);
    expect(shared.code, shared.stderr).toBe(0);
    expect(await listNames(repo, 'locks')).toEqual([lockId]);

    // A lock not refreshed for 2 hours is stale.
    await writeLock(new Date(Date.now() - 2 * 3600 * 1000));
    const b3 = await forgePw(['backup', '-r', repo, src]);
    expect(b3).toEqual({ code: 0, stdout: '', stderr: '' });
    expect(await listNames(repo, 'snapshots')).toHaveLength(2);
    const u2 = await forgePw(['unlock', '-r', repo, '--json']);
    expect(u2.code).toBe(0);
    expect(expectOnlyJson(u2.stdout)).toMatchObject([
      { message_type: 'lock_removed', id: lockId, hostname: 'otherhost' },
    ]);
    expect(await listNames(repo, 'locks')).toEqual([]);

    // --remove-all removes live locks too.
    await writeLock(new Date());
    await writeFile(
      join(repo, 'locks', 'cd'.repeat(32)),
      JSON.stringify({
        time: new Date().toISOString(),
        exclusive: false,
        hostname: 'h3',
        username: 'y',
        pid: 2,
      }),
    );
    const u3 = await forgePw(['unlock', '-r', repo, '--remove-all']);
    expect(u3.code, u3.stderr).toBe(0);
    expect(await listNames(repo, 'locks')).toEqual([]);
    const b4 = await forgePw(['backup', '-r', repo, src]);
    expect(b4.code, b4.stderr).toBe(0);
  });
});
