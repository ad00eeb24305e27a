import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ForgeError, ForgeErrorCodes, TRANSIENT_NETWORK_CODES, toForgeError } from '@backupforge/common';
import type {
  AnyAuthMethod,
  AuthenticationType,
  Client,
  ConnectConfig,
  FileEntryWithStats,
  NextAuthHandler,
  ParsedKey,
  SFTPWrapper,
  Stats,
} from 'ssh2';
import type { KnownHostsEntry } from './known-hosts.ts';
import { checkHostKey, fingerprint, hostKeyAlgorithms, keyTypeOf, knownKeyTypes } from './known-hosts.ts';

type Ssh2 = typeof import('ssh2');

let ssh2Module: Promise<Ssh2> | undefined;

/** Imports `ssh2` on first use, so loading the storage package never loads it. */
export function loadSsh2(): Promise<Ssh2> {
  ssh2Module ??= import('ssh2').then(
    (m) => ((m as { default?: Ssh2 }).default ?? m) as Ssh2,
    (e: unknown) => {
      ssh2Module = undefined;
      throw new ForgeError(ForgeErrorCodes.FORGE_INTERNAL, `cannot load the ssh2 library: ${String(e)}`, {
        cause: e,
        hint: 'reinstall BackupForge; the ssh2 dependency is missing or broken',
      });
    },
  );
  return ssh2Module;
}

/** SFTP status codes (draft-ietf-secsh-filexfer-02), as ssh2 puts them on `err.code`. */
export const SFTP_STATUS = {
  EOF: 1,
  NO_SUCH_FILE: 2,
  PERMISSION_DENIED: 3,
  FAILURE: 4,
  BAD_MESSAGE: 5,
  NO_CONNECTION: 6,
  CONNECTION_LOST: 7,
  OP_UNSUPPORTED: 8,
} as const;

export const OPEN_READ = 0x01;
/** WRITE | CREAT | EXCL: a new file, failing if the name exists. */
export const OPEN_CREATE_EXCLUSIVE = 0x02 | 0x08 | 0x20;

const DEFAULT_KEY_FILES = ['id_ed25519', 'id_ecdsa', 'id_rsa'];
const PASSPHRASE_ENV = 'FORGE_SFTP_KEY_PASSPHRASE';
const DEFAULT_HOST_KEY_ALGORITHMS = [
  'ssh-ed25519',
  'ecdsa-sha2-nistp256',
  'ecdsa-sha2-nistp384',
  'ecdsa-sha2-nistp521',
  'rsa-sha2-512',
  'rsa-sha2-256',
  'ssh-rsa',
];

/** The login methods to try, in order, and what was skipped (for the FORGE_AUTH message). */
export interface Credentials {
  readonly methods: readonly { readonly label: string; readonly method: AuthMethodWithoutUser }[];
  readonly skipped: readonly string[];
}

type AuthMethodWithoutUser =
  | { readonly type: 'agent'; readonly agent: string }
  | { readonly type: 'publickey'; readonly key: ParsedKey };

/**
 * Collects the SSH agent (`SSH_AUTH_SOCK`) and private keys to log in with: `identity` if given
 * (then the agent), else the agent and whichever of ~/.ssh/id_ed25519, id_ecdsa, id_rsa exist.
 * Encrypted keys are decrypted with `FORGE_SFTP_KEY_PASSPHRASE`. A broken `identity` is an error;
 * unusable default keys are skipped and reported if the login fails.
 */
export async function loadCredentials(
  ssh2: Ssh2,
  options: { identity: string | undefined; home: string; env: NodeJS.ProcessEnv },
): Promise<Credentials> {
  const { identity, home, env } = options;
  const passphrase = env[PASSPHRASE_ENV] || undefined;
  const skipped: string[] = [];
  const keys: Credentials['methods'][number][] = [];
  const agent: Credentials['methods'][number][] = [];

  const sock = env.SSH_AUTH_SOCK;
  if (sock) {
    const isSocket = await stat(sock).then(
      (st) => st.isSocket(),
      () => false,
    );
    if (isSocket) agent.push({ label: `the SSH agent at ${sock}`, method: { type: 'agent', agent: sock } });
    else skipped.push(`the SSH agent (SSH_AUTH_SOCK=${sock} is not a socket)`);
  } else {
    skipped.push('the SSH agent (SSH_AUTH_SOCK is not set)');
  }

  const files = identity !== undefined ? [identity] : DEFAULT_KEY_FILES.map((f) => join(home, '.ssh', f));
  for (const file of files) {
    let text: Buffer;
    try {
      text = await readFile(file);
    } catch (e) {
      const code = (e as { code?: unknown }).code;
      if (identity === undefined && code === 'ENOENT') continue;
      throw new ForgeError(
        code === 'ENOENT' ? ForgeErrorCodes.FORGE_USAGE : ForgeErrorCodes.FORGE_PERMISSION,
        `cannot read the SSH key ${file} (sftp.identity): ${code === 'ENOENT' ? 'no such file' : String(code ?? e)}`,
        { cause: e, hint: 'give the path of a private key file, as in -o sftp.identity=~/.ssh/id_ed25519' },
      );
    }
    const parsed = ssh2.utils.parseKey(text, passphrase);
    const key = Array.isArray(parsed) ? (parsed[0] as ParsedKey | undefined) : parsed;
    let problem: string | undefined;
    if (key === undefined) problem = 'no key in the file';
    else if (key instanceof Error) {
      problem = /encrypted/i.test(key.message)
        ? passphrase === undefined
          ? `encrypted, and ${PASSPHRASE_ENV} is not set`
          : `cannot decrypt it with ${PASSPHRASE_ENV}`
        : /bad passphrase|decrypt/i.test(key.message)
          ? `cannot decrypt it with ${PASSPHRASE_ENV}`
          : `not a private key ssh2 can read (${key.message})`;
    } else if (!key.isPrivateKey()) problem = 'a public key, not a private key';
    if (problem !== undefined || key === undefined || key instanceof Error) {
      if (identity !== undefined) {
        throw new ForgeError(ForgeErrorCodes.FORGE_AUTH, `cannot use the SSH key ${file}: ${problem}`, {
          hint: /encrypted|decrypt/.test(problem ?? '')
            ? `set ${PASSPHRASE_ENV} to the key's passphrase, or load the key into ssh-agent`
            : 'give the path of an OpenSSH or PEM private key file (not the .pub file)',
        });
      }
      skipped.push(`${file} (${problem})`);
      continue;
    }
    keys.push({ label: file, method: { type: 'publickey', key } });
  }
  return { methods: identity !== undefined ? [...keys, ...agent] : [...agent, ...keys], skipped };
}

/** Reads known_hosts files; a missing file is an empty one. */
export async function loadKnownHosts(
  files: readonly string[],
  parse: (text: string, name: string) => KnownHostsEntry[],
): Promise<KnownHostsEntry[]> {
  const out: KnownHostsEntry[] = [];
  for (const file of files) {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (e) {
      const code = (e as { code?: unknown }).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') continue;
      throw toForgeError(e, `cannot read the known_hosts file ${file}`);
    }
    out.push(...parse(text, file));
  }
  return out;
}

export interface ConnectParams {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly credentials: Credentials;
  readonly knownHosts: readonly KnownHostsEntry[];
  /** How known_hosts is named in messages and the `ssh-keyscan` fix (the primary file). */
  readonly knownHostsFile: string;
  /** The name known_hosts entries are matched against: `host` or `[host]:port`. */
  readonly knownHostsName: string;
  readonly insecureHostKey: boolean;
  readonly onWarning: (message: string) => void;
  readonly timeoutMs: number;
}

/**
 * Opens one SSH connection and its SFTP session: checks the host key against known_hosts, logs
 * in, starts the `sftp` subsystem. Failures are `ForgeError`s: FORGE_HOST_KEY, FORGE_AUTH, or
 * FORGE_IO (retryable for refused, reset and timed-out connections).
 */
export async function openSession(ssh2: Ssh2, p: ConnectParams): Promise<SftpSession> {
  const where = `${p.user}@${p.host.includes(':') ? `[${p.host}]` : p.host}:${p.port}`;
  const client: Client = new ssh2.Client();
  let hostKeyError: ForgeError | undefined;
  const tried: string[] = [];

  const hostVerifier = (key: Buffer): boolean => {
    const verdict = checkHostKey(p.knownHosts, p.knownHostsName, key);
    const fp = fingerprint(key);
    const type = keyTypeOf(key) ?? 'unknown-type';
    if (p.insecureHostKey) {
      if (verdict.status !== 'known') {
        const note =
          verdict.status === 'changed'
            ? `; it DIFFERS from the key in ${verdict.entry.source}`
            : verdict.status === 'revoked'
              ? `; it is marked @revoked in ${verdict.entry.source}`
              : '';
        p.onWarning(
          `not checking the host key of ${p.knownHostsName} (--insecure-host-key): ` +
            `the server presented ${type} key ${fp}${note}`,
        );
      }
      return true;
    }
    if (verdict.status === 'known') return true;
    hostKeyError = hostKeyProblem(verdict, p, type, fp);
    return false;
  };

  const steps = [...p.credentials.methods];
  const authHandler = (
    methodsLeft: AuthenticationType[] | null,
    _partial: boolean | null,
    next: NextAuthHandler,
  ) => {
    const step = methodsLeft && !methodsLeft.includes('publickey') ? undefined : steps.shift();
    if (step === undefined) {
      (next as unknown as (v: false) => void)(false);
      return;
    }
    tried.push(step.label);
    next({ ...step.method, username: p.user } as AnyAuthMethod);
  };

  const knownTypes = knownKeyTypes(p.knownHosts, p.knownHostsName);
  const config: ConnectConfig = {
    host: p.host,
    port: p.port,
    username: p.user,
    hostVerifier,
    authHandler: authHandler as ConnectConfig['authHandler'],
    readyTimeout: p.timeoutMs,
    keepaliveInterval: Math.min(15_000, Math.max(1000, Math.round(p.timeoutMs / 2))),
    keepaliveCountMax: 3,
  };
  if (knownTypes.length > 0) {
    config.algorithms = {
      serverHostKey: hostKeyAlgorithms(knownTypes, DEFAULT_HOST_KEY_ALGORITHMS) as never,
    };
  }

  return new Promise<SftpSession>((resolve, reject) => {
    let settled = false;
    let lastError: (Error & { level?: string; code?: unknown }) | undefined;
    const fail = (e: ForgeError) => {
      if (settled) return;
      settled = true;
      client.destroy();
      reject(e);
    };
    const onError = (err: Error & { level?: string; code?: unknown }) => {
      lastError = err;
      if (hostKeyError) return fail(hostKeyError);
      fail(connectError(err, where, p, tried));
    };
    client.on('error', onError);
    const onClose = () => {
      if (hostKeyError) return fail(hostKeyError);
      fail(
        lastError
          ? connectError(lastError, where, p, tried)
          : new ForgeError(
              ForgeErrorCodes.FORGE_IO,
              `${where} closed the connection while it was being set up`,
              {
                retryable: true,
                hint: 'check the SSH server (MaxStartups, AllowUsers, fail2ban) if this repeats',
                details: { host: p.host, port: p.port },
              },
            ),
      );
    };
    client.on('close', onClose);
    client.on('ready', () => {
      // readyTimeout covers the handshake and login; this covers starting the subsystem.
      const timer = setTimeout(
        () =>
          fail(
            new ForgeError(
              ForgeErrorCodes.FORGE_IO,
              `${where} did not start an SFTP session within ${p.timeoutMs / 1000} s`,
              {
                retryable: true,
                details: { host: p.host, port: p.port },
              },
            ),
          ),
        p.timeoutMs,
      );
      client.sftp((err, sftp) => {
        clearTimeout(timer);
        if (err) {
          return fail(
            new ForgeError(
              ForgeErrorCodes.FORGE_IO,
              `${where} refused to start an SFTP session: ${err.message}`,
              {
                cause: err,
                hint: "enable SFTP on the server (OpenSSH: 'Subsystem sftp internal-sftp'; NAS: the SFTP service)",
                details: { host: p.host, port: p.port },
              },
            ),
          );
        }
        if (settled) {
          client.end();
          return;
        }
        settled = true;
        client.removeListener('error', onError);
        client.removeListener('close', onClose);
        client.setNoDelay(true);
        resolve(new SftpSession(client, sftp, where, p.timeoutMs));
      });
    });
    try {
      client.connect(config);
    } catch (e) {
      fail(
        new ForgeError(ForgeErrorCodes.FORGE_USAGE, `cannot connect to ${where}: ${String(e)}`, {
          cause: e,
        }),
      );
    }
  });
}

function hostKeyProblem(
  verdict: ReturnType<typeof checkHostKey>,
  p: ConnectParams,
  type: string,
  fp: string,
): ForgeError {
  const details = {
    host: p.host,
    port: p.port,
    fingerprint: fp,
    keyType: type,
    knownHosts: p.knownHostsFile,
  };
  const name = p.knownHostsName;
  switch (verdict.status) {
    case 'changed':
      return new ForgeError(
        ForgeErrorCodes.FORGE_HOST_KEY,
        `WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! HOST KEY CHANGED for ${name}: it presented ${type} key ` +
          `${fp}, but ${verdict.entry.source} holds a different one (${fingerprint(verdict.entry.key)}). ` +
          'Someone could be eavesdropping on you right now (possible man-in-the-middle attack), ' +
          'or the server was reinstalled and got a new key',
        {
          hint:
            `do not connect until you know why; if the change is legitimate, remove the old key with ` +
            `'ssh-keygen -R "${name}" -f ${p.knownHostsFile}' and add the new one after checking its fingerprint`,
          details: {
            ...details,
            expectedFingerprint: fingerprint(verdict.entry.key),
            entry: verdict.entry.source,
          },
        },
      );
    case 'revoked':
      return new ForgeError(
        ForgeErrorCodes.FORGE_HOST_KEY,
        `the host key of ${name} (${type} ${fp}) is marked @revoked in ${verdict.entry.source}`,
        { hint: 'the key was revoked on purpose: ask the server administrator for its current key', details },
      );
    default: {
      const also =
        verdict.status === 'unknown' && verdict.otherTypes.length > 0
          ? ` (known_hosts lists only ${verdict.otherTypes.join(', ')} keys for it)`
          : verdict.status === 'unknown' && verdict.certAuthorityOnly
            ? ' (known_hosts only trusts a @cert-authority for it, and host certificates are not supported)'
            : '';
      return new ForgeError(
        ForgeErrorCodes.FORGE_HOST_KEY,
        `the host key of ${name} is not in ${p.knownHostsFile}${also}: ` +
          `the server presented ${type} key ${fp}`,
        {
          hint:
            `check that ${fp} is the server's key (on the server: 'ssh-keygen -lf /etc/ssh/ssh_host_${type.replace(/^ssh-|-.*$/g, '')}_key.pub'), ` +
            `then add it with 'ssh-keyscan -p ${p.port} ${p.host} >> ${p.knownHostsFile}'; ` +
            'or pass --insecure-host-key to connect without checking',
          details,
        },
      );
    }
  }
}

const RETRYABLE_NET = TRANSIENT_NETWORK_CODES;

function connectError(
  err: Error & { level?: string; code?: unknown },
  where: string,
  p: ConnectParams,
  tried: readonly string[],
): ForgeError {
  const details = { host: p.host, port: p.port, user: p.user };
  if (err.level === 'client-authentication') {
    const lines = [
      tried.length > 0 ? `tried ${tried.join(', ')}` : 'no SSH agent or key file to log in with',
      ...(p.credentials.skipped.length > 0 ? [`skipped ${p.credentials.skipped.join(', ')}`] : []),
    ];
    return new ForgeError(
      ForgeErrorCodes.FORGE_AUTH,
      `${p.user}@${p.host} rejected the SSH login (${lines.join('; ')})`,
      {
        cause: err,
        hint:
          `add your public key to ~${p.user}/.ssh/authorized_keys on the server ` +
          `(ssh-copy-id -p ${p.port} ${p.user}@${p.host}), or name the key with -o sftp.identity=PATH; ` +
          `for an encrypted key set ${PASSPHRASE_ENV} or load it into ssh-agent`,
        details: { ...details, tried: [...tried], skipped: [...p.credentials.skipped] },
      },
    );
  }
  if (err.level === 'client-timeout') {
    return new ForgeError(
      ForgeErrorCodes.FORGE_IO,
      `timed out connecting to ${where} after ${p.timeoutMs / 1000} s`,
      { cause: err, retryable: true, hint: 'check the host and port, or raise -o sftp.timeout', details },
    );
  }
  const code = typeof err.code === 'string' ? err.code : undefined;
  if (code === 'ECONNREFUSED') {
    return new ForgeError(
      ForgeErrorCodes.FORGE_IO,
      `${p.host} refused the connection on port ${p.port} (${where})`,
      {
        cause: err,
        retryable: true,
        hint: `check that the SSH server runs on ${p.host} and listens on port ${p.port}`,
        details,
      },
    );
  }
  if (code === 'ENOTFOUND') {
    return new ForgeError(ForgeErrorCodes.FORGE_IO, `cannot resolve the host name ${p.host}`, {
      cause: err,
      hint: 'check the spelling of the host in the repository location',
      details,
    });
  }
  if (code !== undefined && RETRYABLE_NET.has(code)) {
    return new ForgeError(ForgeErrorCodes.FORGE_IO, `cannot connect to ${where}: ${code}`, {
      cause: err,
      retryable: true,
      details,
    });
  }
  // Handshake failures: no common algorithm is permanent, a dropped connection is not.
  const transient = /lost|reset|closed|timed out|ECONN/i.test(err.message);
  return new ForgeError(ForgeErrorCodes.FORGE_IO, `cannot connect to ${where}: ${err.message}`, {
    cause: err,
    retryable: transient,
    details,
  });
}

type Callback<T> = (err: (Error & { code?: unknown }) | null | undefined, value?: T) => void;

/**
 * One SSH connection and its SFTP session, with promise-returning operations. Once the
 * connection drops (or a request goes unanswered for the timeout), every pending and later call
 * rejects with a retryable FORGE_IO and `alive` is false: the owner opens a new session.
 * Operations reject with ssh2's raw errors otherwise; map them with {@link sftpError}.
 */
export class SftpSession {
  readonly #client: Client;
  readonly #sftp: SFTPWrapper;
  readonly #timeoutMs: number;
  /** `user@host:port`, for messages. */
  readonly where: string;
  #dead = false;
  #reason: string | undefined;
  #pending = 0;
  #lastProgress = 0;
  #watchdog: NodeJS.Timeout | undefined;
  readonly #closed: Promise<void>;

  constructor(client: Client, sftp: SFTPWrapper, where: string, timeoutMs: number) {
    this.#client = client;
    this.#sftp = sftp;
    this.where = where;
    this.#timeoutMs = timeoutMs;
    this.#closed = new Promise((resolve) => client.once('close', () => resolve()));
    client.on('error', (err: Error) => this.#die(err.message));
    client.on('end', () => this.#die('the server closed the connection'));
    client.on('close', () => this.#die('the connection closed'));
    sftp.on('error', (err: Error) => this.#die(`SFTP protocol error: ${err.message}`));
    sftp.on('close', () => {
      this.#die('the SFTP session ended');
      client.end();
    });
  }

  /** False once the connection dropped, timed out or was closed. */
  get alive(): boolean {
    return !this.#dead;
  }

  /** Ends the connection and waits (briefly) until it is closed. */
  async end(): Promise<void> {
    this.#die('the backend was closed');
    this.#client.end();
    const timer = new Promise<void>((resolve) => setTimeout(resolve, 2000).unref());
    await Promise.race([this.#closed, timer]);
    this.#client.destroy();
  }

  /** Drops the connection at once: pending calls reject with a retryable FORGE_IO. */
  kill(reason: string): void {
    this.#die(reason);
    this.#client.destroy();
  }

  /** The FORGE_IO a call gets when the connection is gone. */
  lostError(cause?: unknown): ForgeError {
    return new ForgeError(
      ForgeErrorCodes.FORGE_IO,
      `lost the SFTP connection to ${this.where}${this.#reason ? `: ${this.#reason}` : ''}`,
      {
        cause,
        retryable: true,
        hint: "the next call reconnects; if this repeats, check the network and the server's logs",
        details: { where: this.where },
      },
    );
  }

  open(path: string, flags: number, mode?: number): Promise<Buffer> {
    return this.#call<Buffer>((cb) =>
      mode === undefined ? this.#sftp.open(path, flags, cb) : this.#sftp.open(path, flags, { mode }, cb),
    );
  }

  close(handle: Buffer): Promise<void> {
    return this.#call<void>((cb) => this.#sftp.close(handle, cb));
  }

  /** Writes `length` bytes of `buf` from `offset` at `position` of the file. */
  write(handle: Buffer, buf: Buffer, offset: number, length: number, position: number): Promise<void> {
    return this.#call<void>((cb) =>
      this.#sftp.write(handle, buf, offset, length, position, (err) => cb(err)),
    );
  }

  /** Reads up to `length` bytes into `buf` at `offset`; resolves with how many arrived (0 at end of file). */
  read(handle: Buffer, buf: Buffer, offset: number, length: number, position: number): Promise<number> {
    return this.#call<number>((cb) =>
      this.#sftp.read(handle, buf, offset, length, position, (err, n) => cb(err, n)),
    );
  }

  fstat(handle: Buffer): Promise<Stats> {
    return this.#call<Stats>((cb) => this.#sftp.fstat(handle, cb));
  }

  stat(path: string): Promise<Stats> {
    return this.#call<Stats>((cb) => this.#sftp.stat(path, cb));
  }

  readdir(path: string): Promise<FileEntryWithStats[]> {
    return this.#call<FileEntryWithStats[]>((cb) => this.#sftp.readdir(path, cb));
  }

  mkdir(path: string, mode: number): Promise<void> {
    return this.#call<void>((cb) => this.#sftp.mkdir(path, { mode }, cb));
  }

  unlink(path: string): Promise<void> {
    return this.#call<void>((cb) => this.#sftp.unlink(path, cb));
  }

  /** Plain SFTP rename: fails on most servers when `to` exists. */
  rename(from: string, to: string): Promise<void> {
    return this.#call<void>((cb) => this.#sftp.rename(from, to, cb));
  }

  /** `posix-rename@openssh.com`: atomically replaces `to`. Resolves false when the server lacks it. */
  posixRename(from: string, to: string): Promise<boolean> {
    return this.#extension((cb) => this.#sftp.ext_openssh_rename(from, to, cb));
  }

  /** `fsync@openssh.com` on an open file. Resolves false when the server lacks it. */
  fsync(handle: Buffer): Promise<boolean> {
    return this.#extension((cb) => this.#sftp.ext_openssh_fsync(handle, cb));
  }

  /** `statvfs@openssh.com`: free bytes for unprivileged users, or `undefined` when unsupported. */
  async freeBytes(path: string): Promise<number | undefined> {
    let info: { f_bavail?: unknown; f_frsize?: unknown } | undefined;
    try {
      info = await this.#call((cb) => this.#sftp.ext_openssh_statvfs(path, cb));
    } catch (e) {
      if (e instanceof UnsupportedExtension) return undefined;
      throw e;
    }
    const free = Number(info?.f_bavail) * Number(info?.f_frsize);
    return Number.isFinite(free) ? free : undefined;
  }

  async #extension(start: (cb: Callback<unknown>) => void): Promise<boolean> {
    try {
      await this.#call(start);
      return true;
    } catch (e) {
      if (e instanceof UnsupportedExtension) return false;
      throw e;
    }
  }

  #call<T>(start: (cb: Callback<T>) => void): Promise<T> {
    if (this.#dead) return Promise.reject(this.lostError());
    return new Promise<T>((resolve, reject) => {
      let done = false;
      this.#begin();
      const cb: Callback<T> = (err, value) => {
        if (done) return;
        done = true;
        this.#endOne();
        if (!err) resolve(value as T);
        // ssh2 fails every pending request with this when the channel or socket closes.
        else if (this.#dead || err.message === 'No response from server') reject(this.lostError(err));
        else reject(err);
      };
      try {
        start(cb);
      } catch (e) {
        if (done) return;
        done = true;
        this.#endOne();
        const message = e instanceof Error ? e.message : String(e);
        reject(
          /does not support this extended request/.test(message) ? new UnsupportedExtension(message) : e,
        );
      }
    });
  }

  #begin(): void {
    if (this.#pending++ === 0) {
      this.#lastProgress = Date.now();
      const every = Math.max(100, Math.min(1000, Math.floor(this.#timeoutMs / 4)));
      this.#watchdog = setInterval(() => {
        if (Date.now() - this.#lastProgress > this.#timeoutMs) {
          this.kill(`no answer from the server for ${this.#timeoutMs / 1000} s (sftp.timeout)`);
        }
      }, every);
      this.#watchdog.unref();
    }
  }

  #endOne(): void {
    this.#lastProgress = Date.now();
    if (--this.#pending === 0 && this.#watchdog) {
      clearInterval(this.#watchdog);
      this.#watchdog = undefined;
    }
  }

  #die(reason: string): void {
    if (this.#dead) return;
    this.#dead = true;
    this.#reason = reason;
  }
}

class UnsupportedExtension extends Error {}

/**
 * Maps an error of an SFTP call on `path` to a ForgeError: NO_SUCH_FILE is FORGE_NOT_FOUND,
 * PERMISSION_DENIED is FORGE_PERMISSION, a lost connection is a retryable FORGE_IO, anything else
 * a permanent FORGE_IO naming the server's message.
 */
export function sftpError(e: unknown, action: string, path: string, where: string): ForgeError {
  if (e instanceof ForgeError) return e;
  const code = (e as { code?: unknown } | null)?.code;
  const message = e instanceof Error ? e.message : String(e);
  const what = `cannot ${action} ${path} on ${where}`;
  const details = { path, where, sftpStatus: code };
  switch (code) {
    case SFTP_STATUS.NO_SUCH_FILE:
      return new ForgeError(ForgeErrorCodes.FORGE_NOT_FOUND, `${what}: no such file or directory`, {
        cause: e,
        details,
      });
    case SFTP_STATUS.PERMISSION_DENIED:
      return new ForgeError(ForgeErrorCodes.FORGE_PERMISSION, `${what}: permission denied`, {
        cause: e,
        hint: 'check that the SSH user may read and write the repository directory on the server',
        details,
      });
    case SFTP_STATUS.NO_CONNECTION:
    case SFTP_STATUS.CONNECTION_LOST:
      return new ForgeError(ForgeErrorCodes.FORGE_IO, `${what}: ${message}`, {
        cause: e,
        retryable: true,
        details,
      });
    case SFTP_STATUS.OP_UNSUPPORTED:
      return new ForgeError(ForgeErrorCodes.FORGE_IO, `${what}: the server does not support this operation`, {
        cause: e,
        details,
      });
    case SFTP_STATUS.FAILURE:
    case SFTP_STATUS.BAD_MESSAGE:
    case SFTP_STATUS.EOF:
      return new ForgeError(ForgeErrorCodes.FORGE_IO, `${what}: the server reported '${message}'`, {
        cause: e,
        details,
      });
  }
  if (message === 'No response from server') {
    return new ForgeError(ForgeErrorCodes.FORGE_IO, `${what}: the connection was lost`, {
      cause: e,
      retryable: true,
      details,
    });
  }
  return toForgeError(e, what);
}
