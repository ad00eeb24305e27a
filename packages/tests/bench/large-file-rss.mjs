#!/usr/bin/env node
import { spawnSync } from 'node:child_process';
// Benchmark (not a test): peak memory of backing up one large file through the public API.
//
//   cd packages/tests && node bench/large-file-rss.mjs [--size-gib N] [--file PATH] [--keep]
//
// Creates (or reuses, with --file / BENCH_FILE when it already has the right size) a file of
// pseudo-random, partly compressible data, written in a streaming fashion; inits a repository
// in a temp dir (local backend); backs the file up; samples RSS and /proc/self/status VmHWM
// every 200 ms (worker threads count in the process RSS); prints one JSON object:
//   { fileBytes, seconds, MiBps, peakRssMiB, peakSampledRssMiB, repoBytes, ... }
// Target: peakRssMiB < 300 for a 10 GiB file. Deletes what it created unless --keep.
import { randomFillSync } from 'node:crypto';
import { once } from 'node:events';
import { createWriteStream, readFileSync, writeFileSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const { backup, Repository } = await import('@backupforge/engine');
const { openBackend } = await import('@backupforge/storage');
const { createFsSource } = await import('@backupforge/agent-fs');

function parseArgs(argv) {
  const o = {
    sizeGiB: 10,
    file: process.env.BENCH_FILE,
    keep: false,
    workers: undefined,
    compression: undefined,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--size-gib') o.sizeGiB = Number(argv[++i]);
    else if (a === '--file') o.file = argv[++i];
    else if (a === '--keep') o.keep = true;
    else if (a === '--workers') o.workers = Number(argv[++i]);
    else if (a === '--compression') o.compression = argv[++i];
    else if (a === '--help' || a === '-h') {
      console.log(
        'usage: large-file-rss.mjs [--size-gib N] [--file PATH] [--keep] [--workers N] [--compression zstd|lz4|none]',
      );
      process.exit(0);
    } else throw new Error(`unknown argument ${a}`);
  }
  if (!(o.sizeGiB > 0)) throw new Error('--size-gib must be a positive number');
  return o;
}

function vm(field) {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

const MiB = 1024 * 1024;

/** Writes `bytes` of data: per 4 MiB block, random bytes with every other 64 KiB replaced by text. */
async function writeData(path, bytes) {
  const out = createWriteStream(path);
  const text = Buffer.from(
    'BackupForge benchmark line: the quick brown fox jumps over the lazy dog 0123456789\n'.repeat(800),
  );
  let left = bytes;
  let block = 0;
  while (left > 0) {
    const buf = Buffer.allocUnsafe(Math.min(4 * MiB, left));
    randomFillSync(buf);
    for (let off = 64 * 1024 * (block % 2); off < buf.length; off += 128 * 1024) {
      text.copy(
        buf,
        off,
        (block * 7919) % 4096,
        Math.min(buf.length - off, 64 * 1024) + ((block * 7919) % 4096),
      );
    }
    block++;
    left -= buf.length;
    if (!out.write(buf)) await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
}

if (process.argv[2] === '--generate') {
  await writeData(process.argv[3], Number(process.argv[4]));
  process.exit(0);
}

async function dirBytes(dir) {
  let total = 0;
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) total += (await stat(join(e.parentPath, e.name))).size;
  }
  return total;
}

const opts = parseArgs(process.argv.slice(2));
const fileBytes = Math.round(opts.sizeGiB * 1024 * MiB);
const work = await mkdtemp(join(tmpdir(), 'forge-bench-'));
let file = opts.file;
let createdFile = false;
try {
  let reuse = false;
  if (file) {
    try {
      reuse = (await stat(file)).size === fileBytes;
    } catch {}
  } else {
    file = join(work, 'src', 'big.bin');
  }
  if (!reuse) {
    await mkdir(join(file, '..'), { recursive: true });
    const t = performance.now();
    // Written by a child process, so its buffers do not count in this process's memory.
    const gen = spawnSync(
      process.execPath,
      [fileURLToPath(import.meta.url), '--generate', file, String(fileBytes)],
      {
        stdio: 'inherit',
      },
    );
    if (gen.status !== 0) throw new Error(`generating ${file} failed`);
    createdFile = true;
    process.stderr.write(
      `wrote ${file} (${opts.sizeGiB} GiB) in ${((performance.now() - t) / 1000).toFixed(1)} s\n`,
    );
  }

  const repoDir = join(work, 'repo');
  const backend = await openBackend(repoDir);
  // Default KDF parameters, as the CLI uses them (the KDF runs in a short-lived worker).
  const repo = await Repository.init(backend, {
    password: 'bench',
    ...(opts.compression ? { compression: { algorithm: opts.compression } } : {}),
  });
  // Reset the high-water mark (Linux ≥ 4.0) so writing the source file does not count.
  try {
    writeFileSync('/proc/self/clear_refs', '5');
  } catch {}
  const hwmBefore = vm('VmHWM');
  let peakSampled = process.memoryUsage().rss;
  const sampler = setInterval(() => {
    peakSampled = Math.max(peakSampled, process.memoryUsage().rss);
  }, 200);
  const t0 = performance.now();
  const result = await backup(repo, createFsSource({ paths: [file] }), {
    ...(opts.workers !== undefined ? { workers: opts.workers } : {}),
  });
  const seconds = (performance.now() - t0) / 1000;
  clearInterval(sampler);
  peakSampled = Math.max(peakSampled, process.memoryUsage().rss);
  await repo.close();
  if (result.partial) throw new Error(`backup was partial: ${JSON.stringify(result.warnings)}`);
  const repoBytes = await dirBytes(repoDir);
  console.log(
    JSON.stringify({
      fileBytes,
      seconds: Number(seconds.toFixed(2)),
      MiBps: Number((fileBytes / MiB / seconds).toFixed(1)),
      peakRssMiB: Number((vm('VmHWM') / MiB).toFixed(1)),
      peakSampledRssMiB: Number((peakSampled / MiB).toFixed(1)),
      rssBeforeBackupMiB: Number((hwmBefore / MiB).toFixed(1)),
      repoBytes,
      snapshotId: result.snapshotId,
      dataAdded: result.snapshot.summary?.dataAdded,
      workers: opts.workers ?? 'default',
      compression: repo.config.compression,
      node: process.version,
    }),
  );
} finally {
  if (!opts.keep) {
    await rm(work, { recursive: true, force: true });
    if (createdFile && opts.file) await rm(file, { force: true });
  } else {
    process.stderr.write(`kept ${work}${opts.file ? ` and ${file}` : ''}\n`);
  }
}
