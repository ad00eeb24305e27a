import {
  ForgeError,
  isForgeError,
  type ObjectHandle,
  type Snapshot,
  type SnapshotId,
  type SnapshotRecord,
  type StorageBackend,
  toForgeError,
} from '@backupforge/common';
import { validateChunkerParams } from './chunker/index.ts';
import { type CompressionSettings, validateCompression } from './compression.ts';
import {
  type CreateKeyFileOptions,
  createKeyFile,
  type KeyFile,
  openKeyFile,
  parseKeyFile,
} from './crypto/key-file.ts';
import { generateMasterKey, type MasterKey, splitMasterKey } from './crypto/master-key.ts';
import { type BlobLocation, type BlobType, openBlob } from './format/blob-codec.ts';
import {
  type ChunkerConfig,
  checkConfigHeader,
  decodeConfig,
  encodeConfig,
  newConfig,
  type RepositoryConfig,
} from './format/config.ts';
import { decodeObject, encodeObject, sha256Hex } from './format/envelope.ts';
import type { PackEntry } from './format/pack.ts';
import { decodeTree, type Tree } from './format/tree.ts';
import { CompactIndex } from './internal/compact-index.ts';
import { mapLimit } from './internal/concurrency.ts';
import { type IndexFile, type IndexPack, validateIndexFile } from './master-index.ts';
import { validateSnapshot } from './snapshot-filter.ts';

export interface InitOptions {
  readonly password: string;
  /**
   * Chunker parameters (defaults: `DEFAULT_CHUNKER` and a random seed). Giving another
   * repository's full chunker config, seed included (`forge init --copy-chunker-params-from`),
   * makes both cut identical chunks, so `copySnapshots` maps blobs 1:1 instead of re-chunking.
   */
  readonly chunker?: Partial<ChunkerConfig>;
  readonly compression?: CompressionSettings;
  readonly packSize?: number;
  readonly kdf?: CreateKeyFileOptions['kdf'];
}

export interface OpenOptions {
  readonly password: string;
}

const CONFIG: ObjectHandle = { type: 'config', name: 'config' };
const TREE_CACHE_MAX = 2048;

/**
 * An open repository: config, master key and the in-memory index. Everything above the
 * storage format (backup, restore, ls, diff) works through this class.
 *
 * ```ts
 * const repo = await Repository.open(await openBackend('/srv/backup'), { password });
 * for (const s of await repo.listSnapshots()) console.log(s.id, s.time);
 * ```
 */
export class Repository {
  readonly backend: StorageBackend;
  readonly config: RepositoryConfig;
  /** Blob id → location: about 55 bytes per blob (docs/benchmarks.md). */
  readonly index = new CompactIndex();
  /** Id of the key file that opened the repository. */
  readonly keyId: string;
  readonly #keys: MasterKey;
  readonly #treeCache = new Map<string, Tree>();
  readonly #treeLoads = new Map<string, Promise<Tree>>();
  static readonly PACK_SIZE_LIMITS = [1024 * 1024, 1024 * 1024 * 1024] as const;
  #indexLoaded = false;

  private constructor(backend: StorageBackend, config: RepositoryConfig, keys: MasterKey, keyId: string) {
    this.backend = backend;
    this.config = config;
    this.#keys = keys;
    this.keyId = keyId;
  }

  /** The encryption and MAC keys. Handle with care: anyone holding them reads everything. */
  get keys(): MasterKey {
    return this.#keys;
  }

  /** Creates a new repository. Fails with FORGE_REPO_EXISTS when one is there already. */
  static async init(backend: StorageBackend, opts: InitOptions): Promise<Repository> {
    if (await exists(backend, CONFIG)) {
      throw new ForgeError('FORGE_REPO_EXISTS', `a repository already exists at ${backend.location}`, {
        hint: 'use it as it is, or choose another location',
      });
    }
    if (opts.compression) validateCompression(opts.compression);
    const base = newConfig(opts);
    const seed = opts.chunker?.seed;
    const config = seed === undefined ? base : { ...base, chunker: { ...base.chunker, seed } };
    validateChunkerParams(config.chunker);
    const [minPack, maxPack] = Repository.PACK_SIZE_LIMITS;
    if (!Number.isSafeInteger(config.packSize) || config.packSize < minPack || config.packSize > maxPack) {
      throw new ForgeError('FORGE_USAGE', `pack size ${config.packSize} is out of range`, {
        hint: 'use a pack size from 1 MiB to 1 GiB',
      });
    }
    await backend.create();
    const raw = generateMasterKey();
    const keys = splitMasterKey(raw);
    const keyBytes = await createKeyFile(raw, opts.password, { kdf: opts.kdf });
    const keyId = sha256Hex(keyBytes);
    // Key first: a config without a key would be a repository nobody can open.
    await backend.save({ type: 'key', name: keyId }, keyBytes);
    await backend.save(CONFIG, encodeConfig(keys.encKey, config));
    const repo = new Repository(backend, config, keys, keyId);
    repo.#indexLoaded = true;
    return repo;
  }

  /**
   * Checks, without a password, that `backend` holds a repository this version can read:
   * FORGE_REPO_NOT_FOUND, FORGE_REPO_INVALID or FORGE_REPO_VERSION otherwise. Lets a CLI
   * report these before asking for a password. Returns the raw config.
   */
  static async probe(backend: StorageBackend): Promise<Uint8Array> {
    let cfg: Uint8Array;
    try {
      cfg = await backend.load(CONFIG);
    } catch (e) {
      if (isForgeError(e, 'FORGE_NOT_FOUND')) {
        throw new ForgeError('FORGE_REPO_NOT_FOUND', `there is no repository at ${backend.location}`, {
          hint: `check the path, or create one with 'forge init -r ${backend.location}'`,
        });
      }
      throw e;
    }
    checkConfigHeader(cfg, backend.location);
    return cfg;
  }

  /**
   * Opens a repository: checks the config's format version (before the password), then tries
   * each key file. Does not load the index yet (see {@link loadIndex}).
   */
  static async open(backend: StorageBackend, opts: OpenOptions): Promise<Repository> {
    const cfg = await Repository.probe(backend);
    const keyFiles: { id: string; kf: KeyFile }[] = [];
    let lastInvalid: ForgeError | undefined;
    for await (const info of backend.list('key')) {
      try {
        const bytes = await backend.load({ type: 'key', name: info.name });
        if (sha256Hex(bytes) !== info.name) {
          throw new ForgeError(
            'FORGE_KEY_INVALID',
            `key file ${info.name.slice(0, 12)} does not match its name (damaged)`,
            {
              hint: 'use another key, or restore keys/ from a copy',
            },
          );
        }
        keyFiles.push({ id: info.name, kf: parseKeyFile(bytes) });
      } catch (e) {
        // One bad key file (damaged or planted) must not lock out the others.
        if (isForgeError(e, 'FORGE_KEY_INVALID')) lastInvalid = e;
        else if (!(e instanceof ForgeError))
          lastInvalid = new ForgeError(
            'FORGE_KEY_INVALID',
            `key file ${info.name.slice(0, 12)} is malformed`,
            { cause: e },
          );
        else throw e;
      }
    }
    if (keyFiles.length === 0) {
      throw (
        lastInvalid ??
        new ForgeError('FORGE_REPO_INVALID', `the repository at ${backend.location} has no key files`, {
          hint: 'restore keys/ from a copy',
        })
      );
    }
    for (const { id, kf } of keyFiles) {
      const raw = await openKeyFile(kf, opts.password);
      if (!raw) continue;
      const keys = splitMasterKey(raw);
      const config = decodeConfig(keys.encKey, cfg, backend.location);
      return new Repository(backend, config, keys, id);
    }
    throw new ForgeError('FORGE_WRONG_PASSWORD', 'wrong password: no key of this repository opens with it', {
      hint: 'check FORGE_PASSWORD, --password-file or --password-command',
    });
  }

  /** Loads every index file into memory. Idempotent. */
  async loadIndex(): Promise<void> {
    if (this.#indexLoaded) return;
    const names: string[] = [];
    for await (const info of this.backend.list('index')) names.push(info.name);
    await mapLimit(names, 8, async (name) => {
      const file = await this.loadIndexFile(name);
      this.index.addIndexFile(file);
    });
    this.#indexLoaded = true;
  }

  /** Uses already-read index files as the repository's index (for `check`, which reads them one by one). */
  adoptIndexFiles(files: readonly IndexFile[]): void {
    for (const f of files) this.index.addIndexFile(f);
    this.#indexLoaded = true;
  }

  async loadIndexFile(name: string): Promise<IndexFile> {
    const bytes = await this.backend.load({ type: 'index', name });
    return validateIndexFile(decodeObject(this.#keys.encKey, 'index', bytes, name), name);
  }

  /** Writes one index file listing `packs`; returns its id. */
  async saveIndex(packs: readonly { id: string; entries: readonly PackEntry[] }[]): Promise<string> {
    const bytes = this.#encodeIndex(packs);
    const name = sha256Hex(bytes);
    await this.backend.save({ type: 'index', name }, bytes);
    return name;
  }

  #encodeIndex(packs: readonly { id: string; entries: readonly PackEntry[] }[]): Buffer {
    const file: IndexFile = {
      packs: packs.map(
        (p): IndexPack => ({
          id: p.id,
          blobs: p.entries.map((e) => ({
            id: e.id,
            type: e.type,
            offset: e.offset,
            length: e.length,
            rawLength: e.rawLength,
            compression: e.compression,
          })),
        }),
      ),
    };
    return encodeObject(this.#keys.encKey, 'index', file);
  }

  /**
   * Reads, decrypts and verifies one blob. When a blob is stored more than once, a damaged or
   * missing copy makes it try the next one.
   */
  async loadBlob(type: BlobType, id: string): Promise<Uint8Array> {
    await this.loadIndex();
    const locs = this.index.lookupAll(id).filter((l) => l.type === type);
    if (locs.length === 0) {
      throw new ForgeError('FORGE_NOT_FOUND', `${type} blob ${id.slice(0, 12)} is not in the index`, {
        hint: "the repository is damaged or an index file is missing; run 'forge check' (and 'forge repair index')",
      });
    }
    let firstError: unknown;
    for (const loc of locs) {
      try {
        return await this.#loadBlobAt(id, loc);
      } catch (e) {
        firstError ??= e;
      }
    }
    throw firstError;
  }

  async #loadBlobAt(id: string, loc: BlobLocation): Promise<Uint8Array> {
    let sealed: Uint8Array;
    try {
      sealed = await this.backend.load(
        { type: 'pack', name: loc.packId },
        { offset: loc.offset, length: loc.length },
      );
    } catch (e) {
      if (isForgeError(e, 'FORGE_RANGE')) {
        throw new ForgeError(
          'FORGE_PACK_TRUNCATED',
          `pack ${loc.packId.slice(0, 12)} is shorter than the index says`,
          {
            cause: e,
            hint: "the pack is damaged; run 'forge check --read-data'",
          },
        );
      }
      if (isForgeError(e, 'FORGE_NOT_FOUND')) {
        throw new ForgeError('FORGE_NOT_FOUND', `pack ${loc.packId.slice(0, 12)} is missing`, {
          cause: e,
          hint: "run 'forge check'",
        });
      }
      throw e;
    }
    return openBlob(this.#keys, Buffer.from(id, 'hex'), loc, sealed);
  }

  async loadTree(id: string): Promise<Tree> {
    const cached = this.#treeCache.get(id);
    if (cached) return cached;
    // One load per tree, also when it is asked for again while loading (prefetches).
    let loading = this.#treeLoads.get(id);
    if (!loading) {
      loading = this.loadBlob('tree', id).then((bytes) => decodeTree(bytes, id));
      this.#treeLoads.set(id, loading);
    }
    try {
      const tree = await loading;
      if (!this.#treeCache.has(id)) {
        if (this.#treeCache.size >= TREE_CACHE_MAX) {
          const first = this.#treeCache.keys().next();
          if (!first.done) this.#treeCache.delete(first.value);
        }
        this.#treeCache.set(id, tree);
      }
      return tree;
    } finally {
      this.#treeLoads.delete(id);
    }
  }

  /** Starts loading trees that will be asked for soon (errors show when they are). */
  prefetchTrees(ids: Iterable<string>): void {
    for (const id of ids) {
      if (this.#treeCache.has(id) || this.#treeLoads.has(id)) continue;
      this.loadTree(id).catch(() => {});
    }
  }

  async saveSnapshot(s: Snapshot): Promise<SnapshotId> {
    const bytes = encodeObject(this.#keys.encKey, 'snapshot', s);
    const name = sha256Hex(bytes);
    await this.backend.save({ type: 'snapshot', name }, bytes);
    return name as SnapshotId;
  }

  async loadSnapshot(id: string): Promise<SnapshotRecord> {
    const bytes = await this.backend.load({ type: 'snapshot', name: id });
    const s = validateSnapshot(decodeObject(this.#keys.encKey, 'snapshot', bytes, id), id);
    return { ...s, id: id as SnapshotId };
  }

  /** All snapshots, oldest first. */
  /**
   * All readable snapshots, oldest first. A damaged snapshot does not hide the others: it is
   * left out and recorded in {@link unreadableSnapshots} (commands warn about it; `check`
   * reports it as an error).
   */
  async listSnapshots(): Promise<SnapshotRecord[]> {
    const names: string[] = [];
    for await (const info of this.backend.list('snapshot')) names.push(info.name);
    const unreadable: { id: string; error: ForgeError }[] = [];
    const all = await mapLimit(names, 8, async (n) => {
      try {
        return await this.loadSnapshot(n);
      } catch (e) {
        if (isForgeError(e, 'FORGE_NOT_FOUND')) return undefined; // removed meanwhile (forget)
        const fe = toForgeError(e);
        if (fe.code !== 'FORGE_INTEGRITY' && fe.code !== 'FORGE_FORMAT') throw fe;
        unreadable.push({ id: n, error: fe });
        return undefined;
      }
    });
    this.unreadableSnapshots = unreadable;
    return all
      .filter((s): s is SnapshotRecord => s !== undefined)
      .sort((a, b) => (a.time < b.time ? -1 : a.time > b.time ? 1 : a.id < b.id ? -1 : 1));
  }

  /** Snapshots the last {@link listSnapshots} could not read (damaged on storage). */
  unreadableSnapshots: readonly { readonly id: string; readonly error: ForgeError }[] = [];

  async removeSnapshot(id: string): Promise<void> {
    await this.backend.remove({ type: 'snapshot', name: id });
  }

  /** Adds a key file for another password; returns its id. */
  async addKey(password: string, opts: CreateKeyFileOptions = {}): Promise<string> {
    const bytes = await createKeyFile(Buffer.concat([this.#keys.encKey, this.#keys.macKey]), password, opts);
    const id = sha256Hex(bytes);
    await this.backend.save({ type: 'key', name: id }, bytes);
    return id;
  }

  async listKeys(): Promise<
    { id: string; created: string; hostname: string; username: string; current: boolean }[]
  > {
    const out = [];
    for await (const info of this.backend.list('key')) {
      const kf = parseKeyFile(await this.backend.load({ type: 'key', name: info.name }));
      out.push({
        id: info.name,
        created: kf.created,
        hostname: kf.hostname,
        username: kf.username,
        current: info.name === this.keyId,
      });
    }
    return out;
  }

  /**
   * Removes a key file (by id or unique prefix). Refuses the last key, and the key this
   * session was opened with unless `force`: losing every key loses the repository.
   */
  async removeKey(ref: string, opts: { force?: boolean } = {}): Promise<string> {
    const keys = await this.listKeys();
    const hits = keys.filter((k) => k.id.startsWith(ref));
    if (hits.length !== 1) {
      throw new ForgeError(
        hits.length === 0 ? 'FORGE_NOT_FOUND' : 'FORGE_USAGE',
        `${hits.length === 0 ? 'no' : 'more than one'} key matches ${ref}`,
        {
          hint: "list keys with 'forge key list'",
        },
      );
    }
    const key = hits[0]!;
    if (keys.length === 1) {
      throw new ForgeError(
        'FORGE_USAGE',
        'refusing to remove the only key: the repository could never be opened again',
        {
          hint: "add another key first with 'forge key add'",
        },
      );
    }
    if (key.current && !opts.force) {
      throw new ForgeError('FORGE_USAGE', 'refusing to remove the key this command was opened with', {
        hint: 'open with another key, or pass --force if you really mean it',
      });
    }
    await this.backend.remove({ type: 'key', name: key.id });
    return key.id;
  }

  /** Replaces the key this session was opened with by one for `password`; returns the new key id. */
  async changePassword(password: string, opts: CreateKeyFileOptions = {}): Promise<string> {
    const id = await this.addKey(password, opts);
    // The new key is durable before the old one goes.
    await this.backend.remove({ type: 'key', name: this.keyId });
    return id;
  }

  async close(): Promise<void> {
    await this.backend.close();
  }
}

async function exists(backend: StorageBackend, h: ObjectHandle): Promise<boolean> {
  try {
    await backend.stat(h);
    return true;
  } catch (e) {
    if (isForgeError(e, 'FORGE_NOT_FOUND')) return false;
    throw e;
  }
}
