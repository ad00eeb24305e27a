import type { ObjectHandle, ObjectInfo, ObjectType, StorageBackend } from '@backupforge/common';
import { ForgeError, isForgeError } from '@backupforge/common';
import { describe, expect, it } from 'vitest';
import { createMemoryBackend } from '../memory/memory-backend.ts';
import { collect, describeBackend, hexName } from '../testing/describe-backend.ts';
import { createFaultyBackend } from '../testing/faulty-backend.ts';
import type { RetryInfo, RetryOptions } from './retry.ts';
import { withRetry } from './retry.ts';
import { probe } from './test-helpers.ts';

describeBackend('withRetry(memory)', async () => ({
  backend: withRetry(createMemoryBackend(), { sleep: async () => {} }),
}));

/** Options with a recording sleep that never waits. */
function fakeTime(extra: RetryOptions = {}) {
  const sleeps: number[] = [];
  const retries: RetryInfo[] = [];
  const options: RetryOptions = {
    sleep: async (ms) => {
      // A regression that retries forever must fail, not starve the event loop.
      if (sleeps.length >= 1000) throw new Error('runaway retries');
      sleeps.push(ms);
    },
    onRetry: (info) => retries.push(info),
    ...extra,
  };
  return { sleeps, retries, options };
}

const pack = (): ObjectHandle => ({ type: 'pack', name: hexName() });

async function rejection(p: Promise<unknown>): Promise<ForgeError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  if (!isForgeError(e)) expect.fail(`expected a ForgeError, got ${String(e)}`);
  return e;
}

describe('withRetry', () => {
  it('retries transient failures until the call succeeds, and counts them', async () => {
    const memory = createMemoryBackend();
    const { backend: counted, calls } = probe(memory);
    const faulty = createFaultyBackend(counted, { save: { failTimes: 3 }, load: { failTimes: 1 } });
    const time = fakeTime();
    const backend = withRetry(faulty, time.options);
    const handle = pack();
    const data = new Uint8Array([1, 2, 3, 4]);

    await backend.save(handle, data);
    expect(calls.save).toBe(1); // the three failures never reached the memory backend
    expect(faulty.injected).toHaveLength(3);
    expect(await backend.load(handle)).toEqual(data);
    expect(backend.retryStats()).toEqual({ retries: 4, succeededAfterRetry: 2, gaveUp: 0 });
    expect(time.sleeps).toHaveLength(4);
    expect(time.retries.map((r) => [r.operation, r.attempt])).toEqual([
      ['save', 1],
      ['save', 2],
      ['save', 3],
      ['load', 1],
    ]);
    const first = time.retries[0]!;
    expect(first.object).toBe(`data/${handle.name.slice(0, 2)}/${handle.name}`);
    expect(first.error).toMatchObject({ code: 'FORGE_IO', retryable: true });
    expect(first.delayMs).toBe(time.sleeps[0]);
    expect(first.maxAttempts).toBe(8);

    // A call that succeeds at once is not counted.
    await backend.stat(handle);
    expect(backend.retryStats()).toEqual({ retries: 4, succeededAfterRetry: 2, gaveUp: 0 });
  });

  it('retries a save whose acknowledgement was lost: the same bytes are stored once', async () => {
    const memory = createMemoryBackend();
    const backend = withRetry(
      createFaultyBackend(memory, { save: { failTimes: 2, failAfter: true } }),
      fakeTime().options,
    );
    const handle = pack();
    const data = Uint8Array.from({ length: 100 }, (_, i) => i);
    await backend.save(handle, data);
    expect(await memory.load(handle)).toEqual(data);
    expect(await collect(memory.list('pack'))).toEqual([{ name: handle.name, size: 100 }]);
    expect(backend.retryStats().succeededAfterRetry).toBe(1);
  });

  it.each([
    ['FORGE_PERMISSION', 'stat'],
    ['FORGE_AUTH', 'save'],
    ['FORGE_NO_SPACE', 'save'],
    ['FORGE_INTEGRITY', 'load'],
  ] as const)('does not retry a permanent %s (%s is called exactly once)', async (code, method) => {
    const memory = createMemoryBackend();
    const handle = pack();
    await memory.save(handle, new Uint8Array(1));
    const { backend: counted, calls } = probe(memory);
    const time = fakeTime();
    const backend = withRetry(
      createFaultyBackend(counted, { [method]: { failTimes: 5, code, failAfter: true } }),
      time.options,
    );
    const call =
      method === 'stat'
        ? backend.stat(handle)
        : method === 'save'
          ? backend.save(handle, new Uint8Array(1))
          : backend.load(handle);
    expect(await rejection(call)).toMatchObject({ code, retryable: false });
    expect(calls[method]).toBe(1);
    expect(time.sleeps).toEqual([]);
    expect(backend.retryStats()).toEqual({ retries: 0, succeededAfterRetry: 0, gaveUp: 0 });
  });

  it('does not retry FORGE_NOT_FOUND or FORGE_RANGE', async () => {
    const { backend: counted, calls } = probe(createMemoryBackend());
    const time = fakeTime();
    const backend = withRetry(counted, time.options);
    const handle = pack();
    expect((await rejection(backend.load(handle))).code).toBe('FORGE_NOT_FOUND');
    await backend.save(handle, new Uint8Array(10));
    expect((await rejection(backend.load(handle, { offset: 8, length: 5 }))).code).toBe('FORGE_RANGE');
    expect(calls.load).toBe(2);
    expect(time.sleeps).toEqual([]);
  });

  it('gives up after maxAttempts with a message naming location, operation, object and attempts', async () => {
    const { backend: counted, calls } = probe(createMemoryBackend());
    const time = fakeTime({ maxAttempts: 5 });
    const backend = withRetry(
      createFaultyBackend(counted, { load: { failProbability: 1, failAfter: true } }),
      time.options,
    );
    const handle = { type: 'index' as const, name: hexName() };
    await counted.save(handle, new Uint8Array(3));
    const error = await rejection(backend.load(handle));
    expect(error.code).toBe('FORGE_IO');
    expect(error.retryable).toBe(true);
    expect(error.message).toContain('memory:');
    expect(error.message).toContain(`load index/${handle.name}`);
    expect(error.message).toContain('gave up after 5 attempts');
    expect(error.message).toContain('injected fault');
    expect(error.hint).toMatch(/run the command again/);
    expect(error.details).toMatchObject({ attempts: 5, operation: 'load', object: `index/${handle.name}` });
    expect(isForgeError(error.cause, 'FORGE_IO')).toBe(true);
    expect(calls.load).toBe(5);
    expect(time.sleeps).toHaveLength(4);
    expect(backend.retryStats()).toEqual({ retries: 4, succeededAfterRetry: 0, gaveUp: 1 });
  });

  it('keeps the code and hint of the last error when it gives up', async () => {
    let n = 0;
    const inner = createMemoryBackend();
    const flaky: StorageBackend = Object.assign(Object.create(null), {
      location: 's3:example/bucket',
      properties: () => inner.properties(),
      create: async () => {
        n++;
        throw new ForgeError('FORGE_AUTH', 'token refresh timed out', {
          retryable: true,
          hint: 'check AWS_*',
        });
      },
    });
    const backend = withRetry(flaky, fakeTime({ maxAttempts: 2 }).options);
    const error = await rejection(backend.create());
    expect(n).toBe(2);
    expect(error).toMatchObject({ code: 'FORGE_AUTH', retryable: true, hint: 'check AWS_*' });
    expect(error.message).toBe(
      'create on s3:example/bucket gave up after 2 attempts: token refresh timed out',
    );
  });

  it('grows the backoff ceiling exponentially up to the cap, with full jitter below it', async () => {
    const draws = [0.5, 0.25, 0.999, 0, 0.75, 0.5, 0.9, 0.1, 0.6];
    let i = 0;
    const time = fakeTime({
      maxAttempts: 10,
      baseDelayMs: 100,
      maxDelayMs: 3000,
      random: () => draws[i++]!,
    });
    const backend = withRetry(
      createFaultyBackend(createMemoryBackend(), { stat: { failProbability: 1 } }),
      time.options,
    );
    await rejection(backend.stat(pack()));
    const ceilings = [100, 200, 400, 800, 1600, 3000, 3000, 3000, 3000];
    expect(time.sleeps).toHaveLength(9);
    expect(time.sleeps).toEqual(ceilings.map((c, k) => c * draws[k]!));
    expect(time.retries.map((r) => r.delayMs)).toEqual(time.sleeps);
  });

  it('keeps real jittered delays within [0, ceiling) and spread out', async () => {
    const time = fakeTime({ maxAttempts: 8 });
    const backend = withRetry(
      createFaultyBackend(createMemoryBackend(), { stat: { failProbability: 1 } }),
      time.options,
    );
    for (let k = 0; k < 20; k++) await rejection(backend.stat(pack()));
    expect(time.sleeps).toHaveLength(20 * 7);
    for (let k = 0; k < time.sleeps.length; k++) {
      const attempt = (k % 7) + 1;
      const ceiling = Math.min(30_000, 500 * 2 ** (attempt - 1));
      expect(time.sleeps[k]).toBeGreaterThanOrEqual(0);
      expect(time.sleeps[k]).toBeLessThan(ceiling);
    }
    // Full jitter: not the same delay every time.
    expect(new Set(time.sleeps.filter((_, k) => k % 7 === 6)).size).toBeGreaterThan(10);
  });

  it('stops when the time budget would be exceeded', async () => {
    let now = 0;
    const sleeps: number[] = [];
    const backend = withRetry(createFaultyBackend(createMemoryBackend(), { stat: { failProbability: 1 } }), {
      maxAttempts: 100,
      maxElapsedMs: 10_000,
      random: () => 0.999,
      now: () => now,
      sleep: async (ms) => {
        sleeps.push(ms);
        now += ms;
      },
    });
    const error = await rejection(backend.stat(pack()));
    // 499.5 + 999 + 1998 + 3996 = 7492.5; the next wait (7992) would end after 10 s.
    expect(sleeps).toHaveLength(4);
    expect(error.message).toContain('gave up after 5 attempts');
    expect(now).toBeLessThanOrEqual(10_000);
  });

  it('normalises and retries errors that are not ForgeErrors (ECONNRESET)', async () => {
    const memory = createMemoryBackend();
    let failures = 1;
    const inner: StorageBackend = Object.assign(Object.create(null), {
      location: 'rest:http://host/repo',
      properties: () => memory.properties(),
      stat: async (h: ObjectHandle) => {
        if (failures-- > 0) throw Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });
        return memory.stat(h);
      },
      remove: async () => {
        throw new TypeError('boom');
      },
    });
    const backend = withRetry(inner, fakeTime().options);
    const handle = pack();
    await memory.save(handle, new Uint8Array(2));
    expect(await backend.stat(handle)).toEqual({ name: handle.name, size: 2 });
    expect(backend.retryStats().succeededAfterRetry).toBe(1);
    // Anything else becomes a permanent ForgeError, not retried.
    expect((await rejection(backend.remove(handle))).code).toBe('FORGE_INTERNAL');
  });

  it('ignores exceptions thrown by onRetry', async () => {
    const backend = withRetry(createFaultyBackend(createMemoryBackend(), { stat: { failTimes: 2 } }), {
      sleep: async () => {},
      onRetry: () => {
        throw new Error('logger broke');
      },
    });
    await expect(backend.stat(pack())).rejects.toMatchObject({ code: 'FORGE_NOT_FOUND' });
    expect(backend.retryStats()).toMatchObject({ retries: 2 });
  });

  it('restarts a listing that fails part-way and never yields a name twice', async () => {
    const memory = createMemoryBackend();
    const names: string[] = [];
    for (let i = 0; i < 30; i++) {
      const h = pack();
      names.push(h.name);
      await memory.save(h, new Uint8Array(i));
    }
    for (const seed of [1, 2, 3, 4, 5]) {
      const faulty = createFaultyBackend(memory, { seed, list: { failTimes: 3 } });
      const time = fakeTime();
      const backend = withRetry(faulty, time.options);
      const listed = await collect(backend.list('pack'));
      const listedNames = listed.map((i) => i.name);
      expect(new Set(listedNames).size).toBe(listedNames.length);
      expect([...listedNames].sort()).toEqual([...names].sort());
      // The failed attempts really yielded something before failing (seeded prefixes).
      expect(faulty.injected.map((f) => f.at)).toHaveLength(3);
      expect(backend.retryStats()).toEqual({ retries: 3, succeededAfterRetry: 1, gaveUp: 0 });
      expect(time.retries.map((r) => [r.operation, r.object, r.attempt])).toEqual([
        ['list', 'pack', 1],
        ['list', 'pack', 2],
        ['list', 'pack', 3],
      ]);
    }
  });

  it('does not give up on a listing that makes progress on every restart', async () => {
    const memory = createMemoryBackend();
    for (let i = 0; i < 10; i++) await memory.save(pack(), new Uint8Array(1));
    let run = 0;
    // Attempt k yields k entries, then fails: 9 failures in all (the 10th attempt completes), with maxAttempts 3.
    const inner: StorageBackend = Object.assign(Object.create(null), {
      location: 'memory:',
      async *list(type: ObjectType): AsyncIterable<ObjectInfo> {
        run++;
        let n = 0;
        for await (const info of memory.list(type)) {
          if (n++ === run) throw new ForgeError('FORGE_IO', 'connection reset', { retryable: true });
          yield info;
        }
      },
    });
    const backend = withRetry(inner, fakeTime({ maxAttempts: 3 }).options);
    const listed = await collect(backend.list('pack'));
    expect(listed).toHaveLength(10);
    expect(new Set(listed.map((i) => i.name)).size).toBe(10);
    expect(backend.retryStats()).toEqual({ retries: 9, succeededAfterRetry: 1, gaveUp: 0 });
  });

  it('gives up on a listing that keeps failing without progress, after the entries it had', async () => {
    const memory = createMemoryBackend();
    for (let i = 0; i < 5; i++) await memory.save(pack(), new Uint8Array(1));
    let runs = 0;
    // Every attempt yields the same two entries, then fails.
    const inner: StorageBackend = Object.assign(Object.create(null), {
      location: 'memory:',
      async *list(type: ObjectType): AsyncIterable<ObjectInfo> {
        runs++;
        yield* (await collect(memory.list(type))).slice(0, 2);
        throw new ForgeError('FORGE_IO', 'connection reset', { retryable: true });
      },
    });
    const backend = withRetry(inner, fakeTime({ maxAttempts: 4 }).options);
    const seen: string[] = [];
    const error = await rejection(
      (async () => {
        for await (const info of backend.list('pack')) seen.push(info.name);
      })(),
    );
    // Only the first attempt made progress: it and the three after it are the four allowed.
    expect(runs).toBe(4);
    expect(error.message).toBe('list pack on memory: gave up after 4 attempts: connection reset');
    expect(error.retryable).toBe(true);
    expect(seen).toHaveLength(2);
    expect(new Set(seen).size).toBe(2);
    expect(backend.retryStats()).toEqual({ retries: 3, succeededAfterRetry: 0, gaveUp: 1 });
  });

  it('rethrows a permanent listing error at once', async () => {
    const { backend: counted, calls } = probe(createMemoryBackend());
    const backend = withRetry(
      createFaultyBackend(counted, { list: { failTimes: 1, code: 'FORGE_PERMISSION' } }),
      fakeTime().options,
    );
    await expect(collect(backend.list('index'))).rejects.toMatchObject({ code: 'FORGE_PERMISSION' });
    expect(calls.list).toBe(1);
  });

  it('passes location, properties and close through', async () => {
    let closed = false;
    const memory = createMemoryBackend();
    const inner: StorageBackend = Object.assign(Object.create(null), {
      location: 'sftp:u@h/x',
      properties: () => ({ atomicReplace: false, connections: 3 }),
      close: async () => {
        closed = true;
      },
      list: (t: ObjectType) => memory.list(t),
    });
    const backend = withRetry(inner);
    expect(backend.location).toBe('sftp:u@h/x');
    expect(backend.properties()).toEqual({ atomicReplace: false, connections: 3 });
    await backend.close();
    expect(closed).toBe(true);
  });

  it('rejects invalid options with FORGE_USAGE', () => {
    const memory = createMemoryBackend();
    for (const options of [
      { maxAttempts: 0 },
      { maxAttempts: 1.5 },
      { baseDelayMs: -1 },
      { maxElapsedMs: Number.NaN },
    ]) {
      expect(() => withRetry(memory, options)).toThrow(expect.objectContaining({ code: 'FORGE_USAGE' }));
    }
  });
});
