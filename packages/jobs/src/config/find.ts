import { access } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';

type Env = Readonly<Record<string, string | undefined>>;

/**
 * The places `forge` looks for its config, in order: `./forge.toml`,
 * `$XDG_CONFIG_HOME/backupforge/forge.toml` (default `~/.config/…`), `/etc/backupforge/forge.toml`.
 */
export function configCandidates(env: Env, cwd: string): string[] {
  const home = env.HOME || homedir();
  const xdg = env.XDG_CONFIG_HOME || join(home, '.config');
  return [
    resolve(cwd, 'forge.toml'),
    resolve(cwd, xdg, 'backupforge', 'forge.toml'),
    '/etc/backupforge/forge.toml',
  ];
}

/**
 * Finds the config file: `explicit` (`--config`) if given, else `$FORGE_CONFIG`, both returned
 * (absolute) whether or not they exist, so that a wrong path is an error rather than a fallback;
 * else the first of {@link configCandidates} that exists; else undefined.
 */
export async function findConfigFile(env: Env, cwd: string, explicit?: string): Promise<string | undefined> {
  if (explicit) return resolve(cwd, explicit);
  if (env.FORGE_CONFIG) return resolve(cwd, env.FORGE_CONFIG);
  for (const candidate of configCandidates(env, cwd)) {
    try {
      await access(candidate);
      return candidate;
    } catch {
      // next
    }
  }
  return undefined;
}
