import { createHash } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ForgeError, type ObjectUpload, type StorageBackend } from '@backupforge/common';
import { createLocalBackend } from '@backupforge/storage/local';
import { createMemoryBackend } from '@backupforge/storage/memory';
import { describe, expect, it } from 'vitest';
import { blobId } from './crypto/master-key.ts';
import { sealBlob } from './format/blob-codec.ts';
import { createBlobProcessor } from './internal/worker-pool.ts';
import { PackWriter } from './pack-writer.ts';
import { Repository } from './repository.ts';
import { forwardingTo, prng, TEST_KDF } from './testing/memory-fixtures.ts';

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

/**
 * A memory backend that also takes packs piece by piece; `failAt` makes the n-th write of all
 * uploads (counting from 1) fail with a full disk. Records what became of each upload.
 */
function uploadingBackend(failAt = 0) {
  const inner = createMemoryBackend();
  const log = { started: 0, committed: 0, aborted: 0, writes: 0 };
  const backend = forwardingTo(inner, {
    location: 'memory+upload:',
    async createUpload(): Promise<ObjectUpload> {
      log.started++;
      const parts: Uint8Array[] = [];
      return {
        async write(data) {
          // Bytes are taken later than asked, some later than others: a writer that does not
          // wait for one write before the next would get its pieces out of order.
          const n = ++log.writes;
          for (let i = 0; i < 1 + (n % 3); i++) await new Promise((r) => setImmediate(r));
          if (n === failAt) throw new ForgeError('FORGE_NO_SPACE', 'no space left on device');
          parts.push(data.slice());
        },
        async commit(h) {
          log.committed++;
          await inner.save(h, Buffer.concat(parts));
        },
        async abort() {
          log.aborted++;
        },
      };
    },
  });
  return { backend, log };
}

async function packNames(backend: StorageBackend): Promise<string[]> {
  const names: string[] = [];
  for await (const p of backend.list('pack')) names.push(p.name);
  return names;
}

describe('PackWriter with a backend that takes packs piece by piece', () => {
  it('streams data packs to it, named by the hash of what was written, blobs in the order added', async () => {
    const { backend, log } = uploadingBackend();
    const repo = await Repository.init(backend, { password: 'pw', kdf: TEST_KDF, packSize: MiB });
    const writer = new PackWriter(repo);
    // Added without waiting for each other: offsets, hash and bytes must still agree.
    const blobs = Array.from({ length: 12 }, (_, i) => {
      const data = prng(300 * 1024 + i * 1000, i + 7);
      const id = blobId(repo.keys.macKey, data);
      expect(writer.claim(id.toString('hex'), 'data')).toBe(true);
      return { id, data };
    });
    await Promise.all(
      blobs.map((b) =>
        writer.add(
          sealBlob(repo.keys.encKey, { id: b.id, type: 'data', data: b.data }, repo.config.compression),
        ),
      ),
    );
    await writer.flush();
    const names = await packNames(backend);
    expect(names.length).toBeGreaterThanOrEqual(3);
    expect(log.committed).toBe(names.length);
    expect(log.aborted).toBe(0);
    for (const name of names) {
      const bytes = await backend.load({ type: 'pack', name });
      expect(createHash('sha256').update(bytes).digest('hex')).toBe(name);
    }
    const reopened = await Repository.open(backend, { password: 'pw' });
    await reopened.loadIndex();
    for (const b of blobs) {
      const back = await reopened.loadBlob('data', b.id.toString('hex'));
      expect(Buffer.compare(back, b.data)).toBe(0);
    }
  });

  it('fails the add whose bytes were not taken, discards that pack and indexes none of its blobs', async () => {
    const { backend, log } = uploadingBackend(5);
    const repo = await Repository.init(backend, { password: 'pw', kdf: TEST_KDF, packSize: 64 * MiB });
    const writer = new PackWriter(repo);
    const ids: string[] = [];
    let failure: unknown;
    for (let i = 0; i < 8 && failure === undefined; i++) {
      const data = prng(100 * 1024, i + 1);
      const id = blobId(repo.keys.macKey, data);
      writer.claim(id.toString('hex'), 'data');
      ids.push(id.toString('hex'));
      await writer
        .add(sealBlob(repo.keys.encKey, { id, type: 'data', data }, repo.config.compression))
        .catch((e: unknown) => {
          failure = e;
        });
    }
    expect(ids).toHaveLength(5);
    expect((failure as ForgeError).code).toBe('FORGE_NO_SPACE');
    expect(log.aborted).toBe(1);
    await expect(writer.flush()).rejects.toThrow(/no space/);
    expect(await packNames(backend)).toEqual([]);
    for (const id of ids) expect(repo.index.lookup(id)).toBeUndefined();
  });

  it('discards the pack being filled when the caller gives up', async () => {
    const { backend, log } = uploadingBackend();
    const repo = await Repository.init(backend, { password: 'pw', kdf: TEST_KDF, packSize: 64 * MiB });
    const writer = new PackWriter(repo);
    const data = prng(100 * 1024, 3);
    const id = blobId(repo.keys.macKey, data);
    writer.claim(id.toString('hex'), 'data');
    await writer.add(sealBlob(repo.keys.encKey, { id, type: 'data', data }, repo.config.compression));
    await writer.discard();
    expect(log).toMatchObject({ started: 1, committed: 0, aborted: 1 });
    expect(await packNames(backend)).toEqual([]);
  });

  it('writes valid packs into a local repository and leaves no temporary file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'bf-spool-'));
    try {
      const backend = createLocalBackend({ path: dir });
      expect(typeof backend.createUpload).toBe('function');
      const repo = await Repository.init(backend, { password: 'pw', kdf: TEST_KDF, packSize: MiB });
      const ids = await writeBlobs(new PackWriter(repo), repo, 9);
      const names = await packNames(backend);
      expect(names.length).toBeGreaterThanOrEqual(3);
      for (const name of names) {
        const bytes = await backend.load({ type: 'pack', name });
        expect(createHash('sha256').update(bytes).digest('hex')).toBe(name);
      }
      expect((await readdir(join(dir, 'data'))).filter((n) => n.startsWith('.'))).toEqual([]);
      const reopened = await Repository.open(backend, { password: 'pw' });
      await reopened.loadIndex();
      for (const id of ids) expect((await reopened.loadBlob('data', id)).length).toBe(400 * 1024);
      await backend.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
