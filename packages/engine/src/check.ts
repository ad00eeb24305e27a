import { createHash, randomInt } from 'node:crypto';
import {
  ForgeError,
  type ForgeErrorCode,
  type Reporter,
  type SnapshotRecord,
  silentReporter,
  toForgeError,
} from '@backupforge/common';
import { parseKeyFile } from './crypto/key-file.ts';
import { readPackHeader } from './format/pack.ts';
import { BufferPool } from './internal/buffer-pool.ts';
import { Semaphore } from './internal/concurrency.ts';
import type { RunBlob } from './internal/open-run.ts';
import type { PackVerdict } from './internal/verify-pack.ts';
import { createBlobProcessor, workerCount } from './internal/worker-pool.ts';
import { blobsByPack, type IndexFile, type PackedBlob } from './master-index.ts';
import { packBufferBytes } from './pack-writer.ts';
import { STALE_TEMPORARY_MS } from './prune.ts';
import type { Repository } from './repository.ts';

export interface CheckOptions {
  /** Download every pack, verify its hash, decrypt and re-hash every blob. */
  readonly readData?: boolean;
  /** Read only a subset of packs: `{ percent: 10 }` (random) or `{ n: 2, m: 5 }` (the 2nd of 5 fixed groups). */
  readonly readDataSubset?: { readonly percent: number } | { readonly n: number; readonly m: number };
  readonly reporter?: Reporter;
  readonly signal?: AbortSignal;
}

export type FindingKind =
  | 'index-unreadable'
  | 'snapshot-unreadable'
  | 'pack-missing'
  | 'pack-header'
  | 'pack-mismatch'
  | 'pack-hash'
  | 'blob-overlap'
  | 'blob-damaged'
  | 'blob-missing'
  | 'tree-damaged'
  | 'pack-unreferenced'
  | 'temporary-files'
  | 'blob-duplicate'
  | 'key-damaged';

/** One thing `check` found. Errors make the check fail; warnings and notes do not. */
export interface CheckFinding {
  readonly severity: 'error' | 'warning' | 'note';
  readonly kind: FindingKind;
  readonly code: ForgeErrorCode;
  /** The object concerned: a pack, index, snapshot or blob id, or a path in a snapshot. */
  readonly object: string;
  readonly message: string;
}

export interface CheckResult {
  readonly ok: boolean;
  readonly findings: readonly CheckFinding[];
  readonly stats: {
    readonly snapshots: number;
    readonly trees: number;
    readonly dataBlobsReferenced: number;
    readonly packs: number;
    readonly indexFiles: number;
    readonly unreferencedPacks: number;
    /** Temporary files that interrupted writes left, untouched for an hour (`prune` deletes them). */
    readonly temporaryFiles: number;
    readonly packsRead: number;
    readonly blobsRead: number;
  };
}

/**
 * Verifies a repository, like `restic check`:
 *
 * 1. every index file decodes, and every pack it names exists with room for its blobs;
 * 2. every pack's header decodes and agrees with the index (same blobs, offsets, lengths),
 *    blobs in one pack do not overlap;
 * 3. every snapshot decodes, every tree it reaches decodes and verifies, and every data blob a
 *    file names is in the index;
 * 4. with `readData`, every (or a subset of) pack is downloaded: its SHA-256 must equal its name,
 *    and every blob in it must decrypt and match its id.
 *
 * Packs that no index lists are reported as notes (left by interrupted backups; `prune`
 * removes them), not errors.
 */
/**
 * Parses a data subset as restic writes it: `10%` (a random share of the packs) or `2/5` (the
 * second of five groups). `what` names the option in the error (`--read-data-subset`).
 */
export function parseReadDataSubset(
  s: string,
  what = '--read-data-subset',
): NonNullable<CheckOptions['readDataSubset']> {
  const pct = /^(\d+(?:\.\d+)?)%$/.exec(s);
  if (pct) {
    const percent = Number(pct[1]);
    if (percent > 0 && percent <= 100) return { percent };
  }
  const nm = /^(\d+)\/(\d+)$/.exec(s);
  if (nm) {
    const n = Number(nm[1]);
    const m = Number(nm[2]);
    if (n >= 1 && m >= 1 && n <= m) return { n, m };
  }
  throw new ForgeError('FORGE_USAGE', `${what} ${s} is not understood`, {
    hint: "use a percentage like '10%' or a group like '2/5'",
  });
}

export async function checkRepository(repo: Repository, opts: CheckOptions = {}): Promise<CheckResult> {
  const reporter = opts.reporter ?? silentReporter;
  const findings: CheckFinding[] = [];
  const add = (f: CheckFinding) => {
    findings.push(f);
    if (f.severity !== 'note')
      reporter({ type: 'warning', phase: 'check', path: f.object, code: f.code, message: f.message });
  };
  reporter({ type: 'start', phase: 'check' });

  // Key files: plain JSON named by their SHA-256.
  for await (const k of repo.backend.list('key')) {
    try {
      const bytes = await repo.backend.load({ type: 'key', name: k.name });
      if (createHash('sha256').update(bytes).digest('hex') !== k.name)
        throw new Error('does not match its name');
      parseKeyFile(bytes);
    } catch (e) {
      const fe = toForgeError(e);
      add({
        severity: 'error',
        kind: 'key-damaged',
        code: 'FORGE_KEY_INVALID',
        object: k.name,
        message: `key file ${k.name.slice(0, 12)} is damaged: ${e instanceof Error ? e.message : fe.message}`,
      });
    }
  }

  // Packs on storage.
  const packSizes = new Map<string, number>();
  for await (const p of repo.backend.list('pack')) packSizes.set(p.name, p.size);

  // 1. Index files, read individually so a damaged one is named.
  const indexNames: string[] = [];
  for await (const i of repo.backend.list('index')) indexNames.push(i.name);
  const goodFiles: IndexFile[] = [];
  for (const name of indexNames) {
    try {
      goodFiles.push(await repo.loadIndexFile(name));
    } catch (e) {
      const fe = toForgeError(e);
      add({
        severity: 'error',
        kind: 'index-unreadable',
        code: fe.code,
        object: name,
        message: `index ${name.slice(0, 12)} is unreadable: ${fe.message}`,
      });
    }
  }
  const indexed = blobsByPack(goodFiles); // pack -> blobs
  const blobHome = new Map<string, string>(); // blob id -> first pack
  for (const [packId, blobs] of indexed) {
    for (const b of blobs) {
      const home = blobHome.get(b.id);
      if (home === undefined) blobHome.set(b.id, packId);
      else {
        add({
          severity: 'note',
          kind: 'blob-duplicate',
          code: 'FORGE_FORMAT',
          object: b.id,
          message: `blob ${b.id.slice(0, 12)} is stored in packs ${home.slice(0, 12)} and ${packId.slice(0, 12)}`,
        });
      }
    }
  }

  // 2. Packs named by the index: present, headers agree, no overlaps.
  for (const [packId, blobs] of indexed) {
    if (opts.signal?.aborted) break;
    const size = packSizes.get(packId);
    if (size === undefined) {
      add({
        severity: 'error',
        kind: 'pack-missing',
        code: 'FORGE_NOT_FOUND',
        object: packId,
        message: `pack ${packId.slice(0, 12)} is in the index but missing from storage (${blobs.length} blobs lost)`,
      });
      continue;
    }
    const sorted = [...blobs].sort((a, b) => a.loc.offset - b.loc.offset);
    for (let i = 1; i < sorted.length; i++) {
      const prev = sorted[i - 1]!;
      const cur = sorted[i]!;
      if (prev.loc.offset + prev.loc.length > cur.loc.offset) {
        add({
          severity: 'error',
          kind: 'blob-overlap',
          code: 'FORGE_FORMAT',
          object: packId,
          message: `pack ${packId.slice(0, 12)}: blobs ${prev.id.slice(0, 12)} and ${cur.id.slice(0, 12)} overlap`,
        });
      }
    }
    try {
      const header = await readPackHeader(repo.backend, repo.keys.encKey, packId, size);
      const byId = new Map(header.map((e) => [e.id, e]));
      for (const b of blobs) {
        const h = byId.get(b.id);
        if (
          !h ||
          h.offset !== b.loc.offset ||
          h.length !== b.loc.length ||
          h.type !== b.loc.type ||
          h.rawLength !== b.loc.rawLength
        ) {
          add({
            severity: 'error',
            kind: 'pack-mismatch',
            code: 'FORGE_FORMAT',
            object: packId,
            message: `pack ${packId.slice(0, 12)}: blob ${b.id.slice(0, 12)} is not where the index says`,
          });
        }
      }
    } catch (e) {
      const fe = toForgeError(e);
      add({
        severity: 'error',
        kind: 'pack-header',
        code: fe.code,
        object: packId,
        message: `pack ${packId.slice(0, 12)}: ${fe.message}`,
      });
    }
  }
  let unreferencedPacks = 0;
  for (const packId of packSizes.keys()) {
    if (!indexed.has(packId)) {
      unreferencedPacks++;
      add({
        severity: 'note',
        kind: 'pack-unreferenced',
        code: 'FORGE_NOT_FOUND',
        object: packId,
        message: `pack ${packId.slice(0, 12)} is not referenced by any index (left by an interrupted backup; prune removes it)`,
      });
    }
  }
  let temporaryFiles = 0;
  try {
    const t = await repo.backend.sweepTemporaries?.({ olderThanMs: STALE_TEMPORARY_MS, dryRun: true });
    if (t && t.files > 0) {
      temporaryFiles = t.files;
      add({
        severity: 'note',
        kind: 'temporary-files',
        code: 'FORGE_NOT_FOUND',
        object: repo.backend.location,
        message: `${t.files} temporary file${t.files === 1 ? '' : 's'} (${t.bytes} bytes) left by interrupted writes, untouched for an hour (prune removes them)`,
      });
    }
  } catch (e) {
    const fe = toForgeError(e);
    add({
      severity: 'warning',
      kind: 'temporary-files',
      code: fe.code,
      object: repo.backend.location,
      message: `temporary files of interrupted writes could not be counted: ${fe.message}`,
    });
  }

  // 3. Snapshots and everything they reach.
  const snapNames: string[] = [];
  for await (const s of repo.backend.list('snapshot')) snapNames.push(s.name);
  const snapshots: SnapshotRecord[] = [];
  for (const name of snapNames) {
    try {
      snapshots.push(await repo.loadSnapshot(name));
    } catch (e) {
      const fe = toForgeError(e);
      add({
        severity: 'error',
        kind: 'snapshot-unreadable',
        code: fe.code,
        object: name,
        message: `snapshot ${name.slice(0, 12)} is unreadable: ${fe.message}`,
      });
    }
  }
  repo.adoptIndexFiles(goodFiles);
  const seenTrees = new Set<string>();
  const dataBlobs = new Set<string>();
  const missingReported = new Set<string>();
  const walk = async (treeId: string, path: string, snap: SnapshotRecord): Promise<void> => {
    if (seenTrees.has(treeId)) return;
    seenTrees.add(treeId);
    let nodes: Awaited<ReturnType<Repository['loadTree']>>['nodes'];
    try {
      nodes = (await repo.loadTree(treeId)).nodes;
    } catch (e) {
      const fe = toForgeError(e);
      add({
        severity: 'error',
        kind: 'tree-damaged',
        code: fe.code,
        object: `${snap.id.slice(0, 8)}:${path || '/'}`,
        message: `snapshot ${snap.id.slice(0, 8)}: directory ${path || '/'} (tree ${treeId.slice(0, 12)}) is unreadable: ${fe.message}`,
      });
      return;
    }
    for (const n of nodes) {
      const p = `${path}/${n.name}`;
      if (n.type === 'dir' && n.subtree) await walk(n.subtree, p, snap);
      for (const c of n.content ?? []) {
        dataBlobs.add(c);
        if (!repo.index.has(c, 'data') && !missingReported.has(c)) {
          missingReported.add(c);
          add({
            severity: 'error',
            kind: 'blob-missing',
            code: 'FORGE_NOT_FOUND',
            object: `${snap.id.slice(0, 8)}:${p}`,
            message: `snapshot ${snap.id.slice(0, 8)}: ${p} needs data blob ${c.slice(0, 12)}, which is not in the index`,
          });
        }
      }
    }
  };
  for (const s of snapshots) {
    if (opts.signal?.aborted) break;
    await walk(s.tree, '', s);
    reporter({
      type: 'progress',
      phase: 'check',
      filesDone: seenTrees.size,
      bytesDone: 0,
      currentPath: s.id.slice(0, 8),
    });
  }

  // 4. Data.
  let packsRead = 0;
  let blobsRead = 0;
  if (opts.readData || opts.readDataSubset) {
    const candidates = [...indexed.keys()].filter((p) => packSizes.has(p)).sort();
    const selected = candidates.filter((p) => {
      const s = opts.readDataSubset;
      if (!s) return true;
      if ('percent' in s) return randomInt(0, 1_000_000) < s.percent * 10_000;
      return Number.parseInt(p.slice(0, 8), 16) % s.m === s.n - 1;
    });
    const read = await readPacks(repo, selected, indexed, packSizes, opts.signal, (o, counts) => {
      if ('loadError' in o) {
        add({
          severity: 'error',
          kind: 'pack-missing',
          code: o.loadError.code,
          object: o.packId,
          message: `pack ${o.packId.slice(0, 12)} cannot be read: ${o.loadError.message}`,
        });
        return;
      }
      if (!o.verdict.hashMatches) {
        add({
          severity: 'error',
          kind: 'pack-hash',
          code: 'FORGE_INTEGRITY',
          object: o.packId,
          message: `pack ${o.packId.slice(0, 12)} does not match its name (damaged on storage)`,
        });
      }
      for (const f of o.verdict.failures) {
        const b = o.blobs[f.index]!;
        add({
          severity: 'error',
          kind: 'blob-damaged',
          code: f.code === 'FORGE_INTERNAL' ? 'FORGE_INTEGRITY' : (f.code as ForgeErrorCode),
          object: b.id,
          message: `pack ${o.packId.slice(0, 12)}: ${b.loc.type} blob ${b.id.slice(0, 12)} is damaged: ${f.message}`,
        });
      }
      reporter({ type: 'progress', phase: 'check', filesDone: counts.packs, bytesDone: counts.blobs });
    });
    packsRead = read.packs;
    blobsRead = read.blobs;
  }
  reporter({ type: 'done', phase: 'check' });
  return {
    ok: !findings.some((f) => f.severity === 'error'),
    findings,
    stats: {
      snapshots: snapshots.length,
      trees: seenTrees.size,
      dataBlobsReferenced: dataBlobs.size,
      packs: packSizes.size,
      indexFiles: indexNames.length,
      unreferencedPacks,
      temporaryFiles,
      packsRead,
      blobsRead,
    },
  };
}

type PackOutcome =
  | { readonly packId: string; readonly blobs: readonly PackedBlob[]; readonly verdict: PackVerdict }
  | { readonly packId: string; readonly blobs: readonly PackedBlob[]; readonly loadError: ForgeError };

/**
 * Reads each pack in `selected` and verifies it on the blob workers: the next packs load while
 * the workers verify earlier ones (both cores busy, storage reads overlapped). `each` sees the
 * outcomes in the order of `selected`, so the findings keep the pack order.
 */
async function readPacks(
  repo: Repository,
  selected: readonly string[],
  indexed: ReadonlyMap<string, readonly PackedBlob[]>,
  sizes: ReadonlyMap<string, number>,
  signal: AbortSignal | undefined,
  each: (o: PackOutcome, counts: { readonly packs: number; readonly blobs: number }) => void,
): Promise<{ packs: number; blobs: number }> {
  const counts = { packs: 0, blobs: 0 };
  const processor = createBlobProcessor({
    encKey: repo.keys.encKey,
    macKey: repo.keys.macKey,
    compression: repo.config.compression,
  });
  // Packs held at once (loading, waiting for a worker, being verified): one per worker plus one
  // loading. Outcomes are small and are taken in order; the window of outcomes is wider, so a
  // slow pack at the head does not hold back the loads behind it.
  const holding = new Semaphore(workerCount() + 1);
  // Packs are read into pooled buffers that come back from the workers (a local repository
  // reads into them): a fresh 16 MiB buffer per pack left dead ones waiting for a collection.
  const limit = packBufferBytes(repo.config);
  const pool = new BufferPool((workerCount() + 1) * BufferPool.capacity(limit));
  const window = 64;
  const start = async (packId: string): Promise<PackOutcome> => {
    const blobs = indexed.get(packId) ?? [];
    await holding.acquire();
    try {
      if (signal?.aborted)
        return { packId, blobs, loadError: new ForgeError('FORGE_ABORTED', 'check was cancelled') };
      let bytes: Uint8Array;
      const size = sizes.get(packId);
      const into = size !== undefined && size <= limit ? pool.get(limit) : undefined;
      try {
        bytes = into
          ? await repo.backend.load(
              { type: 'pack', name: packId },
              { offset: 0, length: size! },
              new Uint8Array(into),
            )
          : await repo.backend.load({ type: 'pack', name: packId });
      } catch (e) {
        if (into) pool.put(into);
        return { packId, blobs, loadError: toForgeError(e) };
      }
      if (into && bytes.buffer !== into) pool.put(into); // the backend used a buffer of its own
      const runs: RunBlob[] = blobs.map((b) => ({
        at: b.loc.offset,
        length: b.loc.length,
        id: Buffer.from(b.id, 'hex'),
        type: b.loc.type,
        compression: b.loc.compression,
        rawLength: b.loc.rawLength,
      }));
      const { bytes: back, ...verdict } = await processor.verifyPack(bytes, packId, runs);
      // Moved to the worker and back, it is a new ArrayBuffer here: pooled again by its size.
      // (`into` itself is detached by then.)
      if (into && back.buffer.byteLength === BufferPool.capacity(limit)) pool.put(back.buffer as ArrayBuffer);
      return { packId, blobs, verdict };
    } finally {
      holding.release();
    }
  };
  const queue: Promise<PackOutcome>[] = [];
  let next = 0;
  try {
    for (;;) {
      while (queue.length < window && next < selected.length && !signal?.aborted) {
        const p = start(selected[next++]!);
        p.catch(() => {}); // awaited below, in order
        queue.push(p);
      }
      const head = queue.shift();
      if (!head) break;
      const o = await head;
      if (signal?.aborted) break;
      if (!('loadError' in o)) {
        counts.packs++;
        counts.blobs += o.blobs.length;
      }
      each(o, counts);
    }
  } finally {
    await Promise.allSettled(queue);
    await processor.close();
  }
  return counts;
}
