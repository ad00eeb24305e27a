import { STATUS_CODES } from 'node:http';
import { setTimeout as delay } from 'node:timers/promises';
import type {
  BackendProperties,
  ByteRange,
  ForgeErrorCode,
  ObjectHandle,
  ObjectInfo,
  ObjectType,
  StorageBackend,
} from '@backupforge/common';
import {
  ForgeError,
  ForgeErrorCodes,
  isForgeError,
  OBJECT_DIRS,
  objectKey,
  toForgeError,
} from '@backupforge/common';
import { checkHandle, checkRange, checkType } from '../internal/check-handle.ts';

/** The media type that selects version 2 of restic's REST protocol (listings with sizes). */
export const REST_V2 = 'application/vnd.x.restic.rest.v2';
const REST_V1 = 'application/vnd.x.restic.rest.v1';

export type RestMethod = 'GET' | 'HEAD' | 'POST' | 'DELETE';

/** One request of restic's REST protocol, relative to the repository root. */
export interface RestRequest {
  readonly method: RestMethod;
  /** Relative to the repository URL, without a leading '/': `config`, `keys/<name>`, `data/`, `?create=true`. */
  readonly path: string;
  /** Lower-case header names. */
  readonly headers?: Readonly<Record<string, string>>;
  readonly body?: Uint8Array;
}

export interface RestResponse {
  readonly status: number;
  /** Lower-case header names. */
  readonly headers: Readonly<Record<string, string | undefined>>;
  /** The whole body (empty for HEAD). */
  readonly body: Uint8Array;
}

/**
 * How REST requests reach a server: HTTP/1.1 over TCP (`rest:`) or HTTP/2 over an rclone child's
 * stdio (`rclone:`). Network failures MUST reject with a `ForgeError` (`FORGE_IO`, retryable when
 * a retry may help); any HTTP status resolves.
 */
export interface RestTransport {
  request(request: RestRequest): Promise<RestResponse>;
  close(): Promise<void>;
  /** A recent line of the server's log worth adding to an error message (rclone's stderr). */
  recentServerLog?(): string | undefined;
}

export interface RestProtocolOptions {
  readonly transport: RestTransport;
  /** Shown in messages and as `StorageBackend.location`: never contains secrets. */
  readonly location: string;
  /** How many requests run at once; more wait. */
  readonly connections: number;
  /** What to do about 401/403 answers. */
  readonly authHint: string;
}

const TYPE_DIRS = OBJECT_DIRS;

const APPEND_ONLY_HINT =
  'the server probably runs in append-only mode (rest-server or rclone serve restic --append-only), ' +
  'which only allows deleting locks';

/**
 * A `StorageBackend` speaking restic's REST protocol (v2) over any `RestTransport`:
 * `POST /?create=true`, `HEAD|GET|POST|DELETE /config` and `/{type}/{name}`, `GET /{type}/`.
 * The server maps `data/<name>` to `data/<name[0..2]>/<name>` and lists all of them.
 */
export function createRestProtocolBackend(options: RestProtocolOptions): StorageBackend {
  return new RestProtocolBackend(options);
}

class RestProtocolBackend implements StorageBackend {
  readonly location: string;
  readonly #transport: RestTransport;
  readonly #properties: BackendProperties;
  readonly #slots: Semaphore;
  readonly #authHint: string;

  constructor(options: RestProtocolOptions) {
    this.location = options.location;
    this.#transport = options.transport;
    this.#properties = Object.freeze({
      // rest-server refuses to overwrite (replacing falls back to delete + upload) and rclone
      // writes many remotes in place: neither replaces atomically.
      atomicReplace: false,
      connections: options.connections,
    });
    this.#slots = new Semaphore(options.connections);
    this.#authHint = options.authHint;
  }

  properties(): BackendProperties {
    return this.#properties;
  }

  async create(): Promise<void> {
    const what = 'the repository';
    const res = await this.#send('create', what, { method: 'POST', path: '?create=true' });
    if (isSuccess(res.status)) return;
    // Some servers refuse to create what exists: an existing repository is fine.
    if (res.status !== 401 && res.status < 500) {
      const config = await this.#send('create', what, { method: 'HEAD', path: 'config' });
      if (config.status === 200) return;
    }
    throw await this.#statusError('create', what, res);
  }

  async save(handle: ObjectHandle, data: Uint8Array): Promise<void> {
    checkHandle(handle);
    const what = objectKey(handle);
    const res = await this.#post(handle, data, what);
    if (isSuccess(res.status)) return;
    if (res.status === 403) return this.#saveRefused(handle, data, what, res);
    throw await this.#statusError('save', what, res);
  }

  /**
   * A 403 on POST: rest-server never overwrites an object, and both it and rclone refuse in
   * append-only mode. Objects other than config and locks are named by the SHA-256 of their
   * content, so an existing one of the same size is the same object. Config and locks are
   * replaced by delete + upload (not atomic, hence `atomicReplace: false`).
   */
  async #saveRefused(
    handle: ObjectHandle,
    data: Uint8Array,
    what: string,
    refused: RestResponse,
  ): Promise<void> {
    let existing: ObjectInfo;
    try {
      existing = await this.stat(handle);
    } catch (e) {
      if (isForgeError(e, 'FORGE_NOT_FOUND')) throw await this.#statusError('save', what, refused);
      throw e;
    }
    if (handle.type !== 'config' && handle.type !== 'lock') {
      if (existing.size === data.byteLength) return;
      throw this.#error('save', what, ForgeErrorCodes.FORGE_ALREADY_EXISTS, {
        reason: `it exists with ${existing.size} bytes instead of ${data.byteLength} and the server refuses to overwrite it`,
        hint: 'run a repository check: an object whose name is its content hash cannot change size',
      });
    }
    const old = handle.type === 'config' ? await this.load(handle) : undefined;
    const deleted = await this.#send('save', what, { method: 'DELETE', path: restPath(handle) });
    if (deleted.status === 403) {
      throw this.#error('save', what, ForgeErrorCodes.FORGE_PERMISSION, {
        reason: 'the server refuses to overwrite or delete it (HTTP 403)',
        hint: APPEND_ONLY_HINT,
      });
    }
    if (!isSuccess(deleted.status) && deleted.status !== 404) {
      throw await this.#statusError('save', what, deleted);
    }
    let again: RestResponse | undefined;
    try {
      again = await this.#post(handle, data, what);
      if (isSuccess(again.status)) return;
    } finally {
      // Put the previous config back rather than leave none.
      if (old !== undefined && (again === undefined || !isSuccess(again.status))) {
        await this.#post(handle, old, what).catch(() => undefined);
      }
    }
    throw await this.#statusError('save', what, again!);
  }

  #post(handle: ObjectHandle, data: Uint8Array, what: string): Promise<RestResponse> {
    return this.#send('save', what, {
      method: 'POST',
      path: restPath(handle),
      headers: { 'content-type': 'application/octet-stream', 'content-length': String(data.byteLength) },
      body: data,
    });
  }

  async load(handle: ObjectHandle, range?: ByteRange): Promise<Uint8Array> {
    checkHandle(handle);
    const what = objectKey(handle);
    if (range === undefined) {
      const res = await this.#send('load', what, { method: 'GET', path: restPath(handle) });
      if (res.status === 200) return res.body;
      throw await this.#statusError('load', what, res);
    }
    // Validates the numbers only; the real size is checked below.
    checkRange(range, Number.MAX_SAFE_INTEGER, `${this.location} ${what}`);
    const { offset, length } = range;
    if (length === 0) {
      // 'bytes=a-(a-1)' cannot be said in HTTP: the size decides.
      const { size } = await this.#stat(handle, 'load', what);
      checkRange(range, size, `${this.location} ${what}`);
      return new Uint8Array(0);
    }
    const res = await this.#send('load', what, {
      method: 'GET',
      path: restPath(handle),
      headers: { range: `bytes=${offset}-${offset + length - 1}` },
    });
    if (res.status === 206) {
      const contentRange = parseContentRange(res.headers['content-range']);
      if (contentRange !== undefined && contentRange.start !== offset) {
        throw this.#error('load', what, ForgeErrorCodes.FORGE_IO, {
          reason: `asked for bytes from ${offset}, the server sent bytes from ${contentRange.start}`,
        });
      }
      if (res.body.byteLength < length) {
        // A range past the end: rclone answers with fewer bytes (or none), not 416.
        throw this.#rangeError(what, range, contentRange?.size, res.body.byteLength);
      }
      return res.body.byteLength === length ? res.body : res.body.slice(0, length);
    }
    if (res.status === 200) {
      // The server ignored Range and sent the whole object.
      if (res.body.byteLength < offset + length) throw this.#rangeError(what, range, res.body.byteLength);
      return res.body.slice(offset, offset + length);
    }
    if (res.status === 416) {
      throw this.#rangeError(what, range, parseContentRange(res.headers['content-range'])?.size);
    }
    throw await this.#statusError('load', what, res);
  }

  #rangeError(what: string, range: ByteRange, size?: number, got?: number): ForgeError {
    if (size !== undefined && Number.isSafeInteger(size)) {
      try {
        checkRange(range, size, `${this.location} ${what}`);
      } catch (e) {
        return e as ForgeError;
      }
    }
    return new ForgeError(
      ForgeErrorCodes.FORGE_RANGE,
      `range {offset: ${range.offset}, length: ${range.length}} reaches past the end of ${this.location} ${what}` +
        (got === undefined ? '' : ` (the server sent ${got} bytes)`),
      { details: { offset: range.offset, length: range.length, location: this.location, object: what } },
    );
  }

  async stat(handle: ObjectHandle): Promise<ObjectInfo> {
    checkHandle(handle);
    return this.#stat(handle, 'stat', objectKey(handle));
  }

  async #stat(handle: ObjectHandle, op: string, what: string): Promise<ObjectInfo> {
    const res = await this.#send(op, what, { method: 'HEAD', path: restPath(handle) });
    if (res.status !== 200) throw await this.#statusError(op, what, res);
    const size = parseLength(res.headers['content-length']);
    if (size === undefined) {
      throw this.#error(op, what, ForgeErrorCodes.FORGE_IO, {
        reason: `the server's HEAD answer has no valid Content-Length (${res.headers['content-length'] ?? 'none'})`,
      });
    }
    return { name: handle.type === 'config' ? 'config' : handle.name, size };
  }

  async *list(type: ObjectType): AsyncIterable<ObjectInfo> {
    checkType(type);
    if (type === 'config') {
      try {
        yield await this.#stat({ type, name: 'config' }, 'list', 'config');
      } catch (e) {
        if (!isForgeError(e, 'FORGE_NOT_FOUND')) throw e;
      }
      return;
    }
    const what = `${TYPE_DIRS[type]}/`;
    const res = await this.#send('list', what, { method: 'GET', path: what });
    if (res.status === 404) {
      // rest-server: the directory is missing, so nothing is stored. rclone lists missing
      // directories as empty and answers 404 for real failures (rclone/rclone#7550).
      if (!(res.headers.server ?? '').startsWith('rclone/')) return;
      throw await this.#statusError('list', what, res, true);
    }
    if (res.status !== 200) throw await this.#statusError('list', what, res);
    let parsed: unknown;
    try {
      parsed = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(res.body));
    } catch (e) {
      throw this.#error('list', what, ForgeErrorCodes.FORGE_IO, {
        reason: `the server's listing is not JSON (${(e as Error).message})`,
        cause: e,
      });
    }
    if (!Array.isArray(parsed)) {
      throw this.#error('list', what, ForgeErrorCodes.FORGE_IO, {
        reason: "the server's listing is not a JSON array",
      });
    }
    const v1 =
      (res.headers['content-type'] ?? '').startsWith(REST_V1) || parsed.every((x) => typeof x === 'string');
    for (const item of parsed as unknown[]) {
      if (v1 && typeof item === 'string') {
        // A v1 server lists names only: ask for each size. Skip what was removed since.
        if (!isObjectName(type, item)) continue;
        try {
          yield await this.#stat({ type, name: item }, 'list', `${TYPE_DIRS[type]}/${item}`);
        } catch (e) {
          if (!isForgeError(e, 'FORGE_NOT_FOUND')) throw e;
        }
        continue;
      }
      const entry = item as { name?: unknown; size?: unknown } | null;
      if (
        entry === null ||
        typeof entry !== 'object' ||
        typeof entry.name !== 'string' ||
        typeof entry.size !== 'number' ||
        !Number.isSafeInteger(entry.size) ||
        entry.size < 0
      ) {
        throw this.#error('list', what, ForgeErrorCodes.FORGE_IO, {
          reason: `the server's listing has a malformed entry ${JSON.stringify(item)?.slice(0, 200)}`,
        });
      }
      // Temporary files of uploads in progress (rest-server's '<id>.rest-server-temp…', newer rclone's
      // '<name>.<random>.partial') are not valid object names.
      if (isObjectName(type, entry.name)) yield { name: entry.name, size: entry.size };
    }
  }

  async remove(handle: ObjectHandle): Promise<void> {
    checkHandle(handle);
    const what = objectKey(handle);
    const res = await this.#send('remove', what, { method: 'DELETE', path: restPath(handle) });
    if (isSuccess(res.status) || res.status === 404) return;
    if (res.status === 403) {
      throw this.#error('remove', what, ForgeErrorCodes.FORGE_PERMISSION, {
        reason: 'the server refuses to delete it (HTTP 403)',
        hint: APPEND_ONLY_HINT,
      });
    }
    throw await this.#statusError('remove', what, res);
  }

  async close(): Promise<void> {
    await this.#transport.close();
  }

  async #send(op: string, what: string, request: RestRequest): Promise<RestResponse> {
    let res: RestResponse;
    try {
      res = await this.#slots.run(() =>
        this.#transport.request({ ...request, headers: { accept: REST_V2, ...request.headers } }),
      );
    } catch (e) {
      const inner = toForgeError(e);
      throw this.#error(op, what, inner.code, {
        reason: inner.message,
        retryable: inner.retryable,
        hint: inner.hint,
        cause: e,
      });
    }
    const declared = parseLength(res.headers['content-length']);
    if (request.method !== 'HEAD' && declared !== undefined && declared !== res.body.byteLength) {
      throw this.#error(op, what, ForgeErrorCodes.FORGE_IO, {
        reason: `the answer ended after ${res.body.byteLength} of ${declared} bytes`,
        retryable: true,
      });
    }
    return res;
  }

  async #statusError(
    op: string,
    what: string,
    res: RestResponse,
    serverFailure = false,
  ): Promise<ForgeError> {
    let reason = `HTTP ${res.status} ${STATUS_CODES[res.status] ?? ''}`.trimEnd();
    const text = bodyText(res);
    if (text !== undefined && text !== STATUS_CODES[res.status]) reason += ` (${text})`;
    const status = res.status;
    const failed = serverFailure || status >= 500;
    if (failed && this.#transport.recentServerLog !== undefined) {
      await delay(50); // the server logs the failure on another pipe: give the line a moment
      const log = this.#transport.recentServerLog();
      if (log !== undefined) reason += `; server log: ${log}`;
    }
    const details = { status };
    if (serverFailure) {
      return this.#error(op, what, ForgeErrorCodes.FORGE_IO, { reason, retryable: true, details });
    }
    if (status === 401 || status === 403) {
      return this.#error(op, what, ForgeErrorCodes.FORGE_AUTH, { reason, hint: this.#authHint, details });
    }
    if (status === 404) return this.#error(op, what, ForgeErrorCodes.FORGE_NOT_FOUND, { reason, details });
    if (status === 416) return this.#error(op, what, ForgeErrorCodes.FORGE_RANGE, { reason, details });
    const retryable = failed || status === 408 || status === 429;
    const hint =
      op === 'save' && status === 400
        ? 'rest-server answers 400 when an object does not hash to its name; lock names are random, so ' +
          'start rest-server with --no-verify-upload'
        : undefined;
    return this.#error(op, what, ForgeErrorCodes.FORGE_IO, { reason, retryable, hint, details });
  }

  #error(
    op: string,
    what: string,
    code: ForgeErrorCode,
    o: {
      reason: string;
      retryable?: boolean;
      hint?: string | undefined;
      cause?: unknown;
      details?: Record<string, unknown>;
    },
  ): ForgeError {
    return new ForgeError(code, `${this.location}: cannot ${op} ${what}: ${o.reason}`, {
      retryable: o.retryable ?? false,
      ...(o.hint === undefined ? {} : { hint: o.hint }),
      ...(o.cause === undefined ? {} : { cause: o.cause }),
      details: { location: this.location, operation: op, object: what, ...o.details },
    });
  }
}

function restPath(handle: ObjectHandle): string {
  return handle.type === 'config' ? 'config' : `${TYPE_DIRS[handle.type]}/${handle.name}`;
}

function isSuccess(status: number): boolean {
  return status >= 200 && status < 300;
}

function isObjectName(type: ObjectType, name: string): boolean {
  try {
    checkHandle({ type, name });
    return true;
  } catch {
    return false;
  }
}

function parseLength(value: string | undefined): number | undefined {
  if (value === undefined || !/^\d+$/.test(value.trim())) return undefined;
  const n = Number(value);
  return Number.isSafeInteger(n) ? n : undefined;
}

/** Parses `bytes 10-19/1000`, or `bytes *` + `/1000` (416 answers). */
function parseContentRange(value: string | undefined): { start?: number; size?: number } | undefined {
  const m = value === undefined ? null : /^\s*bytes\s+(?:(\d+)-\d+|\*)\/(\d+|\*)\s*$/i.exec(value);
  if (m === null) return undefined;
  return {
    ...(m[1] === undefined ? {} : { start: Number(m[1]) }),
    ...(m[2] === undefined || m[2] === '*' ? {} : { size: Number(m[2]) }),
  };
}

/** The first line of a short text body (servers explain errors there). */
function bodyText(res: RestResponse): string | undefined {
  if (res.body.byteLength === 0 || res.body.byteLength > 4096) return undefined;
  const type = res.headers['content-type'] ?? 'text/plain';
  if (!type.startsWith('text/')) return undefined;
  const line = new TextDecoder().decode(res.body).trim().split('\n')[0]?.trim();
  return line ? line.slice(0, 200) : undefined;
}

/** Lets at most `n` calls run at once, the others wait in order. */
class Semaphore {
  #free: number;
  readonly #waiting: (() => void)[] = [];

  constructor(n: number) {
    this.#free = n;
  }

  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#free > 0) this.#free--;
    else await new Promise<void>((resolve) => this.#waiting.push(resolve));
    try {
      return await fn();
    } finally {
      const next = this.#waiting.shift();
      if (next) next();
      else this.#free++;
    }
  }
}
