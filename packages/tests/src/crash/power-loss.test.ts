// Reliability scenario 3, in-process: power loss during backups. createPowerLossBackend cuts the
// power at a random storage call; only objects whose save had resolved survive (plus, at random,
// a save that was under way — whole, since saves are atomic). After each "reboot" the repository
// opens, `checkRepository` (reading every byte) is ok — unreferenced packs allowed —, and every
// acknowledged snapshot (backup() returned) is present and restores byte-identically. The trials
// are chained: each one continues on what survived the previous cut.
//
// FORGE_POWERLOSS_TRIALS=100 for more cuts (default 30); FORGE_CRASH_SEED=<n> replays.
import { join } from 'node:path';
import { createFsSource } from '@backupforge/agent-fs';
import type { StorageBackend } from '@backupforge/common';
import { backup, checkRepository, findSnapshot, Repository, walkSnapshot } from '@backupforge/engine';
import { createMemoryBackend } from '@backupforge/storage/memory';
import { afterAll, describe, expect, it } from 'vitest';
import { tempDir } from '../support/cli.ts';
import { createPowerLossBackend } from './power-loss-backend.ts';
import {
  envCount,
  FAST_KDF,
  type Manifest,
  PASSWORD,
  Rng,
  SourceTree,
  sha256,
  sorted,
  testSeed,
} from './support.ts';

const TRIALS = envCount('FORGE_POWERLOSS_TRIALS', 30);
const KiB = 1024;

const cleanups: (() => Promise<void>)[] = [];
afterAll(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

/** Relative path → SHA-256 of every file of a snapshot below `src`, read through the engine. */
async function snapshotManifest(repo: Repository, id: string, src: string): Promise<Manifest> {
  const snap = await findSnapshot(repo, id);
  const out: Manifest = new Map();
  for await (const { path, node } of walkSnapshot(repo, snap, src)) {
    if (node.type !== 'file') continue;
    const parts: Uint8Array[] = [];
    for (const b of node.content ?? []) parts.push(await repo.loadBlob('data', b));
    out.set(path.slice(src.length + 1), sha256(Buffer.concat(parts)));
  }
  return out;
}

/** A copy of a backend's objects in a new memory backend. */
async function cloneBackend(from: StorageBackend): Promise<StorageBackend> {
  const pl = createPowerLossBackend(from, { random: () => 1 });
  pl.cut();
  return pl.survivors();
}

describe('power loss during backup (reliability scenario 3)', () => {
  it('createPowerLossBackend: acknowledged saves survive, later calls fail, pending saves never settle', async () => {
    const inner = createMemoryBackend();
    const pl = createPowerLossBackend(inner, { random: () => 0.99 });
    const h = (name: string) => ({ type: 'snapshot' as const, name: name.repeat(64) });
    await pl.backend.save(h('a'), new Uint8Array([1]));
    const pending = pl.backend.save(h('b'), new Uint8Array([2]));
    let settled = false;
    const mark = () => {
      settled = true;
    };
    pending.then(mark, mark);
    pl.cut();
    await expect(pl.backend.load(h('a'))).rejects.toMatchObject({ code: 'FORGE_IO' });
    await expect(pl.backend.save(h('c'), new Uint8Array([3]))).rejects.toMatchObject({ code: 'FORGE_IO' });
    await new Promise((r) => setTimeout(r, 20));
    expect(settled).toBe(false);
    const after = await pl.survivors();
    expect([...(await after.load(h('a')))]).toEqual([1]);
    // random() = 0.99 ≥ 0.5: the interrupted save is not there.
    await expect(after.stat(h('b'))).rejects.toMatchObject({ code: 'FORGE_NOT_FOUND' });
    await expect(after.stat(h('c'))).rejects.toMatchObject({ code: 'FORGE_NOT_FOUND' });
    const keep = createPowerLossBackend(createMemoryBackend(), { random: () => 0 });
    void keep.backend.save(h('d'), new Uint8Array([4]));
    keep.cut();
    expect([...(await (await keep.survivors()).load(h('d')))]).toEqual([4]);
  });

  it('Repository.init never creates a repository that Repository.open refuses (pack size)', async () => {
    const b = createMemoryBackend();
    let created = true;
    try {
      await Repository.init(b, { password: PASSWORD, kdf: FAST_KDF, packSize: 256 * KiB });
    } catch {
      created = false;
    }
    if (created) await Repository.open(b, { password: PASSWORD });
  });

  it(`${TRIALS} random power cuts during backups: repository opens, check is ok, acknowledged snapshots restore`, async () => {
    const seed = testSeed('power-loss');
    const rng = new Rng(seed);
    const t = await tempDir('forge-powerloss-');
    cleanups.push(t.cleanup);
    const src = join(t.path, 'src');
    const tree = new SourceTree(src, rng);
    await tree.generate({ small: 30, smallMax: 30 * KiB, big: 3, bigSize: 1536 * KiB });
    const source = () => createFsSource({ paths: [src] });

    // Small chunks and packs: many packs (and objects) per backup, so cuts land everywhere.
    let durable: StorageBackend = createMemoryBackend();
    const first = createPowerLossBackend(durable, { random: () => rng.next() });
    const repo0 = await Repository.init(first.backend, {
      password: PASSWORD,
      kdf: FAST_KDF,
      packSize: 1024 * KiB, // the smallest a config may have
      chunker: { min: 64 * KiB, avg: 128 * KiB, max: 256 * KiB },
    });
    const r0 = await backup(repo0, source(), { workers: 0 });
    const acknowledged = new Map<string, Manifest>([[r0.snapshotId!, new Map(tree.manifest)]]);
    // Calibrate: how many storage calls an uncut incremental run (open + backup) makes.
    await tree.mutate({ changes: 2, replaceBig: 1 });
    const cal = createPowerLossBackend(durable, { random: () => rng.next() });
    const r1 = await backup(await Repository.open(cal.backend, { password: PASSWORD }), source(), {
      workers: 0,
    });
    acknowledged.set(r1.snapshotId!, new Map(tree.manifest));
    let maxCalls = cal.calls;
    const stats = { cutDuringBackup: 0, completed: 0, survivedUnacknowledged: 0, maxUnreferenced: 0 };

    for (let i = 0; i < TRIALS; i++) {
      await tree.mutate({ changes: rng.int(1, 5), replaceBig: rng.chance(0.5) ? rng.int(1, 3) : 0 });
      // Count the calls of this very run without a cut (on a copy), then cut at up to 1.2× that:
      // most cuts hit the backup, some come after it returned.
      const probe = createPowerLossBackend(await cloneBackend(durable), { random: () => rng.next() });
      await backup(await Repository.open(probe.backend, { password: PASSWORD }), source(), { workers: 0 });
      maxCalls = probe.calls;
      const cutAtCall = rng.int(1, Math.ceil(maxCalls * 1.2) + 1);
      const what = `trial ${i} (seed ${seed}, cut at call ${cutAtCall})`;
      const pl = createPowerLossBackend(durable, { cutAtCall, random: () => rng.next() });
      const run = (async () => {
        const repo = await Repository.open(pl.backend, { password: PASSWORD });
        return backup(repo, source(), { workers: 0 });
      })();
      run.catch(() => {}); // after the cut it rejects, or never settles
      let failure: unknown;
      const outcome = await Promise.race([
        run.then(
          (r) => ({ r }),
          (e) => {
            failure = e;
            return 'failed' as const;
          },
        ),
        pl.whenCut.then(() => 'cut' as const),
      ]);
      if (typeof outcome === 'object') {
        // backup() returned: the snapshot is acknowledged and must survive.
        acknowledged.set(outcome.r.snapshotId!, new Map(tree.manifest));
        stats.completed++;
      } else {
        expect(pl.isCut, `${what}: a backup only fails because of the cut: ${String(failure)}`).toBe(true);
        stats.cutDuringBackup++;
      }
      pl.cut(); // (again) — the machine goes down now in any case
      durable = await pl.survivors();

      // Reboot.
      const repo = await Repository.open(durable, { password: PASSWORD });
      const check = await checkRepository(repo, { readData: true });
      const errors = check.findings.filter((f) => f.severity !== 'note');
      expect(errors, `${what}: check finds no errors`).toEqual([]);
      expect(check.ok, what).toBe(true);
      stats.maxUnreferenced = Math.max(stats.maxUnreferenced, check.stats.unreferencedPacks);
      const ids = (await repo.listSnapshots()).map((s) => s.id as string);
      for (const id of acknowledged.keys())
        expect(ids, `${what}: acknowledged ${id.slice(0, 8)} survives`).toContain(id);
      for (const id of ids) if (!acknowledged.has(id)) stats.survivedUnacknowledged++;
      // The newest acknowledged snapshot (and every one, every 10th trial) restores identically.
      const all = [...acknowledged.keys()];
      const verify = i % 10 === 9 || i === TRIALS - 1 ? all : [all[0]!, all[all.length - 1]!];
      for (const id of new Set(verify)) {
        expect(sorted(await snapshotManifest(repo, id, src)), `${what}: ${id.slice(0, 8)} restores`).toEqual(
          sorted(acknowledged.get(id)!),
        );
      }
    }
    console.log(
      `[power-loss] seed ${seed}: ${TRIALS} cuts, ${stats.cutDuringBackup} during a backup, ${stats.completed} after it returned; ${acknowledged.size} acknowledged snapshots kept; ${stats.survivedUnacknowledged} unacknowledged-but-complete snapshot sightings; up to ${stats.maxUnreferenced} unreferenced packs`,
    );
    expect(stats.cutDuringBackup, 'most cuts hit a running backup').toBeGreaterThanOrEqual(
      Math.ceil(TRIALS / 3),
    );
  }, 180_000);
});
