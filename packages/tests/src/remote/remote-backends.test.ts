// Issue 5 evidence: backup, unchanged re-backup, restore and check of the benchmark corpus
// (SCALE=0.05) through the real `forge` binary over every remote backend, against real servers
// on loopback (.ci/infra.sh: Swift with s3api, OpenSSH sshd; rclone). Plus the errors users
// meet: wrong credentials, a missing bucket, an unknown host key, and the network going away
// in the middle of a backup.
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { createServer, type Server, type Socket, connect as tcpConnect } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
// @ts-expect-error: a plain-JS module shared with the benchmark (no type declarations)
import { genTree } from '../../bench/corpus.mjs';
import { dirState, expectNoStack } from '../cli/helpers.ts';
import { type ForgeRun, forge, jsonLines, tempDir } from '../support/cli.ts';

const env = process.env;
const PASSWORD = 'remote-backends-test-password';
const S3 = env.FORGE_TEST_S3_ENDPOINT;
const SFTP = env.FORGE_TEST_SFTP_HOST;
const RCLONE = env.FORGE_TEST_RCLONE;

let base: string;
let corpus: string;
let cleanup: () => Promise<void>;
/** `rclone serve restic` on a free loopback port: the server side of the rest: backend. */
let restServer: { url: string; child: ChildProcess } | undefined;

beforeAll(async () => {
  const t = await tempDir('forge-remote-');
  base = t.path;
  cleanup = t.cleanup;
  corpus = join(base, 'corpus');
  genTree(corpus, 7, 0.05);
  if (RCLONE) restServer = await startRestServer(join(base, 'rest-root'));
}, 300_000);

afterAll(async () => {
  restServer?.child.kill('SIGTERM');
  await cleanup?.();
});

async function startRestServer(root: string): Promise<{ url: string; child: ChildProcess }> {
  await mkdir(root, { recursive: true });
  const probe = createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
  const port = (probe.address() as { port: number }).port;
  await new Promise<void>((r) => probe.close(() => r()));
  const child = spawn(RCLONE!, ['serve', 'restic', '--addr', `127.0.0.1:${port}`, root], { stdio: 'ignore' });
  for (let i = 0; i < 100; i++) {
    const up = await new Promise<boolean>((r) => {
      const s = tcpConnect(port, '127.0.0.1', () => {
        s.destroy();
        r(true);
      }).on('error', () => r(false));
    });
    if (up) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  return { url: `http://127.0.0.1:${port}`, child };
}

interface Remote {
  readonly name: string;
  readonly enabled: boolean;
  /** A fresh, empty repository location, with the flags and env it needs. */
  location(): Promise<{ repo: string; flags: string[]; env: Record<string, string> }>;
}

function s3Env(secret = env.FORGE_TEST_S3_SECRET_KEY ?? ''): Record<string, string> {
  return {
    AWS_ACCESS_KEY_ID: env.FORGE_TEST_S3_ACCESS_KEY ?? '',
    AWS_SECRET_ACCESS_KEY: secret,
    AWS_REGION: env.FORGE_TEST_S3_REGION ?? 'us-east-1',
  };
}

function sftpFlags(knownHosts = env.FORGE_TEST_SFTP_KNOWN_HOSTS ?? ''): string[] {
  return ['-o', `sftp.identity=${env.FORGE_TEST_SFTP_KEY}`, '-o', `sftp.known-hosts=${knownHosts}`];
}

function sftpRepo(dir: string): string {
  return `sftp:${env.FORGE_TEST_SFTP_USER}@${SFTP}:${env.FORGE_TEST_SFTP_PORT}${dir}`;
}

const unique = () => randomBytes(4).toString('hex');

const REMOTES: Remote[] = [
  {
    name: 's3',
    enabled: !!S3,
    location: async () => ({ repo: `s3:${S3}/forge-e2e-${unique()}/repo`, flags: [], env: s3Env() }),
  },
  {
    name: 'sftp',
    enabled: !!SFTP,
    location: async () => ({
      repo: sftpRepo(join(env.FORGE_TEST_SFTP_ROOT ?? '/tmp', `e2e-${unique()}`)),
      flags: sftpFlags(),
      env: {},
    }),
  },
  {
    name: 'rest',
    enabled: !!RCLONE,
    location: async () => ({ repo: `rest:${restServer!.url}/e2e-${unique()}/`, flags: [], env: {} }),
  },
  {
    name: 'rclone',
    enabled: !!RCLONE,
    location: async () => ({ repo: `rclone:${join(base, `rclone-${unique()}`)}`, flags: [], env: {} }),
  },
];

function forgeAt(
  where: { repo: string; flags: string[]; env: Record<string, string> },
  args: string[],
  extraEnv: Record<string, string> = {},
): Promise<ForgeRun> {
  return forge(['-r', where.repo, ...where.flags, ...args], {
    env: { FORGE_PASSWORD: PASSWORD, XDG_CACHE_HOME: join(base, 'cache'), ...where.env, ...extraEnv },
    timeoutMs: 600_000,
  });
}

function summary(r: ForgeRun): Record<string, unknown> {
  const lines = jsonLines(r.stdout);
  const s = lines.find((l) => l.message_type === 'summary');
  expect(s, r.stdout + r.stderr).toBeTruthy();
  return s!;
}

describe.each(REMOTES)('forge over $name', (remote) => {
  it.skipIf(!remote.enabled)(
    'init, backup, unchanged re-backup, restore byte-identical, check --read-data',
    async () => {
      const where = await remote.location();
      const init = await forgeAt(where, ['init']);
      expect(init.code, init.stderr).toBe(0);

      const first = await forgeAt(where, ['backup', '--json', corpus]);
      expect(first.code, first.stderr).toBe(0);
      const s1 = summary(first);
      expect(Number(s1.files_new)).toBeGreaterThan(500);
      expect(Number(s1.data_added)).toBeGreaterThan(10_000_000);

      const second = await forgeAt(where, ['backup', '--json', corpus]);
      expect(second.code, second.stderr).toBe(0);
      const s2 = summary(second);
      expect(s2.files_new).toBe(0);
      expect(s2.files_changed).toBe(0);
      expect(Number(s2.data_added)).toBeLessThan(100_000); // a tree or two, no file data

      const target = join(base, `restore-${remote.name}-${unique()}`);
      const restore = await forgeAt(where, ['restore', 'latest', '--target', target]);
      expect(restore.code, restore.stderr).toBe(0);
      const restored = await dirState(join(target, corpus));
      const original = await dirState(corpus);
      expect(restored.size).toBe(original.size);
      expect(restored).toEqual(original);

      const check = await forgeAt(where, ['check', '--read-data']);
      expect(check.code, check.stdout + check.stderr).toBe(0);

      const snaps = await forgeAt(where, ['snapshots', '--json']);
      expect(snaps.code, snaps.stderr).toBe(0);
      expect(jsonLines(snaps.stdout).filter((l) => l.message_type === 'snapshot')).toHaveLength(2);
    },
  );
});

describe.skipIf(!S3)('S3 errors users meet', () => {
  it('wrong credentials: one line naming the problem, no stack', async () => {
    const good = { repo: `s3:${S3}/forge-e2e-${unique()}/repo`, flags: [], env: s3Env() };
    expect((await forgeAt(good, ['init'])).code).toBe(0);
    const bad = await forgeAt({ ...good, env: s3Env('not-the-secret') }, ['snapshots']);
    expect(bad.code).not.toBe(0);
    expectNoStack(bad);
    expect(bad.stderr).toMatch(/credential|secret|access key|signature/i);
    expect(
      bad.stderr
        .trim()
        .split('\n')
        .filter((l) => l.startsWith('error:')),
    ).toHaveLength(1);
  });

  it('a bucket that does not exist: exit 10 and the hint to run forge init', async () => {
    const r = await forgeAt({ repo: `s3:${S3}/forge-missing-${unique()}/repo`, flags: [], env: s3Env() }, [
      'snapshots',
    ]);
    expect(r.code, r.stderr).toBe(10);
    expectNoStack(r);
    expect(r.stderr).toContain('forge init');
  });
});

describe.skipIf(!SFTP)('SFTP host keys', () => {
  it('an unknown host key is refused with its fingerprint; --insecure-host-key warns and goes on', async () => {
    const empty = join(base, `known-hosts-${unique()}`);
    await writeFile(empty, '');
    const where = {
      repo: sftpRepo(join(env.FORGE_TEST_SFTP_ROOT ?? '/tmp', `hk-${unique()}`)),
      flags: sftpFlags(empty),
      env: {},
    };
    const refused = await forgeAt(where, ['init']);
    expect(refused.code).not.toBe(0);
    expectNoStack(refused);
    expect(refused.stderr).toMatch(/host key/i);
    expect(refused.stderr).toMatch(/SHA256:/);

    const insecure = await forgeAt({ ...where, flags: [...where.flags, '--insecure-host-key'] }, ['init']);
    expect(insecure.code, insecure.stderr).toBe(0);
    expect(insecure.stderr).toMatch(/warning:.*host key/i);
  });
});

/** A TCP proxy to `port` that can cut every connection and refuse new ones, then come back. */
class CuttableProxy {
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  #down = false;
  bytesUp = 0;
  port = 0;

  readonly #target: number;

  constructor(target: number) {
    this.#target = target;
    this.#server = createServer((client) => {
      if (this.#down) {
        client.destroy();
        return;
      }
      const upstream = tcpConnect(this.#target, '127.0.0.1');
      this.#sockets.add(client);
      this.#sockets.add(upstream);
      client.on('data', (d: Buffer) => {
        this.bytesUp += d.length;
      });
      client.pipe(upstream).pipe(client);
      const drop = () => {
        client.destroy();
        upstream.destroy();
        this.#sockets.delete(client);
        this.#sockets.delete(upstream);
      };
      client.on('error', drop).on('close', drop);
      upstream.on('error', drop).on('close', drop);
    });
  }

  async start(): Promise<void> {
    await new Promise<void>((r) => this.#server.listen(0, '127.0.0.1', r));
    this.port = (this.#server.address() as { port: number }).port;
  }

  cut(): void {
    this.#down = true;
    for (const s of this.#sockets) s.destroy();
    this.#sockets.clear();
  }

  restore(): void {
    this.#down = false;
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((r) => this.#server.close(() => r()));
  }
}

describe.skipIf(!S3)('a connection dropped during an S3 backup', () => {
  it('is retried, the backup succeeds, and the summary says how many retries it took', async () => {
    const proxy = new CuttableProxy(Number(new URL(S3!).port));
    await proxy.start();
    try {
      const where = {
        repo: `s3:http://127.0.0.1:${proxy.port}/forge-e2e-${unique()}/repo`,
        flags: [],
        env: s3Env(),
      };
      expect((await forgeAt(where, ['init'])).code).toBe(0);
      // Cut every open connection once, 10 MB into the upload, and let new ones through.
      let cut = false;
      const timer = setInterval(() => {
        if (!cut && proxy.bytesUp > 10_000_000) {
          cut = true;
          proxy.cut();
          proxy.restore();
        }
      }, 10);
      const r = await forgeAt(where, ['backup', '--json', corpus], { FORGE_RETRY_BASE_MS: '50' });
      clearInterval(timer);
      expect(cut).toBe(true);
      expect(r.code, r.stderr).toBe(0);
      const s = summary(r);
      expect(Number(s.retries)).toBeGreaterThan(0);
      expect(Number(s.succeeded_after_retry)).toBeGreaterThan(0);
      expect((await forgeAt(where, ['check', '--read-data'])).code).toBe(0);
    } finally {
      await proxy.close();
    }
  });
});

describe.skipIf(!S3)('network down in the middle of an S3 backup', () => {
  it('fails cleanly after retries, leaves the repository consistent, and the next run completes it', async () => {
    const swiftPort = Number(new URL(S3!).port);
    const proxy = new CuttableProxy(swiftPort);
    await proxy.start();
    try {
      const where = {
        repo: `s3:http://127.0.0.1:${proxy.port}/forge-e2e-${unique()}/repo`,
        flags: ['-o', 's3.part-size=5'],
        env: s3Env(),
      };
      expect((await forgeAt(where, ['init'])).code).toBe(0);

      // Cut the network once 35 MB went up, and leave it down: retries run out, the run fails.
      const child: ChildProcess = spawn(
        process.execPath,
        [
          join(import.meta.dirname, '../../../../apps/forge/dist/main.js'),
          '-r',
          where.repo,
          'backup',
          corpus,
        ],
        {
          env: {
            ...process.env,
            FORGE_PASSWORD: PASSWORD,
            XDG_CACHE_HOME: join(base, 'cache'),
            FORGE_RETRY_MAX_ATTEMPTS: '3',
            FORGE_RETRY_BASE_MS: '50',
            // An index file after every pack, so what went up before the cut is reusable.
            FORGE_INDEX_MAX_AGE_MS: '1',
            ...where.env,
          },
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      );
      let stderr = '';
      child.stderr!.on('data', (d: Buffer) => {
        stderr += d.toString();
      });
      const timer = setInterval(() => {
        if (proxy.bytesUp > 35_000_000) proxy.cut();
      }, 20);
      const code = await new Promise<number>((r) => child.on('close', (c) => r(c ?? 128)));
      clearInterval(timer);
      expect(code, stderr).not.toBe(0);
      expect(code, stderr).toBeLessThan(128); // a clean exit, not a crash
      expect(stderr).not.toMatch(/\n\s+at /);
      expect(stderr).toMatch(/error: .*gave up after 3 attempts/);

      proxy.restore();
      const check = await forgeAt(where, ['check']);
      expect(check.code, check.stdout + check.stderr).toBe(0);

      const again = await forgeAt(where, ['backup', '--json', corpus]);
      expect(again.code, again.stderr).toBe(0);
      // The packs stored before the cut are reused: this run adds less than a fresh repository needs.
      const local = { repo: join(base, `baseline-${unique()}`), flags: [], env: {} };
      expect((await forgeAt(local, ['init'])).code).toBe(0);
      const fresh = await forgeAt(local, ['backup', '--json', corpus]);
      expect(fresh.code, fresh.stderr).toBe(0);
      expect(Number(summary(again).data_added)).toBeLessThan(Number(summary(fresh).data_added) - 10_000_000);
      const target = join(base, `restore-cut-${unique()}`);
      await mkdir(target);
      const restore = await forgeAt(where, ['restore', 'latest', '--target', target]);
      expect(restore.code, restore.stderr).toBe(0);
      expect(await dirState(join(target, corpus))).toEqual(await dirState(corpus));
    } finally {
      await proxy.close();
    }
  });
});
