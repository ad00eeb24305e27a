import { createMemoryBackend } from '@backupforge/storage/memory';
import { describe, expect, it } from 'vitest';
import { backup } from './backup.ts';
import { checkRepository } from './check.ts';
import { forget } from './forget.ts';
import { Repository } from './repository.ts';
import { memSource, TEST_KDF } from './testing/memory-fixtures.ts';

async function repoWithDays(days: number) {
  const backend = createMemoryBackend();
  const repo = await Repository.init(backend, { password: 'pw', kdf: TEST_KDF });
  for (let d = 0; d < days; d++) {
    await backup(repo, memSource({ '/data/f': { data: Buffer.from(`day ${d}`) } }), {
      workers: 0,
      host: d % 2 === 0 ? 'even' : 'odd',
      time: new Date(Date.UTC(2026, 0, 1 + d, 12)),
    });
  }
  return repo;
}

describe('forget', () => {
  it('applies a policy per host group, dry run first', async () => {
    const repo = await repoWithDays(6);
    const dry = await forget(repo, {
      policy: { last: 2 },
      dryRun: true,
      now: new Date('2026-02-01T00:00:00Z'),
    });
    expect(dry.removed).toEqual([]);
    expect(dry.groups.map((g) => [g.group.hostname, g.keep.length, g.remove.length])).toEqual([
      ['even', 2, 1],
      ['odd', 2, 1],
    ]);
    expect(dry.groups[0]!.keep[0]!.reasons).toEqual(['last snapshot']);
    expect((await repo.listSnapshots()).length).toBe(6);
    const r = await forget(repo, { policy: { last: 2 }, now: new Date('2026-02-01T00:00:00Z') });
    expect(r.removed.length).toBe(2);
    const left = await repo.listSnapshots();
    expect(left.map((s) => s.time.slice(0, 10))).toEqual([
      '2026-01-03',
      '2026-01-04',
      '2026-01-05',
      '2026-01-06',
    ]);
    expect((await checkRepository(repo)).ok).toBe(true);
  });

  it('removes snapshots by id and refuses an empty policy', async () => {
    const repo = await repoWithDays(3);
    const [first] = await repo.listSnapshots();
    const r = await forget(repo, { snapshots: [first!.id.slice(0, 8)] });
    expect(r.removed).toEqual([first!.id]);
    expect((await repo.listSnapshots()).length).toBe(2);
    await expect(forget(repo, { policy: {} })).rejects.toMatchObject({ code: 'FORGE_USAGE' });
  });
});
