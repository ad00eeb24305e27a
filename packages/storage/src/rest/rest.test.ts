import type { ChildProcess } from 'node:child_process';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createServer as createNetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { ForgeError, StorageBackend } from '@backupforge/common';
import { isForgeError } from '@backupforge/common';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { openBackend } from '../open-backend.ts';
import { collect, describeBackend, hexName } from '../testing/describe-backend.ts';
import { createRestBackend, openRestLocation, parseRestLocation } from './index.ts';

const RCLONE = process.env.FORGE_TEST_RCLONE;

describe('parseRestLocation', () => {
  it('strips the password, keeps the user name and ends the path with a slash', () => {
    const parsed = parseRestLocation('https://alice:s3cr%40t@backup.example.com:8443/alice/repo');
    expect(parsed.location).toBe('rest:https://alice@backup.example.com:8443/alice/repo/');
    expect(parsed.url.href).toBe('https://backup.example.com:8443/alice/repo/');
    expect(parsed.username).toBe('alice');
    expect(parsed.password).toBe('s3cr@t');
  });

  it('defaults the path to / and keeps IPv6 hosts', () => {
    expect(parseRestLocation('http://127.0.0.1:8000').location).toBe('rest:http://127.0.0.1:8000/');
    expect(parseRestLocation('http://[::1]:8000/r/').url.hostname).toBe('[::1]');
  });

  it('takes credentials from FORGE_REST_USERNAME/PASSWORD when the URL has none, and never shows them', () => {
    const env = { FORGE_REST_USERNAME: 'bob', FORGE_REST_PASSWORD: 'hunter2' };
    const parsed = parseRestLocation('http://host/repo/', env);
    expect(parsed).toMatchObject({
      username: 'bob',
      password: 'hunter2',
      location: 'rest:http://host/repo/',
    });
    expect(parseRestLocation('http://carol:pw@host/', env)).toMatchObject({
      username: 'carol',
      password: 'pw',
    });
    expect(parseRestLocation('http://carol@host/', env)).toMatchObject({
      username: 'carol',
      password: 'hunter2',
    });
  });

  it.each([
    ['no scheme', 'host:8000/repo/'],
    ['another scheme', 'ftp://host/repo/'],
    ['no host', 'http://'],
    ['a query', 'http://host/repo/?x=1'],
    ['a fragment', 'http://host/repo/#x'],
  ])('rejects %s with FORGE_USAGE', (_what, rest) => {
    const error = thrown(() => parseRestLocation(rest));
    expect(error.code).toBe('FORGE_USAGE');
    expect(error.message).toContain('rest:');
  });

  it('does not repeat a password in its error message', () => {
    const error = thrown(() => parseRestLocation('ftp://u:topsecret@host/'));
    expect(error.message).not.toContain('topsecret');
  });

  it('rejects a password without a user name', () => {
    expect(thrown(() => parseRestLocation('http://host/', { FORGE_REST_PASSWORD: 'pw' })).code).toBe(
      'FORGE_USAGE',
    );
  });
});

describe('openRestLocation', () => {
  it('is what openBackend uses for rest:, with connections from rest.connections', async () => {
    const backend = await openBackend('rest:http://u:pw@127.0.0.1:9/repo', {
      settings: { 'rest.connections': '3' },
    });
    expect(backend.location).toBe('rest:http://u@127.0.0.1:9/repo/');
    expect(backend.properties()).toEqual({ atomicReplace: false, connections: 3 });
    await backend.close();
    const plain = await openRestLocation('http://127.0.0.1:9/', {});
    expect(plain.properties().connections).toBe(8);
    await plain.close();
  });

  it('rejects unknown rest.* settings naming the known ones, and ignores other namespaces', async () => {
    const error = await rejection(openRestLocation('http://h/', { settings: { 'rest.conections': '2' } }));
    expect(error.code).toBe('FORGE_USAGE');
    expect(error.message).toContain('rest.connections');
    const other = await openRestLocation('http://h/', { settings: { 's3.region': 'x' } });
    await other.close();
  });

  it.each([
    ['rest.connections', '0'],
    ['rest.connections', 'many'],
    ['rest.timeout', 'soon'],
  ])('rejects %s=%s', async (key, value) => {
    expect((await rejection(openRestLocation('http://h/', { settings: { [key]: value } }))).code).toBe(
      'FORGE_USAGE',
    );
  });

  it('rejects rest.ca for http and an unreadable CA file', async () => {
    const settings = { 'rest.ca': '/nonexistent/ca.pem' };
    expect((await rejection(openRestLocation('http://h/', { settings }))).code).toBe('FORGE_USAGE');
    const error = await rejection(openRestLocation('https://h/', { settings }));
    expect(error.code).toBe('FORGE_USAGE');
    expect(error.message).toContain('/nonexistent/ca.pem');
  });

  it('warns when a password would cross the network unencrypted', async () => {
    const warnings: string[] = [];
    const onWarning = (m: string) => warnings.push(m);
    await (await openRestLocation('http://u:pw@backup.example.com/', { onWarning })).close();
    await (await openRestLocation('http://u:pw@127.0.0.1/', { onWarning })).close();
    await (await openRestLocation('https://u:pw@backup.example.com/', { onWarning })).close();
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain('unencrypted');
    expect(warnings[0]).not.toContain('pw@');
  });
});

/**
 * An in-memory server with rest-server's semantics: it refuses to overwrite (403), answers 416
 * for a range starting at or past the end, 404 when listing a repository that was never created,
 * and lists upload temporaries ('<id>.rest-server-temp…') like a naive server would.
 */
function restServerLike(): Handler {
  const store = new Map<string, Buffer>();
  let created = false;
  return (req, res, body) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const rel = url.pathname.replace(/^\/repo\//, '');
    if (req.method === 'POST' && rel === '' && url.searchParams.get('create') === 'true') {
      created = true;
      return res.end();
    }
    if (rel.endsWith('/')) {
      if (!created) return send(res, 404, 'Not Found');
      const type = rel.slice(0, -1);
      const items = [...store]
        .filter(([k]) => k.startsWith(`${type}/`))
        .map(([k, v]) => ({ name: k.slice(type.length + 1), size: v.length }));
      if (items.length > 0) items.push({ name: `${items[0]!.name}.rest-server-temp123`, size: 1 });
      res.setHeader('content-type', 'application/vnd.x.restic.rest.v2');
      return res.end(JSON.stringify(items));
    }
    const data = store.get(rel);
    switch (req.method) {
      case 'HEAD':
        if (!data) return send(res, 404, '');
        res.setHeader('content-length', data.length);
        return res.end();
      case 'GET': {
        if (!data) return send(res, 404, 'Not Found');
        const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
        if (!m) return res.end(data);
        const start = Number(m[1]);
        if (start >= data.length) {
          res.setHeader('content-range', `bytes */${data.length}`);
          return send(res, 416, 'Requested Range Not Satisfiable');
        }
        const end = Math.min(Number(m[2]), data.length - 1);
        res.statusCode = 206;
        res.setHeader('content-range', `bytes ${start}-${end}/${data.length}`);
        return res.end(data.subarray(start, end + 1));
      }
      case 'POST':
        if (data) return send(res, 403, 'Forbidden');
        store.set(rel, body);
        return res.end();
      case 'DELETE':
        if (!store.delete(rel)) return send(res, 404, 'Not Found');
        return res.end();
    }
    return send(res, 405, 'Method Not Allowed');
  };
}

describeBackend('rest (rest-server-like fake)', async () => {
  const fake = await startFake(restServerLike());
  return { backend: createRestBackend({ url: `${fake.url}repo/` }), cleanup: fake.close };
});

describe('rest backend protocol details (fake server)', () => {
  let fake: Fake;
  let handler: Handler;
  let backend: StorageBackend;
  const pack = { type: 'pack', name: `ab${hexName().slice(2)}` } as const;

  beforeEach(async () => {
    handler = (_req, res) => send(res, 500, 'no handler');
    fake = await startFake((req, res, body) => handler(req, res, body));
    backend = createRestBackend({ url: `${fake.url}repo/`, timeoutMs: 1000 });
  });

  afterEach(async () => {
    await backend.close();
    await fake.close();
  });

  it('maps 5xx to a retryable FORGE_IO naming location, operation and object', async () => {
    handler = (_req, res) => send(res, 503, 'backend unavailable');
    const error = await rejection(backend.load(pack));
    expect(error).toMatchObject({ code: 'FORGE_IO', retryable: true });
    expect(error.message).toContain(`${backend.location}: cannot load data/ab/${pack.name}: HTTP 503`);
    expect(error.message).toContain('backend unavailable');
  });

  it('maps 401 to FORGE_AUTH with a hint, and sends credentials from the URL as Basic auth', async () => {
    let seen: string | undefined;
    handler = (req, res) => {
      seen = req.headers.authorization;
      send(res, 401, 'Unauthorized');
    };
    await backend.close();
    backend = createRestBackend({ url: `http://al%40ice:p%3Ass@${fake.url.slice(7)}repo/` });
    const error = await rejection(backend.stat(pack));
    expect(error.code).toBe('FORGE_AUTH');
    expect(error.hint).toContain('password');
    expect(error.message).not.toContain('p:ss');
    expect(seen).toBe(`Basic ${Buffer.from('al@ice:p:ss').toString('base64')}`);
  });

  it('takes the bytes it asked for when a server ignores Range', async () => {
    const data = randomBytes(100);
    handler = (_req, res) => res.end(data);
    expect(Buffer.from(await backend.load(pack, { offset: 10, length: 20 }))).toEqual(data.subarray(10, 30));
    const error = await rejection(backend.load(pack, { offset: 90, length: 11 }));
    expect(error).toMatchObject({ code: 'FORGE_RANGE', retryable: false });
  });

  it('rejects a short 206 answer with FORGE_RANGE, and a 206 for another offset with FORGE_IO', async () => {
    handler = (_req, res) => {
      res.statusCode = 206;
      res.setHeader('content-range', 'bytes 10-14/15');
      res.end(Buffer.alloc(5));
    };
    expect((await rejection(backend.load(pack, { offset: 10, length: 10 }))).code).toBe('FORGE_RANGE');
    expect((await rejection(backend.load(pack, { offset: 9, length: 5 }))).code).toBe('FORGE_IO');
  });

  it('rejects a truncated answer with a retryable FORGE_IO', async () => {
    handler = (_req, res) => {
      res.setHeader('content-length', 1000);
      res.write(Buffer.alloc(400));
      setTimeout(() => res.destroy(), 20);
    };
    expect(await rejection(backend.load(pack))).toMatchObject({ code: 'FORGE_IO', retryable: true });
  });

  it('times out a server that does not answer, retryably', async () => {
    handler = () => {};
    const started = Date.now();
    const error = await rejection(backend.stat(pack));
    expect(error).toMatchObject({ code: 'FORGE_IO', retryable: true });
    expect(error.message).toContain('did not answer');
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it('stats v1 listings name by name and skips names removed meanwhile', async () => {
    const a = hexName();
    const b = hexName();
    handler = (req, res) => {
      if (req.url === '/repo/snapshots/') {
        res.end(JSON.stringify([a, b, 'x.tmp']));
      } else if (req.url === `/repo/snapshots/${a}`) {
        res.setHeader('content-length', 42);
        res.end();
      } else {
        send(res, 404, '');
      }
    };
    expect(await collect(backend.list('snapshot'))).toEqual([{ name: a, size: 42 }]);
  });

  it('throws from list on a malformed listing', async () => {
    handler = (_req, res) => res.end('[{"name": "abc"}]');
    expect((await rejection(collect(backend.list('index')))).code).toBe('FORGE_IO');
    handler = (_req, res) => res.end('not json');
    expect((await rejection(collect(backend.list('index')))).code).toBe('FORGE_IO');
  });

  it('lists a 404 from rest-server as empty, but throws for rclone (which means a failed listing)', async () => {
    handler = (_req, res) => send(res, 404, 'Not Found');
    expect(await collect(backend.list('key'))).toEqual([]);
    handler = (_req, res) => {
      res.setHeader('server', 'rclone/v1.60.1');
      send(res, 404, 'Not Found');
    };
    expect(await rejection(collect(backend.list('key')))).toMatchObject({
      code: 'FORGE_IO',
      retryable: true,
    });
  });

  it('treats 404 on DELETE as success, and a 403 on DELETE as FORGE_PERMISSION (append-only)', async () => {
    handler = (_req, res) => send(res, 404, 'Not Found');
    await backend.remove(pack);
    handler = (_req, res) => send(res, 403, 'Forbidden');
    const error = await rejection(backend.remove(pack));
    expect(error.code).toBe('FORGE_PERMISSION');
    expect(error.hint).toContain('append-only');
  });

  it('keeps at most `connections` requests in flight', async () => {
    let inFlight = 0;
    let most = 0;
    handler = (_req, res) => {
      most = Math.max(most, ++inFlight);
      setTimeout(() => {
        inFlight--;
        res.setHeader('content-length', 1);
        res.end();
      }, 20);
    };
    await backend.close();
    backend = createRestBackend({ url: `${fake.url}repo/`, connections: 3 });
    await Promise.all(Array.from({ length: 12 }, () => backend.stat({ type: 'key', name: hexName() })));
    expect(most).toBe(3);
  });

  it('reports a refused connection as a retryable FORGE_IO', async () => {
    await fake.close();
    const error = await rejection(backend.stat(pack));
    expect(error).toMatchObject({ code: 'FORGE_IO', retryable: true });
    expect(error.message).toContain('ECONNREFUSED');
  });
});

describe.skipIf(!RCLONE)('rest backend against rclone serve restic', () => {
  let base: string;
  let server: RcloneServer;

  beforeAll(async () => {
    base = await mkdtemp(join(tmpdir(), 'forge-rest-'));
    server = await startRcloneServer(join(base, 'open'));
  });

  afterAll(async () => {
    await server?.stop();
    await rm(base, { recursive: true, force: true });
  });

  describeBackend('rest (rclone serve restic)', async () => {
    // rclone serves any path below its root as a repository: a fresh one per test.
    const path = `t-${randomBytes(6).toString('hex')}`;
    return {
      backend: createRestBackend({ url: `${server.url}${path}/` }),
      cleanup: () => rm(join(base, 'open', path), { recursive: true, force: true }),
    };
  });

  describe('regressions', () => {
    let path: string;
    let backend: StorageBackend;

    beforeEach(async () => {
      path = `r-${randomBytes(6).toString('hex')}`;
      backend = createRestBackend({ url: `${server.url}${path}/` });
      await backend.create();
    });

    afterEach(async () => {
      await backend.close();
    });

    it('stores packs under data/<xx>/ on the server and lists all prefixes', async () => {
      const names = ['00', 'ab', 'ff'].map((p) => `${p}${hexName().slice(2)}`);
      for (const name of names) await backend.save({ type: 'pack', name }, new Uint8Array(3));
      expect((await readdir(join(base, 'open', path, 'data'))).sort()).toEqual(['00', 'ab', 'ff']);
      const listed = (await collect(backend.list('pack'))).map((i) => i.name).sort();
      expect(listed).toEqual(names.sort());
    });

    it('rejects a range past the end (rclone answers a short 206) with a permanent FORGE_RANGE', async () => {
      const handle = { type: 'index', name: hexName() } as const;
      await backend.save(handle, new Uint8Array(100));
      const error = await rejection(backend.load(handle, { offset: 95, length: 10 }));
      expect(error).toMatchObject({ code: 'FORGE_RANGE', retryable: false });
      expect(error.message).toContain('100 bytes');
    });

    it('create() on an existing repository keeps its objects', async () => {
      const handle = { type: 'key', name: hexName() } as const;
      await backend.save(handle, new Uint8Array([1, 2, 3]));
      await backend.create();
      expect(await backend.load(handle)).toEqual(new Uint8Array([1, 2, 3]));
    });
  });

  describe('with authentication', () => {
    let auth: RcloneServer;

    beforeAll(async () => {
      auth = await startRcloneServer(join(base, 'auth'), ['--user', 'forge', '--pass', 'right-pw']);
    });

    afterAll(async () => {
      await auth?.stop();
    });

    it('rejects a wrong password with FORGE_AUTH and never shows the password', async () => {
      const backend = createRestBackend({ url: `http://forge:wrong-pw@${auth.url.slice(7)}repo/` });
      const error = await rejection(backend.create());
      expect(error.code).toBe('FORGE_AUTH');
      expect(error.retryable).toBe(false);
      expect(error.hint).toBeTruthy();
      expect(`${error.message} ${error.hint} ${backend.location}`).not.toContain('wrong-pw');
      await backend.close();
      const anonymous = createRestBackend({ url: `${auth.url}repo/` });
      expect((await rejection(anonymous.stat({ type: 'config', name: 'config' }))).code).toBe('FORGE_AUTH');
      await anonymous.close();
    });

    it('works with credentials from the URL or from FORGE_REST_USERNAME/PASSWORD', async () => {
      const fromUrl = await openBackend(`rest:http://forge:right-pw@${auth.url.slice(7)}repo/`);
      expect(fromUrl.location).toBe(`rest:http://forge@${auth.url.slice(7)}repo/`);
      await fromUrl.create();
      await fromUrl.save({ type: 'config', name: 'config' }, new Uint8Array([7]));
      await fromUrl.close();
      const env = { FORGE_REST_USERNAME: 'forge', FORGE_REST_PASSWORD: 'right-pw' };
      const fromEnv = await openBackend(`rest:${auth.url}repo/`, { env });
      expect(fromEnv.location).toBe(`rest:${auth.url}repo/`);
      expect(await fromEnv.load({ type: 'config', name: 'config' })).toEqual(new Uint8Array([7]));
      await fromEnv.close();
    });
  });

  describe('append-only server (refuses overwrites and deletes, like rest-server)', () => {
    let appendOnly: RcloneServer;
    let backend: StorageBackend;

    beforeAll(async () => {
      appendOnly = await startRcloneServer(join(base, 'append'), ['--append-only']);
    });

    afterAll(async () => {
      await appendOnly?.stop();
    });

    beforeEach(async () => {
      backend = createRestBackend({ url: `${appendOnly.url}r-${randomBytes(6).toString('hex')}/` });
      await backend.create();
    });

    afterEach(async () => {
      await backend.close();
    });

    it('accepts saving an existing content-addressed object again, rejects a different size', async () => {
      const handle = { type: 'pack', name: hexName() } as const;
      await backend.save(handle, new Uint8Array(10).fill(1));
      await backend.save(handle, new Uint8Array(10).fill(1));
      expect((await rejection(backend.save(handle, new Uint8Array(11)))).code).toBe('FORGE_ALREADY_EXISTS');
      expect(await backend.load(handle)).toEqual(new Uint8Array(10).fill(1));
    });

    it('replaces a lock by delete + upload, and refuses to replace config or delete a pack', async () => {
      const lock = { type: 'lock', name: hexName() } as const;
      await backend.save(lock, new Uint8Array(5));
      await backend.save(lock, new Uint8Array(8).fill(2));
      expect(await backend.load(lock)).toEqual(new Uint8Array(8).fill(2));
      await backend.remove(lock);

      const config = { type: 'config', name: 'config' } as const;
      await backend.save(config, new Uint8Array([1]));
      const error = await rejection(backend.save(config, new Uint8Array([2, 2])));
      expect(error.code).toBe('FORGE_PERMISSION');
      expect(error.hint).toContain('append-only');
      expect(await backend.load(config)).toEqual(new Uint8Array([1]));

      const pack = { type: 'pack', name: hexName() } as const;
      await backend.save(pack, new Uint8Array(1));
      expect((await rejection(backend.remove(pack))).code).toBe('FORGE_PERMISSION');
    });
  });

  it('fails retryably while the server is down, and recovers when it is back', async () => {
    const dir = join(base, 'restart');
    const first = await startRcloneServer(dir);
    const backend = createRestBackend({ url: `${first.url}repo/` });
    try {
      await backend.create();
      const handle = { type: 'snapshot', name: hexName() } as const;
      await backend.save(handle, new Uint8Array([1, 2, 3]));
      first.child.kill('SIGKILL');
      await first.stopped;
      for (const call of [backend.load(handle), backend.save(handle, new Uint8Array([1, 2, 3]))]) {
        const error = await rejection(call);
        expect(error).toMatchObject({ code: 'FORGE_IO', retryable: true });
        expect(error.message).toContain(`${backend.location}: cannot`);
      }
      const second = await startRcloneServer(dir, [], first.port);
      try {
        expect(await backend.load(handle)).toEqual(new Uint8Array([1, 2, 3]));
      } finally {
        await second.stop();
      }
    } finally {
      await backend.close();
    }
  });
});

// --- helpers -------------------------------------------------------------------------------

type Handler = (req: IncomingMessage, res: ServerResponse, body: Buffer) => void;

interface Fake {
  readonly url: string;
  readonly close: () => Promise<void>;
}

async function startFake(handler: Handler): Promise<Fake> {
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => handler(req, res, Buffer.concat(chunks)));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  let closed: Promise<void> | undefined;
  return {
    url: `http://127.0.0.1:${port}/`,
    close: () => {
      closed ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closed;
    },
  };
}

function send(res: ServerResponse, status: number, text: string): void {
  res.statusCode = status;
  res.setHeader('content-type', 'text/plain; charset=utf-8');
  res.end(text);
}

interface RcloneServer {
  readonly url: string;
  readonly port: number;
  readonly child: ChildProcess;
  readonly stopped: Promise<void>;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  const server = createNetServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Starts `rclone serve restic` on 127.0.0.1 for `dir` and waits until it listens. */
async function startRcloneServer(dir: string, extra: string[] = [], port?: number): Promise<RcloneServer> {
  const chosen = port ?? (await freePort());
  const env = { ...process.env };
  delete env.AWS_CA_BUNDLE;
  const config = join(dirname(dir), 'empty-rclone.conf'); // removed with the test's directory
  await writeFile(config, '');
  const child = spawn(
    RCLONE!,
    ['serve', 'restic', '--config', config, '--addr', `127.0.0.1:${chosen}`, ...extra, dir],
    { stdio: ['ignore', 'ignore', 'pipe'], env },
  );
  const stopped = new Promise<void>((resolve) => child.once('close', () => resolve()));
  let log = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`rclone did not start: ${log}`)), 10_000);
    child.stderr!.on('data', (chunk: Buffer) => {
      log += chunk.toString();
      if (log.includes('Serving restic REST API')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`rclone exited with ${code}: ${log}`)));
  });
  return {
    url: `http://127.0.0.1:${chosen}/`,
    port: chosen,
    child,
    stopped,
    stop: async () => {
      child.kill('SIGTERM');
      await stopped;
    },
  };
}

async function rejection(promise: Promise<unknown>): Promise<ForgeError> {
  const resolved = Symbol('resolved');
  const error = await promise.then(
    () => resolved,
    (e: unknown) => e,
  );
  if (error === resolved) expect.fail('expected a rejection, but the call resolved');
  if (!isForgeError(error)) expect.fail(`expected a ForgeError, got ${String(error)}`);
  return error;
}

function thrown(fn: () => unknown): ForgeError {
  try {
    fn();
  } catch (e) {
    if (!isForgeError(e)) expect.fail(`expected a ForgeError, got ${String(e)}`);
    return e;
  }
  return expect.fail('expected a throw');
}
