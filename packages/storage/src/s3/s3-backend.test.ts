import './test-node-conditions.ts';
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { createServer, request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { S3Client } from '@aws-sdk/client-s3';
import type { ForgeError, ObjectHandle, StorageBackend } from '@backupforge/common';
import { isForgeError, OBJECT_TYPES } from '@backupforge/common';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { OpenBackendOptions } from '../open-backend.ts';
import { collect, describeBackend, hexName } from '../testing/describe-backend.ts';
import type { S3Sdk } from './client.ts';
import { createS3Client, loadS3Sdk } from './client.ts';
import { openS3Location } from './index.ts';

const ENDPOINT = process.env.FORGE_TEST_S3_ENDPOINT;
const ACCESS_KEY = process.env.FORGE_TEST_S3_ACCESS_KEY ?? '';
const SECRET_KEY = process.env.FORGE_TEST_S3_SECRET_KEY ?? '';
const REGION = process.env.FORGE_TEST_S3_REGION ?? 'us-east-1';
const MIB = 1024 * 1024;

const env = { AWS_ACCESS_KEY_ID: ACCESS_KEY, AWS_SECRET_ACCESS_KEY: SECRET_KEY, AWS_REGION: REGION };

function bucketName(): string {
  return `forge-test-${randomBytes(6).toString('hex')}`;
}

function open(location: string, options: OpenBackendOptions = {}): Promise<StorageBackend> {
  return openS3Location(location, { env, ...options });
}

async function rejected(promise: Promise<unknown>): Promise<ForgeError> {
  const error = await promise.then(
    () => expect.fail('expected a rejection, but the call resolved'),
    (e: unknown) => e,
  );
  if (!isForgeError(error)) expect.fail(`expected a ForgeError, got ${String(error)}`);
  return error;
}

function randomData(length: number): Uint8Array {
  return new Uint8Array(randomBytes(length));
}

function expectSameBytes(actual: Uint8Array, expected: Uint8Array): void {
  expect(actual.length).toBe(expected.length);
  expect(Buffer.from(actual).equals(Buffer.from(expected)), 'bytes differ').toBe(true);
}

/** A client of our own factory (with the DeleteObjects Content-MD5 middleware), for setup and checks. */
class Admin {
  readonly sdk: S3Sdk;
  readonly client: S3Client;

  constructor(sdk: S3Sdk, client: S3Client) {
    this.sdk = sdk;
    this.client = client;
  }

  static async create(): Promise<Admin> {
    const sdk = await loadS3Sdk();
    return new Admin(
      sdk,
      createS3Client(sdk, {
        endpoint: ENDPOINT,
        region: REGION,
        pathStyle: true,
        connections: 8,
        credentials: { accessKeyId: ACCESS_KEY, secretAccessKey: SECRET_KEY },
      }),
    );
  }

  async keys(bucket: string, prefix = ''): Promise<string[]> {
    const keys: string[] = [];
    let token: string | undefined;
    do {
      const page = await this.client.send(
        new this.sdk.ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }),
      );
      for (const o of page.Contents ?? []) keys.push(o.Key!);
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return keys.sort();
  }

  async put(bucket: string, key: string, body: Uint8Array = new Uint8Array(1)): Promise<void> {
    await this.client.send(new this.sdk.PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
  }

  async uploads(bucket: string): Promise<string[]> {
    const out = await this.client.send(new this.sdk.ListMultipartUploadsCommand({ Bucket: bucket }));
    return (out.Uploads ?? []).map((u) => u.Key!);
  }

  async createBucket(bucket: string): Promise<void> {
    await this.client.send(new this.sdk.CreateBucketCommand({ Bucket: bucket }));
  }

  async bucketExists(bucket: string): Promise<boolean> {
    try {
      await this.client.send(new this.sdk.HeadBucketCommand({ Bucket: bucket }));
      return true;
    } catch {
      return false;
    }
  }

  /** Deletes every object under `prefix` with DeleteObjects (exercises the Content-MD5 middleware). */
  async deleteKeys(bucket: string, prefix = ''): Promise<void> {
    const keys = await this.keys(bucket, prefix);
    for (let i = 0; i < keys.length; i += 1000) {
      const out = await this.client.send(
        new this.sdk.DeleteObjectsCommand({
          Bucket: bucket,
          Delete: { Objects: keys.slice(i, i + 1000).map((Key) => ({ Key })), Quiet: true },
        }),
      );
      if (out.Errors?.length) throw new Error(`DeleteObjects failed: ${JSON.stringify(out.Errors)}`);
    }
  }

  /** Deletes every object, every pending upload, and the bucket. */
  async destroyBucket(bucket: string): Promise<void> {
    if (!(await this.bucketExists(bucket))) return;
    for (const key of await this.uploads(bucket)) {
      const out = await this.client.send(
        new this.sdk.ListMultipartUploadsCommand({ Bucket: bucket, Prefix: key }),
      );
      for (const u of out.Uploads ?? []) {
        await this.client.send(
          new this.sdk.AbortMultipartUploadCommand({ Bucket: bucket, Key: u.Key!, UploadId: u.UploadId! }),
        );
      }
    }
    await this.deleteKeys(bucket);
    await this.client.send(new this.sdk.DeleteBucketCommand({ Bucket: bucket }));
  }
}

type Fault = 'reset' | { status: number; code: string } | undefined;

/**
 * A pass-through proxy in front of the S3 server that records requests and injects faults. The
 * Host header is forwarded unchanged, so SigV4 signatures stay valid.
 */
class FaultProxy {
  readonly requests: string[] = [];
  fault: (req: IncomingMessage) => Fault = () => undefined;
  #server: Server | undefined;
  port = 0;

  async start(): Promise<void> {
    const target = new URL(ENDPOINT!);
    this.#server = createServer((req: IncomingMessage, res: ServerResponse) => {
      this.requests.push(`${req.method} ${req.url}`);
      const fault = this.fault(req);
      if (fault === 'reset') {
        req.socket.destroy();
        return;
      }
      if (fault !== undefined) {
        req.resume();
        req.on('end', () => {
          res.writeHead(fault.status, { 'content-type': 'application/xml' });
          res.end(
            `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${fault.code}</Code><Message>injected</Message></Error>`,
          );
        });
        return;
      }
      const upstream = httpRequest(
        {
          host: target.hostname,
          port: target.port,
          method: req.method,
          path: req.url,
          headers: req.headers,
          agent: false,
        },
        (up) => {
          res.writeHead(up.statusCode ?? 502, up.headers);
          up.pipe(res);
        },
      );
      upstream.on('error', () => res.destroy());
      req.pipe(upstream);
    });
    await new Promise<void>((resolve) => this.#server!.listen(0, '127.0.0.1', resolve));
    this.port = (this.#server.address() as AddressInfo).port;
  }

  async stop(): Promise<void> {
    this.#server?.closeAllConnections();
    await new Promise<void>((resolve) => this.#server?.close(() => resolve()) ?? resolve());
  }
}

describe.skipIf(!ENDPOINT)('S3 backend against the S3 server', () => {
  let admin: Admin;

  beforeAll(async () => {
    admin = await Admin.create();
  });

  afterAll(() => {
    admin?.client.destroy();
  });

  // One bucket for the conformance suite, a fresh nested prefix per test; create() runs before
  // each test on a bucket that exists (creating a missing bucket is tested further down).
  describe('conformance', () => {
    const bucket = bucketName();
    afterAll(() => admin.destroyBucket(bucket));

    describeBackend('s3 (shared bucket, random prefix)', async () => {
      const prefix = `repos/${randomBytes(6).toString('hex')}`;
      return {
        backend: await open(`${ENDPOINT}/${bucket}/${prefix}`),
        cleanup: () => admin.deleteKeys(bucket, `${prefix}/`),
      };
    });
  });

  describe('with a shared bucket', () => {
    const bucket = bucketName();
    let prefix: string;
    let location: string;
    let backend: StorageBackend;
    const proxy = new FaultProxy();
    let viaProxy: (settings?: Record<string, string>) => Promise<StorageBackend>;
    const opened: StorageBackend[] = [];

    beforeAll(async () => {
      await admin.createBucket(bucket);
      await proxy.start();
    });

    afterAll(async () => {
      await proxy.stop();
      await admin.destroyBucket(bucket);
    });

    beforeEach(async () => {
      prefix = `p-${randomBytes(4).toString('hex')}`;
      location = `${ENDPOINT}/${bucket}/${prefix}`;
      backend = await open(location);
      opened.push(backend);
      proxy.requests.length = 0;
      proxy.fault = () => undefined;
      viaProxy = async (settings) => {
        const b = await open(
          `http://127.0.0.1:${proxy.port}/${bucket}/${prefix}`,
          settings ? { settings } : {},
        );
        opened.push(b);
        return b;
      };
    });

    afterEach(async () => {
      await Promise.all(opened.splice(0).map((b) => b.close()));
    });

    it('stores objects at <prefix>/<objectKey> and creates nothing on create()', async () => {
      await backend.create();
      expect(await admin.keys(bucket, `${prefix}/`)).toEqual([]);
      const pack = `ab${hexName().slice(2)}`;
      const key = hexName();
      await backend.save({ type: 'pack', name: pack }, new Uint8Array([1, 2]));
      await backend.save({ type: 'key', name: key }, new Uint8Array([3]));
      await backend.save({ type: 'config', name: 'config' }, new Uint8Array([4]));
      expect(await admin.keys(bucket, `${prefix}/`)).toEqual(
        [`${prefix}/config`, `${prefix}/data/ab/${pack}`, `${prefix}/keys/${key}`].sort(),
      );
      await backend.create();
      expect(await admin.keys(bucket, `${prefix}/`)).toHaveLength(3);
    });

    it('lists only its own objects: not other prefixes, foreign keys or directory markers', async () => {
      const pack = `cd${hexName().slice(2)}`;
      const snapshot = hexName();
      await backend.save({ type: 'pack', name: pack }, new Uint8Array(5));
      await backend.save({ type: 'snapshot', name: snapshot }, new Uint8Array(6));
      await admin.put(bucket, `${prefix}-other/snapshots/${hexName()}`);
      await admin.put(bucket, `${prefix}/snapshots/`, new Uint8Array(0));
      await admin.put(bucket, `${prefix}/snapshots/sub/${hexName()}`);
      await admin.put(bucket, `${prefix}/snapshots/.hidden`);
      await admin.put(bucket, `${prefix}/data/zz/${pack}`);
      await admin.put(bucket, `${prefix}/data/${pack}`);
      await admin.put(bucket, `${prefix}/configuration`);
      expect(await collect(backend.list('snapshot'))).toEqual([{ name: snapshot, size: 6 }]);
      expect(await collect(backend.list('pack'))).toEqual([{ name: pack, size: 5 }]);
      expect(await collect(backend.list('config'))).toEqual([]);
    });

    it('rejects a wrong secret with FORGE_AUTH on every operation, without leaking it', async () => {
      const secret = 'definitely-not-the-secret-4711';
      const wrong = await openS3Location(location, { env: { ...env, AWS_SECRET_ACCESS_KEY: secret } });
      opened.push(wrong);
      const handle: ObjectHandle = { type: 'index', name: hexName() };
      await backend.save(handle, new Uint8Array(3));
      const errors = [
        await rejected(wrong.save(handle, new Uint8Array(3))),
        await rejected(wrong.load(handle)),
        await rejected(wrong.stat(handle)),
        await rejected(collect(wrong.list('index'))),
        await rejected(wrong.remove(handle)),
        await rejected(wrong.create()),
      ];
      for (const error of errors) {
        expect(error.code).toBe('FORGE_AUTH');
        expect(error.retryable).toBe(false);
        expect(error.hint).toContain('AWS_ACCESS_KEY_ID');
        expect(error.hint).toContain('AWS_SECRET_ACCESS_KEY');
        expect(error.message).toContain(`s3:${location}`);
        expect(JSON.stringify([error.message, error.hint, error.details])).not.toContain(secret);
      }
      expect(errors[1]!.message).toContain(`load index/${handle.name}`);
      expect(errors[1]!.message).toContain('SignatureDoesNotMatch');
      // Nothing changed.
      expect(await backend.stat(handle)).toEqual({ name: handle.name, size: 3 });
    });

    it('rejects every operation on a missing bucket with FORGE_REPO_NOT_FOUND, and create() makes it', async () => {
      const missing = bucketName();
      const b = await open(`${ENDPOINT}/${missing}/repo`);
      opened.push(b);
      const handle: ObjectHandle = { type: 'config', name: 'config' };
      const errors = [
        await rejected(b.load(handle)),
        await rejected(b.save(handle, new Uint8Array(1))),
        await rejected(collect(b.list('snapshot'))),
      ];
      for (const error of errors) {
        expect(error.code).toBe('FORGE_REPO_NOT_FOUND');
        expect(error.hint).toContain('forge init');
        expect(error.message).toContain(`s3:${ENDPOINT}/${missing}/repo`);
      }
      expect(errors[0]!.message).toContain('cannot load config');
      // HEAD answers a bare 404 either way: stat says "no such object", which is what
      // Repository.init() checks before create() makes the bucket.
      expect((await rejected(b.stat(handle))).code).toBe('FORGE_NOT_FOUND');
      expect((await rejected(b.load(handle, { offset: 0, length: 0 }))).code).toBe('FORGE_NOT_FOUND');
      expect(await admin.bucketExists(missing)).toBe(false);
      try {
        await b.create();
        expect(await admin.bucketExists(missing)).toBe(true);
        await b.save(handle, new Uint8Array([9]));
        expectSameBytes(await b.load(handle), new Uint8Array([9]));
      } finally {
        await admin.destroyBucket(missing);
      }
    });

    it('uploads above the part size in parts (s3.part-size=5) and reads back the same bytes', async () => {
      const b = await viaProxy({ 's3.part-size': '5', 's3.connections': '2' });
      const handle: ObjectHandle = { type: 'pack', name: hexName() };
      const data = randomData(11 * MIB + 12_345);
      await b.save(handle, data);
      const parts = proxy.requests.filter((r) => r.startsWith('PUT ') && r.includes('partNumber='));
      expect(parts).toHaveLength(3);
      const head = await admin.client.send(
        new admin.sdk.HeadObjectCommand({
          Bucket: bucket,
          Key: `${prefix}/data/${handle.name.slice(0, 2)}/${handle.name}`,
        }),
      );
      expect(head.ETag).toMatch(/-3"?$/);
      expect(await b.stat(handle)).toEqual({ name: handle.name, size: data.length });
      expectSameBytes(await b.load(handle), data);
      // A range across the boundary of parts 1 and 2.
      const offset = 5 * MIB - 100;
      expectSameBytes(await b.load(handle, { offset, length: 300 }), data.subarray(offset, offset + 300));
      expect(await admin.uploads(bucket)).toEqual([]);
      // At the threshold exactly: a single PutObject.
      proxy.requests.length = 0;
      await b.save({ type: 'pack', name: hexName() }, randomData(5 * MIB));
      expect(proxy.requests.filter((r) => r.includes('uploads') || r.includes('partNumber='))).toEqual([]);
    });

    it('aborts a multipart upload whose part fails, leaving no object and no upload', async () => {
      const b = await viaProxy({ 's3.part-size': '5', 's3.connections': '1' });
      proxy.fault = (req) =>
        req.method === 'PUT' && req.url?.includes('partNumber=2')
          ? { status: 500, code: 'InternalError' }
          : undefined;
      const handle: ObjectHandle = { type: 'pack', name: hexName() };
      const error = await rejected(b.save(handle, randomData(12 * MIB)));
      expect(error.code).toBe('FORGE_IO');
      expect(error.retryable).toBe(true);
      expect(error.message).toContain(`save data/${handle.name.slice(0, 2)}/${handle.name}`);
      expect(error.message).toContain(`s3:http://127.0.0.1:${proxy.port}/${bucket}/${prefix}`);
      expect(proxy.requests.some((r) => r.startsWith('DELETE ') && r.includes('uploadId='))).toBe(true);
      expect(await admin.uploads(bucket)).toEqual([]);
      expect((await rejected(b.stat(handle))).code).toBe('FORGE_NOT_FOUND');
      expect(await collect(b.list('pack'))).toEqual([]);
    });

    it('pages through listings (s3.list-page-size=2) and returns every object exactly once', async () => {
      const b = await viaProxy({ 's3.list-page-size': '2' });
      const names = Array.from({ length: 7 }, () => hexName());
      await Promise.all(names.map((name, i) => b.save({ type: 'index', name }, new Uint8Array(i))));
      await b.save({ type: 'snapshot', name: hexName() }, new Uint8Array(1));
      proxy.requests.length = 0;
      const listed = await collect(b.list('index'));
      expect(listed.map((o) => o.name).sort()).toEqual([...names].sort());
      expect(listed.find((o) => o.name === names[6])?.size).toBe(6);
      const pages = proxy.requests.filter((r) => r.includes('list-type=2'));
      expect(pages).toHaveLength(4);
      expect(pages.filter((r) => r.includes('continuation-token='))).toHaveLength(3);
    });

    it('throws when a later listing page fails, after yielding the first page', async () => {
      const b = await viaProxy({ 's3.list-page-size': '2' });
      await Promise.all(
        Array.from({ length: 5 }, () => b.save({ type: 'lock', name: hexName() }, new Uint8Array(1))),
      );
      proxy.fault = (req) =>
        req.url?.includes('continuation-token=') ? { status: 503, code: 'SlowDown' } : undefined;
      const seen: string[] = [];
      const error = await rejected(
        (async () => {
          for await (const o of b.list('lock')) seen.push(o.name);
        })(),
      );
      expect(seen).toHaveLength(2);
      expect(error.code).toBe('FORGE_IO');
      expect(error.retryable).toBe(true);
      expect(error.message).toContain('cannot list locks/');
      expect(error.message).toContain('SlowDown');
    });

    it('rejects ranges past the end with FORGE_RANGE, whether S3 answers 416 or a short body', async () => {
      const handle: ObjectHandle = { type: 'snapshot', name: hexName() };
      const data = randomData(1000);
      await backend.save(handle, data);
      for (const range of [
        { offset: 990, length: 11 }, // 206 with 10 bytes
        { offset: 1000, length: 1 }, // 416
        { offset: 4000, length: 5 }, // 416
        { offset: 1001, length: 0 }, // HEAD
      ]) {
        const error = await rejected(backend.load(handle, range));
        expect(error.code, JSON.stringify(range)).toBe('FORGE_RANGE');
        expect(error.retryable).toBe(false);
        expect(error.message).toContain(`load snapshots/${handle.name}`);
      }
      expectSameBytes(await backend.load(handle, { offset: 990, length: 10 }), data.subarray(990));
    });

    it('maps 5xx on save to a retryable FORGE_IO', async () => {
      const b = await viaProxy();
      proxy.fault = (req) => (req.method === 'PUT' ? { status: 503, code: 'ServiceUnavailable' } : undefined);
      const error = await rejected(b.save({ type: 'key', name: hexName() }, new Uint8Array(10)));
      expect(error.code).toBe('FORGE_IO');
      expect(error.retryable).toBe(true);
      expect(error.message).toContain('HTTP 503');
    });

    it('maps a connection reset to a retryable FORGE_IO naming the location, operation and key', async () => {
      const b = await viaProxy();
      const handle: ObjectHandle = { type: 'index', name: hexName() };
      await b.save(handle, new Uint8Array(10));
      proxy.fault = (req) => (req.method === 'GET' ? 'reset' : undefined);
      const error = await rejected(b.load(handle));
      expect(error.code).toBe('FORGE_IO');
      expect(error.retryable).toBe(true);
      expect(error.message).toContain(
        `s3:http://127.0.0.1:${proxy.port}/${bucket}/${prefix}: cannot load index/${handle.name}`,
      );
      proxy.fault = () => undefined;
      expect((await b.load(handle)).length).toBe(10);
    });

    it('applies an archive storage class to packs only', async () => {
      // Swift accepts only STANDARD, so GLACIER shows where the class was sent.
      const warnings: string[] = [];
      const b = await open(location, {
        settings: { 's3.storage-class': 'GLACIER' },
        onWarning: (m) => warnings.push(m),
      });
      opened.push(b);
      expect(warnings).toHaveLength(1);
      for (const type of OBJECT_TYPES.filter((t) => t !== 'pack')) {
        await b.save({ type, name: type === 'config' ? 'config' : hexName() }, new Uint8Array(2));
      }
      const error = await rejected(b.save({ type: 'pack', name: hexName() }, new Uint8Array(2)));
      expect(error.code).toBe('FORGE_USAGE');
      expect(error.message).toContain('InvalidStorageClass');
      expect(error.hint).toContain('s3.storage-class');
    });

    it('deletes in batches with DeleteObjects (Content-MD5 middleware) on this server', async () => {
      const keys = [`${prefix}/x/1`, `${prefix}/x/2`, `${prefix}/x/3`];
      for (const key of keys) await admin.put(bucket, key);
      const out = await admin.client.send(
        new admin.sdk.DeleteObjectsCommand({
          Bucket: bucket,
          Delete: { Objects: keys.map((Key) => ({ Key })) },
        }),
      );
      expect(out.Errors ?? []).toEqual([]);
      expect(await admin.keys(bucket, `${prefix}/x/`)).toEqual([]);
    });
  });
});
