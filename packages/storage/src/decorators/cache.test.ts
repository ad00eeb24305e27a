import { createHash, randomBytes } from 'node:crypto';
import type { Dirent } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ObjectHandle, ObjectType, StorageBackend } from '@backupforge/common';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createMemoryBackend } from '../memory/memory-backend.ts';
import { collect, describeBackend, hexName } from '../testing/describe-backend.ts';
import { createFaultyBackend } from '../testing/faulty-backend.ts';
import { defaultCacheDir, withCache } from './cache.ts';
import { probe } from './test-helpers.ts';

describeBackend('withCache(memory)', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'forge-cache-'));
  return {
    backend: withCache(createMemoryBackend(), { dir }),
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
});

/** An object named by the SHA-256 of its bytes, as the repository stores them. */
function object(type: ObjectType, size = 300): { handle: ObjectHandle; data: Uint8Array } {
  const data = new Uint8Array(randomBytes(size));
  return { handle: { type, name: createHash('sha256').update(data).digest('hex') }, data };
}

/** A pack-shaped object: blobs, a header of `headerLength` bytes, then the header length (u32 LE). */
function packObject(headerLength = 200) {
  const body = randomBytes(5000 + headerLength);
  const tail = Buffer.alloc(4);
  tail.writeUInt32LE(headerLength, 0);
  const data = new Uint8Array(Buffer.concat([body, tail]));
  const name = createHash('sha256').update(data).digest('hex');
  const size = data.length;
  return {
    handle: { type: 'pack' as const, name },
    data,
    tail: { offset: size - 4, length: 4 },
    header: { offset: size - 4 - headerLength, length: headerLength },
  };
}

/** What readPackHeader does: the length word, then the header before it. */
async function readHeader(backend: Pick<StorageBackend, 'load'>, p: ReturnType<typeof packObject>) {
  const len = Buffer.from(await backend.load(p.handle, p.tail)).readUInt32LE(0);
  return backend.load(p.handle, { offset: p.data.length - 4 - len, length: len });
}

async function files(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string, prefix: string) => {
    let entries: Dirent[];
    try {
      entries = await readdir(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      if (e.isDirectory()) await walk(join(d, e.name), `${prefix}${e.name}/`);
      else out.push(`${prefix}${e.name}`);
    }
  };
  await walk(dir, '');
  return out.sort();
}

describe('withCache', () => {
  let dir: string;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'forge-cache-'));
  });

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it.each(['index', 'snapshot', 'key'] as const)(
    'serves the second whole load of a %s from disk',
    async (type) => {
      const memory = createMemoryBackend();
      const { handle, data } = object(type);
      await memory.save(handle, data);
      const { backend: inner, calls } = probe(memory);
      const backend = withCache(inner, { dir });

      expect(await backend.load(handle)).toEqual(data);
      expect(calls.load).toBe(1);
      const second = await backend.load(handle);
      expect(second).toEqual(data);
      expect(second).toBeInstanceOf(Uint8Array);
      expect(calls.load).toBe(1);
      expect(backend.cacheStats()).toMatchObject({ hits: 1, misses: 1, bypassed: 0, invalid: 0 });

      // A new process with the same directory starts warm.
      const again = withCache(inner, { dir });
      expect(await again.load(handle)).toEqual(data);
      expect(calls.load).toBe(1);
      expect(await files(dir)).toContain(
        `${{ index: 'index', snapshot: 'snapshots', key: 'keys' }[type]}/${handle.name}`,
      );
    },
  );

  it('writes saved index, snapshot and key files through to the cache', async () => {
    const { backend: inner, calls } = probe(createMemoryBackend());
    const backend = withCache(inner, { dir });
    const objects = [object('index'), object('snapshot'), object('key')];
    for (const { handle, data } of objects) {
      const copy = data.slice();
      await backend.save(handle, copy);
      copy.fill(0); // the cache holds its own bytes
    }
    for (const { handle, data } of objects) expect(await backend.load(handle)).toEqual(data);
    expect(calls.load).toBe(0);
    expect(backend.cacheStats()).toMatchObject({ hits: 3, misses: 0 });
    // Atomic writes leave no temporary files; the directory is tagged as a cache.
    const all = await files(dir);
    expect(all.filter((f) => f.includes('.tmp-'))).toEqual([]);
    expect(all).toContain('CACHEDIR.TAG');
    expect(await readFile(join(dir, 'CACHEDIR.TAG'), 'utf8')).toMatch(
      /^Signature: 8a477f597d28d172789f06886806bc55/,
    );
  });

  it('does not cache a save that failed', async () => {
    const { backend: inner, calls } = probe(createMemoryBackend());
    const backend = withCache(createFaultyBackend(inner, { save: { failTimes: 1 } }), { dir });
    const { handle, data } = object('index');
    await expect(backend.save(handle, data)).rejects.toMatchObject({ code: 'FORGE_IO' });
    await expect(backend.load(handle)).rejects.toMatchObject({ code: 'FORGE_NOT_FOUND' });
    expect(calls.load).toBe(1);
  });

  it('detects a corrupted cache file, drops it and fetches the object again', async () => {
    const memory = createMemoryBackend();
    const { backend: inner, calls } = probe(memory);
    const backend = withCache(inner, { dir });
    const { handle, data } = object('snapshot', 1000);
    await backend.save(handle, data);
    const file = join(dir, 'snapshots', handle.name);
    const bytes = await readFile(file);
    bytes[500]! ^= 0x10;
    await writeFile(file, bytes);

    expect(await backend.load(handle)).toEqual(data);
    expect(calls.load).toBe(1);
    expect(backend.cacheStats()).toMatchObject({ hits: 0, misses: 1, invalid: 1 });
    // Re-cached with the good bytes.
    expect(new Uint8Array(await readFile(file))).toEqual(data);
    expect(await backend.load(handle)).toEqual(data);
    expect(calls.load).toBe(1);

    // A truncated file is caught the same way.
    await writeFile(file, bytes.subarray(0, 10));
    expect(await backend.load(handle)).toEqual(data);
    expect(calls.load).toBe(2);
    expect(backend.cacheStats().invalid).toBe(2);
  });

  it('never caches an object whose bytes do not hash to its name', async () => {
    const memory = createMemoryBackend();
    const { backend: inner, calls } = probe(memory);
    const backend = withCache(inner, { dir });
    const handle: ObjectHandle = { type: 'index', name: hexName() };
    await backend.save(handle, new Uint8Array([1, 2, 3]));
    await backend.load(handle);
    await backend.load(handle);
    expect(calls.load).toBe(2);
    expect(await files(dir)).toEqual([]);
    // Nor an object damaged on the backend: the caller gets the bytes to judge, the cache keeps nothing.
    const good = object('index');
    await memory.save(good.handle, new Uint8Array(good.data.length));
    await backend.load(good.handle);
    expect(await files(dir)).toEqual([]);
  });

  it('caches the two pack header reads, not blob reads', async () => {
    const memory = createMemoryBackend();
    const p = packObject(300);
    await memory.save(p.handle, p.data);
    const { backend: inner, log } = probe(memory);
    const backend = withCache(inner, { dir });

    const header = await readHeader(backend, p);
    expect(header).toEqual(p.data.subarray(p.header.offset, p.header.offset + p.header.length));
    expect(log).toHaveLength(2);
    expect(await readHeader(backend, p)).toEqual(header);
    expect(log).toHaveLength(2);
    expect(backend.cacheStats()).toMatchObject({ hits: 2, misses: 2 });
    expect((await files(dir)).filter((f) => f !== 'CACHEDIR.TAG')).toEqual(
      [`packs/${p.handle.name}/${p.tail.offset}-4`, `packs/${p.handle.name}/${p.header.offset}-300`].sort(),
    );

    // Blob reads and whole pack reads always go to the backend.
    await backend.load(p.handle, { offset: 0, length: 100 });
    await backend.load(p.handle, { offset: 0, length: 100 });
    await backend.load(p.handle);
    expect(log).toHaveLength(5);

    // A later process recognises the header read from the cached tail read.
    const fresh = withCache(inner, { dir });
    expect(await readHeader(fresh, p)).toEqual(header);
    expect(log).toHaveLength(5);
  });

  it('detects a corrupted cached range and fetches it again', async () => {
    const memory = createMemoryBackend();
    const p = packObject(64);
    await memory.save(p.handle, p.data);
    const { backend: inner, log } = probe(memory);
    const backend = withCache(inner, { dir });
    const header = await readHeader(backend, p);

    const file = join(dir, 'packs', p.handle.name, `${p.header.offset}-64`);
    const bytes = await readFile(file);
    bytes[bytes.length - 1]! ^= 1;
    await writeFile(file, bytes);
    expect(await readHeader(backend, p)).toEqual(header);
    expect(log).toHaveLength(3); // only the header range was fetched again
    expect(backend.cacheStats()).toMatchObject({ invalid: 1, hits: 1 });

    // A valid entry copied to another place fails too: the checksum covers the pack id and range.
    const valid = await readFile(file);
    const other = packObject(64);
    await memory.save(other.handle, other.data);
    await readHeader(backend, other);
    await writeFile(join(dir, 'packs', other.handle.name, `${other.header.offset}-64`), valid);
    expect(await readHeader(backend, other)).toEqual(
      other.data.subarray(other.header.offset, other.header.offset + 64),
    );
    expect(backend.cacheStats().invalid).toBe(2);
  });

  it('keeps working when the cache directory cannot be written', async () => {
    const blocker = join(dir, 'not-a-dir');
    await writeFile(blocker, 'x');
    const warnings: string[] = [];
    const memory = createMemoryBackend();
    const { backend: inner, calls } = probe(memory);
    const backend = withCache(inner, { dir: join(blocker, 'cache'), onWarning: (m) => warnings.push(m) });
    const { handle, data } = object('index');
    const p = packObject();
    await backend.save(handle, data);
    await memory.save(p.handle, p.data);
    expect(await backend.load(handle)).toEqual(data);
    expect(await backend.load(handle)).toEqual(data);
    expect(await readHeader(backend, p)).toEqual(
      p.data.subarray(p.header.offset, p.header.offset + p.header.length),
    );
    expect(await collect(backend.list('index'))).toEqual([{ name: handle.name, size: data.length }]);
    await backend.remove(handle);
    await expect(backend.load(handle)).rejects.toMatchObject({ code: 'FORGE_NOT_FOUND' });
    expect(calls.load).toBe(5);
    expect(backend.cacheStats().hits).toBe(0);
    expect(backend.cacheStats().bypassed).toBeGreaterThan(0);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain('ENOTDIR');
  });

  it('drops an entry on remove', async () => {
    const { backend: inner, calls } = probe(createMemoryBackend());
    const backend = withCache(inner, { dir });
    const { handle, data } = object('snapshot');
    await backend.save(handle, data);
    await backend.remove(handle);
    expect(await files(dir)).not.toContain(`snapshots/${handle.name}`);
    await expect(backend.load(handle)).rejects.toMatchObject({ code: 'FORGE_NOT_FOUND' });
    expect(calls.load).toBe(1);

    const memory = createMemoryBackend();
    const p = packObject();
    await memory.save(p.handle, p.data);
    const packs = withCache(memory, { dir });
    await readHeader(packs, p);
    await packs.remove(p.handle);
    expect((await files(dir)).filter((f) => f.startsWith('packs/'))).toEqual([]);
  });

  it('evicts entries of objects a complete listing no longer shows', async () => {
    const memory = createMemoryBackend();
    const backend = withCache(memory, { dir });
    const [a, b, c] = [object('index'), object('index'), object('snapshot')];
    for (const o of [a!, b!, c!]) await backend.save(o.handle, o.data);
    const p = packObject();
    const q = packObject();
    for (const x of [p, q]) {
      await memory.save(x.handle, x.data);
      await readHeader(backend, x);
    }
    // Another machine's prune removed b and q behind this cache's back.
    await memory.remove(b!.handle);
    await memory.remove(q.handle);

    expect((await collect(backend.list('index'))).map((i) => i.name)).toEqual([a!.handle.name]);
    await collect(backend.list('pack'));
    const left = await files(dir);
    expect(left).toContain(`index/${a!.handle.name}`);
    expect(left).not.toContain(`index/${b!.handle.name}`);
    expect(left).toContain(`snapshots/${c!.handle.name}`);
    expect(left.filter((f) => f.startsWith(`packs/${p.handle.name}/`))).toHaveLength(2);
    expect(left.filter((f) => f.startsWith(`packs/${q.handle.name}/`))).toEqual([]);
    expect(backend.cacheStats().evicted).toBe(2);
  });

  it('evicts nothing after a listing that failed or was stopped early', async () => {
    const memory = createMemoryBackend();
    const objects = [object('index'), object('index'), object('index')];
    for (const o of objects) await memory.save(o.handle, o.data);
    const faulty = createFaultyBackend(memory, { seed: 2, list: { failTimes: 1 } });
    const backend = withCache(faulty, { dir });
    for (const o of objects) await backend.load(o.handle);
    await expect(collect(backend.list('index'))).rejects.toMatchObject({ code: 'FORGE_IO' });
    for await (const _ of backend.list('index')) break;
    expect((await files(dir)).filter((f) => f.startsWith('index/'))).toHaveLength(3);
    expect(backend.cacheStats().evicted).toBe(0);
  });

  it('removes stale temporary files when it evicts, and leaves fresh ones', async () => {
    const backend = withCache(createMemoryBackend(), { dir });
    const o = object('index');
    await backend.save(o.handle, o.data);
    const stale = join(dir, 'index', '.tmp-0123456789abcdef');
    const fresh = join(dir, 'index', '.tmp-fedcba9876543210');
    await writeFile(stale, 'x');
    await writeFile(fresh, 'y');
    const old = new Date(Date.now() - 2 * 60 * 60 * 1000);
    await utimes(stale, old, old);
    await collect(backend.list('index'));
    await expect(stat(stale)).rejects.toMatchObject({ code: 'ENOENT' });
    expect((await stat(fresh)).isFile()).toBe(true);
    expect((await stat(join(dir, 'index', o.handle.name))).isFile()).toBe(true);
  });

  it('never caches config or locks', async () => {
    const memory = createMemoryBackend();
    const { backend: inner, calls } = probe(memory);
    const backend = withCache(inner, { dir });
    const lockData = new Uint8Array(randomBytes(100));
    const lock: ObjectHandle = { type: 'lock', name: createHash('sha256').update(lockData).digest('hex') };
    const config: ObjectHandle = { type: 'config', name: 'config' };
    await backend.save(lock, lockData);
    await backend.save(config, lockData);
    for (let i = 0; i < 2; i++) {
      await backend.load(lock);
      await backend.load(config);
      await backend.load(lock, { offset: 96, length: 4 });
    }
    expect(calls.load).toBe(6);
    await collect(backend.list('lock'));
    expect(await files(dir)).toEqual([]);
    expect(backend.cacheStats()).toMatchObject({ hits: 0, misses: 0 });
  });

  it('returns arrays the caller may change without affecting the cache', async () => {
    const backend = withCache(createMemoryBackend(), { dir });
    const { handle, data } = object('index');
    await backend.save(handle, data);
    (await backend.load(handle)).fill(0);
    expect(await backend.load(handle)).toEqual(data);
    expect(backend.cacheStats()).toMatchObject({ hits: 2, invalid: 0 });
  });

  it('passes errors of the backend through', async () => {
    const backend = withCache(createMemoryBackend(), { dir });
    const p = packObject();
    await expect(backend.load(object('index').handle)).rejects.toMatchObject({ code: 'FORGE_NOT_FOUND' });
    await expect(backend.load(p.handle, p.tail)).rejects.toMatchObject({ code: 'FORGE_NOT_FOUND' });
    expect(await files(dir)).toEqual([]);
  });

  it('keeps location and properties, and names its directory', () => {
    const backend = withCache(createMemoryBackend(), { dir });
    expect(backend.location).toBe('memory:');
    expect(backend.properties()).toEqual(createMemoryBackend().properties());
    expect(backend.cacheDir).toBe(dir);
    expect(() => withCache(createMemoryBackend(), { dir: '' })).toThrow(
      expect.objectContaining({ code: 'FORGE_USAGE' }),
    );
  });

  it('puts the default cache under $XDG_CACHE_HOME/backupforge/<repo id>', () => {
    const id = 'ab'.repeat(32);
    expect(defaultCacheDir(id, { XDG_CACHE_HOME: '/var/cache/me' })).toBe(`/var/cache/me/backupforge/${id}`);
    expect(defaultCacheDir(id, { HOME: '/home/x' })).toMatch(new RegExp(`/\\.cache/backupforge/${id}$`));
    expect(defaultCacheDir(id, { XDG_CACHE_HOME: 'relative' })).toMatch(/\.cache\/backupforge\//);
    expect(() => defaultCacheDir('../etc')).toThrow(expect.objectContaining({ code: 'FORGE_USAGE' }));
  });
});
