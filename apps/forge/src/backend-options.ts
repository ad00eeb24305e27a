import { homedir } from 'node:os';
import { join } from 'node:path';
import { ForgeError, type StorageBackend } from '@backupforge/common';

/** `-o key=value` pairs → settings for `openBackend`. */
export function parseSettings(pairs: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const p of pairs) {
    const eq = p.indexOf('=');
    if (eq <= 0) {
      throw new ForgeError('FORGE_USAGE', `-o ${p}: expected key=value`, {
        hint: "for example '-o s3.region=eu-central-1' or '-o sftp.connections=4'",
      });
    }
    out[p.slice(0, eq).trim()] = p.slice(eq + 1);
  }
  return out;
}

/** `--limit-upload 1024` → 1024 (KiB/s); undefined when not given. */
export function parseLimit(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) {
    throw new ForgeError('FORGE_USAGE', `${flag} ${value}: expected a positive number of KiB/s`, {
      hint: `for example '${flag} 2048' for 2 MiB/s`,
    });
  }
  return n;
}

/** Local directories (and `memory:`) need no retries or cache; every other scheme is remote. */
export function isLocalLocation(location: string): boolean {
  const m = /^([a-z][a-z0-9+.-]*):/i.exec(location);
  return !m || m[1]!.length === 1 || ['local', 'memory'].includes(m[1]!.toLowerCase());
}

/** `--cache-dir`, else `$XDG_CACHE_HOME/backupforge`, else `~/.cache/backupforge`. */
export function cacheDirFor(env: NodeJS.ProcessEnv, given?: string): string {
  if (given) return given;
  const base = env.XDG_CACHE_HOME || join(env.HOME || homedir(), '.cache');
  return join(base, 'backupforge');
}

export interface DecorateOptions {
  readonly remote: boolean;
  readonly limitUploadKiB: number | undefined;
  readonly limitDownloadKiB: number | undefined;
  /** Root of the cache; the backend's own folder is below it. Undefined: no cache. */
  readonly cacheDir: string | undefined;
  readonly onRetry: (message: string) => void;
  readonly stats: (f: () => { retries: number; succeededAfterRetry: number }) => void;
}

/** Placeholder until the storage decorators land: returns the backend unchanged. */
export function decorateBackend(backend: StorageBackend, _opts: DecorateOptions): StorageBackend {
  return backend;
}
