import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createFsRestoreTarget } from '@backupforge/agent-fs';
import { ForgeError, type SnapshotRecord, toForgeError } from '@backupforge/common';
import { matchesFilter, type Repository, restore, walkSnapshot } from '@backupforge/engine';
import type { TestRestoreJobConfig } from '../types.ts';

export interface TestRestoreResult {
  readonly ok: boolean;
  readonly snapshotId: string;
  readonly filesChecked: number;
  readonly bytesChecked: number;
  readonly detail: string;
}

/**
 * ★ Proof that restores work: restores a random sample of the files of the latest matching
 * snapshot (or all of it) into a temporary folder, reads every restored file back and compares
 * each chunk with the snapshot's content ids (keyed hashes of the original bytes), then deletes
 * the folder.
 */
export async function testRestore(
  repo: Repository,
  job: TestRestoreJobConfig,
  opts: { signal?: AbortSignal; log?: (line: string) => void; host?: string; random?: () => number } = {},
): Promise<TestRestoreResult> {
  const snapshots = (await repo.listSnapshots())
    .filter((s) =>
      matchesFilter(s, {
        ...(job.host ? { hosts: [job.host] } : {}),
        ...(job.tags.length ? { tags: [job.tags.join(',')] } : {}),
      }),
    )
    .sort((a, b) => a.time.localeCompare(b.time));
  const latest: SnapshotRecord | undefined = snapshots[snapshots.length - 1];
  if (!latest) {
    throw new ForgeError('FORGE_SNAPSHOT_NOT_FOUND', 'no snapshot to test-restore', {
      hint: 'run a backup job first (or check the job’s host/tags filter)',
    });
  }
  const files: string[] = [];
  try {
    for await (const item of walkSnapshot(repo, latest, '/', { recursive: true })) {
      if (item.node.type === 'file') files.push(item.path);
    }
  } catch (e) {
    const detail = `cannot read snapshot ${latest.id.slice(0, 8)}: ${toForgeError(e).message}`;
    opts.log?.(`test restore: ${detail}`);
    return { ok: false, snapshotId: latest.id, filesChecked: 0, bytesChecked: 0, detail };
  }
  const random = opts.random ?? Math.random;
  let chosen: Set<string> | undefined;
  if (job.sample !== 'all' && files.length > job.sample) {
    // Partial Fisher–Yates: an unbiased sample without replacement.
    const pool = [...files];
    for (let i = 0; i < job.sample; i++) {
      const j = i + Math.floor(random() * (pool.length - i));
      [pool[i], pool[j]] = [pool[j]!, pool[i]!];
    }
    chosen = new Set(pool.slice(0, job.sample));
  }
  const dir = await mkdtemp(join(tmpdir(), 'forge-test-restore-'));
  try {
    const r = await restore(repo, latest, createFsRestoreTarget({ root: dir, owner: false }), {
      ...(chosen ? { include: (p: string) => chosen.has(p) } : {}),
      verify: true,
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
    const expected = chosen ? chosen.size : files.length;
    const ok = r.errors.length === 0 && r.verified === expected;
    const detail = ok
      ? `restored and verified ${r.verified} of ${files.length} files (${r.bytes} bytes) from snapshot ${latest.id.slice(0, 8)}`
      : `verified ${r.verified} of ${expected} sampled files from snapshot ${latest.id.slice(0, 8)}; ${r.errors.length} errors${r.errors[0] ? `, first: ${r.errors[0].path}: ${r.errors[0].message}` : ''}`;
    opts.log?.(`test restore: ${detail}`);
    return { ok, snapshotId: latest.id, filesChecked: r.verified, bytesChecked: r.bytes, detail };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
