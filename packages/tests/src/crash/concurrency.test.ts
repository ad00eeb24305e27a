// Concurrent writers: two, then eight `forge backup` processes of different source directories
// (sharing some identical content, so they race to store the same blobs) write into one
// repository at the same time. All must exit 0, every snapshot must be listed, `check
// --read-data` must be clean and every snapshot must restore byte-identically.
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { jsonLines, tempDir } from '../support/cli.ts';
import {
  expectCleanCheck,
  expectCliRestore,
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

describe('concurrent backups into one repository', () => {
  const seed = testSeed('concurrency');
  for (const n of [2, 8]) {
    it(`${n} simultaneous backups all succeed, check --read-data is clean, restores are identical`, async () => {
      const rng = new Rng(seed + n);
      const t = await tempDir(`forge-conc${n}-`);
      cleanups.push(t.cleanup);
      const repo = join(t.path, 'repo');
      await initFastRepo(repo);
      const shared = rng.bytes(3 * MiB);
      const sources: SourceTree[] = [];
      for (let i = 0; i < n; i++) {
        const tree = new SourceTree(join(t.path, `src${i}`), rng);
        await tree.generate({ small: 40, smallMax: 20_000, big: 1, bigSize: (n === 2 ? 12 : 3) * MiB });
        await tree.write('shared/same.bin', shared);
        sources.push(tree);
      }
      const runs = await Promise.all(
        sources.map((s) => forgeRun(['backup', '-r', repo, '--json', s.root], {}, 180_000)),
      );
      const snaps = new Map<string, { src: string; manifest: Manifest }>();
      runs.forEach((r, i) => {
        expect(r.code, `backup ${i} of ${n} (seed ${seed})\n${r.stderr}`).toBe(0);
        const id = jsonLines(r.stdout).find((l) => l.message_type === 'summary')!.snapshot_id as string;
        snaps.set(id, { src: sources[i]!.root, manifest: new Map(sources[i]!.manifest) });
      });
      expect(snaps.size).toBe(n);
      expect(await objectNames(repo, 'snapshots')).toEqual([...snaps.keys()].sort());
      const list = await forgeRun(['snapshots', '-r', repo, '--json']);
      expect(list.code, list.stderr).toBe(0);
      for (const id of snaps.keys()) expect(list.stdout).toContain(id);
      expect(await objectNames(repo, 'locks'), 'every lock released').toEqual([]);
      const sum = await expectCleanCheck(repo, `${n} concurrent backups (seed ${seed})`, true);
      expect(sum.snapshots).toBe(n);
      let k = 0;
      await Promise.all(
        [...snaps].map(([id, s]) =>
          expectCliRestore(
            repo,
            id,
            s.src,
            join(t.path, `restore${k++}`),
            s.manifest,
            `restore of ${id.slice(0, 8)}`,
          ),
        ),
      );
    }, 240_000);
  }
});
