import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { ForgeError } from '@backupforge/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ForgeConfig, JobConfig, NotifierConfig, RepositoryConfig } from '../types.ts';
import { loadConfig, parseConfig } from './index.ts';

/** The complete example of docs/config.md (a test below checks that the two agree). */
const FULL = `# /etc/backupforge/forge.toml
database = "sqlite:/var/lib/backupforge/forge.db"
log_dir = "/var/log/backupforge"

[defaults]
repository = "main"
notify = ["ops"]
retention = { keep_daily = 7, keep_weekly = 4, keep_monthly = 12 }
schedule = { timezone = "Europe/Berlin", missed = "run-once" }
hooks = { timeout = "10m" }

[repositories.main]
location = "/srv/backup/main"
password_file = "/etc/backupforge/main.pass"

[repositories.offsite]
location = "s3:https://s3.eu-west-1.amazonaws.com/acme-backups/host1"
password_command = "pass show backup/offsite"
options = { "s3.region" = "eu-west-1" }
limit_upload = 2048
limit_download = 8192

[repositories.offsite.env]
AWS_ACCESS_KEY_ID = { env = "OFFSITE_KEY_ID" }
AWS_SECRET_ACCESS_KEY = { file = "/etc/backupforge/offsite.secret" }

[jobs.home]
paths = ["/home", "/etc"]
exclude = ["*.tmp", "/home/*/.cache"]
exclude_if_present = [".nobackup"]
one_file_system = true
tags = ["daily"]
schedule = "0 3 * * *"
check = { read_data_subset = "5%" }

[jobs.home.hooks]
before = "systemctl stop postgresql"
after = "systemctl start postgresql"
on_error = "logger -t forge 'home backup failed'"
timeout = "30s"

[jobs.offsite]
repository = "offsite"
paths = ["/srv/data"]
host = "fileserver"
schedule = { cron = "30 1 * * 0", timezone = "UTC", missed = "skip" }
notify = ["ops", "mail"]
prune = false
check = true

[jobs.offsite.retention]
keep_last = 3
keep_within = "30d"
keep_tags = ["keep"]

[jobs.verify]
type = "test-restore"
schedule = "0 6 * * 1"
sample = 50
tags = ["daily"]

[notifiers.ops]
type = "ntfy"
url = "https://ntfy.sh/acme-backups"
token_env = "NTFY_TOKEN"
priority = 4

[notifiers.mail]
type = "email"
on = ["failure"]
host = "smtp.example.com"
port = 465
user = "backup@example.com"
password_file = "/etc/backupforge/smtp.pass"
from = "Backups <backup@example.com>"
to = ["admin@example.com", "oncall@example.com"]

[notifiers.hook]
type = "webhook"
url = "https://hooks.example.com/forge"
on = ["start", "success", "warning", "failure"]
headers = { Authorization = { env = "HOOK_TOKEN" }, "X-Source" = "forge" }

[notifiers.hc]
type = "healthchecks"
url = "https://hc-ping.com/0c1d2e3f-aaaa-bbbb-cccc-000000000000"
`;

const FILE = '/etc/backupforge/forge.toml';

function expectedFull(): ForgeConfig {
  const repositories = new Map<string, RepositoryConfig>([
    [
      'main',
      {
        name: 'main',
        location: '/srv/backup/main',
        password: { kind: 'file', path: '/etc/backupforge/main.pass' },
        options: {},
        env: {},
      },
    ],
    [
      'offsite',
      {
        name: 'offsite',
        location: 's3:https://s3.eu-west-1.amazonaws.com/acme-backups/host1',
        password: { kind: 'command', command: 'pass show backup/offsite' },
        options: { 's3.region': 'eu-west-1' },
        env: {
          AWS_ACCESS_KEY_ID: { kind: 'env', name: 'OFFSITE_KEY_ID' },
          AWS_SECRET_ACCESS_KEY: { kind: 'file', path: '/etc/backupforge/offsite.secret' },
        },
        limitUploadKiB: 2048,
        limitDownloadKiB: 8192,
      },
    ],
  ]);
  const jobs = new Map<string, JobConfig>([
    [
      'home',
      {
        type: 'fs',
        name: 'home',
        repository: 'main',
        paths: ['/home', '/etc'],
        exclude: ['*.tmp', '/home/*/.cache'],
        excludeIfPresent: ['.nobackup'],
        oneFileSystem: true,
        tags: ['daily'],
        schedule: { cron: '0 3 * * *', timezone: 'Europe/Berlin', missed: 'run-once' },
        retention: { keepDaily: 7, keepWeekly: 4, keepMonthly: 12 },
        prune: true,
        check: { readDataSubset: '5%' },
        hooks: {
          before: 'systemctl stop postgresql',
          after: 'systemctl start postgresql',
          onError: "logger -t forge 'home backup failed'",
          timeoutMs: 30_000,
        },
        notify: ['ops'],
      },
    ],
    [
      'offsite',
      {
        type: 'fs',
        name: 'offsite',
        repository: 'offsite',
        paths: ['/srv/data'],
        exclude: [],
        excludeIfPresent: [],
        oneFileSystem: false,
        tags: [],
        host: 'fileserver',
        schedule: { cron: '30 1 * * 0', timezone: 'UTC', missed: 'skip' },
        retention: { keepLast: 3, keepWithin: '30d', keepTags: ['keep'] },
        prune: false,
        check: {},
        notify: ['ops', 'mail'],
      },
    ],
    [
      'verify',
      {
        type: 'test-restore',
        name: 'verify',
        repository: 'main',
        schedule: { cron: '0 6 * * 1', timezone: 'Europe/Berlin', missed: 'run-once' },
        sample: 50,
        tags: ['daily'],
        notify: ['ops'],
      },
    ],
  ]);
  const notifiers = new Map<string, NotifierConfig>([
    [
      'ops',
      {
        type: 'ntfy',
        name: 'ops',
        on: ['failure', 'warning'],
        url: 'https://ntfy.sh/acme-backups',
        token: { kind: 'env', name: 'NTFY_TOKEN' },
        priority: 4,
      },
    ],
    [
      'mail',
      {
        type: 'email',
        name: 'mail',
        on: ['failure'],
        host: 'smtp.example.com',
        port: 465,
        secure: true,
        user: 'backup@example.com',
        password: { kind: 'file', path: '/etc/backupforge/smtp.pass' },
        from: 'Backups <backup@example.com>',
        to: ['admin@example.com', 'oncall@example.com'],
      },
    ],
    [
      'hook',
      {
        type: 'webhook',
        name: 'hook',
        on: ['start', 'success', 'warning', 'failure'],
        url: 'https://hooks.example.com/forge',
        headers: {
          Authorization: { kind: 'env', name: 'HOOK_TOKEN' },
          'X-Source': { kind: 'value', value: 'forge' },
        },
      },
    ],
    [
      'hc',
      {
        type: 'healthchecks',
        name: 'hc',
        on: ['failure', 'warning'],
        url: 'https://hc-ping.com/0c1d2e3f-aaaa-bbbb-cccc-000000000000',
      },
    ],
  ]);
  return {
    file: FILE,
    repositories,
    jobs,
    notifiers,
    database: 'sqlite:/var/lib/backupforge/forge.db',
    logDir: '/var/log/backupforge',
  };
}

/** The problems parseConfig reports for `text` (fails the test when it parses). */
function problems(text: string, file = 'forge.toml'): string[] {
  try {
    parseConfig(text, file);
  } catch (e) {
    expect(e).toBeInstanceOf(ForgeError);
    const err = e as ForgeError;
    expect(err.code).toBe('FORGE_USAGE');
    const list = err.details?.problems as string[];
    expect(err.message).toBe(list.join('\n'));
    return list;
  }
  throw new Error('expected the config to be rejected');
}

const lines = (...l: string[]) => `${l.join('\n')}\n`;

/** A valid preamble of 3 lines, so that job snippets below start on line 4. */
const REPOS = lines('[repositories.main]', 'location = "/srv/backup"', 'password_env = "PW"');

describe('parseConfig: a valid file', () => {
  it('parses the full example into the normalised config', () => {
    const warnings: string[] = [];
    const cfg = parseConfig(FULL, FILE, { onWarning: (w) => warnings.push(w) });
    expect(cfg).toStrictEqual(expectedFull());
    expect([...cfg.jobs.keys()]).toEqual(['home', 'offsite', 'verify']);
    expect(warnings).toEqual([]);
  });

  it('agrees with the complete example in docs/config.md', async () => {
    const doc = await readFile(resolve(import.meta.dirname, '../../../../docs/config.md'), 'utf8');
    const block = /```toml\n# \/etc\/backupforge\/forge\.toml\n([\s\S]*?)```/.exec(doc);
    expect(block, 'docs/config.md has the complete example').not.toBeNull();
    const cfg = parseConfig(`# /etc/backupforge/forge.toml\n${block?.[1]}`, FILE);
    expect(cfg).toStrictEqual(expectedFull());
  });

  it('accepts an empty file', () => {
    expect(parseConfig('', FILE)).toStrictEqual({
      file: FILE,
      repositories: new Map(),
      jobs: new Map(),
      notifiers: new Map(),
    });
  });
});

describe('parseConfig: defaults', () => {
  const base = lines(
    '[repositories.a]',
    'location = "/a"',
    'password_env = "A"',
    '[repositories.b]',
    'location = "/b"',
    'password_env = "B"',
    '[notifiers.n1]',
    'type = "healthchecks"',
    'url = "https://hc.example.com/1"',
    '[notifiers.n2]',
    'type = "healthchecks"',
    'url = "https://hc.example.com/2"',
  );

  it('merges [defaults] into every job; a job value replaces the default', () => {
    const cfg = parseConfig(
      base +
        lines(
          '[defaults]',
          'repository = "a"',
          'host = "h"',
          'tags = ["t"]',
          'exclude = ["*.o"]',
          'one_file_system = true',
          'notify = ["n1"]',
          'retention = { keep_daily = 7, keep_weekly = 4 }',
          'check = true',
          'hooks = { before = "echo hi", timeout = "1m" }',
          'schedule = { timezone = "Europe/Berlin", missed = "skip" }',
          '[jobs.plain]',
          'paths = ["/p"]',
          'schedule = "0 1 * * *"',
          '[jobs.own]',
          'repository = "b"',
          'paths = ["/o"]',
          'host = "other"',
          'tags = []',
          'exclude = ["*.tmp"]',
          'one_file_system = false',
          'notify = []',
          'retention = { keep_last = 2 }',
          'check = false',
          'hooks = { after = "echo bye" }',
          'schedule = { cron = "0 2 * * *", timezone = "UTC" }',
          '[jobs.tr]',
          'type = "test-restore"',
          'sample = "all"',
        ),
      FILE,
    );
    expect(cfg.jobs.get('plain')).toStrictEqual({
      type: 'fs',
      name: 'plain',
      repository: 'a',
      paths: ['/p'],
      exclude: ['*.o'],
      excludeIfPresent: [],
      oneFileSystem: true,
      tags: ['t'],
      host: 'h',
      notify: ['n1'],
      retention: { keepDaily: 7, keepWeekly: 4 },
      prune: true,
      check: {},
      hooks: { before: 'echo hi', timeoutMs: 60_000 },
      schedule: { cron: '0 1 * * *', timezone: 'Europe/Berlin', missed: 'skip' },
    });
    expect(cfg.jobs.get('own')).toStrictEqual({
      type: 'fs',
      name: 'own',
      repository: 'b',
      paths: ['/o'],
      exclude: ['*.tmp'],
      excludeIfPresent: [],
      oneFileSystem: false,
      tags: [],
      host: 'other',
      notify: [],
      retention: { keepLast: 2 },
      prune: true,
      hooks: { before: 'echo hi', after: 'echo bye', timeoutMs: 60_000 },
      schedule: { cron: '0 2 * * *', timezone: 'UTC', missed: 'skip' },
    });
    expect(cfg.jobs.get('tr')).toStrictEqual({
      type: 'test-restore',
      name: 'tr',
      repository: 'a',
      sample: 'all',
      tags: ['t'],
      host: 'h',
      notify: ['n1'],
      hooks: { before: 'echo hi', timeoutMs: 60_000 },
    });
  });

  it('fills in built-in defaults: the only repository, prune, hook timeout, missed, notifier events, sample', () => {
    const cfg = parseConfig(
      REPOS +
        lines(
          '[jobs.a]',
          'paths = ["/a"]',
          'schedule = "@daily"',
          'hooks = { before = "true" }',
          '[jobs.b]',
          'paths = ["/b"]',
          'retention = { keep_within = "1y" }',
          '[jobs.c]',
          'type = "test-restore"',
          '[notifiers.n]',
          'type = "email"',
          'host = "smtp.example.com"',
          'from = "a@example.com"',
          'to = "b@example.com"',
        ),
      FILE,
    );
    const a = cfg.jobs.get('a');
    expect(a).toMatchObject({
      repository: 'main',
      prune: false,
      hooks: { before: 'true', timeoutMs: 300_000 },
      schedule: { cron: '@daily', missed: 'run-once' },
    });
    expect(a?.schedule?.timezone).toBeUndefined();
    expect(cfg.jobs.get('b')).toMatchObject({ prune: true, retention: { keepWithin: '1y' } });
    expect(cfg.jobs.get('c')).toMatchObject({ type: 'test-restore', sample: 20, tags: [] });
    expect(cfg.notifiers.get('n')).toStrictEqual({
      type: 'email',
      name: 'n',
      on: ['failure', 'warning'],
      host: 'smtp.example.com',
      port: 587,
      secure: false,
      from: 'a@example.com',
      to: ['b@example.com'],
    });
  });

  it('resolves relative paths against the config directory and ~ against HOME', () => {
    const cfg = parseConfig(
      lines(
        'database = "sqlite:state/forge.db"',
        'log_dir = "~/logs"',
        '[repositories.r]',
        'location = "repo"',
        'password_file = "secrets/pw"',
        '[repositories.r.env]',
        'TOKEN = { file = "~/token" }',
        '[repositories.s]',
        'location = "sftp:backup@nas:/srv"',
        'password_env = "PW"',
        '[jobs.j]',
        'repository = "r"',
        'paths = ["data", "~/docs", "/abs"]',
      ),
      '/cfg/dir/forge.toml',
      { env: { HOME: '/home/ann' } },
    );
    expect(cfg.file).toBe('/cfg/dir/forge.toml');
    expect(cfg.database).toBe('sqlite:/cfg/dir/state/forge.db');
    expect(cfg.logDir).toBe('/home/ann/logs');
    expect(cfg.repositories.get('r')).toMatchObject({
      location: '/cfg/dir/repo',
      password: { kind: 'file', path: '/cfg/dir/secrets/pw' },
      env: { TOKEN: { kind: 'file', path: '/home/ann/token' } },
    });
    expect(cfg.repositories.get('s')?.location).toBe('sftp:backup@nas:/srv');
    expect(cfg.jobs.get('j')).toMatchObject({ paths: ['/cfg/dir/data', '/home/ann/docs', '/abs'] });
  });
});

describe('parseConfig: errors with line numbers', () => {
  it('reports TOML syntax errors with smol-toml’s position', () => {
    expect(problems(lines('[jobs.home]', 'paths = ["/a"', 'tags = []'))).toEqual([
      'forge.toml:3:1: invalid TOML: expected comma or end of structure',
    ]);
    expect(problems(lines('a = 1', 'a = 2'))).toEqual([
      'forge.toml:2:1: invalid TOML: trying to redefine an already defined table or value',
    ]);
  });

  it('reports unknown keys with a did-you-mean suggestion', () => {
    expect(
      problems(
        REPOS +
          lines(
            '[jobs.home]', // 4
            'paths = ["/home"]',
            '  exlude = ["*.tmp"]', // 6
            'colour = "blue"', // 7
            '[jobs.home.retention]', // 8
            'keep_dayly = 7', // 9
            'keep_within_daily = "7d"', // 10
            'databse = "x"', // 11 (inside the table above)
          ),
      ),
    ).toEqual([
      'forge.toml:6:3: unknown key "exlude" in [jobs.home] (did you mean "exclude"?)',
      'forge.toml:7:1: unknown key "colour" in [jobs.home] (allowed: type, repository, paths, exclude, exclude_if_present, one_file_system, tags, host, schedule, retention, prune, check, hooks, notify)',
      'forge.toml:9:1: unknown key "keep_dayly" in [jobs.home.retention] (did you mean "keep_daily"?)',
      'forge.toml:10:1: jobs.home.retention.keep_within_daily is not supported in forge.toml; use keep_within, or keep_hourly … keep_yearly',
      'forge.toml:11:1: unknown key "databse" in [jobs.home.retention] (allowed: keep_last, keep_hourly, keep_daily, keep_weekly, keep_monthly, keep_yearly, keep_within, keep_tags)',
    ]);
    expect(problems(lines('databse = "sqlite:/x"', 'log-dir = "/l"'))).toEqual([
      'forge.toml:1:1: unknown top-level key "databse" (did you mean "database"?)',
      'forge.toml:2:1: unknown top-level key "log-dir" (did you mean "log_dir"?)',
    ]);
  });

  it('says which keys belong to the other kind of job or notifier', () => {
    expect(
      problems(
        REPOS +
          lines(
            '[jobs.verify]',
            'type = "test-restore"',
            'paths = ["/x"]', // 6
            '[notifiers.n]',
            'type = "healthchecks"',
            'url = "https://hc.example.com/x"',
            'priority = 3', // 10
          ),
      ),
    ).toEqual([
      'forge.toml:6:1: key "paths" is not used by test-restore jobs in [jobs.verify]',
      'forge.toml:10:1: key "priority" is not used by healthchecks notifiers in [notifiers.n] (allowed: type, on, url)',
    ]);
  });

  it('reports wrong types', () => {
    expect(
      problems(
        REPOS +
          lines(
            '[jobs.home]', // 4
            'paths = 3', // 5
            'exclude = ["a", 2, true]', // 6
            'one_file_system = "yes"', // 7
            'tags = "daily"', // 8
            'prune = 1', // 9
            'check = "5%"', // 10
            'hooks = "echo"', // 11
            'schedule = 5', // 12
            '[jobs.t]', // 13
            'type = 5', // 14
            '[repositories.x]', // 15
            'location = ["a"]', // 16
            'password_env = "X"', // 17
            'limit_upload = 1.5', // 18
            'options = { "s3.region" = ["a"] }', // 19
            '[notifiers.y]', // 20
            'type = "ntfy"', // 21
            'url = "https://ntfy.sh/t"', // 22
            'priority = 9', // 23
            'on = "failure"', // 24
          ),
      ),
    ).toEqual([
      'forge.toml:4:1: [jobs.home] has no repository; set repository = "…" here or in [defaults] (defined: main, x)',
      'forge.toml:5:1: jobs.home.paths: expected a list of strings, got a number',
      'forge.toml:6:17: jobs.home.exclude: expected a list of strings, but item 2 is a number',
      'forge.toml:6:20: jobs.home.exclude: expected a list of strings, but item 3 is a boolean',
      'forge.toml:7:1: jobs.home.one_file_system: expected true or false, got a string',
      'forge.toml:8:1: jobs.home.tags: expected a list of strings, got a string',
      'forge.toml:9:1: jobs.home.prune: expected true or false, got a number',
      'forge.toml:10:1: jobs.home.check: expected true, false or a table { read_data_subset = "5%" }, got a string',
      'forge.toml:11:1: jobs.home.hooks: expected a table ([jobs.home.hooks] or { … }), got a string',
      'forge.toml:12:1: jobs.home.schedule: expected a table ([jobs.home.schedule] or { … }), got a number',
      'forge.toml:14:1: jobs.t.type: expected "fs" or "test-restore", got a number',
      'forge.toml:16:1: repositories.x.location: expected a string, got a list',
      'forge.toml:18:1: repositories.x.limit_upload: expected a whole number of KiB/s greater than 0, got 1.5',
      'forge.toml:19:13: repositories.x.options."s3.region": expected a string, number or boolean, got a list',
      'forge.toml:23:1: notifiers.y.priority: expected a priority from 1 to 5, got 9',
      'forge.toml:24:1: notifiers.y.on: expected a list of strings, got a string',
    ]);
  });

  it('reports missing required keys at the table header', () => {
    expect(
      problems(
        lines(
          '[repositories.main]', // 1
          'limit_upload = 10',
          '[jobs.home]', // 3
          'repository = "main"',
          '[notifiers.a]', // 5
          'url = "https://x.example.com"',
          '[notifiers.b]', // 7
          'type = "email"',
          'password_env = "SMTP_PW"',
          '[notifiers.c]', // 10
          'type = "webhook"',
        ),
      ),
    ).toEqual([
      'forge.toml:1:1: [repositories.main] is missing "location" (where the repository is, e.g. "/srv/backup" or "s3:bucket/prefix")',
      'forge.toml:1:1: [repositories.main] is missing "password_file" (or password_env / password_command: how to get the repository password)',
      'forge.toml:3:1: [jobs.home] is missing "paths" (the files and directories to back up)',
      'forge.toml:5:1: [notifiers.a] is missing "type" (one of webhook, ntfy, healthchecks, email)',
      'forge.toml:7:1: [notifiers.b] is missing "host" (the SMTP server)',
      'forge.toml:7:1: [notifiers.b] is missing "user" (the SMTP login that the password belongs to)',
      'forge.toml:7:1: [notifiers.b] is missing "from" (the sender address)',
      'forge.toml:7:1: [notifiers.b] is missing "to" (the recipient address or list of addresses)',
      'forge.toml:10:1: [notifiers.c] is missing "url" (the webhook URL)',
    ]);
  });

  it('reports references to unknown repositories and notifiers, listing the defined ones', () => {
    expect(
      problems(
        lines(
          '[repositories.main]', // 1
          'location = "/a"',
          'password_env = "A"',
          '[repositories.offsite]', // 4
          'location = "/b"',
          'password_env = "B"',
          '[notifiers.ops]', // 7
          'type = "healthchecks"',
          'url = "https://hc.example.com/x"',
          '[defaults]', // 10
          'notify = ["opps"]', // 11
          '[jobs.home]', // 12
          'repository = "nas"', // 13
          'paths = ["/home"]',
          'notify = ["ops", "pager"]', // 15
          '[jobs.other]', // 16
          'paths = ["/o"]',
        ),
      ),
    ).toEqual([
      "forge.toml:11:11: [defaults] notifies 'opps' which is not defined; defined: ops (did you mean 'ops'?)",
      "forge.toml:13:1: job home uses repository 'nas' which is not defined; defined: main, offsite",
      "forge.toml:15:18: job home notifies 'pager' which is not defined; defined: ops",
      'forge.toml:16:1: [jobs.other] has no repository; set repository = "…" here or in [defaults] (defined: main, offsite)',
    ]);
    expect(problems(lines('[jobs.home]', 'repository = "main"', 'paths = ["/"]'))).toEqual([
      "forge.toml:2:1: job home uses repository 'main' which is not defined; defined: none",
    ]);
  });

  it('reports bad durations and retention numbers', () => {
    expect(
      problems(
        REPOS +
          lines(
            '[defaults]', // 4
            'hooks = { timeout = 30 }', // 5
            '[jobs.home]', // 6
            'paths = ["/"]',
            'hooks = { before = "x", timeout = "5 min" }', // 8
            '[jobs.home.retention]', // 9
            'keep_daily = -3', // 10
            'keep_weekly = 1.5', // 11
            'keep_monthly = "12"', // 12
            'keep_within = "30x"', // 13
            '[jobs.b]', // 14
            'paths = ["/"]',
            'retention = { keep_daily = 0 }', // 16
            'check = { read_data_subset = "150%" }', // 17
          ),
      ),
    ).toEqual([
      'forge.toml:5:11: defaults.hooks.timeout: expected a duration string like "30s" or "5m", got a number',
      'forge.toml:8:25: jobs.home.hooks.timeout: invalid duration "5 min": cannot read "5 min"; use a number with a unit ms, s, m, h or d, e.g. "30s", "5m" or "1h30m"',
      'forge.toml:10:1: jobs.home.retention.keep_daily: expected a whole number of snapshots ≥ 0, or -1 for unlimited, got -3',
      'forge.toml:11:1: jobs.home.retention.keep_weekly: expected a whole number of snapshots ≥ 0, or -1 for unlimited, got 1.5',
      'forge.toml:12:1: jobs.home.retention.keep_monthly: expected a whole number of snapshots ≥ 0, or -1 for unlimited, got a string',
      "forge.toml:13:1: jobs.home.retention.keep_within: invalid duration '30x': unknown unit 'x' after number 30; use whole numbers followed by y (years), m (months), d (days) or h (hours), e.g. '1y6m' or '36h'",
      'forge.toml:16:1: [jobs.b.retention] keeps nothing specific, so forget would refuse to run; set a rule such as keep_daily = 7, or remove the table',
      'forge.toml:17:11: jobs.b.check.read_data_subset: "150%" is not a subset; use a percentage like "5%" or a part like "2/5"',
    ]);
  });

  it('rejects invalid cron expressions, ones that never fire, and unknown time zones', () => {
    expect(
      problems(
        REPOS +
          lines(
            '[jobs.a]', // 4
            'paths = ["/"]',
            'schedule = "0 0 31 2 *"', // 6
            '[jobs.b]', // 7
            'paths = ["/"]',
            'schedule = "61 * * * *"', // 9
            '[jobs.c]', // 10
            'paths = ["/"]',
            '[jobs.c.schedule]', // 12
            'cron = "0 3 * * *"',
            'timezone = "Europe/Berln"', // 14
            'missed = "catch-up"', // 15
            '[jobs.d]', // 16
            'paths = ["/"]',
            'schedule = { timezone = "UTC" }', // 18
            '[defaults]', // 19
            'schedule = { cron = "@daily", timezone = "Mars/Olympus" }', // 20
          ),
      ),
    ).toEqual([
      'forge.toml:6:1: jobs.a.schedule: cron expression "0 0 31 2 *" can never fire: no date matches it (like February 31); check the day-of-month and month fields',
      'forge.toml:9:1: jobs.b.schedule: invalid cron expression "61 * * * *": Invalid value for minute: 61',
      'forge.toml:14:1: jobs.c.schedule.timezone: unknown time zone "Europe/Berln" (did you mean "Europe/Berlin"?); use an IANA name such as "Europe/Berlin" or "UTC"',
      'forge.toml:15:1: jobs.c.schedule.missed: expected "skip" or "run-once", got "catch-up"',
      'forge.toml:18:1: [jobs.d.schedule] is missing "cron" (a cron expression such as "0 3 * * *")',
      'forge.toml:20:14: defaults.schedule.cron: a default cron expression would run every job at once; set schedule in each job',
      'forge.toml:20:31: defaults.schedule.timezone: unknown time zone "Mars/Olympus"; use an IANA name such as "Europe/Berlin" or "UTC"',
    ]);
  });

  it('rejects invalid URLs and database locations without repeating them', () => {
    const list = problems(
      lines(
        'database = "mysql://root:hunter2@db/forge"', // 1
        '[notifiers.a]', // 2
        'type = "webhook"',
        'url = "hooks.example.com/T0/B0/s3cr3t"', // 4
        '[notifiers.b]', // 5
        'type = "ntfy"',
        'url = "ftp://ntfy.example.com/t"', // 7
        '[notifiers.c]',
        'type = "email"',
        'host = "smtp"',
        'from = "nobody"', // 11
        'to = ["a@example.com", "b"]', // 12
      ),
    );
    expect(list).toEqual([
      'forge.toml:1:1: database: expected "sqlite:/path/to/forge.db" or "postgres://user@host/db"',
      'forge.toml:4:1: notifiers.a.url: not a valid URL; expected one starting with https:// (or http://)',
      'forge.toml:7:1: notifiers.b.url: not a valid URL; expected one starting with https:// (or http://)',
      'forge.toml:11:1: notifiers.c.from: "nobody" is not an email address (like backup@example.com or "Backups <backup@example.com>")',
      'forge.toml:12:24: notifiers.c.to: item 2: "b" is not an email address (like backup@example.com or "Backups <backup@example.com>")',
    ]);
    expect(list.join('\n')).not.toMatch(/hunter2|s3cr3t/);
  });

  it('rejects job names that cannot be file names', () => {
    expect(
      problems(
        REPOS +
          lines(
            '[jobs."my job"]', // 4
            'paths = ["/"]',
            '[jobs."../etc"]', // 6
            'paths = ["/"]',
            '[jobs.ok-name_1.2]', // 8: a dotted key, so job "ok-name_1" with a table "2"
            'paths = ["/"]',
          ),
      ),
    ).toEqual([
      'forge.toml:4:1: job name "my job" cannot be used as a file name; use 1-64 letters, digits, ".", "_" or "-", starting with a letter or digit',
      'forge.toml:6:1: job name "../etc" cannot be used as a file name; use 1-64 letters, digits, ".", "_" or "-", starting with a letter or digit',
      'forge.toml:8:1: unknown key "2" in [jobs.ok-name_1] (allowed: type, repository, paths, exclude, exclude_if_present, one_file_system, tags, host, schedule, retention, prune, check, hooks, notify)',
      'forge.toml:8:1: [jobs.ok-name_1] is missing "paths" (the files and directories to back up)',
    ]);
    expect(parseConfig(`${REPOS}[jobs."db.nightly-2"]\npaths = ["/"]\n`, FILE).jobs.has('db.nightly-2')).toBe(
      true,
    );
  });

  it('checks secret references', () => {
    expect(
      problems(
        lines(
          '[repositories.main]', // 1
          'location = "/a"',
          'password_file = "/pw"',
          'password_env = "PW"', // 4
          '[repositories.main.env]', // 5
          'AWS_KEY = { env = "A", file = "/b" }', // 6
          'BAD-NAME = { env = "X" }', // 7
          'TOKEN = { environment = "X" }', // 8
          'OTHER = { env = "1X" }', // 9
          'NUM = 5', // 10
        ),
      ),
    ).toEqual([
      'forge.toml:4:1: [repositories.main]: set only one of password_file, password_env',
      'forge.toml:6:1: repositories.main.env.AWS_KEY: give exactly one of env, file or command (got env and file)',
      'forge.toml:7:1: repositories.main.env.BAD-NAME: "BAD-NAME" is not an environment variable name (letters, digits and _)',
      'forge.toml:8:1: repositories.main.env.TOKEN: give exactly one of env, file or command',
      'forge.toml:8:11: unknown key "environment" in [repositories.main.env.TOKEN] (allowed: env, file, command)',
      'forge.toml:9:11: repositories.main.env.OTHER.env: "1X" is not an environment variable name (letters, digits and _)',
      'forge.toml:10:1: repositories.main.env.NUM: expected a string or a table { env = "VAR" }, { file = "/path" } or { command = "…" }, got a number',
    ]);
  });

  it('reports all problems of a file together, in line order, in one error', () => {
    let err: ForgeError | undefined;
    try {
      parseConfig(
        lines(
          '[jobs.home]', // 1
          'repository = "nas"', // 2
          'paths = 5', // 3
          'exlude = []', // 4
          'schedule = "0 0 31 2 *"', // 5
          '[repositories.main]', // 6
          'location = "/srv"',
        ),
        'conf/forge.toml',
      );
    } catch (e) {
      err = e as ForgeError;
    }
    expect(err?.code).toBe('FORGE_USAGE');
    expect(err?.details?.problems).toEqual([
      "conf/forge.toml:2:1: job home uses repository 'nas' which is not defined; defined: main",
      'conf/forge.toml:3:1: jobs.home.paths: expected a list of strings, got a number',
      'conf/forge.toml:4:1: unknown key "exlude" in [jobs.home] (did you mean "exclude"?)',
      'conf/forge.toml:5:1: jobs.home.schedule: cron expression "0 0 31 2 *" can never fire: no date matches it (like February 31); check the day-of-month and month fields',
      'conf/forge.toml:6:1: [repositories.main] is missing "password_file" (or password_env / password_command: how to get the repository password)',
    ]);
    expect(err?.message.split('\n')).toHaveLength(5);
    expect(err?.hint).toBe(
      'fix these 5 problems in conf/forge.toml (the format is described in docs/config.md)',
    );
  });
});

describe('parseConfig: plain-text secrets', () => {
  it('accepts them with a warning that never contains the secret', () => {
    const warnings: string[] = [];
    const cfg = parseConfig(
      lines(
        '[repositories.main]',
        'location = "/a"',
        'password = "hunter2"', // 3
        '[repositories.main.env]',
        'AWS_SECRET_ACCESS_KEY = "abc123secret"', // 5
        '[notifiers.n]',
        'type = "ntfy"',
        'url = "https://ntfy.sh/x"',
        'token = "tk_verysecret"', // 9
        '[notifiers.w]',
        'type = "webhook"',
        'url = "https://example.com/h"',
        'headers = { Authorization = "Bearer xyz", "X-Source" = "forge" }', // 13
      ),
      'forge.toml',
      { onWarning: (w) => warnings.push(w) },
    );
    expect(cfg.repositories.get('main')?.password).toEqual({ kind: 'value', value: 'hunter2' });
    expect(cfg.repositories.get('main')?.env.AWS_SECRET_ACCESS_KEY).toEqual({
      kind: 'value',
      value: 'abc123secret',
    });
    expect(warnings).toEqual([
      'forge.toml:3:1: plain-text password in [repositories.main]; prefer password_file, password_env or password_command so the secret is not stored in forge.toml',
      'forge.toml:5:1: plain-text value for AWS_SECRET_ACCESS_KEY in [repositories.main.env]; prefer { env = "…" }, { file = "…" } or { command = "…" }',
      'forge.toml:9:1: plain-text token in [notifiers.n]; prefer token_file, token_env or token_command so the secret is not stored in forge.toml',
      'forge.toml:13:13: plain-text value for header Authorization in [notifiers.w]; prefer { env = "…" }, { file = "…" } or { command = "…" }',
    ]);
  });

  it('keeps secrets out of error messages', () => {
    const list = problems(
      lines(
        '[repositories.main]',
        'password = "hunter2"',
        'limit_upload = "hunter3"',
        'options = { x = { y = 1 } }',
      ),
    );
    expect(list.join('\n')).not.toMatch(/hunter/);
    expect(list).toHaveLength(3);
  });
});

describe('loadConfig', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'forge-config-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('reads and parses a file, recording its absolute path', async () => {
    const path = join(dir, 'forge.toml');
    await writeFile(path, FULL);
    const cfg = await loadConfig(path);
    expect(cfg).toStrictEqual({ ...expectedFull(), file: path });
  });

  it('names the file in every problem line', async () => {
    const path = join(dir, 'bad.toml');
    await writeFile(path, 'databse = 1\n');
    await expect(loadConfig(path)).rejects.toMatchObject({
      code: 'FORGE_USAGE',
      details: { problems: [`${path}:1:1: unknown top-level key "databse" (did you mean "database"?)`] },
    });
  });

  it('reports a missing file as a usage error', async () => {
    const path = join(dir, 'nope.toml');
    await expect(loadConfig(path)).rejects.toMatchObject({
      code: 'FORGE_USAGE',
      message: `config file ${path} does not exist`,
    });
  });
});
