import type { SnapshotRecord } from '@backupforge/common';
import type { Repository } from '@backupforge/engine';
import { walkSnapshot } from '@backupforge/engine';
import { openRepositoryBackend } from '@backupforge/storage';
import { catalogFileFromTreeNode, type Store } from '@backupforge/store';
import { resolveSecret } from './config/index.ts';
import { runHook } from './hooks/index.ts';
import { createNotifiers, notify } from './notify/index.ts';
import type { RunHistory, RunnerDeps } from './runner/run-job.ts';
import type { ForgeConfig, NotifierConfig, RepositoryConfig, RunFacts, SecretRef } from './types.ts';

export interface RunnerDepsOptions {
  readonly config: ForgeConfig;
  readonly env: NodeJS.ProcessEnv;
  readonly cwd: string;
  /** Run history and snapshot catalog; runs still work without one. */
  readonly store?: Store;
  /** Root of the local cache for remote repositories. */
  readonly cacheRoot?: string;
  /** Warnings for the person or log (unreachable notifier, world-readable secret file …). */
  readonly onWarning?: (message: string) => void;
  /** One line per storage retry. */
  readonly onRetry?: (message: string) => void;
}

/** The real collaborators of `runJob`: secrets, hooks, notifiers, backends with retries/cache, and the store. */
export function createRunnerDeps(o: RunnerDepsOptions): RunnerDeps {
  const warn = o.onWarning ?? (() => {});
  const resolve = (ref: SecretRef) => resolveSecret(ref, { env: o.env, cwd: o.cwd, onWarning: warn });
  return {
    resolveSecret: resolve,
    runHook: async (which, command, facts, opts) => {
      const r = await runHook(which, command, facts, {
        timeoutMs: opts.timeoutMs,
        ...(opts.signal ? { signal: opts.signal } : {}),
      });
      return { exitCode: r.exitCode, timedOut: r.timedOut, output: r.output, durationMs: r.durationMs };
    },
    notify: async (names, event, facts) => {
      const configs = names
        .map((n) => o.config.notifiers.get(n))
        .filter((c): c is NotifierConfig => c !== undefined);
      if (configs.length === 0) return;
      for (const outcome of await notify(createNotifiers(configs, resolve), event, facts)) {
        if (!outcome.ok)
          warn(`notifier ${outcome.name} (${outcome.type}) failed: ${outcome.error ?? 'unknown error'}`);
      }
    },
    openBackend: (repo: RepositoryConfig, env) =>
      openRepositoryBackend(repo.location, {
        env,
        settings: repo.options,
        ...(repo.limitUploadKiB !== undefined ? { limitUploadKiB: repo.limitUploadKiB } : {}),
        ...(repo.limitDownloadKiB !== undefined ? { limitDownloadKiB: repo.limitDownloadKiB } : {}),
        ...(o.cacheRoot ? { cacheRoot: o.cacheRoot } : {}),
        onWarning: warn,
        ...(o.onRetry ? { onRetry: o.onRetry } : {}),
      }),
    ...(o.store ? { history: storeHistory(o.store, o.config) } : {}),
  };
}

/** Run history and catalog in the metadata store. */
export function storeHistory(store: Store, config: ForgeConfig): RunHistory {
  const ids = new Map<string, string>();
  return {
    async startRun(job, kind, runId, startedAt) {
      const j = config.jobs.get(job);
      if (j) await store.upsertJob({ name: job, kind, repository: j.repository });
      ids.set(runId, await store.startRun(job, kind, { startedAt }));
    },
    async finishRun(runId, facts: RunFacts) {
      const id = ids.get(runId);
      if (!id) return;
      ids.delete(runId);
      await store.finishRun(id, {
        status: facts.status === 'running' ? 'failed' : facts.status,
        ...(facts.finishedAt ? { finishedAt: facts.finishedAt } : {}),
        snapshotId: facts.snapshotId ?? null,
        bytesAdded: facts.bytesAdded ?? null,
        filesNew: facts.filesNew ?? null,
        filesChanged: facts.filesChanged ?? null,
        exitCode: facts.exitCode ?? null,
        errorCode: facts.errorCode ?? null,
        errorMessage: facts.errorMessage ?? null,
        logPath: facts.logPath ?? null,
      });
    },
    async catalogSnapshot(repository: string, snapshot: SnapshotRecord) {
      const repo = config.repositories.get(repository);
      if (!repo) return;
      await store.upsertRepository({ id: repository, name: repository, location: repo.location });
      await store.addSnapshotToCatalog(repository, snapshot);
    },
  };
}

export interface CatalogRebuildResult {
  readonly snapshots: number;
  readonly added: number;
  readonly removed: number;
  readonly files: number;
}

/**
 * `forge catalog rebuild`: makes the store's catalog of `name` match the repository exactly
 * (snapshots, and with `files` every snapshot's file listing). The repository is the source of
 * truth; this only reads it.
 */
export async function rebuildCatalog(
  store: Store,
  name: string,
  location: string,
  repo: Repository,
  opts: { files?: boolean; signal?: AbortSignal } = {},
): Promise<CatalogRebuildResult> {
  await store.upsertRepository({ id: name, name, location, repoId: repo.config.id });
  const snapshots = await repo.listSnapshots();
  const r = await store.replaceSnapshotCatalog(name, snapshots);
  let files = 0;
  if (opts.files !== false) {
    for (const s of snapshots) {
      const have = await store.getCatalogSnapshot(name, s.id);
      if (have?.filesIndexedAt) continue;
      if (opts.signal?.aborted) break;
      files += await store.addCatalogFiles(
        name,
        s.id,
        (async function* () {
          for await (const { path, node } of walkSnapshot(repo, s, '/', { recursive: true }))
            yield catalogFileFromTreeNode(path, node);
        })(),
      );
    }
  }
  return { snapshots: snapshots.length, added: r.added, removed: r.removed, files };
}
