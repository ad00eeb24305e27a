// A large local file read, chunked and hashed on a worker thread, segment by segment, while the
// main thread chunks another one: two files at once instead of one. The main thread decides
// which chunks are new (it owns the index); the worker hands those over before it reads on, and
// they are sealed on whichever worker is free (a single huge file must not leave one worker
// doing everything).
import { read, readSync } from 'node:fs';
import { ForgeError } from '@backupforge/common';
import { type ChunkerParams, createChunker } from '../chunker/index.ts';
import type { Chunker } from '../chunker/types.ts';
import { blobId } from '../crypto/master-key.ts';
import { closeQuietly, openRegularFile, type ReadFailure, readFailure } from './small-files.ts';

const READ_SIZE = 8 * 1024 * 1024;

/** What one step gives back: the chunks asked for last time, then the next segment. */
export interface LaneStep {
  /** The chunks marked in the previous `want`, back to back. */
  readonly out?: Uint8Array;
  readonly wanted: { at: number; length: number }[];
  /** Ids (32 bytes each) of this segment's chunks; empty when the file is finished. */
  readonly ids: Uint8Array;
  readonly count: number;
  /** Bytes read from the file so far. */
  readonly size: number;
  /** No more chunks: the file is read to its end. */
  readonly finished: boolean;
  /** Reading failed (the chunks handed over above are still valid and must be stored). */
  readonly failure?: ReadFailure;
}

/** One file being chunked on this thread. */
export class FileLane {
  readonly #path: string;
  readonly #chunker: Chunker;
  readonly #macKey: Uint8Array;
  readonly #buf: Buffer;
  #fd = -1;
  #start = 0;
  #end = 0;
  #eof = false;
  #size = 0;
  /** This segment's chunks: [offset, length] pairs into #buf. */
  #chunks: number[] = [];
  /** Where the next segment's data is read into the page cache ahead (while the main thread decides). */
  #ahead: Buffer | undefined;
  #aheadBusy = false;

  constructor(path: string, params: ChunkerParams, macKey: Uint8Array) {
    this.#path = path;
    this.#chunker = createChunker(params);
    this.#macKey = macKey;
    this.#buf = Buffer.allocUnsafe(params.max + READ_SIZE);
  }

  /**
   * Hands over the chunks of the previous segment marked in `want`, then reads and chunks the next
   * segment (as much as the buffer holds) and hashes its chunks.
   */
  step(want: Uint8Array | undefined, spare?: Uint8Array): LaneStep {
    const { out, wanted } = this.#handOver(want, spare);
    this.#chunks = [];
    let stage: ReadFailure['stage'] = 'open';
    try {
      if (this.#fd < 0) this.#fd = openRegularFile(this.#path);
      stage = 'read';
      this.#fill();
    } catch (e) {
      return {
        ...(out ? { out } : {}),
        wanted,
        ids: new Uint8Array(0),
        count: 0,
        size: this.#size,
        finished: true,
        failure: readFailure(stage, e, `reading ${this.#path}`),
      };
    }
    this.#readAhead();
    const count = this.#chunks.length / 2;
    const ids = new Uint8Array(32 * count);
    for (let i = 0; i < count; i++) {
      const at = this.#chunks[2 * i]!;
      const len = this.#chunks[2 * i + 1]!;
      ids.set(blobId(this.#macKey, this.#buf.subarray(at, at + len)), 32 * i);
    }
    return {
      ...(out ? { out } : {}),
      wanted,
      ids,
      count,
      size: this.#size,
      finished: count === 0 && this.#eof,
    };
  }

  #handOver(want: Uint8Array | undefined, spare?: Uint8Array): Pick<LaneStep, 'out' | 'wanted'> {
    const wanted: LaneStep['wanted'] = [];
    if (!want) return { wanted };
    let need = 0;
    for (let i = 0; i < want.length; i++) if (want[i]) need += this.#chunks[2 * i + 1]!;
    if (need === 0) return { wanted };
    const out = spare && spare.byteLength >= need ? spare : new Uint8Array(need);
    let pos = 0;
    for (let i = 0; i < want.length; i++) {
      if (!want[i]) continue;
      const at = this.#chunks[2 * i]!;
      const len = this.#chunks[2 * i + 1]!;
      out.set(this.#buf.subarray(at, at + len), pos);
      wanted.push({ at: pos, length: len });
      pos += len;
    }
    return { out, wanted };
  }

  /** Reads and cuts until the buffer cannot take another read without moving this segment. */
  #fill(): void {
    const buf = this.#buf;
    // The previous segment is sealed or dropped: the unconsumed tail moves to the front.
    if (this.#start > 0) {
      buf.copy(buf, 0, this.#start, this.#end);
      this.#end -= this.#start;
      this.#start = 0;
    }
    while (true) {
      if (!this.#eof && this.#end - this.#start < this.#chunker.maxChunkSize) {
        if (buf.length - this.#end < READ_SIZE) return; // full: hand this segment over first
        const n = readSync(this.#fd, buf, this.#end, READ_SIZE, null);
        if (n === 0) this.#eof = true;
        this.#end += n;
        this.#size += n;
        continue;
      }
      if (this.#start === this.#end) return;
      const cut = this.#chunker.cut(buf, this.#start, this.#end, this.#eof);
      if (cut < 0) throw new ForgeError('FORGE_INTERNAL', 'chunker asked for more data than it may');
      this.#chunks.push(this.#start, cut - this.#start);
      this.#start = cut;
    }
  }

  /**
   * Starts reading the bytes the next segment needs, asynchronously, into a scratch buffer: the
   * data itself is thrown away, but the next step's synchronous read then comes from the page
   * cache instead of waiting for the disk between two steps.
   */
  #readAhead(): void {
    if (this.#eof || this.#aheadBusy || this.#fd < 0) return;
    this.#ahead ??= Buffer.allocUnsafe(READ_SIZE);
    this.#aheadBusy = true;
    const fd = this.#fd;
    read(fd, this.#ahead, 0, READ_SIZE, this.#size, () => {
      this.#aheadBusy = false;
      // Closed meanwhile: the descriptor was kept open for this read (see close).
      if (this.#fd < 0) closeQuietly(fd);
    });
  }

  close(): void {
    // A read ahead in flight closes the descriptor when it ends, so that its number is never
    // reused under it.
    if (this.#fd >= 0 && !this.#aheadBusy) closeQuietly(this.#fd);
    this.#fd = -1;
  }
}
