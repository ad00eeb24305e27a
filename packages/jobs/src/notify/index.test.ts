import { once } from 'node:events';
import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { NotifierConfig, RunFacts, SecretRef } from '../types.ts';
import {
  createNotifiers,
  formatRunMessage,
  formatRunTitle,
  HEALTHCHECKS_BODY_LIMIT,
  healthchecksRunId,
  type Notifier,
  notify,
  type SecretResolver,
} from './index.ts';

const facts: RunFacts = {
  job: 'home',
  runId: '01J9Z8ABCDEF',
  repository: 'nas-repo',
  status: 'failed',
  startedAt: new Date('2025-03-01T03:00:00.000Z'),
  finishedAt: new Date('2025-03-01T03:01:05.000Z'),
  durationMs: 65_000,
  snapshotId: 'a1b2c3d4',
  bytesAdded: 1_610_612_736,
  filesNew: 12,
  filesChanged: 3,
  errorCode: 'FORGE_LOCK_CONFLICT',
  errorMessage: 'repository is locked by pid 42 on nas',
  exitCode: 11,
  logPath: '/var/log/forge/home.log',
  hostname: 'nas',
};

const SECRETS: Record<string, string> = { HOOK_TOKEN: 's3cr3t', NTFY_TOKEN: 'tk_abc\n', BAD: 'a\nb' };
const resolveSecret: SecretResolver = async (ref: SecretRef) => {
  if (ref.kind === 'value') return ref.value;
  if (ref.kind === 'env') {
    const value = SECRETS[ref.name];
    if (value === undefined) throw new Error(`environment variable ${ref.name} is not set`);
    return value;
  }
  throw new Error(`unsupported secret kind ${ref.kind}`);
};

interface Received {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
}

interface TestServer {
  url: string;
  requests: Received[];
}

const servers: Server[] = [];
afterEach(async () => {
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    server.close();
  }
});

/** A loopback HTTP server that records each request, then lets `answer` reply (or not). */
async function startServer(
  answer: (req: Received, res: ServerResponse, index: number) => void,
): Promise<TestServer> {
  const requests: Received[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const received = {
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        body: Buffer.concat(chunks).toString('utf8'),
      };
      requests.push(received);
      answer(received, res, requests.length - 1);
    });
  });
  servers.push(server);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, requests };
}

const ok = (_req: Received, res: ServerResponse) => res.end('OK');

describe('webhook', () => {
  it('POSTs the run as JSON with the configured headers, secrets resolved', async () => {
    const server = await startServer(ok);
    const notifiers = createNotifiers(
      [
        {
          type: 'webhook',
          name: 'hook',
          on: ['failure'],
          url: `${server.url}/forge/events?src=nas`,
          headers: {
            'X-Token': { kind: 'env', name: 'HOOK_TOKEN' },
            'X-Source': { kind: 'value', value: 'forge' },
          },
        },
      ],
      resolveSecret,
    );
    const outcomes = await notify(notifiers, 'failure', facts);
    expect(outcomes).toEqual([
      expect.objectContaining({ name: 'hook', type: 'webhook', event: 'failure', ok: true, attempts: 1 }),
    ]);
    expect(outcomes[0]?.error).toBeUndefined();
    expect(server.requests).toHaveLength(1);
    const req = server.requests[0]!;
    expect(req.method).toBe('POST');
    expect(req.url).toBe('/forge/events?src=nas');
    expect(req.headers['content-type']).toBe('application/json');
    expect(req.headers['x-token']).toBe('s3cr3t');
    expect(req.headers['x-source']).toBe('forge');
    expect(JSON.parse(req.body)).toEqual({
      event: 'failure',
      job: 'home',
      status: 'failed',
      run_id: '01J9Z8ABCDEF',
      repository: 'nas-repo',
      snapshot_id: 'a1b2c3d4',
      bytes_added: 1_610_612_736,
      files_new: 12,
      files_changed: 3,
      duration_ms: 65_000,
      error_code: 'FORGE_LOCK_CONFLICT',
      error_message: 'repository is locked by pid 42 on nas',
      exit_code: 11,
      hostname: 'nas',
      started_at: '2025-03-01T03:00:00.000Z',
      finished_at: '2025-03-01T03:01:05.000Z',
      log_path: '/var/log/forge/home.log',
    });
  });

  it('sends null for facts a run does not have', async () => {
    const server = await startServer(ok);
    const [n] = createNotifiers(
      [{ type: 'webhook', name: 'h', on: ['start'], url: server.url, headers: {} }],
      resolveSecret,
    );
    await notify([n!], 'start', {
      job: 'home',
      runId: 'r',
      repository: 'repo',
      status: 'running',
      startedAt: new Date('2025-01-01T00:00:00Z'),
      hostname: 'nas',
    });
    const body = JSON.parse(server.requests[0]!.body);
    expect(body).toMatchObject({
      event: 'start',
      status: 'running',
      snapshot_id: null,
      finished_at: null,
      log_path: null,
    });
    expect(Object.keys(body)).toHaveLength(17);
  });

  it('refuses a header secret with a line break without echoing it', async () => {
    const server = await startServer(ok);
    const notifiers = createNotifiers(
      [
        {
          type: 'webhook',
          name: 'h',
          on: ['failure'],
          url: server.url,
          headers: { 'X-Token': { kind: 'env', name: 'BAD' } },
        },
      ],
      resolveSecret,
    );
    const [outcome] = await notify(notifiers, 'failure', facts);
    expect(outcome).toMatchObject({ ok: false, attempts: 1 });
    expect(outcome!.error).toMatch(/header X-Token/);
    expect(outcome!.error).not.toContain('a\nb');
    expect(server.requests).toHaveLength(0);
  });
});

describe('ntfy', () => {
  it('POSTs the message with Title, Priority, Tags and a Bearer token', async () => {
    const server = await startServer(ok);
    const notifiers = createNotifiers(
      [
        {
          type: 'ntfy',
          name: 'phone',
          on: ['failure', 'success'],
          url: `${server.url}/backups`,
          token: { kind: 'env', name: 'NTFY_TOKEN' },
        },
      ],
      resolveSecret,
    );
    const [outcome] = await notify(notifiers, 'failure', facts);
    expect(outcome).toMatchObject({ name: 'phone', ok: true });
    const req = server.requests[0]!;
    expect(req.method).toBe('POST');
    expect(req.url).toBe('/backups');
    expect(req.headers.title).toBe('[forge] job home failed on nas');
    expect(req.headers.priority).toBe('4');
    expect(req.headers.tags).toBe('rotating_light');
    expect(req.headers.authorization).toBe('Bearer tk_abc'); // the secret's trailing newline dropped
    expect(req.body).toBe(formatRunMessage(facts));
    expect(req.body).toContain('Data added: 1.5 GiB');

    await notify(notifiers, 'success', {
      ...facts,
      status: 'success',
      errorCode: undefined,
      errorMessage: undefined,
    });
    const success = server.requests[1]!;
    expect(success.headers.title).toBe('[forge] job home succeeded on nas');
    expect(success.headers.priority).toBe('3');
    expect(success.headers.tags).toBe('white_check_mark');
  });

  it('uses the configured priority, no Authorization without token, RFC 2047 for non-ASCII titles', async () => {
    const server = await startServer(ok);
    const notifiers = createNotifiers(
      [{ type: 'ntfy', name: 'n', on: ['warning'], url: `${server.url}/t`, priority: 5 }],
      resolveSecret,
    );
    await notify(notifiers, 'warning', { ...facts, job: 'fotos-märz', status: 'warning' });
    const req = server.requests[0]!;
    expect(req.headers.priority).toBe('5');
    expect(req.headers.tags).toBe('warning');
    expect(req.headers.authorization).toBeUndefined();
    const title = String(req.headers.title);
    const m = /^=\?UTF-8\?B\?(.+)\?=$/.exec(title);
    expect(m).not.toBeNull();
    expect(Buffer.from(m![1]!, 'base64').toString('utf8')).toBe(
      '[forge] job fotos-märz finished with warnings on nas',
    );
  });
});

describe('healthchecks', () => {
  const uuidRun = '0F9A1B2C-3D4E-4F50-8A6B-7C8D9E0F1A2B';

  it('pings /start, the URL itself, and /fail, each with ?rid=', async () => {
    const server = await startServer(ok);
    const notifiers = createNotifiers(
      [
        {
          type: 'healthchecks',
          name: 'hc',
          on: ['start', 'success', 'warning', 'failure'],
          url: `${server.url}/ping/abc-123/`,
        },
      ],
      resolveSecret,
    );
    const run = { ...facts, runId: uuidRun };
    await notify(notifiers, 'start', { ...run, status: 'running' });
    await notify(notifiers, 'success', { ...run, status: 'success' });
    await notify(notifiers, 'warning', { ...run, status: 'warning' });
    await notify(notifiers, 'failure', run);
    const rid = uuidRun.toLowerCase();
    expect(server.requests.map((r) => `${r.method} ${r.url}`)).toEqual([
      `POST /ping/abc-123/start?rid=${rid}`,
      `POST /ping/abc-123?rid=${rid}`,
      `POST /ping/abc-123?rid=${rid}`,
      `POST /ping/abc-123/fail?rid=${rid}`,
    ]);
    expect(server.requests[3]!.body).toContain(
      'Error: FORGE_LOCK_CONFLICT: repository is locked by pid 42 on nas',
    );
    expect(server.requests[3]!.body).toContain('Log: /var/log/forge/home.log');
  });

  it('maps a run id that is not a UUID to a stable UUID and keeps other query parameters', async () => {
    const server = await startServer(ok);
    const notifiers = createNotifiers(
      [
        {
          type: 'healthchecks',
          name: 'hc',
          on: ['start', 'failure'],
          url: `${server.url}/ping/key/home?create=1`,
        },
      ],
      resolveSecret,
    );
    await notify(notifiers, 'start', { ...facts, status: 'running' });
    await notify(notifiers, 'failure', facts);
    const [start, fail] = server.requests.map((r) => new URL(r.url, server.url));
    expect(start!.pathname).toBe('/ping/key/home/start');
    expect(fail!.pathname).toBe('/ping/key/home/fail');
    expect(start!.searchParams.get('create')).toBe('1');
    const rid = start!.searchParams.get('rid');
    expect(rid).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(fail!.searchParams.get('rid')).toBe(rid);
    expect(rid).toBe(healthchecksRunId(facts.runId));
    expect(healthchecksRunId('another-run')).not.toBe(rid);
  });

  it('keeps the body within 10 KB', async () => {
    const server = await startServer(ok);
    const notifiers = createNotifiers(
      [{ type: 'healthchecks', name: 'hc', on: ['failure'], url: server.url }],
      resolveSecret,
    );
    await notify(notifiers, 'failure', { ...facts, errorMessage: 'ä'.repeat(20_000) });
    const body = server.requests[0]!.body;
    expect(Buffer.byteLength(body)).toBeLessThanOrEqual(HEALTHCHECKS_BODY_LIMIT);
    expect(Buffer.byteLength(body)).toBeGreaterThan(HEALTHCHECKS_BODY_LIMIT - 4);
    expect(body).not.toContain('\ufffd'); // no character cut in half
  });
});

describe('notify', () => {
  const webhook = (url: string, on: NotifierConfig['on'] = ['failure'], name = 'hook'): NotifierConfig => ({
    type: 'webhook',
    name,
    on,
    url,
    headers: {},
  });

  it('retries once after a 5xx answer', async () => {
    const server = await startServer((_req, res, i) => {
      res.statusCode = i === 0 ? 500 : 200;
      res.end(i === 0 ? 'database is down' : 'OK');
    });
    const [outcome] = await notify(createNotifiers([webhook(server.url)], resolveSecret), 'failure', facts, {
      retryDelayMs: 10,
    });
    expect(outcome).toMatchObject({ ok: true, attempts: 2 });
    expect(server.requests).toHaveLength(2);
  });

  it('gives up after the retry with the last error', async () => {
    const server = await startServer((_req, res) => {
      res.statusCode = 503;
      res.end('maintenance');
    });
    const [outcome] = await notify(createNotifiers([webhook(server.url)], resolveSecret), 'failure', facts, {
      retryDelayMs: 10,
    });
    expect(outcome).toMatchObject({
      ok: false,
      attempts: 2,
      error: 'HTTP 503 Service Unavailable: maintenance',
    });
    expect(server.requests).toHaveLength(2);
  });

  it('does not retry a 4xx answer', async () => {
    const server = await startServer((_req, res) => {
      res.statusCode = 404;
      res.end('no such check');
    });
    const [outcome] = await notify(createNotifiers([webhook(server.url)], resolveSecret), 'failure', facts, {
      retryDelayMs: 10,
    });
    expect(outcome).toMatchObject({ ok: false, attempts: 1, error: 'HTTP 404 Not Found: no such check' });
    expect(server.requests).toHaveLength(1);
  });

  it('times out a server that never answers, without throwing', async () => {
    const server = await startServer(() => {
      // never answer
    });
    const started = Date.now();
    const [outcome] = await notify(createNotifiers([webhook(server.url)], resolveSecret), 'failure', facts, {
      timeoutMs: 200,
      retryDelayMs: 10,
    });
    expect(outcome).toMatchObject({ ok: false, attempts: 2, error: 'no answer within 0.2 s' });
    expect(server.requests).toHaveLength(2);
    expect(Date.now() - started).toBeLessThan(2_000);
  });

  it('retries a refused connection, then reports it', async () => {
    const server = await startServer(ok);
    const url = server.url;
    for (const s of servers.splice(0)) s.close();
    const [outcome] = await notify(createNotifiers([webhook(url)], resolveSecret), 'failure', facts, {
      retryDelayMs: 10,
    });
    expect(outcome).toMatchObject({ ok: false, attempts: 2 });
    expect(outcome!.error).toMatch(/ECONNREFUSED/);
  });

  it('sends only to notifiers whose `on` lists the event', async () => {
    const server = await startServer(ok);
    const notifiers = createNotifiers(
      [
        webhook(`${server.url}/a`, ['failure'], 'a'),
        webhook(`${server.url}/b`, ['success', 'failure'], 'b'),
        webhook(`${server.url}/c`, ['start'], 'c'),
      ],
      resolveSecret,
    );
    const outcomes = await notify(notifiers, 'success', { ...facts, status: 'success' });
    expect(outcomes.map((o) => o.name)).toEqual(['b']);
    expect(server.requests.map((r) => r.url)).toEqual(['/b']);
    expect(await notify(notifiers, 'warning', facts)).toEqual([]);
    expect(server.requests).toHaveLength(1);
  });

  it('sends in parallel and keeps one failure from affecting the others', async () => {
    const server = await startServer((req, res) => {
      setTimeout(() => {
        res.statusCode = req.url === '/bad' ? 400 : 200;
        res.end();
      }, 300);
    });
    const notifiers = [
      ...createNotifiers(
        [webhook(`${server.url}/one`, ['failure'], 'one'), webhook(`${server.url}/bad`, ['failure'], 'bad')],
        resolveSecret,
      ),
      ...createNotifiers([webhook(`${server.url}/two`, ['failure'], 'two')], resolveSecret),
    ];
    const started = Date.now();
    const outcomes = await notify(notifiers, 'failure', facts);
    expect(Date.now() - started).toBeLessThan(800);
    expect(outcomes.map((o) => [o.name, o.ok])).toEqual([
      ['one', true],
      ['bad', false],
      ['two', true],
    ]);
  });

  it('turns a secret that cannot be resolved into an outcome', async () => {
    const server = await startServer(ok);
    const notifiers = createNotifiers(
      [
        {
          type: 'ntfy',
          name: 'n',
          on: ['failure'],
          url: server.url,
          token: { kind: 'env', name: 'MISSING' },
        },
      ],
      resolveSecret,
    );
    const [outcome] = await notify(notifiers, 'failure', facts);
    expect(outcome).toMatchObject({
      ok: false,
      attempts: 1,
      error: 'could not resolve the ntfy token: environment variable MISSING is not set',
    });
    expect(server.requests).toHaveLength(0);
  });

  it('reports a bad URL or type instead of throwing', async () => {
    const notifiers = createNotifiers(
      [
        webhook('not a url'),
        webhook('ftp://example.com/x', ['failure'], 'ftp'),
        { type: 'pager', name: 'p', on: ['failure'] } as unknown as NotifierConfig,
      ],
      resolveSecret,
    );
    const outcomes = await notify(notifiers, 'failure', facts);
    expect(outcomes.map((o) => [o.ok, o.error])).toEqual([
      [false, 'the webhook URL is not a valid URL'],
      [false, 'the webhook URL must start with http:// or https://'],
      [false, 'unknown notifier type "pager"'],
    ]);
  });

  it('bounds a custom notifier that ignores its signal, and one that throws synchronously', async () => {
    const hanging: Notifier = {
      name: 'hang',
      type: 'webhook',
      on: ['failure'],
      send: () => new Promise(() => {}),
    };
    const throwing: Notifier = {
      name: 'throw',
      type: 'webhook',
      on: ['failure'],
      send: () => {
        throw new Error('boom');
      },
    };
    const outcomes = await notify([hanging, throwing], 'failure', facts, {
      timeoutMs: 100,
      retryDelayMs: 10,
    });
    expect(outcomes).toEqual([
      expect.objectContaining({ name: 'hang', ok: false, attempts: 2, error: 'no answer within 0.1 s' }),
      expect.objectContaining({ name: 'throw', ok: false, attempts: 1, error: 'boom' }),
    ]);
  });

  it('stops when the caller aborts', async () => {
    const server = await startServer(() => {});
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 100);
    const started = Date.now();
    const [outcome] = await notify(createNotifiers([webhook(server.url)], resolveSecret), 'failure', facts, {
      signal: controller.signal,
    });
    expect(outcome).toMatchObject({ ok: false, attempts: 1, error: 'cancelled' });
    expect(Date.now() - started).toBeLessThan(2_000);
  });
});

describe('formatRunMessage', () => {
  it('humanises bytes and durations and lists the facts', () => {
    const text = formatRunMessage(facts);
    expect(text).toBe(
      [
        'Job home failed on nas after 1 min 5 s.',
        '',
        'Repository: nas-repo',
        'Snapshot: a1b2c3d4',
        'Data added: 1.5 GiB',
        'Files: 12 new, 3 changed',
        'Error: FORGE_LOCK_CONFLICT: repository is locked by pid 42 on nas',
        'Exit code: 11',
        'Started: 2025-03-01T03:00:00.000Z',
        'Finished: 2025-03-01T03:01:05.000Z',
        'Duration: 1 min 5 s',
        'Run: 01J9Z8ABCDEF',
        'Log: /var/log/forge/home.log',
        '',
      ].join('\n'),
    );
  });

  it('describes a started run without the facts it does not have', () => {
    const text = formatRunMessage({
      job: 'db',
      runId: 'r9',
      repository: 'b2',
      status: 'running',
      startedAt: new Date('2025-01-01T00:00:00Z'),
      hostname: 'srv',
    });
    expect(text).toBe(
      'Job db started on srv.\n\nRepository: b2\nStarted: 2025-01-01T00:00:00.000Z\nRun: r9\n',
    );
    expect(formatRunTitle({ ...facts, status: 'skipped' })).toBe('[forge] job home was skipped on nas');
  });
});
