// Process-level memory settings for the commands that move data. They can only be set when a
// process starts (glibc reads MALLOC_* once; V8 sizes the main heap's young generation once), so
// `main.ts` re-executes itself with them, in place (same pid, same stdio), before loading
// anything else. Only node:process is used here: this runs before the CLI is imported.

/** Commands that read or write pack data, where the settings below lower peak memory. */
const DATA_COMMANDS = new Set([
  'backup',
  'restore',
  'check',
  'copy',
  'prune',
  'forget',
  'repair',
  'dump',
  'run',
  'daemon',
]);

/** Set in the re-executed process (and honoured when a user sets it to 0: no re-execution). */
export const TUNED_ENV = 'FORGE_MEMORY_TUNED';

/**
 * glibc: two malloc arenas instead of up to eight per core (every thread that allocates gets
 * its own otherwise, and keeps what it freed). A fixed mmap threshold (4 MiB) was tried too: it
 * saved little once buffers were pooled, and fixing it also fixes the trim threshold at 128 KiB,
 * which cost `check --read-data` 12% more time in system calls.
 */
const MALLOC_ENV: Readonly<Record<string, string>> = { MALLOC_ARENA_MAX: '2' };

/**
 * V8: the main thread's young generation at 2 MiB per semi-space instead of up to 16 (32 MiB
 * more touched for nothing: the data lives in ArrayBuffers outside the heap).
 */
const V8_FLAGS = ['--max-semi-space-size=2'];

export interface ReexecPlan {
  readonly args: string[];
  readonly env: Record<string, string>;
}

/**
 * What to re-execute with, or undefined to go on as is: not a data command, already tuned (or
 * tuning turned off with FORGE_MEMORY_TUNED=0), not Linux (the malloc settings are glibc's), or
 * no `process.execve` (Node < 22.15).
 */
export function reexecPlan(p: {
  readonly argv: readonly string[];
  readonly execArgv: readonly string[];
  readonly execPath: string;
  readonly env: NodeJS.ProcessEnv;
  readonly platform: string;
  readonly canExec: boolean;
}): ReexecPlan | undefined {
  if (!p.canExec || p.platform !== 'linux' || p.env[TUNED_ENV] !== undefined) return undefined;
  const script = p.argv[1];
  if (!script) return undefined;
  const rest = p.argv.slice(2);
  if (!rest.some((a) => DATA_COMMANDS.has(a))) return undefined;
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(p.env)) if (v !== undefined) env[k] = v;
  for (const [k, v] of Object.entries(MALLOC_ENV)) env[k] ??= v;
  env[TUNED_ENV] = '1';
  // The user's own heap flags (on the command line or in NODE_OPTIONS) win.
  const mine = `${p.execArgv.join(' ')} ${p.env.NODE_OPTIONS ?? ''}`;
  const flags = V8_FLAGS.filter((f) => !mine.includes(f.slice(0, f.indexOf('='))));
  return { args: [p.execPath, ...p.execArgv, ...flags, script, ...rest], env };
}

/** Re-executes this process with the memory settings when `reexecPlan` says so; else returns. */
export function tuneMemory(): void {
  const execve = (
    process as { execve?: (file: string, args: string[], env: Record<string, string>) => never }
  ).execve;
  const plan = reexecPlan({
    argv: process.argv,
    execArgv: process.execArgv,
    execPath: process.execPath,
    env: process.env,
    platform: process.platform,
    canExec: typeof execve === 'function',
  });
  if (!plan || !execve) {
    // Re-executed: the marker is not passed on, so that a forge started by this one (a job's
    // hook, say) tunes itself too. A user's FORGE_MEMORY_TUNED=0 stays.
    if (process.env[TUNED_ENV] === '1') delete process.env[TUNED_ENV];
    return;
  }
  try {
    execve.call(process, process.execPath, plan.args, plan.env);
  } catch {
    // Not allowed here (a sandbox, say): run untuned.
  }
}
