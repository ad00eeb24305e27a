/**
 * The normalised shape of a `forge.toml` after parsing and validation (see docs/config.md).
 * Parsing (config/) produces it; the runner, hooks and notifiers consume it. Durations are
 * milliseconds, names are the TOML table keys, secrets are still *references* (resolved only when
 * a run needs them, so `forge jobs` never runs a password command).
 */

/** Where a secret comes from. Plain text is accepted only through `value` (discouraged: warns). */
export type SecretRef =
  | { readonly kind: 'env'; readonly name: string }
  | { readonly kind: 'file'; readonly path: string }
  | { readonly kind: 'command'; readonly command: string }
  | { readonly kind: 'value'; readonly value: string };

export interface RepositoryConfig {
  readonly name: string;
  /** Repository location as `forge -r` takes it (path, s3:…, sftp:…, rclone:…, rest:…). */
  readonly location: string;
  readonly password: SecretRef;
  /** Backend settings (`-o key=value`), e.g. `{ "s3.region": "eu-west-1" }`. */
  readonly options: Readonly<Record<string, string>>;
  /** Environment for the backend (AWS_ACCESS_KEY_ID …), each value a secret reference. */
  readonly env: Readonly<Record<string, SecretRef>>;
  readonly limitUploadKiB?: number;
  readonly limitDownloadKiB?: number;
}

/** restic-style retention; absent fields keep nothing by that rule. */
export interface RetentionConfig {
  readonly keepLast?: number;
  readonly keepHourly?: number;
  readonly keepDaily?: number;
  readonly keepWeekly?: number;
  readonly keepMonthly?: number;
  readonly keepYearly?: number;
  /** Durations like "30d", "1y6m". */
  readonly keepWithin?: string;
  readonly keepTags?: readonly string[];
}

export type MissedRunPolicy = 'skip' | 'run-once';

export interface ScheduleConfig {
  /** 5- or 6-field cron expression (croner syntax), or a nickname like "@daily". */
  readonly cron: string;
  /** IANA time zone; default: the machine's. */
  readonly timezone?: string;
  /** What the daemon does with runs missed while it was down. Default "run-once". */
  readonly missed: MissedRunPolicy;
}

export interface HooksConfig {
  readonly before?: string;
  readonly after?: string;
  readonly onError?: string;
  /** Per hook; default 5 minutes. */
  readonly timeoutMs: number;
}

export type NotifyEvent = 'start' | 'success' | 'warning' | 'failure';

export type NotifierConfig =
  | {
      readonly type: 'webhook';
      readonly name: string;
      readonly on: readonly NotifyEvent[];
      readonly url: string;
      readonly headers: Readonly<Record<string, SecretRef>>;
    }
  | {
      readonly type: 'ntfy';
      readonly name: string;
      readonly on: readonly NotifyEvent[];
      /** Topic URL, e.g. https://ntfy.sh/my-backups */
      readonly url: string;
      readonly token?: SecretRef;
      readonly priority?: number;
    }
  | {
      readonly type: 'healthchecks';
      readonly name: string;
      readonly on: readonly NotifyEvent[];
      /** Ping URL; `/start` and `/fail` are appended for those events. */
      readonly url: string;
    }
  | {
      readonly type: 'email';
      readonly name: string;
      readonly on: readonly NotifyEvent[];
      readonly host: string;
      readonly port: number;
      /** TLS from the start (465); otherwise STARTTLS when offered. */
      readonly secure: boolean;
      readonly user?: string;
      readonly password?: SecretRef;
      readonly from: string;
      readonly to: readonly string[];
    };

interface JobCommon {
  readonly name: string;
  readonly repository: string;
  readonly schedule?: ScheduleConfig;
  readonly hooks?: HooksConfig;
  /** Names of notifiers. */
  readonly notify: readonly string[];
}

export interface BackupJobConfig extends JobCommon {
  readonly type: 'fs';
  readonly paths: readonly string[];
  readonly exclude: readonly string[];
  readonly excludeIfPresent: readonly string[];
  readonly oneFileSystem: boolean;
  readonly tags: readonly string[];
  readonly host?: string;
  readonly retention?: RetentionConfig;
  /** Prune after forget (default true when a retention policy is set). */
  readonly prune: boolean;
  /** Check after the backup: off, structure only, or with a data subset like "5%". */
  readonly check?: { readonly readDataSubset?: string };
}

/** ★ Restores a sample of the latest snapshot into a temp folder and compares content hashes. */
export interface TestRestoreJobConfig extends JobCommon {
  readonly type: 'test-restore';
  /** Number of files to sample, or "all" for the whole snapshot. Default 20. */
  readonly sample: number | 'all';
  /** Only snapshots with these tags / of this host (default: latest of any). */
  readonly tags: readonly string[];
  readonly host?: string;
}

export type JobConfig = BackupJobConfig | TestRestoreJobConfig;

export interface ForgeConfig {
  /** Absolute path of the file it came from. */
  readonly file: string;
  readonly repositories: ReadonlyMap<string, RepositoryConfig>;
  readonly jobs: ReadonlyMap<string, JobConfig>;
  readonly notifiers: ReadonlyMap<string, NotifierConfig>;
  /** Metadata store: `sqlite:/path` or `postgres://…`; default `$XDG_STATE_HOME/backupforge/forge.db`. */
  readonly database?: string;
  /** Where per-run log files go; default `$XDG_STATE_HOME/backupforge/logs`. */
  readonly logDir?: string;
}

/** The facts of a run, as hooks (env vars) and notifiers (message bodies) see them. */
export interface RunFacts {
  readonly job: string;
  readonly runId: string;
  readonly repository: string;
  readonly status: 'running' | 'success' | 'warning' | 'failed' | 'skipped' | 'aborted';
  readonly startedAt: Date;
  readonly finishedAt?: Date;
  readonly durationMs?: number;
  readonly snapshotId?: string;
  readonly bytesAdded?: number;
  readonly filesNew?: number;
  readonly filesChanged?: number;
  readonly errorCode?: string;
  readonly errorMessage?: string;
  readonly exitCode?: number;
  readonly logPath?: string;
  readonly hostname: string;
}
