import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { isForgeError } from '@backupforge/common';
import { describe, expect, it } from 'vitest';
import { openBackend } from './index.ts';

async function usageError(location: string) {
  const error = await openBackend(location).then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!isForgeError(error, 'FORGE_USAGE'))
    expect.fail(`expected FORGE_USAGE for ${location}, got ${String(error)}`);
  return error;
}

describe('openBackend', () => {
  it('opens an absolute path as a local backend without touching the disk', async () => {
    const base = await mkdtemp(join(tmpdir(), 'forge-open-'));
    try {
      const backend = await openBackend(join(base, 'repo'));
      expect(backend.location).toBe(join(base, 'repo'));
      expect(backend.properties()).toEqual({ atomicReplace: true, connections: 4 });
      expect(await readdir(base)).toEqual([]);
    } finally {
      await rm(base, { recursive: true, force: true });
    }
  });

  it.each([
    ['relative/repo', resolve('relative/repo')],
    ['./repo', resolve('repo')],
    ['local:/srv/backup', '/srv/backup'],
    ['local:relative/repo', resolve('relative/repo')],
    ['local:/srv/with:colon', '/srv/with:colon'],
    ['/srv/with:colon', '/srv/with:colon'],
    ['./dir:with-colon', resolve('dir:with-colon')],
  ])('resolves %j to the local directory %j', async (location, path) => {
    expect((await openBackend(location)).location).toBe(path);
  });

  it('opens memory: as a fresh ephemeral backend each time', async () => {
    const a = await openBackend('memory:');
    const b = await openBackend('memory:');
    expect(a.properties().ephemeral).toBe(true);
    await a.save({ type: 'config', name: 'config' }, new Uint8Array([1]));
    await expect(b.stat({ type: 'config', name: 'config' })).rejects.toMatchObject({
      code: 'FORGE_NOT_FOUND',
    });
  });

  it('rejects an unknown scheme, naming the accepted forms', async () => {
    const error = await usageError('ftp:host/path');
    expect(error.message).toContain("'ftp:'");
    expect(error.message).toContain('local:');
    expect(error.message).toContain('memory:');
    expect(error.hint).toContain('./ftp:host/path');
  });

  it.each(['', '   ', 'local:', 'memory:extra'])('rejects %j', async (location) => {
    await usageError(location);
  });
});
