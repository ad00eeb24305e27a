#!/usr/bin/env node
// Restore-only probe for tuning (not part of `pnpm bench`): restores the latest snapshot of REPO
// into a fresh TARGET with the engine API, so restore options can be varied.
//   node restore-probe.mjs REPO TARGET [workers]      (FORGE_PASSWORD in the environment)
import { rmSync } from 'node:fs';
import { createFsRestoreTarget } from '@backupforge/agent-fs';
import { Repository, restore } from '@backupforge/engine';
import { openBackend } from '@backupforge/storage';

const [repoPath, targetPath, workers] = process.argv.slice(2);
rmSync(targetPath, { recursive: true, force: true });
const repo = await Repository.open(await openBackend(repoPath), { password: process.env.FORGE_PASSWORD });
const snaps = await repo.listSnapshots();
const latest = snaps.sort((a, b) => a.snapshot.time.localeCompare(b.snapshot.time)).at(-1);
const t0 = performance.now();
const only = process.env.PROBE_INCLUDE; // e.g. a path prefix inside the snapshot
const r = await restore(repo, latest, createFsRestoreTarget({ root: targetPath }), {
  ...(workers !== undefined ? { workers: Number(workers) } : {}),
  ...(only ? { include: (p) => p.startsWith(only) } : {}),
});
const s = (performance.now() - t0) / 1000;
const ru = process.resourceUsage();
console.log(
  `restore ${s.toFixed(2)} s, ${(r.bytes / s / 1e6).toFixed(0)} MB/s, files ${r.files}, errors ${r.errors.length}, ` +
    `cpu user ${(ru.userCPUTime / 1e6).toFixed(2)} sys ${(ru.systemCPUTime / 1e6).toFixed(2)}, maxrss ${(ru.maxRSS / 1024).toFixed(0)} MiB`,
);
