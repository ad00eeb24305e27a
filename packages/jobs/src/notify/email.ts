import type { NodemailerError, SMTPTransportOptions } from 'nodemailer';
import type { NotifierConfig } from '../types.ts';
import { formatRunMessage, formatRunTitle } from './format.ts';
import {
  lazySecret,
  type Notifier,
  NotifySendError,
  type SecretResolver,
  TRANSIENT_NETWORK_CODES,
} from './notifier.ts';

type EmailConfig = Extract<NotifierConfig, { type: 'email' }>;

/** nodemailer's own connect/greeting/idle limit; `notify()`'s timeout usually ends a send sooner. */
const SMTP_TIMEOUT_MS = 30_000;

/**
 * Whether `host` is this machine (localhost, 127.0.0.0/8, ::1). Only there is a self-signed or
 * mismatching TLS certificate accepted: a local relay or test server, never a remote one.
 */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[(.*)\]$/, '$1');
  return h === 'localhost' || h === '::1' || /^127(\.\d{1,3}){3}$/.test(h);
}

/** nodemailer's SMTP options for a notifier (`pass` already resolved). */
export function smtpOptions(
  config: EmailConfig,
  pass: string | undefined,
  timeoutMs: number,
): SMTPTransportOptions {
  return {
    host: config.host,
    port: config.port,
    // secure: TLS from the first byte (465). Otherwise nodemailer upgrades with STARTTLS whenever
    // the server offers it, and fails if that upgrade fails (no silent fallback to plain text).
    secure: config.secure,
    ...(config.user !== undefined && pass !== undefined ? { auth: { user: config.user, pass } } : {}),
    ...(isLoopbackHost(config.host) ? { tls: { rejectUnauthorized: false } } : {}),
    connectionTimeout: timeoutMs,
    greetingTimeout: timeoutMs,
    socketTimeout: timeoutMs,
    logger: false,
  };
}

/** SMTP failures worth one more attempt: lost connections, timeouts, 4xx replies. */
export function isTransientSmtpError(e: NodemailerError): boolean {
  if (typeof e.permanent === 'boolean') return !e.permanent;
  if (e.responseCode !== undefined) return e.responseCode >= 400 && e.responseCode < 500;
  if (e.code === 'ESOCKET' || e.code === 'ECONNECTION') {
    // A socket error keeps the system's code: a refused connection is worth a retry, a TLS
    // certificate error (CERT_HAS_EXPIRED, DEPTH_ZERO_SELF_SIGNED_CERT…) is not.
    return e.originalCode === undefined || TRANSIENT_NETWORK_CODES.has(e.originalCode);
  }
  return e.code === 'ETIMEDOUT' || e.code === 'EDNS';
}

/**
 * Sends a plain-text mail over SMTP: subject {@link formatRunTitle}, body {@link formatRunMessage}.
 * One connection per mail, closed afterwards.
 */
export function createEmailNotifier(config: EmailConfig, resolveSecret: SecretResolver): Notifier {
  const password = config.password ? lazySecret(config.password, resolveSecret, 'SMTP password') : undefined;
  return {
    name: config.name,
    type: 'email',
    on: config.on,
    async send(_event, facts, signal) {
      if ((config.user === undefined) !== (password === undefined)) {
        throw new NotifySendError('SMTP authentication needs both user and password', false);
      }
      if (config.to.length === 0) throw new NotifySendError('no recipient (to) is configured', false);
      const pass = password ? await password() : undefined;
      // nodemailer is loaded on the first mail, not with every `forge` command.
      const { createTransport } = await import('nodemailer');
      const transport = createTransport(smtpOptions(config, pass, SMTP_TIMEOUT_MS));
      try {
        await transport.sendMail({
          from: config.from,
          to: [...config.to],
          subject: formatRunTitle(facts),
          text: formatRunMessage(facts),
          headers: { 'Auto-Submitted': 'auto-generated', 'X-BackupForge-Run': facts.runId },
          signal,
        });
      } catch (e) {
        if (signal.aborted) throw signal.reason;
        const err = e as NodemailerError;
        let message = err instanceof Error ? err.message : String(e);
        if (err.originalCode && !message.includes(err.originalCode)) message += ` (${err.originalCode})`;
        throw new NotifySendError(message, isTransientSmtpError(err), e);
      } finally {
        transport.close();
      }
    },
  };
}
