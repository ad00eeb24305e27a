/**
 * Job hooks: shell commands run before a run, after a successful one, and after a failed one,
 * with the run's facts in `FORGE_*` environment variables (see docs/notifications.md).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import type { Readable } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import { ForgeError, ForgeErrorCodes } from '@backupforge/common';
import { formatDuration } from '../notify/format.ts';
import type { RunFacts } from '../types.ts';

/** Which hook of a job runs. */
export type HookName = 'before' | 'after' | 'on-error';

/** The output a hook result keeps: its last 64 KiB (characters), stdout and stderr interleaved. */
export const HOOK_OUTPUT_LIMIT = 64 * 1024;
/** Time between SIGTERM and SIGKILL to the hook's process group after a timeout or abort. */
export const HOOK_KILL_GRACE_MS = 5_000;
/** How long the output pipes may stay open after the shell exited (background processes). */
const DRAIN_MS = 250;
/** A partial line longer than this goes to `onOutput` without waiting for its newline. */
const MAX_LINE = 16 * 1024;

/**
 * Every variable a hook may get. A fact the run does not have (yet) is left out, never set
 * empty; inherited variables of these names are removed so a stale value cannot leak in.
 */
export const HOOK_ENV_VARS = [
  'FORGE_HOOK',
  'FORGE_JOB',
  'FORGE_RUN_ID',
  'FORGE_REPOSITORY',
  'FORGE_STATUS',
  'FORGE_HOSTNAME',
  'FORGE_STARTED_AT',
  'FORGE_FINISHED_AT',
  'FORGE_DURATION_MS',
  'FORGE_SNAPSHOT_ID',
  'FORGE_BYTES_ADDED',
  'FORGE_FILES_NEW',
  'FORGE_FILES_CHANGED',
  'FORGE_ERROR_CODE',
  'FORGE_ERROR_MESSAGE',
  'FORGE_EXIT_CODE',
  'FORGE_LOG_PATH',
] as const;

export type HookEnvVar = (typeof HOOK_ENV_VARS)[number];

export interface RunHookOptions {
  /** The hook is killed after this long (`hooks.timeout`, default 5 min in the config). */
  readonly timeoutMs: number;
  /** Working directory; default the process's. */
  readonly cwd?: string;
  /** Base environment; default `process.env`. The `FORGE_*` variables are set on top. */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** Aborting kills the hook like a timeout does (`aborted` is then true). */
  readonly signal?: AbortSignal;
  /** Called with each output line (stdout and stderr, without the line break) as it comes. */
  readonly onOutput?: (line: string) => void;
  /** SIGTERM → SIGKILL delay; default {@link HOOK_KILL_GRACE_MS}. */
  readonly killGraceMs?: number;
}

export interface HookResult {
  readonly hook: HookName;
  /** The shell's exit code; null when it died of a signal or did not start. */
  readonly exitCode: number | null;
  /** The signal the shell died of, if any. */
  readonly signal: NodeJS.Signals | null;
  /** Killed because it ran longer than `timeoutMs`. */
  readonly timedOut: boolean;
  /** Killed because `signal` aborted. */
  readonly aborted: boolean;
  readonly timeoutMs: number;
  readonly durationMs: number;
  /** The last {@link HOOK_OUTPUT_LIMIT} characters of stdout and stderr, interleaved. */
  readonly output: string;
  /** Why the shell could not be started (e.g. the working directory does not exist). */
  readonly spawnError?: string;
}

function setIf(env: Record<string, string>, name: HookEnvVar, value: string | number | undefined): void {
  if (value === undefined) return;
  // An environment value cannot hold NUL.
  env[name] = String(value).replaceAll('\0', '');
}

/** The `FORGE_*` variables of a hook run; unknown facts are omitted. */
export function hookEnv(which: HookName, facts: RunFacts): Record<HookEnvVar, string> {
  const env: Record<string, string> = {};
  setIf(env, 'FORGE_HOOK', which);
  setIf(env, 'FORGE_JOB', facts.job);
  setIf(env, 'FORGE_RUN_ID', facts.runId);
  setIf(env, 'FORGE_REPOSITORY', facts.repository);
  setIf(env, 'FORGE_STATUS', facts.status);
  setIf(env, 'FORGE_HOSTNAME', facts.hostname);
  setIf(env, 'FORGE_STARTED_AT', facts.startedAt.toISOString());
  setIf(env, 'FORGE_FINISHED_AT', facts.finishedAt?.toISOString());
  setIf(env, 'FORGE_DURATION_MS', facts.durationMs === undefined ? undefined : Math.round(facts.durationMs));
  setIf(env, 'FORGE_SNAPSHOT_ID', facts.snapshotId);
  setIf(env, 'FORGE_BYTES_ADDED', facts.bytesAdded);
  setIf(env, 'FORGE_FILES_NEW', facts.filesNew);
  setIf(env, 'FORGE_FILES_CHANGED', facts.filesChanged);
  setIf(env, 'FORGE_ERROR_CODE', facts.errorCode);
  setIf(env, 'FORGE_ERROR_MESSAGE', facts.errorMessage);
  setIf(env, 'FORGE_EXIT_CODE', facts.exitCode);
  setIf(env, 'FORGE_LOG_PATH', facts.logPath);
  return env as Record<HookEnvVar, string>;
}

/** Keeps the last `limit` characters of what was appended. */
class OutputTail {
  #chunks: string[] = [];
  #length = 0;
  #truncated = false;
  readonly #limit: number;
  constructor(limit: number) {
    this.#limit = limit;
  }

  append(text: string): void {
    if (!text) return;
    this.#chunks.push(text);
    this.#length += text.length;
    if (this.#length > this.#limit * 2) this.#compact();
  }

  #compact(): void {
    const all = this.#chunks.join('');
    if (all.length > this.#limit) this.#truncated = true;
    const kept = all.slice(-this.#limit);
    this.#chunks = [kept];
    this.#length = kept.length;
  }

  text(): string {
    this.#compact();
    const text = this.#chunks[0] ?? '';
    if (!this.#truncated) return text;
    // Start at a line boundary when one is near, so the first line is not a fragment.
    const nl = text.indexOf('\n');
    return nl >= 0 && nl < 4096 ? text.slice(nl + 1) : text;
  }
}

/** Splits one stream's decoded text into lines for `onOutput`. */
class LineSplitter {
  #partial = '';
  readonly #emit: (line: string) => void;
  constructor(emit: (line: string) => void) {
    this.#emit = emit;
  }

  push(text: string): void {
    this.#partial += text;
    let nl = this.#partial.indexOf('\n');
    while (nl >= 0) {
      this.#emit(this.#partial.slice(0, nl).replace(/\r$/, ''));
      this.#partial = this.#partial.slice(nl + 1);
      nl = this.#partial.indexOf('\n');
    }
    if (this.#partial.length > MAX_LINE) {
      this.#emit(this.#partial);
      this.#partial = '';
    }
  }

  flush(): void {
    if (this.#partial) this.#emit(this.#partial.replace(/\r$/, ''));
    this.#partial = '';
  }
}

/**
 * Runs a hook command with `/bin/sh -c` in its own process group, the run's facts in `FORGE_*`
 * variables (on top of `opts.env`), stdin closed. On timeout or abort the whole group gets
 * SIGTERM, and SIGKILL {@link HOOK_KILL_GRACE_MS} later if anything of it is still alive.
 * Never rejects: a command that cannot start comes back with `spawnError`. Processes a hook
 * leaves running in the background are not killed when it exits normally.
 */
export function runHook(
  which: HookName,
  command: string,
  facts: RunFacts,
  opts: RunHookOptions,
): Promise<HookResult> {
  const started = performance.now();
  const tail = new OutputTail(HOOK_OUTPUT_LIMIT);
  const graceMs = opts.killGraceMs ?? HOOK_KILL_GRACE_MS;
  const result = (fields: Partial<HookResult>): HookResult => ({
    hook: which,
    exitCode: null,
    signal: null,
    timedOut: false,
    aborted: false,
    timeoutMs: opts.timeoutMs,
    durationMs: Math.round(performance.now() - started),
    output: tail.text(),
    ...fields,
  });
  if (opts.signal?.aborted) return Promise.resolve(result({ aborted: true }));

  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(opts.env ?? process.env)) {
    if (value !== undefined && !(HOOK_ENV_VARS as readonly string[]).includes(key)) env[key] = value;
  }
  Object.assign(env, hookEnv(which, facts));

  return new Promise<HookResult>((resolve) => {
    let child: ChildProcess;
    try {
      child = spawn('/bin/sh', ['-c', command], {
        cwd: opts.cwd,
        env,
        detached: true,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
    } catch (e) {
      resolve(result({ spawnError: e instanceof Error ? e.message : String(e) }));
      return;
    }

    const onOutput = opts.onOutput;
    const emit = (line: string) => {
      try {
        onOutput?.(line);
      } catch {
        // A broken output callback must not break the hook.
      }
    };
    let openStreams = 0;
    const splitters: LineSplitter[] = [];
    const attach = (stream: Readable | null) => {
      if (!stream) return;
      openStreams++;
      const decoder = new StringDecoder('utf8');
      const splitter = new LineSplitter(emit);
      splitters.push(splitter);
      stream.on('data', (chunk: Buffer) => {
        const text = decoder.write(chunk);
        tail.append(text);
        if (onOutput) splitter.push(text);
      });
      stream.once('close', () => {
        const rest = decoder.end();
        tail.append(rest);
        if (onOutput) splitter.push(rest);
        openStreams--;
        maybeFinish();
      });
      stream.on('error', () => {});
    };
    attach(child.stdout);
    attach(child.stderr);

    let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
    let killedBy: 'timeout' | 'abort' | undefined;
    let finished = false;
    let drainTimer: NodeJS.Timeout | undefined;
    let killTimer: NodeJS.Timeout | undefined;
    const pgid = child.pid;

    const killGroup = (sig: NodeJS.Signals): void => {
      if (pgid === undefined) return;
      try {
        process.kill(-pgid, sig);
      } catch {
        // ESRCH: the group is gone already.
      }
    };
    const groupGone = (): boolean => {
      if (pgid === undefined) return true;
      try {
        process.kill(-pgid, 0);
        return false;
      } catch (e) {
        return (e as NodeJS.ErrnoException).code === 'ESRCH';
      }
    };

    const terminate = (reason: 'timeout' | 'abort') => {
      if (killedBy || exit || finished) return;
      killedBy = reason;
      killGroup('SIGTERM');
      killTimer = setTimeout(() => {
        killTimer = undefined;
        killGroup('SIGKILL');
      }, clampTimer(graceMs));
    };
    const timeoutTimer = setTimeout(() => terminate('timeout'), clampTimer(opts.timeoutMs));
    const onAbort = () => terminate('abort');
    opts.signal?.addEventListener('abort', onAbort, { once: true });

    function maybeFinish(): void {
      if (finished || !exit || openStreams > 0) return;
      finished = true;
      clearTimeout(timeoutTimer);
      clearTimeout(drainTimer);
      opts.signal?.removeEventListener('abort', onAbort);
      // After a kill, the SIGKILL stays scheduled while anything of the group is left (a
      // background process that ignores SIGTERM and does not hold the output pipes).
      if (killTimer && groupGone()) clearTimeout(killTimer);
      for (const s of splitters) s.flush();
      resolve(
        result({
          exitCode: exit.code,
          signal: exit.signal,
          timedOut: killedBy === 'timeout',
          aborted: killedBy === 'abort',
        }),
      );
    }

    child.once('error', (e) => {
      // Only a failed spawn leaves no pid; errors of a running child (kill) are not fatal.
      if (child.pid !== undefined || finished) return;
      finished = true;
      clearTimeout(timeoutTimer);
      opts.signal?.removeEventListener('abort', onAbort);
      resolve(result({ spawnError: e.message }));
    });
    child.once('exit', (code, signal) => {
      exit = { code, signal };
      clearTimeout(timeoutTimer);
      if (openStreams > 0) {
        // Background processes may hold the pipes open: stop reading after a short drain.
        drainTimer = setTimeout(() => {
          child.stdout?.destroy();
          child.stderr?.destroy();
        }, DRAIN_MS);
      }
      maybeFinish();
    });
  });
}

/** setTimeout fires at once for delays above 2^31-1 ms (and for NaN): cap them instead. */
function clampTimer(ms: number): number {
  return Number.isNaN(ms) ? 0 : Math.min(Math.max(ms, 0), 2 ** 31 - 1);
}

/** The last non-empty line of a hook's output, shortened to 200 characters. */
export function lastOutputLine(output: string): string | undefined {
  const lines = output.split('\n');
  for (let i = lines.length - 1; i >= 0; i--) {
    const line = lines[i]!.trim();
    if (line) return line.length > 200 ? `${line.slice(0, 199)}…` : line;
  }
  return undefined;
}

const CONSEQUENCE: Record<HookName, string> = {
  before: 'the run was skipped',
  after: 'the run itself had succeeded',
  'on-error': 'the run had failed already',
};

/**
 * The error of a failed hook, or undefined when it succeeded (exit code 0). One line, e.g.
 * `before hook exited with 3 after 0.2 s: disk not mounted; the run was skipped`.
 *
 * Codes (no hook-specific code exists in `@backupforge/common` yet):
 * - `FORGE_ABORTED`: timed out (retryable), cancelled, or killed by a signal.
 * - `FORGE_USAGE`: non-zero exit, or the shell could not start — the configured command is
 *   the user's input, and it said no.
 *
 * `details` holds `{ hook, exitCode, signal, timedOut, aborted, durationMs, lastLine }`.
 */
export function hookFailure(result: HookResult, which: HookName = result.hook): ForgeError | undefined {
  if (
    result.exitCode === 0 &&
    !result.timedOut &&
    !result.aborted &&
    result.signal === null &&
    !result.spawnError
  ) {
    return undefined;
  }
  const last = lastOutputLine(result.output);
  const said = last ? `: ${last}` : '';
  const after = formatDuration(result.durationMs);
  const details = {
    hook: which,
    exitCode: result.exitCode,
    signal: result.signal,
    timedOut: result.timedOut,
    aborted: result.aborted,
    durationMs: result.durationMs,
    lastLine: last,
  };
  const end = `; ${CONSEQUENCE[which]}`;
  if (result.spawnError) {
    return new ForgeError(
      ForgeErrorCodes.FORGE_USAGE,
      `${which} hook could not be started: ${result.spawnError}${end}`,
      { details, hint: "check the job's hook working directory and that /bin/sh exists" },
    );
  }
  if (result.timedOut) {
    return new ForgeError(
      ForgeErrorCodes.FORGE_ABORTED,
      `${which} hook timed out after ${formatDuration(result.timeoutMs)} and was killed${said}${end}`,
      { details, retryable: true, hint: 'raise hooks.timeout or make the hook finish sooner' },
    );
  }
  if (result.aborted) {
    return new ForgeError(ForgeErrorCodes.FORGE_ABORTED, `${which} hook was cancelled after ${after}${end}`, {
      details,
    });
  }
  if (result.signal !== null) {
    return new ForgeError(
      ForgeErrorCodes.FORGE_ABORTED,
      `${which} hook was killed by ${result.signal} after ${after}${said}${end}`,
      { details },
    );
  }
  return new ForgeError(
    ForgeErrorCodes.FORGE_USAGE,
    `${which} hook exited with ${result.exitCode} after ${after}${said}${end}`,
    {
      details,
      hint: 'run the hook command by hand to see why it fails (FORGE_* variables: docs/notifications.md)',
    },
  );
}
