import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { reexecPlan, TUNED_ENV } from './memory-tuning.ts';

const base = {
  argv: ['/usr/bin/node', '/opt/forge/main.js', '-r', '/srv/repo', 'backup', '/home'],
  execArgv: [] as string[],
  execPath: '/usr/bin/node',
  env: { PATH: '/usr/bin', FORGE_PASSWORD: 'pw' } as NodeJS.ProcessEnv,
  platform: 'linux',
  canExec: true,
};

describe('reexecPlan', () => {
  it('re-executes data commands with the malloc settings and a small young generation', () => {
    const plan = reexecPlan(base);
    expect(plan?.args).toEqual([
      '/usr/bin/node',
      '--max-semi-space-size=2',
      '/opt/forge/main.js',
      '-r',
      '/srv/repo',
      'backup',
      '/home',
    ]);
    expect(plan?.env).toMatchObject({
      PATH: '/usr/bin',
      FORGE_PASSWORD: 'pw',
      MALLOC_ARENA_MAX: '2',
      [TUNED_ENV]: '1',
    });
  });

  it('leaves other commands, a tuned process, other platforms and old Node alone', () => {
    expect(
      reexecPlan({ ...base, argv: ['/usr/bin/node', '/opt/forge/main.js', 'snapshots'] }),
    ).toBeUndefined();
    expect(reexecPlan({ ...base, argv: ['/usr/bin/node', '/opt/forge/main.js', '--help'] })).toBeUndefined();
    expect(reexecPlan({ ...base, env: { ...base.env, [TUNED_ENV]: '1' } })).toBeUndefined();
    expect(reexecPlan({ ...base, env: { ...base.env, [TUNED_ENV]: '0' } })).toBeUndefined();
    expect(reexecPlan({ ...base, platform: 'darwin' })).toBeUndefined();
    expect(reexecPlan({ ...base, canExec: false })).toBeUndefined();
  });

  it("keeps the user's own settings", () => {
    const plan = reexecPlan({
      ...base,
      execArgv: ['--max-semi-space-size=16'],
      env: { ...base.env, MALLOC_ARENA_MAX: '4', NODE_OPTIONS: '--max-old-space-size=512' },
    });
    expect(plan?.args.slice(0, 3)).toEqual([
      '/usr/bin/node',
      '--max-semi-space-size=16',
      '/opt/forge/main.js',
    ]);
    expect(plan?.env.MALLOC_ARENA_MAX).toBe('4');
    const viaOptions = reexecPlan({ ...base, env: { ...base.env, NODE_OPTIONS: '--max-semi-space-size=8' } });
    expect(viaOptions?.args).not.toContain('--max-semi-space-size=2');
  });
});

describe('tuneMemory (re-executing for real)', () => {
  it('runs the command in a re-executed process with the settings, and exits with its code', () => {
    const dir = mkdtempSync(join(tmpdir(), 'forge-tune-'));
    try {
      // A stand-in for main.js: tune, then report what the (re-executed) process sees.
      const script = join(dir, 'main.mjs');
      const mod = new URL('./memory-tuning.ts', import.meta.url).pathname;
      writeFileSync(
        script,
        `import { tuneMemory } from ${JSON.stringify(mod)};
tuneMemory();
console.log(JSON.stringify({ tuned: process.env.${TUNED_ENV}, arenas: process.env.MALLOC_ARENA_MAX, execArgv: process.execArgv, argv: process.argv.slice(2) }));
process.exitCode = 7;`,
      );
      const r = spawnSync(
        process.execPath,
        ['--disable-warning=ExperimentalWarning', script, 'check', '--read-data'],
        {
          encoding: 'utf8',
          env: { ...process.env, [TUNED_ENV]: '' },
        },
      );
      // An empty value counts as set: nothing re-executes. Now without it:
      expect(JSON.parse(r.stdout).tuned).toBe('');
      const env = { ...process.env };
      delete env[TUNED_ENV];
      delete env.MALLOC_ARENA_MAX;
      const t = spawnSync(
        process.execPath,
        ['--disable-warning=ExperimentalWarning', script, 'check', '--read-data'],
        {
          encoding: 'utf8',
          env,
        },
      );
      expect(t.status).toBe(7);
      const seen = JSON.parse(t.stdout);
      // Re-executed (the flag and the arena setting), and the marker not passed on to children.
      expect(seen).toMatchObject({ arenas: '2', argv: ['check', '--read-data'] });
      expect(seen.tuned).toBeUndefined();
      expect(seen.execArgv).toContain('--max-semi-space-size=2');
      expect(t.stderr).toBe('');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
