import { randomUUID } from 'node:crypto';
import { mkdir, open as openFile } from 'node:fs/promises';
import { hostname as osHostname } from 'node:os';
import { join } from 'node:path';
import { createFsSource } from '@backupforge/agent-fs';
import {
  ForgeError,
  type Reporter,
  type SnapshotRecord,
  type StorageBackend,
  silentReporter,
  toForgeError,
} from '@backupforge/common';
import {
  backup,
  checkRepository,
  forget,
  parseReadDataSubset,
  prune,
  Repository,
  type RetentionPolicy,
} from '@backupforge/engine';
import type {
  BackupJobConfig,
  ForgeConfig,
  JobConfig,
  NotifyEvent,
  RepositoryConfig,
  RetentionConfig,
  RunFacts,
  SecretRef,
} from '../types.ts';
import { JobLock } from './job-lock.ts';
import { testRestore } from './test-restore.ts';

/** Exit codes of `forge run` (documented in docs/jobs.md). */
export const RunExitCode = {
  OK: 0,
  FAILED: 1,
  /** Done, with warnings (some files unreadable, a hook after the run failed). */
  WARNING: 3,
  /** The repository is locked by another process (as for every forge command). */
  REPO_LOCKED: 11,
  /** The previous run of this job is still going: nothing was done. */
  JOB_RUNNING: 13,
  /** The before hook failed: the run was skipped. */
  SKIPPED: 14,
  INTERRUPTED: 130,
} as const;

export interface HookOutcome {
  readonly exitCode: number | null;
  readonly timedOut: boolean;
  readonly output: string;
  readonly durationMs: number;
}

/** What a run needs from the outside; `@backupforge/jobs` wires the real ones (createRunnerDeps). */
export interface RunnerDeps {
  resolveSecret(ref: SecretRef): Promise<string>;
  runHook(
    which: 'before' | 'after' | 'on-error',
    command: string,
    facts: RunFacts,
    opts: { timeoutMs: number; signal?: AbortSignal },
  ): Promise<HookOutcome>;
  notify(names: readonly string[], event: NotifyEvent, facts: RunFacts): Promise<void>;
  openBackend(repo: RepositoryConfig, env: NodeJS.ProcessEnv): Promise<StorageBackend>;
  /** Run history (the metadata store); optional so a run works without a database. */
  readonly history?: RunHistory;
}

export interface RunHistory {
  startRun(job: string, kind: string, runId: string, startedAt: Date): Promise<void>;
  finishRun(runId: string, facts: RunFacts): Promise<void>;
  catalogSnapshot?(repository: string, snapshot: SnapshotRecord): Promise<void>;
}

export interface RunJobOptions {
  readonly config: ForgeConfig;
  readonly job: string;
  readonly deps: RunnerDeps;
  /** Where job locks and (by default) logs live. */
  readonly stateDir: string;
  readonly env?: NodeJS.ProcessEnv;
  readonly reporter?: Reporter;
  /** Human-readable progress lines (also written to the run's log file). */
  readonly log?: (line: string) => void;
  readonly signal?: AbortSignal;
  readonly hostname?: string;
}

export interface StepResult {
  readonly step: 'before-hook' | 'backup' | 'forget' | 'prune' | 'check' | 'test-restore' | 'after-hook';
  readonly ok: boolean;
  readonly detail: string;
}

export interface RunJobResult {
  readonly facts: RunFacts;
  readonly exitCode: number;
  readonly steps: readonly StepResult[];
}

/**
 * Runs one job end to end: job lock → before hook → backup → forget/prune per policy → optional
 * check (or, for a test-restore job, the sampled restore) → after/on-error hook → history and
 * notifications. Never throws for a failed run: the result says what happened; it throws only
 * when the job does not exist.
 */
export async function runJob(opts: RunJobOptions): Promise<RunJobResult> {
  const job = opts.config.jobs.get(opts.job);
  if (!job) {
    const known = [...opts.config.jobs.keys()];
    throw new ForgeError('FORGE_USAGE', `there is no job '${opts.job}' in ${opts.config.file}`, {
      hint: known.length ? `jobs defined: ${known.join(', ')}` : 'define one under [jobs.NAME]',
    });
  }
  const repoConfig = opts.config.repositories.get(job.repository);
  if (!repoConfig) {
    throw new ForgeError(
      'FORGE_USAGE',
      `job '${job.name}' uses repository '${job.repository}', which is not defined`,
    );
  }
  const env = opts.env ?? process.env;
  const runId = randomUUID();
  const startedAt = new Date();
  const host = opts.hostname ?? osHostname();
  const steps: StepResult[] = [];
  const logDir = opts.config.logDir ?? join(opts.stateDir, 'logs');
  const logPath = join(
    logDir,
    safeName(job.name),
    `${startedAt.toISOString().replace(/[:.]/g, '-')}-${runId.slice(0, 8)}.log`,
  );
  const logFile = await openLog(logPath);
  const log = (line: string) => {
    opts.log?.(line);
    logFile?.write(`${new Date().toISOString()} ${line}\n`);
  };
  let facts: RunFacts = {
    job: job.name,
    runId,
    repository: job.repository,
    status: 'running',
    startedAt,
    hostname: host,
    ...(logFile ? { logPath } : {}),
  };
  const finish = async (patch: Partial<RunFacts>, exitCode: number): Promise<RunJobResult> => {
    const finishedAt = new Date();
    facts = {
      ...facts,
      ...patch,
      finishedAt,
      durationMs: finishedAt.getTime() - startedAt.getTime(),
      exitCode,
    };
    log(`run ${facts.status} (exit ${exitCode}) in ${((facts.durationMs ?? 0) / 1000).toFixed(1)} s`);
    await opts.deps.history
      ?.finishRun(runId, facts)
      .catch((e) => log(`could not record the run: ${toForgeError(e).message}`));
    const event: NotifyEvent =
      facts.status === 'success' ? 'success' : facts.status === 'warning' ? 'warning' : 'failure';
    if (facts.status !== 'aborted' || job.notify.length > 0)
      await opts.deps.notify(job.notify, event, facts).catch(() => undefined);
    await logFile?.close();
    return { facts, exitCode, steps };
  };

  let lock: JobLock;
  try {
    lock = await JobLock.acquire(join(opts.stateDir, 'locks', `${safeName(job.name)}.lock`), runId);
  } catch (e) {
    const fe = toForgeError(e);
    log(`not started: ${fe.message}`);
    await logFile?.close();
    // Not recorded as a run, and no notification: the running one will report.
    return {
      facts: {
        ...facts,
        status: 'skipped',
        errorCode: fe.code,
        errorMessage: fe.message,
        exitCode: RunExitCode.JOB_RUNNING,
      },
      exitCode: RunExitCode.JOB_RUNNING,
      steps,
    };
  }
  try {
    await opts.deps.history
      ?.startRun(job.name, job.type, runId, startedAt)
      .catch((e) => log(`could not record the run start: ${toForgeError(e).message}`));
    await opts.deps.notify(job.notify, 'start', facts).catch(() => undefined);
    log(`run ${runId} of job ${job.name} (${job.type}) to repository ${job.repository}`);

    if (job.hooks?.before) {
      const h = await opts.deps.runHook('before', job.hooks.before, facts, hookOpts(job, opts.signal));
      const ok = h.exitCode === 0 && !h.timedOut;
      steps.push({ step: 'before-hook', ok, detail: hookDetail(h) });
      if (!ok) {
        const message = `before hook ${h.timedOut ? 'timed out' : `exited with ${h.exitCode}`}: ${lastLine(h.output)}; the run was skipped`;
        log(message);
        return await finish(
          { status: 'skipped', errorCode: 'FORGE_HOOK', errorMessage: message },
          RunExitCode.SKIPPED,
        );
      }
    }

    let outcome: { status: 'success' | 'warning'; patch: Partial<RunFacts> };
    try {
      outcome = await runSteps(job, repoConfig, { ...opts, env, log, steps, host });
    } catch (e) {
      const fe = toForgeError(e);
      const aborted = fe.code === 'FORGE_ABORTED' || opts.signal?.aborted === true;
      log(`failed: ${fe.toOneLine()}`);
      const patch: Partial<RunFacts> = {
        status: aborted ? 'aborted' : 'failed',
        errorCode: fe.code,
        errorMessage: fe.message,
      };
      if (job.hooks?.onError) {
        const h = await opts.deps.runHook(
          'on-error',
          job.hooks.onError,
          { ...facts, ...patch },
          hookOpts(job),
        );
        log(`on-error hook: ${hookDetail(h)}`);
      }
      const code = aborted
        ? RunExitCode.INTERRUPTED
        : fe.code === 'FORGE_LOCK_CONFLICT'
          ? RunExitCode.REPO_LOCKED
          : RunExitCode.FAILED;
      return await finish(patch, code);
    }

    let status: 'success' | 'warning' = outcome.status;
    if (job.hooks?.after) {
      const h = await opts.deps.runHook(
        'after',
        job.hooks.after,
        { ...facts, ...outcome.patch, status },
        hookOpts(job, opts.signal),
      );
      const ok = h.exitCode === 0 && !h.timedOut;
      steps.push({ step: 'after-hook', ok, detail: hookDetail(h) });
      if (!ok) {
        status = 'warning';
        log(`after hook failed: ${hookDetail(h)}`);
      }
    }
    return await finish(
      { ...outcome.patch, status },
      status === 'success' ? RunExitCode.OK : RunExitCode.WARNING,
    );
  } finally {
    await lock.release();
  }
}

interface StepContext extends RunJobOptions {
  readonly env: NodeJS.ProcessEnv;
  readonly log: (line: string) => void;
  readonly steps: StepResult[];
  readonly host: string;
}

async function runSteps(
  job: JobConfig,
  repoConfig: RepositoryConfig,
  ctx: StepContext,
): Promise<{ status: 'success' | 'warning'; patch: Partial<RunFacts> }> {
  const backendEnv: NodeJS.ProcessEnv = { ...ctx.env };
  for (const [k, ref] of Object.entries(repoConfig.env)) backendEnv[k] = await ctx.deps.resolveSecret(ref);
  const password = await ctx.deps.resolveSecret(repoConfig.password);
  const backend = await ctx.deps.openBackend(repoConfig, backendEnv);
  let repo: Repository | undefined;
  try {
    repo = await Repository.open(backend, { password });
    if (job.type === 'test-restore') {
      const r = await testRestore(repo, job, { signal: ctx.signal, log: ctx.log, host: ctx.host });
      ctx.steps.push({ step: 'test-restore', ok: r.ok, detail: r.detail });
      if (!r.ok) throw new ForgeError('FORGE_INTEGRITY', `test restore failed: ${r.detail}`);
      return { status: 'success', patch: { snapshotId: r.snapshotId } };
    }
    return await backupSteps(repo, job, repoConfig, ctx);
  } finally {
    if (repo) await repo.close().catch(() => undefined);
    else await backend.close().catch(() => undefined);
  }
}

async function backupSteps(
  repo: Repository,
  job: BackupJobConfig,
  repoConfig: RepositoryConfig,
  ctx: StepContext,
): Promise<{ status: 'success' | 'warning'; patch: Partial<RunFacts> }> {
  const host = job.host ?? ctx.host;
  const source = createFsSource({
    paths: [...job.paths],
    exclude: [...job.exclude],
    excludeIfPresent: [...job.excludeIfPresent],
    oneFileSystem: job.oneFileSystem,
  });
  const reporter = ctx.reporter ?? silentReporter;
  const result = await backup(repo, source, {
    tags: job.tags,
    host,
    reporter,
    ...(ctx.signal ? { signal: ctx.signal } : {}),
  });
  const s = result.snapshot.summary!;
  const detail = `snapshot ${result.snapshotId?.slice(0, 8)}: ${s.filesNew} new, ${s.filesChanged} changed, ${s.filesUnmodified} unmodified files, ${s.dataAdded} bytes added`;
  ctx.log(`backup: ${detail}`);
  for (const w of result.warnings) ctx.log(`warning: ${w.path}: ${w.message}`);
  ctx.steps.push({ step: 'backup', ok: !result.partial, detail });
  const patch: Partial<RunFacts> = {
    ...(result.snapshotId ? { snapshotId: result.snapshotId } : {}),
    bytesAdded: s.dataAdded,
    filesNew: s.filesNew,
    filesChanged: s.filesChanged,
  };
  if (result.snapshotId && ctx.deps.history?.catalogSnapshot) {
    const record = (await repo.listSnapshots()).find((r) => r.id === result.snapshotId);
    if (record) await ctx.deps.history.catalogSnapshot(repoConfig.name, record).catch(() => undefined);
  }

  if (job.retention) {
    const policy = toPolicy(job.retention);
    // Only this job's snapshots: same host and paths (restic's default grouping).
    const r = await forget(repo, { policy, filter: { hosts: [host], paths: result.snapshot.paths } });
    ctx.log(`forget: removed ${r.removed.length} snapshot(s)`);
    ctx.steps.push({ step: 'forget', ok: true, detail: `removed ${r.removed.length}` });
    if (job.prune && r.removed.length > 0) {
      const p = await prune(repo, { reporter });
      const t = p.temporaries;
      const detail = `${p.bytesFreed} bytes freed${t.files > 0 ? `; ${t.files} temporary file${t.files === 1 ? '' : 's'} of interrupted writes (${t.bytes} bytes) deleted` : ''}`;
      ctx.log(`prune: ${detail}`);
      ctx.steps.push({ step: 'prune', ok: true, detail });
    }
  }
  if (job.check) {
    const c = await checkRepository(repo, {
      ...(job.check.readDataSubset
        ? {
            readData: true,
            readDataSubset: parseReadDataSubset(job.check.readDataSubset, 'read_data_subset'),
          }
        : {}),
      ...(ctx.signal ? { signal: ctx.signal } : {}),
    });
    const errors = c.findings.filter((f) => f.severity === 'error');
    ctx.steps.push({ step: 'check', ok: c.ok, detail: c.ok ? 'no errors' : `${errors.length} errors` });
    if (!c.ok)
      throw new ForgeError(
        'FORGE_INTEGRITY',
        `check found ${errors.length} errors: ${errors[0]?.message ?? ''}`,
      );
  }
  return { status: result.partial ? 'warning' : 'success', patch };
}

function toPolicy(r: RetentionConfig): RetentionPolicy {
  const p: Record<string, unknown> = {
    last: r.keepLast,
    hourly: r.keepHourly,
    daily: r.keepDaily,
    weekly: r.keepWeekly,
    monthly: r.keepMonthly,
    yearly: r.keepYearly,
    within: r.keepWithin,
    tags: r.keepTags?.map((g) => g.split(',').filter(Boolean)),
  };
  for (const k of Object.keys(p)) if (p[k] === undefined) delete p[k];
  return p as RetentionPolicy;
}

function hookOpts(job: JobConfig, signal?: AbortSignal): { timeoutMs: number; signal?: AbortSignal } {
  return { timeoutMs: job.hooks?.timeoutMs ?? 300_000, ...(signal ? { signal } : {}) };
}

function hookDetail(h: HookOutcome): string {
  const how = h.timedOut ? 'timed out' : `exit ${h.exitCode}`;
  const last = lastLine(h.output);
  return `${how} after ${(h.durationMs / 1000).toFixed(1)} s${last ? `: ${last}` : ''}`;
}

function lastLine(output: string): string {
  const lines = output.trim().split('\n');
  return (lines[lines.length - 1] ?? '').slice(0, 200);
}

function safeName(name: string): string {
  return name.replace(/[^A-Za-z0-9._-]/g, '_');
}

async function openLog(
  path: string,
): Promise<{ write(s: string): void; close(): Promise<void> } | undefined> {
  try {
    await mkdir(join(path, '..'), { recursive: true });
    const fh = await openFile(path, 'a', 0o600);
    let chain: Promise<unknown> = Promise.resolve();
    return {
      write: (s) => {
        chain = chain.then(() => fh.write(s)).catch(() => undefined);
      },
      close: async () => {
        await chain;
        await fh.close().catch(() => undefined);
      },
    };
  } catch {
    return undefined; // a run without a log file still runs
  }
}
