// A large local file read, chunked and hashed on a worker thread, segment by segment, while the
// main thread chunks another one: two files at once instead of one. The main thread decides
// which chunks are new (it owns the index); the worker hands those over before it reads on, and
// they are sealed on whichever worker is free (a single huge file must not leave one worker
// doing everything).
import { ForgeError } from '@backupforge/common';
import { type ChunkerParams, createChunker } from '../chunker/index.ts';
import type { Chunker } from '../chunker/types.ts';
import { blobId } from '../crypto/master-key.ts';
import { DirectFile, giveAligned, takeAligned } from './direct-read.ts';
import { openRegularFile, type ReadFailure, readFailure } from './small-files.ts';

/**
 * Bytes read per step (and read ahead). 4 MiB rather than 8: ~9 MiB less peak memory in a
 * half-size first backup (295–312 vs 309–321 MiB, 4 rounds each), time within the noise.
 */
const READ_SIZE = 4 * 1024 * 1024;

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

/** A finished lane's segment buffer, for the next lane on this thread (one is kept). */
let spareBuf: Buffer | undefined;

/** One file being chunked on this thread. */
export class FileLane {
  readonly #path: string;
  readonly #chunker: Chunker;
  readonly #macKey: Uint8Array;
  readonly #buf: Buffer;
  #file: DirectFile | undefined;
  #closed = false;
  #start = 0;
  #end = 0;
  #eof = false;
  #size = 0;
  /** This segment's chunks: [offset, length] pairs into #buf. */
  #chunks: number[] = [];
  /** Where the next segment's data is read ahead (while the main thread decides); page-aligned. */
  readonly #ahead = takeAligned(READ_SIZE);
  /** The read into #ahead in flight, and the file offset it reads at. */
  #aheadRead: Promise<number> | undefined;
  #aheadAt = -1;
  /** A read ahead has not ended yet: the descriptors must stay open until it has. */
  #aheadBusy = false;

  readonly #direct: boolean;

  /** With `direct`, the file is read with O_DIRECT where the filesystem allows (see DirectFile). */
  constructor(path: string, params: ChunkerParams, macKey: Uint8Array, direct = false) {
    this.#path = path;
    this.#direct = direct;
    this.#chunker = createChunker(params);
    this.#macKey = macKey;
    // Reused from the thread's last lane: a fresh 12 MiB per file stayed until a collection.
    const size = params.max + READ_SIZE;
    const kept = spareBuf?.length === size ? spareBuf : undefined;
    if (kept) spareBuf = undefined;
    this.#buf = kept ?? Buffer.allocUnsafeSlow(size);
  }

  /**
   * Hands over the chunks of the previous segment marked in `want`, then reads and chunks the next
   * segment (as much as the buffer holds) and hashes its chunks.
   */
  async step(want: Uint8Array | undefined, spare?: Uint8Array): Promise<LaneStep> {
    const { out, wanted } = this.#handOver(want, spare);
    this.#chunks = [];
    let stage: ReadFailure['stage'] = 'open';
    try {
      this.#file ??= new DirectFile(openRegularFile(this.#path), this.#direct);
      stage = 'read';
      await this.#fill();
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
  async #fill(): Promise<void> {
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
        const n = await this.#read();
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

  /** The file's next READ_SIZE bytes into #buf at #end: taken from the read ahead when it is there. */
  async #read(): Promise<number> {
    const ahead = this.#ahead;
    const pending = this.#aheadRead;
    this.#aheadRead = undefined; // taken (or failed) here either way
    let n: number;
    if (pending && this.#aheadAt === this.#size) n = await pending;
    else {
      if (pending) await pending.catch(() => 0);
      n = await this.#file!.read(ahead, 0, READ_SIZE, this.#size);
    }
    ahead.copy(this.#buf, this.#end, 0, n);
    return n;
  }

  /**
   * Starts reading the bytes the next segment needs: the disk works while the main thread
   * decides which chunks are new and the next step waits for less. With O_DIRECT (DirectFile)
   * the data is read once, straight into #ahead, not through the page cache.
   */
  #readAhead(): void {
    const file = this.#file;
    if (this.#eof || this.#aheadRead || !file) return;
    const ahead = this.#ahead;
    this.#aheadAt = this.#size;
    const r = file.read(ahead, 0, READ_SIZE, this.#size);
    this.#aheadRead = r;
    this.#aheadBusy = true;
    // Closed meanwhile: the descriptors were kept open for this read (see close). A failure is
    // seen by the step that takes the data; none is left unhandled.
    r.catch(() => 0).then(() => {
      this.#aheadBusy = false;
      if (this.#closed) {
        file.close();
        giveAligned(ahead);
      }
    });
  }

  close(): void {
    // A read ahead in flight closes the descriptors when it ends, so that their numbers are
    // never reused under it.
    if (this.#closed) return;
    this.#closed = true;
    if (!this.#aheadBusy) {
      this.#file?.close();
      giveAligned(this.#ahead);
    }
    spareBuf ??= this.#buf;
    this.#file = undefined;
  }
}
