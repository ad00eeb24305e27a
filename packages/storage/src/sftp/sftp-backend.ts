import { randomBytes } from 'node:crypto';
import { homedir, userInfo } from 'node:os';
import { isAbsolute, join, posix } from 'node:path';
import type {
  BackendProperties,
  ByteRange,
  ObjectHandle,
  ObjectInfo,
  ObjectType,
  StorageBackend,
  TemporarySweep,
} from '@backupforge/common';
import { ForgeError, ForgeErrorCodes, OBJECT_DIRS, objectKey } from '@backupforge/common';
import type { FileEntryWithStats, Stats } from 'ssh2';
import { checkHandle, checkRange, checkType } from '../internal/check-handle.ts';
import { knownHostsName, parseKnownHosts } from './known-hosts.ts';
import { formatSftpLocation } from './location.ts';
import type { SftpSession } from './session.ts';
import {
  loadCredentials,
  loadKnownHosts,
  loadSsh2,
  OPEN_CREATE_EXCLUSIVE,
  OPEN_READ,
  openSession,
  SFTP_STATUS,
  sftpError,
} from './session.ts';

/** Options of {@link createSftpBackend}. Secrets never go here: keys come from files or the agent. */
export interface SftpBackendOptions {
  readonly host: string;
  /** Default 22. */
  readonly port?: number;
  /** Login name; default the local user (`USER` from `env`). */
  readonly user?: string;
  /** The repository directory: absolute, or relative to the login directory. */
  readonly path: string;
  /** Private key file to log in with instead of ~/.ssh/id_ed25519, id_ecdsa, id_rsa. `~/` is expanded. */
  readonly identity?: string;
  /** The known_hosts file. Default ~/.ssh/known_hosts (plus /etc/ssh/ssh_known_hosts). `~/` is expanded. */
  readonly knownHosts?: string;
  /** Parallel SFTP requests for large reads and writes, and `properties().connections`. Default 8. */
  readonly connections?: number;
  /** Connect timeout, and how long a request may go unanswered before the connection is dropped. Default 30 s. */
  readonly timeoutMs?: number;
  /** Accept any host key, reporting it through `onWarning`. */
  readonly insecureHostKey?: boolean;
  /** Things the user should see: an unchecked host key, a server without fsync or atomic rename. */
  readonly onWarning?: (message: string) => void;
  /** Where HOME, USER, SSH_AUTH_SOCK and FORGE_SFTP_KEY_PASSPHRASE are read. Default `process.env`. */
  readonly env?: NodeJS.ProcessEnv;
}

const DEFAULT_CONNECTIONS = 8;
const DEFAULT_TIMEOUT_MS = 30_000;
/** Bytes per SFTP read/write request: 32 KiB, which every server accepts. */
const CHUNK = 32 * 1024;
const FILE_MODE = 0o600;
const DIR_MODE = 0o700;
const TEMP_PREFIX = '.tmp-';
const TYPE_DIRS = OBJECT_DIRS;
const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;
const S_IFLNK = 0o120000;

/**
 * A repository on an SFTP server, over one SSH connection (opened on the first call and reopened
 * on the call after a drop). The layout is the local backend's: `config`, `keys/`, `data/xx/`,
 * `index/`, `snapshots/`, `locks/`.
 *
 * `save` writes `.tmp-<random>` next to the object (large objects with `connections` parallel
 * writes), fsyncs it with `fsync@openssh.com`, and renames it over the object with
 * `posix-rename@openssh.com`, so readers see the old object or the new one, never a partial one.
 *
 * ```ts
 * const backend = createSftpBackend({ host: 'nas.local', user: 'backup', path: '/volume1/backup' });
 * await backend.create();
 * ```
 */
export function createSftpBackend(options: SftpBackendOptions): StorageBackend {
  return new SftpBackend(options);
}

class SftpBackend implements StorageBackend {
  readonly location: string;
  readonly #options: SftpBackendOptions;
  readonly #env: NodeJS.ProcessEnv;
  readonly #host: string;
  readonly #port: number;
  readonly #user: string;
  readonly #root: string;
  readonly #connections: number;
  readonly #timeoutMs: number;
  readonly #properties: BackendProperties;
  #session: SftpSession | undefined;
  #connecting: Promise<SftpSession> | undefined;
  #closed = false;
  readonly #warned = new Set<string>();

  constructor(options: SftpBackendOptions) {
    const usage = (m: string) => new ForgeError(ForgeErrorCodes.FORGE_USAGE, `SFTP backend: ${m}`);
    if (typeof options.host !== 'string' || options.host === '') throw usage('needs a host');
    if (typeof options.path !== 'string' || options.path === '') throw usage('needs a repository path');
    const port = options.port ?? 22;
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw usage(`invalid port ${port}`);
    const connections = options.connections ?? DEFAULT_CONNECTIONS;
    if (!Number.isInteger(connections) || connections < 1) throw usage(`invalid connections ${connections}`);
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    if (!(timeoutMs > 0)) throw usage(`invalid timeout ${timeoutMs}`);
    this.#options = options;
    this.#env = options.env ?? process.env;
    this.#host = options.host;
    this.#port = port;
    this.#user = options.user || defaultUser(this.#env);
    const path = posix.normalize(options.path);
    this.#root = path.length > 1 && path.endsWith('/') ? path.slice(0, -1) : path;
    this.#connections = connections;
    this.#timeoutMs = timeoutMs;
    this.#properties = Object.freeze({ atomicReplace: true, connections });
    this.location = formatSftpLocation({ user: this.#user, host: this.#host, port, path: this.#root });
  }

  properties(): BackendProperties {
    return this.#properties;
  }

  async create(): Promise<void> {
    const s = await this.#sftp();
    await this.#mkdirs(s, this.#root);
    for (const dir of Object.values(TYPE_DIRS)) {
      const path = posix.join(this.#root, dir);
      const st = await this.#statOrUndefined(s, path, 'create');
      if (st === undefined) await this.#mkdirTolerant(s, path);
      else if (!st.isDirectory()) throw notADirectory(path, s.where);
    }
  }

  async save(handle: ObjectHandle, data: Uint8Array): Promise<void> {
    checkHandle(handle);
    const file = this.#file(handle);
    const dir = posix.dirname(file);
    const temp = posix.join(dir, `${TEMP_PREFIX}${randomBytes(8).toString('hex')}`);
    const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    const s = await this.#sftp();
    let fh: Buffer | undefined;
    let step: 'create' | 'write' | 'fsync' | 'close' | 'rename' = 'create';
    try {
      try {
        fh = await s.open(temp, OPEN_CREATE_EXCLUSIVE, FILE_MODE);
      } catch (e) {
        if (code(e) !== SFTP_STATUS.NO_SUCH_FILE) throw e;
        // data/<xx>/ is created on demand; type directories too if create() was skipped.
        await this.#makeDir(s, dir);
        fh = await s.open(temp, OPEN_CREATE_EXCLUSIVE, FILE_MODE);
      }
      step = 'write';
      const h = fh;
      await this.#parallel(0, buf.length, (offset, length) => s.write(h, buf, offset, length, offset));
      step = 'fsync';
      if (!(await s.fsync(h))) {
        this.#warnOnce(
          'fsync',
          `${s.where} does not support fsync@openssh.com: saved objects are durable only once the server's ` +
            'filesystem flushes them',
        );
      }
      step = 'close';
      fh = undefined;
      await s.close(h);
      step = 'rename';
      if (!(await s.posixRename(temp, file))) await this.#plainRename(s, temp, file);
    } catch (e) {
      let error = sftpError(e, `save (${step})`, file, s.where);
      if (
        s.alive &&
        code(e) === SFTP_STATUS.FAILURE &&
        (step === 'write' || step === 'fsync' || step === 'close')
      ) {
        error = (await this.#noSpace(s, dir, buf.length, file, e)) ?? error;
      }
      if (s.alive) {
        if (fh) await s.close(fh).catch(() => {});
        await s.unlink(temp).catch(() => {});
      }
      throw error;
    }
  }

  async load(handle: ObjectHandle, range?: ByteRange): Promise<Uint8Array> {
    checkHandle(handle);
    const file = this.#file(handle);
    if (range) checkRange(range, Number.MAX_SAFE_INTEGER, file); // validates the numbers only
    const s = await this.#sftp();
    let fh: Buffer | undefined;
    try {
      fh = await s.open(file, OPEN_READ);
      const h = fh;
      if (range === undefined) {
        // Ask for the size and the first chunk at once: a small object then takes one round trip.
        const first = Buffer.allocUnsafe(CHUNK);
        const [st, n] = await Promise.all([s.fstat(h), s.read(h, first, 0, CHUNK, 0)]);
        assertFile(st, file, s.where);
        if (n > st.size) throw changedWhileReading(file, s.where);
        const out = new Uint8Array(st.size);
        out.set(first.subarray(0, n));
        const rest = await this.#readInto(s, h, out, n, st.size - n, n);
        if (rest < st.size - n) throw changedWhileReading(file, s.where);
        return out;
      }
      if (range.length === 0) {
        const st = await s.fstat(h);
        assertFile(st, file, s.where);
        checkRange(range, st.size, file);
        return new Uint8Array(0);
      }
      // Read straight away; only a short read needs the size (to report FORGE_RANGE).
      const out = new Uint8Array(range.length);
      const got = await this.#readInto(s, h, out, 0, range.length, range.offset);
      if (got < range.length) {
        const st = await s.fstat(h);
        assertFile(st, file, s.where);
        checkRange(range, st.size, file);
        throw changedWhileReading(file, s.where);
      }
      return out;
    } catch (e) {
      throw sftpError(e, 'read', file, s.where);
    } finally {
      // Not awaited: nobody needs to wait for a read-only handle to close.
      if (fh) s.close(fh).catch(() => {});
    }
  }

  async stat(handle: ObjectHandle): Promise<ObjectInfo> {
    checkHandle(handle);
    const file = this.#file(handle);
    const s = await this.#sftp();
    try {
      const st = await s.stat(file);
      assertFile(st, file, s.where);
      return { name: handle.type === 'config' ? 'config' : handle.name, size: st.size };
    } catch (e) {
      throw sftpError(e, 'stat', file, s.where);
    }
  }

  async *list(type: ObjectType): AsyncIterable<ObjectInfo> {
    checkType(type);
    const s = await this.#sftp();
    if (type === 'config') {
      const st = await this.#statOrUndefined(s, posix.join(this.#root, 'config'), 'stat');
      if (st?.isFile()) yield { name: 'config', size: st.size };
      return;
    }
    const typeDir = posix.join(this.#root, TYPE_DIRS[type]);
    if (type !== 'pack') {
      yield* await this.#filesOf(typeDir, await this.#readdirIfExists(typeDir));
      return;
    }
    const subdirs = (await this.#readdirIfExists(typeDir))
      .filter((e) => !e.filename.startsWith('.') && modeType(e.attrs.mode) === S_IFDIR)
      .map((e) => posix.join(typeDir, e.filename));
    for await (const [dir, entries] of this.#readdirsAhead(subdirs)) yield* await this.#filesOf(dir, entries);
  }

  /**
   * Each of `dirs` with its entries, in order, reading up to `connections` directories ahead:
   * over a WAN, 256 sequential readdirs add up.
   */
  async *#readdirsAhead(dirs: readonly string[]): AsyncIterable<[string, FileEntryWithStats[]]> {
    const pending: Promise<FileEntryWithStats[]>[] = [];
    let started = 0;
    const startNext = () => {
      if (started < dirs.length) {
        const p = this.#readdirIfExists(dirs[started++]!);
        p.catch(() => {}); // handled when its turn comes; never an unhandled rejection
        pending.push(p);
      }
    };
    for (let i = 0; i < this.#connections; i++) startNext();
    for (let i = 0; i < dirs.length; i++) {
      const entries = await pending[i]!;
      startNext();
      yield [dirs[i]!, entries];
    }
  }

  async remove(handle: ObjectHandle): Promise<void> {
    checkHandle(handle);
    const file = this.#file(handle);
    const s = await this.#sftp();
    try {
      await s.unlink(file);
    } catch (e) {
      if (code(e) === SFTP_STATUS.NO_SUCH_FILE) return;
      throw sftpError(e, 'remove', file, s.where);
    }
  }

  /**
   * Deletes `.tmp-*` files of interrupted saves last modified more than `olderThanMs` ago (by
   * the server's clock and this machine's: keep `olderThanMs` well above any clock skew), in the
   * repository directory, every type directory and every `data/<xx>/`.
   */
  async sweepTemporaries(opts: {
    readonly olderThanMs: number;
    readonly dryRun?: boolean;
  }): Promise<TemporarySweep> {
    const before = (Date.now() - opts.olderThanMs) / 1000;
    const dirs = [this.#root, ...Object.values(TYPE_DIRS).map((d) => posix.join(this.#root, d))];
    const packDir = posix.join(this.#root, TYPE_DIRS.pack);
    for (const e of await this.#readdirIfExists(packDir)) {
      if (!e.filename.startsWith('.') && modeType(e.attrs.mode) === S_IFDIR)
        dirs.push(posix.join(packDir, e.filename));
    }
    let files = 0;
    let bytes = 0;
    for await (const [dir, entries] of this.#readdirsAhead(dirs)) {
      for (const e of entries) {
        if (!e.filename.startsWith(TEMP_PREFIX) || modeType(e.attrs.mode) !== S_IFREG) continue;
        if (!(e.attrs.mtime < before)) continue;
        if (!opts.dryRun) {
          const path = posix.join(dir, e.filename);
          const s = await this.#sftp();
          try {
            await s.unlink(path);
          } catch (err) {
            if (code(err) === SFTP_STATUS.NO_SUCH_FILE) continue;
            throw sftpError(err, 'remove', path, s.where);
          }
        }
        files++;
        bytes += e.attrs.size;
      }
    }
    return { files, bytes };
  }

  async close(): Promise<void> {
    this.#closed = true;
    const session = this.#session ?? (await this.#connecting?.catch(() => undefined));
    this.#session = undefined;
    await session?.end();
  }

  #file(handle: ObjectHandle): string {
    return posix.join(this.#root, objectKey(handle));
  }

  /** The live session, connecting (once, however many callers wait) when there is none. */
  async #sftp(): Promise<SftpSession> {
    if (this.#closed) {
      throw new ForgeError(ForgeErrorCodes.FORGE_USAGE, `the SFTP backend for ${this.location} is closed`);
    }
    if (this.#session?.alive) return this.#session;
    this.#session = undefined;
    this.#connecting ??= this.#connect().finally(() => {
      this.#connecting = undefined;
    });
    return this.#connecting;
  }

  async #connect(): Promise<SftpSession> {
    const ssh2 = await loadSsh2();
    const home = this.#env.HOME || homedir();
    const expand = (p: string) => (p === '~' ? home : p.startsWith('~/') ? join(home, p.slice(2)) : p);
    const identity = this.#options.identity === undefined ? undefined : expand(this.#options.identity);
    const knownHostsFile = expand(this.#options.knownHosts ?? '~/.ssh/known_hosts');
    const knownHostsFiles =
      this.#options.knownHosts === undefined
        ? [knownHostsFile, '/etc/ssh/ssh_known_hosts']
        : [knownHostsFile];
    const [credentials, knownHosts] = await Promise.all([
      loadCredentials(ssh2, { identity, home, env: this.#env }),
      loadKnownHosts(knownHostsFiles, parseKnownHosts),
    ]);
    const session = await openSession(ssh2, {
      host: this.#host,
      port: this.#port,
      user: this.#user,
      credentials,
      knownHosts,
      knownHostsFile: isAbsolute(knownHostsFile) ? knownHostsFile : join(process.cwd(), knownHostsFile),
      knownHostsName: knownHostsName(this.#host, this.#port),
      insecureHostKey: this.#options.insecureHostKey === true,
      onWarning: (m) => this.#options.onWarning?.(m),
      timeoutMs: this.#timeoutMs,
    });
    if (this.#closed) {
      await session.end();
      throw new ForgeError(ForgeErrorCodes.FORGE_USAGE, `the SFTP backend for ${this.location} is closed`);
    }
    this.#session = session;
    return session;
  }

  /**
   * Runs `fn(offset, length)` over `[start, start + total)` in CHUNK pieces, `connections` at a
   * time. Waits for every started piece before rejecting, so nothing touches the handle afterwards.
   */
  async #parallel(
    start: number,
    total: number,
    fn: (offset: number, length: number) => Promise<unknown>,
  ): Promise<void> {
    if (total <= 0) return;
    let next = start;
    const end = start + total;
    let failure: { error: unknown } | undefined;
    const worker = async () => {
      while (next < end && failure === undefined) {
        const offset = next;
        const length = Math.min(CHUNK, end - offset);
        next += length;
        try {
          await fn(offset, length);
        } catch (e) {
          failure ??= { error: e };
        }
      }
    };
    const workers = Math.min(this.#connections, Math.ceil(total / CHUNK));
    await Promise.all(Array.from({ length: workers }, worker));
    if (failure) throw failure.error;
  }

  /**
   * Fills `out[outOffset, outOffset + length)` from file position `filePos` on, `connections`
   * reads at a time. Resolves with how many bytes were read from the start: less than `length`
   * only when the file ended early.
   */
  async #readInto(
    s: SftpSession,
    h: Buffer,
    out: Uint8Array,
    outOffset: number,
    length: number,
    filePos: number,
  ): Promise<number> {
    const target = Buffer.from(out.buffer, out.byteOffset, out.byteLength);
    let shortAt = outOffset + length;
    await this.#parallel(outOffset, length, async (off, len) => {
      const n = await this.#readFully(s, h, target, off, len, filePos + (off - outOffset));
      if (n < len) shortAt = Math.min(shortAt, off + n);
    });
    return shortAt - outOffset;
  }

  /** Reads until `len` bytes arrived or the file ended (servers may answer a read with fewer bytes). */
  async #readFully(
    s: SftpSession,
    h: Buffer,
    buf: Buffer,
    off: number,
    len: number,
    pos: number,
  ): Promise<number> {
    let done = 0;
    while (done < len) {
      const n = await s.read(h, buf, off + done, len - done, pos + done);
      if (n === 0) break;
      done += n;
    }
    return done;
  }

  async #filesOf(dir: string, entries: readonly FileEntryWithStats[]): Promise<ObjectInfo[]> {
    const out: ObjectInfo[] = [];
    for (const e of entries) {
      if (e.filename.startsWith('.')) continue; // temporary files of in-progress saves, and dot files
      const t = modeType(e.attrs.mode);
      if (t === S_IFREG) out.push({ name: e.filename, size: e.attrs.size });
      else if (t === S_IFLNK) {
        const s = await this.#sftp();
        const st = await this.#statOrUndefined(s, posix.join(dir, e.filename), 'stat');
        if (st?.isFile()) out.push({ name: e.filename, size: st.size });
      }
    }
    return out;
  }

  /** `readdir`, or `[]` when `dir` does not exist. Any other failure throws: callers delete based on listings. */
  async #readdirIfExists(dir: string): Promise<FileEntryWithStats[]> {
    const s = await this.#sftp();
    try {
      return await s.readdir(dir);
    } catch (e) {
      // OpenSSH reports ENOTDIR as NO_SUCH_FILE too: only a really missing directory lists as empty.
      if (code(e) === SFTP_STATUS.NO_SUCH_FILE && s.alive) {
        const st = await this.#statOrUndefined(s, dir, 'list');
        if (st === undefined) return [];
        throw new ForgeError(
          ForgeErrorCodes.FORGE_IO,
          `cannot list ${dir} on ${s.where}: ${st.isDirectory() ? 'the server cannot open it' : 'not a directory'}`,
          { cause: e, details: { path: dir, where: s.where } },
        );
      }
      throw sftpError(e, 'list', dir, s.where);
    }
  }

  async #statOrUndefined(s: SftpSession, path: string, action: string): Promise<Stats | undefined> {
    try {
      return await s.stat(path);
    } catch (e) {
      if (code(e) === SFTP_STATUS.NO_SUCH_FILE) return undefined;
      throw sftpError(e, action, path, s.where);
    }
  }

  /** `mkdir -p` for the repository root itself (create() only). */
  async #mkdirs(s: SftpSession, dir: string): Promise<void> {
    const st = await this.#statOrUndefined(s, dir, 'create');
    if (st?.isDirectory()) return;
    if (st) throw notADirectory(dir, s.where);
    const parent = posix.dirname(dir);
    if (parent !== dir) await this.#mkdirs(s, parent);
    await this.#mkdirTolerant(s, dir);
  }

  /**
   * Creates `dir` and missing parents inside the repository. Never creates the repository root:
   * a missing root usually means a typo or an unmounted volume, and writing there would fill the
   * wrong disk.
   */
  async #makeDir(s: SftpSession, dir: string): Promise<void> {
    const inside = this.#root === '/' ? dir !== '/' : dir.startsWith(`${this.#root}/`);
    if (!inside) {
      throw new ForgeError(
        ForgeErrorCodes.FORGE_REPO_NOT_FOUND,
        `repository directory ${this.#root} does not exist on ${s.where}`,
        { hint: 'check the path in the repository location, or create the repository first' },
      );
    }
    try {
      await s.mkdir(dir, DIR_MODE);
    } catch (e) {
      if (code(e) !== SFTP_STATUS.NO_SUCH_FILE) {
        await this.#assertDir(s, dir, e);
        return;
      }
      await this.#makeDir(s, posix.dirname(dir));
      await this.#mkdirTolerant(s, dir);
    }
  }

  /** mkdir that succeeds when the directory exists already (OpenSSH reports EEXIST as a plain FAILURE). */
  async #mkdirTolerant(s: SftpSession, dir: string): Promise<void> {
    try {
      await s.mkdir(dir, DIR_MODE);
    } catch (e) {
      await this.#assertDir(s, dir, e);
    }
  }

  async #assertDir(s: SftpSession, dir: string, mkdirError: unknown): Promise<void> {
    if (!s.alive) throw sftpError(mkdirError, 'create directory', dir, s.where);
    const st = await this.#statOrUndefined(s, dir, 'create directory');
    if (st?.isDirectory()) return;
    if (st) throw notADirectory(dir, s.where);
    throw sftpError(mkdirError, 'create directory', dir, s.where);
  }

  /** For servers without posix-rename: rename, and if the target exists, remove it first (not atomic). */
  async #plainRename(s: SftpSession, temp: string, file: string): Promise<void> {
    this.#warnOnce(
      'rename',
      `${s.where} does not support posix-rename@openssh.com: replacing an existing object is not atomic`,
    );
    // Concurrent saves of one name race between unlink and rename: try a few times.
    for (let attempt = 1; ; attempt++) {
      try {
        await s.rename(temp, file);
        return;
      } catch (e) {
        if (attempt >= 32 || !s.alive) throw e;
        const st = await this.#statOrUndefined(s, file, 'rename');
        if (st !== undefined && !st.isFile()) throw e;
        // Missing by now: another save's unlink won the race; retry the rename.
        if (st !== undefined) await s.unlink(file).catch(() => {});
      }
    }
  }

  /** Best effort: a FAILURE while writing is "no space left" when statvfs says so. */
  async #noSpace(
    s: SftpSession,
    dir: string,
    need: number,
    file: string,
    cause: unknown,
  ): Promise<ForgeError | undefined> {
    const free = await s.freeBytes(dir).catch(() => undefined);
    if (free === undefined || free >= need) return undefined;
    return new ForgeError(
      ForgeErrorCodes.FORGE_NO_SPACE,
      `cannot save ${file} on ${s.where}: no space left on the server (${free} bytes free, ${need} needed)`,
      { cause, hint: 'free some space on the server and run the command again', details: { free, need } },
    );
  }

  #warnOnce(key: string, message: string): void {
    if (this.#warned.has(key)) return;
    this.#warned.add(key);
    this.#options.onWarning?.(message);
  }
}

function code(e: unknown): unknown {
  return (e as { code?: unknown } | null)?.code;
}

function modeType(mode: number | undefined): number {
  return (mode ?? 0) & S_IFMT;
}

function assertFile(st: Stats, file: string, where: string): void {
  if (!st.isFile()) {
    throw new ForgeError(ForgeErrorCodes.FORGE_IO, `${file} on ${where} is not a regular file`, {
      details: { path: file, where },
    });
  }
}

function notADirectory(path: string, where: string): ForgeError {
  return new ForgeError(ForgeErrorCodes.FORGE_USAGE, `${path} on ${where} exists and is not a directory`, {
    hint: 'choose another repository location or move the file away',
  });
}

function changedWhileReading(file: string, where: string): ForgeError {
  return new ForgeError(
    ForgeErrorCodes.FORGE_IO,
    `${file} on ${where} changed size while it was being read`,
    {
      retryable: true,
      details: { path: file, where },
    },
  );
}

function defaultUser(env: NodeJS.ProcessEnv): string {
  const fromEnv = env.USER || env.LOGNAME || env.USERNAME;
  if (fromEnv) return fromEnv;
  try {
    return userInfo().username;
  } catch {
    throw new ForgeError(ForgeErrorCodes.FORGE_USAGE, 'cannot tell which user to log in as', {
      hint: "write the user into the location, as in 'sftp:user@host:/srv/backup'",
    });
  }
}
