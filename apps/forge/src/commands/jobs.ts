import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { ForgeError, shortId } from '@backupforge/common';
import { Repository } from '@backupforge/engine';
import {
  createRunnerDeps,
  type ForgeConfig,
  findConfigFile,
  loadConfig,
  printCrontab,
  printSystemd,
  rebuildCatalog,
  runJob,
  Scheduler,
  upcoming,
} from '@backupforge/jobs';
import { openStoreFromUrl, type Store } from '@backupforge/store';
import { cacheDirFor } from '../backend-options.ts';
import type { Context } from '../context.ts';
import { ExitCode } from '../exit-codes.ts';
import { formatBytes, formatDuration, table } from '../format.ts';

/** `$XDG_STATE_HOME/backupforge` (job locks, run logs, the default database). */
export function stateDir(env: NodeJS.ProcessEnv): string {
  const base = env.XDG_STATE_HOME || join(env.HOME || homedir(), '.local', 'state');
  return join(base, 'backupforge');
}

async function config(ctx: Context): Promise<ForgeConfig> {
  const path = await findConfigFile(ctx.io.env, ctx.io.cwd, ctx.opts.config);
  if (!path) {
    throw new ForgeError('FORGE_USAGE', 'no forge.toml found', {
      hint: 'pass --config FILE, set FORGE_CONFIG, or create ./forge.toml or ~/.config/backupforge/forge.toml (see docs/config.md)',
    });
  }
  return loadConfig(resolve(ctx.io.cwd, path), { env: ctx.io.env, onWarning: (m) => ctx.out.warn(m) });
}

async function store(ctx: Context, cfg: ForgeConfig | undefined): Promise<Store> {
  const url = cfg?.database ?? `sqlite:${join(stateDir(ctx.io.env), 'forge.db')}`;
  return openStoreFromUrl(url);
}

export interface RunCommandOptions {
  dryRun?: boolean;
}

/** `forge run <job>`: one job end to end, made for cron and systemd timers. */
export async function runCommand(ctx: Context, jobName: string): Promise<number> {
  const cfg = await config(ctx);
  const db = await store(ctx, cfg);
  try {
    const result = await runJob({
      config: cfg,
      job: jobName,
      stateDir: stateDir(ctx.io.env),
      env: ctx.io.env,
      signal: ctx.signal,
      deps: createRunnerDeps({
        config: cfg,
        env: ctx.io.env,
        cwd: ctx.io.cwd,
        store: db,
        ...(ctx.opts.cache === false ? {} : { cacheRoot: cacheDirFor(ctx.io.env, ctx.opts.cacheDir) }),
        onWarning: (m) => ctx.out.warn(m),
        onRetry: (m) => ctx.out.note(m),
      }),
      ...(ctx.io.stderr.isTTY && !ctx.out.json ? { reporter: ctx.out.reporter() } : {}),
      log: (line) => ctx.out.note(line),
    });
    const f = result.facts;
    ctx.out.emit({
      message_type: 'summary',
      job: f.job,
      run_id: f.runId,
      status: f.status,
      exit_code: result.exitCode,
      snapshot_id: f.snapshotId ?? null,
      bytes_added: f.bytesAdded ?? null,
      files_new: f.filesNew ?? null,
      files_changed: f.filesChanged ?? null,
      duration_ms: f.durationMs ?? null,
      error_code: f.errorCode ?? null,
      error_message: f.errorMessage ?? null,
      log_path: f.logPath ?? null,
      steps: result.steps,
    });
    if (f.status === 'success') {
      ctx.out.info(
        `job ${f.job}: success${f.snapshotId ? `, snapshot ${shortId(f.snapshotId)}` : ''}` +
          `${f.bytesAdded !== undefined ? `, ${formatBytes(f.bytesAdded)} added` : ''} in ${formatDuration(f.durationMs ?? 0)}`,
      );
    } else if (f.status === 'warning') {
      ctx.out.warn(`job ${f.job} finished with warnings (see ${f.logPath ?? 'the log'})`);
    } else if (result.exitCode !== ExitCode.OK && !ctx.out.json) {
      // One line for cron's mail: what happened and where the log is.
      ctx.io.stderr.write(
        `error: job ${f.job} ${f.status}: ${f.errorMessage ?? 'see the log'}${f.logPath ? ` (log: ${f.logPath})` : ''}\n`,
      );
    }
    return result.exitCode;
  } finally {
    await db.close();
  }
}

/** `forge jobs`: every job with its schedule, next and last run. */
export async function jobsCommand(ctx: Context): Promise<number> {
  const cfg = await config(ctx);
  const db = await store(ctx, cfg);
  try {
    const rows = [['JOB', 'TYPE', 'REPOSITORY', 'SCHEDULE', 'NEXT RUN', 'LAST RUN', 'RESULT']];
    const now = new Date();
    for (const job of cfg.jobs.values()) {
      const last = await db.lastRun(job.name);
      const next = upcoming(job, now, 1)[0];
      ctx.out.emit({
        message_type: 'job',
        name: job.name,
        type: job.type,
        repository: job.repository,
        schedule: job.schedule?.cron ?? null,
        timezone: job.schedule?.timezone ?? null,
        next_run: next?.toISOString() ?? null,
        last_run: last?.startedAt.toISOString() ?? null,
        last_status: last?.status ?? null,
      });
      rows.push([
        job.name,
        job.type,
        job.repository,
        job.schedule
          ? `${job.schedule.cron}${job.schedule.timezone ? ` (${job.schedule.timezone})` : ''}`
          : '-',
        next ? next.toISOString().replace('T', ' ').slice(0, 16) : '-',
        last ? last.startedAt.toISOString().replace('T', ' ').slice(0, 16) : 'never',
        last ? last.status : '-',
      ]);
    }
    if (!ctx.out.json) ctx.out.line(table(rows));
    return ExitCode.OK;
  } finally {
    await db.close();
  }
}

/** `forge runs [job]`: run history, newest first. */
export async function runsCommand(
  ctx: Context,
  job: string | undefined,
  opts: { limit?: string },
): Promise<number> {
  const cfg = await config(ctx).catch(() => undefined);
  const db = await store(ctx, cfg);
  try {
    const limit = opts.limit ? Number(opts.limit) : 20;
    if (!Number.isInteger(limit) || limit < 1) {
      throw new ForgeError('FORGE_USAGE', `--limit ${opts.limit} is not a positive whole number`);
    }
    const runs = await db.listRuns({ ...(job ? { job } : {}), limit });
    const rows = [['STARTED', 'JOB', 'STATUS', 'DURATION', 'SNAPSHOT', 'ADDED', 'ERROR']];
    for (const r of runs) {
      ctx.out.emit({
        message_type: 'run',
        id: r.id,
        job: r.job,
        kind: r.kind,
        status: r.status,
        started_at: r.startedAt.toISOString(),
        finished_at: r.finishedAt?.toISOString() ?? null,
        duration_ms: r.durationMs,
        snapshot_id: r.snapshotId,
        bytes_added: r.bytesAdded,
        exit_code: r.exitCode,
        error_code: r.errorCode,
        error_message: r.errorMessage,
        log_path: r.logPath,
      });
      rows.push([
        r.startedAt.toISOString().replace('T', ' ').slice(0, 19),
        r.job,
        r.status,
        r.durationMs !== null ? formatDuration(r.durationMs) : '-',
        r.snapshotId ? shortId(r.snapshotId) : '-',
        r.bytesAdded !== null ? formatBytes(r.bytesAdded) : '-',
        r.errorMessage ? r.errorMessage.slice(0, 60) : '',
      ]);
    }
    if (!ctx.out.json) {
      ctx.out.line(table(rows));
      ctx.out.line(`${runs.length} run${runs.length === 1 ? '' : 's'}`);
    }
    return ExitCode.OK;
  } finally {
    await db.close();
  }
}

/**
 * `forge daemon`: the built-in scheduler. On SIGTERM/SIGINT it stops scheduling, gives the
 * running job `--grace` seconds to finish, then aborts it cleanly (the repository stays
 * consistent: an aborted backup leaves only packs the next run reuses).
 */
export async function daemonCommand(ctx: Context, opts: { grace?: string }): Promise<number> {
  const cfg = await config(ctx);
  const scheduled = [...cfg.jobs.values()].filter((j) => j.schedule);
  if (scheduled.length === 0) {
    throw new ForgeError(
      'FORGE_USAGE',
      `no job in ${cfg.file} has a schedule: nothing for the daemon to do`,
      {
        hint: 'add schedule = "0 3 * * *" to a [jobs.NAME] table',
      },
    );
  }
  const graceMs = (opts.grace !== undefined ? Number(opts.grace) : 60) * 1000;
  if (!Number.isFinite(graceMs) || graceMs < 0)
    throw new ForgeError('FORGE_USAGE', `--grace ${opts.grace} is not a number of seconds`);
  const db = await store(ctx, cfg);
  const jobAbort = new AbortController();
  const log = (line: string) => {
    ctx.out.emit({ message_type: 'daemon', time: new Date().toISOString(), message: line });
    if (!ctx.out.json) ctx.io.stderr.write(`${new Date().toISOString()} ${line}\n`);
  };
  const deps = createRunnerDeps({
    config: cfg,
    env: ctx.io.env,
    cwd: ctx.io.cwd,
    store: db,
    ...(ctx.opts.cache === false ? {} : { cacheRoot: cacheDirFor(ctx.io.env, ctx.opts.cacheDir) }),
    onWarning: (m) => log(`warning: ${m}`),
    onRetry: (m) => log(m),
  });
  const scheduler = new Scheduler({
    config: cfg,
    lastRunAt: async (job) => (await db.lastRun(job))?.startedAt,
    log,
    run: async (job, reason) => {
      log(`job ${job}: starting (${reason})`);
      const r = await runJob({
        config: cfg,
        job,
        deps,
        stateDir: stateDir(ctx.io.env),
        env: ctx.io.env,
        signal: jobAbort.signal,
      });
      log(
        `job ${job}: ${r.facts.status} (exit ${r.exitCode})${r.facts.errorMessage ? `: ${r.facts.errorMessage}` : ''}`,
      );
    },
  });
  try {
    await scheduler.start();
    for (const [job, at] of scheduler.nextRuns()) log(`job ${job}: next run ${at.toISOString()}`);
    await new Promise<void>((resolveStop) => {
      if (ctx.signal.aborted) resolveStop();
      ctx.signal.addEventListener('abort', () => resolveStop(), { once: true });
    });
    log(`stopping: waiting up to ${graceMs / 1000} s for the running job`);
    const timer = setTimeout(() => {
      log('grace period over: aborting the running job');
      jobAbort.abort();
    }, graceMs);
    await scheduler.stop();
    clearTimeout(timer);
    log('stopped');
    return ExitCode.OK;
  } finally {
    await db.close();
  }
}

/** `forge schedule print --systemd|--cron`. */
export async function schedulePrintCommand(
  ctx: Context,
  opts: { systemd?: boolean; cron?: boolean; forgeCommand?: string },
): Promise<number> {
  if (!!opts.systemd === !!opts.cron) {
    throw new ForgeError('FORGE_USAGE', 'say which format: --systemd or --cron');
  }
  const cfg = await config(ctx);
  const print = { forge: opts.forgeCommand ?? 'forge', configPath: cfg.file };
  ctx.io.stdout.write(opts.systemd ? printSystemd(cfg, print) : printCrontab(cfg, print));
  return ExitCode.OK;
}

/**
 * `forge catalog rebuild`: recreates the store's snapshot catalog (and file listings) of the
 * repository (-r, or a repository of forge.toml by name) from the repository alone.
 */
export async function catalogRebuildCommand(
  ctx: Context,
  name: string | undefined,
  opts: { files?: boolean },
): Promise<number> {
  const cfg = await config(ctx).catch((e) => {
    if (name) throw e;
    return undefined;
  });
  const db = await store(ctx, cfg);
  try {
    let location = ctx.repositoryLocation().location;
    let repoName = location;
    let repo: Repository;
    if (name) {
      const r = cfg!.repositories.get(name);
      if (!r) {
        throw new ForgeError('FORGE_USAGE', `there is no repository '${name}' in ${cfg!.file}`, {
          hint: `repositories defined: ${[...cfg!.repositories.keys()].join(', ') || 'none'}`,
        });
      }
      location = r.location;
      repoName = name;
      const deps = createRunnerDeps({
        config: cfg!,
        env: ctx.io.env,
        cwd: ctx.io.cwd,
        onWarning: (m) => ctx.out.warn(m),
      });
      const env: NodeJS.ProcessEnv = { ...ctx.io.env };
      for (const [k, ref] of Object.entries(r.env)) env[k] = await deps.resolveSecret(ref);
      const backend = await deps.openBackend(r, env);
      repo = await Repository.open(backend, { password: await deps.resolveSecret(r.password) });
    } else {
      repo = await ctx.openRepository();
    }
    try {
      const r = await rebuildCatalog(db, repoName, location, repo, {
        files: opts.files !== false,
        signal: ctx.signal,
      });
      ctx.out.emit({ message_type: 'summary', repository: repoName, ...r });
      ctx.out.info(
        `catalog of ${repoName}: ${r.snapshots} snapshots (${r.added} added, ${r.removed} removed), ${r.files} files listed`,
      );
      return ExitCode.OK;
    } finally {
      await repo.close();
    }
  } finally {
    await db.close();
  }
}
