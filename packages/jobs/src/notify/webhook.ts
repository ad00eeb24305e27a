import type { NotifierConfig, NotifyEvent, RunFacts } from '../types.ts';
import { runDurationMs } from './format.ts';
import {
  checkedHeader,
  httpSend,
  lazySecret,
  type Notifier,
  parseHttpUrl,
  type SecretResolver,
  setHeader,
} from './notifier.ts';

type WebhookConfig = Extract<NotifierConfig, { type: 'webhook' }>;

/** The JSON body a webhook receives; unknown facts are `null`, so every key is always there. */
export interface WebhookPayload {
  readonly event: NotifyEvent;
  readonly job: string;
  readonly status: RunFacts['status'];
  readonly run_id: string;
  readonly repository: string;
  readonly snapshot_id: string | null;
  readonly bytes_added: number | null;
  readonly files_new: number | null;
  readonly files_changed: number | null;
  readonly duration_ms: number | null;
  readonly error_code: string | null;
  readonly error_message: string | null;
  readonly exit_code: number | null;
  readonly hostname: string;
  readonly started_at: string;
  readonly finished_at: string | null;
  readonly log_path: string | null;
}

/** Builds the webhook body of an event. */
export function webhookPayload(event: NotifyEvent, facts: RunFacts): WebhookPayload {
  return {
    event,
    job: facts.job,
    status: facts.status,
    run_id: facts.runId,
    repository: facts.repository,
    snapshot_id: facts.snapshotId ?? null,
    bytes_added: facts.bytesAdded ?? null,
    files_new: facts.filesNew ?? null,
    files_changed: facts.filesChanged ?? null,
    duration_ms: runDurationMs(facts) ?? null,
    error_code: facts.errorCode ?? null,
    error_message: facts.errorMessage ?? null,
    exit_code: facts.exitCode ?? null,
    hostname: facts.hostname,
    started_at: facts.startedAt.toISOString(),
    finished_at: facts.finishedAt?.toISOString() ?? null,
    log_path: facts.logPath ?? null,
  };
}

/** POSTs {@link WebhookPayload} as JSON, with the configured headers (secrets resolved on send). */
export function createWebhookNotifier(config: WebhookConfig, resolveSecret: SecretResolver): Notifier {
  const headers = Object.entries(config.headers).map(
    ([name, ref]) => [name, lazySecret(ref, resolveSecret, `value of header ${name}`)] as const,
  );
  return {
    name: config.name,
    type: 'webhook',
    on: config.on,
    async send(event, facts, signal) {
      const url = parseHttpUrl(config.url, 'webhook');
      const sent: Record<string, string> = {
        'Content-Type': 'application/json',
        'User-Agent': 'backupforge',
      };
      for (const [name, value] of headers) {
        const [key, checked] = checkedHeader(name, await value());
        setHeader(sent, key, checked);
      }
      await httpSend(
        url,
        { method: 'POST', headers: sent, body: JSON.stringify(webhookPayload(event, facts)) },
        signal,
      );
    },
  };
}
