// Reliability scenario 8, the parts that exist: a suspended writer (SIGSTOP for longer than the
// lock TTL) whose lock another process treats as stale must, after SIGCONT, abort with
// FORGE_LOCK_EXPIRED and commit no snapshot; and a lock whose process is dead on this host is
// stale: ignored by backups and removed by `forge unlock`, while a live one is respected.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cleanEnv, FORGE_BIN, jsonLines, REPO_ROOT, tempDir } from '../support/cli.ts';
import {
  expectCleanCheck,
  forgeRun,
  initFastRepo,
  objectNames,
  PW_ENV,
  Rng,
  SourceTree,
  sleep,
  testSeed,
} from './support.ts';

const MiB = 1024 * 1024;
const LOCK_ENV = { FORGE_LOCK_STALE_MS: '3000', FORGE_LOCK_REFRESH_MS: '500' };

const cleanups: (() => Promise<void>)[] = [];
const children: ChildProcess[] = [];
afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  while (cleanups.length > 0) await cleanups.pop()!();
});

/** Starts a backup; resolves `started` at its first status line (the lock is held by then). */
function startBackup(repo: string, src: string) {
  const child = spawn(process.execPath, [FORGE_BIN, 'backup', '-r', repo, '--json', src], {
    env: cleanEnv({ ...PW_ENV, ...LOCK_ENV }),
    cwd: REPO_ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  let stdout = '';
  let stderr = '';
  let onStatus: () => void = () => {};
  const started = new Promise<void>((r) => {
    onStatus = r;
  });
  child.stdout!.on('data', (d: Buffer) => {
    stdout += d.toString();
    if (stdout.includes('"message_type":"status"')) onStatus();
  });
  child.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const done = new Promise<{ code: number | null; stdout: string; stderr: string }>((res) =>
    child.on('close', (code) => res({ code, stdout, stderr })),
  );
  return { child, started, done };
}

async function setup(name: string, seed: number, bigMiB: number) {
  const t = await tempDir(`forge-locks-${name}-`);
  cleanups.push(t.cleanup);
  const repo = join(t.path, 'repo');
  const src = join(t.path, 'src');
  await initFastRepo(repo);
  const tree = new SourceTree(src, new Rng(seed));
  await tree.generate({ small: 50, smallMax: 20_000, big: bigMiB > 0 ? 4 : 0, bigSize: (bigMiB / 4) * MiB });
  return { repo, src };
}

describe('locks (reliability scenario 8)', () => {
  const seed = testSeed('locks');

  for (const other of ['unlock', 'repair index'] as const) {
    it(`a writer suspended past the lock TTL while \`forge ${other}\` treats its lock as stale aborts with FORGE_LOCK_EXPIRED and commits nothing`, async () => {
      const { repo, src } = await setup(other.replace(' ', '-'), seed, 120);
      const b = startBackup(repo, src);
      await b.started;
      b.child.kill('SIGSTOP');
      try {
        await sleep(3_600); // longer than FORGE_LOCK_STALE_MS
        const locks = await objectNames(repo, 'locks');
        expect(locks, 'the suspended writer holds a lock').toHaveLength(1);
        const r = await forgeRun([...other.split(' '), '-r', repo, '--json'], LOCK_ENV);
        expect(r.code, `forge ${other} proceeds past the stale lock\n${r.stderr}`).toBe(0);
        if (other === 'unlock') {
          const removed = jsonLines(r.stdout).filter((l) => l.message_type === 'lock_removed');
          expect(removed.map((l) => l.id)).toEqual(locks);
        }
      } finally {
        b.child.kill('SIGCONT');
      }
      const res = await b.done;
      expect(res.code, `the resumed writer fails\n${res.stderr}`).not.toBe(0);
      expect(res.code).not.toBe(3);
      const err = jsonLines(res.stdout).find((l) => l.message_type === 'error');
      expect(err?.code, res.stdout.slice(-2000)).toBe('FORGE_LOCK_EXPIRED');
      expect(res.stderr).toMatch(/lock/);
      expect(await objectNames(repo, 'snapshots'), 'no snapshot committed').toEqual([]);
      await expectCleanCheck(repo, `after the expired writer (${other})`);
      // And the repository works normally afterwards.
      const again = await forgeRun(['backup', '-r', repo, '--json', src]);
      expect(again.code, again.stderr).toBe(0);
      expect(await objectNames(repo, 'snapshots')).toHaveLength(1);
    }, 120_000);
  }

  it('a lock of a dead process on this host is stale: ignored by backup and removed by unlock; a live one is respected', async () => {
    const { repo, src } = await setup('dead-pid', seed, 0);
    // A pid that certainly exited.
    const dead = spawn(process.execPath, ['-e', '0']);
    const deadPid = dead.pid!;
    await new Promise((r) => dead.on('close', r));
    const now = new Date().toISOString();
    const lock = (pid: number) =>
      JSON.stringify({
        time: now,
        created: now,
        exclusive: true,
        kind: 'exclusive',
        hostname: hostname(),
        username: 'root',
        pid,
      });
    await mkdir(join(repo, 'locks'), { recursive: true });
    const deadId = 'de'.repeat(32);
    const liveId = 'a1'.repeat(32);
    await writeFile(join(repo, 'locks', deadId), lock(deadPid));

    // Fresh (not timed out) but its process is gone: the backup proceeds.
    const b = await forgeRun(['backup', '-r', repo, '--json', src]);
    expect(b.code, `backup past a dead pid's exclusive lock\n${b.stderr}`).toBe(0);

    // A live process's exclusive lock (this test runner's pid) is respected.
    await writeFile(join(repo, 'locks', liveId), lock(process.pid));
    const blocked = await forgeRun(['backup', '-r', repo, '--json', src]);
    expect(blocked.code, blocked.stderr).toBe(11);
    expect(jsonLines(blocked.stdout).find((l) => l.message_type === 'error')?.code).toBe(
      'FORGE_LOCK_CONFLICT',
    );

    // unlock removes the dead one only.
    const u = await forgeRun(['unlock', '-r', repo, '--json']);
    expect(u.code, u.stderr).toBe(0);
    expect(
      jsonLines(u.stdout)
        .filter((l) => l.message_type === 'lock_removed')
        .map((l) => l.id),
    ).toEqual([deadId]);
    expect(await objectNames(repo, 'locks')).toEqual([liveId]);
    await rm(join(repo, 'locks', liveId));
    expect(await objectNames(repo, 'snapshots')).toHaveLength(1);
    await expectCleanCheck(repo, 'dead-pid lock');
  }, 60_000);
});
