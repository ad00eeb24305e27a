import type { ByteRange, ObjectHandle, StorageBackend } from '@backupforge/common';
import { describe, expect, it } from 'vitest';
import { createMemoryBackend } from '../memory/memory-backend.ts';
import { describeBackend, hexName } from '../testing/describe-backend.ts';
import { withRateLimit } from './rate-limit.ts';
import { createFakeClock } from './test-helpers.ts';

// Fast enough for the 20 MiB test (~40 ms of waiting), small burst so the limiter really waits.
describeBackend('withRateLimit(memory)', async () => ({
  backend: withRateLimit(createMemoryBackend(), {
    uploadKiBps: 512 * 1024,
    downloadKiBps: 512 * 1024,
    burstBytes: 1024 * 1024,
  }),
}));

const pack = (): ObjectHandle => ({ type: 'pack', name: hexName() });

/** Records, on the fake clock, when each save/load reached the inner backend and how many bytes it moved. */
function timed(inner: StorageBackend, now: () => number) {
  const saves: { t: number; bytes: number; name: string }[] = [];
  const loads: { t: number; bytes: number; name: string }[] = [];
  const backend: StorageBackend = {
    location: inner.location,
    properties: () => inner.properties(),
    create: () => inner.create(),
    save: (h, d) => {
      saves.push({ t: now(), bytes: d.length, name: h.name });
      return inner.save(h, d);
    },
    load: (h: ObjectHandle, r?: ByteRange) => {
      if (r !== undefined) loads.push({ t: now(), bytes: r.length, name: h.name });
      return inner.load(h, r);
    },
    stat: (h) => inner.stat(h),
    list: (t) => inner.list(t),
    remove: (h) => inner.remove(h),
    close: () => inner.close(),
  };
  return { backend, saves, loads };
}

/** Asserts that by every event's time, the bytes so far stay within burst + rate × t. */
function expectWithinBucket(events: { t: number; bytes: number }[], bytesPerSecond: number, burst: number) {
  let total = 0;
  for (const e of [...events].sort((a, b) => a.t - b.t)) {
    total += e.bytes;
    expect(total, `${total} bytes by ${e.t} ms`).toBeLessThanOrEqual(
      burst + (bytesPerSecond * e.t) / 1000 + 1e-6,
    );
  }
}

describe('withRateLimit', () => {
  it('keeps uploads within the limit, serving concurrent saves in arrival order', async () => {
    const fake = createFakeClock();
    const { backend: inner, saves } = timed(createMemoryBackend(), fake.now);
    const backend = withRateLimit(inner, { uploadKiBps: 8, clock: fake.clock }); // 8192 B/s, burst 8192
    const sizes = Array.from({ length: 20 }, (_, i) => 1000 + ((i * 733) % 4000));
    const handles = sizes.map(() => pack());
    const total = sizes.reduce((a, b) => a + b, 0);

    await fake.run(Promise.all(handles.map((h, i) => backend.save(h, new Uint8Array(sizes[i]!)))));

    expect(saves.map((s) => s.name)).toEqual(handles.map((h) => h.name));
    expectWithinBucket(saves, 8192, 8192);
    // Not slower than needed either: the last save starts as soon as its bytes are paid.
    expect(saves.at(-1)!.t).toBeCloseTo(((total - 8192) / 8192) * 1000, 6);
    // The first burst went at once.
    expect(saves.filter((s) => s.t === 0).length).toBeGreaterThan(1);
  });

  it('makes a save larger than the burst wait for all of its bytes', async () => {
    const fake = createFakeClock();
    const { backend: inner, saves } = timed(createMemoryBackend(), fake.now);
    const backend = withRateLimit(inner, { uploadKiBps: 1, burstBytes: 512, clock: fake.clock });
    await fake.run(backend.save(pack(), new Uint8Array(4096 + 512)));
    expect(saves[0]!.t).toBeCloseTo(4000, 6);
    // The bucket is empty now: a small save waits for its own bytes.
    await fake.run(backend.save(pack(), new Uint8Array(1024)));
    expect(saves[1]!.t).toBeCloseTo(5000, 6);
  });

  it('refills while idle, never beyond the burst', async () => {
    const fake = createFakeClock();
    const { backend: inner, saves } = timed(createMemoryBackend(), fake.now);
    const backend = withRateLimit(inner, { uploadKiBps: 1, clock: fake.clock }); // burst 1024
    await fake.run(backend.save(pack(), new Uint8Array(1024))); // t=0, bucket empty
    await fake.run(fake.clock.sleep(60_000)); // idle a minute: refills to 1024, not 60 KiB
    await fake.run(
      Promise.all([backend.save(pack(), new Uint8Array(1024)), backend.save(pack(), new Uint8Array(1024))]),
    );
    expect(saves.map((s) => s.t)).toEqual([0, 60_000, 61_000]);
  });

  it('limits ranged loads before they start and whole loads before they return', async () => {
    const fake = createFakeClock();
    const memory = createMemoryBackend();
    const { backend: inner, loads } = timed(memory, fake.now);
    const backend = withRateLimit(inner, { downloadKiBps: 4, clock: fake.clock }); // 4096 B/s, burst 4096
    const handles = Array.from({ length: 6 }, () => pack());
    for (const h of handles) await memory.save(h, new Uint8Array(4096));

    // Whole loads: the first returns at once (burst), then one per second.
    const returned: number[] = [];
    await fake.run(
      Promise.all(
        handles.map((h) =>
          backend.load(h).then((data) => {
            expect(data.length).toBe(4096);
            returned.push(fake.now());
          }),
        ),
      ),
    );
    expect(returned).toEqual([0, 1000, 2000, 3000, 4000, 5000]);

    // Ranged loads pay first: each 2 KiB range starts half a second after the previous one.
    await fake.run(Promise.all(handles.map((h) => backend.load(h, { offset: 1024, length: 2048 }))));
    expect(loads.map((l) => l.t - 5000)).toEqual([500, 1000, 1500, 2000, 2500, 3000]);
    expectWithinBucket(
      loads.map((l) => ({ t: l.t - 5000, bytes: l.bytes })),
      4096,
      0,
    );
  });

  it('limits each direction separately and leaves other calls alone', async () => {
    const fake = createFakeClock();
    const memory = createMemoryBackend();
    const backend = withRateLimit(memory, { downloadKiBps: 1, clock: fake.clock });
    const h = pack();
    // Uploads are unlimited: 1 MiB goes through without any timer.
    await backend.save(h, new Uint8Array(1024 * 1024));
    await backend.stat(h);
    for await (const _ of backend.list('pack')) {
      // listing costs nothing
    }
    await backend.remove(pack());
    expect(fake.pending()).toBe(0);
    expect(fake.now()).toBe(0);
  });

  it('is unlimited when no limit is set (or 0)', async () => {
    const fake = createFakeClock();
    for (const options of [{}, { uploadKiBps: 0, downloadKiBps: 0 }]) {
      const backend = withRateLimit(createMemoryBackend(), { ...options, clock: fake.clock });
      const h = pack();
      await backend.save(h, new Uint8Array(8 * 1024 * 1024));
      await backend.load(h);
      await backend.load(h, { offset: 0, length: 1024 * 1024 });
    }
    expect(fake.pending()).toBe(0);
  });

  it('rejects a negative or non-numeric limit with FORGE_USAGE', () => {
    const memory = createMemoryBackend();
    for (const options of [
      { uploadKiBps: -1 },
      { downloadKiBps: Number.NaN },
      { burstBytes: 0, uploadKiBps: 1 },
    ]) {
      expect(() => withRateLimit(memory, options)).toThrow(expect.objectContaining({ code: 'FORGE_USAGE' }));
    }
  });

  it('keeps location and properties', () => {
    const backend = withRateLimit(createMemoryBackend(), { uploadKiBps: 100 });
    expect(backend.location).toBe('memory:');
    expect(backend.properties()).toEqual(createMemoryBackend().properties());
  });

  it('holds a short real run to the limit (lower bound only)', async () => {
    const backend = withRateLimit(createMemoryBackend(), { uploadKiBps: 1000, burstBytes: 1024 });
    const start = performance.now();
    await Promise.all(Array.from({ length: 10 }, () => backend.save(pack(), new Uint8Array(10 * 1024))));
    // (100 KiB − 1 KiB burst) at 1000 KiB/s is 99 ms; timers never fire much early.
    expect(performance.now() - start).toBeGreaterThanOrEqual(90);
  });
});
