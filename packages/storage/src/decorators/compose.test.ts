import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ObjectHandle, StorageBackend } from '@backupforge/common';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createMemoryBackend } from '../memory/memory-backend.ts';
import { describeBackend, hexName } from '../testing/describe-backend.ts';
import { createFaultyBackend } from '../testing/faulty-backend.ts';
import { composeBackend } from './compose.ts';
import * as decorators from './index.ts';
import { createFakeClock, probe } from './test-helpers.ts';

describeBackend('composeBackend(memory, everything)', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'forge-compose-'));
  return {
    backend: composeBackend(createMemoryBackend(), {
      retry: { sleep: async () => {} },
      limits: { uploadKiBps: 512 * 1024, downloadKiBps: 512 * 1024, burstBytes: 1024 * 1024 },
      connections: 4,
      cacheDir: dir,
    }),
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
});

describeBackend('composeBackend(flaky memory, retry)', async () => ({
  backend: composeBackend(
    createFaultyBackend(createMemoryBackend(), {
      seed: 3,
      save: { failProbability: 0.2, failAfter: true },
      load: { failProbability: 0.2 },
      stat: { failProbability: 0.2 },
      list: { failProbability: 0.2 },
      remove: { failProbability: 0.2, failAfter: true },
      create: { failProbability: 0.2 },
    }),
    { retry: { sleep: async () => {}, maxAttempts: 30 } },
  ),
}));

function indexObject(): { handle: ObjectHandle; data: Uint8Array } {
  const data = new Uint8Array(randomBytes(4096));
  return { handle: { type: 'index', name: createHash('sha256').update(data).digest('hex') }, data };
}

describe('composeBackend', () => {
  let dir: string;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'forge-compose-'));
  });

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('exports the public API from the decorators entry point', () => {
    expect(Object.keys(decorators).sort()).toEqual(
      [
        'composeBackend',
        'defaultCacheDir',
        'withCache',
        'withConnectionLimit',
        'withRateLimit',
        'withRetry',
      ].sort(),
    );
  });

  it('puts the cache outside the rate limit, the connection limit and retries', async () => {
    const fake = createFakeClock();
    const memory = createMemoryBackend();
    const { handle, data } = indexObject();
    await memory.save(handle, data);
    const { backend: inner, calls } = probe(memory);
    const backend = composeBackend(createFaultyBackend(inner, { load: { failTimes: 2 } }), {
      retry: { sleep: fake.clock.sleep, random: () => 0.5 },
      limits: { downloadKiBps: 1, clock: fake.clock }, // 1 KiB/s, burst 1 KiB
      connections: 2,
      cacheDir: dir,
    });

    // Miss: retried twice, then paid 3 KiB past the burst after the data came in.
    expect(await fake.run(backend.load(handle))).toEqual(data);
    expect(calls.load).toBe(1);
    expect(backend.retryStats()).toEqual({ retries: 2, succeededAfterRetry: 1, gaveUp: 0 });
    expect(fake.now()).toBe(250 + 500 + 3000);

    // Hit: no backend call, no bandwidth, no retry, no time.
    expect(await backend.load(handle)).toEqual(data);
    expect(fake.pending()).toBe(0);
    expect(fake.now()).toBe(3750);
    expect(calls.load).toBe(1);
    expect(backend.cacheStats()).toMatchObject({ hits: 1, misses: 1 });
    expect(backend.properties().connections).toBe(2);
  });

  it('holds a connection slot while a call backs off (retry inside the connection limit)', async () => {
    const fake = createFakeClock();
    const { backend: inner, inFlight } = probe(createMemoryBackend());
    let concurrentBackoffs = 0;
    let maxBackingOff = 0;
    const backend = composeBackend(createFaultyBackend(inner, { stat: { failTimes: 4, failAfter: true } }), {
      retry: {
        random: () => 1,
        sleep: async (ms) => {
          concurrentBackoffs++;
          maxBackingOff = Math.max(maxBackingOff, concurrentBackoffs);
          await fake.clock.sleep(ms);
          concurrentBackoffs--;
        },
      },
      connections: 1,
    });
    const handle: ObjectHandle = { type: 'pack', name: hexName() };
    await inner.save(handle, new Uint8Array(1));
    await fake.run(Promise.all([backend.stat(handle), backend.stat(handle), backend.stat(handle)]));
    // With one slot, only one call at a time is either running or backing off.
    expect(maxBackingOff).toBe(1);
    expect(inFlight.max).toBe(1);
  });

  it('leaves out what is not asked for; stats are zero then', async () => {
    const memory = createMemoryBackend();
    const backend = composeBackend(createFaultyBackend(memory, { stat: { failTimes: 1 } }), { retry: false });
    await expect(backend.stat({ type: 'pack', name: hexName() })).rejects.toMatchObject({ code: 'FORGE_IO' });
    expect(backend.retryStats()).toEqual({ retries: 0, succeededAfterRetry: 0, gaveUp: 0 });
    expect(backend.cacheStats()).toEqual({ hits: 0, misses: 0, bypassed: 0, invalid: 0, evicted: 0 });
    expect(backend.properties()).toEqual(memory.properties());
    expect(backend.location).toBe('memory:');
  });

  it('retries by default', async () => {
    const backend = composeBackend(createFaultyBackend(createMemoryBackend(), { stat: { failTimes: 1 } }), {
      retry: { sleep: async () => {} },
    });
    await expect(backend.stat({ type: 'pack', name: hexName() })).rejects.toMatchObject({
      code: 'FORGE_NOT_FOUND',
    });
    expect(backend.retryStats().succeededAfterRetry).toBe(0);
    expect(backend.retryStats().retries).toBe(1);
    expect(composeBackend(createMemoryBackend()).retryStats()).toEqual({
      retries: 0,
      succeededAfterRetry: 0,
      gaveUp: 0,
    });
  });

  it('closes the backend it wraps', async () => {
    let closed = 0;
    const memory = createMemoryBackend();
    const inner: StorageBackend = Object.assign(Object.create(null), {
      location: 'rclone:remote:path',
      properties: () => memory.properties(),
      close: async () => {
        closed++;
      },
    });
    const backend = composeBackend(inner, { connections: 2, limits: { uploadKiBps: 10 }, cacheDir: dir });
    expect(backend.location).toBe('rclone:remote:path');
    await backend.close();
    expect(closed).toBe(1);
  });
});

describe('piece-by-piece uploads through decorators', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'forge-upload-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('pass through retry and the cache, to the backend that has them', async () => {
    const { createLocalBackend } = await import('../local/local-backend.ts');
    const stack = composeBackend(createLocalBackend({ path: join(dir, 'repo') }), {
      retry: { sleep: async () => {} },
      cacheDir: join(dir, 'cache'),
    });
    await stack.create();
    expect(typeof stack.createUpload).toBe('function');
    const u = await stack.createUpload!('pack');
    const data = randomBytes(3 * 1024 * 1024 + 5);
    await u.write(data);
    const handle = { type: 'pack' as const, name: createHash('sha256').update(data).digest('hex') };
    await u.commit(handle);
    expect(Buffer.compare(await stack.load(handle), data)).toBe(0);
    await stack.close();
  });

  it('are not offered where rate or connection limits must see every save, nor by backends without them', async () => {
    const { createLocalBackend } = await import('../local/local-backend.ts');
    const local = createLocalBackend({ path: join(dir, 'repo') });
    expect(composeBackend(local, { limits: { uploadKiBps: 1024 } }).createUpload).toBeUndefined();
    expect(composeBackend(local, { connections: 2 }).createUpload).toBeUndefined();
    expect(composeBackend(createMemoryBackend(), {}).createUpload).toBeUndefined();
  });

  it('pass sweepTemporaries through every decorator to the backend that has it', async () => {
    const { createLocalBackend } = await import('../local/local-backend.ts');
    const root = join(dir, 'repo');
    const stack = composeBackend(createLocalBackend({ path: root }), {
      retry: { sleep: async () => {} },
      cacheDir: join(dir, 'cache'),
      limits: { uploadKiBps: 1024 },
      connections: 2,
    });
    await stack.create();
    await writeFile(join(root, 'data', '.tmp-0f0f'), 'stale');
    const then = new Date(Date.now() - 2 * 60 * 60 * 1000);
    await utimes(join(root, 'data', '.tmp-0f0f'), then, then);
    expect(await stack.sweepTemporaries!({ olderThanMs: 60 * 60 * 1000 })).toEqual({ files: 1, bytes: 5 });
    expect(await readdir(join(root, 'data'))).toEqual([]);
    expect(composeBackend(createMemoryBackend(), { retry: {} }).sweepTemporaries).toBeUndefined();
    await stack.close();
  });
});
