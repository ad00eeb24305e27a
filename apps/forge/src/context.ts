import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { Writable } from 'node:stream';
import { promisify } from 'node:util';
import { ForgeError, isForgeError, type StorageBackend } from '@backupforge/common';
import { Repository } from '@backupforge/engine';
import { openRepositoryBackend } from '@backupforge/storage';
import { cacheDirFor, optional, parseLimit, parseSettings } from './backend-options.ts';
import { Output } from './output.ts';

/** Options every command accepts (commander global options). */
export interface GlobalOptions {
  repo?: string;
  passwordFile?: string;
  passwordCommand?: string;
  json?: boolean;
  verbose?: boolean;
  quiet?: boolean;
  debug?: boolean;
  /** Backend settings, `key=value` (repeatable `-o`). */
  option?: string[];
  insecureHostKey?: boolean;
  /** KiB/s. */
  limitUpload?: string;
  limitDownload?: string;
  /** Commander's negated `--no-cache`: false when given. */
  cache?: boolean;
  cacheDir?: string;
  /** forge.toml (`forge run`, `jobs`, `runs`, `daemon`, `schedule`, `catalog`). */
  config?: string;
}

/** Where a command reads and writes; replaced in tests. */
export interface Io {
  readonly stdout: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  readonly stderr: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  readonly stdin: NodeJS.ReadableStream & { isTTY?: boolean };
  readonly env: NodeJS.ProcessEnv;
  readonly cwd: string;
}

export function processIo(): Io {
  return {
    stdout: process.stdout,
    stderr: process.stderr,
    stdin: process.stdin,
    env: process.env,
    cwd: process.cwd(),
  };
}

/** `$XDG_DATA_HOME/backupforge/repository`, else `~/.local/share/backupforge/repository`. */
export function defaultRepositoryPath(env: NodeJS.ProcessEnv): string {
  const base = env.XDG_DATA_HOME || join(env.HOME || homedir(), '.local', 'share');
  return join(base, 'backupforge', 'repository');
}

export class Context {
  readonly io: Io;
  readonly opts: GlobalOptions;
  readonly out: Output;
  readonly signal: AbortSignal;

  constructor(io: Io, opts: GlobalOptions, signal: AbortSignal) {
    this.io = io;
    this.opts = opts;
    this.signal = signal;
    this.out = new Output(io, opts);
  }

  /** The repository location and whether it is the built-in default. */
  repositoryLocation(): { location: string; isDefault: boolean } {
    const given = this.opts.repo ?? this.io.env.FORGE_REPOSITORY;
    if (given) return { location: given, isDefault: false };
    return { location: defaultRepositoryPath(this.io.env), isDefault: true };
  }

  /** Every backend this command opened, closed by `closeAll` when the command ends. */
  readonly #opened: StorageBackend[] = [];
  /** Retry counters of the opened backends, for summaries ("succeeded after N retries"). */
  readonly #retryStats: (() => { retries: number; succeededAfterRetry: number })[] = [];

  /** Opens the repository's backend (or `location`, e.g. `--from-repo`), wrapped in retries, limits and the cache. */
  async backend(
    location = this.repositoryLocation().location,
    opts: { cache?: boolean } = {},
  ): Promise<StorageBackend> {
    const resolved =
      /^[a-z][a-z0-9+]*:/i.test(location) && !/^[a-z]:[\\/]/i.test(location)
        ? location
        : resolve(this.io.cwd, location);
    const backend = await openRepositoryBackend(resolved, {
      env: this.io.env,
      settings: parseSettings(this.opts.option ?? []),
      insecureHostKey: this.opts.insecureHostKey === true,
      onWarning: (m) => this.out.warn(m),
      ...optional('limitUploadKiB', parseLimit('--limit-upload', this.opts.limitUpload)),
      ...optional('limitDownloadKiB', parseLimit('--limit-download', this.opts.limitDownload)),
      ...(this.opts.cache === false || opts.cache === false
        ? {}
        : { cacheRoot: cacheDirFor(this.io.env, this.opts.cacheDir) }),
      onRetry: (m) => this.out.note(m),
    });
    this.#retryStats.push(() => backend.retryStats());
    this.#opened.push(backend);
    return backend;
  }

  /** Retries the backends needed in this command so far (0 when none). */
  retries(): { retries: number; succeeded_after_retry: number } {
    let retries = 0;
    let succeededAfterRetry = 0;
    for (const f of this.#retryStats) {
      const s = f();
      retries += s.retries;
      succeededAfterRetry += s.succeededAfterRetry;
    }
    return { retries, succeeded_after_retry: succeededAfterRetry };
  }

  /** Closes every backend the command opened (connections, child processes). Never throws. */
  async closeAll(): Promise<void> {
    const all = this.#opened.splice(0);
    await Promise.all(all.map((b) => b.close().catch(() => undefined)));
  }

  /**
   * The password, from (in order) --password-file, --password-command, FORGE_PASSWORD,
   * FORGE_PASSWORD_FILE, FORGE_PASSWORD_COMMAND, or a prompt when stdin is a terminal.
   */
  async password(
    opts: {
      confirm?: boolean;
      prompt?: string;
      /** Another repository's password (copy --from-repo): its env prefix and flags. */
      env?: string;
      file?: string;
      command?: string;
    } = {},
  ): Promise<string> {
    const env = this.io.env;
    const prefix = opts.env ?? 'FORGE_PASSWORD';
    const flagFile = opts.env ? opts.file : this.opts.passwordFile;
    const flagCommand = opts.env ? opts.command : this.opts.passwordCommand;
    if (flagFile) return readPasswordFile(flagFile, this.io.cwd);
    if (flagCommand) return runPasswordCommand(flagCommand);
    const value = env[prefix];
    if (value !== undefined && value !== '') return value;
    const file = env[`${prefix}_FILE`];
    const command = env[`${prefix}_COMMAND`];
    if (file) return readPasswordFile(file, this.io.cwd);
    if (command) return runPasswordCommand(command);
    if (this.io.stdin.isTTY && this.io.stderr.isTTY) {
      const pw = await prompt(this.io, opts.prompt ?? 'enter password for repository: ');
      if (opts.confirm) {
        const again = await prompt(this.io, 'enter password again: ');
        if (again !== pw)
          throw new ForgeError('FORGE_USAGE', 'the passwords do not match', {
            hint: 'run the command again',
          });
      }
      if (pw === '') throw new ForgeError('FORGE_PASSWORD_REQUIRED', 'an empty password is not allowed');
      return pw;
    }
    throw new ForgeError('FORGE_PASSWORD_REQUIRED', 'no password given', {
      hint: opts.env
        ? `set ${prefix}, or use --from-password-file or --from-password-command`
        : 'set FORGE_PASSWORD, or use --password-file or --password-command',
    });
  }

  /** A new password (key add/passwd): --new-password-file, FORGE_NEW_PASSWORD, or a prompt asked twice. */
  async newPassword(file?: string): Promise<string> {
    if (file) return readPasswordFile(file, this.io.cwd);
    const env = this.io.env.FORGE_NEW_PASSWORD;
    if (env) return env;
    if (this.io.stdin.isTTY && this.io.stderr.isTTY) {
      const pw = await prompt(this.io, 'enter the new password: ');
      if ((await prompt(this.io, 'enter the new password again: ')) !== pw) {
        throw new ForgeError('FORGE_USAGE', 'the passwords do not match', { hint: 'run the command again' });
      }
      if (pw === '') throw new ForgeError('FORGE_PASSWORD_REQUIRED', 'an empty password is not allowed');
      return pw;
    }
    throw new ForgeError('FORGE_PASSWORD_REQUIRED', 'no new password given', {
      hint: 'set FORGE_NEW_PASSWORD or use --new-password-file',
    });
  }

  /**
   * Opens the repository; with `autoInit`, creates the default repository the first time.
   * Problems with the location (missing, not a repository, unsupported version) are reported
   * before a password is asked for.
   */
  async openRepository(opts: { autoInit?: boolean; cache?: boolean } = {}): Promise<Repository> {
    const backend = await this.backend(undefined, opts.cache === false ? { cache: false } : {});
    const { isDefault } = this.repositoryLocation();
    try {
      await Repository.probe(backend);
    } catch (e) {
      if (!isForgeError(e, 'FORGE_REPO_NOT_FOUND')) throw e;
      if (opts.autoInit && isDefault) {
        const repo = await Repository.init(backend, { password: await this.password({ confirm: true }) });
        this.out.note(
          `created a new repository at ${backend.location} (keep the password: without it the backups cannot be read)`,
        );
        return repo;
      }
      if (isDefault) {
        throw new ForgeError(
          'FORGE_REPO_NOT_FOUND',
          `there is no repository at ${backend.location} (the default location)`,
          {
            hint: "give one with -r/--repo or FORGE_REPOSITORY, or run 'forge backup' once to create the default repository",
          },
        );
      }
      throw e;
    }
    return Repository.open(backend, { password: await this.password() });
  }
}

async function readPasswordFile(path: string, cwd: string): Promise<string> {
  try {
    const text = await readFile(resolve(cwd, path), 'utf8');
    const pw = text.replace(/\r?\n$/, '');
    if (pw === '') throw new ForgeError('FORGE_PASSWORD_REQUIRED', `password file ${path} is empty`);
    return pw;
  } catch (e) {
    if (e instanceof ForgeError) throw e;
    throw new ForgeError(
      'FORGE_PASSWORD_REQUIRED',
      `cannot read password file ${path}: ${(e as Error).message}`,
      { hint: 'check the path and its permissions' },
    );
  }
}

async function runPasswordCommand(command: string): Promise<string> {
  try {
    const { stdout } = await promisify(execFile)('/bin/sh', ['-c', command], {
      timeout: 60_000,
      maxBuffer: 1024 * 1024,
    });
    const pw = stdout.replace(/\r?\n$/, '');
    if (pw === '') throw new ForgeError('FORGE_PASSWORD_REQUIRED', 'the password command printed nothing');
    return pw;
  } catch (e) {
    if (e instanceof ForgeError) throw e;
    throw new ForgeError(
      'FORGE_PASSWORD_REQUIRED',
      `the password command failed: ${(e as Error).message.split('\n')[0]}`,
      {
        hint: 'run the command by hand to see why',
      },
    );
  }
}

/** Reads a line from the terminal without echoing it. */
async function prompt(io: Io, question: string): Promise<string> {
  io.stderr.write(question);
  const muted = new Writable({ write: (_c, _e, cb) => cb() });
  const rl = createInterface({ input: io.stdin, output: muted, terminal: true });
  try {
    return await new Promise<string>((res) => rl.question('', res));
  } finally {
    rl.close();
    io.stderr.write('\n');
  }
}
