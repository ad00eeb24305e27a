/**
 * Helpers for the decorator tests (not exported from the package): a fake clock driven by the
 * test, and a backend wrapper that counts calls and concurrency.
 */
import type { ByteRange, ObjectHandle, ObjectInfo, ObjectType, StorageBackend } from '@backupforge/common';
import type { Clock } from './forwarding.ts';

export interface FakeClock {
  readonly clock: Clock;
  /** The current fake time in milliseconds. */
  now(): number;
  /** Timers not yet fired. */
  pending(): number;
  /**
   * Fires timers in time order (advancing the clock to each) until `promise` settles, letting
   * every pending promise chain (and real I/O) run in between. Throws when nothing is scheduled
   * but `promise` is still pending after 5 s (a deadlock).
   */
  run<T>(promise: Promise<T>): Promise<T>;
}

export function createFakeClock(start = 0): FakeClock {
  let now = start;
  let seq = 0;
  const timers: { at: number; seq: number; resolve: () => void }[] = [];
  const clock: Clock = {
    now: () => now,
    sleep: (ms) =>
      new Promise<void>((resolve) => {
        timers.push({ at: now + Math.max(0, ms), seq: seq++, resolve });
      }),
  };
  return {
    clock,
    now: () => now,
    pending: () => timers.length,
    async run<T>(promise: Promise<T>): Promise<T> {
      let settled = false;
      promise.then(
        () => {
          settled = true;
        },
        () => {
          settled = true;
        },
      );
      for (;;) {
        await idle();
        // Real I/O (the cache's files) may still be running: give it up to 5 s of real time.
        for (let waited = 0; !settled && timers.length === 0 && waited < 5000; waited += 2) {
          await new Promise((resolve) => setTimeout(resolve, 2));
        }
        if (settled) return promise;
        if (timers.length === 0)
          throw new Error('deadlock: no timer is scheduled and the promise is pending');
        timers.sort((a, b) => a.at - b.at || a.seq - b.seq);
        const timer = timers.shift()!;
        now = Math.max(now, timer.at);
        timer.resolve();
      }
    },
  };
}

/** Lets every queued microtask and promise chain run. */
export async function idle(): Promise<void> {
  for (let i = 0; i < 3; i++) await new Promise((resolve) => setImmediate(resolve));
}

export type Method = 'create' | 'save' | 'load' | 'stat' | 'list' | 'remove';

export interface Probe {
  readonly backend: StorageBackend;
  /** Calls that reached the wrapped backend, per method. */
  readonly calls: Record<Method, number>;
  /** Every call in the order it started, with its byte count for save/load. */
  readonly log: { method: Method; key: string; range?: ByteRange }[];
  /** Calls running now (a listing counts while its next entry is awaited), and the most seen. */
  readonly inFlight: { current: number; max: number };
}

/** Wraps a backend to count calls, log them, and measure concurrency. */
export function probe(inner: StorageBackend): Probe {
  const calls: Record<Method, number> = { create: 0, save: 0, load: 0, stat: 0, list: 0, remove: 0 };
  const log: Probe['log'] = [];
  const inFlight = { current: 0, max: 0 };
  const track = async <T>(method: Method, key: string, call: () => Promise<T>, range?: ByteRange) => {
    calls[method]++;
    log.push(range === undefined ? { method, key } : { method, key, range });
    inFlight.current++;
    inFlight.max = Math.max(inFlight.max, inFlight.current);
    try {
      return await call();
    } finally {
      inFlight.current--;
    }
  };
  const backend: StorageBackend = {
    get location() {
      return inner.location;
    },
    properties: () => inner.properties(),
    create: () => track('create', '', () => inner.create()),
    save: (h: ObjectHandle, d: Uint8Array) => track('save', `${h.type}/${h.name}`, () => inner.save(h, d)),
    load: (h: ObjectHandle, r?: ByteRange) => track('load', `${h.type}/${h.name}`, () => inner.load(h, r), r),
    stat: (h: ObjectHandle) => track('stat', `${h.type}/${h.name}`, () => inner.stat(h)),
    remove: (h: ObjectHandle) => track('remove', `${h.type}/${h.name}`, () => inner.remove(h)),
    list: (type: ObjectType) => {
      calls.list++;
      log.push({ method: 'list', key: type });
      return {
        [Symbol.asyncIterator]() {
          const entries = inner.list(type)[Symbol.asyncIterator]();
          return {
            next: async (): Promise<IteratorResult<ObjectInfo>> => {
              inFlight.current++;
              inFlight.max = Math.max(inFlight.max, inFlight.current);
              try {
                return await entries.next();
              } finally {
                inFlight.current--;
              }
            },
            return: async (): Promise<IteratorResult<ObjectInfo>> =>
              (await entries.return?.()) ?? { done: true, value: undefined },
          };
        },
      };
    },
    close: () => inner.close(),
  };
  return { backend, calls, log, inFlight };
}
