// Config-file jobs through the built `forge` binary: forge run (cron-quiet, --json, exit codes,
// overlap lock, hooks, notifications), forge jobs/runs, forge daemon (scheduling + SIGTERM),
// forge schedule print, forge catalog rebuild after the database is gone.
import { spawn } from 'node:child_process';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage } from 'node:http';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FORGE_BIN, type ForgeRun, forge, jsonLines, tempDir } from '../support/cli.ts';
import { expectNoStack, makeFixture } from './helpers.ts';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

interface Setup {
  base: string;
  src: string;
  config: string;
  env: Record<string, string>;
  forgeJobs(args: string[], extra?: Record<string, string>): Promise<ForgeRun>;
}

async function setup(toml: (s: { base: string; src: string; repo: string }) => string): Promise<Setup> {
  const t = await tempDir('forge-jobs-');
  cleanups.push(t.cleanup);
  const base = t.path;
  const src = join(base, 'src');
  const repo = join(base, 'repo');
  await mkdir(src);
  await makeFixture(src);
  const config = join(base, 'forge.toml');
  await writeFile(config, toml({ base, src, repo }));
  const env = {
    JOBS_TEST_PW: 'jobs-pw',
    XDG_STATE_HOME: join(base, 'state'),
    XDG_CACHE_HOME: join(base, 'cache'),
  };
  const init = await forge(['init', '-r', repo], { env: { FORGE_PASSWORD: 'jobs-pw' } });
  expect(init.code, init.stderr).toBe(0);
  return {
    base,
    src,
    config,
    env,
    forgeJobs: (args, extra = {}) => forge([...args, '--config', config], { env: { ...env, ...extra } }),
  };
}

const REPO = (repo: string) => `[repositories.main]\nlocation = "${repo}"\npassword_env = "JOBS_TEST_PW"\n`;

describe('forge run', () => {
  it('is silent under cron on success, prints a JSON summary with --json, and records history', async () => {
    const s = await setup(
      ({ src, repo }) => `${REPO(repo)}
[jobs.home]
paths = ["${src}"]
tags = ["nightly"]
[jobs.home.retention]
keep_last = 2
`,
    );
    const quiet = await s.forgeJobs(['run', 'home']);
    expect(quiet.code, quiet.stderr).toBe(0);
    expect(quiet.stdout).toBe('');
    expect(quiet.stderr).toBe('');

    for (let i = 0; i < 2; i++) expect((await s.forgeJobs(['run', 'home'])).code).toBe(0);
    const json = await s.forgeJobs(['run', 'home', '--json']);
    expect(json.code, json.stderr).toBe(0);
    const summary = jsonLines(json.stdout).find((l) => l.message_type === 'summary')!;
    expect(summary).toMatchObject({ job: 'home', status: 'success', exit_code: 0 });
    expect(summary.steps).toEqual([
      expect.objectContaining({ step: 'backup', ok: true }),
      expect.objectContaining({ step: 'forget', ok: true, detail: 'removed 1' }),
      expect.objectContaining({ step: 'prune', ok: true }),
    ]);
    expect(await readFile(String(summary.log_path), 'utf8')).toContain('forget: removed 1 snapshot(s)');

    const snaps = await forge(['snapshots', '-r', join(s.base, 'repo'), '--json'], {
      env: { FORGE_PASSWORD: 'jobs-pw' },
    });
    expect(jsonLines(snaps.stdout).filter((l) => l.message_type === 'snapshot')).toHaveLength(2);

    const runs = await s.forgeJobs(['runs', 'home', '--json']);
    const history = jsonLines(runs.stdout).filter((l) => l.message_type === 'run');
    expect(history).toHaveLength(4);
    expect(history.every((r) => r.status === 'success')).toBe(true);
    const jobs = await s.forgeJobs(['jobs', '--json']);
    expect(jsonLines(jobs.stdout)).toEqual([
      expect.objectContaining({ name: 'home', type: 'fs', last_status: 'success', schedule: null }),
    ]);
  });

  it('a failing run exits 1 with one line naming the job and the log, runs on_error and notifies', async () => {
    const received: { url: string; body: Record<string, unknown> }[] = [];
    const server = createServer((req: IncomingMessage, res) => {
      let body = '';
      req.on('data', (d) => {
        body += d;
      });
      req.on('end', () => {
        received.push({
          url: req.url ?? '',
          body: body ? (JSON.parse(body) as Record<string, unknown>) : {},
        });
        res.end('ok');
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    cleanups.push(() => new Promise((r) => server.close(() => r())));
    const port = (server.address() as { port: number }).port;
    const s = await setup(
      ({ base, src, repo }) => `${REPO(repo)}
[notifiers.ops]
type = "webhook"
url = "http://127.0.0.1:${port}/hook"
on = ["failure"]

[jobs.home]
paths = ["${src}"]
notify = ["ops"]
[jobs.home.hooks]
on_error = "echo \\"$FORGE_JOB $FORGE_STATUS $FORGE_ERROR_CODE\\" > ${join(base, 'on-error.txt')}"
`,
    );
    const r = await s.forgeJobs(['run', 'home'], { JOBS_TEST_PW: 'wrong' });
    expect(r.code).toBe(1);
    expectNoStack(r);
    const errors = r.stderr.split('\n').filter((l) => l.startsWith('error:'));
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(/^error: job home failed: .*password.*\(log: .*\.log\)$/);
    expect((await readFile(join(s.base, 'on-error.txt'), 'utf8')).trim()).toBe(
      'home failed FORGE_WRONG_PASSWORD',
    );
    expect(received).toHaveLength(1);
    expect(received[0]).toMatchObject({
      url: '/hook',
      body: { event: 'failure', job: 'home', status: 'failed' },
    });
  });

  it('a typo in forge.toml names the file, line and fix; an unknown job lists the defined ones', async () => {
    const s = await setup(
      ({ src, repo }) => `${REPO(repo)}\n[jobs.home]\npaths = ["${src}"]\nexlude = ["*.tmp"]\n`,
    );
    const typo = await s.forgeJobs(['run', 'home']);
    expect(typo.code).toBe(2);
    expectNoStack(typo);
    expect(typo.stderr).toMatch(
      /forge\.toml:7:1: unknown key "exlude" in \[jobs\.home\] \(did you mean "exclude"\?\)/,
    );

    await writeFile(s.config, `${REPO(join(s.base, 'repo'))}\n[jobs.home]\npaths = ["${s.src}"]\n`);
    const unknown = await s.forgeJobs(['run', 'hom']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/no job 'hom'.*jobs defined: home/s);
  });

  it('an overlapping run of the same job exits 13 and does nothing; a failing before hook skips with 14', async () => {
    const s = await setup(
      ({ base, src, repo }) => `${REPO(repo)}
[jobs.slow]
paths = ["${src}"]
[jobs.slow.hooks]
before = "touch ${join(base, 'started')}; sleep 3"

[jobs.guarded]
paths = ["${src}"]
[jobs.guarded.hooks]
before = "test -e ${join(base, 'mounted')} || { echo 'backup disk not mounted' >&2; exit 1; }"
`,
    );
    const first = s.forgeJobs(['run', 'slow']);
    for (let i = 0; i < 100; i++) {
      const started = await readFile(join(s.base, 'started')).then(
        () => true,
        () => false,
      );
      if (started) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const second = await s.forgeJobs(['run', 'slow']);
    expect(second.code, second.stderr).toBe(13);
    expect((await first).code).toBe(0);

    const skipped = await s.forgeJobs(['run', 'guarded']);
    expect(skipped.code).toBe(14);
    expect(skipped.stderr).toMatch(/job guarded skipped: before hook exited with 1: backup disk not mounted/);
  });
});

describe('forge daemon and schedules', () => {
  it('runs scheduled jobs and stops cleanly on SIGTERM', async () => {
    const s = await setup(
      ({ src, repo }) => `${REPO(repo)}
[jobs.often]
paths = ["${src}"]
schedule = "*/2 * * * * *"
`,
    );
    const child = spawn(process.execPath, [FORGE_BIN, 'daemon', '--config', s.config, '--grace', '20'], {
      env: { ...process.env, ...s.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const exited = new Promise<number>((r) => child.on('close', (c) => r(c ?? 128)));
    for (let i = 0; i < 200 && !/job often: success/.test(stderr); i++)
      await new Promise((r) => setTimeout(r, 100));
    expect(stderr).toMatch(/job often: next run /);
    expect(stderr).toMatch(/job often: success \(exit 0\)/);
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(stderr).toMatch(/stopped/);
    const runs = jsonLines((await s.forgeJobs(['runs', 'often', '--json'])).stdout);
    expect(runs.length).toBeGreaterThanOrEqual(1);
    expect(runs.every((r) => r.status === 'success' || r.status === 'aborted')).toBe(true);
    const check = await forge(['check', '-r', join(s.base, 'repo')], { env: { FORGE_PASSWORD: 'jobs-pw' } });
    expect(check.code, check.stderr).toBe(0);
  });

  it('prints systemd timers and crontab lines', async () => {
    const s = await setup(
      ({ src, repo }) => `${REPO(repo)}
[jobs.home]
paths = ["${src}"]
schedule = { cron = "30 2 * * 1-5", timezone = "Europe/Berlin", missed = "skip" }
`,
    );
    const systemd = await s.forgeJobs([
      'schedule',
      'print',
      '--systemd',
      '--forge-command',
      '/usr/bin/forge',
    ]);
    expect(systemd.code, systemd.stderr).toBe(0);
    expect(systemd.stdout).toContain('OnCalendar=Mon..Fri *-*-* 2:30:00 Europe/Berlin');
    expect(systemd.stdout).toContain('Persistent=false');
    expect(systemd.stdout).toContain(`ExecStart=/usr/bin/forge run --config ${s.config} home`);
    const cron = await s.forgeJobs(['schedule', 'print', '--cron']);
    expect(cron.stdout).toContain(`30 2 * * 1-5 forge run --config ${s.config} home`);
    expect(cron.stdout).toContain('CRON_TZ=Europe/Berlin');
  });
});

describe('forge catalog rebuild', () => {
  it('recreates the catalog from the repository after the database is deleted (history is lost, backups are not)', async () => {
    const s = await setup(({ src, repo }) => `${REPO(repo)}\n[jobs.home]\npaths = ["${src}"]\n`);
    expect((await s.forgeJobs(['run', 'home'])).code).toBe(0);
    expect((await s.forgeJobs(['run', 'home'])).code).toBe(0);
    await rm(join(s.base, 'state', 'backupforge', 'forge.db'), { force: true });
    await rm(join(s.base, 'state', 'backupforge', 'forge.db-wal'), { force: true });
    await rm(join(s.base, 'state', 'backupforge', 'forge.db-shm'), { force: true });
    const runs = await s.forgeJobs(['runs', '--json']);
    expect(jsonLines(runs.stdout).filter((l) => l.message_type === 'run')).toHaveLength(0);
    const rebuild = await s.forgeJobs(['catalog', 'rebuild', 'main', '--json']);
    expect(rebuild.code, rebuild.stderr).toBe(0);
    const summary = jsonLines(rebuild.stdout).find((l) => l.message_type === 'summary')!;
    expect(summary).toMatchObject({ repository: 'main', snapshots: 2, added: 2, removed: 0 });
    expect(Number(summary.files)).toBeGreaterThan(10);
  });
});
