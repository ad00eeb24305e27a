import { readdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
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
});
