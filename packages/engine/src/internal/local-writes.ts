import { type FileMetadata, toForgeError } from '@backupforge/common';
import { openRun, type RunBlob, type RunFailure } from './open-run.ts';

/** A small file to create from a stretch of an opened run (see `RestoreTarget.localFiles`). */
export interface LocalWrite {
  /** Absolute path, prepared by the target. */
  readonly path: string;
  readonly meta: FileMetadata;
  /** Where its content sits in the run's plaintext. */
  readonly at: number;
  readonly length: number;
}

/** The target's worker-side writer: a module exporting `writeWholeFile`, and its options. */
export interface LocalWriter {
  readonly module: string;
  readonly options: unknown;
}

/** Why one file could not be written (a `ForgeError`'s fields: errors do not cross threads). */
export interface WriteFailure {
  readonly code: string;
  readonly message: string;
  readonly hint?: string;
}

/** A run opened and its files written: `failure` when the run did not open (nothing written). */
export interface WrittenRun {
  readonly failure?: RunFailure;
  /** Per file: undefined when written. */
  readonly results?: (WriteFailure | undefined)[];
}

type WriteWholeFile = (path: string, meta: FileMetadata, data: Uint8Array, options: unknown) => void;

const writers = new Map<string, Promise<WriteWholeFile>>();

function loadWriter(module: string): Promise<WriteWholeFile> {
  let p = writers.get(module);
  if (!p) {
    p = import(module).then((m: { writeWholeFile?: unknown }) => {
      if (typeof m.writeWholeFile !== 'function')
        throw new Error(`restore target module ${module} does not export writeWholeFile`);
      return m.writeWholeFile as WriteWholeFile;
    });
    writers.set(module, p);
  }
  return p;
}

/** The plaintext of a run, reused from one run to the next (runs are opened one at a time). */
let arena = new Uint8Array(0);

/**
 * Opens (decrypts, decompresses, verifies) a run of blobs and writes the small files it holds
 * with the target's writer, all on this thread: the plaintext never leaves it.
 */
export async function openAndWrite(
  keys: { encKey: Uint8Array; macKey: Uint8Array },
  sealed: Uint8Array,
  blobs: readonly RunBlob[],
  rawLength: number,
  files: readonly LocalWrite[],
  writer: LocalWriter,
): Promise<WrittenRun> {
  const write = await loadWriter(writer.module);
  if (arena.length < rawLength) arena = new Uint8Array(rawLength);
  const out = arena.subarray(0, rawLength);
  const failure = openRun(keys, sealed, blobs, out);
  if (failure) return { failure };
  const results = files.map((f): WriteFailure | undefined => {
    try {
      write(f.path, f.meta, out.subarray(f.at, f.at + f.length), writer.options);
      return undefined;
    } catch (e) {
      const fe = toForgeError(e);
      return fe.hint === undefined
        ? { code: fe.code, message: fe.message }
        : { code: fe.code, message: fe.message, hint: fe.hint };
    }
  });
  return { results };
}
