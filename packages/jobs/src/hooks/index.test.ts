import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isForgeError } from '@backupforge/common';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { RunFacts } from '../types.ts';
import { HOOK_ENV_VARS, HOOK_OUTPUT_LIMIT, hookEnv, hookFailure, runHook } from './index.ts';

const facts: RunFacts = {
  job: 'home',
  runId: '01J9Z8ABCDEF',
  repository: 'nas-repo',
  status: 'failed',
  startedAt: new Date('2025-03-01T03:00:00.000Z'),
  finishedAt: new Date('2025-03-01T03:01:05.000Z'),
  durationMs: 65_000,
  snapshotId: 'a1b2c3d4e5f6',
  bytesAdded: 1_234_567,
  filesNew: 12,
  filesChanged: 3,
  errorCode: 'FORGE_LOCK_CONFLICT',
  errorMessage: 'repository is locked by pid 42 on nas; it\'s "busy"',
  exitCode: 11,
  logPath: '/var/log/forge/home.log',
  hostname: 'nas',
};

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'forge-hooks-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Parses `env -0` output (NUL-separated, so values with newlines survive). */
function parseEnv0(text: string): Map<string, string> {
  const map = new Map<string, string>();
  for (const entry of text.split('\0')) {
    const eq = entry.indexOf('=');
    if (eq > 0) map.set(entry.slice(0, eq), entry.slice(eq + 1));
  }
  return map;
}

/** Whether a pid is gone; a zombie no one reaped (PID 1 of a container may not) counts as gone. */
async function isGone(pid: number): Promise<boolean> {
  try {
    process.kill(pid, 0);
  } catch {
    return true;
  }
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true;
  }
}

async function waitGone(pid: number, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await isGone(pid)) return true;
    await new Promise((r) => setTimeout(r, 25));
  }
  return isGone(pid);
}

describe('runHook', () => {
  it('passes the run facts as FORGE_* variables and leaves unset ones out', async () => {
    const out = join(dir, 'env');
    const result = await runHook(
      'on-error',
      'env -0 > "$OUT"',
      { ...facts, snapshotId: undefined },
      {
        timeoutMs: 10_000,
        // A stale variable of the same name from the parent must not leak through.
        env: { PATH: process.env.PATH, OUT: out, FORGE_SNAPSHOT_ID: 'stale', KEEP_ME: 'yes' },
      },
    );
    expect(result.exitCode).toBe(0);
    const env = parseEnv0(await readFile(out, 'utf8'));
    expect(env.get('FORGE_HOOK')).toBe('on-error');
    expect(env.get('FORGE_JOB')).toBe('home');
    expect(env.get('FORGE_RUN_ID')).toBe('01J9Z8ABCDEF');
    expect(env.get('FORGE_REPOSITORY')).toBe('nas-repo');
    expect(env.get('FORGE_STATUS')).toBe('failed');
    expect(env.get('FORGE_HOSTNAME')).toBe('nas');
    expect(env.get('FORGE_STARTED_AT')).toBe('2025-03-01T03:00:00.000Z');
    expect(env.get('FORGE_FINISHED_AT')).toBe('2025-03-01T03:01:05.000Z');
    expect(env.get('FORGE_DURATION_MS')).toBe('65000');
    expect(env.get('FORGE_BYTES_ADDED')).toBe('1234567');
    expect(env.get('FORGE_FILES_NEW')).toBe('12');
    expect(env.get('FORGE_FILES_CHANGED')).toBe('3');
    expect(env.get('FORGE_ERROR_CODE')).toBe('FORGE_LOCK_CONFLICT');
    expect(env.get('FORGE_ERROR_MESSAGE')).toBe(facts.errorMessage);
    expect(env.get('FORGE_EXIT_CODE')).toBe('11');
    expect(env.get('FORGE_LOG_PATH')).toBe('/var/log/forge/home.log');
    expect(env.has('FORGE_SNAPSHOT_ID')).toBe(false);
    expect(env.get('KEEP_ME')).toBe('yes');
    // Every variable set is a documented one.
    for (const key of env.keys()) {
      if (key.startsWith('FORGE_')) expect(HOOK_ENV_VARS).toContain(key);
    }
  });

  it('omits facts a before hook does not have yet', () => {
    const env = hookEnv('before', {
      job: 'home',
      runId: 'r1',
      repository: 'repo',
      status: 'running',
      startedAt: new Date('2025-01-01T00:00:00Z'),
      hostname: 'h',
    });
    expect(Object.keys(env).sort()).toEqual(
      [
        'FORGE_HOOK',
        'FORGE_JOB',
        'FORGE_RUN_ID',
        'FORGE_REPOSITORY',
        'FORGE_STATUS',
        'FORGE_HOSTNAME',
        'FORGE_STARTED_AT',
      ].sort(),
    );
    expect(env.FORGE_STATUS).toBe('running');
  });

  it('captures the exit code and the output of both streams, line by line', async () => {
    const lines: string[] = [];
    const result = await runHook(
      'after',
      'echo to-stdout; echo to-stderr >&2; printf "no newline"; exit 3',
      facts,
      {
        timeoutMs: 10_000,
        cwd: dir,
        onOutput: (line) => lines.push(line),
      },
    );
    expect(result.exitCode).toBe(3);
    expect(result.signal).toBeNull();
    expect(result.timedOut).toBe(false);
    expect(result.output).toContain('to-stdout\n');
    expect(result.output).toContain('to-stderr\n');
    expect(result.output).toContain('no newline');
    expect(lines.sort()).toEqual(['no newline', 'to-stderr', 'to-stdout']);
    expect(result.durationMs).toBeGreaterThanOrEqual(0);
  });

  it('runs in the given working directory', async () => {
    const result = await runHook('before', 'pwd', facts, { timeoutMs: 10_000, cwd: dir });
    expect(result.output.trim()).toBe(dir);
  });

  it('keeps only the last 64 KiB of output', async () => {
    // 3000 numbered lines of ~60 characters: ~180 KB.
    const result = await runHook(
      'after',
      'i=0; while [ $i -lt 3000 ]; do echo "line $i ................................................"; i=$((i+1)); done',
      facts,
      { timeoutMs: 20_000 },
    );
    expect(result.exitCode).toBe(0);
    expect(result.output.length).toBeLessThanOrEqual(HOOK_OUTPUT_LIMIT);
    expect(result.output.length).toBeGreaterThan(HOOK_OUTPUT_LIMIT - 4096);
    expect(result.output).toMatch(/^line \d+ /); // starts at a line boundary
    expect(result.output).toContain('line 2999 ');
    expect(result.output).not.toContain('line 0 ');
  });

  it('kills the whole process group on timeout, grandchildren included', async () => {
    const pidFile = join(dir, 'pid');
    const started = Date.now();
    const result = await runHook('before', `sleep 60 & echo $! > "${pidFile}"; wait`, facts, {
      timeoutMs: 300,
    });
    expect(result.timedOut).toBe(true);
    expect(result.exitCode).toBeNull();
    expect(result.signal).toBe('SIGTERM');
    expect(Date.now() - started).toBeLessThan(4_000);
    const grandchild = Number((await readFile(pidFile, 'utf8')).trim());
    expect(grandchild).toBeGreaterThan(0);
    expect(await waitGone(grandchild, 2_000)).toBe(true);
    const err = hookFailure(result, 'before');
    expect(isForgeError(err, 'FORGE_ABORTED')).toBe(true);
    expect(err?.retryable).toBe(true);
    expect(err?.message).toMatch(/^before hook timed out after 0\.3 s and was killed; the run was skipped$/);
  });

  it('sends SIGKILL after the grace period when SIGTERM is ignored', async () => {
    const pidFile = join(dir, 'pid');
    const result = await runHook(
      'before',
      `trap '' TERM; sleep 60 & echo $! > "${pidFile}"; echo waiting; wait; wait`,
      facts,
      { timeoutMs: 200, killGraceMs: 300 },
    );
    expect(result.timedOut).toBe(true);
    expect(result.signal).toBe('SIGKILL');
    expect(result.durationMs).toBeGreaterThanOrEqual(450);
    expect(result.durationMs).toBeLessThan(4_000);
    const grandchild = Number((await readFile(pidFile, 'utf8')).trim());
    expect(await waitGone(grandchild, 2_000)).toBe(true);
    expect(hookFailure(result)?.message).toBe(
      'before hook timed out after 0.2 s and was killed: waiting; the run was skipped',
    );
  });

  it('kills the hook when the signal aborts', async () => {
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 100);
    const result = await runHook('after', 'sleep 60', facts, {
      timeoutMs: 60_000,
      signal: controller.signal,
    });
    expect(result.aborted).toBe(true);
    expect(result.timedOut).toBe(false);
    expect(result.durationMs).toBeLessThan(4_000);
    expect(isForgeError(hookFailure(result), 'FORGE_ABORTED')).toBe(true);
  });

  it('does not wait for background processes that keep the output open', async () => {
    const pidFile = join(dir, 'pid');
    const started = Date.now();
    const result = await runHook('after', `sleep 30 & echo $! > "${pidFile}"; echo done`, facts, {
      timeoutMs: 10_000,
    });
    expect(result.exitCode).toBe(0);
    expect(result.output).toContain('done');
    expect(Date.now() - started).toBeLessThan(3_000);
    process.kill(Number((await readFile(pidFile, 'utf8')).trim()), 'SIGKILL');
  });

  it('reports a command that cannot start', async () => {
    const result = await runHook('before', 'true', facts, { timeoutMs: 10_000, cwd: join(dir, 'missing') });
    expect(result.spawnError).toMatch(/ENOENT/);
    const err = hookFailure(result);
    expect(isForgeError(err, 'FORGE_USAGE')).toBe(true);
    expect(err?.message).toMatch(/^before hook could not be started: .*ENOENT.*; the run was skipped$/);
  });
});

describe('hookFailure', () => {
  it('is undefined for a hook that succeeded', async () => {
    const result = await runHook('before', 'echo fine', facts, { timeoutMs: 10_000 });
    expect(hookFailure(result)).toBeUndefined();
  });

  it('says which hook failed, how, with its last output line, and that the run was skipped', async () => {
    const result = await runHook(
      'before',
      'echo "checking /mnt/backup"; echo "disk not mounted" >&2; echo; exit 3',
      facts,
      { timeoutMs: 10_000 },
    );
    const err = hookFailure(result, 'before');
    expect(isForgeError(err, 'FORGE_USAGE')).toBe(true);
    expect(err?.message).toMatch(
      /^before hook exited with 3 after \d+\.\d s: disk not mounted; the run was skipped$/,
    );
    expect(err?.message).not.toContain('\n');
    expect(err?.details).toMatchObject({
      hook: 'before',
      exitCode: 3,
      timedOut: false,
      lastLine: 'disk not mounted',
    });
    expect(err?.toOneLine()).toContain('run the hook command by hand');
  });

  it('words the consequence per hook and copes with no output', async () => {
    const result = await runHook('after', 'exit 1', facts, { timeoutMs: 10_000 });
    expect(hookFailure(result)?.message).toMatch(
      /^after hook exited with 1 after \d+\.\d s; the run itself had succeeded$/,
    );
  });
});
