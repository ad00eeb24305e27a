import { spawnSync } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ForgeErrorCode, StorageBackend } from '@backupforge/common';
import { isForgeError } from '@backupforge/common';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { collect, describeBackend, hexName } from '../testing/describe-backend.ts';
import { rawFileAccess } from '../testing/raw-files.ts';
import { createLocalBackend } from './local-backend.ts';

describeBackend(
  'local',
  async () => {
    const base = await mkdtemp(join(tmpdir(), 'forge-local-'));
    return {
      // A subdirectory, so create() has to make the repository root too.
      backend: createLocalBackend({ path: join(base, 'repo') }),
      cleanup: () => rm(base, { recursive: true, force: true }),
      raw: rawFileAccess(join(base, 'repo')),
    };
  },
  { uploads: true, temporaries: true },
);

describe('local backend', () => {
  let base: string;
  let root: string;
  let backend: StorageBackend;

  beforeEach(async () => {
    base = await mkdtemp(join(tmpdir(), 'forge-local-'));
    root = join(base, 'repo');
    backend = createLocalBackend({ path: root });
    await backend.create();
  });

  afterEach(async () => {
    await rm(base, { recursive: true, force: true });
  });

  it('reports the absolute path as location and its properties', () => {
    expect(backend.location).toBe(root);
    expect(backend.properties()).toEqual({ atomicReplace: true, connections: 4 });
  });

  it('an upload recreates a missing data/ directory, keeps its temporary file there, and refuses a bad name', async () => {
    await rm(join(root, 'data'), { recursive: true });
    const upload = await backend.createUpload!('pack');
    expect((await readdir(join(root, 'data'))).filter((n) => n.startsWith('.tmp-'))).toHaveLength(1);
    await upload.write(new Uint8Array(5000).fill(7));
    // A bad name is refused and the upload stays open: it can still be committed properly.
    await expect(upload.commit({ type: 'pack', name: '../escape' })).rejects.toMatchObject({
      code: 'FORGE_USAGE',
    });
    const name = hexName();
    await upload.commit({ type: 'pack', name });
    expect(await collect(backend.list('pack'))).toEqual([{ name, size: 5000 }]);
    expect(await readdir(join(root, 'data'))).toEqual([name.slice(0, 2)]);
  });

  it('create makes the type directories only, data/<xx> on demand', async () => {
    expect((await readdir(root)).sort()).toEqual(['data', 'index', 'keys', 'locks', 'snapshots']);
    expect(await readdir(join(root, 'data'))).toEqual([]);
  });

  it('stores objects at their objectKey paths, owner-only', async () => {
    const pack = `ab${hexName().slice(2)}`;
    await backend.save({ type: 'pack', name: pack }, new Uint8Array([1, 2, 3]));
    await backend.save({ type: 'config', name: 'config' }, new Uint8Array([4]));
    await backend.save({ type: 'key', name: 'k1' }, new Uint8Array([5]));
    const packStat = await stat(join(root, 'data', 'ab', pack));
    expect(packStat.size).toBe(3);
    expect(packStat.mode & 0o077).toBe(0);
    expect((await stat(join(root, 'config'))).size).toBe(1);
    expect((await stat(join(root, 'keys', 'k1'))).size).toBe(1);
    expect(await readdir(join(root, 'data', 'ab'))).toEqual([pack]);
  });

  it('does not list temporary files or dot files', async () => {
    const pack = `ab${hexName().slice(2)}`;
    await backend.save({ type: 'pack', name: pack }, new Uint8Array(5));
    await writeFile(join(root, 'data', 'ab', '.tmp-0123456789abcdef'), 'partial');
    await writeFile(join(root, 'snapshots', '.tmp-feed'), 'partial');
    await mkdir(join(root, 'data', '.tmp-dir'));
    await writeFile(join(root, 'data', '.tmp-dir', 'x'), 'x');
    expect(await collect(backend.list('pack'))).toEqual([{ name: pack, size: 5 }]);
    expect(await collect(backend.list('snapshot'))).toEqual([]);
  });

  it('removes the temporary file when the final name is taken by a directory', async () => {
    const name = hexName();
    await mkdir(join(root, 'keys', name));
    const error = await rejection(backend.save({ type: 'key', name }, new Uint8Array(100)));
    expect(error.code).toBe('FORGE_IO');
    expect(error.message).toContain(join(root, 'keys', name));
    expect(await readdir(join(root, 'keys'))).toEqual([name]);
  });

  it('throws from list when a type directory is a file', async () => {
    await rm(join(root, 'snapshots'), { recursive: true });
    await writeFile(join(root, 'snapshots'), 'not a directory');
    const error = await rejection(collect(backend.list('snapshot')));
    expect(error.code).toBe('FORGE_IO');
    expect(error.message).toContain(join(root, 'snapshots'));

    await rm(join(root, 'data'), { recursive: true });
    await writeFile(join(root, 'data'), 'not a directory');
    expect((await rejection(collect(backend.list('pack')))).code).toBe('FORGE_IO');
  });

  it('lists nothing for a location that does not exist yet', async () => {
    const missing = createLocalBackend({ path: join(base, 'missing') });
    expect(await collect(missing.list('pack'))).toEqual([]);
    expect(await collect(missing.list('config'))).toEqual([]);
  });

  it('does not create a missing repository root on save', async () => {
    const missing = join(base, 'unmounted');
    const other = createLocalBackend({ path: missing });
    const error = await rejection(other.save({ type: 'pack', name: hexName() }, new Uint8Array(1)));
    expect(error.code).toBe('FORGE_REPO_NOT_FOUND');
    expect(error.message).toContain(missing);
    await expect(stat(missing)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('creates a missing type directory inside an existing root on save', async () => {
    await rm(join(root, 'locks'), { recursive: true });
    await backend.save({ type: 'lock', name: 'l1' }, new Uint8Array(2));
    expect(await collect(backend.list('lock'))).toEqual([{ name: 'l1', size: 2 }]);
  });

  it('rejects create when the location is a file', async () => {
    const file = join(base, 'file');
    await writeFile(file, 'x');
    expect((await rejection(createLocalBackend({ path: file }).create())).code).toBe('FORGE_USAGE');
  });

  it.each(['../../escape', 'a/b', '.tmp-1234', ''])(
    'rejects the object name %j with FORGE_USAGE and writes nothing',
    async (name) => {
      expect((await rejection(backend.save({ type: 'key', name }, new Uint8Array(1)))).code).toBe(
        'FORGE_USAGE',
      );
      expect((await rejection(backend.load({ type: 'key', name }))).code).toBe('FORGE_USAGE');
      expect(await readdir(join(root, 'keys'))).toEqual([]);
      expect((await readdir(base)).sort()).toEqual(['repo']);
    },
  );

  it('rejects a pack name shorter than its directory prefix', async () => {
    expect((await rejection(backend.save({ type: 'pack', name: 'a' }, new Uint8Array(1)))).code).toBe(
      'FORGE_USAGE',
    );
  });

  it('reads a range into the buffer it is given, when it is large enough', async () => {
    const handle = { type: 'pack', name: hexName() } as const;
    const data = new Uint8Array(5000).map((_, i) => (i * 7) % 256);
    await backend.save(handle, data);
    const into = new Uint8Array(4096).fill(0xee);
    const got = await backend.load(handle, { offset: 1000, length: 3000 }, into);
    expect(got.buffer).toBe(into.buffer); // no new buffer
    expect(got.byteOffset).toBe(0);
    expect(Buffer.from(got).equals(Buffer.from(data.subarray(1000, 4000)))).toBe(true);
    expect(into.subarray(3000).every((b) => b === 0xee)).toBe(true); // nothing past the range
    const small = new Uint8Array(100);
    const other = await backend.load(handle, { offset: 0, length: 200 }, small);
    expect(other.buffer).not.toBe(small.buffer);
    expect(Buffer.from(other).equals(Buffer.from(data.subarray(0, 200)))).toBe(true);
  });

  it('rejects negative or fractional ranges with FORGE_USAGE', async () => {
    const handle = { type: 'index', name: hexName() } as const;
    await backend.save(handle, new Uint8Array(10));
    expect((await rejection(backend.load(handle, { offset: -1, length: 2 }))).code).toBe('FORGE_USAGE');
    expect((await rejection(backend.load(handle, { offset: 0, length: 1.5 }))).code).toBe('FORGE_USAGE');
  });

  describe('permissions', () => {
    // Root bypasses file permissions, so as root the operation runs with the effective uid and
    // gid of `nobody` (65534); as any other user, the modes alone deny access.
    async function asUnprivileged<T>(skip: (note: string) => never, fn: () => Promise<T>): Promise<T> {
      if (process.getuid?.() !== 0) return fn();
      if (process.seteuid === undefined || process.setegid === undefined) {
        skip('running as root without process.seteuid (worker thread?): cannot drop privileges');
      }
      process.setegid(65534);
      process.seteuid(65534);
      try {
        return await fn();
      } finally {
        process.seteuid(0);
        process.setegid(0);
      }
    }

    beforeEach(async () => {
      // Everyone may traverse up to the repository; the tests then close one directory each.
      for (const dir of [base, root, join(root, 'data'), join(root, 'keys')]) await chmod(dir, 0o755);
    });

    afterEach(async () => {
      // Let a non-root owner delete everything again.
      await chmod(join(root, 'keys'), 0o755).catch(() => {});
      await chmod(join(root, 'data', 'ab'), 0o755).catch(() => {});
      await chmod(join(root, 'index'), 0o755).catch(() => {});
    });

    it('maps EACCES on save to FORGE_PERMISSION naming the path, and leaves no temporary file', async ({
      skip,
    }) => {
      await chmod(join(root, 'keys'), 0o555);
      const name = hexName();
      const error = await asUnprivileged(skip, () =>
        rejection(backend.save({ type: 'key', name }, new Uint8Array(10))),
      );
      expect(error.code).toBe('FORGE_PERMISSION');
      expect(error.retryable).toBe(false);
      expect(error.message).toContain(join(root, 'keys'));
      expect(await readdir(join(root, 'keys'))).toEqual([]);
    });

    it('maps EACCES on load to FORGE_PERMISSION', async ({ skip }) => {
      const handle = { type: 'key', name: hexName() } as const;
      await backend.save(handle, new Uint8Array(10));
      await chmod(join(root, 'keys', handle.name), 0o000);
      const error = await asUnprivileged(skip, () => rejection(backend.load(handle)));
      expect(error.code).toBe('FORGE_PERMISSION');
    });

    it('throws from list when one data/<xx> directory is unreadable while the others are fine', async ({
      skip,
    }) => {
      await backend.save({ type: 'pack', name: `00${hexName().slice(2)}` }, new Uint8Array(1));
      await backend.save({ type: 'pack', name: `ab${hexName().slice(2)}` }, new Uint8Array(1));
      await backend.save({ type: 'pack', name: `ff${hexName().slice(2)}` }, new Uint8Array(1));
      await chmod(join(root, 'data', '00'), 0o755);
      await chmod(join(root, 'data', 'ff'), 0o755);
      await chmod(join(root, 'data', 'ab'), 0o000);
      const error = await asUnprivileged(skip, () => rejection(collect(backend.list('pack'))));
      expect(error.code).toBe('FORGE_PERMISSION');
      expect(error.message).toContain(join(root, 'data', 'ab'));
    });

    it('throws from list when a type directory is unreadable', async ({ skip }) => {
      await backend.save({ type: 'index', name: hexName() }, new Uint8Array(1));
      await chmod(join(root, 'index'), 0o000);
      const error = await asUnprivileged(skip, () => rejection(collect(backend.list('index'))));
      expect(error.code).toBe('FORGE_PERMISSION');
    });
  });
});

describe('local backend on a full filesystem', () => {
  let mountPoint: string;
  let mounted = false;
  let whyNot = '';

  beforeAll(async () => {
    mountPoint = await mkdtemp(join(tmpdir(), 'forge-tmpfs-'));
    const result = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', mountPoint], {
      encoding: 'utf8',
    });
    mounted = result.status === 0;
    whyNot = result.error?.message ?? result.stderr?.trim() ?? `mount exited with ${result.status}`;
  });

  afterAll(async () => {
    if (mounted) spawnSync('umount', [mountPoint]);
    await rm(mountPoint, { recursive: true, force: true });
  });

  it('maps ENOSPC to FORGE_NO_SPACE and removes the temporary file', async ({ skip }) => {
    if (!mounted) skip(`cannot mount a 1 MiB tmpfs (needs root or CAP_SYS_ADMIN): ${whyNot}`);
    const root = join(mountPoint, 'repo');
    const backend = createLocalBackend({ path: root });
    await backend.create();
    const name = `ab${hexName().slice(2)}`;
    const error = await rejection(backend.save({ type: 'pack', name }, new Uint8Array(2 * 1024 * 1024)));
    expect(error.code).toBe('FORGE_NO_SPACE');
    expect(error.retryable).toBe(false);
    expect(error.message).toContain(join(root, 'data', 'ab', name));
    expect(await readdir(join(root, 'data', 'ab'))).toEqual([]);
    // The space of the failed write was given back: a 512 KiB object still fits.
    await backend.save({ type: 'pack', name }, new Uint8Array(512 * 1024));
    expect(await collect(backend.list('pack'))).toEqual([{ name, size: 512 * 1024 }]);
  });

  it('fails an upload that does not fit with FORGE_NO_SPACE; abort gives the space back', async ({
    skip,
  }) => {
    if (!mounted) skip(`cannot mount a 1 MiB tmpfs (needs root or CAP_SYS_ADMIN): ${whyNot}`);
    const root = join(mountPoint, 'repo-upload');
    const backend = createLocalBackend({ path: root });
    await backend.create();
    const upload = await backend.createUpload!('pack');
    expect((await readdir(join(root, 'data'))).filter((n) => n.startsWith('.tmp-'))).toHaveLength(1);
    const name = hexName();
    // The failure shows in a later write (writes go out in the background) or in the commit.
    const error = await rejection(
      (async () => {
        for (let i = 0; i < 8; i++) await upload.write(new Uint8Array(512 * 1024).fill(i + 1));
        await upload.commit({ type: 'pack', name });
      })(),
    );
    expect(error.code).toBe('FORGE_NO_SPACE');
    expect(error.message).toContain(join(root, 'data'));
    await upload.abort();
    expect(await readdir(join(root, 'data'))).toEqual([]);
    expect(await collect(backend.list('pack'))).toEqual([]);
    const again = await backend.createUpload!('pack');
    await again.write(new Uint8Array(256 * 1024).fill(9));
    await again.commit({ type: 'pack', name });
    expect(await collect(backend.list('pack'))).toEqual([{ name, size: 256 * 1024 }]);
    await backend.close();
  });
});

async function rejection(
  promise: Promise<unknown>,
): Promise<{ code: ForgeErrorCode; message: string; retryable: boolean }> {
  const resolved = Symbol('resolved');
  const error = await promise.then(
    () => resolved,
    (e: unknown) => e,
  );
  if (error === resolved) expect.fail('expected a rejection, but the call resolved');
  if (!isForgeError(error)) expect.fail(`expected a ForgeError, got ${String(error)}`);
  return error;
}
