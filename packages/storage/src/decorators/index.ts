/**
 * `StorageBackend` decorators that wrap any backend (local, S3, SFTP, rclone, REST): retries,
 * rate limits, a connection limit and a local cache, and `composeBackend` to stack them in a
 * sensible order. See docs/backends/decorators.md.
 */
export type { CacheOptions, CacheStats, CachingBackend } from './cache.ts';
export { defaultCacheDir, withCache } from './cache.ts';
export type { ComposedBackend, ComposeOptions } from './compose.ts';
export { composeBackend } from './compose.ts';
export { withConnectionLimit } from './connection-limit.ts';
export type { Clock } from './forwarding.ts';
export type { RateLimitOptions } from './rate-limit.ts';
export { withRateLimit } from './rate-limit.ts';
export type { BackendOperation, RetryInfo, RetryingBackend, RetryOptions, RetryStats } from './retry.ts';
export { withRetry } from './retry.ts';
