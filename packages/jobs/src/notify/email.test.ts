import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { SMTPServer, type SMTPServerOptions } from 'smtp-server';
import { afterEach, describe, expect, it } from 'vitest';
import type { NotifierConfig, RunFacts, SecretRef } from '../types.ts';
import { isTransientSmtpError } from './email.ts';
import {
  createNotifiers,
  formatRunMessage,
  isLoopbackHost,
  notify,
  type SecretResolver,
  smtpOptions,
} from './index.ts';

const facts: RunFacts = {
  job: 'home',
  runId: '01J9Z8ABCDEF',
  repository: 'nas-repo',
  status: 'failed',
  startedAt: new Date('2025-03-01T03:00:00.000Z'),
  finishedAt: new Date('2025-03-01T03:01:05.000Z'),
  durationMs: 65_000,
  errorCode: 'FORGE_LOCK_CONFLICT',
  errorMessage:
    'repository is locked by pid 42 on nas, which has been running the nightly prune for a while now',
  exitCode: 11,
  logPath: '/var/log/forge/home.log',
  hostname: 'nas',
};

const resolveSecret: SecretResolver = async (ref: SecretRef) => {
  if (ref.kind === 'value') return ref.value;
  throw new Error('unexpected secret kind');
};

interface Delivered {
  raw: string;
  from: string | undefined;
  to: string[];
  user: string | undefined;
  secure: boolean;
}

const servers: SMTPServer[] = [];
afterEach(async () => {
  for (const server of servers.splice(0)) await new Promise<void>((r) => server.close(() => r()));
});

/** A real SMTP server on loopback (STARTTLS with smtp-server's built-in self-signed certificate). */
async function startSmtp(options: SMTPServerOptions = {}): Promise<{ port: number; mails: Delivered[] }> {
  const mails: Delivered[] = [];
  const server = new SMTPServer({
    logger: false,
    disableReverseLookup: true,
    onAuth(auth, _session, callback) {
      if (auth.username === 'forge' && auth.password === 'hunter2') callback(null, { user: 'forge' });
      else callback(new Error('Invalid username or password'));
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        mails.push({
          raw: Buffer.concat(chunks).toString('utf8'),
          from: session.envelope.mailFrom ? session.envelope.mailFrom.address : undefined,
          to: session.envelope.rcptTo.map((r) => r.address),
          user: typeof session.user === 'string' ? session.user : undefined,
          secure: session.secure,
        });
        callback();
      });
    },
    ...options,
  });
  servers.push(server);
  server.listen(0, '127.0.0.1');
  await once(server.server, 'listening');
  return { port: (server.server.address() as AddressInfo).port, mails };
}

/** Splits a raw message into unfolded headers and its decoded (7bit or quoted-printable) body. */
function parseMail(raw: string): { headers: Map<string, string>; body: string } {
  const split = raw.indexOf('\r\n\r\n');
  const headers = new Map<string, string>();
  for (const line of raw
    .slice(0, split)
    .replace(/\r\n[ \t]+/g, ' ')
    .split('\r\n')) {
    const colon = line.indexOf(':');
    headers.set(line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim());
  }
  let body = raw.slice(split + 4);
  if (headers.get('content-transfer-encoding') === 'quoted-printable') {
    body = Buffer.from(
      body
        .replace(/=\r\n/g, '')
        .replace(/=([0-9A-F]{2})/g, (_m, hex: string) => String.fromCharCode(Number.parseInt(hex, 16))),
      'latin1',
    ).toString('utf8');
  }
  return { headers, body: body.replace(/\r\n/g, '\n') };
}

function emailConfig(
  port: number,
  extra: Partial<Extract<NotifierConfig, { type: 'email' }>> = {},
): NotifierConfig {
  return {
    type: 'email',
    name: 'mail',
    on: ['failure'],
    host: '127.0.0.1',
    port,
    secure: false,
    from: 'forge@nas.example',
    to: ['ops@example.com', 'me@example.com'],
    ...extra,
  };
}

describe('email', () => {
  it('delivers the run report over STARTTLS with AUTH', async () => {
    const smtp = await startSmtp();
    const notifiers = createNotifiers(
      [emailConfig(smtp.port, { user: 'forge', password: { kind: 'value', value: 'hunter2' } })],
      resolveSecret,
    );
    const [outcome] = await notify(notifiers, 'failure', facts);
    expect(outcome).toMatchObject({ name: 'mail', type: 'email', ok: true, attempts: 1 });
    expect(smtp.mails).toHaveLength(1);
    const mail = smtp.mails[0]!;
    expect(mail.user).toBe('forge');
    expect(mail.secure).toBe(true); // upgraded with STARTTLS
    expect(mail.from).toBe('forge@nas.example');
    expect(mail.to).toEqual(['ops@example.com', 'me@example.com']);
    const { headers, body } = parseMail(mail.raw);
    expect(headers.get('subject')).toBe('[forge] job home failed on nas');
    expect(headers.get('from')).toBe('forge@nas.example');
    expect(headers.get('to')).toBe('ops@example.com, me@example.com');
    expect(headers.get('auto-submitted')).toBe('auto-generated');
    expect(headers.get('x-backupforge-run')).toBe('01J9Z8ABCDEF');
    expect(body.trimEnd()).toBe(formatRunMessage(facts).trimEnd());
    expect(body).toContain('Log: /var/log/forge/home.log');
  });

  it('reports rejected credentials without retrying', async () => {
    const smtp = await startSmtp();
    let attempts = 0;
    const notifiers = createNotifiers(
      [emailConfig(smtp.port, { user: 'forge', password: { kind: 'value', value: 'wrong' } })],
      async (ref) => {
        attempts++;
        return resolveSecret(ref);
      },
    );
    const [outcome] = await notify(notifiers, 'failure', facts, { retryDelayMs: 10 });
    expect(outcome).toMatchObject({ ok: false, attempts: 1 });
    expect(outcome!.error).toMatch(/Invalid login|535/);
    expect(outcome!.error).not.toContain('wrong');
    expect(smtp.mails).toHaveLength(0);
    expect(attempts).toBe(1);
  });

  it('sends without AUTH (and in plain text) when no user is set and the server offers no STARTTLS', async () => {
    const smtp = await startSmtp({ authOptional: true, disabledCommands: ['STARTTLS', 'AUTH'] });
    const notifiers = createNotifiers([emailConfig(smtp.port, { to: ['ops@example.com'] })], resolveSecret);
    const [outcome] = await notify(notifiers, 'failure', facts);
    expect(outcome).toMatchObject({ ok: true });
    expect(smtp.mails[0]).toMatchObject({ user: undefined, secure: false, to: ['ops@example.com'] });
  });

  it('refuses half-configured credentials', async () => {
    const smtp = await startSmtp();
    const [outcome] = await notify(
      createNotifiers([emailConfig(smtp.port, { user: 'forge' })], resolveSecret),
      'failure',
      facts,
    );
    expect(outcome).toMatchObject({
      ok: false,
      attempts: 1,
      error: 'SMTP authentication needs both user and password',
    });
  });

  it('retries, then reports, a server that is not there', async () => {
    const smtp = await startSmtp();
    for (const s of servers.splice(0)) await new Promise<void>((r) => s.close(() => r()));
    const [outcome] = await notify(
      createNotifiers([emailConfig(smtp.port)], resolveSecret),
      'failure',
      facts,
      {
        retryDelayMs: 10,
      },
    );
    expect(outcome).toMatchObject({ ok: false, attempts: 2 });
    expect(outcome!.error).toMatch(/ECONNREFUSED/);
  });

  it('retries lost connections and 4xx replies, not rejections or certificate errors', () => {
    const err = (fields: object) => Object.assign(new Error('x'), fields);
    expect(isTransientSmtpError(err({ code: 'ESOCKET', originalCode: 'ECONNREFUSED' }))).toBe(true);
    expect(isTransientSmtpError(err({ code: 'ECONNECTION' }))).toBe(true);
    expect(isTransientSmtpError(err({ code: 'ETIMEDOUT' }))).toBe(true);
    expect(isTransientSmtpError(err({ code: 'EENVELOPE', responseCode: 451, permanent: false }))).toBe(true);
    // What nodemailer 10 reports for an expired or untrusted server certificate:
    expect(isTransientSmtpError(err({ code: 'ESOCKET', originalCode: 'CERT_HAS_EXPIRED' }))).toBe(false);
    expect(isTransientSmtpError(err({ code: 'EAUTH', responseCode: 535, permanent: true }))).toBe(false);
    expect(isTransientSmtpError(err({ code: 'EENVELOPE', responseCode: 550 }))).toBe(false);
  });

  it('accepts self-signed certificates only on loopback', () => {
    expect(isLoopbackHost('127.0.0.1')).toBe(true);
    expect(isLoopbackHost('LOCALHOST')).toBe(true);
    expect(isLoopbackHost('[::1]')).toBe(true);
    expect(isLoopbackHost('127.1.2.3')).toBe(true);
    expect(isLoopbackHost('smtp.example.com')).toBe(false);
    expect(isLoopbackHost('127.0.0.1.example.com')).toBe(false);
    const remote = emailConfig(587, { host: 'smtp.example.com' }) as Extract<
      NotifierConfig,
      { type: 'email' }
    >;
    expect(smtpOptions(remote, undefined, 1000).tls).toBeUndefined();
    const local = emailConfig(25) as Extract<NotifierConfig, { type: 'email' }>;
    expect(smtpOptions(local, undefined, 1000).tls).toEqual({ rejectUnauthorized: false });
  });
});
