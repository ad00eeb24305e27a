import type { ObjectType, StorageBackend } from '@backupforge/common';
import { createMemoryBackend } from '@backupforge/storage/memory';
import { describe, expect, it } from 'vitest';
import { backup } from './backup.ts';
import { checkRepository } from './check.ts';
import { Repository } from './repository.ts';
import { memSource, prng, TEST_KDF, text } from './testing/memory-fixtures.ts';

async function names(b: StorageBackend, t: ObjectType): Promise<string[]> {
  const out: string[] = [];
  for await (const o of b.list(t)) out.push(o.name);
  return out.sort();
}

async function setup() {
  const backend = createMemoryBackend();
  const repo = await Repository.init(backend, { password: 'pw', kdf: TEST_KDF, packSize: 2 * 1024 * 1024 });
  await backup(
    repo,
    memSource({ '/data/a.bin': { data: prng(10 * 1024 * 1024, 9) }, '/data/t.txt': { data: text(200_000) } }),
    { workers: 0 },
  );
  await backup(repo, memSource({ '/data/b.bin': { data: prng(6 * 1024 * 1024, 10) } }), { workers: 0 });
  return backend;
}

/** A pack holding only data blobs (so damage to it does not hide trees). */
async function dataPack(backend: StorageBackend): Promise<string> {
  const repo = await Repository.open(backend, { password: 'pw' });
  await repo.loadIndex();
  const types = new Map<string, Set<string>>();
  for (const [, loc] of repo.index.entries()) {
    const t = types.get(loc.packId) ?? new Set<string>();
    t.add(loc.type);
    types.set(loc.packId, t);
  }
  const p = [...types].find(([, t]) => t.size === 1 && t.has('data'));
  if (!p) throw new Error('no data-only pack');
  return p[0];
}

async function check(backend: StorageBackend, readData = false) {
  const repo = await Repository.open(backend, { password: 'pw' });
  return checkRepository(repo, { readData });
}

const errorKinds = (r: Awaited<ReturnType<typeof check>>) =>
  [...new Set(r.findings.filter((f) => f.severity === 'error').map((f) => f.kind))].sort();

describe('checkRepository', () => {
  it('a healthy repository passes, with and without reading data', async () => {
    const backend = await setup();
    const r = await check(backend, true);
    expect(r.findings).toEqual([]);
    expect(r.ok).toBe(true);
    expect(r.stats.snapshots).toBe(2);
    expect(r.stats.packsRead).toBe(r.stats.packs);
    expect(r.stats.blobsRead).toBeGreaterThan(8);
  });

  it('--read-data reads the packs into a few buffers that it reuses', async () => {
    const backend = await setup();
    // A backend that reads into the buffer it is given (as the local one does), recording them.
    const buffers: ArrayBufferLike[] = [];
    const reusing = new Proxy(backend, {
      get(target, prop) {
        if (prop === 'load')
          return async (
            h: { type: ObjectType; name: string },
            range?: { offset: number; length: number },
            into?: Uint8Array,
          ) => {
            const bytes = await target.load(h, range as never);
            if (!into) return bytes; // the structure check's header reads
            buffers.push(into.buffer);
            into.set(bytes);
            return into.subarray(0, bytes.length);
          };
        const v = Reflect.get(target, prop, target);
        return typeof v === 'function' ? v.bind(target) : v;
      },
    });
    // On this thread (FORGE_WORKERS=0) a reused buffer is the same object; a buffer that went to
    // a worker and back is a new one each time, whatever the memory under it.
    const saved = process.env.FORGE_WORKERS;
    process.env.FORGE_WORKERS = '0';
    let r: Awaited<ReturnType<typeof checkRepository>>;
    try {
      r = await checkRepository(await Repository.open(reusing, { password: 'pw' }), { readData: true });
    } finally {
      if (saved === undefined) delete process.env.FORGE_WORKERS;
      else process.env.FORGE_WORKERS = saved;
    }
    expect(r.findings).toEqual([]);
    expect(buffers.length).toBe(r.stats.packsRead);
    expect(buffers.length).toBeGreaterThan(2);
    // One per pack held at once (one per worker, one loading: here just one), used again and again.
    expect(new Set(buffers).size).toBe(1);
  });

  it('a flipped bit inside a blob is found by --read-data only, and named', async () => {
    const backend = await setup();
    const p = await dataPack(backend);
    const bytes = Buffer.from(await backend.load({ type: 'pack', name: p }));
    bytes[50]! ^= 0x01;
    await backend.save({ type: 'pack', name: p }, bytes);
    expect((await check(backend, false)).ok).toBe(true);
    const r = await check(backend, true);
    expect(r.ok).toBe(false);
    expect(errorKinds(r)).toEqual(['blob-damaged', 'pack-hash']);
    expect(r.findings.find((f) => f.kind === 'pack-hash')!.object).toBe(p);
  });

  it('--read-data reports every damaged blob and every unreadable pack, in pack order', async () => {
    const backend = await setup();
    const repo = await Repository.open(backend, { password: 'pw' });
    await repo.loadIndex();
    const blobsOf = new Map<string, { id: string; offset: number }[]>();
    for (const [id, loc] of repo.index.entries()) {
      if (loc.type !== 'data') continue;
      const list = blobsOf.get(loc.packId) ?? [];
      list.push({ id, offset: loc.offset });
      blobsOf.set(loc.packId, list);
    }
    const packs = [...blobsOf.keys()].filter((p) => blobsOf.get(p)!.length >= 2).sort();
    expect(packs.length).toBeGreaterThanOrEqual(3);
    // Two damaged blobs in the first pack, one in the last; the middle one cannot be read at all.
    const damaged: string[] = [];
    for (const [p, n] of [
      [packs[0]!, 2],
      [packs.at(-1)!, 1],
    ] as const) {
      const bytes = Buffer.from(await backend.load({ type: 'pack', name: p }));
      for (const b of blobsOf.get(p)!.slice(0, n)) {
        bytes[b.offset + 20]! ^= 0x04;
        damaged.push(b.id);
      }
      await backend.save({ type: 'pack', name: p }, bytes);
    }
    const unreadable = packs.length > 2 ? packs[1]! : undefined;
    const flaky = new Proxy(backend, {
      get(target, prop) {
        if (prop === 'load')
          // The whole pack (the data read) fails; its header (read from the end) does not.
          return (h: { type: ObjectType; name: string }, range?: { offset: number }, into?: Uint8Array) =>
            h.name === unreadable && (range === undefined || range.offset === 0)
              ? Promise.reject(Object.assign(new Error('connection reset'), { code: 'ECONNRESET' }))
              : target.load(h, range as never, into);
        const v = Reflect.get(target, prop, target);
        return typeof v === 'function' ? v.bind(target) : v;
      },
    });
    const r = await checkRepository(await Repository.open(flaky, { password: 'pw' }), { readData: true });
    const blobFindings = r.findings.filter((f) => f.kind === 'blob-damaged');
    expect(blobFindings.map((f) => f.object).sort()).toEqual([...damaged].sort());
    const packOrder = r.findings
      .filter((f) => f.kind === 'pack-hash' || f.kind === 'pack-missing')
      .map((f) => [f.kind, f.object]);
    const expected: [string, string][] = [['pack-hash', packs[0]!]];
    if (unreadable) expected.push(['pack-missing', unreadable]);
    expected.push(['pack-hash', packs.at(-1)!]);
    expect(packOrder).toEqual(expected);
    expect(r.stats.packsRead).toBe(r.stats.packs - (unreadable ? 1 : 0));
  });

  it('a flipped bit in a pack header is found by the structure check', async () => {
    const backend = await setup();
    const [p] = await names(backend, 'pack');
    const bytes = Buffer.from(await backend.load({ type: 'pack', name: p! }));
    bytes[bytes.length - 10]! ^= 0x80;
    await backend.save({ type: 'pack', name: p! }, bytes);
    const r = await check(backend, false);
    expect(errorKinds(r)).toEqual(['pack-header']);
  });

  it('a missing pack, a missing index and an unreferenced pack', async () => {
    const backend = await setup();
    await backend.remove({ type: 'pack', name: await dataPack(backend) });
    const r1 = await check(backend);
    expect(errorKinds(r1)).toEqual(['pack-missing']);

    const b2 = await setup();
    for (const i of await names(b2, 'index')) await b2.remove({ type: 'index', name: i });
    const r2 = await check(b2);
    expect(errorKinds(r2)).toEqual(['tree-damaged']); // the root trees cannot even be found
    expect(r2.stats.unreferencedPacks).toBe((await names(b2, 'pack')).length);

    const b3 = await setup();
    const extra = Buffer.from(await b3.load({ type: 'pack', name: (await names(b3, 'pack'))[0]! }));
    await b3.save({ type: 'pack', name: 'ff'.repeat(32) }, extra);
    const r3 = await check(b3, true);
    expect(r3.ok).toBe(true);
    expect(r3.findings.map((f) => [f.severity, f.kind])).toEqual([['note', 'pack-unreferenced']]);
  });

  it('a damaged index file and a damaged snapshot are errors naming them', async () => {
    const backend = await setup();
    const [i] = await names(backend, 'index');
    const ib = Buffer.from(await backend.load({ type: 'index', name: i! }));
    ib[ib.length - 1]! ^= 1;
    await backend.save({ type: 'index', name: i! }, ib);
    const [s] = await names(backend, 'snapshot');
    const sb = Buffer.from(await backend.load({ type: 'snapshot', name: s! }));
    sb[5]! ^= 1;
    await backend.save({ type: 'snapshot', name: s! }, sb);
    const r = await check(backend);
    expect(r.ok).toBe(false);
    expect(r.findings.filter((f) => f.kind === 'index-unreadable').map((f) => f.object)).toEqual([i]);
    expect(r.findings.filter((f) => f.kind === 'snapshot-unreadable').map((f) => f.object)).toEqual([s]);
  });
});
