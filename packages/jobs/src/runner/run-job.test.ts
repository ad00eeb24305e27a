import { spawn } from 'node:child_process';
import { access, mkdir, mkdtemp, readdir, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Repository } from '@backupforge/engine';
import { createLocalBackend } from '@backupforge/storage/local';
import { afterEach, describe, expect, it } from 'vitest';
import type { ForgeConfig, JobConfig, NotifyEvent, RepositoryConfig, RunFacts } from '../types.ts';
import { JobLock } from './job-lock.ts';
import { type HookOutcome, RunExitCode, type RunnerDeps, runJob } from './run-job.ts';

const KDF = { memoryKiB: 8192, iterations: 1, parallelism: 1 } as const;
const cleanups: string[] = [];
afterEach(async () => {
  for (const d of cleanups.splice(0)) await rm(d, { recursive: true, force: true });
});

async function scratch(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'forge-jobs-'));
  cleanups.push(d);
  return d;
}

/** Hooks run through /bin/sh, as the real runner does (env facts included). */
function shHook(command: string, facts: RunFacts): Promise<HookOutcome> {
  const t0 = Date.now();
  return new Promise((resolve) => {
    const child = spawn('/bin/sh', ['-c', command], {
      env: {
        ...process.env,
        FORGE_JOB: facts.job,
        FORGE_STATUS: facts.status,
        FORGE_SNAPSHOT_ID: facts.snapshotId ?? '',
      },
    });
    let output = '';
    child.stdout.on('data', (d: Buffer) => {
      output += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      output += d.toString();
    });
    child.on('close', (code) =>
      resolve({ exitCode: code, timedOut: false, output, durationMs: Date.now() - t0 }),
    );
  });
}

interface Harness {
  base: string;
  src: string;
  config: ForgeConfig;
  deps: RunnerDeps;
  notified: { event: NotifyEvent; facts: RunFacts }[];
  history: { started: string[]; finished: RunFacts[] };
}

async function harness(jobs: (src: string) => JobConfig[]): Promise<Harness> {
  const base = await scratch();
  const src = join(base, 'src');
  await mkdir(join(src, 'sub'), { recursive: true });
  await writeFile(join(src, 'a.txt'), 'alpha\n'.repeat(1000));
  await writeFile(join(src, 'sub', 'b.bin'), Buffer.alloc(300_000, 7));
  for (let i = 0; i < 30; i++) await writeFile(join(src, `f${i}.txt`), `file ${i}\n`.repeat(i + 1));
  const repoPath = join(base, 'repo');
  await Repository.init(createLocalBackend({ path: repoPath }), { password: 'pw', kdf: KDF });
  const repo: RepositoryConfig = {
    name: 'main',
    location: repoPath,
    password: { kind: 'env', name: 'JOB_TEST_PW' },
    options: {},
    env: {},
  };
  const notified: Harness['notified'] = [];
  const history: Harness['history'] = { started: [], finished: [] };
  const deps: RunnerDeps = {
    resolveSecret: async (ref) => {
      if (ref.kind === 'env' && ref.name === 'JOB_TEST_PW') return 'pw';
      throw new Error(`unexpected secret ${JSON.stringify(ref)}`);
    },
    runHook: (_which, command, facts) => shHook(command, facts),
    notify: async (_names, event, facts) => {
      notified.push({ event, facts });
    },
    openBackend: async (r) => createLocalBackend({ path: r.location }),
    history: {
      startRun: async (_job, _kind, runId) => {
        history.started.push(runId);
      },
      finishRun: async (_runId, facts) => {
        history.finished.push(facts);
      },
    },
  };
  const config: ForgeConfig = {
    file: join(base, 'forge.toml'),
    repositories: new Map([['main', repo]]),
    jobs: new Map(jobs(src).map((j) => [j.name, j])),
    notifiers: new Map(),
    logDir: join(base, 'logs'),
  };
  return { base, src, config, deps, notified, history };
}

function fsJob(src: string, extra: Partial<JobConfig> = {}): JobConfig {
  return {
    name: 'home',
    type: 'fs',
    repository: 'main',
    paths: [src],
    exclude: ['*.skip'],
    excludeIfPresent: [],
    oneFileSystem: false,
    tags: ['nightly'],
    prune: true,
    notify: ['ops'],
    ...extra,
  } as JobConfig;
}

describe('runJob', () => {
  it('backs up, applies retention, checks, records history, notifies and logs', async () => {
    const h = await harness((src) => [
      fsJob(src, { retention: { keepLast: 1 }, check: {} } as Partial<JobConfig>),
    ]);
    const first = await runJob({ config: h.config, job: 'home', deps: h.deps, stateDir: h.base });
    expect(first.exitCode, JSON.stringify(first.steps)).toBe(RunExitCode.OK);
    expect(first.facts.status).toBe('success');
    expect(first.facts.filesNew).toBe(32);
    expect(first.facts.snapshotId).toMatch(/^[0-9a-f]{64}$/);

    await writeFile(join(h.src, 'a.txt'), 'changed\n');
    // A temporary file a killed writer left two hours ago: the prune step deletes it.
    const stale = join(h.base, 'repo', 'data', '.tmp-0123abcd');
    await writeFile(stale, 'partial pack');
    const twoHoursAgo = new Date(Date.now() - 2 * 60 * 60 * 1000);
    await utimes(stale, twoHoursAgo, twoHoursAgo);
    const second = await runJob({ config: h.config, job: 'home', deps: h.deps, stateDir: h.base });
    expect(second.exitCode).toBe(0);
    expect(second.facts.filesChanged).toBe(1);
    expect(second.steps.map((s) => s.step)).toEqual(['backup', 'forget', 'prune', 'check']);
    expect(second.steps.find((s) => s.step === 'forget')?.detail).toBe('removed 1');
    expect(second.steps.find((s) => s.step === 'prune')?.detail).toMatch(
      /bytes freed; 1 temporary file of interrupted writes \(12 bytes\) deleted$/,
    );
    await expect(access(stale)).rejects.toThrow();

    // Retention kept one snapshot: the newest.
    const repo = await Repository.open(createLocalBackend({ path: join(h.base, 'repo') }), {
      password: 'pw',
    });
    const snaps = await repo.listSnapshots();
    await repo.close();
    expect(snaps.map((s) => s.id)).toEqual([second.facts.snapshotId]);
    expect(snaps[0]!.tags).toEqual(['nightly']);

    expect(h.history.started).toHaveLength(2);
    expect(h.history.finished.map((f) => f.status)).toEqual(['success', 'success']);
    expect(h.notified.map((n) => n.event)).toEqual(['start', 'success', 'start', 'success']);
    const log = await readFile(second.facts.logPath!, 'utf8');
    expect(log).toContain('forget: removed 1 snapshot(s)');
    expect(log).toMatch(/run success \(exit 0\)/);
  });

  it('a failing before hook skips the run, says so, and notifies a failure', async () => {
    const h = await harness((src) => [
      fsJob(src, {
        hooks: { before: 'echo "mount missing" >&2; exit 4', timeoutMs: 10_000 },
      } as Partial<JobConfig>),
    ]);
    const r = await runJob({ config: h.config, job: 'home', deps: h.deps, stateDir: h.base });
    expect(r.exitCode).toBe(RunExitCode.SKIPPED);
    expect(r.facts.status).toBe('skipped');
    expect(r.facts.errorMessage).toBe('before hook exited with 4: mount missing; the run was skipped');
    expect(h.notified.at(-1)?.event).toBe('failure');
    const repo = await Repository.open(createLocalBackend({ path: join(h.base, 'repo') }), {
      password: 'pw',
    });
    expect(await repo.listSnapshots()).toHaveLength(0);
    await repo.close();
  });

  it('hooks see the run facts; after hook failure turns success into a warning', async () => {
    const h = await harness((src) => [
      fsJob(src, {
        hooks: {
          after: `echo "$FORGE_JOB $FORGE_STATUS $FORGE_SNAPSHOT_ID" > ${JSON.stringify(join(src, '..', 'after.txt'))}; exit 2`,
          timeoutMs: 10_000,
        },
      } as Partial<JobConfig>),
    ]);
    const r = await runJob({ config: h.config, job: 'home', deps: h.deps, stateDir: h.base });
    expect(r.exitCode).toBe(RunExitCode.WARNING);
    const seen = (await readFile(join(h.base, 'after.txt'), 'utf8')).trim();
    expect(seen).toBe(`home success ${r.facts.snapshotId}`);
  });

  it('an overlapping run exits with the job-running code and does nothing', async () => {
    const h = await harness((src) => [fsJob(src)]);
    const held = await JobLock.acquire(join(h.base, 'locks', 'home.lock'), 'other-run');
    try {
      const r = await runJob({ config: h.config, job: 'home', deps: h.deps, stateDir: h.base });
      expect(r.exitCode).toBe(RunExitCode.JOB_RUNNING);
      expect(r.facts.errorMessage).toMatch(/already running \(pid \d+/);
      expect(h.history.started).toHaveLength(0);
      expect(h.notified).toHaveLength(0);
    } finally {
      await held.release();
    }
    // A stale lock (its process is gone) is taken over.
    await writeFile(
      join(h.base, 'locks', 'home.lock'),
      JSON.stringify({
        pid: 2 ** 22 + 12345,
        host: (await import('node:os')).hostname(),
        startedAt: 'x',
        runId: 'y',
      }),
    );
    const r = await runJob({ config: h.config, job: 'home', deps: h.deps, stateDir: h.base });
    expect(r.exitCode).toBe(0);
    expect(await readdir(join(h.base, 'locks'))).toEqual([]);
  });

  it('a wrong password fails the run with its code, runs the on-error hook and notifies', async () => {
    const h = await harness((src) => [
      fsJob(src, {
        hooks: {
          onError: `echo "$FORGE_STATUS" > ${JSON.stringify(join(src, '..', 'err.txt'))}`,
          timeoutMs: 10_000,
        },
      } as Partial<JobConfig>),
    ]);
    const deps: RunnerDeps = { ...h.deps, resolveSecret: async () => 'wrong' };
    const r = await runJob({ config: h.config, job: 'home', deps, stateDir: h.base });
    expect(r.exitCode).toBe(RunExitCode.FAILED);
    expect(r.facts.status).toBe('failed');
    expect(r.facts.errorCode).toBe('FORGE_WRONG_PASSWORD');
    expect((await readFile(join(h.base, 'err.txt'), 'utf8')).trim()).toBe('failed');
    expect(h.notified.at(-1)?.event).toBe('failure');
  });

  it('a test-restore job restores a sample and verifies it; a damaged pack fails it', async () => {
    const h = await harness((src) => [
      fsJob(src),
      { name: 'verify', type: 'test-restore', repository: 'main', sample: 5, tags: [], notify: [] },
    ]);
    expect((await runJob({ config: h.config, job: 'home', deps: h.deps, stateDir: h.base })).exitCode).toBe(
      0,
    );
    const ok = await runJob({ config: h.config, job: 'verify', deps: h.deps, stateDir: h.base });
    expect(ok.exitCode, JSON.stringify(ok.steps)).toBe(0);
    expect(ok.steps[0]?.detail).toMatch(/^restored and verified 5 of 32 files/);

    // Flip a byte in every data pack: whatever the sample, the restore must fail.
    const dataDir = join(h.base, 'repo', 'data');
    for (const sub of await readdir(dataDir)) {
      for (const name of await readdir(join(dataDir, sub))) {
        const p = join(dataDir, sub, name);
        const bytes = await readFile(p);
        bytes[40] = bytes[40]! ^ 0xff;
        await writeFile(p, bytes);
      }
    }
    const all = {
      ...h.config,
      jobs: new Map(h.config.jobs).set('verify', {
        name: 'verify',
        type: 'test-restore',
        repository: 'main',
        sample: 'all',
        tags: [],
        notify: [],
      } as JobConfig),
    };
    const bad = await runJob({ config: all, job: 'verify', deps: h.deps, stateDir: h.base });
    expect(bad.exitCode).toBe(RunExitCode.FAILED);
    expect(bad.facts.errorMessage).toMatch(/test restore failed/);
  });

  it('an unknown job is a usage error naming the defined jobs', async () => {
    const h = await harness((src) => [fsJob(src)]);
    await expect(
      runJob({ config: h.config, job: 'hom', deps: h.deps, stateDir: h.base }),
    ).rejects.toMatchObject({
      code: 'FORGE_USAGE',
      hint: 'jobs defined: home',
    });
  });
});
