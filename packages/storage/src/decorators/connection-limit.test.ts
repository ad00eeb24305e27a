import type { ObjectHandle, ObjectInfo, ObjectType, StorageBackend } from '@backupforge/common';
import { describe, expect, it } from 'vitest';
import { createMemoryBackend } from '../memory/memory-backend.ts';
import { collect, describeBackend, hexName } from '../testing/describe-backend.ts';
import { createFaultyBackend } from '../testing/faulty-backend.ts';
import { withConnectionLimit } from './connection-limit.ts';
import { createFakeClock, idle, probe } from './test-helpers.ts';

describeBackend('withConnectionLimit(memory, 2)', async () => ({
  backend: withConnectionLimit(createMemoryBackend(), 2),
}));

const pack = (): ObjectHandle => ({ type: 'pack', name: hexName() });

/** A memory backend where every call takes 10 ms of fake time, behind an in-flight probe. */
function slowBackend() {
  const fake = createFakeClock();
  const memory = createMemoryBackend();
  const slow = createFaultyBackend(memory, {
    sleep: fake.clock.sleep,
    create: { delayMs: 10 },
    save: { delayMs: 10 },
    load: { delayMs: 10 },
    stat: { delayMs: 10 },
    list: { delayMs: 10 },
    remove: { delayMs: 10 },
  });
  return { fake, memory, ...probe(slow) };
}

describe('withConnectionLimit', () => {
  it('never has more than n calls in flight, and uses all n', async () => {
    const { fake, memory, backend: inner, inFlight, calls } = slowBackend();
    const existing = Array.from({ length: 10 }, () => pack());
    for (const h of existing) await memory.save(h, new Uint8Array(8));
    const backend = withConnectionLimit(inner, 3);

    const work: Promise<unknown>[] = [];
    for (let i = 0; i < 10; i++) {
      work.push(backend.save(pack(), new Uint8Array(4)));
      work.push(backend.load(existing[i]!));
      work.push(i % 2 ? backend.stat(existing[i]!) : backend.remove(pack()));
    }
    await fake.run(Promise.all(work));

    expect(inFlight.max).toBe(3);
    expect(calls.save + calls.load + calls.stat + calls.remove).toBe(30);
    // 30 calls of 10 ms, three at a time.
    expect(fake.now()).toBe(100);
  });

  it('serves waiting calls first come, first served', async () => {
    const { fake, backend: inner, log } = slowBackend();
    const backend = withConnectionLimit(inner, 1);
    const handles = Array.from({ length: 8 }, () => pack());
    await fake.run(Promise.all(handles.map((h) => backend.save(h, new Uint8Array(1)))));
    expect(log.map((l) => l.key)).toEqual(handles.map((h) => `pack/${h.name}`));
    expect(fake.now()).toBe(80);
  });

  it('frees the slot of a failed call', async () => {
    const fake = createFakeClock();
    const faulty = createFaultyBackend(createMemoryBackend(), {
      sleep: fake.clock.sleep,
      stat: { failTimes: 5, delayMs: 1 },
    });
    const backend = withConnectionLimit(faulty, 1);
    const results = await fake.run(Promise.allSettled(Array.from({ length: 6 }, () => backend.stat(pack()))));
    expect(
      results.map((r) => (r.status === 'rejected' ? (r.reason as { code: string }).code : 'ok')),
    ).toEqual(['FORGE_IO', 'FORGE_IO', 'FORGE_IO', 'FORGE_IO', 'FORGE_IO', 'FORGE_NOT_FOUND']);
    // And the limiter still works afterwards.
    await fake.run(backend.save(pack(), new Uint8Array(1)));
  });

  it('takes a slot per listing step, so loading while listing cannot deadlock with n = 1', async () => {
    const { fake, memory, backend: inner, inFlight } = slowBackend();
    for (let i = 0; i < 5; i++) await memory.save({ type: 'lock', name: hexName() }, new Uint8Array(i));
    const backend = withConnectionLimit(inner, 1);
    const loaded = await fake.run(
      (async () => {
        const sizes: number[] = [];
        for await (const info of backend.list('lock')) {
          sizes.push((await backend.load({ type: 'lock', name: info.name })).length);
        }
        return sizes;
      })(),
    );
    expect(loaded.sort()).toEqual([0, 1, 2, 3, 4]);
    expect(inFlight.max).toBe(1);
  });

  it('counts listing steps against the limit', async () => {
    const { fake, memory, backend: inner, inFlight } = slowBackend();
    const existing = Array.from({ length: 4 }, () => pack());
    for (const h of existing) await memory.save(h, new Uint8Array(2));
    const backend = withConnectionLimit(inner, 2);
    await fake.run(
      Promise.all([
        collect(backend.list('pack')),
        collect(backend.list('pack')),
        ...existing.map((h) => backend.stat(h)),
      ]),
    );
    expect(inFlight.max).toBe(2);
  });

  it('closes the inner listing when the caller stops early, and frees its slot', async () => {
    let closed = false;
    const memory = createMemoryBackend();
    for (let i = 0; i < 3; i++) await memory.save(pack(), new Uint8Array(1));
    const inner: StorageBackend = Object.assign(Object.create(null), {
      properties: () => memory.properties(),
      stat: (h: ObjectHandle) => memory.stat(h),
      async *list(type: ObjectType): AsyncIterable<ObjectInfo> {
        try {
          yield* memory.list(type);
        } finally {
          closed = true;
        }
      },
    });
    const backend = withConnectionLimit(inner, 1);
    for await (const _ of backend.list('pack')) break;
    expect(closed).toBe(true);
    // The slot is free again.
    await expect(backend.stat(pack())).rejects.toMatchObject({ code: 'FORGE_NOT_FOUND' });
  });

  it('reports min(n, inner connections)', () => {
    const memory = createMemoryBackend(); // 16 connections
    expect(withConnectionLimit(memory, 4).properties()).toEqual({ ...memory.properties(), connections: 4 });
    expect(withConnectionLimit(memory, 64).properties().connections).toBe(16);
    expect(withConnectionLimit(memory, 4).location).toBe('memory:');
  });

  it('does not limit close', async () => {
    const { fake, backend: inner } = slowBackend();
    const backend = withConnectionLimit(inner, 1);
    const busy = backend.save(pack(), new Uint8Array(1));
    await idle();
    await backend.close(); // would wait for the save if it took a slot
    await fake.run(busy);
  });

  it('rejects a limit that is not a positive integer with FORGE_USAGE', () => {
    const memory = createMemoryBackend();
    for (const n of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(() => withConnectionLimit(memory, n)).toThrow(expect.objectContaining({ code: 'FORGE_USAGE' }));
    }
  });
});
