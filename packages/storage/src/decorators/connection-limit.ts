import type {
  BackendProperties,
  ByteRange,
  ObjectHandle,
  ObjectInfo,
  ObjectType,
  StorageBackend,
} from '@backupforge/common';
import { checkNumber, ForwardingBackend } from './forwarding.ts';

/**
 * Lets at most `n` calls run in the inner backend at once; the others wait in a FIFO queue.
 * `properties().connections` reports `min(n, inner's connections)`.
 *
 * `list` takes a slot for each step of the iteration (each `next()` on the inner listing, which is
 * where a remote backend fetches its pages) and gives it back before handing the entry to the
 * caller. So a caller that loads objects while iterating a listing never deadlocks, even with
 * `n = 1`, and a listing does not keep a connection while the caller works. `close` is not
 * limited.
 *
 * ```ts
 * const backend = withConnectionLimit(sftp, 4);
 * ```
 */
export function withConnectionLimit(backend: StorageBackend, n: number): StorageBackend {
  return new ConnectionLimitBackend(backend, n);
}

class ConnectionLimitBackend extends ForwardingBackend {
  readonly #limit: number;
  readonly #slots: Semaphore;

  constructor(inner: StorageBackend, n: number) {
    super(inner, { uploads: false }); // every save takes a connection slot
    this.#limit = checkNumber(n, 'the connection limit', { min: 1, integer: true });
    this.#slots = new Semaphore(this.#limit);
  }

  override properties(): BackendProperties {
    const props = this.inner.properties();
    return { ...props, connections: Math.min(this.#limit, props.connections) };
  }

  override create(): Promise<void> {
    return this.#slots.run(() => this.inner.create());
  }

  override save(handle: ObjectHandle, data: Uint8Array): Promise<void> {
    return this.#slots.run(() => this.inner.save(handle, data));
  }

  override load(handle: ObjectHandle, range?: ByteRange, into?: Uint8Array): Promise<Uint8Array> {
    return this.#slots.run(() => this.inner.load(handle, range, into));
  }

  override stat(handle: ObjectHandle): Promise<ObjectInfo> {
    return this.#slots.run(() => this.inner.stat(handle));
  }

  override remove(handle: ObjectHandle): Promise<void> {
    return this.#slots.run(() => this.inner.remove(handle));
  }

  override async *list(type: ObjectType): AsyncIterable<ObjectInfo> {
    const entries = this.inner.list(type)[Symbol.asyncIterator]();
    let finished = false;
    try {
      for (;;) {
        let step: IteratorResult<ObjectInfo>;
        try {
          step = await this.#slots.run(() => entries.next());
        } catch (e) {
          finished = true;
          throw e;
        }
        if (step.done) {
          finished = true;
          return;
        }
        yield step.value;
      }
    } finally {
      // The caller stopped early: let the inner listing release what it holds.
      if (!finished) await entries.return?.();
    }
  }
}

/** A counting semaphore whose waiters are served in arrival order; a freed slot goes straight to the next one. */
class Semaphore {
  #free: number;
  readonly #waiters: (() => void)[] = [];
  #head = 0;

  constructor(slots: number) {
    this.#free = slots;
  }

  async run<T>(call: () => Promise<T>): Promise<T> {
    if (this.#free > 0 && this.#head === this.#waiters.length) this.#free--;
    else await new Promise<void>((resolve) => this.#waiters.push(resolve));
    try {
      return await call();
    } finally {
      this.#release();
    }
  }

  #release(): void {
    if (this.#head < this.#waiters.length) {
      const next = this.#waiters[this.#head]!;
      this.#head++;
      if (this.#head > 1024 && this.#head * 2 > this.#waiters.length) {
        this.#waiters.splice(0, this.#head);
        this.#head = 0;
      }
      next();
      return;
    }
    this.#free++;
  }
}
