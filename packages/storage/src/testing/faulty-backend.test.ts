import type { ObjectHandle, StorageBackend } from '@backupforge/common';
import { ForgeError, isForgeError } from '@backupforge/common';
import { describe, expect, it } from 'vitest';
import { createMemoryBackend } from '../memory/memory-backend.ts';
import { collect, describeBackend, hexName } from './describe-backend.ts';
import type { FaultyBackendFaults } from './faulty-backend.ts';
import { createFaultyBackend } from './faulty-backend.ts';

// Without faults configured, the decorator must be invisible.
describeBackend('faulty (no faults)', async () => ({
  backend: createFaultyBackend(createMemoryBackend(), {}),
}));

const pack = (): ObjectHandle => ({ type: 'pack', name: hexName() });

async function outcome(p: Promise<unknown>): Promise<'ok' | string> {
  try {
    await p;
    return 'ok';
  } catch (e) {
    if (!isForgeError(e)) throw e;
    return e.code;
  }
}

/** Runs the same 200 saves against a fresh faulty backend and returns which failed. */
async function failurePattern(faults: FaultyBackendFaults): Promise<string> {
  const backend = createFaultyBackend(createMemoryBackend(), faults);
  let pattern = '';
  for (let i = 0; i < 200; i++) {
    pattern +=
      (await outcome(backend.save({ type: 'pack', name: `aa${i}` }, new Uint8Array(1)))) === 'ok' ? '.' : 'x';
  }
  return pattern;
}

describe('createFaultyBackend', () => {
  it('fails the first N calls with a retryable FORGE_IO, then passes through', async () => {
    const inner = createMemoryBackend();
    const backend = createFaultyBackend(inner, { save: { failTimes: 2 } });
    const handle = pack();
    const data = new Uint8Array([1, 2, 3]);
    for (let i = 0; i < 2; i++) {
      const error = await backend.save(handle, data).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(ForgeError);
      expect(error).toMatchObject({ code: 'FORGE_IO', retryable: true });
      // A failure before the call leaves nothing behind.
      expect(await outcome(inner.stat(handle))).toBe('FORGE_NOT_FOUND');
    }
    await backend.save(handle, data);
    expect(await inner.load(handle)).toEqual(data);
    expect(backend.injected).toEqual([
      { method: 'save', kind: 'fail', key: `data/${handle.name.slice(0, 2)}/${handle.name}` },
      { method: 'save', kind: 'fail', key: `data/${handle.name.slice(0, 2)}/${handle.name}` },
    ]);
  });

  it('uses the given code, permanent by default', async () => {
    const backend = createFaultyBackend(createMemoryBackend(), {
      stat: { failTimes: 1, code: 'FORGE_PERMISSION' },
    });
    await expect(backend.stat(pack())).rejects.toMatchObject({ code: 'FORGE_PERMISSION', retryable: false });
    // The next call reaches the inner backend.
    await expect(backend.stat(pack())).rejects.toMatchObject({ code: 'FORGE_NOT_FOUND' });
  });

  it('with failAfter, lets the call take effect and still fails it', async () => {
    const inner = createMemoryBackend();
    const backend = createFaultyBackend(inner, { save: { failTimes: 1, failAfter: true } });
    const handle = pack();
    expect(await outcome(backend.save(handle, new Uint8Array(4)))).toBe('FORGE_IO');
    expect(await inner.stat(handle)).toEqual({ name: handle.name, size: 4 });
  });

  it('limits faults to the given object types', async () => {
    const backend = createFaultyBackend(createMemoryBackend(), {
      save: { failProbability: 1, types: ['lock'] },
    });
    await backend.save(pack(), new Uint8Array(1));
    expect(await outcome(backend.save({ type: 'lock', name: hexName() }, new Uint8Array(1)))).toBe(
      'FORGE_IO',
    );
  });

  it('fails with probability p, deterministically by seed', async () => {
    const a = await failurePattern({ seed: 7, save: { failProbability: 0.3 } });
    const b = await failurePattern({ seed: 7, save: { failProbability: 0.3 } });
    const c = await failurePattern({ seed: 8, save: { failProbability: 0.3 } });
    expect(a).toBe(b);
    expect(a).not.toBe(c);
    const failures = [...a].filter((ch) => ch === 'x').length;
    expect(failures).toBeGreaterThan(30);
    expect(failures).toBeLessThan(90);
    expect(await failurePattern({ seed: 7, save: { failProbability: 0 } })).toBe('.'.repeat(200));
  });

  it('corrupts a load by flipping exactly one bit, without changing the stored object', async () => {
    const inner = createMemoryBackend();
    const handle = pack();
    const data = Uint8Array.from({ length: 256 }, (_, i) => i);
    await inner.save(handle, data);
    const backend = createFaultyBackend(inner, { seed: 3, load: { corruptTimes: 1 } });
    const corrupted = await backend.load(handle);
    expect(differingBits(corrupted, data)).toBe(1);
    const [fault] = backend.injected;
    expect(fault).toMatchObject({ method: 'load', kind: 'corrupt' });
    expect(corrupted[fault!.at! >>> 3]).toBe(data[fault!.at! >>> 3]! ^ (1 << (fault!.at! & 7)));
    expect(await backend.load(handle)).toEqual(data);
    expect(await inner.load(handle)).toEqual(data);
    // The same seed flips the same bit.
    const again = createFaultyBackend(inner, { seed: 3, load: { corruptTimes: 1 } });
    expect(await again.load(handle)).toEqual(corrupted);
  });

  it('flips bits at positions drawn from the generator', async () => {
    const inner = createMemoryBackend();
    const handle = pack();
    await inner.save(handle, new Uint8Array(1024));
    const backend = createFaultyBackend(inner, { seed: 9, load: { corruptProbability: 1 } });
    for (let i = 0; i < 10; i++) await backend.load(handle);
    const positions = new Set(backend.injected.map((f) => f.at));
    expect(backend.injected).toHaveLength(10);
    expect(positions.size).toBeGreaterThan(5);
    for (const at of positions) expect(at).toBeLessThan(1024 * 8);
  });

  it('truncates a save to a strict prefix and reports success', async () => {
    const inner = createMemoryBackend();
    const backend = createFaultyBackend(inner, { seed: 5, save: { truncateTimes: 1 } });
    const handle = pack();
    const data = Uint8Array.from({ length: 1000 }, (_, i) => i % 251);
    await backend.save(handle, data);
    const stored = await inner.load(handle);
    expect(stored.length).toBeLessThan(data.length);
    expect(stored).toEqual(data.subarray(0, stored.length));
    expect(backend.injected).toEqual([
      {
        method: 'save',
        kind: 'truncate',
        key: `data/${handle.name.slice(0, 2)}/${handle.name}`,
        at: stored.length,
      },
    ]);
    const next = pack();
    await backend.save(next, data);
    expect(await inner.load(next)).toEqual(data);
  });

  it('fails a listing part-way: a prefix of the entries, then a throw', async () => {
    const inner = createMemoryBackend();
    for (let i = 0; i < 20; i++) await inner.save(pack(), new Uint8Array(1));
    const backend = createFaultyBackend(inner, { seed: 11, list: { failTimes: 1 } });
    const seen: string[] = [];
    const error = await (async () => {
      for await (const info of backend.list('pack')) seen.push(info.name);
    })().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toMatchObject({ code: 'FORGE_IO', retryable: true });
    expect(seen.length).toBe(backend.injected[0]?.at);
    expect(seen.length).toBeLessThan(20);
    expect(await collect(backend.list('pack'))).toHaveLength(20);
  });

  it('passes location, properties and close through', async () => {
    const memory = createMemoryBackend();
    let closed = false;
    const inner: StorageBackend = {
      location: 'inner',
      properties: () => ({ atomicReplace: false, connections: 2 }),
      create: () => memory.create(),
      save: (handle, data) => memory.save(handle, data),
      load: (handle, range) => memory.load(handle, range),
      stat: (handle) => memory.stat(handle),
      list: (type) => memory.list(type),
      remove: (handle) => memory.remove(handle),
      close: async () => {
        closed = true;
      },
    };
    const backend = createFaultyBackend(inner, {});
    expect(backend.location).toBe('inner');
    expect(backend.properties()).toEqual({ atomicReplace: false, connections: 2 });
    await backend.close();
    expect(closed).toBe(true);
  });
});

describe('createFaultyBackend latency (delayMs)', () => {
  /** A sleep that records each wait and resolves once `release()` is called. */
  function gatedSleep() {
    const waits: number[] = [];
    const pending: (() => void)[] = [];
    return {
      waits,
      pending,
      sleep: (ms: number) =>
        new Promise<void>((resolve) => {
          waits.push(ms);
          pending.push(resolve);
        }),
      release: () => {
        for (const resolve of pending.splice(0)) resolve();
      },
    };
  }

  it('delays matching calls before they reach the inner backend', async () => {
    const inner = createMemoryBackend();
    const clock = gatedSleep();
    const backend = createFaultyBackend(inner, { sleep: clock.sleep, save: { delayMs: 25 } });
    const handle = pack();
    let done = false;
    const saving = backend.save(handle, new Uint8Array([1])).then(() => {
      done = true;
    });
    await new Promise((resolve) => setImmediate(resolve));
    expect(clock.waits).toEqual([25]);
    expect(done).toBe(false);
    // Not yet stored: the delay comes first.
    expect(await outcome(inner.stat(handle))).toBe('FORGE_NOT_FOUND');
    clock.release();
    await saving;
    expect(await inner.stat(handle)).toEqual({ name: handle.name, size: 1 });
    expect(backend.injected).toEqual([]);
  });

  it('delays only the configured methods and types, and list before its first entry', async () => {
    const inner = createMemoryBackend();
    await inner.save({ type: 'index', name: 'aa' }, new Uint8Array(2));
    const waits: number[] = [];
    const backend = createFaultyBackend(inner, {
      sleep: async (ms) => {
        waits.push(ms);
      },
      load: { delayMs: 7, types: ['pack'] },
      list: { delayMs: 3 },
      create: { delayMs: 2 },
    });
    await backend.load({ type: 'index', name: 'aa' });
    await backend.stat({ type: 'index', name: 'aa' });
    expect(waits).toEqual([]);
    expect(await outcome(backend.load(pack()))).toBe('FORGE_NOT_FOUND');
    expect(waits).toEqual([7]);
    expect(await collect(backend.list('index'))).toEqual([{ name: 'aa', size: 2 }]);
    await backend.create();
    expect(waits).toEqual([7, 3, 2]);
  });

  it('combines with failures, deciding them when the call is made', async () => {
    const waits: number[] = [];
    const backend = createFaultyBackend(createMemoryBackend(), {
      sleep: async (ms) => {
        waits.push(ms);
      },
      stat: { delayMs: 5, failTimes: 1 },
    });
    await expect(backend.stat(pack())).rejects.toMatchObject({ code: 'FORGE_IO', retryable: true });
    await expect(backend.stat(pack())).rejects.toMatchObject({ code: 'FORGE_NOT_FOUND' });
    expect(waits).toEqual([5, 5]);
    // Same seed, same pattern with or without latency.
    const plain = await failurePattern({ seed: 7, save: { failProbability: 0.3 } });
    const slow = await failurePattern({
      seed: 7,
      sleep: async () => {},
      save: { failProbability: 0.3, delayMs: 1 },
    });
    expect(slow).toBe(plain);
  });

  it('waits with a real timer by default', async () => {
    const backend = createFaultyBackend(createMemoryBackend(), { stat: { delayMs: 30 } });
    const start = performance.now();
    await outcome(backend.stat(pack()));
    // Timers may fire up to a millisecond early; never much earlier.
    expect(performance.now() - start).toBeGreaterThanOrEqual(25);
  });
});

function differingBits(a: Uint8Array, b: Uint8Array): number {
  let n = 0;
  for (let i = 0; i < a.length; i++) {
    let x = a[i]! ^ b[i]!;
    while (x) {
      n += x & 1;
      x >>>= 1;
    }
  }
  return n;
}
