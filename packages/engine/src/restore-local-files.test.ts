import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FileMetadata, RestoreFileWriter, RestoreTarget, StorageBackend } from '@backupforge/common';
import { createMemoryBackend } from '@backupforge/storage/memory';
import { afterEach, describe, expect, it } from 'vitest';
import { backup } from './backup.ts';
import { findSnapshot } from './browse.ts';
import { Repository } from './repository.ts';
import { restore } from './restore.ts';
import { type MemFile, memSource, sha, TEST_KDF, text } from './testing/memory-fixtures.ts';

// Restore targets that let the engine write small files itself, on its workers
// (RestoreTarget.localFiles), with testing/dir-writer.ts as the worker-side writer.

const roots: string[] = [];
afterEach(() => {
  for (const r of roots.splice(0)) rmSync(r, { recursive: true, force: true });
});

/** A directory target; counts what went through `writeWhole` and what each `finishDir` saw. */
function dirTarget(root: string, local: boolean) {
  const abs = (p: readonly string[]) => join(root, ...p);
  const seen = { writeWhole: 0, finished: new Map<string, number>() };
  const target: RestoreTarget = {
    async prepare() {},
    async dir(p) {
      mkdirSync(abs(p), { recursive: true });
    },
    async file(p): Promise<RestoreFileWriter> {
      const parts: Buffer[] = [];
      return {
        async write(data) {
          parts.push(Buffer.from(data));
        },
        async close() {
          writeFileSync(abs(p), Buffer.concat(parts), { flag: 'wx' });
        },
        async abort() {},
      };
    },
    async writeWhole(p, _m: FileMetadata, data) {
      seen.writeWhole++;
      writeFileSync(abs(p), data, { flag: 'wx' });
    },
    async hardlink() {},
    async symlink() {},
    async special() {},
    async finishDir(p) {
      // Everything in the directory must be written by now.
      seen.finished.set(p.join('/'), readdirSync(abs(p)).length);
    },
    async close() {},
  };
  if (local) {
    Object.assign(target, {
      localFiles: {
        prepare: async (p: readonly string[]) => abs(p),
        module: new URL('./testing/dir-writer.ts', import.meta.url).href,
        options: { tag: 'dir-writer' },
      },
    });
  }
  return { target, seen };
}

/** 12 directories of 30 small files (two nested), and one larger file. */
function smallTree(): Record<string, MemFile> {
  const files: Record<string, MemFile> = {};
  for (let d = 0; d < 12; d++) {
    const dir = d % 4 === 3 ? `/src/d${d - 1}/sub${d}` : `/src/d${d}`;
    for (let f = 0; f < 30; f++)
      files[`${dir}/f${f}.txt`] = { data: Buffer.from(`${d}:${f}:${text(50 + f * 97)}`) };
  }
  files['/src/large.log'] = { data: Buffer.from(text(3_000_000)) };
  return files;
}

async function backedUp(files: Record<string, MemFile>) {
  const backend: StorageBackend = createMemoryBackend();
  const repo = await Repository.init(backend, { password: 'pw', kdf: TEST_KDF, packSize: 4 * 1024 * 1024 });
  await backup(repo, memSource(files), { workers: 0 });
  return { backend, repo, snap: await findSnapshot(repo, 'latest') };
}

function freshRoot(): string {
  const r = mkdtempSync(join(tmpdir(), 'forge-local-files-'));
  roots.push(r);
  return r;
}

describe('restore writes small files on the workers (RestoreTarget.localFiles)', () => {
  for (const workers of [0, 2]) {
    it(`restores every file byte-identically and finishes directories after their files (workers=${workers})`, async () => {
      const files = smallTree();
      const { repo, snap } = await backedUp(files);
      const root = freshRoot();
      const { target, seen } = dirTarget(root, true);
      const r = await restore(repo, snap, target, { workers });
      expect(r.errors).toEqual([]);
      expect(r.files).toBe(Object.keys(files).length);
      for (const [p, f] of Object.entries(files)) {
        const got = readFileSync(join(root, p));
        expect(`${p} ${sha(got)}`).toBe(`${p} ${sha(f.data!)}`);
      }
      // Only the large file went the usual way; the small ones were written by the worker writer.
      expect(seen.writeWhole).toBe(0);
      expect(seen.finished.get('src/d0')).toBe(30);
      expect(seen.finished.get('src/d2')).toBe(31); // 30 files and sub3
      expect(seen.finished.get('src/d2/sub3')).toBe(30);
      expect(seen.finished.get('src')).toBe(10); // d0..d10 without the nested ones, and large.log
    });
  }

  it('without localFiles the same restore goes through writeWhole (the control for the test above)', async () => {
    const files = smallTree();
    const { repo, snap } = await backedUp(files);
    const { target, seen } = dirTarget(freshRoot(), false);
    const r = await restore(repo, snap, target, { workers: 2 });
    expect(r.errors).toEqual([]);
    expect(seen.writeWhole).toBe(360);
  });

  it('a file that cannot be created fails alone; the rest of its batch is restored', async () => {
    const files = smallTree();
    const { repo, snap } = await backedUp(files);
    const root = freshRoot();
    mkdirSync(join(root, 'src/d1'), { recursive: true });
    writeFileSync(join(root, 'src/d1/f7.txt'), 'in the way');
    const { target } = dirTarget(root, true);
    const r = await restore(repo, snap, target, { workers: 2 });
    expect(r.errors.map((e) => [e.path, e.code])).toEqual([['/src/d1/f7.txt', 'FORGE_ALREADY_EXISTS']]);
    expect(readFileSync(join(root, 'src/d1/f7.txt'), 'utf8')).toBe('in the way');
    expect(readFileSync(join(root, 'src/d1/f8.txt'))).toEqual(Buffer.from(files['/src/d1/f8.txt']!.data!));
    expect(r.files).toBe(Object.keys(files).length - 1);
  });

  it('a damaged blob in a batch fails only its file (FORGE_INTEGRITY); the others are restored one by one', async () => {
    const files = smallTree();
    const { backend, repo, snap } = await backedUp(files);
    await repo.loadIndex();
    // Damage the blob of one small file inside its pack.
    const victim = '/src/d5/f11.txt';
    const data = files[victim]!.data!;
    const { blobId } = await import('./crypto/master-key.ts');
    const loc = repo.index.lookup(blobId(repo.keys.macKey, data).toString('hex'))!;
    const pack = Buffer.from(await backend.load({ type: 'pack', name: loc.packId }));
    pack[loc.offset + 20]! ^= 0x01;
    await backend.save({ type: 'pack', name: loc.packId }, pack);
    const reopened = await Repository.open(backend, { password: 'pw' });
    const root = freshRoot();
    const { target } = dirTarget(root, true);
    const r = await restore(reopened, snap, target, { workers: 2 });
    expect(r.errors.map((e) => [e.path, e.code])).toEqual([[victim, 'FORGE_INTEGRITY']]);
    expect(existsSync(join(root, victim))).toBe(false);
    for (const p of ['/src/d5/f10.txt', '/src/d5/f12.txt', '/src/d6/f0.txt'])
      expect(readFileSync(join(root, p))).toEqual(Buffer.from(files[p]!.data!));
  });
});
