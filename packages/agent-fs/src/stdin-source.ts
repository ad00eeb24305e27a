import {
  type BackupSource,
  type ContentReader,
  ForgeError,
  ForgeErrorCodes,
  type SourceEvent,
  toForgeError,
} from '@backupforge/common';

/** Options of {@link createStdinSource}. */
export interface StdinSourceOptions {
  /** Name of the one file in the snapshot (`--stdin-filename`), e.g. `db.sql`. */
  readonly filename: string;
  /** Where the content comes from (any byte stream, e.g. a `Readable`); default `process.stdin`. */
  readonly stream?: AsyncIterable<Uint8Array | string>;
  /** Clock for the recorded mtime/atime/ctime; default `Date.now`. Milliseconds. */
  readonly now?: () => number;
}

/**
 * A {@link BackupSource} with one file, `[filename]`, whose content is read from a stream
 * (`forge backup --stdin`). Its size is recorded as 0 (unknown in advance); the engine
 * records the number of bytes it actually read.
 *
 * ```ts
 * const source = createStdinSource({ filename: 'db.sql' }); // pg_dump db | forge backup --stdin
 * ```
 */
export function createStdinSource(options: StdinSourceOptions): BackupSource {
  const { filename } = options;
  if (filename === '' || filename === '.' || filename === '..' || /[/\0]/.test(filename)) {
    throw new ForgeError(ForgeErrorCodes.FORGE_USAGE, `invalid stdin file name ${JSON.stringify(filename)}`, {
      hint: 'give a plain file name without slashes, e.g. --stdin-filename db.sql',
    });
  }
  const stream = options.stream ?? process.stdin;
  const now = options.now ?? Date.now;
  let opened = false;

  async function* entries(signal?: AbortSignal): AsyncGenerator<SourceEvent> {
    if (signal?.aborted) {
      throw new ForgeError(ForgeErrorCodes.FORGE_ABORTED, 'the backup was cancelled', {
        cause: signal.reason,
      });
    }
    const ns = BigInt(Math.trunc(now())) * 1_000_000n;
    yield {
      kind: 'entry',
      path: [filename],
      streamed: true,
      meta: {
        type: 'file',
        mode: 0o644,
        uid: process.getuid?.() ?? 0,
        gid: process.getgid?.() ?? 0,
        size: 0,
        mtimeNs: ns,
        atimeNs: ns,
        ctimeNs: ns,
        inode: 0n,
        device: 0n,
        links: 1,
      },
      open: async (): Promise<ContentReader> => {
        if (opened) {
          throw new ForgeError(ForgeErrorCodes.FORGE_USAGE, 'standard input can be read only once');
        }
        opened = true;
        return createStreamReader(stream);
      },
    };
  }

  return Object.freeze({
    kind: 'stdin',
    paths: Object.freeze([`/${filename}`]),
    entries,
  });
}

/** Adapts a byte stream to {@link ContentReader}: big chunks are handed out over several reads. */
function createStreamReader(stream: AsyncIterable<Uint8Array | string>): ContentReader {
  const iterator = stream[Symbol.asyncIterator]();
  let pending: Uint8Array = new Uint8Array(0);
  let done = false;
  let closed = false;

  async function nextChunk(): Promise<boolean> {
    try {
      const r = await iterator.next();
      if (r.done) {
        done = true;
        return false;
      }
      pending = typeof r.value === 'string' ? Buffer.from(r.value, 'utf8') : r.value;
      return true;
    } catch (e) {
      throw toForgeError(e, 'reading standard input');
    }
  }

  return {
    async read(buf: Uint8Array): Promise<number> {
      if (closed) throw new ForgeError(ForgeErrorCodes.FORGE_USAGE, 'read after close of standard input');
      let got = 0;
      while (got < buf.length) {
        if (pending.length === 0) {
          if (done || !(await nextChunk())) break;
          continue;
        }
        const n = Math.min(pending.length, buf.length - got);
        buf.set(pending.subarray(0, n), got);
        pending = pending.subarray(n);
        got += n;
      }
      return got;
    },
    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      if (!done) await iterator.return?.();
    },
  };
}
