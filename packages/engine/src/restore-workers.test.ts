import { createMemoryBackend } from '@backupforge/storage/memory';
import { describe, expect, it, vi } from 'vitest';
import { backup } from './backup.ts';
import { findSnapshot } from './browse.ts';
import { Repository } from './repository.ts';
import { restore } from './restore.ts';
import { memSource, memTarget, prng, TEST_KDF } from './testing/memory-fixtures.ts';

// Restore starts its worker threads before it loads the index: every way out must stop them,
// or the process cannot exit. Counts the processors made and closed.
const seen = vi.hoisted(() => ({ created: 0, warmed: 0, closed: 0 }));
vi.mock('./internal/worker-pool.ts', async (original) => {
  const m = await original<typeof import('./internal/worker-pool.ts')>();
  return {
    ...m,
    createBlobProcessor: (opts: Parameters<typeof m.createBlobProcessor>[0]) => {
      const p = m.createBlobProcessor(opts);
      seen.created++;
      return {
        ...p,
        warm: () => {
          seen.warmed++;
          p.warm();
        },
        close: async () => {
          seen.closed++;
          await p.close();
        },
      };
    },
  };
});

async function repoWithSnapshot() {
  const repo = await Repository.init(createMemoryBackend(), { password: 'pw', kdf: TEST_KDF });
  await backup(repo, memSource({ '/data/a.bin': { data: prng(300_000, 1) } }), { workers: 0 });
  return { repo, snapshot: await findSnapshot(repo, 'latest') };
}

describe('restore and its worker threads', () => {
  it('starts them early and stops them after a restore that worked', async () => {
    const { repo, snapshot } = await repoWithSnapshot();
    Object.assign(seen, { created: 0, warmed: 0, closed: 0 });
    const target = memTarget();
    await restore(repo, snapshot, target, { workers: 1 });
    expect(target.out.size).toBeGreaterThan(0);
    expect(seen).toEqual({ created: 1, warmed: 1, closed: 1 });
  });

  it('stops them when the path to restore is not in the snapshot', async () => {
    const { repo, snapshot } = await repoWithSnapshot();
    Object.assign(seen, { created: 0, warmed: 0, closed: 0 });
    await expect(
      restore(repo, snapshot, memTarget(), { subpath: '/nope', workers: 1 }),
    ).rejects.toMatchObject({
      code: 'FORGE_PATH_NOT_FOUND',
    });
    expect(seen).toEqual({ created: 1, warmed: 1, closed: 1 });
  });

  it('stops them when the target cannot be prepared', async () => {
    const { repo, snapshot } = await repoWithSnapshot();
    Object.assign(seen, { created: 0, warmed: 0, closed: 0 });
    const target = memTarget();
    const { ForgeError } = await import('@backupforge/common');
    target.prepare = async () => {
      throw new ForgeError('FORGE_TARGET_NOT_EMPTY', 'the target is not empty');
    };
    await expect(restore(repo, snapshot, target, { workers: 1 })).rejects.toMatchObject({
      code: 'FORGE_TARGET_NOT_EMPTY',
    });
    expect(seen).toEqual({ created: 1, warmed: 1, closed: 1 });
  });
});
