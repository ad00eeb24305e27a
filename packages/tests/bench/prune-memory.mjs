#!/usr/bin/env node
// Benchmark (not a test): how prune's memory grows with the number of blobs in a repository.
//
//   cd packages/tests && node bench/prune-memory.mjs [--blobs 20000,80000,320000]
//
// For each size it builds a repository in memory (one small file = one data blob), forgets half
// of the snapshots, runs prune in a fresh child process and reports that process's peak RSS.
// Prune holds, per blob: one entry in the in-memory index (id + location) and one in the set of
// used ids, plus per pack the list of its blobs: memory is O(blobs), about the figures printed.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const { backup, forget, prune, Repository } = await import('@backupforge/engine');
const { openBackend } = await import('@backupforge/storage');
const KDF = { memoryKiB: 8192, iterations: 1, parallelism: 1 };

function source(n, salt) {
  return {
    kind: 'bench',
    paths: ['/data'],
    async *entries() {
      const dir = {
        type: 'dir',
        mode: 0o755,
        uid: 0,
        gid: 0,
        size: 0,
        mtimeNs: 0n,
        atimeNs: 0n,
        ctimeNs: 0n,
        inode: 1n,
        device: 1n,
        links: 1,
      };
      yield { kind: 'entry', path: ['data'], meta: dir };
      for (let i = 0; i < n; i++) {
        const name = `f${String(i).padStart(8, '0')}`;
        const data = Buffer.concat([Buffer.from(`${salt}:${i}:`), randomBytes(64)]);
        yield {
          kind: 'entry',
          path: ['data', name],
          meta: { ...dir, type: 'file', mode: 0o644, size: data.length, inode: BigInt(i + 2) },
          async open() {
            let done = false;
            return {
              async read(buf) {
                if (done) return 0;
                done = true;
                buf.set(data);
                return data.length;
              },
              async close() {},
            };
          },
        };
      }
    },
  };
}

if (process.argv[2] === '--prune-child') {
  const repo = await Repository.open(await openBackend(process.argv[3]), { password: 'bench' });
  const t = performance.now();
  const r = await prune(repo, {});
  const hwm =
    Number(
      /VmHWM:\s+(\d+)/.exec(
        await (await import('node:fs/promises')).readFile('/proc/self/status', 'utf8'),
      )[1],
    ) / 1024;
  console.log(
    JSON.stringify({
      seconds: Number(((performance.now() - t) / 1000).toFixed(2)),
      peakRssMiB: Number(hwm.toFixed(1)),
      packsDeleted: r.packsDeleted,
      usedBlobs: r.plan.usedBlobs,
    }),
  );
  process.exit(0);
}

const arg = process.argv.indexOf('--blobs');
const sizes = (arg > 0 ? process.argv[arg + 1] : '20000,80000,320000').split(',').map(Number);
const rows = [];
for (const n of sizes) {
  const dir = await mkdtemp(join(tmpdir(), 'forge-prune-bench-'));
  try {
    const repo = await Repository.init(await openBackend(dir), { password: 'bench', kdf: KDF });
    await backup(repo, source(n / 2, 'a'), { workers: 0, parent: false });
    await backup(repo, source(n / 2, 'b'), { workers: 0, parent: false });
    const [first] = await repo.listSnapshots();
    await forget(repo, { snapshots: [first.id] });
    const child = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--prune-child', dir], {
      encoding: 'utf8',
    });
    if (child.status !== 0) throw new Error(child.stderr);
    const r = JSON.parse(child.stdout);
    rows.push({ blobs: n, ...r });
    console.log(JSON.stringify({ blobs: n, ...r }));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
if (rows.length >= 2) {
  const a = rows[0];
  const b = rows.at(-1);
  console.log(
    `growth: ${(((b.peakRssMiB - a.peakRssMiB) * 1024 * 1024) / (b.blobs - a.blobs)).toFixed(0)} bytes of peak RSS per additional blob`,
  );
}
