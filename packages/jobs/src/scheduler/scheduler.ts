import { Cron } from 'croner';
import type { ForgeConfig, JobConfig } from '../types.ts';

/** When a scheduled job runs next, and why it runs now (on time, or catching up a missed run). */
export interface DueRun {
  readonly job: string;
  readonly at: Date;
  readonly reason: 'scheduled' | 'missed';
}

export interface SchedulerOptions {
  readonly config: ForgeConfig;
  /** Runs one job to its end; the scheduler runs at most one job at a time, in due order. */
  readonly run: (job: string, reason: DueRun['reason']) => Promise<unknown>;
  /** The last start of each job (from the run history), to find runs missed while down. */
  readonly lastRunAt?: (job: string) => Promise<Date | undefined>;
  readonly log?: (line: string) => void;
  readonly now?: () => Date;
}

function cronOf(job: JobConfig): Cron | undefined {
  if (!job.schedule) return undefined;
  return new Cron(job.schedule.cron, {
    paused: true,
    ...(job.schedule.timezone ? { timezone: job.schedule.timezone } : {}),
  });
}

/** The next `n` times a job's schedule fires after `from` (empty when it has no schedule). */
export function upcoming(job: JobConfig, from: Date, n = 1): Date[] {
  const c = cronOf(job);
  if (!c) return [];
  try {
    return c.nextRuns(n, from);
  } finally {
    c.stop();
  }
}

/**
 * Runs missed during `(last, now]`: with policy `run-once`, one catch-up run when the schedule
 * fired at least once since the last run; with `skip`, none.
 */
export function missedRun(job: JobConfig, last: Date | undefined, now: Date): DueRun | undefined {
  if (!job.schedule || job.schedule.missed === 'skip' || !last) return undefined;
  const next = upcoming(job, last, 1)[0];
  if (next && next.getTime() <= now.getTime()) return { job: job.name, at: next, reason: 'missed' };
  return undefined;
}

/**
 * The built-in scheduler behind `forge daemon`: one timer for the earliest due job, jobs run one
 * after another (a backup never competes with another for the disk and the network), runs
 * missed while the daemon was down are caught up once per the job's policy. `stop()` lets the
 * running job finish (or the caller aborts it through its own signal) and resolves when idle.
 */
export class Scheduler {
  readonly #opts: SchedulerOptions;
  readonly #queue: DueRun[] = [];
  readonly #next = new Map<string, Date>();
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #stopped = false;
  #idle: (() => void)[] = [];

  constructor(opts: SchedulerOptions) {
    this.#opts = opts;
  }

  get #now(): Date {
    return this.#opts.now?.() ?? new Date();
  }

  /** Jobs with a schedule and when each runs next. */
  nextRuns(): ReadonlyMap<string, Date> {
    return this.#next;
  }

  async start(): Promise<void> {
    const now = this.#now;
    for (const job of this.#opts.config.jobs.values()) {
      if (!job.schedule) continue;
      const last = await this.#opts.lastRunAt?.(job.name);
      const missed = missedRun(job, last, now);
      if (missed) {
        this.#opts.log?.(
          `job ${job.name}: missed the run due ${missed.at.toISOString()} while down; running it now`,
        );
        this.#queue.push(missed);
      }
      this.#plan(job, now);
    }
    this.#arm();
    this.#drain();
  }

  /** Stops scheduling; resolves once the job that is running (if any) has ended. */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#queue.length = 0;
    if (!this.#running) return;
    await new Promise<void>((r) => this.#idle.push(r));
  }

  #plan(job: JobConfig, after: Date): void {
    const next = upcoming(job, after, 1)[0];
    if (next) this.#next.set(job.name, next);
    else this.#next.delete(job.name);
  }

  #arm(): void {
    if (this.#stopped) return;
    if (this.#timer) clearTimeout(this.#timer);
    let earliest: Date | undefined;
    for (const d of this.#next.values()) if (!earliest || d < earliest) earliest = d;
    if (!earliest) return;
    // setTimeout holds at most ~24.8 days; re-arm in steps for schedules further out.
    const delay = Math.min(Math.max(0, earliest.getTime() - this.#now.getTime()), 2 ** 31 - 1);
    // A referenced timer: it is what keeps `forge daemon` alive between runs.
    this.#timer = setTimeout(() => this.#fire(), delay);
  }

  #fire(): void {
    const now = this.#now;
    for (const [name, at] of [...this.#next]) {
      if (at.getTime() > now.getTime()) continue;
      const job = this.#opts.config.jobs.get(name)!;
      if (this.#queue.some((q) => q.job === name)) {
        this.#opts.log?.(`job ${name}: still queued from its previous due time; not queued twice`);
      } else {
        this.#queue.push({ job: name, at, reason: 'scheduled' });
      }
      this.#plan(job, now);
    }
    this.#arm();
    this.#drain();
  }

  #drain(): void {
    if (this.#running || this.#stopped) return;
    const due = this.#queue.shift();
    if (!due) return;
    this.#running = (async () => {
      try {
        await this.#opts.run(due.job, due.reason);
      } catch (e) {
        this.#opts.log?.(`job ${due.job}: ${(e as Error).message}`);
      } finally {
        this.#running = undefined;
        if (this.#stopped) for (const r of this.#idle.splice(0)) r();
        else this.#drain();
      }
    })();
  }
}
