import type { ByteRange, ObjectHandle, StorageBackend } from '@backupforge/common';
import type { Clock } from './forwarding.ts';
import { checkNumber, ForwardingBackend, systemClock } from './forwarding.ts';

export interface RateLimitOptions {
  /** Most bytes saved per second, in KiB/s (restic's `--limit-upload`). Unset or 0: unlimited. */
  readonly uploadKiBps?: number;
  /** Most bytes loaded per second, in KiB/s (restic's `--limit-download`). Unset or 0: unlimited. */
  readonly downloadKiBps?: number;
  /**
   * Bytes that may pass at once after an idle period (the bucket's capacity), per direction.
   * Default: one second's worth of the limit.
   */
  readonly burstBytes?: number;
  /** Time source and timer. Default: `performance.now` and `setTimeout`. */
  readonly clock?: Clock;
}

/**
 * Limits the bytes a backend saves and loads per second, with one token bucket per direction
 * (the semantics of restic's `--limit-upload` / `--limit-download`, in KiB/s = 1024 bytes/s).
 *
 * - `save` pays for `data.length` bytes before the call starts.
 * - A ranged `load` pays for `range.length` before it starts; a whole-object `load` cannot know
 *   its size in advance, so it pays for the bytes it got before returning them.
 * - `stat`, `list`, `remove` and `create` are not limited.
 *
 * Waiting calls are served first come, first served: each one is given its place in the
 * bucket's schedule when it arrives and sleeps on one timer until then (no polling), so
 * concurrent callers share the bandwidth fairly and a stream of small calls never starves a
 * large one. A call larger than the bucket simply waits longer. Over any interval of `t`
 * seconds, at most `burstBytes + limit × t` bytes pass in each direction.
 *
 * ```ts
 * const backend = withRateLimit(s3, { uploadKiBps: 2048 }); // 2 MiB/s up, downloads unlimited
 * ```
 */
export function withRateLimit(backend: StorageBackend, options: RateLimitOptions = {}): StorageBackend {
  return new RateLimitBackend(backend, options);
}

class RateLimitBackend extends ForwardingBackend {
  readonly #upload: TokenBucket | undefined;
  readonly #download: TokenBucket | undefined;
  readonly #clock: Clock;

  constructor(inner: StorageBackend, options: RateLimitOptions) {
    super(inner, { uploads: false }); // every byte saved is metered
    this.#clock = options.clock ?? systemClock;
    const burst =
      options.burstBytes === undefined
        ? undefined
        : checkNumber(options.burstBytes, 'burstBytes', { min: 1 });
    this.#upload = bucketFor(options.uploadKiBps, 'uploadKiBps', burst, this.#clock);
    this.#download = bucketFor(options.downloadKiBps, 'downloadKiBps', burst, this.#clock);
  }

  override async save(handle: ObjectHandle, data: Uint8Array): Promise<void> {
    await this.#pay(this.#upload, data.length);
    await this.inner.save(handle, data);
  }

  override async load(handle: ObjectHandle, range?: ByteRange, into?: Uint8Array): Promise<Uint8Array> {
    if (range !== undefined && Number.isSafeInteger(range.length) && range.length >= 0) {
      await this.#pay(this.#download, range.length);
      return this.inner.load(handle, range, into);
    }
    const data = await this.inner.load(handle, range);
    await this.#pay(this.#download, data.length);
    return data;
  }

  async #pay(bucket: TokenBucket | undefined, bytes: number): Promise<void> {
    if (bucket === undefined || bytes === 0) return;
    const wait = bucket.reserve(bytes);
    if (wait > 0) await this.#clock.sleep(wait);
  }
}

function bucketFor(
  kibps: number | undefined,
  what: string,
  burst: number | undefined,
  clock: Clock,
): TokenBucket | undefined {
  if (kibps === undefined || kibps === 0) return undefined;
  const rate = checkNumber(kibps, what, { min: 0 }) * 1024;
  return new TokenBucket(rate / 1000, burst ?? rate, clock);
}

/**
 * A token bucket that schedules instead of polling: `reserve(n)` books `n` bytes and returns how
 * long the caller must wait for them to be paid. Reservations are paid in the order they are
 * made. While reservations are pending, `#stamp` is in the future and the bucket is empty then.
 */
export class TokenBucket {
  /** Bytes per millisecond. */
  readonly #rate: number;
  readonly #capacity: number;
  readonly #clock: Pick<Clock, 'now'>;
  /** Tokens in the bucket at time `#stamp` (never more than the capacity). */
  #tokens: number;
  #stamp: number;

  constructor(bytesPerMs: number, capacity: number, clock: Pick<Clock, 'now'>) {
    this.#rate = bytesPerMs;
    this.#capacity = capacity;
    this.#clock = clock;
    this.#tokens = capacity;
    this.#stamp = clock.now();
  }

  /** Books `bytes` and returns the milliseconds to wait before using them (0: go now). */
  reserve(bytes: number): number {
    const now = this.#clock.now();
    if (now > this.#stamp) {
      this.#tokens = Math.min(this.#capacity, this.#tokens + (now - this.#stamp) * this.#rate);
      this.#stamp = now;
    }
    this.#tokens -= bytes;
    if (this.#tokens >= 0) return 0;
    // Paid once the deficit has refilled, after every earlier reservation.
    this.#stamp += -this.#tokens / this.#rate;
    this.#tokens = 0;
    return this.#stamp - now;
  }
}
