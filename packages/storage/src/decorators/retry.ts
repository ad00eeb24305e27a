import type { ByteRange, ObjectHandle, ObjectInfo, ObjectType, StorageBackend } from '@backupforge/common';
import { ForgeError, objectKey, toForgeError } from '@backupforge/common';
import { checkNumber, ForwardingBackend } from './forwarding.ts';

/** A `StorageBackend` method, as named in retry callbacks and messages. */
export type BackendOperation = 'create' | 'save' | 'load' | 'stat' | 'list' | 'remove';

/** What `onRetry` is told before each wait. */
export interface RetryInfo {
  readonly operation: BackendOperation;
  /** The object key (`data/ab/ab…`, `index/…`), the listed type for `list`, `''` for `create`. */
  readonly object: string;
  /** The attempt that just failed, from 1 (for `list`: counting every restart). */
  readonly attempt: number;
  readonly maxAttempts: number;
  /** How long the decorator waits before the next attempt, in milliseconds. */
  readonly delayMs: number;
  /** Why the attempt failed (always retryable). */
  readonly error: ForgeError;
}

export interface RetryOptions {
  /** Attempts per call, the first included. Default 8. `1` disables retries. */
  readonly maxAttempts?: number;
  /** Ceiling of the first wait; each later ceiling doubles. Default 500 ms. */
  readonly baseDelayMs?: number;
  /** Largest ceiling of any wait. Default 30 000 ms. */
  readonly maxDelayMs?: number;
  /**
   * Time budget per call, measured from its first attempt: no retry starts whose wait would end
   * after it. Default: none (only `maxAttempts` bounds a call).
   */
  readonly maxElapsedMs?: number;
  /** Called before each wait, for progress and log lines. Exceptions it throws are ignored. */
  readonly onRetry?: (info: RetryInfo) => void;
  /** How waits happen. Default: a real timer. */
  readonly sleep?: (ms: number) => Promise<void>;
  /** Uniform numbers in [0, 1) for the jitter. Default `Math.random`. */
  readonly random?: () => number;
  /** Milliseconds, for `maxElapsedMs`. Default `performance.now`. */
  readonly now?: () => number;
}

/** Counters since the decorator was made, for a command's summary line. */
export interface RetryStats {
  /** Attempts made after a failed one (waits taken). */
  readonly retries: number;
  /** Calls that failed at least once and then succeeded. */
  readonly succeededAfterRetry: number;
  /** Calls that failed with a retryable error on their last allowed attempt. */
  readonly gaveUp: number;
}

/** A backend that retries transient failures, and counts them. */
export interface RetryingBackend extends StorageBackend {
  retryStats(): RetryStats;
}

const DEFAULT_HINT =
  'the storage kept failing with temporary errors; check the network and the storage service, then run the command again';

/**
 * Retries calls that reject with a retryable `ForgeError` (network drops, timeouts, 5xx), waiting
 * with exponential backoff and full jitter: before attempt k+1 it sleeps
 * `random() * min(maxDelayMs, baseDelayMs * 2^(k-1))`. Permanent errors (`FORGE_NOT_FOUND`,
 * `FORGE_RANGE`, `FORGE_PERMISSION`…) are rethrown at once. Anything thrown that is not a
 * `ForgeError` is normalised with `toForgeError` first (so `ECONNRESET` is retried).
 *
 * When the attempts (or `maxElapsedMs`) run out it rejects with a `ForgeError` that keeps the
 * last error's code, is `retryable: true`, and names the location, the operation and the object:
 * `load index/3f2a… on s3:host/bucket gave up after 8 attempts: …`.
 *
 * Every method is safe to repeat by the `StorageBackend` contract: `save` of the same bytes
 * replaces the object with itself, `remove` and `create` are idempotent. A failed `list` is
 * restarted from the beginning, and names it already yielded are skipped, so callers see each
 * name once; a restart that yields a new name resets the attempt count (a long listing that keeps
 * making progress is never given up).
 *
 * ```ts
 * const backend = withRetry(s3, { onRetry: (i) => log(`retrying ${i.operation} in ${i.delayMs} ms`) });
 * // … later, in the summary:
 * const { succeededAfterRetry } = backend.retryStats();
 * ```
 */
export function withRetry(backend: StorageBackend, options: RetryOptions = {}): RetryingBackend {
  return new RetryBackend(backend, options);
}

class RetryBackend extends ForwardingBackend implements RetryingBackend {
  readonly #maxAttempts: number;
  readonly #baseDelayMs: number;
  readonly #maxDelayMs: number;
  readonly #maxElapsedMs: number;
  readonly #onRetry: ((info: RetryInfo) => void) | undefined;
  readonly #sleep: (ms: number) => Promise<void>;
  readonly #random: () => number;
  readonly #now: () => number;
  #retries = 0;
  #succeededAfterRetry = 0;
  #gaveUp = 0;

  constructor(inner: StorageBackend, options: RetryOptions) {
    super(inner);
    this.#maxAttempts = checkNumber(options.maxAttempts ?? 8, 'retry maxAttempts', { min: 1, integer: true });
    this.#baseDelayMs = checkNumber(options.baseDelayMs ?? 500, 'retry baseDelayMs');
    this.#maxDelayMs = checkNumber(options.maxDelayMs ?? 30_000, 'retry maxDelayMs');
    this.#maxElapsedMs =
      options.maxElapsedMs === undefined
        ? Number.POSITIVE_INFINITY
        : checkNumber(options.maxElapsedMs, 'retry maxElapsedMs');
    this.#onRetry = options.onRetry;
    this.#sleep = options.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)));
    this.#random = options.random ?? Math.random;
    this.#now = options.now ?? (() => performance.now());
  }

  retryStats(): RetryStats {
    return { retries: this.#retries, succeededAfterRetry: this.#succeededAfterRetry, gaveUp: this.#gaveUp };
  }

  override create(): Promise<void> {
    return this.#run('create', '', () => this.inner.create());
  }

  override save(handle: ObjectHandle, data: Uint8Array): Promise<void> {
    return this.#run('save', keyOf(handle), () => this.inner.save(handle, data));
  }

  override load(handle: ObjectHandle, range?: ByteRange, into?: Uint8Array): Promise<Uint8Array> {
    return this.#run('load', keyOf(handle), () => this.inner.load(handle, range, into));
  }

  override stat(handle: ObjectHandle): Promise<ObjectInfo> {
    return this.#run('stat', keyOf(handle), () => this.inner.stat(handle));
  }

  override remove(handle: ObjectHandle): Promise<void> {
    return this.#run('remove', keyOf(handle), () => this.inner.remove(handle));
  }

  override async *list(type: ObjectType): AsyncIterable<ObjectInfo> {
    const seen = new Set<string>();
    let attempts = 0;
    /** Failures since the last restart that yielded a new name: what `maxAttempts` bounds. */
    let failures = 0;
    let start = this.#now();
    for (;;) {
      attempts++;
      let progressed = false;
      try {
        for await (const info of this.inner.list(type)) {
          if (seen.has(info.name)) continue;
          seen.add(info.name);
          progressed = true;
          yield info;
        }
        if (attempts > 1) this.#succeededAfterRetry++;
        return;
      } catch (e) {
        if (progressed) {
          failures = 0;
          start = this.#now();
        }
        failures++;
        await this.#afterFailure('list', type, e, failures, attempts, start);
      }
    }
  }

  async #run<T>(operation: BackendOperation, object: string, call: () => Promise<T>): Promise<T> {
    const start = this.#now();
    for (let attempt = 1; ; attempt++) {
      try {
        const result = await call();
        if (attempt > 1) this.#succeededAfterRetry++;
        return result;
      } catch (e) {
        await this.#afterFailure(operation, object, e, attempt, attempt, start);
      }
    }
  }

  /**
   * Rethrows a permanent error, gives up when the budget is spent, else reports and waits.
   * `failure` drives the backoff and the attempt limit; `attempts` is what the message reports.
   */
  async #afterFailure(
    operation: BackendOperation,
    object: string,
    thrown: unknown,
    failure: number,
    attempts: number,
    start: number,
  ): Promise<void> {
    const error = toForgeError(thrown, `${this.location}: ${operation} ${object}`.trimEnd());
    if (!error.retryable) throw error;
    const ceiling = Math.min(this.#maxDelayMs, this.#baseDelayMs * 2 ** (failure - 1));
    const delayMs = this.#random() * ceiling;
    if (failure >= this.#maxAttempts || this.#now() - start + delayMs > this.#maxElapsedMs) {
      this.#gaveUp++;
      throw this.#giveUp(operation, object, error, attempts);
    }
    this.#retries++;
    try {
      this.#onRetry?.({
        operation,
        object,
        attempt: attempts,
        maxAttempts: this.#maxAttempts,
        delayMs,
        error,
      });
    } catch {
      // A progress callback must not change what the backend does.
    }
    await this.#sleep(delayMs);
  }

  #giveUp(operation: BackendOperation, object: string, last: ForgeError, attempts: number): ForgeError {
    const what = object === '' ? operation : `${operation} ${object}`;
    return new ForgeError(
      last.code,
      `${what} on ${this.location} gave up after ${attempts} attempt${attempts === 1 ? '' : 's'}: ${last.message}`,
      {
        retryable: true,
        hint: last.hint ?? DEFAULT_HINT,
        cause: last,
        details: { ...last.details, operation, object, attempts, location: this.location },
      },
    );
  }
}

/** The object key for messages; never throws, whatever the caller passed. */
function keyOf(handle: ObjectHandle): string {
  try {
    return objectKey(handle) ?? `${String(handle?.type)}/${String(handle?.name)}`;
  } catch {
    return String(handle);
  }
}
