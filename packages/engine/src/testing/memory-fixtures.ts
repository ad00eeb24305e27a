// Test helpers (not exported): an in-memory BackupSource and RestoreTarget.
import { createHash, randomBytes } from 'node:crypto';
import type {
  BackupSource,
  ContentReader,
  FileMetadata,
  NodeType,
  RestoreFileWriter,
  RestoreTarget,
  SourceEvent,
  StorageBackend,
} from '@backupforge/common';
import { ForgeError } from '@backupforge/common';

export interface MemFile {
  type?: NodeType;
  data?: Uint8Array;
  mode?: number;
  mtimeNs?: bigint;
  inode?: bigint;
  links?: number;
  linkTarget?: string;
  /** Throw when opened. */
  unreadable?: boolean;
}

let inodes = 1000n;

export function meta(f: MemFile): FileMetadata {
  const type = f.type ?? (f.data ? 'file' : 'dir');
  return {
    type,
    mode: f.mode ?? (type === 'dir' ? 0o755 : 0o644),
    uid: 1000,
    gid: 1000,
    size: type === 'file' ? (f.data?.length ?? 0) : 0,
    mtimeNs: f.mtimeNs ?? 1_700_000_000_123_456_789n,
    atimeNs: 1_700_000_000_000_000_000n,
    ctimeNs: f.mtimeNs ?? 1_700_000_000_123_456_789n,
    inode: f.inode ?? inodes++,
    device: 42n,
    links: f.links ?? 1,
    ...(f.linkTarget !== undefined ? { linkTarget: f.linkTarget } : {}),
  };
}

/**
 * A source over a map of '/'-separated paths. Directories are implied by paths.
 * `opened` records which files were read (to prove the unchanged-file fast path).
 */
export function memSource(
  files: Record<string, MemFile>,
  paths = ['/data'],
): BackupSource & { opened: string[] } {
  const opened: string[] = [];
  const metas = new Map<string, FileMetadata>();
  const all = new Set<string>();
  for (const [p, f] of Object.entries(files)) {
    const parts = p.split('/').filter(Boolean);
    for (let i = 1; i < parts.length; i++) all.add(parts.slice(0, i).join('/'));
    all.add(parts.join('/'));
    metas.set(parts.join('/'), meta({ inode: BigInt(`0x${sha(Buffer.from(p)).slice(0, 12)}`), ...f }));
  }
  const sorted = [...all].sort((a, b) => {
    const pa = a.split('/');
    const pb = b.split('/');
    for (let i = 0; i < Math.min(pa.length, pb.length); i++) {
      const c = Buffer.compare(Buffer.from(pa[i]!), Buffer.from(pb[i]!));
      if (c !== 0) return c;
    }
    return pa.length - pb.length;
  });
  return {
    kind: 'mem',
    paths,
    opened,
    async *entries(): AsyncGenerator<SourceEvent> {
      for (const p of sorted) {
        const f = files[`/${p}`];
        const m = metas.get(p) ?? meta({ inode: BigInt(`0x${sha(Buffer.from(p)).slice(0, 12)}`) });
        yield {
          kind: 'entry',
          path: p.split('/'),
          meta: m,
          ...(m.type === 'file'
            ? {
                async open(): Promise<ContentReader> {
                  if (f?.unreadable) throw new ForgeError('FORGE_PERMISSION', `permission denied (/${p})`);
                  opened.push(`/${p}`);
                  const data = f?.data ?? new Uint8Array();
                  let pos = 0;
                  return {
                    async read(buf) {
                      const n = Math.min(buf.length, data.length - pos, 3 * 1024 * 1024 + 17);
                      buf.set(data.subarray(pos, pos + n));
                      pos += n;
                      return n;
                    },
                    async close() {},
                  };
                },
              }
            : {}),
        };
      }
    },
  };
}

export interface MemTargetFile {
  meta: FileMetadata;
  data?: Buffer;
  linkOf?: string;
}

/** A RestoreTarget that keeps everything in a map keyed by '/'-joined relative paths. */
export function memTarget(): RestoreTarget & { out: Map<string, MemTargetFile>; finished: string[] } {
  const out = new Map<string, MemTargetFile>();
  const finished: string[] = [];
  const key = (p: readonly string[]) => p.join('/');
  return {
    out,
    finished,
    async prepare() {},
    async dir(p, m) {
      out.set(key(p), { meta: m });
    },
    async file(p, m): Promise<RestoreFileWriter> {
      const parts: Buffer[] = [];
      let expect = 0;
      return {
        async write(data, offset) {
          if (offset !== expect) throw new Error(`non-contiguous write at ${offset}, expected ${expect}`);
          parts.push(Buffer.from(data));
          expect += data.length;
        },
        async close() {
          out.set(key(p), { meta: m, data: Buffer.concat(parts) });
        },
        async abort() {
          out.delete(key(p));
        },
      };
    },
    async hardlink(p, existing, m) {
      out.set(key(p), { meta: m, linkOf: key(existing) });
    },
    async symlink(p, m) {
      out.set(key(p), { meta: m });
    },
    async special(p, m) {
      out.set(key(p), { meta: m });
    },
    async finishDir(p) {
      finished.push(key(p));
    },
    async readBack(p) {
      const data = out.get(key(p))?.data ?? Buffer.alloc(0);
      let pos = 0;
      return {
        async read(buf) {
          const n = Math.min(buf.length, data.length - pos);
          buf.set(data.subarray(pos, pos + n));
          pos += n;
          return n;
        },
        async close() {},
      };
    },
    async close() {},
  };
}

export function sha(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}

/** Deterministic pseudo-random bytes (xorshift32). */
export function prng(n: number, seed = 1): Buffer {
  const out = Buffer.allocUnsafe(n + 3);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i += 4) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out.writeUInt32LE(x, i);
  }
  return out.subarray(0, n);
}

export function text(n: number): Buffer {
  const words = ['backup', 'forge', 'chunk', 'pack', 'index', 'tree', 'snapshot', 'restore', 'zstd', 'lorem'];
  const parts: string[] = [];
  let len = 0;
  let i = 0;
  while (len < n) {
    const w = words[(i * 7 + (i >> 3)) % words.length]!;
    parts.push(w);
    len += w.length + 1;
    i++;
  }
  return Buffer.from(parts.join(' ')).subarray(0, n);
}

export { randomBytes };

/** Fast KDF settings for tests (the minimum the format accepts). */
export const TEST_KDF = { memoryKiB: 8192, iterations: 1, parallelism: 1 } as const;

/**
 * A backend that forwards every required method to `inner` and adds (or replaces) `extra`:
 * for tests of the optional methods (`createUpload`, `sweepTemporaries`) over a memory backend.
 */
export function forwardingTo(inner: StorageBackend, extra: Partial<StorageBackend>): StorageBackend {
  return {
    location: inner.location,
    properties: () => inner.properties(),
    create: () => inner.create(),
    save: (h, d) => inner.save(h, d),
    load: (h, r, i) => inner.load(h, r, i),
    stat: (h) => inner.stat(h),
    list: (t) => inner.list(t),
    remove: (h) => inner.remove(h),
    close: () => inner.close(),
    ...extra,
  };
}
