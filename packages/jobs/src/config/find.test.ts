import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configCandidates, findConfigFile } from './index.ts';

let dir: string;
let cwd: string;
let xdg: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'forge-find-'));
  cwd = join(dir, 'work');
  xdg = join(dir, 'xdg');
  await mkdir(cwd);
  await mkdir(join(xdg, 'backupforge'), { recursive: true });
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('findConfigFile', () => {
  it('lists the search path in order', () => {
    expect(configCandidates({ HOME: '/home/ann' }, '/w')).toEqual([
      '/w/forge.toml',
      '/home/ann/.config/backupforge/forge.toml',
      '/etc/backupforge/forge.toml',
    ]);
    expect(configCandidates({ HOME: '/home/ann', XDG_CONFIG_HOME: '/x' }, '/w')[1]).toBe(
      '/x/backupforge/forge.toml',
    );
  });

  it('prefers --config, then $FORGE_CONFIG, even when they do not exist', async () => {
    const env = { FORGE_CONFIG: 'env.toml', XDG_CONFIG_HOME: xdg };
    expect(await findConfigFile(env, cwd, 'given.toml')).toBe(join(cwd, 'given.toml'));
    expect(await findConfigFile(env, cwd)).toBe(join(cwd, 'env.toml'));
  });

  it('then takes the first existing file of ./forge.toml and the XDG config', async () => {
    const env = { XDG_CONFIG_HOME: xdg, HOME: dir };
    const user = join(xdg, 'backupforge', 'forge.toml');
    await writeFile(user, '');
    expect(await findConfigFile(env, cwd)).toBe(user);
    await writeFile(join(cwd, 'forge.toml'), '');
    expect(await findConfigFile(env, cwd)).toBe(join(cwd, 'forge.toml'));
  });

  it('falls back to ~/.config when XDG_CONFIG_HOME is unset', async () => {
    const home = join(dir, 'home');
    await mkdir(join(home, '.config', 'backupforge'), { recursive: true });
    await writeFile(join(home, '.config', 'backupforge', 'forge.toml'), '');
    expect(await findConfigFile({ HOME: home }, join(dir, 'xdg'))).toBe(
      join(home, '.config', 'backupforge', 'forge.toml'),
    );
  });
});
