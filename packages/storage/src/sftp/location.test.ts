import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { isForgeError } from '@backupforge/common';
import { describe, expect, it } from 'vitest';
import { formatSftpLocation, parseSftpLocation } from './location.ts';
import { SFTP_STATUS, sftpError } from './session.ts';
import { parseSftpSettings } from './settings.ts';

describe('parseSftpLocation', () => {
  it.each([
    // BackupForge's own form: the path after the host (and port) is absolute.
    ['backup@nas/volume1/backup', 'backup', 'nas', 22, '/volume1/backup'],
    ['backup@nas:2222/volume1/backup', 'backup', 'nas', 2222, '/volume1/backup'],
    ['nas.example.com:22/srv/repo/', undefined, 'nas.example.com', 22, '/srv/repo'],
    ['nas/srv/repo', undefined, 'nas', 22, '/srv/repo'],
    // restic's scp-like form.
    ['backup@nas:/volume1/backup', 'backup', 'nas', 22, '/volume1/backup'],
    ['backup@nas:repo', 'backup', 'nas', 22, 'repo'],
    ['backup@nas:repos/main/', 'backup', 'nas', 22, 'repos/main'],
    ['backup@nas:~/repos/main', 'backup', 'nas', 22, 'repos/main'],
    ['backup@nas:./2024/repo', 'backup', 'nas', 22, '2024/repo'],
    ['backup@nas:../shared/repo', 'backup', 'nas', 22, '../shared/repo'],
    ['nas:/srv//a/../b', undefined, 'nas', 22, '/srv/b'],
    ['nas:/srv/a@b', undefined, 'nas', 22, '/srv/a@b'],
    ['nas:dir@2024', undefined, 'nas', 22, 'dir@2024'],
    ['user@corp@nas:/srv', 'user@corp', 'nas', 22, '/srv'],
    ['10.0.0.5:/srv', undefined, '10.0.0.5', 22, '/srv'],
    // URL-ish form: absolute unless the path starts with /~/.
    ['//backup@nas:2222/srv/repo', 'backup', 'nas', 2222, '/srv/repo'],
    ['//backup@nas/srv/repo', 'backup', 'nas', 22, '/srv/repo'],
    ['//nas:2222//srv/repo', undefined, 'nas', 2222, '/srv/repo'],
    ['//nas:2222/~/repo', undefined, 'nas', 2222, 'repo'],
    ['//a%40b@nas/srv/my%20repo', 'a@b', 'nas', 22, '/srv/my repo'],
    // IPv6 in brackets, in every form.
    ['backup@[::1]:2222/srv/repo', 'backup', '::1', 2222, '/srv/repo'],
    ['[2001:db8::1]:/srv/repo', undefined, '2001:db8::1', 22, '/srv/repo'],
    ['[2001:db8::1]:relative', undefined, '2001:db8::1', 22, 'relative'],
    ['[fe80::1%eth0]/srv', undefined, 'fe80::1%eth0', 22, '/srv'],
    ['//backup@[::1]:2222/srv/repo', 'backup', '::1', 2222, '/srv/repo'],
    ['//[fe80::1%25eth0]:2222/srv', undefined, 'fe80::1%eth0', 2222, '/srv'],
  ])('%s', (rest, user, host, port, path) => {
    expect(parseSftpLocation(rest)).toEqual({ user, host, port, path });
  });

  it.each([
    ['', 'needs a host'],
    ['nas', 'no repository path'],
    ['nas:', 'login directory'],
    ['nas:~', 'login directory'],
    ['nas:2222', 'no repository path after the port'],
    ['nas:99999/srv', 'not a TCP port'],
    ['nas:0/srv', 'not a TCP port'],
    ['@nas:/srv', 'empty user'],
    ['::1:2222/srv', 'brackets'],
    ['2001:db8::1:/srv', 'brackets'],
    ['[::1:/srv', "closing ']'"],
    ['[nas]:/srv', 'not an IPv6 address'],
    ['bad!host:/srv', 'not a valid host name'],
    ['nas:/srv\nrm', 'control characters'],
    ['//nas', 'absolute path'],
    ['//nas:22x/srv', 'not a TCP port'],
    ['//nas?x=1/srv', 'not a valid host name'],
    ['//nas/%zz', '%-escape'],
  ])('rejects %j with FORGE_USAGE naming the accepted forms', (rest, problem) => {
    const error = catchError(() => parseSftpLocation(rest));
    expect(error.code).toBe('FORGE_USAGE');
    expect(error.message).toContain(problem);
    expect(error.hint).toContain('sftp:user@host[:port]/abs/path');
    expect(error.hint).toContain('sftp:user@host:relative/path');
  });

  it('never repeats a password from a URL location', () => {
    const error = catchError(() => parseSftpLocation('//backup:hunter2@nas/srv'));
    expect(error.code).toBe('FORGE_USAGE');
    expect(error.message).toContain('passwords');
    expect(JSON.stringify({ ...error, message: error.message, hint: error.hint })).not.toContain('hunter2');
  });
});

describe('formatSftpLocation', () => {
  it.each([
    [{ user: 'u', host: 'nas', port: 22, path: '/srv/repo' }, 'sftp:u@nas/srv/repo'],
    [{ user: 'u', host: 'nas', port: 2222, path: '/srv/repo' }, 'sftp:u@nas:2222/srv/repo'],
    [{ user: 'u', host: 'nas', port: 22, path: 'repo' }, 'sftp:u@nas:repo'],
    [{ user: 'u', host: 'nas', port: 2222, path: 'repo' }, 'sftp://u@nas:2222/~/repo'],
    [{ user: 'u', host: '::1', port: 2222, path: '/srv' }, 'sftp:u@[::1]:2222/srv'],
  ])('formats %j as %s, which parses back to the same location', (loc, text) => {
    expect(formatSftpLocation(loc)).toBe(text);
    expect(parseSftpLocation(text.slice('sftp:'.length))).toEqual(loc);
  });
});

describe('parseSftpSettings', () => {
  it('reads the sftp.* keys and ignores other backends', () => {
    expect(
      parseSftpSettings({
        'sftp.identity': '~/.ssh/backup',
        'sftp.known-hosts': '/etc/forge/known_hosts',
        'sftp.connections': '16',
        'sftp.timeout': '45',
        's3.region': 'eu-west-1',
      }),
    ).toEqual({
      identity: '~/.ssh/backup',
      knownHosts: '/etc/forge/known_hosts',
      connections: 16,
      timeoutMs: 45_000,
    });
    expect(parseSftpSettings(undefined)).toEqual({});
  });

  it.each([
    ['30', 30_000],
    ['30s', 30_000],
    ['1500ms', 1500],
    ['2m', 120_000],
    ['0.5', 500],
  ])('reads sftp.timeout=%s', (value, ms) => {
    expect(parseSftpSettings({ 'sftp.timeout': value }).timeoutMs).toBe(ms);
  });

  it('rejects an unknown sftp.* key, naming the known ones', () => {
    const error = catchError(() => parseSftpSettings({ 'sftp.conections': '4' }));
    expect(error.code).toBe('FORGE_USAGE');
    expect(error.message).toContain('sftp.conections');
    for (const key of ['sftp.identity', 'sftp.known-hosts', 'sftp.connections', 'sftp.timeout']) {
      expect(error.hint).toContain(key);
    }
  });

  it.each([
    ['sftp.connections', '0'],
    ['sftp.connections', '65'],
    ['sftp.connections', 'many'],
    ['sftp.timeout', '0'],
    ['sftp.timeout', 'soon'],
    ['sftp.timeout', '2h'],
    ['sftp.identity', ''],
  ])('rejects %s=%j', (key, value) => {
    expect(catchError(() => parseSftpSettings({ [key]: value })).code).toBe('FORGE_USAGE');
  });
});

describe('sftpError', () => {
  const map = (e: unknown) => sftpError(e, 'read', '/srv/repo/config', 'u@nas:22');
  const status = (code: number, message: string) => Object.assign(new Error(message), { code });

  it.each([
    [SFTP_STATUS.NO_SUCH_FILE, 'FORGE_NOT_FOUND', false],
    [SFTP_STATUS.PERMISSION_DENIED, 'FORGE_PERMISSION', false],
    [SFTP_STATUS.FAILURE, 'FORGE_IO', false],
    [SFTP_STATUS.OP_UNSUPPORTED, 'FORGE_IO', false],
    [SFTP_STATUS.NO_CONNECTION, 'FORGE_IO', true],
    [SFTP_STATUS.CONNECTION_LOST, 'FORGE_IO', true],
  ])('maps SFTP status %i to %s (retryable: %s)', (code, forgeCode, retryable) => {
    const error = map(status(code, 'Failure'));
    expect(error.code).toBe(forgeCode);
    expect(error.retryable).toBe(retryable);
    expect(error.message).toContain('/srv/repo/config');
    expect(error.message).toContain('u@nas:22');
  });

  it('maps a dropped connection to a retryable FORGE_IO', () => {
    const error = map(new Error('No response from server'));
    expect(error.code).toBe('FORGE_IO');
    expect(error.retryable).toBe(true);
  });
});

describe('lazy loading', () => {
  it('loads ssh2 only when an SFTP backend is first used', () => {
    const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));
    const script = `
      import { createRequire } from 'node:module';
      const cache = createRequire(${JSON.stringify(here('./index.ts'))}).cache;
      const loaded = () => Object.keys(cache).some((k) => k.includes('/ssh2/'));
      await import(${JSON.stringify(here('../index.ts'))});
      const sftp = await import(${JSON.stringify(here('./index.ts'))});
      const backend = await sftp.openSftpLocation('u@127.0.0.1:1/x', { env: {} });
      const before = loaded();
      const error = await backend.stat({ type: 'config', name: 'config' }).catch((e) => e);
      console.log(JSON.stringify({ before, after: loaded(), code: error.code }));
    `;
    const out = execFileSync(
      process.execPath,
      ['--conditions=@backupforge/source', '--no-warnings', '--input-type=module', '-e', script],
      { encoding: 'utf8', timeout: 20_000 },
    );
    expect(JSON.parse(out.trim().split('\n').at(-1)!)).toEqual({
      before: false,
      after: true,
      code: 'FORGE_IO',
    });
  });
});

function catchError(fn: () => unknown) {
  try {
    fn();
  } catch (e) {
    if (isForgeError(e)) return e;
    throw e;
  }
  return expect.fail('expected a ForgeError to be thrown');
}
