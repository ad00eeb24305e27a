import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ForgeError } from '@backupforge/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeSecretRef, resolveSecret } from './index.ts';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'forge-secret-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function failure(p: Promise<unknown>): Promise<ForgeError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(ForgeError);
    return e as ForgeError;
  }
  throw new Error('expected the secret to fail');
}

describe('resolveSecret', () => {
  it('returns inline values as they are', async () => {
    expect(await resolveSecret({ kind: 'value', value: 'v\n' }, { env: {}, cwd: dir })).toBe('v\n');
  });

  it('reads environment variables, naming a missing one', async () => {
    expect(await resolveSecret({ kind: 'env', name: 'PW' }, { env: { PW: 'hunter2' }, cwd: dir })).toBe(
      'hunter2',
    );
    const err = await failure(resolveSecret({ kind: 'env', name: 'FORGE_PW' }, { env: {}, cwd: dir }));
    expect(err.code).toBe('FORGE_USAGE');
    expect(err.message).toBe('environment variable FORGE_PW is not set');
    const empty = await failure(resolveSecret({ kind: 'env', name: 'E' }, { env: { E: '' }, cwd: dir }));
    expect(empty.message).toBe('the secret from environment variable E is empty');
  });

  it('reads files relative to cwd, trimming exactly one trailing newline', async () => {
    await writeFile(join(dir, 'pw'), 's3cret\n\n', { mode: 0o600 });
    await writeFile(join(dir, 'crlf'), 'abc\r\n', { mode: 0o600 });
    const warnings: string[] = [];
    const opts = { env: {}, cwd: dir, onWarning: (w: string) => warnings.push(w) };
    expect(await resolveSecret({ kind: 'file', path: 'pw' }, opts)).toBe('s3cret\n');
    expect(await resolveSecret({ kind: 'file', path: join(dir, 'crlf') }, opts)).toBe('abc');
    expect(warnings).toEqual([]);
  });

  it('warns when a secret file is readable by others, without the secret', async () => {
    const path = join(dir, 'open');
    await writeFile(path, 'topsecret\n');
    await chmod(path, 0o644);
    const warnings: string[] = [];
    const v = await resolveSecret(
      { kind: 'file', path },
      { env: {}, cwd: dir, onWarning: (w) => warnings.push(w) },
    );
    expect(v).toBe('topsecret');
    expect(warnings).toEqual([
      `secret file ${path} can be read by other users (mode 0644); restrict it with: chmod 600 ${path}`,
    ]);
  });

  it('fails clearly for missing and unreadable files', async () => {
    const missing = await failure(resolveSecret({ kind: 'file', path: 'nope' }, { env: {}, cwd: dir }));
    expect(missing.code).toBe('FORGE_NOT_FOUND');
    expect(missing.message).toBe(`secret file ${join(dir, 'nope')} does not exist`);
    const isDir = await failure(resolveSecret({ kind: 'file', path: dir }, { env: {}, cwd: dir }));
    expect(isDir.message).toContain(`cannot read secret file ${dir}`);
    await writeFile(join(dir, 'empty'), '\n', { mode: 0o600 });
    const empty = await failure(resolveSecret({ kind: 'file', path: 'empty' }, { env: {}, cwd: dir }));
    expect(empty.message).toBe(`the secret from file ${join(dir, 'empty')} is empty`);
  });

  it('runs commands in cwd with env, using stdout', async () => {
    const env = { PATH: process.env.PATH, WHO: 'ann' };
    expect(
      await resolveSecret({ kind: 'command', command: 'printf "pw-%s\\n" "$WHO"' }, { env, cwd: dir }),
    ).toBe('pw-ann');
    await writeFile(join(dir, 'here'), 'x');
    expect(await resolveSecret({ kind: 'command', command: 'ls here' }, { env, cwd: dir })).toBe('here');
  });

  it('reports a failing command with exit code and first stderr line, never its stdout', async () => {
    const err = await failure(
      resolveSecret(
        {
          kind: 'command',
          command: 'echo "$S"; echo "" >&2; echo "no such entry" >&2; echo "$L2" >&2; exit 3',
        },
        { env: { PATH: process.env.PATH, S: 'leaked-secret', L2: 'second-stderr-line' }, cwd: dir },
      ),
    );
    expect(err.code).toBe('FORGE_USAGE');
    expect(err.message).toMatch(/failed \(exit code 3\): no such entry$/);
    expect(err.message).not.toContain('leaked-secret');
    expect(err.message).not.toContain('second-stderr-line');
    expect(err.details).toEqual({ exitCode: 3 });
  });

  it('times out a hanging command', async () => {
    const err = await failure(
      resolveSecret(
        { kind: 'command', command: 'sleep 10' },
        { env: { PATH: process.env.PATH }, cwd: dir, timeoutMs: 200 },
      ),
    );
    expect(err.message).toBe('secret command "sleep 10" timed out after 0.2 s');
  });

  it('rejects an empty command output', async () => {
    const err = await failure(
      resolveSecret({ kind: 'command', command: 'echo' }, { env: { PATH: process.env.PATH }, cwd: dir }),
    );
    expect(err.message).toBe('the secret from command "echo" is empty');
  });
});

describe('describeSecretRef', () => {
  it('names the source, never a value', () => {
    expect(describeSecretRef({ kind: 'env', name: 'X' })).toBe('environment variable X');
    expect(describeSecretRef({ kind: 'file', path: '/p' })).toBe('file /p');
    expect(describeSecretRef({ kind: 'command', command: 'pass x' })).toBe('command "pass x"');
    expect(describeSecretRef({ kind: 'value', value: 'hunter2' })).toBe('inline value');
  });
});
