import { access, mkdir, mkdtemp, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Io } from './context.ts';
import { ExitCode, exitCodeFor } from './exit-codes.ts';
import { runCli } from './program.ts';

function fakeIo(
  env: Record<string, string> = {},
  cwd = process.cwd(),
): Io & { out: () => string; err: () => string } {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const o: Buffer[] = [];
  const e: Buffer[] = [];
  stdout.on('data', (d) => o.push(d));
  stderr.on('data', (d) => e.push(d));
  const stdin = new PassThrough();
  stdin.end();
  return {
    stdout,
    stderr,
    stdin,
    env,
    cwd,
    out: () => Buffer.concat(o).toString(),
    err: () => Buffer.concat(e).toString(),
  };
}

describe('runCli', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'forge-cli-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('maps error codes to the documented exit codes', () => {
    expect(exitCodeFor('FORGE_WRONG_PASSWORD')).toBe(12);
    expect(exitCodeFor('FORGE_REPO_NOT_FOUND')).toBe(10);
    expect(exitCodeFor('FORGE_REPO_VERSION')).toBe(10);
    expect(exitCodeFor('FORGE_LOCK_CONFLICT')).toBe(11);
    expect(exitCodeFor('FORGE_ABORTED')).toBe(130);
    expect(exitCodeFor('FORGE_INTEGRITY')).toBe(1);
    expect(exitCodeFor('FORGE_USAGE')).toBe(2);
  });

  it('--help exits 0 and documents exit codes', async () => {
    const io = fakeIo();
    expect(await runCli(['--help'], { io })).toBe(ExitCode.OK);
    expect(io.out()).toContain('Exit codes');
    expect(io.out()).toContain('backup');
  });

  it('an unknown option is a usage error (2)', async () => {
    const io = fakeIo();
    expect(await runCli(['backup', '--frobnicate'], { io })).toBe(ExitCode.USAGE);
    expect(io.err()).toMatch(/unknown option/);
  });

  it('a missing explicit repository is exit 10 with one line and a hint, even without a password', async () => {
    const io = fakeIo();
    expect(await runCli(['-r', join(dir, 'nope'), 'snapshots'], { io })).toBe(ExitCode.REPO);
    const lines = io.err().trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(
      /^error: there is no repository at .*nope; check the path, or create one with 'forge init/,
    );
  });

  it('no password without a terminal is exit 12', async () => {
    const repo = join(dir, 'repo');
    expect(await runCli(['-r', repo, 'init'], { io: fakeIo({ FORGE_PASSWORD: 'pw' }) })).toBe(0);
    const io = fakeIo();
    expect(await runCli(['-r', repo, 'snapshots'], { io })).toBe(ExitCode.PASSWORD);
    expect(io.err()).toMatch(/FORGE_PASSWORD/);
  });

  it('--json errors carry the stable code', async () => {
    const io = fakeIo({ FORGE_PASSWORD: 'pw' });
    expect(await runCli(['--json', '-r', join(dir, 'nope'), 'snapshots'], { io })).toBe(ExitCode.REPO);
    expect(JSON.parse(io.out().trim())).toMatchObject({
      message_type: 'error',
      code: 'FORGE_REPO_NOT_FOUND',
    });
  });

  it('init, backup and snapshots through runCli', async () => {
    const repo = join(dir, 'repo');
    const env = { FORGE_PASSWORD: 'pw' };
    expect(await runCli(['-r', repo, 'init'], { io: fakeIo(env) })).toBe(0);
    const io = fakeIo(env, dir);
    expect(await runCli(['-r', repo, '--json', 'backup', '.'], { io })).toBe(0);
    const summary = io
      .out()
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l))
      .find((m) => m.message_type === 'summary');
    expect(summary.snapshot_id).toMatch(/^[0-9a-f]{64}$/);
    const list = fakeIo(env);
    expect(await runCli(['-r', repo, 'snapshots'], { io: list })).toBe(0);
    expect(list.out()).toContain(summary.snapshot_id.slice(0, 8));
    expect(list.out()).toContain('1 snapshot');
  });

  it('a second init on the same location fails without touching it', async () => {
    const repo = join(dir, 'repo');
    const env = { FORGE_PASSWORD: 'pw' };
    expect(await runCli(['-r', repo, 'init'], { io: fakeIo(env) })).toBe(0);
    const io = fakeIo(env);
    expect(await runCli(['-r', repo, 'init'], { io })).toBe(ExitCode.FATAL);
    expect(io.err()).toMatch(/already exists/);
  });

  it('prune deletes the temporary files interrupted writes left an hour or more ago, and says so', async () => {
    const repo = join(dir, 'repo');
    const env = { FORGE_PASSWORD: 'pw' };
    expect(await runCli(['-r', repo, 'init'], { io: fakeIo(env) })).toBe(0);
    expect(await runCli(['-r', repo, 'backup', '.'], { io: fakeIo(env, dir) })).toBe(0);
    const stale = [join(repo, 'data', '.tmp-0a0a0a'), join(repo, 'data', 'ab', '.tmp-0b0b0b')];
    const fresh = join(repo, 'index', '.tmp-0c0c0c');
    const twoHoursAgo = new Date(Date.now() - 2 * 60 * 60 * 1000);
    await mkdir(join(repo, 'data', 'ab'), { recursive: true });
    for (const f of stale) {
      await writeFile(f, Buffer.alloc(1024));
      await utimes(f, twoHoursAgo, twoHoursAgo);
    }
    await writeFile(fresh, 'a write in progress');
    const there = (f: string) =>
      access(f).then(
        () => true,
        () => false,
      );

    // check counts them (a note, not an error) and leaves them.
    const checked = fakeIo(env);
    expect(await runCli(['-r', repo, '--json', 'check'], { io: checked })).toBe(0);
    const lines = checked
      .out()
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines.at(-1)).toMatchObject({ message_type: 'summary', ok: true, temporaryFiles: 2 });
    expect(lines.find((l) => l.kind === 'temporary-files')).toMatchObject({ severity: 'note' });

    const dry = fakeIo(env);
    expect(await runCli(['-r', repo, '--verbose', 'prune', '--dry-run'], { io: dry })).toBe(0);
    expect(dry.out()).toContain(
      'would delete 2 temporary files (2.00 KiB) that interrupted writes left behind',
    );
    for (const f of stale) expect(await there(f)).toBe(true);

    const pruned = fakeIo(env);
    expect(await runCli(['-r', repo, '--json', 'prune'], { io: pruned })).toBe(0);
    expect(JSON.parse(pruned.out().trim().split('\n').at(-1)!)).toMatchObject({
      message_type: 'summary',
      temporary_files: 2,
      temporary_bytes: 2048,
    });
    for (const f of stale) expect(await there(f)).toBe(false);
    expect(await there(fresh)).toBe(true);
    expect(await runCli(['-r', repo, 'check', '--read-data'], { io: fakeIo(env) })).toBe(0);
  });

  it('check, forget, repair index and key management', async () => {
    const repo = join(dir, 'repo');
    const env = { FORGE_PASSWORD: 'pw' };
    expect(await runCli(['-r', repo, 'init'], { io: fakeIo(env) })).toBe(0);
    for (let i = 0; i < 3; i++)
      expect(await runCli(['-r', repo, 'backup', '.'], { io: fakeIo(env, dir) })).toBe(0);

    const check = fakeIo(env);
    expect(await runCli(['-r', repo, '--json', 'check', '--read-data'], { io: check })).toBe(0);
    const summary = JSON.parse(check.out().trim().split('\n').at(-1)!);
    expect(summary).toMatchObject({ message_type: 'summary', ok: true, errors: 0, snapshots: 3 });
    expect(await runCli(['-r', repo, 'check', '--read-data-subset', '7'], { io: fakeIo(env) })).toBe(
      ExitCode.USAGE,
    );

    const dry = fakeIo(env);
    expect(await runCli(['-r', repo, 'forget', '--keep-last', '1', '--dry-run'], { io: dry })).toBe(0);
    expect(dry.out()).toMatch(/keep 1 snapshot/);
    expect(dry.out()).toMatch(/remove 2 snapshots/);
    expect(await runCli(['-r', repo, 'forget', '--keep-last', '1'], { io: fakeIo(env) })).toBe(0);
    const list = fakeIo(env);
    await runCli(['-r', repo, 'snapshots'], { io: list });
    expect(list.out()).toContain('1 snapshot');
    expect(await runCli(['-r', repo, 'forget'], { io: fakeIo(env) })).toBe(ExitCode.USAGE);
    const pruned = fakeIo(env);
    expect(await runCli(['-r', repo, '--json', 'prune', '--max-unused', '0%'], { io: pruned })).toBe(0);
    expect(JSON.parse(pruned.out().trim().split('\n').at(-1)!)).toMatchObject({
      message_type: 'summary',
      snapshots: 1,
    });
    expect(await runCli(['-r', repo, 'prune', '--max-unused', 'lots'], { io: fakeIo(env) })).toBe(
      ExitCode.USAGE,
    );
    expect(await runCli(['-r', repo, 'check', '--read-data'], { io: fakeIo(env) })).toBe(0);

    expect(await runCli(['-r', repo, 'repair', 'index'], { io: fakeIo(env) })).toBe(0);

    expect(
      await runCli(['-r', repo, 'key', 'add'], { io: fakeIo({ ...env, FORGE_NEW_PASSWORD: 'second' }) }),
    ).toBe(0);
    const keys = fakeIo({ FORGE_PASSWORD: 'second' });
    expect(await runCli(['-r', repo, '--json', 'key', 'list'], { io: keys })).toBe(0);
    const rows = keys
      .out()
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(rows).toHaveLength(2);
    const current = rows.find((k) => k.current)!;
    const other = rows.find((k) => !k.current)!;
    expect(
      await runCli(['-r', repo, 'key', 'remove', current.id], { io: fakeIo({ FORGE_PASSWORD: 'second' }) }),
    ).toBe(ExitCode.USAGE);
    expect(
      await runCli(['-r', repo, 'key', 'remove', other.id.slice(0, 8)], {
        io: fakeIo({ FORGE_PASSWORD: 'second' }),
      }),
    ).toBe(0);
    expect(await runCli(['-r', repo, 'snapshots'], { io: fakeIo(env) })).toBe(ExitCode.PASSWORD);
    expect(
      await runCli(['-r', repo, 'key', 'remove', current.id], { io: fakeIo({ FORGE_PASSWORD: 'second' }) }),
    ).toBe(ExitCode.USAGE);
  });
});
