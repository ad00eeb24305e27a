import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/**
 * Backup moves gigabytes through short-lived Buffers whose memory lives outside the V8 heap.
 * V8 schedules collections by heap growth, and the heap barely grows (a Buffer object is tiny),
 * so dead chunk buffers pile up to gigabytes of RSS before a full collection runs. Collecting
 * explicitly every {@link GC_EVERY_BYTES} keeps peak memory bounded; with a heap of a few MiB a
 * full collection costs a few milliseconds.
 */
export const GC_EVERY_BYTES = 32 * 1024 * 1024;

type GcFn = (opts?: { type?: 'major' | 'minor'; execution?: 'sync' | 'async' }) => void;
let gc: GcFn | null | undefined;

function getGc(): GcFn | null {
  if (gc !== undefined) return gc;
  try {
    setFlagsFromString('--expose-gc');
    gc = runInNewContext('gc') as GcFn;
  } catch {
    gc = null;
  }
  return gc;
}

/**
 * Counts bytes processed; runs a full collection every `every` bytes and, when `minorEvery` is
 * given, a cheap young-generation collection (dead per-blob buffers die young) every `minorEvery`.
 */
export class GcPacer {
  #bytes = 0;
  #minor = 0;
  readonly #every: number;
  readonly #minorEvery: number;
  constructor(every = GC_EVERY_BYTES, minorEvery = Number.POSITIVE_INFINITY) {
    this.#every = every;
    this.#minorEvery = minorEvery;
  }
  add(n: number): void {
    this.#bytes += n;
    this.#minor += n;
    if (this.#bytes >= this.#every) {
      this.#bytes = 0;
      this.#minor = 0;
      getGc()?.();
    } else if (this.#minor >= this.#minorEvery) {
      this.#minor = 0;
      getGc()?.({ type: 'minor' });
    }
  }
}
