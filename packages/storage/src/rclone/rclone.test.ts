import { randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ForgeError, StorageBackend } from '@backupforge/common';
import { isForgeError } from '@backupforge/common';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { openBackend } from '../open-backend.ts';
import { collect, describeBackend, hexName } from '../testing/describe-backend.ts';
import { createRcloneBackend, openRcloneLocation, redactRemote } from './index.ts';

const RCLONE = process.env.FORGE_TEST_RCLONE;
const SFTP = {
  host: process.env.FORGE_TEST_SFTP_HOST,
  port: process.env.FORGE_TEST_SFTP_PORT,
  user: process.env.FORGE_TEST_SFTP_USER,
  key: process.env.FORGE_TEST_SFTP_KEY,
  knownHosts: process.env.FORGE_TEST_SFTP_KNOWN_HOSTS,
  root: process.env.FORGE_TEST_SFTP_ROOT,
};

describe('rclone locations and settings', () => {
  it('shows the remote as given, without connection-string secrets', async () => {
    const backend = await openBackend('rclone:b2:bucket/backup');
    expect(backend.location).toBe('rclone:b2:bucket/backup');
    expect(backend.properties()).toEqual({ atomicReplace: false, connections: 5 });
    await backend.close();
    expect(redactRemote(':s3,provider=AWS,secret_access_key=SK123,region=eu:bucket/p')).toBe(
      ':s3,provider=AWS,secret_access_key=***,region=eu:bucket/p',
    );
    expect(redactRemote(':sftp,host=h,pass="a,b:c":dir')).toBe(':sftp,host=h,pass=***:dir');
    const secret = await openRcloneLocation(':sftp,host=h,user=u,pass=obscured123:dir', {});
    expect(secret.location).not.toContain('obscured123');
    await secret.close();
  });

  it('takes rclone.connections, and rejects unknown rclone.* settings naming the known ones', async () => {
    const backend = await openRcloneLocation('remote:path', { settings: { 'rclone.connections': '2' } });
    expect(backend.properties().connections).toBe(2);
    await backend.close();
    const error = await rejection(openRcloneLocation('remote:path', { settings: { 'rclone.prog': 'x' } }));
    expect(error.code).toBe('FORGE_USAGE');
    expect(error.message).toContain('rclone.program');
    const bad: Record<string, string>[] = [
      { 'rclone.connections': '0' },
      { 'rclone.args': '--x "open' },
      { 'rclone.timeout': 'x' },
    ];
    for (const settings of bad) {
      expect((await rejection(openRcloneLocation('remote:path', { settings }))).code).toBe('FORGE_USAGE');
    }
  });

  it.each(['', '   ', '--config=/etc/passwd'])('rejects the remote %j', async (remote) => {
    expect((await rejection(openRcloneLocation(remote, {}))).code).toBe('FORGE_USAGE');
  });

  it('names the program and how to install it when rclone is missing', async () => {
    const backend = await openRcloneLocation('/tmp/somewhere', {
      settings: { 'rclone.program': '/nonexistent/bin/rclone' },
    });
    const error = await rejection(backend.stat({ type: 'config', name: 'config' }));
    expect(error.code).toBe('FORGE_USAGE');
    expect(error.message).toContain(`${backend.location}: cannot stat config`);
    expect(error.message).toContain("'/nonexistent/bin/rclone'");
    expect(error.hint).toContain('install rclone');
    expect(error.hint).toContain('rclone.program');
    await backend.close();
  });
});

describe.skipIf(!RCLONE)('rclone backend with the real rclone', () => {
  let base: string;
  /** An empty rclone config, so the tests never see a user's remotes. */
  let config: string;
  let env: NodeJS.ProcessEnv;

  beforeAll(async () => {
    base = await mkdtemp(join(tmpdir(), 'forge-rclone-'));
    config = join(base, 'rclone.conf');
    await writeFile(config, '');
    env = { ...process.env, RCLONE_CONFIG: config };
  });

  afterAll(async () => {
    await rm(base, { recursive: true, force: true });
  });

  describeBackend('rclone (local path remote)', async () => {
    const dir = join(base, `c-${randomBytes(6).toString('hex')}`);
    return {
      backend: createRcloneBackend({ remote: join(dir, 'repo'), program: RCLONE!, env }),
      cleanup: () => rm(dir, { recursive: true, force: true }),
    };
  });

  describe('process handling', () => {
    let dir: string;
    let wrapper: string;
    let backend: StorageBackend | undefined;

    beforeEach(async () => {
      dir = join(base, `p-${randomBytes(6).toString('hex')}`);
      await mkdir(dir);
      // Records each start (pid and environment), then becomes rclone itself.
      wrapper = join(dir, 'rclone-wrapper.sh');
      await writeFile(
        wrapper,
        `#!/bin/sh\necho $$ >> '${dir}/pids'\nenv > '${dir}/env'\nexec '${RCLONE}' "$@"\n`,
      );
      await chmod(wrapper, 0o755);
    });

    afterEach(async () => {
      await backend?.close();
      backend = undefined;
    });

    async function pids(): Promise<number[]> {
      const text = await readFile(join(dir, 'pids'), 'utf8').catch(() => '');
      return text.split('\n').filter(Boolean).map(Number);
    }

    it('starts rclone lazily, without AWS_CA_BUNDLE, and stops it on close', async () => {
      backend = await openRcloneLocation(join(dir, 'repo'), {
        env: { ...env, AWS_CA_BUNDLE: '/etc/ssl/ca.pem', FORGE_PROBE: 'kept' },
        settings: { 'rclone.program': wrapper, 'rclone.args': "--log-level 'ERROR'" },
      });
      expect(await pids()).toEqual([]);
      await backend.create();
      const [pid] = await pids();
      expect(isRunning(pid!)).toBe(true);
      const childEnv = await readFile(join(dir, 'env'), 'utf8');
      expect(childEnv).toContain('FORGE_PROBE=kept');
      expect(childEnv).not.toContain('AWS_CA_BUNDLE');
      expect((await readdir(join(dir, 'repo'))).sort()).toEqual([
        'data',
        'index',
        'keys',
        'locks',
        'snapshots',
      ]);
      await backend.close();
      backend = undefined;
      expect(isRunning(pid!)).toBe(false);
    });

    it('rejects calls retryably when rclone is killed mid-save, then starts it again', async () => {
      backend = createRcloneBackend({ remote: join(dir, 'repo'), program: wrapper, env });
      await backend.create();
      const [first] = await pids();
      const big = { type: 'pack', name: hexName() } as const;
      const saving = backend.save(big, new Uint8Array(64 * 1024 * 1024));
      // rclone writes local files in place: kill it once the upload has begun.
      const partial = join(dir, 'repo', 'data', big.name.slice(0, 2), big.name);
      while (!(await stat(partial).catch(() => undefined))) await new Promise((r) => setTimeout(r, 1));
      process.kill(first!, 'SIGKILL');
      const error = await rejection(saving);
      expect(error).toMatchObject({ code: 'FORGE_IO', retryable: true });
      expect(error.message).toContain(`${backend.location}: cannot save data/`);
      expect(error.message).toContain('SIGKILL');

      const handle = { type: 'snapshot', name: hexName() } as const;
      await backend.save(handle, new Uint8Array([4, 5, 6]));
      expect(await backend.load(handle)).toEqual(new Uint8Array([4, 5, 6]));
      const all = await pids();
      expect(all).toHaveLength(2);
      expect(isRunning(first!)).toBe(false);
      expect(isRunning(all[1]!)).toBe(true);
    });

    it("quotes rclone's last stderr line when it dies", async () => {
      const failing = join(dir, 'failing.sh');
      await writeFile(
        failing,
        '#!/bin/sh\necho "2026/01/01 00:00:00 NOTICE: starting" >&2\n' +
          'echo "2026/01/01 00:00:00 ERROR : the remote exploded" >&2\nexit 3\n',
      );
      await chmod(failing, 0o755);
      backend = createRcloneBackend({ remote: join(dir, 'repo'), program: failing, env });
      const error = await rejection(backend.stat({ type: 'config', name: 'config' }));
      expect(error).toMatchObject({ code: 'FORGE_IO', retryable: true });
      expect(error.message).toContain('exited with code 3: ERROR : the remote exploded');
    });

    it('reports an unconfigured remote as FORGE_USAGE with a hint', async () => {
      backend = createRcloneBackend({ remote: 'nosuchremote:path', program: RCLONE!, env });
      const error = await rejection(backend.create());
      expect(error.code).toBe('FORGE_USAGE');
      expect(error.message).toContain("didn't find section in config file");
      expect(error.hint).toContain('rclone config');
    });
  });

  const sftpReady = Object.values(SFTP).every((v) => v !== undefined && v !== '');

  it.skipIf(!sftpReady)('works on an SFTP remote configured only by environment variables', async () => {
    const path = join(SFTP.root!, `forge-rclone-${randomBytes(6).toString('hex')}`);
    const backend = createRcloneBackend({
      remote: `t:${path}`,
      program: RCLONE!,
      env: {
        ...env,
        RCLONE_CONFIG_T_TYPE: 'sftp',
        RCLONE_CONFIG_T_HOST: SFTP.host!,
        RCLONE_CONFIG_T_PORT: SFTP.port!,
        RCLONE_CONFIG_T_USER: SFTP.user!,
        RCLONE_CONFIG_T_KEY_FILE: SFTP.key!,
        RCLONE_CONFIG_T_KNOWN_HOSTS_FILE: SFTP.knownHosts!,
      },
    });
    try {
      expect(backend.location).toBe(`rclone:t:${path}`);
      await backend.create();
      const pack = { type: 'pack', name: `cd${hexName().slice(2)}` } as const;
      const data = randomBytes(300_000);
      await backend.save(pack, data);
      await backend.save({ type: 'config', name: 'config' }, new Uint8Array([1, 2]));
      expect((await stat(join(path, 'data', 'cd', pack.name))).size).toBe(data.length);
      expect(await backend.stat(pack)).toEqual({ name: pack.name, size: data.length });
      expect(Buffer.from(await backend.load(pack, { offset: 1000, length: 5000 }))).toEqual(
        data.subarray(1000, 6000),
      );
      expect(await collect(backend.list('pack'))).toEqual([{ name: pack.name, size: data.length }]);
      expect(await collect(backend.list('config'))).toEqual([{ name: 'config', size: 2 }]);
      expect((await rejection(backend.load(pack, { offset: data.length, length: 1 }))).code).toBe(
        'FORGE_RANGE',
      );
      await backend.remove(pack);
      await backend.remove(pack);
      expect((await rejection(backend.stat(pack))).code).toBe('FORGE_NOT_FOUND');
    } finally {
      await backend.close();
      await rm(path, { recursive: true, force: true });
    }
  });
});

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
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
