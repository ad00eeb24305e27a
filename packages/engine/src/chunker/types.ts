/**
 * A streaming chunker. The caller owns the buffer: it keeps the unconsumed bytes of the current
 * chunk (at most `maxChunkSize` of them are ever needed) in `buf[start, end)` and calls `cut`.
 *
 * `cut` returns the absolute offset in `buf` where the current chunk ends (start < result <= end),
 * or -1 when it needs more data (or, with `eof`, when `start === end`: the stream is finished).
 * After a cut at `c` the next chunk starts at `c`. With `eof` false, -1 is only returned while
 * fewer than `maxChunkSize` bytes are available, so a carry buffer of `maxChunkSize` plus one read
 * is always enough.
 */
export interface Chunker {
  /** Largest chunk this chunker can produce. */
  readonly maxChunkSize: number;
  cut(buf: Uint8Array, start: number, end: number, eof: boolean): number;
  /** Forgets any resume state of a chunk in progress (call when switching to a new stream). */
  reset(): void;
}

/** One chunk of a buffer, as yielded by `chunkBuffer`. */
export interface ChunkSpan {
  offset: number;
  length: number;
}
