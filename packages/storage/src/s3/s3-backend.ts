import { createHash } from 'node:crypto';
import type { BucketLocationConstraint, S3Client, StorageClass } from '@aws-sdk/client-s3';
import type {
  BackendProperties,
  ByteRange,
  ObjectHandle,
  ObjectInfo,
  ObjectType,
  StorageBackend,
} from '@backupforge/common';
import { ForgeError, ForgeErrorCodes, OBJECT_DIRS, objectKey } from '@backupforge/common';
import { checkHandle, checkRange, checkType } from '../internal/check-handle.ts';
import type { S3Credentials, S3Sdk } from './client.ts';
import { createS3Client, loadS3Sdk, readCaBundle } from './client.ts';
import { errorNameOf, httpStatusOf, s3Error } from './errors.ts';
import {
  DEFAULT_CONNECTIONS,
  DEFAULT_LIST_PAGE_SIZE,
  DEFAULT_PART_SIZE_MIB,
  displayLocation,
  MAX_PART_SIZE,
  MAX_PARTS,
  MIN_PART_SIZE,
} from './location.ts';

/** Everything `createS3Backend` needs. Secrets go in `credentials`, never in `location`. */
export interface S3BackendOptions {
  readonly bucket: string;
  /** Key prefix of the repository inside the bucket (`a/b`, no leading or trailing `/`). Default: the bucket root. */
  readonly prefix?: string;
  /** `http(s)://host[:port]` of an S3-compatible service; omit for AWS S3. */
  readonly endpoint?: string;
  /** Default `us-east-1`. */
  readonly region?: string;
  /** Path-style addressing. Default: true for a custom `endpoint`, false for AWS. */
  readonly pathStyle?: boolean;
  /** Static credentials. Without them the SDK's default provider chain is used (profiles, SSO, IMDS…). */
  readonly credentials?: S3Credentials;
  /** An AWS profile for the default provider chain. */
  readonly profile?: string;
  /**
   * Storage class of new objects. Archive classes (`GLACIER`, `DEEP_ARCHIVE`) apply to packs only:
   * keys, index, snapshots, locks and config must stay readable without a restore.
   */
  readonly storageClass?: string;
  /** Concurrent connections, and the parallelism of one multipart upload. Default 8. */
  readonly connections?: number;
  /** Multipart threshold and part size in bytes, 5 MiB to 5 GiB. Default 16 MiB. */
  readonly partSize?: number;
  /** `MaxKeys` of each ListObjectsV2 page, 1 to 1000. Default 1000. */
  readonly listPageSize?: number;
  /** A PEM file of extra CA certificates for https endpoints (`AWS_CA_BUNDLE`). */
  readonly caBundlePath?: string;
  /** The display location; default derived from endpoint, bucket and prefix. Must hold no secret. */
  readonly location?: string;
}

const TYPE_DIRS = OBJECT_DIRS;
const ARCHIVE_CLASSES = new Set(['GLACIER', 'DEEP_ARCHIVE']);
const SAFE_NAME = /^[A-Za-z0-9][A-Za-z0-9_-]*$/;
const MIB = 1024 * 1024;

interface ClientState {
  readonly sdk: S3Sdk;
  readonly client: S3Client;
}

/**
 * A repository in an S3 bucket (AWS or any S3-compatible service), under an optional key prefix,
 * with the layout `config`, `keys/<n>`, `data/<n[0..2]>/<n>`, `index/<n>`, `snapshots/<n>`,
 * `locks/<n>` (see `objectKey`).
 *
 * `save` is atomic: a PutObject, or above `partSize` a multipart upload whose object only appears
 * at CompleteMultipartUpload (the upload is aborted on failure). Uploads carry Content-MD5.
 * The SDK is imported on the first call, not when the backend is created. Calls are never retried
 * here: failures that may succeed again reject with `retryable: true` for the retry decorator.
 *
 * ```ts
 * const backend = createS3Backend({ endpoint: 'http://127.0.0.1:9000', bucket: 'backups', prefix: 'laptop',
 *   credentials: { accessKeyId, secretAccessKey } });
 * await backend.create();
 * ```
 */
export function createS3Backend(options: S3BackendOptions): StorageBackend {
  return new S3Backend(options);
}

class S3Backend implements StorageBackend {
  readonly location: string;
  readonly #options: S3BackendOptions;
  readonly #bucket: string;
  /** `''` or `prefix/`. */
  readonly #keyPrefix: string;
  readonly #region: string;
  readonly #pathStyle: boolean;
  readonly #connections: number;
  readonly #partSize: number;
  readonly #listPageSize: number;
  readonly #properties: BackendProperties;
  #state: Promise<ClientState> | undefined;
  #closed = false;

  constructor(options: S3BackendOptions) {
    if (typeof options.bucket !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$/.test(options.bucket)) {
      throw usage(`invalid S3 bucket name ${JSON.stringify(options.bucket)}`);
    }
    const prefix = (options.prefix ?? '').replace(/^\/+|\/+$/g, '');
    if (prefix.split('/').some((s) => s === '.' || s === '..') || prefix.includes('//')) {
      throw usage(`invalid S3 key prefix ${JSON.stringify(prefix)}: no '//', '.' or '..' segments`);
    }
    if (options.endpoint !== undefined && !/^https?:\/\/[^/@?#]+$/i.test(options.endpoint)) {
      throw usage('the S3 endpoint must be http(s)://host[:port], without path or credentials');
    }
    this.#options = options;
    this.#bucket = options.bucket;
    this.#keyPrefix = prefix === '' ? '' : `${prefix}/`;
    this.#region = options.region ?? 'us-east-1';
    this.#pathStyle = options.pathStyle ?? options.endpoint !== undefined;
    this.#connections = integerOption('connections', options.connections, 1, 1024, DEFAULT_CONNECTIONS);
    this.#partSize = integerOption(
      'partSize',
      options.partSize,
      MIN_PART_SIZE,
      MAX_PART_SIZE,
      DEFAULT_PART_SIZE_MIB * MIB,
    );
    this.#listPageSize = integerOption('listPageSize', options.listPageSize, 1, 1000, DEFAULT_LIST_PAGE_SIZE);
    this.location = options.location ?? displayLocation(options.endpoint, options.bucket, prefix);
    this.#properties = Object.freeze({ atomicReplace: true, connections: this.#connections });
  }

  properties(): BackendProperties {
    return this.#properties;
  }

  async create(): Promise<void> {
    const { sdk, client } = await this.#client();
    const what = { location: this.location, op: 'check bucket', key: this.#bucket };
    try {
      await client.send(new sdk.HeadBucketCommand({ Bucket: this.#bucket }));
      return;
    } catch (e) {
      if (httpStatusOf(e) !== 404) throw s3Error(e, what);
    }
    try {
      await client.send(
        new sdk.CreateBucketCommand({
          Bucket: this.#bucket,
          // us-east-1 is the default and must not be named (AWS rejects it).
          ...(this.#region === 'us-east-1'
            ? {}
            : {
                CreateBucketConfiguration: { LocationConstraint: this.#region as BucketLocationConstraint },
              }),
        }),
      );
    } catch (e) {
      const name = errorNameOf(e);
      if (name === 'BucketAlreadyOwnedByYou') return;
      if (name === 'BucketAlreadyExists') {
        // Created concurrently, or (Ceph, older MinIO) the service's answer for a bucket we own: check.
        try {
          await client.send(new sdk.HeadBucketCommand({ Bucket: this.#bucket }));
          return;
        } catch (e2) {
          if (httpStatusOf(e2) !== 403) throw s3Error(e2, what);
          throw new ForgeError(
            ForgeErrorCodes.FORGE_AUTH,
            `${this.location}: the bucket ${this.#bucket} exists but is not accessible with these credentials`,
            {
              cause: e2,
              hint: 'bucket names are global: choose another name, or use the credentials of its owner',
            },
          );
        }
      }
      throw s3Error(e, { location: this.location, op: 'create bucket', key: this.#bucket });
    }
  }

  async save(handle: ObjectHandle, data: Uint8Array): Promise<void> {
    checkHandle(handle);
    const key = objectKey(handle);
    const { sdk, client } = await this.#client();
    const storageClass = this.#storageClassFor(handle.type);
    if (data.length > this.#partSize) {
      await this.#saveMultipart(sdk, client, key, data, storageClass);
      return;
    }
    try {
      await client.send(
        new sdk.PutObjectCommand({
          Bucket: this.#bucket,
          Key: this.#keyPrefix + key,
          Body: data,
          ContentLength: data.length,
          ContentMD5: md5(data),
          ...(storageClass === undefined ? {} : { StorageClass: storageClass as StorageClass }),
        }),
      );
    } catch (e) {
      throw s3Error(e, { location: this.location, op: 'save', key });
    }
  }

  async #saveMultipart(
    sdk: S3Sdk,
    client: S3Client,
    key: string,
    data: Uint8Array,
    storageClass: string | undefined,
  ): Promise<void> {
    const Bucket = this.#bucket;
    const Key = this.#keyPrefix + key;
    const where = { location: this.location, op: 'save', key };
    // At most 10,000 parts: grow the part size (in whole MiB) for huge objects.
    const partSize = Math.max(this.#partSize, Math.ceil(data.length / MAX_PARTS / MIB) * MIB);
    const count = Math.ceil(data.length / partSize);
    let uploadId: string | undefined;
    try {
      const created = await client.send(
        new sdk.CreateMultipartUploadCommand({
          Bucket,
          Key,
          ...(storageClass === undefined ? {} : { StorageClass: storageClass as StorageClass }),
        }),
      );
      uploadId = created.UploadId;
      if (!uploadId)
        throw new ForgeError(ForgeErrorCodes.FORGE_IO, 'CreateMultipartUpload returned no UploadId');
      const UploadId = uploadId;
      const etags: string[] = new Array(count);
      let next = 0;
      let failed = false;
      const worker = async (): Promise<void> => {
        while (!failed && next < count) {
          const index = next++;
          const body = data.subarray(index * partSize, Math.min(data.length, (index + 1) * partSize));
          try {
            const part = await client.send(
              new sdk.UploadPartCommand({
                Bucket,
                Key,
                UploadId,
                PartNumber: index + 1,
                Body: body,
                ContentLength: body.length,
                ContentMD5: md5(body),
              }),
            );
            if (!part.ETag) {
              throw new ForgeError(ForgeErrorCodes.FORGE_IO, `UploadPart ${index + 1} returned no ETag`, {
                retryable: true,
              });
            }
            etags[index] = part.ETag;
          } catch (e) {
            failed = true;
            throw e;
          }
        }
      };
      // Wait for every in-flight part before deciding, so an abort never races a part upload.
      const results = await Promise.allSettled(
        Array.from({ length: Math.min(this.#connections, count) }, () => worker()),
      );
      const rejected = results.find((r) => r.status === 'rejected');
      if (rejected) throw rejected.reason;
      await client.send(
        new sdk.CompleteMultipartUploadCommand({
          Bucket,
          Key,
          UploadId,
          MultipartUpload: { Parts: etags.map((ETag, i) => ({ ETag, PartNumber: i + 1 })) },
        }),
      );
    } catch (e) {
      if (uploadId !== undefined) {
        // Best effort: a leftover upload costs storage but is invisible to load and list.
        await client
          .send(new sdk.AbortMultipartUploadCommand({ Bucket, Key, UploadId: uploadId }))
          .catch(() => {});
      }
      const error = e instanceof ForgeError && !e.message.startsWith(this.location) ? reword(e, where) : e;
      throw s3Error(error, where);
    }
  }

  async load(handle: ObjectHandle, range?: ByteRange): Promise<Uint8Array> {
    checkHandle(handle);
    const key = objectKey(handle);
    const where = { location: this.location, op: 'load', key };
    if (range !== undefined) {
      checkRange(range, Number.MAX_SAFE_INTEGER, `${this.location}/${key}`);
      if (range.length === 0) {
        // S3 cannot express an empty range: check the offset against the size.
        const { size } = await this.#head(key, 'load');
        if (range.offset > size) throw this.#rangeError(key, range, size);
        return new Uint8Array(0);
      }
    }
    const { sdk, client } = await this.#client();
    let bytes: Uint8Array;
    let contentRange: string | undefined;
    let contentLength: number | undefined;
    let status: number | undefined;
    try {
      const out = await client.send(
        new sdk.GetObjectCommand({
          Bucket: this.#bucket,
          Key: this.#keyPrefix + key,
          ...(range === undefined
            ? {}
            : { Range: `bytes=${range.offset}-${range.offset + range.length - 1}` }),
        }),
      );
      status = out.$metadata.httpStatusCode;
      contentRange = out.ContentRange;
      contentLength = out.ContentLength;
      bytes = out.Body === undefined ? new Uint8Array(0) : await out.Body.transformToByteArray();
    } catch (e) {
      throw s3Error(e, where);
    }
    if (range === undefined) {
      if (contentLength !== undefined && bytes.length !== contentLength) {
        throw truncated(where, bytes.length, contentLength);
      }
      return owned(bytes);
    }
    const end = range.offset + range.length;
    const parsed = parseContentRange(contentRange);
    if (status === 200 || parsed === undefined) {
      // The service ignored Range and sent the whole object.
      if (end > bytes.length) throw this.#rangeError(key, range, bytes.length);
      return bytes.slice(range.offset, end);
    }
    if (parsed.start !== range.offset) {
      throw new ForgeError(
        ForgeErrorCodes.FORGE_IO,
        `${this.location}: cannot load ${key}: asked for bytes from ${range.offset}, got Content-Range ${contentRange}`,
        { retryable: true },
      );
    }
    if (bytes.length === range.length) return owned(bytes);
    // A short body: S3 clips a range that reaches past the end instead of answering 416.
    if (parsed.total === undefined || end > parsed.total) {
      throw this.#rangeError(key, range, parsed.total);
    }
    throw truncated(where, bytes.length, range.length);
  }

  async stat(handle: ObjectHandle): Promise<ObjectInfo> {
    checkHandle(handle);
    const { size } = await this.#head(objectKey(handle), 'stat');
    return { name: handle.type === 'config' ? 'config' : handle.name, size };
  }

  async #head(key: string, op: string): Promise<{ size: number }> {
    const { sdk, client } = await this.#client();
    let size: number | undefined;
    try {
      const out = await client.send(
        new sdk.HeadObjectCommand({ Bucket: this.#bucket, Key: this.#keyPrefix + key }),
      );
      size = out.ContentLength;
    } catch (e) {
      // A HEAD 404 has no error code, so a missing bucket is FORGE_NOT_FOUND here too, like a
      // missing directory for the local backend: init() stats `config` before create() makes the bucket.
      throw s3Error(e, { location: this.location, op, key });
    }
    if (size === undefined || !Number.isSafeInteger(size) || size < 0) {
      throw new ForgeError(
        ForgeErrorCodes.FORGE_IO,
        `${this.location}: cannot ${op} ${key}: HeadObject returned no Content-Length`,
      );
    }
    return { size };
  }

  async *list(type: ObjectType): AsyncIterable<ObjectInfo> {
    checkType(type);
    const dir = type === 'config' ? 'config' : `${TYPE_DIRS[type]}/`;
    const listPrefix = this.#keyPrefix + dir;
    const where = { location: this.location, op: 'list', key: dir };
    const { sdk, client } = await this.#client();
    let token: string | undefined;
    do {
      let page: Awaited<ReturnType<typeof listPage>>;
      try {
        page = await listPage(sdk, client, this.#bucket, listPrefix, this.#listPageSize, token);
      } catch (e) {
        throw s3Error(e, where);
      }
      for (const object of page.Contents ?? []) {
        const name = object.Key === undefined ? undefined : nameOf(type, object.Key.slice(listPrefix.length));
        if (name === undefined || !object.Key?.startsWith(listPrefix)) continue;
        if (typeof object.Size !== 'number' || !Number.isSafeInteger(object.Size) || object.Size < 0) {
          throw new ForgeError(
            ForgeErrorCodes.FORGE_IO,
            `${this.location}: cannot list ${dir}: ${object.Key} has no size`,
          );
        }
        yield { name, size: object.Size };
      }
      if (page.IsTruncated) {
        if (!page.NextContinuationToken) {
          // Ending here would silently drop the rest of the listing: callers delete based on it.
          throw new ForgeError(
            ForgeErrorCodes.FORGE_IO,
            `${this.location}: cannot list ${dir}: the service said the listing continues but gave no continuation token`,
            { retryable: true },
          );
        }
        token = page.NextContinuationToken;
      } else {
        token = undefined;
      }
    } while (token !== undefined);
  }

  async remove(handle: ObjectHandle): Promise<void> {
    checkHandle(handle);
    const key = objectKey(handle);
    const { sdk, client } = await this.#client();
    try {
      await client.send(new sdk.DeleteObjectCommand({ Bucket: this.#bucket, Key: this.#keyPrefix + key }));
    } catch (e) {
      // S3 answers 204 for a missing key; some compatible services answer 404.
      if (errorNameOf(e) === 'NoSuchKey') return;
      throw s3Error(e, { location: this.location, op: 'remove', key });
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    const state = this.#state;
    this.#state = undefined;
    if (state === undefined) return;
    try {
      (await state).client.destroy();
    } catch {
      // The client never came up: nothing to release.
    }
  }

  #client(): Promise<ClientState> {
    if (this.#closed) {
      return Promise.reject(usage(`${this.location}: the backend is closed`));
    }
    if (this.#state === undefined) {
      const options = this.#options;
      const state = (async () => {
        const caBundle = await readCaBundle(options.caBundlePath, options.endpoint);
        const sdk = await loadS3Sdk();
        const client = createS3Client(sdk, {
          endpoint: options.endpoint,
          region: this.#region,
          pathStyle: this.#pathStyle,
          connections: this.#connections,
          ...(options.credentials === undefined ? {} : { credentials: options.credentials }),
          ...(options.profile === undefined ? {} : { profile: options.profile }),
          ...(caBundle === undefined ? {} : { caBundle }),
        });
        return { sdk, client };
      })();
      // A failed start (unreadable CA bundle) is not cached: the next call tries again.
      state.catch(() => {
        if (this.#state === state) this.#state = undefined;
      });
      this.#state = state;
    }
    return this.#state;
  }

  #storageClassFor(type: ObjectType): string | undefined {
    const storageClass = this.#options.storageClass;
    if (storageClass === undefined) return undefined;
    if (ARCHIVE_CLASSES.has(storageClass.toUpperCase()) && type !== 'pack') return undefined;
    return storageClass;
  }

  #rangeError(key: string, range: ByteRange, size: number | undefined): ForgeError {
    const of = size === undefined ? '' : ` (${size} bytes)`;
    return new ForgeError(
      ForgeErrorCodes.FORGE_RANGE,
      `${this.location}: cannot load ${key}: range {offset: ${range.offset}, length: ${range.length}} reaches past the end of the object${of}`,
      { details: { offset: range.offset, length: range.length, ...(size === undefined ? {} : { size }) } },
    );
  }
}

function listPage(
  sdk: S3Sdk,
  client: S3Client,
  bucket: string,
  prefix: string,
  maxKeys: number,
  token: string | undefined,
) {
  return client.send(
    new sdk.ListObjectsV2Command({
      Bucket: bucket,
      Prefix: prefix,
      MaxKeys: maxKeys,
      ...(token === undefined ? {} : { ContinuationToken: token }),
    }),
  );
}

/**
 * The object name a key (relative to the type's list prefix) stands for, or `undefined` for keys
 * that are not ours (directory markers, foreign files, names `load` would reject).
 */
function nameOf(type: ObjectType, rest: string): string | undefined {
  if (type === 'config') return rest === '' ? 'config' : undefined;
  if (type === 'pack') {
    const slash = rest.indexOf('/');
    if (slash !== 2) return undefined;
    const name = rest.slice(3);
    return SAFE_NAME.test(name) && name.slice(0, 2) === rest.slice(0, 2) ? name : undefined;
  }
  return SAFE_NAME.test(rest) ? rest : undefined;
}

function parseContentRange(
  value: string | undefined,
): { start: number; total: number | undefined } | undefined {
  const match = value === undefined ? null : /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(value.trim());
  if (match === null) return undefined;
  return { start: Number(match[1]), total: match[3] === '*' ? undefined : Number(match[3]) };
}

function md5(data: Uint8Array): string {
  return createHash('md5').update(data).digest('base64');
}

/** A plain Uint8Array that owns its whole buffer (the SDK may return a Buffer from Node's shared pool). */
function owned(bytes: Uint8Array): Uint8Array {
  if (bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength) {
    return new Uint8Array(bytes.buffer, 0, bytes.byteLength);
  }
  return new Uint8Array(bytes);
}

function truncated(
  where: { location: string; op: string; key: string },
  got: number,
  expected: number,
): ForgeError {
  return new ForgeError(
    ForgeErrorCodes.FORGE_IO,
    `${where.location}: cannot ${where.op} ${where.key}: the response ended after ${got} of ${expected} bytes`,
    { retryable: true },
  );
}

/** Prefixes a bare ForgeError raised inside an operation with the location, operation and key. */
function reword(e: ForgeError, where: { location: string; op: string; key: string }): ForgeError {
  return new ForgeError(e.code, `${where.location}: cannot ${where.op} ${where.key}: ${e.message}`, {
    retryable: e.retryable,
    ...(e.hint === undefined ? {} : { hint: e.hint }),
    ...(e.details === undefined ? {} : { details: e.details }),
    cause: e,
  });
}

function integerOption(
  name: string,
  value: number | undefined,
  min: number,
  max: number,
  fallback: number,
): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw usage(`invalid S3 backend option ${name}: ${value} (expected an integer from ${min} to ${max})`);
  }
  return value;
}

function usage(message: string): ForgeError {
  return new ForgeError(ForgeErrorCodes.FORGE_USAGE, message);
}
