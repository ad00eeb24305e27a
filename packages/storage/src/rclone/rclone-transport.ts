import type { ChildProcess } from 'node:child_process';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import type { ClientHttp2Session, ClientHttp2Stream, IncomingHttpHeaders } from 'node:http2';
import { connect as http2Connect, constants as http2Constants } from 'node:http2';
import type { Socket } from 'node:net';
import { createServer, connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { ForgeError, ForgeErrorCodes } from '@backupforge/common';
import { concat } from '../rest/http-transport.ts';
import type { RestRequest, RestResponse, RestTransport } from '../rest/protocol.ts';

export interface RcloneTransportOptions {
  /** The rclone executable (a name looked up in PATH, or a path). */
  readonly program: string;
  /** Its whole argument list: `serve restic --stdio … remote:path`. */
  readonly args: readonly string[];
  readonly env: NodeJS.ProcessEnv;
  /** A request fails (retryably) when its stream is idle this long; 0 = never. */
  readonly timeoutMs: number;
}

/** stderr lines kept per process, for error messages. */
const KEPT_LINES = 50;
/** How long a failed request waits for rclone to exit, to report its status and last words. */
const EXIT_GRACE_MS = 300;

/**
 * Runs `rclone serve restic --stdio` and speaks HTTP/2 (cleartext, prior knowledge) with it over
 * its stdin/stdout, as restic does. The child starts on the first request. When it dies, pending
 * and concurrent requests reject with a retryable `FORGE_IO` carrying rclone's last stderr line,
 * and the next request starts a new one. `close()` ends the session and waits for the child.
 *
 * The child's stdin and stdout are one end of a connected Unix socket pair rather than two pipes:
 * Node's HTTP/2 then runs on a native socket. (Wrapping two pipes in a JS `Duplex` works until
 * the child dies or the session closes, where Node 24 can hit an internal assertion in
 * `JSStreamSocket` and abort the process.)
 */
export function createRcloneTransport(options: RcloneTransportOptions): RestTransport {
  return new RcloneTransport(options);
}

class RcloneTransport implements RestTransport {
  readonly #options: RcloneTransportOptions;
  #current: RcloneProcess | undefined;
  #starting: Promise<RcloneProcess> | undefined;
  #closed = false;

  constructor(options: RcloneTransportOptions) {
    this.#options = options;
  }

  async request(request: RestRequest): Promise<RestResponse> {
    const proc = await this.#process();
    return proc.request(request, this.#options.timeoutMs);
  }

  recentServerLog(): string | undefined {
    return this.#current?.recentError();
  }

  async #process(): Promise<RcloneProcess> {
    if (this.#closed) throw new ForgeError(ForgeErrorCodes.FORGE_IO, 'the backend was closed');
    if (this.#current?.alive) return this.#current;
    this.#starting ??= this.#start().finally(() => {
      this.#starting = undefined;
    });
    return this.#starting;
  }

  async #start(): Promise<RcloneProcess> {
    const dead = this.#current;
    this.#current = undefined;
    dead?.kill();
    const proc = await RcloneProcess.start(this.#options);
    if (this.#closed) {
      await proc.stop();
      throw new ForgeError(ForgeErrorCodes.FORGE_IO, 'the backend was closed');
    }
    this.#current = proc;
    return proc;
  }

  async close(): Promise<void> {
    this.#closed = true;
    const proc = this.#current ?? (await this.#starting?.catch(() => undefined));
    this.#current = undefined;
    await proc?.stop();
  }
}

class RcloneProcess {
  readonly #program: string;
  readonly #child: ChildProcess;
  readonly #socket: Socket;
  readonly #session: ClientHttp2Session;
  readonly #lines: { at: number; text: string }[] = [];
  #partialLine = '';
  #exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  readonly #exited: Promise<void>;

  static async start(options: RcloneTransportOptions): Promise<RcloneProcess> {
    const [mine, theirs] = await socketPair();
    let child: ChildProcess;
    try {
      child = spawn(options.program, options.args, {
        stdio: [theirs, theirs, 'pipe'],
        env: options.env,
        windowsHide: true,
      });
    } catch (e) {
      mine.destroy();
      throw spawnError(options.program, e);
    } finally {
      theirs.destroy(); // the child has its own copy now; ours would hide its exit from us
    }
    try {
      await new Promise<void>((resolve, reject) => {
        child.once('spawn', resolve);
        child.once('error', reject);
      });
    } catch (e) {
      mine.destroy();
      throw spawnError(options.program, e);
    }
    return new RcloneProcess(options.program, child, mine);
  }

  private constructor(program: string, child: ChildProcess, socket: Socket) {
    this.#program = program;
    this.#child = child;
    this.#socket = socket;
    child.on('error', () => {}); // kill() failures; the exit is what counts
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (text: string) => this.#onStderr(text));
    this.#exited = new Promise((resolve) => {
      // 'close' comes after stderr is drained, so the last words are in.
      child.once('close', (code, signal) => {
        this.#onStderr('\n');
        this.#exit = { code, signal };
        this.#session.destroy();
        socket.destroy();
        resolve();
      });
    });
    socket.on('error', () => {}); // reported by the session's streams
    this.#session = http2Connect('http://localhost', { createConnection: () => socket });
    this.#session.on('error', () => {}); // each stream reports its own failure
  }

  get alive(): boolean {
    return this.#exit === undefined && !this.#session.closed && !this.#session.destroyed;
  }

  request(request: RestRequest, timeoutMs: number): Promise<RestResponse> {
    return new Promise((resolve, reject) => {
      let settled = false;
      const fail = (e: unknown) => {
        if (settled) return;
        settled = true;
        void this.#failure(e).then(reject);
      };
      let stream: ClientHttp2Stream;
      try {
        stream = this.#session.request(
          { ':method': request.method, ':path': `/${request.path}`, ...request.headers },
          { endStream: request.body === undefined },
        );
      } catch (e) {
        fail(e);
        return;
      }
      const chunks: Buffer[] = [];
      let total = 0;
      let status = 0;
      let headers: Record<string, string | undefined> = {};
      stream.on('response', (h) => {
        status = Number(h[':status']);
        headers = flatHeaders(h);
      });
      stream.on('data', (chunk: Buffer) => {
        chunks.push(chunk);
        total += chunk.length;
      });
      let ended = false;
      stream.on('end', () => {
        ended = true;
      });
      stream.on('error', fail);
      // Settle on 'close': a stream of a dying session also ends, but with an error code.
      stream.on('close', () => {
        if (settled) return;
        const declared = headers['content-length'];
        const whole = request.method === 'HEAD' || declared === undefined || Number(declared) === total;
        if (ended && status !== 0 && stream.rstCode === http2Constants.NGHTTP2_NO_ERROR && whole) {
          settled = true;
          resolve({ status, headers, body: concat(chunks, total) });
          return;
        }
        fail(
          new Error(
            status === 0
              ? `no answer (HTTP/2 stream code ${stream.rstCode})`
              : `the answer broke off after ${total} bytes (HTTP/2 stream code ${stream.rstCode})`,
          ),
        );
      });
      if (timeoutMs > 0) {
        stream.setTimeout(timeoutMs, () => {
          fail(
            new ForgeError(
              ForgeErrorCodes.FORGE_IO,
              `${this.#program} did not answer for ${Math.round(timeoutMs / 1000)} s`,
              { retryable: true, hint: 'check the remote and the network, or raise -o rclone.timeout' },
            ),
          );
          stream.close(http2Constants.NGHTTP2_CANCEL);
        });
      }
      const body = request.body;
      if (body !== undefined) stream.end(Buffer.from(body.buffer, body.byteOffset, body.byteLength));
    });
  }

  async #failure(e: unknown): Promise<ForgeError> {
    if (e instanceof ForgeError) return e;
    await Promise.race([this.#exited, delay(EXIT_GRACE_MS, undefined, { ref: false })]);
    const line = pickLine(this.#lines.map((l) => l.text));
    const said = line === undefined ? '' : `: ${line}`;
    const exit = this.#exit;
    if (exit === undefined) {
      const why = e instanceof Error ? e.message : String(e);
      return new ForgeError(
        ForgeErrorCodes.FORGE_IO,
        `the connection to ${this.#program} failed (${why})${said}`,
        {
          retryable: true,
          cause: e,
        },
      );
    }
    const how =
      exit.signal !== null ? `was killed by ${exit.signal}` : `exited with code ${exit.code ?? 'unknown'}`;
    const usageHint = line === undefined ? undefined : usageHintFor(line);
    if (usageHint !== undefined) {
      return new ForgeError(ForgeErrorCodes.FORGE_USAGE, `${this.#program} ${how}${said}`, {
        hint: usageHint,
        cause: e,
      });
    }
    return new ForgeError(ForgeErrorCodes.FORGE_IO, `${this.#program} ${how}${said}`, {
      retryable: true,
      hint: 'the next call starts rclone again',
      cause: e,
    });
  }

  /** The last error line rclone logged in the past few seconds. */
  recentError(): string | undefined {
    const since = Date.now() - 5000;
    const line = pickLine(this.#lines.filter((l) => l.at >= since).map((l) => l.text));
    return line !== undefined && ERROR_LINE.test(line) ? line : undefined;
  }

  #onStderr(text: string): void {
    const parts = (this.#partialLine + text).split(/\r?\n/);
    this.#partialLine = parts.pop() ?? '';
    const at = Date.now();
    for (const part of parts) {
      const line = part.trim();
      if (line !== '') this.#lines.push({ at, text: line });
    }
    if (this.#lines.length > KEPT_LINES) this.#lines.splice(0, this.#lines.length - KEPT_LINES);
  }

  /** Forgets a dead or broken process, making sure it is gone. */
  kill(): void {
    if (this.#exit === undefined) this.#child.kill('SIGKILL');
    this.#session.destroy();
    this.#socket.destroy();
  }

  /** Ends the session (rclone exits at end of input), then escalates to SIGTERM and SIGKILL. */
  async stop(): Promise<void> {
    if (this.#exit === undefined) {
      this.#session.close();
      if (!(await settlesWithin(this.#exited, 2000))) {
        this.#child.kill('SIGTERM');
        if (!(await settlesWithin(this.#exited, 2000))) {
          this.#child.kill('SIGKILL');
          await this.#exited;
        }
      }
    }
    this.#session.destroy();
    this.#socket.destroy();
  }
}

const ERROR_LINE = /error|fail|fatal|critical|panic|denied|refused/i;
const TIMESTAMP = /^\d{4}\/\d{2}\/\d{2} \d{2}:\d{2}:\d{2}(?:\.\d+)? /;

/** The most telling of rclone's log lines: the last error, else the last line. */
function pickLine(lines: readonly string[]): string | undefined {
  const useful = lines
    .map((l) => l.replace(TIMESTAMP, ''))
    .filter((l) => !/^NOTICE: Config file .* not found/.test(l));
  for (let i = useful.length - 1; i >= 0; i--) {
    if (ERROR_LINE.test(useful[i]!)) return useful[i]!.slice(0, 500);
  }
  return useful.at(-1)?.slice(0, 500);
}

function usageHintFor(line: string): string | undefined {
  if (/didn't find section in config file/.test(line)) {
    return "configure the remote with 'rclone config' (or RCLONE_CONFIG_<NAME>_TYPE and friends), or check its name";
  }
  if (/unknown (?:shorthand )?flag|unknown command|accepts \d+ arg/.test(line)) {
    return 'check the extra arguments given with -o rclone.args';
  }
  return undefined;
}

function spawnError(program: string, e: unknown): ForgeError {
  const code = (e as { code?: unknown } | null)?.code;
  if (code === 'ENOENT') {
    return new ForgeError(
      ForgeErrorCodes.FORGE_USAGE,
      `cannot run the rclone program '${program}': not found`,
      {
        cause: e,
        hint: "install rclone (https://rclone.org/install/, or 'apt install rclone') or give its path with -o rclone.program=/path/to/rclone",
      },
    );
  }
  if (code === 'EACCES') {
    return new ForgeError(
      ForgeErrorCodes.FORGE_USAGE,
      `cannot run the rclone program '${program}': permission denied`,
      { cause: e, hint: 'make it executable or give another path with -o rclone.program' },
    );
  }
  return new ForgeError(
    ForgeErrorCodes.FORGE_IO,
    `cannot start the rclone program '${program}': ${e instanceof Error ? e.message : String(e)}`,
    { cause: e, retryable: true },
  );
}

/**
 * A connected pair of Unix stream sockets: ours, and one to hand to the child. Listens on a
 * socket in a fresh owner-only directory, so no other user can connect first.
 */
async function socketPair(): Promise<[Socket, Socket]> {
  const dir = process.platform === 'win32' ? undefined : await mkdtemp(join(tmpdir(), 'forge-rclone-'));
  const path =
    dir === undefined ? `\\\\.\\pipe\\backupforge-rclone-${randomBytes(16).toString('hex')}` : join(dir, 's');
  const server = createServer();
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, resolve);
    });
    const accepted = new Promise<Socket>((resolve) => server.once('connection', resolve));
    const mine = netConnect(path);
    await new Promise<void>((resolve, reject) => {
      mine.once('connect', resolve);
      mine.once('error', reject);
    });
    return [mine, await accepted];
  } catch (e) {
    throw new ForgeError(ForgeErrorCodes.FORGE_IO, `cannot make a socket pair for rclone: ${String(e)}`, {
      cause: e,
      retryable: true,
    });
  } finally {
    server.close();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true }).catch(() => undefined);
  }
}

async function settlesWithin(promise: Promise<void>, ms: number): Promise<boolean> {
  return Promise.race([promise.then(() => true), delay(ms, undefined, { ref: false }).then(() => false)]);
}

function flatHeaders(h: IncomingHttpHeaders): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = {};
  for (const [key, value] of Object.entries(h)) {
    if (key.startsWith(':')) continue;
    out[key] = Array.isArray(value) ? value.join(', ') : value;
  }
  return out;
}
