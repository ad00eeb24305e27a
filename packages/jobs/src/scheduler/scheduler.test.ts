import { afterEach, describe, expect, it, vi } from 'vitest';
import type { ForgeConfig, JobConfig, ScheduleConfig } from '../types.ts';
import { cronToOnCalendar, printCrontab, printSystemd } from './print.ts';
import { missedRun, Scheduler, upcoming } from './scheduler.ts';

function job(name: string, schedule?: Partial<ScheduleConfig>): JobConfig {
  return {
    name,
    type: 'fs',
    repository: 'main',
    paths: ['/data'],
    exclude: [],
    excludeIfPresent: [],
    oneFileSystem: false,
    tags: [],
    prune: false,
    notify: [],
    ...(schedule ? { schedule: { cron: '0 3 * * *', missed: 'run-once', ...schedule } } : {}),
  };
}

function config(...jobs: JobConfig[]): ForgeConfig {
  return {
    file: '/etc/backupforge/forge.toml',
    repositories: new Map(),
    jobs: new Map(jobs.map((j) => [j.name, j])),
    notifiers: new Map(),
  };
}

afterEach(() => {
  vi.useRealTimers();
});

describe('upcoming / missedRun', () => {
  it('follows the time zone across the DST change', () => {
    const j = job('a', { cron: '30 2 * * *', timezone: 'Europe/Berlin' });
    // 2026-03-29: clocks jump 02:00 → 03:00 in Berlin; 02:30 does not exist that day.
    const runs = upcoming(j, new Date('2026-03-27T12:00:00Z'), 3).map((d) => d.toISOString());
    expect(runs[0]).toBe('2026-03-28T01:30:00.000Z'); // 02:30 CET
    expect(runs[2]).toBe('2026-03-30T00:30:00.000Z'); // 02:30 CEST
  });

  it('catches up once with run-once, never with skip, and not when nothing was missed', () => {
    const last = new Date('2026-11-20T02:00:00Z');
    const now = new Date('2026-11-22T10:00:00Z');
    expect(missedRun(job('a', {}), last, now)).toEqual({
      job: 'a',
      at: new Date('2026-11-20T03:00:00Z'),
      reason: 'missed',
    });
    expect(missedRun(job('a', { missed: 'skip' }), last, now)).toBeUndefined();
    expect(missedRun(job('a', {}), new Date('2026-11-22T03:30:00Z'), now)).toBeUndefined();
    expect(missedRun(job('a', {}), undefined, now)).toBeUndefined();
  });
});

describe('Scheduler', () => {
  it('runs due jobs one at a time, in order, and re-plans them', async () => {
    vi.useFakeTimers({ now: new Date('2026-11-22T02:59:00Z') });
    const events: string[] = [];
    let release: (() => void) | undefined;
    const s = new Scheduler({
      config: config(
        job('a', { cron: '0 3 * * *', timezone: 'UTC' }),
        job('b', { cron: '0 3 * * *', timezone: 'UTC' }),
        job('manual'),
      ),
      run: async (name) => {
        events.push(`start ${name}`);
        await new Promise<void>((r) => {
          release = r;
        });
        events.push(`end ${name}`);
      },
    });
    await s.start();
    expect([...s.nextRuns().keys()].sort()).toEqual(['a', 'b']);
    await vi.advanceTimersByTimeAsync(61_000);
    expect(events).toEqual(['start a']); // b waits for a
    release!();
    await vi.advanceTimersByTimeAsync(0);
    expect(events).toEqual(['start a', 'end a', 'start b']);
    release!();
    await vi.advanceTimersByTimeAsync(0);
    expect(events).toEqual(['start a', 'end a', 'start b', 'end b']);
    expect(s.nextRuns().get('a')?.toISOString()).toBe('2026-11-23T03:00:00.000Z');
    await s.stop();
  });

  it('starts with the runs missed while down, and stop() waits for the running job', async () => {
    vi.useFakeTimers({ now: new Date('2026-11-22T10:00:00Z') });
    const ran: string[] = [];
    let finish: (() => void) | undefined;
    const s = new Scheduler({
      config: config(job('a', { timezone: 'UTC' }), job('b', { timezone: 'UTC', missed: 'skip' })),
      lastRunAt: async () => new Date('2026-11-20T03:00:00Z'),
      run: async (name, reason) => {
        ran.push(`${name}:${reason}`);
        await new Promise<void>((r) => {
          finish = r;
        });
      },
    });
    await s.start();
    expect(ran).toEqual(['a:missed']);
    let stopped = false;
    const stopping = s.stop().then(() => {
      stopped = true;
    });
    await vi.advanceTimersByTimeAsync(0);
    expect(stopped).toBe(false);
    finish!();
    await stopping;
    expect(stopped).toBe(true);
  });
});

describe('schedule print', () => {
  const cfg = config(
    job('home', { cron: '15 3 * * 1-5', timezone: 'Europe/Berlin' }),
    job('db', { cron: '*/30 * * * *', missed: 'skip' }),
    job('manual'),
  );

  it('crontab lines with CRON_TZ and quoting', () => {
    const text = printCrontab(cfg, {
      forge: '/usr/local/bin/forge',
      configPath: '/etc/backupforge/forge.toml',
    });
    expect(text.split('\n').filter((l) => l && !l.startsWith('#'))).toEqual([
      'CRON_TZ=Europe/Berlin',
      '15 3 * * 1-5 /usr/local/bin/forge run --config /etc/backupforge/forge.toml home',
      'CRON_TZ=',
      '*/30 * * * * /usr/local/bin/forge run --config /etc/backupforge/forge.toml db',
    ]);
  });

  it('systemd timers with OnCalendar and Persistent from the missed-run policy', () => {
    expect(cronToOnCalendar('15 3 * * 1-5', 'Europe/Berlin')).toBe('Mon..Fri *-*-* 3:15:00 Europe/Berlin');
    expect(cronToOnCalendar('*/30 * * * *')).toBe('*-*-* *:0/30:00');
    expect(cronToOnCalendar('@daily')).toBe('*-*-* 0:0:00');
    const text = printSystemd(cfg, {
      forge: '/usr/local/bin/forge',
      configPath: '/etc/backupforge/forge.toml',
    });
    expect(text).toContain('# file: /etc/systemd/system/forge-home.timer');
    expect(text).toContain('OnCalendar=Mon..Fri *-*-* 3:15:00 Europe/Berlin');
    expect(text).toMatch(/forge-home\.timer[\s\S]*Persistent=true/);
    expect(text).toMatch(/forge-db\.timer[\s\S]*Persistent=false/);
    expect(text).toContain('ExecStart=/usr/local/bin/forge run --config /etc/backupforge/forge.toml db');
    expect(text).not.toContain('manual');
  });

  it('refuses a config without scheduled jobs', () => {
    expect(() => printCrontab(config(job('x')), { forge: 'forge', configPath: '/c' })).toThrow(
      /no job .* has a schedule/,
    );
  });
});
