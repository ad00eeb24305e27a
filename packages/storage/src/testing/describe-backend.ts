import { randomBytes } from 'node:crypto';
import type {
  ForgeErrorCode,
  ObjectHandle,
  ObjectInfo,
  ObjectType,
  StorageBackend,
} from '@backupforge/common';
import { isForgeError, OBJECT_TYPES } from '@backupforge/common';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

export interface BackendFixture {
  /** A backend for an empty location. The suite calls `create()` on it before each test. */
  readonly backend: StorageBackend;
  /** Removes whatever the backend left behind (temporary directories, buckets). */
  readonly cleanup?: () => Promise<void>;
  /**
   * For backends with `sweepTemporaries`: writes a file at `path` (relative to the repository
   * root, `/`-separated) behind the backend's back, last modified `ageMs` ago, as a process
   * killed mid-write would have left it; and says whether a file is still there.
   */
  readonly raw?: {
    write(path: string, data: string, ageMs: number): Promise<void>;
    exists(path: string): Promise<boolean>;
  };
}

/**
 * The conformance suite every `StorageBackend` MUST pass: a backend's test file is one call to
 * this plus its own regression tests. `factory` runs before each test and must return a backend
 * for a fresh, empty location; `cleanup` runs after each test.
 *
 * ```ts
 * describeBackend('local', async () => {
 *   const dir = await mkdtemp(join(tmpdir(), 'forge-'));
 *   return { backend: createLocalBackend({ path: dir }), cleanup: () => rm(dir, { recursive: true }) };
 * });
 * ```
 */
export function describeBackend(
  name: string,
  factory: () => Promise<BackendFixture>,
  opts: {
    /** The backend has `createUpload` (an optional method): test it too. */
    readonly uploads?: boolean;
    /** The backend has `sweepTemporaries` (optional) and the fixture `raw` access: test it too. */
    readonly temporaries?: boolean;
  } = {},
): void {
  describe(`StorageBackend conformance: ${name}`, () => {
    let fixture: BackendFixture | undefined;
    let backend: StorageBackend;

    beforeEach(async () => {
      fixture = await factory();
      backend = fixture.backend;
      await backend.create();
    });

    afterEach(async () => {
      await backend?.close();
      await fixture?.cleanup?.();
      fixture = undefined;
    });

    it('has a location and sane properties', () => {
      expect(typeof backend.location).toBe('string');
      expect(backend.location.length).toBeGreaterThan(0);
      const props = backend.properties();
      expect(typeof props.atomicReplace).toBe('boolean');
      expect(Number.isInteger(props.connections) && props.connections >= 1).toBe(true);
    });

    describe.each(OBJECT_TYPES.map((type) => ({ type })))('type $type', ({ type }) => {
      it('saves and loads back the same bytes', async () => {
        const handle = handleOf(type);
        const data = bytes(4097, 1);
        await backend.save(handle, data);
        const loaded = await backend.load(handle);
        expect(loaded).toBeInstanceOf(Uint8Array);
        expectBytes(loaded, data);
        expect(await backend.stat(handle)).toEqual({ name: handle.name, size: data.length });
      });

      it('rejects load and stat of a missing object with FORGE_NOT_FOUND', async () => {
        const handle = handleOf(type);
        await expectCode(backend.load(handle), 'FORGE_NOT_FOUND');
        await expectCode(backend.load(handle, { offset: 0, length: 0 }), 'FORGE_NOT_FOUND');
        await expectCode(backend.stat(handle), 'FORGE_NOT_FOUND');
      });

      it('lists nothing when no object of the type exists', async () => {
        expect(await collect(backend.list(type))).toEqual([]);
      });

      it('removes an object: load, stat and list no longer see it', async () => {
        const handle = handleOf(type);
        await backend.save(handle, bytes(10, 2));
        await backend.remove(handle);
        await expectCode(backend.load(handle), 'FORGE_NOT_FOUND');
        await expectCode(backend.stat(handle), 'FORGE_NOT_FOUND');
        expect(await collect(backend.list(type))).toEqual([]);
      });

      it('removing a missing object succeeds', async () => {
        const handle = handleOf(type);
        await expect(backend.remove(handle)).resolves.toBeUndefined();
        await backend.save(handle, bytes(3, 3));
        await backend.remove(handle);
        await expect(backend.remove(handle)).resolves.toBeUndefined();
      });

      it('stores 0-byte objects', async () => {
        const handle = handleOf(type);
        await backend.save(handle, new Uint8Array(0));
        expect((await backend.load(handle)).length).toBe(0);
        expect((await backend.load(handle, { offset: 0, length: 0 })).length).toBe(0);
        await expectCode(backend.load(handle, { offset: 0, length: 1 }), 'FORGE_RANGE');
        expect(await backend.stat(handle)).toEqual({ name: handle.name, size: 0 });
        expect(await collect(backend.list(type))).toEqual([{ name: handle.name, size: 0 }]);
      });
    });

    describe('ranged loads', () => {
      const data = bytes(1000, 4);
      const handle = handleOf('pack');

      beforeEach(async () => {
        await backend.save(handle, data);
      });

      it.each([
        { what: 'the start', offset: 0, length: 10 },
        { what: 'the middle', offset: 100, length: 250 },
        { what: 'the end', offset: 990, length: 10 },
        { what: 'the whole object', offset: 0, length: 1000 },
        { what: 'a single byte', offset: 500, length: 1 },
      ])('returns exactly $what', async ({ offset, length }) => {
        const got = await backend.load(handle, { offset, length });
        expect(got).toBeInstanceOf(Uint8Array);
        expectBytes(got, data.subarray(offset, offset + length));
      });

      it('returns exactly the range when given a buffer to read into, used or not', async () => {
        const into = new Uint8Array(400).fill(0xee);
        const got = await backend.load(handle, { offset: 100, length: 250 }, into);
        expectBytes(got, data.subarray(100, 350));
        if (got.buffer === into.buffer) expect(got.byteOffset).toBe(into.byteOffset);
        // A buffer too small for the range is not written past its end.
        const small = new Uint8Array(10);
        expectBytes(await backend.load(handle, { offset: 0, length: 20 }, small), data.subarray(0, 20));
        expect(small.length).toBe(10);
      });

      it.each([0, 500, 1000])(
        'returns an empty array for a zero-length range at offset %i',
        async (offset) => {
          const got = await backend.load(handle, { offset, length: 0 });
          expect(got).toBeInstanceOf(Uint8Array);
          expect(got.length).toBe(0);
        },
      );

      it.each([
        { what: 'ends one byte past the end', offset: 995, length: 6 },
        { what: 'is longer than the object', offset: 0, length: 1001 },
        { what: 'starts at the end', offset: 1000, length: 1 },
        { what: 'starts past the end with length 0', offset: 1001, length: 0 },
        { what: 'starts far past the end', offset: 5000, length: 10 },
      ])('rejects a range that $what with a permanent FORGE_RANGE', async ({ offset, length }) => {
        const error = await expectCode(backend.load(handle, { offset, length }), 'FORGE_RANGE');
        expect(error.retryable).toBe(false);
      });
    });

    describe('list', () => {
      it('returns exactly the saved objects of each type with their sizes, and never other types', async () => {
        const expected = new Map<ObjectType, ObjectInfo[]>(OBJECT_TYPES.map((t) => [t, []]));
        const put = async (handle: ObjectHandle, size: number) => {
          await backend.save(handle, bytes(size, size));
          expected.get(handle.type)!.push({ name: handle.name, size });
        };
        // Three packs share a two-character prefix directory, one is alone in another.
        await put({ type: 'pack', name: `ab${hexName().slice(2)}` }, 100);
        await put({ type: 'pack', name: `ab${hexName().slice(2)}` }, 0);
        await put({ type: 'pack', name: `ab${hexName().slice(2)}` }, 333);
        await put({ type: 'pack', name: `cd${hexName().slice(2)}` }, 7);
        await put(handleOf('index'), 11);
        await put(handleOf('index'), 12);
        await put(handleOf('snapshot'), 13);
        await put(handleOf('key'), 14);
        await put(handleOf('key'), 15);
        await put(handleOf('lock'), 16);
        await put(handleOf('config'), 17);

        for (const type of OBJECT_TYPES) {
          const got = sortByName(await collect(backend.list(type)));
          expect(got, `list('${type}')`).toEqual(sortByName(expected.get(type)!));
        }
      });

      it('lists an overwritten object once, with its new size', async () => {
        const handle = handleOf('lock');
        await backend.save(handle, bytes(10, 5));
        await backend.save(handle, bytes(20, 6));
        expect(await collect(backend.list('lock'))).toEqual([{ name: handle.name, size: 20 }]);
      });
    });

    describe('save', () => {
      it('replaces an object saved again with identical bytes', async () => {
        const handle = handleOf('pack');
        const data = bytes(2048, 7);
        await backend.save(handle, data);
        await backend.save(handle, data.slice());
        expectBytes(await backend.load(handle), data);
        expect(await collect(backend.list('pack'))).toEqual([{ name: handle.name, size: data.length }]);
      });

      it('replaces config with different content', async () => {
        const handle = handleOf('config');
        await backend.save(handle, bytes(100, 8));
        const next = bytes(50, 9);
        await backend.save(handle, next);
        expectBytes(await backend.load(handle), next);
        expect(await backend.stat(handle)).toEqual({ name: 'config', size: 50 });
      });

      it('is not affected by changes to the saved array afterwards', async () => {
        const handle = handleOf('snapshot');
        const data = bytes(64, 10);
        const original = data.slice();
        await backend.save(handle, data);
        data.fill(0xff);
        expectBytes(await backend.load(handle), original);
      });

      it('is not affected by changes to a loaded array', async () => {
        const handle = handleOf('index');
        const data = bytes(64, 11);
        await backend.save(handle, data);
        const first = await backend.load(handle);
        first.fill(0);
        const part = await backend.load(handle, { offset: 0, length: 8 });
        part.fill(0);
        expectBytes(await backend.load(handle), data);
      });

      it('stores a 20 MiB object', async () => {
        const handle = handleOf('pack');
        const data = bytes(20 * 1024 * 1024, 12);
        await backend.save(handle, data);
        expect(await backend.stat(handle)).toEqual({ name: handle.name, size: data.length });
        expectBytes(await backend.load(handle), data);
        const offset = 13 * 1024 * 1024 + 17;
        expectBytes(
          await backend.load(handle, { offset, length: 3_000_000 }),
          data.subarray(offset, offset + 3_000_000),
        );
        expect(await collect(backend.list('pack'))).toEqual([{ name: handle.name, size: data.length }]);
      });

      it('handles 50 concurrent saves of different objects', async () => {
        const objects = Array.from({ length: 50 }, (_, i) => ({
          handle: handleOf('pack'),
          data: bytes(1000 + i * 37, i),
        }));
        await Promise.all(objects.map(({ handle, data }) => backend.save(handle, data)));
        const listed = sortByName(await collect(backend.list('pack')));
        expect(listed).toEqual(
          sortByName(objects.map(({ handle, data }) => ({ name: handle.name, size: data.length }))),
        );
        for (const { handle, data } of objects) expectBytes(await backend.load(handle), data);
      });

      it('handles concurrent saves of the same name with the same content', async () => {
        const handle = handleOf('pack');
        const data = bytes(100_000, 13);
        await Promise.all(Array.from({ length: 20 }, () => backend.save(handle, data)));
        expectBytes(await backend.load(handle), data);
        expect(await collect(backend.list('pack'))).toEqual([{ name: handle.name, size: data.length }]);
      });
    });

    // Only for backends that take packs piece by piece (the method is optional).
    if (opts.uploads === true) {
      describe('createUpload', () => {
        const upload = (b: StorageBackend) => {
          if (typeof b.createUpload !== 'function') expect.fail(`${name} has no createUpload`);
          return b.createUpload('pack');
        };

        it('stores what was written in pieces of any size under the name given at commit', async () => {
          const data = bytes(5 * 1024 * 1024 + 4099, 30);
          const u = await upload(backend);
          // Pieces smaller than, equal to and larger than any buffer a backend may use.
          const sizes = [1, 4095, 4096, 65_537, 2 * 1024 * 1024, 3 * 1024 * 1024 + 1];
          let at = 0;
          for (let i = 0; at < data.length; i++) {
            const n = Math.min(sizes[i % sizes.length]!, data.length - at);
            const piece = data.slice(at, at + n);
            await u.write(piece);
            piece.fill(0); // the caller may reuse its buffer once write resolves
            at += n;
          }
          expect(await collect(backend.list('pack'))).toEqual([]);
          const handle = handleOf('pack');
          await u.commit(handle);
          expect(await backend.stat(handle)).toEqual({ name: handle.name, size: data.length });
          expectBytes(await backend.load(handle), data);
          expect(await collect(backend.list('pack'))).toEqual([{ name: handle.name, size: data.length }]);
        });

        it('stores small and empty uploads, and replaces an object of the same name', async () => {
          const handle = handleOf('pack');
          await backend.save(handle, bytes(10_000, 31));
          const small = bytes(17, 32);
          const u = await upload(backend);
          await u.write(small);
          await u.commit(handle);
          expectBytes(await backend.load(handle), small);
          const empty = await upload(backend);
          const other = handleOf('pack');
          await empty.commit(other);
          expect(await backend.stat(other)).toEqual({ name: other.name, size: 0 });
        });

        it('leaves nothing behind after abort, and abort may be called twice', async () => {
          const u = await upload(backend);
          await u.write(bytes(3 * 1024 * 1024, 33));
          await u.abort();
          await u.abort();
          expect(await collect(backend.list('pack'))).toEqual([]);
          await expect(u.write(bytes(10, 34))).rejects.toThrow();
        });

        it('keeps concurrent uploads apart', async () => {
          const objects = Array.from({ length: 4 }, (_, i) => ({
            handle: handleOf('pack'),
            data: bytes(2 * 1024 * 1024 + 1000 * i, 40 + i),
          }));
          const uploads = await Promise.all(objects.map(() => upload(backend)));
          for (let at = 0; at < 3 * 1024 * 1024; at += 700_000) {
            await Promise.all(
              objects.map(({ data }, i) =>
                at < data.length ? uploads[i]!.write(data.subarray(at, at + 700_000)) : undefined,
              ),
            );
          }
          await Promise.all(objects.map(({ handle }, i) => uploads[i]!.commit(handle)));
          for (const { handle, data } of objects) expectBytes(await backend.load(handle), data);
        });
      });
    }

    // Only for backends whose interrupted writes leave files behind (the method is optional).
    if (opts.temporaries === true) {
      describe('sweepTemporaries', () => {
        const HOUR = 60 * 60 * 1000;
        it('deletes stale temporary files in every directory, and nothing else', async () => {
          const sweep = backend.sweepTemporaries?.bind(backend);
          const raw = fixture?.raw;
          if (!sweep || !raw)
            return expect.fail(`${name} has no sweepTemporaries, or its fixture no raw access`);
          const pack = handleOf('pack');
          await backend.save(pack, bytes(100, 50));
          const snapshot = handleOf('snapshot');
          await backend.save(snapshot, bytes(10, 51));
          const dir = pack.name.slice(0, 2);
          const stale = [
            '.tmp-00aa',
            'keys/.tmp-01bb',
            'data/.tmp-02cc',
            `data/${dir}/.tmp-03dd`,
            'locks/.tmp-04ee',
          ];
          const fresh = ['snapshots/.tmp-05ff', `data/${dir}/.tmp-0600`];
          for (const [i, p] of stale.entries()) await raw.write(p, 'x'.repeat(10 + i), 2 * HOUR);
          for (const p of fresh) await raw.write(p, 'partial', 60_000);
          // Not a temporary file of this backend: an old dot file with another prefix.
          await raw.write('snapshots/.keep', 'x', 2 * HOUR);

          expect(await sweep({ olderThanMs: HOUR, dryRun: true })).toEqual({ files: 5, bytes: 60 });
          for (const p of stale) expect(await raw.exists(p)).toBe(true);

          expect(await sweep({ olderThanMs: HOUR })).toEqual({ files: 5, bytes: 60 });
          for (const p of stale) expect(await raw.exists(p)).toBe(false);
          for (const p of [...fresh, 'snapshots/.keep']) expect(await raw.exists(p)).toBe(true);
          expectBytes(await backend.load(pack), bytes(100, 50));
          expect(await collect(backend.list('snapshot'))).toEqual([{ name: snapshot.name, size: 10 }]);
          expect(await sweep({ olderThanMs: HOUR })).toEqual({ files: 0, bytes: 0 });
        });
      });
    }

    describe('create', () => {
      it('can be called again and keeps every object', async () => {
        const saved = OBJECT_TYPES.map((type, i) => ({
          handle: handleOf(type),
          data: bytes(100 + i, 20 + i),
        }));
        for (const { handle, data } of saved) await backend.save(handle, data);
        await backend.create();
        await backend.create();
        for (const { handle, data } of saved) {
          expectBytes(await backend.load(handle), data);
          expect(await collect(backend.list(handle.type))).toEqual([
            { name: handle.name, size: data.length },
          ]);
        }
      });
    });
  });
}

/** Collects an async iterable into an array. */
export async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of items) out.push(item);
  return out;
}

/** A random 64-character lowercase hex object name. */
export function hexName(): string {
  return randomBytes(32).toString('hex');
}

function handleOf(type: ObjectType): ObjectHandle {
  return { type, name: type === 'config' ? 'config' : hexName() };
}

/** `length` deterministic pseudo-random bytes (xorshift32), different for each `seed`. */
function bytes(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  let x = (seed * 0x9e3779b1 + 0x6d2b79f5) >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** Compares bytes without making vitest diff megabytes of numbers on failure. */
function expectBytes(actual: Uint8Array, expected: Uint8Array): void {
  expect(actual.length, 'length').toBe(expected.length);
  const a = Buffer.from(actual.buffer, actual.byteOffset, actual.byteLength);
  const b = Buffer.from(expected.buffer, expected.byteOffset, expected.byteLength);
  if (!a.equals(b)) {
    let i = 0;
    while (a[i] === b[i]) i++;
    expect.fail(`bytes differ first at offset ${i} of ${expected.length}`);
  }
}

async function expectCode(promise: Promise<unknown>, code: ForgeErrorCode) {
  const resolved = Symbol('resolved');
  const error = await promise.then(
    () => resolved,
    (e: unknown) => e,
  );
  if (error === resolved) expect.fail(`expected a rejection with ${code}, but the call resolved`);
  if (!isForgeError(error)) expect.fail(`expected a ForgeError ${code}, got ${String(error)}`);
  expect(error.code).toBe(code);
  return error;
}

function sortByName(infos: ObjectInfo[]): ObjectInfo[] {
  return [...infos].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}
