import { createHash } from 'node:crypto';
import type { NotifierConfig, NotifyEvent, RunFacts } from '../types.ts';
import { formatRunMessage } from './format.ts';
import { httpSend, type Notifier, parseHttpUrl } from './notifier.ts';

type HealthchecksConfig = Extract<NotifierConfig, { type: 'healthchecks' }>;

/** Healthchecks stores at most the first 10 KB of a ping body on self-hosted instances. */
export const HEALTHCHECKS_BODY_LIMIT = 10_000;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** Namespace of the name-based (version 5) UUIDs made from run ids that are not UUIDs. */
const RID_NAMESPACE = Buffer.from('6f1c0d0e7a4b4f0e9a51b7c2d3e4f5a6', 'hex');

/**
 * The `rid` (run id) healthchecks pairs `/start` with the success or failure ping by. It must be
 * a canonical lowercase UUID: a UUID run id is used as is (lowercased), any other one is mapped
 * to a name-based UUID (RFC 9562 version 5), the same for the same run id.
 */
export function healthchecksRunId(runId: string): string {
  if (UUID.test(runId)) return runId.toLowerCase();
  const hash = createHash('sha1').update(RID_NAMESPACE).update(runId, 'utf8').digest();
  hash[6] = (hash[6]! & 0x0f) | 0x50;
  hash[8] = (hash[8]! & 0x3f) | 0x80;
  const hex = hash.subarray(0, 16).toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** The ping URL of an event: `<url>/start`, `<url>` (success, warning), `<url>/fail`, with `?rid=`. */
export function healthchecksPingUrl(base: URL, event: NotifyEvent, runId: string): URL {
  const url = new URL(base.href);
  const path = url.pathname.replace(/\/+$/, '');
  const suffix = event === 'start' ? '/start' : event === 'failure' ? '/fail' : '';
  url.pathname = `${path}${suffix}`;
  url.searchParams.set('rid', healthchecksRunId(runId));
  return url;
}

/** Cuts UTF-8 text to at most `limit` bytes without splitting a character. */
export function truncateUtf8(text: string, limit: number): string {
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length <= limit) return text;
  let end = limit;
  // Back up to the start of a character (continuation bytes are 10xxxxxx).
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--;
  return bytes.subarray(0, end).toString('utf8');
}

/**
 * Pings a healthchecks.io-style check: POST with the run report (≤ 10 KB) as body. There is no
 * warning state in healthchecks: a warning pings success, its body says what went wrong.
 */
export function createHealthchecksNotifier(config: HealthchecksConfig): Notifier {
  return {
    name: config.name,
    type: 'healthchecks',
    on: config.on,
    async send(event, facts: RunFacts, signal) {
      const url = healthchecksPingUrl(parseHttpUrl(config.url, 'healthchecks ping'), event, facts.runId);
      await httpSend(
        url,
        {
          method: 'POST',
          headers: { 'Content-Type': 'text/plain; charset=utf-8', 'User-Agent': 'backupforge' },
          body: truncateUtf8(formatRunMessage(facts), HEALTHCHECKS_BODY_LIMIT),
        },
        signal,
      );
    },
  };
}
