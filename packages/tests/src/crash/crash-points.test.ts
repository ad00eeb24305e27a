// Reliability scenario 2: a crash at every named step. For every crash point of `backup` (and
// the 1st and 2nd pass of `backup:pack-saved`, the data making ≥ 2 packs) and of
// `repair index`, the CLI runs with FORGE_TEST_CRASH_AT and must die by SIGKILL right there;
// afterwards `forge check` is clean, every committed snapshot is listed and restores
// byte-identically, and the next normal run succeeds. The same for `forget` and `prune` when the
// built CLI has them. 100% of CRASH_POINTS are exercised, except points whose command the built
// CLI lacks (reported in the log).
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { CRASH_POINTS } from '@backupforge/engine';
import { afterAll, describe, expect, it } from 'vitest';
import { jsonLines, tempDir } from '../support/cli.ts';
import {
  expectCleanCheck,
  expectCliRestore,
  forgeCheck,
  forgeRun,
  initFastRepo,
  type Manifest,
  objectNames,
  Rng,
  SourceTree,
  testSeed,
} from './support.ts';

const MiB = 1024 * 1024;

const cleanups: (() => Promise<void>)[] = [];
afterAll(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

describe('crash at every named step (reliability scenario 2)', () => {
  it('every crash point (backup, repair index, forget, prune): check clean, no committed snapshot lost, next run succeeds', async () => {
    const seed = testSeed('crash-points');
    const rng = new Rng(seed);
    const t = await tempDir('forge-crashpoints-');
    cleanups.push(t.cleanup);
    const repo = join(t.path, 'repo');
    const src = join(t.path, 'src');
    const target = join(t.path, 'restore');
    const tree = new SourceTree(src, rng);
    // 3 × 6 MiB of random data: one full 16 MiB pack plus the rest, so ≥ 2 data packs per backup.
    await tree.generate({ small: 60, smallMax: 30_000, big: 3, bigSize: 6 * MiB });
    await initFastRepo(repo);

    const committed = new Map<string, Manifest>();
    const backupOk = async (what: string) => {
      const r = await forgeRun(['backup', '-r', repo, '--json', src]);
      expect(r.code, `${what}\n${r.stderr}`).toBe(0);
      const id = jsonLines(r.stdout).find((l) => l.message_type === 'summary')!.snapshot_id as string;
      committed.set(id, new Map(tree.manifest));
      return id;
    };
    const expectCommittedListed = async (what: string) => {
      const snaps = await objectNames(repo, 'snapshots');
      for (const id of committed.keys())
        expect(snaps, `${what}: ${id.slice(0, 8)} still listed`).toContain(id);
      const list = await forgeRun(['snapshots', '-r', repo, '--json']);
      expect(list.code, list.stderr).toBe(0);
      for (const id of committed.keys())
        expect(list.stdout, `${what}: forge snapshots lists it`).toContain(id);
      return snaps;
    };
    /**
     * Restores committed snapshots byte-identically: all of them where data was deleted (forget,
     * prune) and at the end; the oldest and the newest after crashes that only add data.
     */
    const expectAllRestore = async (what: string, which: 'all' | 'ends' = 'all') => {
      const all = [...committed];
      const pick = which === 'all' || all.length <= 2 ? all : [all[0]!, all[all.length - 1]!];
      for (const [id, m] of pick) await expectCliRestore(repo, id, src, target, m, what);
    };
    await backupOk('initial backup');

    const exercised = new Set<string>();

    // --- backup ---
    const backupCases = [
      { point: 'backup:pack-saved', nth: 1 },
      { point: 'backup:pack-saved', nth: 2 },
      { point: 'backup:index-saved', nth: 1 },
      { point: 'backup:before-snapshot', nth: 1 },
      { point: 'backup:snapshot-saved', nth: 1 },
    ] as const;
    let unreferenced = (await expectCleanCheck(repo, 'after the first backup')).unreferencedPacks;
    for (const { point, nth } of backupCases) {
      const what = `${point}:${nth} (seed ${seed})`;
      // All-new big files: ≥ 2 new data packs, so pass 2 of pack-saved is reached.
      await tree.mutate({ changes: 3, replaceBig: 3 });
      const before = new Set(await objectNames(repo, 'snapshots'));
      const r = await forgeRun(['backup', '-r', repo, '--json', src], {
        FORGE_TEST_CRASH_AT: nth === 1 ? point : `${point}:${nth}`,
      });
      expect(r.signal, `${what}: died by SIGKILL (code ${r.code})\n${r.stderr}`).toBe('SIGKILL');
      exercised.add(point);

      const snaps = await expectCommittedListed(what);
      const fresh = snaps.filter((s) => !before.has(s));
      if (point === 'backup:snapshot-saved') {
        // The snapshot was durable before the crash: it is committed and complete.
        expect(fresh, what).toHaveLength(1);
        committed.set(fresh[0]!, new Map(tree.manifest));
      } else {
        expect(fresh, `${what}: no snapshot before the commit point`).toEqual([]);
      }
      const sum = await expectCleanCheck(repo, what);
      // Packs saved before the crash but never indexed are reported, not errors.
      const added = sum.unreferencedPacks - unreferenced;
      expect(added, `${what}: unreferenced packs left`).toBe(point === 'backup:pack-saved' ? nth : 0);
      unreferenced = sum.unreferencedPacks;
      await expectAllRestore(what, 'ends');

      // The next normal backup (no unlock: the dead process's lock is stale) succeeds.
      await backupOk(`${what}: next backup`);
      await expectCleanCheck(repo, `${what}: after the next backup`);
    }

    // --- repair index ---
    const repairCases = [
      { point: 'repair-index:index-saved', remove: 'all' },
      { point: 'repair-index:old-index-removed', remove: 'all' },
      { point: 'repair-index:index-saved', remove: 'one' },
      { point: 'repair-index:old-index-removed', remove: 'one' },
    ] as const;
    for (const { point, remove } of repairCases) {
      const what = `${point} with ${remove} index file(s) deleted (seed ${seed})`;
      await backupOk(`${what}: a backup first (one more index file)`);
      const packs = await objectNames(repo, 'data');
      const indexes = await objectNames(repo, 'index');
      expect(indexes.length, `${what}: index files`).toBeGreaterThan(1);
      const victims = remove === 'all' ? indexes : [rng.pick(indexes)];
      for (const v of victims) await rm(join(repo, 'index', v));

      const r = await forgeRun(['repair', 'index', '-r', repo, '--json'], { FORGE_TEST_CRASH_AT: point });
      if (remove === 'one' && r.code === 0) {
        // The deleted file was redundant (an earlier crashed repair left its packs listed twice):
        // the index is still complete, so repair rightly writes and removes nothing.
        const summary = jsonLines(r.stdout).find((l) => l.message_type === 'summary');
        expect(summary?.index_files_written, `${what}: a repair that did not crash wrote nothing`).toEqual(
          [],
        );
        await expectCleanCheck(repo, `${what}: index still complete`);
        continue;
      }
      expect(r.signal, `${what}: died by SIGKILL (code ${r.code})\n${r.stderr}`).toBe('SIGKILL');
      exercised.add(point);
      await expectCommittedListed(what);

      // Either already clean, or a second repair makes it so.
      const c = await forgeCheck(repo);
      if (c.run.code !== 0) {
        const again = await forgeRun(['repair', 'index', '-r', repo, '--json']);
        expect(again.code, `${what}: second repair\n${again.stderr}`).toBe(0);
      }
      await expectCleanCheck(repo, `${what}: after the crash (and a second repair if needed)`);

      // A final repair: idempotent, loses no pack, and every snapshot restores.
      const fin = await forgeRun(['repair', 'index', '-r', repo, '--json']);
      expect(fin.code, fin.stderr).toBe(0);
      const finSum = jsonLines(fin.stdout).find((l) => l.message_type === 'summary')!;
      expect(finSum.index_files_written, `${what}: nothing left to repair`).toEqual([]);
      expect(await objectNames(repo, 'data'), `${what}: no pack lost`).toEqual(packs);
      await expectCleanCheck(repo, `${what}: after the final repair`, true);
      await expectAllRestore(`${what}: after the final repair`, 'ends');
      await backupOk(`${what}: backup after repair`);
    }

    // --- forget and prune: exercised when the built CLI has the command ---
    const hasCommand = async (cmd: string) => (await forgeRun([cmd, '--help'])).code === 0;
    const skipped: string[] = [];
    if (await hasCommand('forget')) {
      const a = await backupOk('forget: snapshot A');
      await tree.mutate({ changes: 2 });
      const b = await backupOk('forget: snapshot B');
      const r = await forgeRun(['forget', '-r', repo, a, b], {
        FORGE_TEST_CRASH_AT: 'forget:snapshot-removed',
      });
      expect(r.signal, `forget:snapshot-removed: died by SIGKILL (code ${r.code})\n${r.stderr}`).toBe(
        'SIGKILL',
      );
      exercised.add('forget:snapshot-removed');
      const left = await objectNames(repo, 'snapshots');
      const gone = [a, b].filter((x) => !left.includes(x));
      expect(gone, 'forget:snapshot-removed: exactly one snapshot removed before the crash').toHaveLength(1);
      committed.delete(gone[0]!);
      await expectCommittedListed('forget:snapshot-removed');
      await expectCleanCheck(repo, 'forget:snapshot-removed');
      await expectAllRestore('forget:snapshot-removed');
      const rest = [a, b].filter((x) => left.includes(x));
      const again = await forgeRun(['forget', '-r', repo, ...rest]);
      expect(again.code, again.stderr).toBe(0);
      for (const x of rest) committed.delete(x);
      await expectCleanCheck(repo, 'forget: after the second forget');
    } else skipped.push(...CRASH_POINTS.filter((p) => p.startsWith('forget:')));

    if (await hasCommand('prune')) {
      for (const point of CRASH_POINTS.filter((p) => p.startsWith('prune:'))) {
        const what = `${point} (seed ${seed})`;
        // Garbage to collect: a snapshot of all-new data, forgotten again.
        await tree.mutate({ changes: 2, replaceBig: 3 });
        const doomed = await backupOk(`${what}: doomed snapshot`);
        await tree.mutate({ changes: 2, replaceBig: 3 }); // the doomed big files are used by nothing else
        await backupOk(`${what}: kept snapshot`);
        const f = await forgeRun(['forget', '-r', repo, doomed]);
        expect(f.code, f.stderr).toBe(0);
        committed.delete(doomed);
        const r = await forgeRun(['prune', '-r', repo, '--json'], { FORGE_TEST_CRASH_AT: point });
        expect(r.signal, `${what}: died by SIGKILL (code ${r.code})\n${r.stderr}`).toBe('SIGKILL');
        exercised.add(point);
        await expectCommittedListed(what);
        await expectCleanCheck(repo, what);
        await expectAllRestore(what);
        const again = await forgeRun(['prune', '-r', repo, '--json']);
        expect(again.code, `${what}: prune again\n${again.stderr}`).toBe(0);
        await expectCleanCheck(repo, `${what}: after a complete prune`, true);
        await backupOk(`${what}: backup after prune`);
      }
      await expectAllRestore('after the prunes');
    } else skipped.push(...CRASH_POINTS.filter((p) => p.startsWith('prune:')));

    await expectAllRestore('at the end');

    // --- coverage: 100% of the crash points whose command exists ---
    const expected = CRASH_POINTS.filter((p) => !skipped.includes(p));
    expect([...exercised].sort()).toEqual([...expected].sort());
    console.log(
      `[crash-points] seed ${seed}: exercised ${exercised.size}/${CRASH_POINTS.length} points (${[...exercised].join(', ')}); skipped ${skipped.join(', ') || 'none'} (command not in the built CLI); ${committed.size} snapshots committed`,
    );
  }, 420_000);
});
