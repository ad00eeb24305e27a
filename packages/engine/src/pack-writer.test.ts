import { createHash } from 'node:crypto';
import { createMemoryBackend } from '@backupforge/storage/memory';
import { describe, expect, it } from 'vitest';
import { blobId } from './crypto/master-key.ts';
import { sealBlob } from './format/blob-codec.ts';
import { createBlobProcessor } from './internal/worker-pool.ts';
import { PackWriter } from './pack-writer.ts';
import { Repository } from './repository.ts';
import { prng, TEST_KDF } from './testing/memory-fixtures.ts';

const MiB = 1024 * 1024;

async function writeBlobs(writer: PackWriter, repo: Repository, count: number): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < count; i++) {
    const data = prng(400 * 1024, i + 1); // incompressible: ~400 KiB sealed each
    const id = blobId(repo.keys.macKey, data);
    ids.push(id.toString('hex'));
    expect(writer.claim(id.toString('hex'), 'data')).toBe(true);
    await writer.add(sealBlob(repo.keys.encKey, { id, type: 'data', data }, repo.config.compression));
  }
  await writer.flush();
  return ids;
}

describe('PackWriter', () => {
  it('names packs with the given hasher, which may move the pack buffer away and give it back', async () => {
    const backend = createMemoryBackend();
    const repo = await Repository.init(backend, { password: 'pw', kdf: TEST_KDF, packSize: MiB });
    const seen = new Set<ArrayBufferLike>();
    let calls = 0;
    const writer = new PackWriter(repo, {
      // Like a worker thread: the buffer is transferred (detached here) and a new one comes back.
      hashPack: async (bytes) => {
        calls++;
        const { byteOffset, length } = bytes;
        const moved = structuredClone(bytes.buffer, { transfer: [bytes.buffer as ArrayBuffer] });
        expect(bytes.buffer.byteLength).toBe(0);
        const back = new Uint8Array(moved, byteOffset, length);
        seen.add(moved);
        return { id: createHash('sha256').update(back).digest('hex'), bytes: back };
      },
    });
    const ids = await writeBlobs(writer, repo, 12);
    const names: string[] = [];
    for await (const p of backend.list('pack')) {
      names.push(p.name);
      const bytes = await backend.load({ type: 'pack', name: p.name });
      expect(createHash('sha256').update(bytes).digest('hex')).toBe(p.name);
    }
    expect(names.length).toBeGreaterThanOrEqual(4);
    expect(calls).toBe(names.length);
    expect(seen.size).toBe(calls);
    const reopened = await Repository.open(backend, { password: 'pw' });
    await reopened.loadIndex();
    for (const id of ids) expect(reopened.index.lookup(id)?.packId).toBeDefined();
  });

  it('names packs on worker threads', async () => {
    const backend = createMemoryBackend();
    const repo = await Repository.init(backend, { password: 'pw', kdf: TEST_KDF, packSize: MiB });
    const processor = createBlobProcessor({ ...repo.keys, compression: repo.config.compression, workers: 2 });
    try {
      const writer = new PackWriter(repo, { hashPack: (bytes) => processor.hashPack(bytes) });
      await writeBlobs(writer, repo, 12);
      let packs = 0;
      for await (const p of backend.list('pack')) {
        packs++;
        const bytes = await backend.load({ type: 'pack', name: p.name });
        expect(createHash('sha256').update(bytes).digest('hex')).toBe(p.name);
      }
      expect(packs).toBeGreaterThanOrEqual(4);
    } finally {
      await processor.close();
    }
  });
});
