import type { StorageBackend } from '@backupforge/common';
import type { CacheOptions, CacheStats, CachingBackend } from './cache.ts';
import { withCache } from './cache.ts';
import { withConnectionLimit } from './connection-limit.ts';
import { ForwardingBackend } from './forwarding.ts';
import type { RateLimitOptions } from './rate-limit.ts';
import { withRateLimit } from './rate-limit.ts';
import type { RetryingBackend, RetryOptions, RetryStats } from './retry.ts';
import { withRetry } from './retry.ts';

export interface ComposeOptions {
  /** Retry transient failures: `true` or options (default), `false` not to. */
  readonly retry?: RetryOptions | boolean;
  /** Upload/download limits in KiB/s. Not applied when neither is set. */
  readonly limits?: RateLimitOptions;
  /** Most calls in flight. Not applied when unset. */
  readonly connections?: number;
  /** A cache directory (see `defaultCacheDir`). No cache when unset. */
  readonly cacheDir?: string;
  /** Further cache options. */
  readonly cache?: Omit<CacheOptions, 'dir'>;
}

/** The outermost decorator of a composed stack, with the counters of the layers inside. */
export interface ComposedBackend extends StorageBackend {
  /** All zero when retries are off. */
  retryStats(): RetryStats;
  /** All zero when there is no cache. */
  cacheStats(): CacheStats;
}

/**
 * Wraps a backend in the decorators asked for, in this order from the caller inwards:
 *
 * ```
 * cache → rate limit → connection limit → retry → backend
 * ```
 *
 * - The cache is outermost: a hit costs no bandwidth, no connection slot and no retry.
 * - The rate limit sits outside the connection limit, so a call waiting for bandwidth does not
 *   hold a connection slot that another call could use.
 * - Retries are innermost: a call keeps its connection slot while it backs off, so a struggling
 *   service sees at most `connections` callers (backpressure) instead of queued calls rushing in
 *   while others wait; bytes are counted against the rate limit once per call, not per attempt.
 *
 * ```ts
 * const backend = composeBackend(await openBackend(location), {
 *   limits: { uploadKiBps: 4096 },
 *   connections: 8,
 *   cacheDir: defaultCacheDir(repoId),
 * });
 * ```
 */
export function composeBackend(backend: StorageBackend, options: ComposeOptions = {}): ComposedBackend {
  let stack = backend;
  let retrying: RetryingBackend | undefined;
  if (options.retry !== false) {
    retrying = withRetry(stack, options.retry === true || options.retry === undefined ? {} : options.retry);
    stack = retrying;
  }
  if (options.connections !== undefined) stack = withConnectionLimit(stack, options.connections);
  const limits = options.limits;
  if (limits !== undefined && (limits.uploadKiBps || limits.downloadKiBps)) {
    stack = withRateLimit(stack, limits);
  }
  let caching: CachingBackend | undefined;
  if (options.cacheDir !== undefined) {
    caching = withCache(stack, { ...options.cache, dir: options.cacheDir });
    stack = caching;
  }
  return new ComposedStack(stack, retrying, caching);
}

const NO_RETRIES: RetryStats = Object.freeze({ retries: 0, succeededAfterRetry: 0, gaveUp: 0 });
const NO_CACHE: CacheStats = Object.freeze({ hits: 0, misses: 0, bypassed: 0, invalid: 0, evicted: 0 });

class ComposedStack extends ForwardingBackend implements ComposedBackend {
  readonly #retrying: RetryingBackend | undefined;
  readonly #caching: CachingBackend | undefined;

  constructor(
    outer: StorageBackend,
    retrying: RetryingBackend | undefined,
    caching: CachingBackend | undefined,
  ) {
    super(outer);
    this.#retrying = retrying;
    this.#caching = caching;
  }

  retryStats(): RetryStats {
    return this.#retrying?.retryStats() ?? NO_RETRIES;
  }

  cacheStats(): CacheStats {
    return this.#caching?.cacheStats() ?? NO_CACHE;
  }
}
