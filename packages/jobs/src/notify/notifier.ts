import { TRANSIENT_NETWORK_CODES } from '@backupforge/common';
import type { NotifierConfig, NotifyEvent, RunFacts, SecretRef } from '../types.ts';

/**
 * Turns a secret reference into its value. The config layer provides the real one
 * (`resolveSecret(ref, { env, cwd })`); notifiers call it only when they send.
 */
export type SecretResolver = (ref: SecretRef) => Promise<string>;

/** One configured notification target. `notify()` adds the event filter, timeout and retry. */
export interface Notifier {
  readonly name: string;
  readonly type: NotifierConfig['type'];
  /** Events this notifier is sent. */
  readonly on: readonly NotifyEvent[];
  /**
   * One delivery attempt. Rejects with a {@link NotifySendError} (`transient` decides whether
   * `notify()` tries once more); must stop when `signal` aborts.
   */
  send(event: NotifyEvent, facts: RunFacts, signal: AbortSignal): Promise<void>;
}

/** A failed delivery attempt. Its message is shown to users: it never holds a secret. */
export class NotifySendError extends Error {
  override readonly name = 'NotifySendError';
  /** Whether another attempt may succeed (5xx, 429, network errors, timeouts). */
  readonly transient: boolean;

  constructor(message: string, transient: boolean, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.transient = transient;
  }
}

/**
 * Resolves `ref` on first use and remembers the value; a failed resolution is not remembered
 * (a password command may work on the next run) and becomes a permanent send error.
 */
export function lazySecret(ref: SecretRef, resolve: SecretResolver, what: string): () => Promise<string> {
  let value: Promise<string> | undefined;
  return async () => {
    if (!value) {
      value = resolve(ref);
      value.catch(() => {
        value = undefined;
      });
    }
    try {
      return await value;
    } catch (e) {
      const message = e instanceof Error ? e.message : String(e);
      throw new NotifySendError(`could not resolve the ${what}: ${message}`, false, e);
    }
  };
}

const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
// A header value fetch accepts: bytes 0x20-0xff and tab; no CR, LF or NUL.
const HEADER_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

/**
 * Checks a header for `fetch` without putting its value in the error (it is often a token).
 * One trailing newline (a secret file's last line) is dropped.
 */
export function checkedHeader(name: string, value: string): [string, string] {
  if (!HEADER_NAME.test(name)) {
    throw new NotifySendError(`header name ${JSON.stringify(name)} is not a valid HTTP header name`, false);
  }
  const trimmed = value.replace(/\r?\n$/, '');
  if (!HEADER_VALUE.test(trimmed)) {
    throw new NotifySendError(
      `the value of header ${name} holds characters HTTP does not allow (line breaks, control or non-Latin-1 characters)`,
      false,
    );
  }
  return [name, trimmed];
}

/** Sets a header in a plain record, replacing one of the same name in any letter case. */
export function setHeader(headers: Record<string, string>, name: string, value: string): void {
  const lower = name.toLowerCase();
  for (const key of Object.keys(headers)) {
    if (key.toLowerCase() === lower) delete headers[key];
  }
  headers[name] = value;
}

/** Parses an http(s) URL of a notifier's config; the error names the notifier, not the URL. */
export function parseHttpUrl(url: string, what: string): URL {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new NotifySendError(`the ${what} URL is not a valid URL`, false);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new NotifySendError(`the ${what} URL must start with http:// or https://`, false);
  }
  return parsed;
}

/** Network error codes that another attempt may fix (shared with the storage backends). */
export { TRANSIENT_NETWORK_CODES };

interface CodedError {
  code?: unknown;
  message?: unknown;
  errors?: unknown;
}

function networkCause(e: unknown): { code: string | undefined; message: string } {
  let cause: unknown = e instanceof Error && e.cause !== undefined ? e.cause : e;
  // Happy eyeballs reports an AggregateError of one error per address.
  const aggregate = cause as CodedError;
  if (Array.isArray(aggregate?.errors) && aggregate.errors.length > 0 && !aggregate.code) {
    cause = aggregate.errors[0];
  }
  const c = (cause ?? {}) as CodedError;
  const code = typeof c.code === 'string' ? c.code : undefined;
  const message = typeof c.message === 'string' && c.message ? c.message : (code ?? 'network error');
  return { code, message };
}

/**
 * Sends one HTTP request with `fetch` and reads (at most a short snippet of) the answer.
 * Resolves on 2xx; otherwise rejects with a {@link NotifySendError}: 5xx, 408, 429 and network
 * errors are transient, everything else (4xx, TLS certificate errors) is permanent.
 */
export async function httpSend(
  url: URL,
  init: { method: 'GET' | 'POST'; headers: Record<string, string>; body?: string },
  signal: AbortSignal,
): Promise<void> {
  let response: Response;
  try {
    response = await fetch(url, { ...init, signal, redirect: 'follow' });
  } catch (e) {
    if (signal.aborted) throw signal.reason;
    if (e instanceof TypeError && e.message !== 'fetch failed') {
      // Thrown before anything was sent (bad URL or header): its text may quote a header value.
      throw new NotifySendError('the request could not be built (check the URL and headers)', false, e);
    }
    const { code, message } = networkCause(e);
    const text = code && !message.includes(code) ? `${message} (${code})` : message;
    throw new NotifySendError(text, code !== undefined && TRANSIENT_NETWORK_CODES.has(code), e);
  }
  let snippet = '';
  try {
    const body = await response.text();
    snippet = body.replace(/\s+/g, ' ').trim().slice(0, 200);
  } catch {
    if (signal.aborted) throw signal.reason;
    // An answer whose body breaks off: the status line is what counts.
  }
  if (response.ok) return;
  const status = `HTTP ${response.status}${response.statusText ? ` ${response.statusText}` : ''}`;
  const transient = response.status >= 500 || response.status === 408 || response.status === 429;
  throw new NotifySendError(snippet ? `${status}: ${snippet}` : status, transient);
}
