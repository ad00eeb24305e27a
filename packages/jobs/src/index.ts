export * from './config/index.ts';
export type { CatalogRebuildResult, RunnerDepsOptions } from './deps.ts';
export { createRunnerDeps, rebuildCatalog, storeHistory } from './deps.ts';
export type { HookEnvVar, HookName, HookResult, RunHookOptions } from './hooks/index.ts';
export { HOOK_ENV_VARS, hookEnv, hookFailure, runHook } from './hooks/index.ts';
export type { Notifier, NotifyOptions, NotifyOutcome, SecretResolver } from './notify/index.ts';
export { createNotifier, createNotifiers, formatRunMessage, formatRunTitle, notify } from './notify/index.ts';
export type { JobLockInfo } from './runner/job-lock.ts';
export { JobLock } from './runner/job-lock.ts';
export type {
  HookOutcome,
  RunHistory,
  RunJobOptions,
  RunJobResult,
  RunnerDeps,
  StepResult,
} from './runner/run-job.ts';
export { RunExitCode, runJob } from './runner/run-job.ts';
export type { TestRestoreResult } from './runner/test-restore.ts';
export { testRestore } from './runner/test-restore.ts';
export type { PrintOptions } from './scheduler/print.ts';
export { cronToOnCalendar, printCrontab, printSystemd } from './scheduler/print.ts';
export type { DueRun, SchedulerOptions } from './scheduler/scheduler.ts';
export { missedRun, Scheduler, upcoming } from './scheduler/scheduler.ts';
export type * from './types.ts';
