import { createHash } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { blobId } from '../crypto/master-key.ts';
import { openBlob } from '../format/blob-codec.ts';
import { createBlobProcessor } from './worker-pool.ts';

const threads = () => readdirSync('/proc/self/task').length;
const KEYS = { encKey: new Uint8Array(32).fill(1), macKey: new Uint8Array(32).fill(2) };

describe('createBlobProcessor', () => {
  it('starts its worker threads with the first task, not before (an unchanged re-backup needs none)', async () => {
    await readFile(import.meta.filename); // the libuv pool's threads start on first use: start them now
    const before = threads();
    const processor = createBlobProcessor({
      ...KEYS,
      compression: { algorithm: 'zstd', level: 3 },
      workers: 2,
    });
    try {
      expect(threads()).toBe(before);
      const data = new Uint8Array(100_000).fill(42);
      const sealed = await processor.seal(Buffer.alloc(32, 3), 'data', data);
      expect(sealed.rawLength).toBe(100_000);
      expect(sealed.sealed.length).toBeLessThan(1000); // compressed on a worker
      expect(threads()).toBeGreaterThanOrEqual(before + 2);
    } finally {
      await processor.close();
    }
  });

  it('hashes a chunk where it is sealed: seals it when claimed, hands it back when not', async () => {
    const data = new Uint8Array(300_000);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7) % 251;
    const want = blobId(KEYS.macKey, data).toString('hex');
    for (const workers of [2, 0]) {
      const processor = createBlobProcessor({
        ...KEYS,
        compression: { algorithm: 'zstd', level: 3 },
        workers,
      });
      try {
        const seen: string[] = [];
        const dup = await processor.hashAndSeal('data', data.slice(), (id) => {
          seen.push(id.toString('hex'));
          return false;
        });
        expect(dup.id.toString('hex')).toBe(want);
        expect(dup.sealed).toBeUndefined();
        expect(Buffer.from(dup.back).equals(Buffer.from(data))).toBe(true); // the chunk comes back whole
        const added = await processor.hashAndSeal('data', data.slice(), (id) => {
          seen.push(id.toString('hex'));
          return true;
        });
        expect(seen).toEqual([want, want]); // asked once per chunk
        expect(added.sealed!.rawLength).toBe(data.length);
        expect(added.sealed!.sealed.length).toBeLessThan(data.length); // compressed
        const plain = openBlob(KEYS, added.id, added.sealed!, added.sealed!.sealed);
        expect(Buffer.from(plain).equals(Buffer.from(data)), `workers: ${workers}`).toBe(true);
      } finally {
        await processor.close();
      }
    }
  });

  it('names a pack on a worker and hands its whole buffer back', async () => {
    for (const workers of [2, 0]) {
      const processor = createBlobProcessor({ ...KEYS, compression: { algorithm: 'none' }, workers });
      try {
        const buffer = new Uint8Array(1 << 20);
        for (let i = 0; i < buffer.length; i++) buffer[i] = (i * 13) % 256;
        const copy = Buffer.from(buffer);
        const bytes = buffer.subarray(0, 700_001); // a finished pack is a view into its buffer
        const want = createHash('sha256').update(bytes).digest('hex');
        const r = await processor.hashPack(bytes);
        expect(r.id, `workers: ${workers}`).toBe(want);
        expect(r.bytes.byteOffset).toBe(0);
        expect(r.bytes.length).toBe(700_001);
        expect(r.bytes.buffer.byteLength).toBe(1 << 20); // the whole pack buffer, for reuse
        expect(Buffer.from(r.bytes.buffer).equals(copy)).toBe(true);
        if (workers > 0) expect(buffer.buffer.byteLength).toBe(0); // it moved to the worker and back
      } finally {
        await processor.close();
      }
    }
  });

  it("seals blobs small enough to come back in Node's shared Buffer pool (copied back, not moved)", async () => {
    const processor = createBlobProcessor({
      ...KEYS,
      compression: { algorithm: 'zstd', level: 3 },
      workers: 2,
    });
    try {
      for (const text of ['hello\n', 'a small tree blob', 'x'.repeat(900)]) {
        // A buffer of its own with no room to seal in place: the sealed bytes are allocated there.
        const own = () => new Uint8Array(Buffer.from(text));
        const data = own();
        const id = blobId(KEYS.macKey, data);
        const sealed = await processor.seal(id, 'tree', own());
        expect(Buffer.from(openBlob(KEYS, id, sealed, sealed.sealed)).equals(data)).toBe(true);
        const h = await processor.hashAndSeal('tree', own(), () => true);
        expect(h.id.equals(id)).toBe(true);
        expect(Buffer.from(openBlob(KEYS, id, h.sealed!, h.sealed!.sealed)).equals(data)).toBe(true);
      }
    } finally {
      await processor.close();
    }
  });
});
