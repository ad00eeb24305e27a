import type {
  BackendProperties,
  ByteRange,
  ObjectHandle,
  ObjectInfo,
  ObjectType,
  ObjectUpload,
  StorageBackend,
  TemporarySweep,
} from '@backupforge/common';
import { ForgeError, ForgeErrorCodes } from '@backupforge/common';

/**
 * A decorator that forwards every call to `inner`: subclasses override what they change. Keeps
 * `location` and `properties()` of the inner backend unless overridden.
 */
export abstract class ForwardingBackend implements StorageBackend {
  protected readonly inner: StorageBackend;
  /**
   * Forwarded when `inner` has it, unless the subclass says `uploads: false` (a decorator that
   * must see every byte saved: it then gets whole packs through `save`).
   */
  readonly createUpload?: (type: 'pack') => Promise<ObjectUpload>;
  /** Forwarded when `inner` has it. */
  readonly sweepTemporaries?: (opts: {
    readonly olderThanMs: number;
    readonly dryRun?: boolean;
  }) => Promise<TemporarySweep>;

  constructor(inner: StorageBackend, opts: { uploads?: boolean } = {}) {
    if (inner === null || typeof inner !== 'object') {
      throw new ForgeError(ForgeErrorCodes.FORGE_USAGE, 'a backend decorator needs a StorageBackend to wrap');
    }
    this.inner = inner;
    if (opts.uploads !== false && typeof inner.createUpload === 'function') {
      this.createUpload = (type) => inner.createUpload!(type);
    }
    if (typeof inner.sweepTemporaries === 'function') {
      this.sweepTemporaries = (o) => inner.sweepTemporaries!(o);
    }
  }

  get location(): string {
    return this.inner.location;
  }

  properties(): BackendProperties {
    return this.inner.properties();
  }

  create(): Promise<void> {
    return this.inner.create();
  }

  save(handle: ObjectHandle, data: Uint8Array): Promise<void> {
    return this.inner.save(handle, data);
  }

  load(handle: ObjectHandle, range?: ByteRange, into?: Uint8Array): Promise<Uint8Array> {
    return this.inner.load(handle, range, into);
  }

  stat(handle: ObjectHandle): Promise<ObjectInfo> {
    return this.inner.stat(handle);
  }

  list(type: ObjectType): AsyncIterable<ObjectInfo> {
    return this.inner.list(type);
  }

  remove(handle: ObjectHandle): Promise<void> {
    return this.inner.remove(handle);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

/** Rejects with FORGE_USAGE unless `value` is a finite number >= `min` (and an integer when asked). */
export function checkNumber(
  value: unknown,
  what: string,
  { min = 0, integer = false }: { min?: number; integer?: boolean } = {},
): number {
  if (
    typeof value !== 'number' ||
    !Number.isFinite(value) ||
    value < min ||
    (integer && !Number.isInteger(value))
  ) {
    throw new ForgeError(
      ForgeErrorCodes.FORGE_USAGE,
      `${what} must be ${integer ? 'an integer' : 'a number'} >= ${min}, got ${String(value)}`,
    );
  }
  return value;
}

/** The production clock: monotonic milliseconds and a real timer. */
export const systemClock: Clock = {
  now: () => performance.now(),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
};

/** Time as decorators see it; inject a fake one in tests. */
export interface Clock {
  /** Milliseconds on a monotonic clock. */
  now(): number;
  /** Resolves after `ms` milliseconds. */
  sleep(ms: number): Promise<void>;
}
