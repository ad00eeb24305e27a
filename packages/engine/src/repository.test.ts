import { createHash } from 'node:crypto';
import type { StorageBackend } from '@backupforge/common';
import { createMemoryBackend } from '@backupforge/storage/memory';
import { describe, expect, it } from 'vitest';
import { backup } from './backup.ts';
import { findSnapshot } from './browse.ts';
import { Repository } from './repository.ts';
import { memSource, TEST_KDF, text } from './testing/memory-fixtures.ts';

async function fresh(): Promise<{ backend: StorageBackend; repo: Repository }> {
  const backend = createMemoryBackend();
  const repo = await Repository.init(backend, { password: 'pw', kdf: TEST_KDF });
  return { backend, repo };
}

async function keyIds(backend: StorageBackend): Promise<string[]> {
  const out: string[] = [];
  for await (const k of backend.list('key')) out.push(k.name);
  return out;
}

describe('Repository', () => {
  it('init then open with the right password', async () => {
    const { backend, repo } = await fresh();
    const again = await Repository.open(backend, { password: 'pw' });
    expect(again.config.id).toBe(repo.config.id);
    expect(again.config.chunker).toEqual(repo.config.chunker);
    expect(again.config.idAlgorithm).toBe('hmac-sha256');
  });

  it('refuses to init over an existing repository', async () => {
    const { backend } = await fresh();
    await expect(Repository.init(backend, { password: 'x', kdf: TEST_KDF })).rejects.toMatchObject({
      code: 'FORGE_REPO_EXISTS',
    });
  });

  it('wrong password is FORGE_WRONG_PASSWORD', async () => {
    const { backend } = await fresh();
    await expect(Repository.open(backend, { password: 'nope' })).rejects.toMatchObject({
      code: 'FORGE_WRONG_PASSWORD',
    });
  });

  it('a missing repository is FORGE_REPO_NOT_FOUND', async () => {
    await expect(Repository.open(createMemoryBackend(), { password: 'pw' })).rejects.toMatchObject({
      code: 'FORGE_REPO_NOT_FOUND',
    });
  });

  it('an unknown format version is refused before the password is tried', async () => {
    const { backend } = await fresh();
    const cfg = Buffer.from(await backend.load({ type: 'config', name: 'config' }));
    cfg.writeUInt32LE(7, 8);
    await backend.save({ type: 'config', name: 'config' }, cfg);
    await expect(Repository.open(backend, { password: 'wrong-too' })).rejects.toMatchObject({
      code: 'FORGE_REPO_VERSION',
    });
  });

  it('a config that is not ours is FORGE_REPO_INVALID', async () => {
    const { backend } = await fresh();
    await backend.save({ type: 'config', name: 'config' }, Buffer.from('{"version":2}'));
    await expect(Repository.open(backend, { password: 'pw' })).rejects.toMatchObject({
      code: 'FORGE_REPO_INVALID',
    });
  });

  it('rejects absurd KDF parameters before running the KDF', async () => {
    const { backend } = await fresh();
    const [id] = await keyIds(backend);
    const kf = JSON.parse(Buffer.from(await backend.load({ type: 'key', name: id! })).toString());
    kf.kdf.memoryKiB = 64 * 1024 * 1024; // 64 GiB
    await backend.remove({ type: 'key', name: id! });
    const bytes = Buffer.from(JSON.stringify(kf));
    await backend.save({ type: 'key', name: createHash('sha256').update(bytes).digest('hex') }, bytes);
    const t = Date.now();
    await expect(Repository.open(backend, { password: 'pw' })).rejects.toMatchObject({
      code: 'FORGE_KEY_INVALID',
    });
    expect(Date.now() - t).toBeLessThan(5000); // not a timing target: it would take minutes and 64 GiB if run
  });

  it('a key file with a flipped byte does not open', async () => {
    const { backend } = await fresh();
    const [id] = await keyIds(backend);
    const bytes = Buffer.from(await backend.load({ type: 'key', name: id! }));
    const kf = JSON.parse(bytes.toString());
    const mk = Buffer.from(kf.masterKey, 'base64');
    mk[20]! ^= 0x01;
    kf.masterKey = mk.toString('base64');
    await backend.save({ type: 'key', name: id! }, Buffer.from(JSON.stringify(kf)));
    await expect(Repository.open(backend, { password: 'pw' })).rejects.toMatchObject({
      code: 'FORGE_KEY_INVALID',
    });
  });

  it('several key files open the same repository', async () => {
    const { backend, repo } = await fresh();
    await repo.addKey('second', { kdf: TEST_KDF });
    const a = await Repository.open(backend, { password: 'pw' });
    const b = await Repository.open(backend, { password: 'second' });
    expect(a.keys.encKey.equals(b.keys.encKey)).toBe(true);
    expect(a.keyId).not.toBe(b.keyId);
    expect((await a.listKeys()).length).toBe(2);
  });

  it('key files are named by their SHA-256', async () => {
    const { backend } = await fresh();
    for (const id of await keyIds(backend)) {
      const bytes = await backend.load({ type: 'key', name: id });
      expect(createHash('sha256').update(bytes).digest('hex')).toBe(id);
    }
  });
});

describe('Repository.loadTree and prefetchTrees', () => {
  async function withTrees() {
    const backend = createMemoryBackend();
    const repo = await Repository.init(backend, { password: 'pw', kdf: TEST_KDF });
    await backup(repo, memSource({ '/a/b/f': { data: text(100) }, '/a/c/g': { data: text(200) } }), {
      workers: 0,
    });
    let packLoads = 0;
    const load = backend.load.bind(backend);
    backend.load = (h, r) => {
      if (h.type === 'pack') packLoads++;
      return load(h, r);
    };
    const reopened = await Repository.open(backend, { password: 'pw' });
    await reopened.loadIndex();
    const snap = await findSnapshot(reopened, 'latest');
    return { repo: reopened, backend, root: snap.tree, loads: () => packLoads };
  }

  it('loads a tree once when it is asked for again while loading', async () => {
    const { repo, root, loads } = await withTrees();
    repo.prefetchTrees([root]);
    const [t1, t2] = await Promise.all([repo.loadTree(root), repo.loadTree(root)]);
    expect(t1).toBe(t2);
    expect(loads()).toBe(1);
    await repo.loadTree(root);
    expect(loads()).toBe(1);
    const sub = t1.nodes.find((n) => n.name === 'a')!.subtree!;
    repo.prefetchTrees([sub, sub]);
    await repo.loadTree(sub);
    expect(loads()).toBe(2);
  });

  it('a prefetch that fails throws nothing; the load that needs the tree reports the error', async () => {
    const { repo, backend, root } = await withTrees();
    for await (const p of backend.list('pack')) await backend.remove({ type: 'pack', name: p.name });
    repo.prefetchTrees([root]);
    await new Promise((r) => setTimeout(r, 10));
    await expect(repo.loadTree(root)).rejects.toMatchObject({ code: expect.stringMatching(/^FORGE_/) });
  });
});
