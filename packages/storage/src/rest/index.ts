import { readFile } from 'node:fs/promises';
import type { StorageBackend } from '@backupforge/common';
import { ForgeError, ForgeErrorCodes } from '@backupforge/common';
import type { OpenBackendOptions } from '../open-backend.ts';
import { createHttpTransport } from './http-transport.ts';
import { parseRestLocation } from './location.ts';
import { createRestProtocolBackend } from './protocol.ts';
import { durationSetting, intSetting, namespaceSettings } from './settings.ts';

export type { RestLocation } from './location.ts';
export { parseRestLocation } from './location.ts';

/** Settings of the `rest:` backend (`-o key=value`). */
export const REST_SETTINGS = ['rest.connections', 'rest.ca', 'rest.timeout'] as const;

const DEFAULT_CONNECTIONS = 8;
const DEFAULT_TIMEOUT_MS = 120_000;

export interface RestBackendOptions {
  /** The repository URL, `http(s)://[user[:password]@]host[:port]/path/`. */
  readonly url: string | URL;
  /** Overrides the URL's user name. */
  readonly username?: string;
  /** Overrides the URL's password. */
  readonly password?: string;
  /** Most concurrent requests and kept-alive sockets. Default 8. */
  readonly connections?: number;
  /** PEM CA certificate(s) to trust for https instead of Node's built-in list. */
  readonly ca?: string | Uint8Array;
  /** A request fails (retryably) when the server sends nothing for this long. Default 120 s; 0 = never. */
  readonly timeoutMs?: number;
}

/**
 * A client of restic's REST server protocol v2 (rest-server, `rclone serve restic`, …) over
 * HTTP/1.1 keep-alive. `location` is `rest:<url>` without the password; `properties()` is
 * `{ atomicReplace: false, connections }` (see docs/backends/rest.md). Throws `FORGE_USAGE` for
 * a malformed URL.
 *
 * ```ts
 * const backend = createRestBackend({ url: 'https://alice:pw@backup.example.com/alice/' });
 * await backend.create();
 * ```
 */
export function createRestBackend(options: RestBackendOptions): StorageBackend {
  const parsed = parseRestLocation(String(options.url));
  const username = options.username ?? parsed.username;
  const password = options.password ?? parsed.password;
  const connections = options.connections ?? DEFAULT_CONNECTIONS;
  if (!Number.isSafeInteger(connections) || connections < 1) {
    throw new ForgeError(ForgeErrorCodes.FORGE_USAGE, `invalid REST connection count ${connections}`);
  }
  const authorization =
    username === undefined
      ? undefined
      : `Basic ${Buffer.from(`${username}:${password ?? ''}`, 'utf8').toString('base64')}`;
  const transport = createHttpTransport({
    url: parsed.url,
    ...(authorization === undefined ? {} : { authorization }),
    connections,
    ...(options.ca === undefined ? {} : { ca: options.ca }),
    timeoutMs: options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
  });
  return createRestProtocolBackend({
    transport,
    location: parsed.location,
    connections,
    authHint:
      username === undefined
        ? 'the server wants credentials: put them in the URL (https://user:password@host/path/) or set FORGE_REST_USERNAME and FORGE_REST_PASSWORD'
        : 'check the user name and password (in the URL or FORGE_REST_USERNAME / FORGE_REST_PASSWORD) and that this user may access this path',
  });
}

/**
 * Opens the REST backend for the part of a repository location after 'rest:'. Reads credentials
 * from the URL or `FORGE_REST_USERNAME`/`FORGE_REST_PASSWORD` in `options.env`, and the settings
 * `rest.connections`, `rest.ca` (a PEM file) and `rest.timeout` (`90s`, `5m`).
 */
export async function openRestLocation(rest: string, options: OpenBackendOptions): Promise<StorageBackend> {
  const env = options.env ?? process.env;
  const settings = namespaceSettings(options.settings, 'rest', REST_SETTINGS);
  const parsed = parseRestLocation(rest, env);
  const connections = settings.has('rest.connections')
    ? intSetting('rest.connections', settings.get('rest.connections')!, 256)
    : DEFAULT_CONNECTIONS;
  const timeoutMs = settings.has('rest.timeout')
    ? durationSetting('rest.timeout', settings.get('rest.timeout')!)
    : DEFAULT_TIMEOUT_MS;
  let ca: string | undefined;
  const caFile = settings.get('rest.ca');
  if (caFile !== undefined) {
    if (parsed.url.protocol !== 'https:') {
      throw new ForgeError(
        ForgeErrorCodes.FORGE_USAGE,
        `rest.ca is only used with https, not ${parsed.location}`,
      );
    }
    try {
      ca = await readFile(caFile, 'utf8');
    } catch (e) {
      throw new ForgeError(ForgeErrorCodes.FORGE_USAGE, `cannot read the CA file '${caFile}' of rest.ca`, {
        cause: e,
        hint: 'give the path of a PEM certificate file',
      });
    }
  }
  if (parsed.password !== undefined && parsed.url.protocol === 'http:' && !isLoopback(parsed.url.hostname)) {
    options.onWarning?.(
      `the REST password for ${parsed.location} is sent unencrypted over http: use https if the network is not trusted`,
    );
  }
  return createRestBackend({
    url: rest, // parsed again without env, so the location keeps the URL's user name
    ...(parsed.username === undefined ? {} : { username: parsed.username }),
    ...(parsed.password === undefined ? {} : { password: parsed.password }),
    connections,
    ...(ca === undefined ? {} : { ca }),
    timeoutMs,
  });
}

function isLoopback(hostname: string): boolean {
  return hostname === 'localhost' || hostname === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(hostname);
}
