// Shared helpers for tests that drive the real `forge` binary.
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../../..');
/** The built CLI (turbo builds it before these tests run). */
export const FORGE_BIN = join(REPO_ROOT, 'apps/forge/dist/main.js');

export interface ForgeRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** The caller's environment without FORGE_* variables, plus `extra`. */
export function cleanEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env))
    if (v !== undefined && !k.startsWith('FORGE_')) env[k] = v;
  return Object.assign(env, extra);
}

export interface RunOptions {
  env?: Record<string, string>;
  input?: Buffer | string;
  cwd?: string;
  timeoutMs?: number;
}

/** Runs a command with a clean environment (see {@link cleanEnv}) and collects its output. */
export function runCommand(cmd: string, args: string[], opts: RunOptions = {}): Promise<ForgeRun> {
  return new Promise((res, rej) => {
    const child = spawn(cmd, args, {
      env: cleanEnv(opts.env),
      cwd: opts.cwd ?? REPO_ROOT,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
    child.on('error', rej);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      res({
        code: code ?? (signal ? 128 : -1),
        stdout: Buffer.concat(out).toString(),
        stderr: Buffer.concat(err).toString(),
      });
    });
    child.stdin.on('error', () => {}); // a command that exits without reading its input
    child.stdin.end(opts.input ?? '');
  });
}

/** Runs `forge` with Node (the same Node running the tests); FORGE_* from the caller's shell are dropped. */
export function forge(args: string[], opts: RunOptions = {}): Promise<ForgeRun> {
  return runCommand(process.execPath, [FORGE_BIN, ...args], opts);
}

/** A fresh temporary directory, removed by the returned cleanup. */
export async function tempDir(
  prefix = 'forge-test-',
): Promise<{ path: string; cleanup: () => Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), prefix));
  return { path, cleanup: () => rm(path, { recursive: true, force: true }) };
}

/** Parses JSON lines output. */
export function jsonLines(s: string): Record<string, unknown>[] {
  return s
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}
