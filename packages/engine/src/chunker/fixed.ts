import type { Chunker } from './types.ts';

/** Default fixed chunk size: the FastCDC default average, 1 MiB. */
export const DEFAULT_FIXED_SIZE = 1024 * 1024;

export interface FixedChunkerConfig {
  /** Chunk size in bytes (positive integer). Default 1 MiB. */
  size?: number;
}

/**
 * Fixed-size chunking, for disk images and other block-aligned data where content-defined
 * boundaries buy nothing. Every chunk is exactly `size` bytes except the last of a stream,
 * which holds the 1..size remaining bytes. Stateless.
 */
export class FixedChunker implements Chunker {
  readonly size: number;
  readonly maxChunkSize: number;

  constructor(config: FixedChunkerConfig = {}) {
    const size = config.size ?? DEFAULT_FIXED_SIZE;
    if (!Number.isSafeInteger(size) || size <= 0)
      throw new RangeError(`fixed chunk size must be a positive integer, got ${size}`);
    this.size = size;
    this.maxChunkSize = size;
  }

  cut(_buf: Uint8Array, start: number, end: number, eof: boolean): number {
    const n = end - start;
    if (n <= 0) return -1;
    if (n >= this.size) return start + this.size;
    return eof ? end : -1;
  }

  reset(): void {}
}
