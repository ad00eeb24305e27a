// A StorageBackend decorator that simulates a power cut (reliability scenario 3, in-process).
import {
  type BackendProperties,
  type ByteRange,
  ForgeError,
  OBJECT_TYPES,
  type ObjectHandle,
  type ObjectInfo,
  type ObjectType,
  type StorageBackend,
} from '@backupforge/common';
import { createMemoryBackend } from '@backupforge/storage/memory';

export interface PowerLossOptions {
  /** The cut happens when the call with this number (1-based, any method) starts. */
  readonly cutAtCall?: number;
  /** Random numbers in [0, 1): whether an interrupted save survives, and how long saves take. */
  readonly random: () => number;
}

export interface PowerLossBackend {
  /** Use this one: it forwards to the inner backend until the power is cut. */
  readonly backend: StorageBackend;
  readonly isCut: boolean;
  /** Calls made so far. */
  readonly calls: number;
  /** Resolves when the power is cut. */
  readonly whenCut: Promise<void>;
  /** Cuts the power now: every later call rejects, saves in progress never complete. */
  cut(): void;
  /**
   * After the cut ("reboot"): a new memory backend holding exactly the objects whose save
   * resolved before the cut (minus completed removes) plus, at random, each save that was in
   * progress — in full, since saves are atomic.
   */
  survivors(): Promise<StorageBackend>;
}

const never = new Promise<never>(() => {});

/**
 * Wraps `inner` (usually `createMemoryBackend()`): calls go through until the power is cut at
 * call `cutAtCall` or by `cut()`; from then on every call rejects with FORGE_IO and saves or
 * removes in progress never settle, as when the machine stops.
 */
export function createPowerLossBackend(inner: StorageBackend, opts: PowerLossOptions): PowerLossBackend {
  let calls = 0;
  let isCut = false;
  let onCut: () => void = () => {};
  const whenCut = new Promise<void>((r) => {
    onCut = r;
  });
  const inFlight = new Map<string, { handle: ObjectHandle; data: Uint8Array }>();
  const cut = () => {
    if (isCut) return;
    isCut = true;
    onCut();
  };
  const lost = () => new ForgeError('FORGE_IO', 'simulated power loss: the machine is off');
  /** Counts a call; cuts the power when its number comes up; throws once the power is off. */
  const enter = () => {
    calls++;
    if (opts.cutAtCall !== undefined && calls >= opts.cutAtCall) cut();
    if (isCut) throw lost();
  };
  /** A few event-loop turns, so calls interleave and a cut can fall in the middle of a save. */
  const latency = async () => {
    const turns = Math.floor(opts.random() * 3);
    for (let i = 0; i < turns; i++) await new Promise((r) => setImmediate(r));
  };
  const keyOf = (h: ObjectHandle) => `${h.type}/${h.name}`;

  const backend: StorageBackend = {
    location: `power-loss:${inner.location}`,
    properties: (): BackendProperties => inner.properties(),
    async create() {
      enter();
      await inner.create();
    },
    async save(handle: ObjectHandle, data: Uint8Array) {
      enter();
      const key = keyOf(handle);
      const token = { handle, data: data.slice() };
      inFlight.set(key, token);
      await latency();
      if (isCut) return never; // the save was under way when the power went
      await inner.save(handle, token.data);
      if (inFlight.get(key) === token) inFlight.delete(key);
      if (isCut) return never; // durable, but never acknowledged
    },
    async load(handle: ObjectHandle, range?: ByteRange) {
      enter();
      await latency();
      if (isCut) throw lost();
      return inner.load(handle, range);
    },
    async stat(handle: ObjectHandle): Promise<ObjectInfo> {
      enter();
      if (isCut) throw lost();
      return inner.stat(handle);
    },
    async *list(type: ObjectType) {
      enter();
      for await (const info of inner.list(type)) {
        if (isCut) throw lost();
        yield info;
      }
    },
    async remove(handle: ObjectHandle) {
      enter();
      await latency();
      if (isCut) return never;
      await inner.remove(handle);
      if (isCut) return never;
    },
    async close() {},
  };

  return {
    backend,
    get isCut() {
      return isCut;
    },
    get calls() {
      return calls;
    },
    whenCut,
    cut,
    async survivors() {
      if (!isCut) throw new Error('survivors() before the power was cut');
      const out = createMemoryBackend();
      for (const type of OBJECT_TYPES) {
        for await (const info of inner.list(type)) {
          const h = { type, name: info.name };
          await out.save(h, await inner.load(h));
        }
      }
      // A save in progress is atomic: either all of it made it, or none.
      for (const { handle, data } of inFlight.values()) {
        if (opts.random() < 0.5) await out.save(handle, data);
      }
      return out;
    },
  };
}
