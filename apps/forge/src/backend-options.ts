import { homedir } from 'node:os';
import { join } from 'node:path';
import { ForgeError } from '@backupforge/common';

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

/** `--cache-dir`, else `$XDG_CACHE_HOME/backupforge`, else `~/.cache/backupforge`. */
export function cacheDirFor(env: NodeJS.ProcessEnv, given?: string): string {
  if (given) return given;
  const base = env.XDG_CACHE_HOME || join(env.HOME || homedir(), '.cache');
  return join(base, 'backupforge');
}

/** `{ [key]: value }` when value is defined, else `{}` (for optional properties under exactOptionalPropertyTypes). */
export function optional<K extends string, V>(key: K, value: V | undefined): { [P in K]?: V } {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: V };
}
