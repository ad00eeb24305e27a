// Reliability scenario 1: kill -9 during backup. A source of a few hundred small and a few
// multi-MiB files is backed up once (S0); then each iteration changes a few files, starts
// `forge backup --json` and SIGKILLs it at a random moment. After every kill `forge check` must
// find 0 errors (unreferenced packs are allowed and counted), every committed snapshot must still
// be there, the next backup must run without `forge unlock` (the dead process's lock is stale),
// and every 10th iteration S0 and the newest snapshot restore byte-identically.
//
// FORGE_CRASH_ITERATIONS=500 for the nightly run; FORGE_CRASH_SEED=<n> replays a run.
import { spawn } from 'node:child_process';
import { readdir, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cleanEnv, FORGE_BIN, jsonLines, REPO_ROOT, tempDir } from '../support/cli.ts';
import {
  envCount,
  expectCleanCheck,
  expectCliRestore,
  forgeRun,
  type Manifest,
  objectNames,
  PW_ENV,
  Rng,
  SourceTree,
  testSeed,
} from './support.ts';

const ITERATIONS = envCount('FORGE_CRASH_ITERATIONS', 50);
const MiB = 1024 * 1024;

type KillMode = 'first-status' | 'after-status' | 'from-start';

interface Outcome {
  signal: NodeJS.Signals | null;
  code: number | null;
  stdout: string;
  stderr: string;
  sawStatus: boolean;
  /** Milliseconds from the first status line to the exit (when there was one). */
  afterStatusMs: number | undefined;
}

/** Starts `forge backup --json` and SIGKILLs it as `mode` says (unless it finishes first). */
function backupAndKill(args: string[], mode: KillMode, delayMs: number): Promise<Outcome> {
  return new Promise((res, rej) => {
    const child = spawn(process.execPath, [FORGE_BIN, ...args], {
      env: cleanEnv(PW_ENV),
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let sawStatus = false;
    let statusAt = 0;
    let timer: NodeJS.Timeout | undefined;
    const kill = () => child.kill('SIGKILL');
    if (mode === 'from-start') timer = setTimeout(kill, delayMs);
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      if (!sawStatus && stdout.includes('"message_type":"status"')) {
        sawStatus = true;
        statusAt = Date.now();
        if (mode === 'first-status') kill();
        else if (mode === 'after-status') timer = setTimeout(kill, delayMs);
      }
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const guard = setTimeout(kill, 120_000);
    child.on('error', rej);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      clearTimeout(guard);
      res({
        code,
        signal,
        stdout,
        stderr,
        sawStatus,
        afterStatusMs: sawStatus ? Date.now() - statusAt : undefined,
      });
    });
  });
}

const cleanups: (() => Promise<void>)[] = [];
afterAll(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

describe('kill -9 during backup (reliability scenario 1)', () => {
  it(
    `survives ${ITERATIONS} SIGKILLs at random moments: check clean, snapshots kept, no unlock needed`,
    async () => {
      const seed = testSeed('kill-9');
      const rng = new Rng(seed);
      const t = await tempDir('forge-kill9-');
      cleanups.push(t.cleanup);
      const repo = join(t.path, 'repo');
      const src = join(t.path, 'src');
      const target = join(t.path, 'restore');
      const tree = new SourceTree(src, rng);
      // ~70 MiB: 300 small files (text and random) and 4 random files of 14 MiB.
      await tree.generate({ small: 300, smallMax: 40_000, big: 4, bigSize: 14 * MiB });

      let commands = 0;
      const init = await forgeRun(['init', '-r', repo]);
      commands++;
      expect(init.code, init.stderr).toBe(0);

      const b0 = await forgeRun(['backup', '-r', repo, '--json', src]);
      commands++;
      expect(b0.code, b0.stderr).toBe(0);
      const s0 = jsonLines(b0.stdout).find((l) => l.message_type === 'summary')!.snapshot_id as string;
      const m0: Manifest = new Map(tree.manifest);
      const fullMs = b0.ms;
      console.log(`[kill-9] initial backup ${s0.slice(0, 8)} took ${fullMs} ms`);

      /** Every committed snapshot and the source it was taken of. */
      const committed = new Map<string, Manifest>([[s0, m0]]);
      let newest = s0;
      const stats = { killed: 0, completed: 0, killedAfterCommit: 0, maxUnreferenced: 0, staleLocksSeen: 0 };
      const afterStatus = { big: fullMs * 0.6, small: fullMs * 0.3 };
      const modes: Record<KillMode, number> = { 'first-status': 0, 'after-status': 0, 'from-start': 0 };

      for (let i = 0; i < ITERATIONS; i++) {
        // Sometimes much new data (whole big files replaced: packs are written mid-run), else a few edits.
        const replaceBig = rng.chance(0.4) ? rng.int(1, 3) : 0;
        const changes = await tree.mutate({ changes: rng.int(1, 6), bigRegion: MiB, replaceBig });
        const force = rng.chance(0.3);
        const mode = rng.pick<KillMode>(['first-status', 'after-status', 'from-start']);
        // Kill between the start (or the first status line) and the expected end, learnt from the
        // runs that finished first.
        const big = force || replaceBig > 0;
        const expected = mode === 'from-start' ? fullMs : big ? afterStatus.big : afterStatus.small;
        const delay = Math.round(rng.next() * expected);
        modes[mode]++;
        const what = `iteration ${i} (seed ${seed}, mode ${mode}, delay ${delay} ms${force ? ', --force' : ''}, changes ${changes.join(' ')})`;
        const args = ['backup', '-r', repo, '--json', ...(force ? ['--force'] : []), src];
        const o = await backupAndKill(args, mode, delay);
        commands++;

        const snaps = await objectNames(repo, 'snapshots');
        for (const id of committed.keys())
          expect(snaps, `${what}: committed ${id.slice(0, 8)} kept`).toContain(id);
        const fresh = snaps.filter((s) => !committed.has(s));
        expect(fresh.length, `${what}: at most one new snapshot`).toBeLessThanOrEqual(1);
        if (o.signal === 'SIGKILL') {
          stats.killed++;
          if (fresh.length === 1) stats.killedAfterCommit++;
        } else {
          // It finished before the kill: a normal, successful backup (never a lock conflict).
          expect(o.code, `${what}: finished on its own\n${o.stderr}`).toBe(0);
          stats.completed++;
          if (o.afterStatusMs !== undefined && mode === 'after-status')
            afterStatus[big ? 'big' : 'small'] = Math.max(o.afterStatusMs, 100);
          const id = jsonLines(o.stdout).find((l) => l.message_type === 'summary')?.snapshot_id;
          expect(fresh, what).toEqual([id]);
        }
        if (fresh.length === 1) {
          committed.set(fresh[0]!, new Map(tree.manifest));
          newest = fresh[0]!;
        }
        stats.staleLocksSeen = Math.max(stats.staleLocksSeen, (await objectNames(repo, 'locks')).length);

        // No unlock: check (which takes no lock) must be clean right away.
        const sum = await expectCleanCheck(repo, what);
        commands++;
        expect(sum.snapshots, what).toBe(committed.size);
        stats.maxUnreferenced = Math.max(stats.maxUnreferenced, sum.unreferencedPacks);

        if (i % 10 === 9) {
          await expectCliRestore(repo, s0, src, target, m0, `${what}: S0`);
          commands++;
          if (newest !== s0) {
            await expectCliRestore(repo, newest, src, target, committed.get(newest)!, `${what}: newest`);
            commands++;
          }
        }
      }

      // The killed runs left their locks behind; a dead pid on this host is stale, so the final
      // backup proceeds without `forge unlock`.
      const staleLocks = await objectNames(repo, 'locks');
      if (stats.killed - stats.killedAfterCommit > 0 && modes['first-status'] + modes['after-status'] > 0)
        expect(staleLocks.length, 'killed runs leave their locks').toBeGreaterThan(0);
      await tree.mutate({ changes: 3, bigRegion: MiB });
      const fin = await forgeRun(['backup', '-r', repo, '--json', src]);
      commands++;
      expect(fin.code, `final backup with ${staleLocks.length} stale locks present\n${fin.stderr}`).toBe(0);
      const finId = jsonLines(fin.stdout).find((l) => l.message_type === 'summary')!.snapshot_id as string;
      committed.set(finId, new Map(tree.manifest));
      const finalSum = await expectCleanCheck(repo, `final (seed ${seed})`, true);
      commands++;
      expect(finalSum.snapshots).toBe(committed.size);
      expect(finalSum.packsRead).toBe(finalSum.packs - finalSum.unreferencedPacks);
      await expectCliRestore(repo, finId, src, target, committed.get(finId)!, 'final snapshot');
      await expectCliRestore(repo, s0, src, target, m0, 'S0 at the end');
      commands += 2;

      // `forge unlock` removes exactly the stale locks of the killed runs.
      const u = await forgeRun(['unlock', '-r', repo, '--json']);
      commands++;
      expect(u.code, u.stderr).toBe(0);
      const removed = jsonLines(u.stdout).filter((l) => l.message_type === 'lock_removed');
      expect(removed.map((l) => l.id).sort()).toEqual(staleLocks);
      expect(await objectNames(repo, 'locks')).toEqual([]);

      // The killed runs' temporary files (a pack being streamed, a save in flight): never listed,
      // and `forge prune` deletes them once nobody has touched them for an hour.
      const temps = await temporaryFiles(repo);
      const hourAgo = new Date(Date.now() - 61 * 60 * 1000);
      for (const f of temps) await utimes(f, hourAgo, hourAgo);
      const p = await forgeRun(['prune', '-r', repo, '--json']);
      commands++;
      expect(p.code, p.stderr).toBe(0);
      const pruned = jsonLines(p.stdout).find((l) => l.message_type === 'summary')!;
      expect(pruned.temporary_files, 'prune deleted every temporary file the kills left').toBe(temps.length);
      expect(await temporaryFiles(repo)).toEqual([]);
      await expectCleanCheck(repo, `after prune (seed ${seed})`, true);
      await expectCliRestore(repo, finId, src, target, committed.get(finId)!, 'final snapshot after prune');
      commands += 2;

      console.log(
        `[kill-9] seed ${seed}: ${ITERATIONS} iterations, ${stats.killed} killed (${stats.killedAfterCommit} after the snapshot was saved), ${stats.completed} finished first; modes ${JSON.stringify(modes)}; up to ${stats.maxUnreferenced} unreferenced packs, ${finalSum.unreferencedPacks} at the end; ${staleLocks.length} stale locks; ${temps.length} temporary files left; ${commands} forge commands`,
      );
      // Not vacuous: most runs were really killed.
      expect(stats.killed, 'runs really killed').toBeGreaterThanOrEqual(Math.ceil(ITERATIONS * 0.4));
    },
    ITERATIONS * 8_000 + 180_000,
  );
});

/** Every `.tmp-*` file anywhere in the repository directory. */
async function temporaryFiles(repo: string): Promise<string[]> {
  const all = await readdir(repo, { recursive: true, withFileTypes: true });
  return all
    .filter((e) => e.isFile() && e.name.startsWith('.tmp-'))
    .map((e) => join(e.parentPath, e.name))
    .sort();
}
