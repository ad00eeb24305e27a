import { ForgeError } from '@backupforge/common';
import type { ForgeConfig, JobConfig } from '../types.ts';

export interface PrintOptions {
  /** The command that runs forge, e.g. `/usr/local/bin/forge` or `npx forge`. */
  readonly forge: string;
  /** Absolute path of the config file, passed as --config. */
  readonly configPath: string;
}

const DOW = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const NICKNAMES: Record<string, string> = {
  '@yearly': '0 0 1 1 *',
  '@annually': '0 0 1 1 *',
  '@monthly': '0 0 1 * *',
  '@weekly': '0 0 * * 0',
  '@daily': '0 0 * * *',
  '@midnight': '0 0 * * *',
  '@hourly': '0 * * * *',
};

function shellQuote(s: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

function scheduled(config: ForgeConfig): JobConfig[] {
  const jobs = [...config.jobs.values()].filter((j) => j.schedule);
  if (jobs.length === 0) {
    throw new ForgeError('FORGE_USAGE', `no job in ${config.file} has a schedule`, {
      hint: 'add schedule = "0 3 * * *" to a [jobs.NAME] table',
    });
  }
  return jobs;
}

function fields(cron: string): string[] {
  const expanded = NICKNAMES[cron.trim().toLowerCase()] ?? cron.trim();
  const f = expanded.split(/\s+/);
  if (f.length === 6) f.shift(); // seconds: cron and systemd timers have minute resolution
  if (f.length !== 5)
    throw new ForgeError('FORGE_USAGE', `cannot convert the schedule '${cron}' (expected 5 fields)`);
  return f;
}

/** crontab lines (one per scheduled job; CRON_TZ where a job has a time zone). */
export function printCrontab(config: ForgeConfig, opts: PrintOptions): string {
  const lines = [
    `# BackupForge jobs from ${opts.configPath}; install with: crontab -e (or a file in /etc/cron.d with a user field)`,
    `# forge run is quiet unless something is wrong, so cron mails only failures.`,
  ];
  let tz: string | undefined;
  for (const job of scheduled(config)) {
    const want = job.schedule!.timezone;
    if (want !== tz) {
      lines.push(want ? `CRON_TZ=${want}` : 'CRON_TZ=');
      tz = want;
    }
    const cmd = `${opts.forge} run --config ${shellQuote(opts.configPath)} ${shellQuote(job.name)}`;
    lines.push(`${fields(job.schedule!.cron).join(' ')} ${cmd}`);
  }
  return `${lines.join('\n')}\n`;
}

/** One cron field → the systemd calendar syntax (`*`, lists, `a..b` ranges, `/step`). */
function toCalendarPart(field: string, names?: readonly string[]): string {
  if (field === '*') return '*';
  return field
    .split(',')
    .map((part) => {
      const [range, step] = part.split('/');
      let r = range!;
      if (r === '*') r = names ? `${names[0]}..${names[names.length - 1]}` : '0';
      r = r.replace('-', '..');
      if (names) r = r.replace(/\d+/g, (d) => names[Number(d) % 7] ?? d);
      return step ? `${r}/${step}` : r;
    })
    .join(',');
}

/** `OnCalendar=` for a cron expression. */
export function cronToOnCalendar(cron: string, timezone?: string): string {
  const [min, hour, dom, mon, dow] = fields(cron) as [string, string, string, string, string];
  const weekday = dow === '*' ? '' : `${toCalendarPart(dow, DOW)} `;
  const date = `*-${toCalendarPart(mon)}-${toCalendarPart(dom)}`;
  const time = `${toCalendarPart(hour)}:${toCalendarPart(min)}:00`;
  return `${weekday}${date} ${time}${timezone ? ` ${timezone}` : ''}`;
}

/** A oneshot service + timer pair per scheduled job, separated by `# file:` headers. */
export function printSystemd(config: ForgeConfig, opts: PrintOptions): string {
  const out: string[] = [];
  for (const job of scheduled(config)) {
    const unit = `forge-${job.name.replace(/[^A-Za-z0-9_.-]/g, '_')}`;
    out.push(
      `# file: /etc/systemd/system/${unit}.service`,
      '[Unit]',
      `Description=BackupForge job ${job.name}`,
      'Wants=network-online.target',
      'After=network-online.target',
      '',
      '[Service]',
      'Type=oneshot',
      `ExecStart=${opts.forge} run --config ${shellQuote(opts.configPath)} ${shellQuote(job.name)}`,
      '# exit 13: the previous run of this job is still going (not a failure of this one)',
      'SuccessExitStatus=13',
      'Nice=10',
      'IOSchedulingClass=idle',
      '',
      `# file: /etc/systemd/system/${unit}.timer`,
      '[Unit]',
      `Description=Schedule of BackupForge job ${job.name}`,
      '',
      '[Timer]',
      `OnCalendar=${cronToOnCalendar(job.schedule!.cron, job.schedule!.timezone)}`,
      `Persistent=${job.schedule!.missed === 'run-once' ? 'true' : 'false'}`,
      '',
      '[Install]',
      'WantedBy=timers.target',
      '',
    );
  }
  out.push('# then: systemctl daemon-reload && systemctl enable --now forge-<job>.timer');
  return `${out.join('\n')}\n`;
}
