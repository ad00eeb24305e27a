import type { RunFacts } from '../types.ts';

const BYTE_UNITS = ['KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'] as const;

/** Bytes in binary units: `512 B`, `1.5 KiB`, `12.3 MiB`, `140 GiB`. */
export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes)) return String(bytes);
  const sign = bytes < 0 ? '-' : '';
  let value = Math.abs(bytes);
  if (value < 1024) return `${sign}${Math.round(value)} B`;
  let unit = -1;
  while (value >= 1024 && unit < BYTE_UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  // One decimal below 100, none above; drop a trailing ".0".
  let text = value < 100 ? value.toFixed(1) : value.toFixed(0);
  if (text.endsWith('.0')) text = text.slice(0, -2);
  return `${sign}${text} ${BYTE_UNITS[unit]}`;
}

/** A duration for people: `0.2 s`, `42 s`, `3 min 4 s`, `1 h 2 min`, `2 d 3 h`. */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return `${ms} ms`;
  if (ms < 10_000) return `${(Math.round(ms / 100) / 10).toFixed(1)} s`;
  const totalSeconds = Math.round(ms / 1000);
  if (totalSeconds < 60) return `${totalSeconds} s`;
  const seconds = totalSeconds % 60;
  const totalMinutes = Math.floor(totalSeconds / 60);
  if (totalMinutes < 60) return seconds ? `${totalMinutes} min ${seconds} s` : `${totalMinutes} min`;
  const minutes = totalMinutes % 60;
  const totalHours = Math.floor(totalMinutes / 60);
  if (totalHours < 24) return minutes ? `${totalHours} h ${minutes} min` : `${totalHours} h`;
  const hours = totalHours % 24;
  const days = Math.floor(totalHours / 24);
  return hours ? `${days} d ${hours} h` : `${days} d`;
}

const STATUS_WORDS: Record<RunFacts['status'], string> = {
  running: 'started',
  success: 'succeeded',
  warning: 'finished with warnings',
  failed: 'failed',
  skipped: 'was skipped',
  aborted: 'was aborted',
};

/** The run's duration: `durationMs`, else `finishedAt - startedAt`, else undefined. */
export function runDurationMs(facts: RunFacts): number | undefined {
  if (facts.durationMs !== undefined) return facts.durationMs;
  if (facts.finishedAt) return Math.max(0, facts.finishedAt.getTime() - facts.startedAt.getTime());
  return undefined;
}

/** One line for a subject or a push title: `[forge] job home failed on nas`. */
export function formatRunTitle(facts: RunFacts): string {
  return `[forge] job ${facts.job} ${STATUS_WORDS[facts.status]} on ${facts.hostname}`;
}

/**
 * The plain-text report of a run that ntfy, e-mail and healthchecks send: a summary line, then
 * one `Label: value` line per known fact (bytes and durations humanised), the log path last.
 */
export function formatRunMessage(facts: RunFacts): string {
  const duration = runDurationMs(facts);
  const head =
    facts.status === 'running'
      ? `Job ${facts.job} started on ${facts.hostname}.`
      : `Job ${facts.job} ${STATUS_WORDS[facts.status]} on ${facts.hostname}${
          duration === undefined ? '' : ` after ${formatDuration(duration)}`
        }.`;
  const lines = [head, '', `Repository: ${facts.repository}`];
  if (facts.snapshotId !== undefined) lines.push(`Snapshot: ${facts.snapshotId}`);
  if (facts.bytesAdded !== undefined) lines.push(`Data added: ${formatBytes(facts.bytesAdded)}`);
  if (facts.filesNew !== undefined || facts.filesChanged !== undefined) {
    const parts: string[] = [];
    if (facts.filesNew !== undefined) parts.push(`${facts.filesNew} new`);
    if (facts.filesChanged !== undefined) parts.push(`${facts.filesChanged} changed`);
    lines.push(`Files: ${parts.join(', ')}`);
  }
  if (facts.errorCode !== undefined || facts.errorMessage !== undefined) {
    const code = facts.errorCode ?? '';
    const message = facts.errorMessage ?? '';
    lines.push(`Error: ${code && message ? `${code}: ${message}` : code || message}`);
  }
  if (facts.exitCode !== undefined) lines.push(`Exit code: ${facts.exitCode}`);
  lines.push(`Started: ${facts.startedAt.toISOString()}`);
  if (facts.finishedAt) lines.push(`Finished: ${facts.finishedAt.toISOString()}`);
  if (duration !== undefined) lines.push(`Duration: ${formatDuration(duration)}`);
  lines.push(`Run: ${facts.runId}`);
  if (facts.logPath !== undefined) lines.push(`Log: ${facts.logPath}`);
  return `${lines.join('\n')}\n`;
}
