/**
 * Notifications: webhook, ntfy, healthchecks and e-mail targets from `[notifiers.*]`, sent after
 * (and at the start of) a run. A failing notifier never throws and never fails the run: its
 * problem comes back as a {@link NotifyOutcome}.
 */
import type { NotifierConfig, NotifyEvent, RunFacts } from '../types.ts';
import { createEmailNotifier } from './email.ts';
import { createHealthchecksNotifier } from './healthchecks.ts';
import { type Notifier, NotifySendError, type SecretResolver } from './notifier.ts';
import { createNtfyNotifier } from './ntfy.ts';
import { createWebhookNotifier } from './webhook.ts';

export { isLoopbackHost, smtpOptions } from './email.ts';
export { formatBytes, formatDuration, formatRunMessage, formatRunTitle, runDurationMs } from './format.ts';
export {
  HEALTHCHECKS_BODY_LIMIT,
  healthchecksPingUrl,
  healthchecksRunId,
} from './healthchecks.ts';
export type { Notifier, SecretResolver } from './notifier.ts';
export { NotifySendError } from './notifier.ts';
export { NTFY_DEFAULT_PRIORITY, NTFY_TAGS, ntfyHeaderText } from './ntfy.ts';
export type { WebhookPayload } from './webhook.ts';
export { webhookPayload } from './webhook.ts';

/** Default limit of one delivery attempt. */
export const DEFAULT_NOTIFY_TIMEOUT_MS = 10_000;
/** Default pause before the one retry of a transient failure. */
export const DEFAULT_NOTIFY_RETRY_DELAY_MS = 1_000;

export interface NotifyOptions {
  /** Limit of one attempt, in ms; default 10 s. A send can take two attempts plus the retry delay. */
  readonly timeoutMs?: number;
  /** Pause before the retry, in ms; default 1 s. */
  readonly retryDelayMs?: number;
  /** Cancels every send still in flight (their outcomes say "cancelled"). */
  readonly signal?: AbortSignal;
}

/** What became of one notifier's delivery. */
export interface NotifyOutcome {
  /** The notifier's name (its `[notifiers.<name>]` key). */
  readonly name: string;
  readonly type: NotifierConfig['type'];
  readonly event: NotifyEvent;
  readonly ok: boolean;
  /** 1, or 2 when a transient failure was retried. */
  readonly attempts: number;
  readonly durationMs: number;
  /** Why the last attempt failed; set when `ok` is false. Never holds a secret. */
  readonly error?: string;
}

/**
 * Builds the notifiers of a config. Never throws: a notifier whose settings cannot work (bad URL,
 * user without password) fails each send with a message that says why. Secrets are resolved with
 * `resolveSecret` on the first send that needs them (not here) and then kept: build the notifiers
 * per run so a rotated secret is picked up.
 */
export function createNotifiers(
  configs: readonly NotifierConfig[],
  resolveSecret: SecretResolver,
): Notifier[] {
  return configs.map((config) => createNotifier(config, resolveSecret));
}

/** Builds one notifier (see {@link createNotifiers}). */
export function createNotifier(config: NotifierConfig, resolveSecret: SecretResolver): Notifier {
  switch (config.type) {
    case 'webhook':
      return createWebhookNotifier(config, resolveSecret);
    case 'ntfy':
      return createNtfyNotifier(config, resolveSecret);
    case 'healthchecks':
      return createHealthchecksNotifier(config);
    case 'email':
      return createEmailNotifier(config, resolveSecret);
    default: {
      const unknown = config as { name?: unknown; type?: unknown; on?: unknown };
      return {
        name: String(unknown.name),
        type: unknown.type as NotifierConfig['type'],
        on: Array.isArray(unknown.on) ? (unknown.on as NotifyEvent[]) : [],
        send: async () => {
          throw new NotifySendError(`unknown notifier type ${JSON.stringify(unknown.type)}`, false);
        },
      };
    }
  }
}

/**
 * Sends `event` to every notifier whose `on` lists it, all in parallel. Each attempt is limited
 * to `timeoutMs` (10 s); a transient failure (HTTP 5xx/408/429, network error, timeout, SMTP 4xx)
 * is retried once. Resolves with one outcome per notifier sent to, in the given order; never
 * rejects.
 */
export async function notify(
  notifiers: readonly Notifier[],
  event: NotifyEvent,
  facts: RunFacts,
  options: NotifyOptions = {},
): Promise<NotifyOutcome[]> {
  const targets = notifiers.filter((n) => n.on.includes(event));
  return Promise.all(targets.map((n) => deliver(n, event, facts, options)));
}

async function deliver(
  notifier: Notifier,
  event: NotifyEvent,
  facts: RunFacts,
  options: NotifyOptions,
): Promise<NotifyOutcome> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_NOTIFY_TIMEOUT_MS;
  const retryDelayMs = options.retryDelayMs ?? DEFAULT_NOTIFY_RETRY_DELAY_MS;
  const started = performance.now();
  const outcome = (ok: boolean, attempts: number, error?: string): NotifyOutcome => ({
    name: notifier.name,
    type: notifier.type,
    event,
    ok,
    attempts,
    durationMs: Math.round(performance.now() - started),
    ...(error === undefined ? {} : { error }),
  });
  let attempts = 0;
  for (;;) {
    attempts++;
    let failure: NotifySendError;
    try {
      await attempt(notifier, event, facts, timeoutMs, options.signal);
      return outcome(true, attempts);
    } catch (e) {
      failure = asSendError(e);
    }
    if (!failure.transient || attempts >= 2 || options.signal?.aborted) {
      return outcome(false, attempts, failure.message);
    }
    if (!(await pause(retryDelayMs, options.signal))) return outcome(false, attempts, failure.message);
  }
}

/** One send, ended by its timeout or the caller's signal even if the notifier ignores `signal`. */
async function attempt(
  notifier: Notifier,
  event: NotifyEvent,
  facts: RunFacts,
  timeoutMs: number,
  outer: AbortSignal | undefined,
): Promise<void> {
  const controller = new AbortController();
  const timer = setTimeout(
    () => controller.abort(new NotifySendError(`no answer within ${seconds(timeoutMs)}`, true)),
    Math.min(timeoutMs, 2 ** 31 - 1),
  );
  const onOuterAbort = () => controller.abort(new NotifySendError('cancelled', false));
  if (outer?.aborted) onOuterAbort();
  else outer?.addEventListener('abort', onOuterAbort, { once: true });
  const { signal } = controller;
  try {
    if (signal.aborted) throw signal.reason;
    const aborted = new Promise<never>((_, reject) => {
      signal.addEventListener('abort', () => reject(signal.reason), { once: true });
    });
    // The send may reject after the abort already settled the race: keep that quiet.
    const send = Promise.resolve().then(() => notifier.send(event, facts, signal));
    send.catch(() => {});
    aborted.catch(() => {});
    await Promise.race([send, aborted]);
  } finally {
    clearTimeout(timer);
    outer?.removeEventListener('abort', onOuterAbort);
  }
}

function asSendError(e: unknown): NotifySendError {
  if (e instanceof NotifySendError) return e;
  const message = e instanceof Error ? e.message : String(e);
  return new NotifySendError(message || 'failed', false, e);
}

function seconds(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${(ms / 1000).toFixed(1)} s`;
}

/** Waits `ms`; resolves false at once if `signal` aborts. */
function pause(ms: number, signal: AbortSignal | undefined): Promise<boolean> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve(false);
    const onAbort = () => {
      clearTimeout(timer);
      resolve(false);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve(true);
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
