import type { ClientRequest, IncomingMessage } from 'node:http';
import { Agent as HttpAgent, request as httpRequest } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { ForgeError, ForgeErrorCodes, TRANSIENT_NETWORK_CODES } from '@backupforge/common';
import type { RestRequest, RestResponse, RestTransport } from './protocol.ts';

export interface HttpTransportOptions {
  /** The repository URL: http(s), path ending in '/', no user info. */
  readonly url: URL;
  /** The `Authorization` header value, if any. */
  readonly authorization?: string;
  /** Most sockets kept open to the server. */
  readonly connections: number;
  /** PEM CA certificates to trust instead of Node's defaults (https only). */
  readonly ca?: string | Uint8Array;
  /** A request fails when its socket is idle this long; 0 = never. */
  readonly timeoutMs: number;
}

/** Network errors that a retry may fix. */
const RETRYABLE = TRANSIENT_NETWORK_CODES;

/** HTTP/1.1 with keep-alive sockets (at most `connections`), over TCP or TLS. */
export function createHttpTransport(options: HttpTransportOptions): RestTransport {
  return new HttpTransport(options);
}

class HttpTransport implements RestTransport {
  readonly #url: URL;
  readonly #https: boolean;
  readonly #agent: HttpAgent;
  readonly #authorization: string | undefined;
  readonly #timeoutMs: number;
  #closed = false;

  constructor(options: HttpTransportOptions) {
    this.#url = options.url;
    this.#https = options.url.protocol === 'https:';
    const agentOptions = {
      keepAlive: true,
      maxSockets: options.connections,
      maxFreeSockets: options.connections,
    };
    this.#agent = this.#https
      ? new HttpsAgent({ ...agentOptions, ...(options.ca === undefined ? {} : { ca: caText(options.ca) }) })
      : new HttpAgent(agentOptions);
    this.#authorization = options.authorization;
    this.#timeoutMs = options.timeoutMs;
  }

  async request(request: RestRequest): Promise<RestResponse> {
    if (this.#closed) {
      throw new ForgeError(ForgeErrorCodes.FORGE_IO, 'the backend was closed');
    }
    try {
      return await this.#once(request);
    } catch (e) {
      // A kept-alive socket the server closed meanwhile fails before any answer: send once more
      // on a fresh one (every request of this protocol may be repeated).
      if (!(e instanceof StaleSocket)) throw this.#networkError(e);
    }
    try {
      return await this.#once(request);
    } catch (e) {
      throw this.#networkError(e instanceof StaleSocket ? e.error : e);
    }
  }

  #once(request: RestRequest): Promise<RestResponse> {
    return new Promise((resolve, reject) => {
      const url = this.#url;
      const headers: Record<string, string> = { 'user-agent': 'backupforge', ...request.headers };
      if (this.#authorization !== undefined) headers.authorization = this.#authorization;
      let answered = false;
      let req: ClientRequest;
      const fail = (error: unknown) => {
        reject(!answered && req.reusedSocket && isResetLike(error) ? new StaleSocket(error) : error);
        req.destroy();
      };
      const onResponse = (res: IncomingMessage) => {
        answered = true;
        const chunks: Buffer[] = [];
        let total = 0;
        res.on('data', (chunk: Buffer) => {
          chunks.push(chunk);
          total += chunk.length;
        });
        res.on('error', fail);
        res.on('close', () => {
          if (!res.complete) {
            fail(
              new ForgeError(
                ForgeErrorCodes.FORGE_IO,
                `the connection to ${url.host} closed after ${total} bytes of the answer`,
                { retryable: true },
              ),
            );
          }
        });
        res.on('end', () => {
          resolve({ status: res.statusCode ?? 0, headers: flatHeaders(res), body: concat(chunks, total) });
        });
      };
      const options = {
        agent: this.#agent,
        method: request.method,
        hostname: url.hostname.replace(/^\[(.*)\]$/, '$1'),
        port: url.port === '' ? undefined : Number(url.port),
        path: url.pathname + request.path,
        headers,
      };
      req = this.#https ? httpsRequest(options, onResponse) : httpRequest(options, onResponse);
      req.on('error', fail);
      if (this.#timeoutMs > 0) {
        req.setTimeout(this.#timeoutMs, () => {
          fail(
            new ForgeError(
              ForgeErrorCodes.FORGE_IO,
              `${url.host} did not answer for ${Math.round(this.#timeoutMs / 1000)} s`,
              { retryable: true, hint: 'check the server and the network, or raise -o rest.timeout' },
            ),
          );
        });
      }
      const body = request.body;
      req.end(body === undefined ? undefined : Buffer.from(body.buffer, body.byteOffset, body.byteLength));
    });
  }

  #networkError(e: unknown): ForgeError {
    if (e instanceof ForgeError) return e;
    const err = e as { code?: unknown; message?: unknown };
    const code = typeof err.code === 'string' ? err.code : undefined;
    const message = String(err.message ?? e);
    const host = this.#url.host;
    if (code === 'ENOTFOUND') {
      return new ForgeError(ForgeErrorCodes.FORGE_IO, `cannot resolve the host name ${this.#url.hostname}`, {
        cause: e,
        hint: 'check the host name in the repository URL',
      });
    }
    if (code !== undefined && /CERT|SSL|TLS|SELF_SIGNED|UNABLE_TO_VERIFY|HOSTNAME|ALTNAME/.test(code)) {
      return new ForgeError(ForgeErrorCodes.FORGE_IO, `TLS failed with ${host}: ${message} (${code})`, {
        cause: e,
        hint: "trust the server's CA certificate with -o rest.ca=FILE, or check the host name in the URL",
      });
    }
    const retryable = code === undefined || RETRYABLE.has(code);
    return new ForgeError(
      ForgeErrorCodes.FORGE_IO,
      code === undefined || message.includes(code)
        ? `request to ${host} failed: ${message}`
        : `request to ${host} failed: ${message} (${code})`,
      { cause: e, retryable },
    );
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#agent.destroy();
  }
}

class StaleSocket {
  readonly error: unknown;
  constructor(error: unknown) {
    this.error = error;
  }
}

function isResetLike(e: unknown): boolean {
  const code = (e as { code?: unknown } | null)?.code;
  return code === 'ECONNRESET' || code === 'EPIPE' || code === 'ECONNABORTED';
}

function flatHeaders(res: IncomingMessage): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = {};
  for (const [key, value] of Object.entries(res.headers)) {
    out[key] = Array.isArray(value) ? value.join(', ') : value;
  }
  return out;
}

/** One fresh `Uint8Array` (never a view of Node's shared buffer pool). */
export function concat(chunks: readonly Uint8Array[], total: number): Uint8Array {
  const out = new Uint8Array(total);
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.byteLength;
  }
  return out;
}

function caText(ca: string | Uint8Array): string {
  return typeof ca === 'string' ? ca : Buffer.from(ca.buffer, ca.byteOffset, ca.byteLength).toString('utf8');
}
