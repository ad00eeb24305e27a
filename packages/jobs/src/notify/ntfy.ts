import type { NotifierConfig, NotifyEvent, RunFacts } from '../types.ts';
import { formatRunMessage, formatRunTitle } from './format.ts';
import {
  checkedHeader,
  httpSend,
  lazySecret,
  type Notifier,
  parseHttpUrl,
  type SecretResolver,
} from './notifier.ts';

type NtfyConfig = Extract<NotifierConfig, { type: 'ntfy' }>;

/** ntfy priority (1 min … 5 max) per event when the notifier sets none. */
export const NTFY_DEFAULT_PRIORITY: Readonly<Record<NotifyEvent, number>> = {
  start: 2,
  success: 3,
  warning: 3,
  failure: 4,
};

/** ntfy tag per event; ntfy shows these emoji short codes as icons. */
export const NTFY_TAGS: Readonly<Record<NotifyEvent, string>> = {
  start: 'arrow_forward',
  success: 'white_check_mark',
  warning: 'warning',
  failure: 'rotating_light',
};

/**
 * A header value as ntfy reads it: ASCII as is, anything else as an RFC 2047 encoded word
 * (`=?UTF-8?B?…?=`, which ntfy decodes since 2.4.0), since HTTP headers cannot carry UTF-8.
 */
export function ntfyHeaderText(text: string): string {
  const oneLine = text.replace(/[\r\n]+/g, ' ');
  if (/^[\x20-\x7e]*$/.test(oneLine)) return oneLine;
  return `=?UTF-8?B?${Buffer.from(oneLine, 'utf8').toString('base64')}?=`;
}

/** The headers ntfy gets for an event (without Authorization). */
export function ntfyHeaders(config: Pick<NtfyConfig, 'priority'>, event: NotifyEvent, facts: RunFacts) {
  return {
    'Content-Type': 'text/plain; charset=utf-8',
    Title: ntfyHeaderText(formatRunTitle(facts)),
    Priority: String(config.priority ?? NTFY_DEFAULT_PRIORITY[event]),
    Tags: NTFY_TAGS[event],
  };
}

/** POSTs {@link formatRunMessage} to the topic URL, with Title, Priority, Tags and a Bearer token. */
export function createNtfyNotifier(config: NtfyConfig, resolveSecret: SecretResolver): Notifier {
  const token = config.token ? lazySecret(config.token, resolveSecret, 'ntfy token') : undefined;
  return {
    name: config.name,
    type: 'ntfy',
    on: config.on,
    async send(event, facts, signal) {
      const url = parseHttpUrl(config.url, 'ntfy topic');
      const headers: Record<string, string> = ntfyHeaders(config, event, facts);
      if (token) {
        const [, value] = checkedHeader('Authorization', `Bearer ${await token()}`);
        headers.Authorization = value;
      }
      await httpSend(url, { method: 'POST', headers, body: formatRunMessage(facts) }, signal);
    },
  };
}
