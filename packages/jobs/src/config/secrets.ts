import { spawn } from 'node:child_process';
import { readFile, stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { ForgeError, toForgeError } from '@backupforge/common';
import type { SecretRef } from '../types.ts';

/** Where and how secrets are resolved. */
export interface ResolveSecretOptions {
  /** Environment for `env` references and for commands. */
  readonly env: Readonly<Record<string, string | undefined>>;
  /** Directory that relative files and commands start from. */
  readonly cwd: string;
  /** Gets non-fatal advice, e.g. a secret file readable by group or others. */
  readonly onWarning?: (message: string) => void;
  /** How long a `command` may run; default 60 s. */
  readonly timeoutMs?: number;
}

/** A human name for where a secret comes from; never contains the secret itself. */
export function describeSecretRef(ref: SecretRef): string {
  switch (ref.kind) {
    case 'env':
      return `environment variable ${ref.name}`;
    case 'file':
      return `file ${ref.path}`;
    case 'command':
      return `command "${ref.command}"`;
    case 'value':
      return 'inline value';
  }
}

/** Removes one trailing `\n` (or `\r\n`), as `$(…)` and restic's --password-file do. */
function trimOneNewline(s: string): string {
  if (s.endsWith('\r\n')) return s.slice(0, -2);
  if (s.endsWith('\n')) return s.slice(0, -1);
  return s;
}

function emptySecret(ref: SecretRef): ForgeError {
  return new ForgeError('FORGE_USAGE', `the secret from ${describeSecretRef(ref)} is empty`, {
    hint: 'put the secret there, or point forge.toml at the right source',
  });
}

/**
 * Resolves a secret reference to its value. `env`: the variable must be set and non-empty;
 * `file`: read (relative to `cwd`), warns via `onWarning` when group or others may read it;
 * `command`: run with the shell, its stdout is the secret; one trailing newline is removed.
 * Errors (ForgeError) name the source, never the secret: FORGE_USAGE for a missing variable,
 * an empty secret or a failed command (exit code and first stderr line), FORGE_NOT_FOUND /
 * FORGE_PERMISSION for an unreadable file.
 */
export async function resolveSecret(ref: SecretRef, opts: ResolveSecretOptions): Promise<string> {
  switch (ref.kind) {
    case 'value':
      return ref.value;
    case 'env': {
      const v = opts.env[ref.name];
      if (v === undefined) {
        throw new ForgeError('FORGE_USAGE', `environment variable ${ref.name} is not set`, {
          hint: `export ${ref.name} before running forge, or change the secret reference in forge.toml`,
          details: { variable: ref.name },
        });
      }
      if (v === '') throw emptySecret(ref);
      return v;
    }
    case 'file': {
      const path = resolve(opts.cwd, ref.path);
      let text: string;
      try {
        const st = await stat(path);
        if ((st.mode & 0o077) !== 0) {
          const mode = (st.mode & 0o777).toString(8).padStart(4, '0');
          opts.onWarning?.(
            `secret file ${path} can be read by other users (mode ${mode}); restrict it with: chmod 600 ${path}`,
          );
        }
        text = await readFile(path, 'utf8');
      } catch (e) {
        const code = (e as { code?: unknown }).code;
        if (code === 'ENOENT') {
          throw new ForgeError('FORGE_NOT_FOUND', `secret file ${path} does not exist`, {
            hint: 'create it or fix the path in forge.toml',
            cause: e,
          });
        }
        throw toForgeError(e, `cannot read secret file ${path}`);
      }
      const v = trimOneNewline(text);
      if (v === '') throw emptySecret({ kind: 'file', path });
      return v;
    }
    case 'command': {
      const v = trimOneNewline(await runSecretCommand(ref.command, opts));
      if (v === '') throw emptySecret(ref);
      return v;
    }
  }
}

function runSecretCommand(command: string, opts: ResolveSecretOptions): Promise<string> {
  const timeoutMs = opts.timeoutMs ?? 60_000;
  return new Promise((resolvePromise, reject) => {
    const child = spawn(command, {
      shell: true,
      cwd: opts.cwd,
      env: opts.env as NodeJS.ProcessEnv,
      stdio: ['ignore', 'pipe', 'pipe'],
      // Own process group, so that a timeout kills the shell and whatever it started.
      detached: true,
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let settled = false;
    const timer = setTimeout(() => {
      settled = true;
      try {
        if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
      } catch {
        child.kill('SIGKILL');
      }
      child.stdout.destroy();
      child.stderr.destroy();
      reject(
        new ForgeError('FORGE_USAGE', `secret command "${command}" timed out after ${timeoutMs / 1000} s`, {
          hint: 'make the command finish without waiting for input',
        }),
      );
    }, timeoutMs);
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', (e) => {
      clearTimeout(timer);
      if (settled) return;
      settled = true;
      reject(
        new ForgeError('FORGE_USAGE', `secret command "${command}" could not be started: ${e.message}`, {
          cause: e,
        }),
      );
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (settled) return;
      settled = true;
      if (code === 0) {
        resolvePromise(Buffer.concat(out).toString('utf8'));
        return;
      }
      const firstLine = Buffer.concat(err)
        .toString('utf8')
        .split(/\r?\n/)
        .find((l) => l.trim() !== '');
      const how = code !== null ? `exit code ${code}` : `signal ${signal ?? 'unknown'}`;
      reject(
        new ForgeError(
          'FORGE_USAGE',
          `secret command "${command}" failed (${how})${firstLine ? `: ${firstLine.trim()}` : ''}`,
          { hint: 'run the command by hand to see what is wrong', details: { exitCode: code } },
        ),
      );
    });
  });
}
