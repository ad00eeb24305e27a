import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import * as tls from 'node:tls';
import type { S3Client } from '@aws-sdk/client-s3';
import { ForgeError, ForgeErrorCodes, InternalError } from '@backupforge/common';

/** The `@aws-sdk/client-s3` module, loaded on first use. */
export type S3Sdk = typeof import('@aws-sdk/client-s3');

/** Static credentials; without them the SDK's default provider chain (profiles, SSO, IMDS…) is used. */
export interface S3Credentials {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly sessionToken?: string;
}

/** How to build an S3 client. */
export interface S3ClientConfig {
  /** `http(s)://host[:port]`, or `undefined` for AWS (endpoint from the region). */
  readonly endpoint: string | undefined;
  readonly region: string;
  readonly pathStyle: boolean;
  readonly credentials?: S3Credentials;
  /** A profile of ~/.aws/config for the default provider chain (AWS_PROFILE). */
  readonly profile?: string;
  /** Upper bound of open connections. */
  readonly connections: number;
  /** Extra trusted CA certificates (PEM), added to Node's default ones for https. */
  readonly caBundle?: string;
}

let sdkPromise: Promise<S3Sdk> | undefined;

/** Imports `@aws-sdk/client-s3` once, on first use: opening or importing the backend does not load it. */
export function loadS3Sdk(): Promise<S3Sdk> {
  sdkPromise ??= import('@aws-sdk/client-s3').catch((e: unknown) => {
    sdkPromise = undefined;
    throw new InternalError(`cannot load @aws-sdk/client-s3: ${e instanceof Error ? e.message : e}`, e);
  });
  return sdkPromise;
}

/** Idle time after which a connection counts as dead (the call fails retryably). */
const SOCKET_TIMEOUT_MS = 120_000;
const CONNECT_TIMEOUT_MS = 15_000;

/**
 * Builds an S3 client for S3-compatible services as well as AWS:
 *
 * - `requestChecksumCalculation`/`responseChecksumValidation: 'WHEN_REQUIRED'`: the SDK's default
 *   (CRC32 on every upload, `aws-chunked` bodies with trailers) is rejected by Swift (501) and by
 *   older MinIO, B2, Wasabi…, and corrupts objects on some servers. Uploads carry Content-MD5 instead.
 * - a middleware that adds `Content-MD5` to DeleteObjects, which Swift and older services require
 *   (newer SDKs only send a CRC32 checksum there);
 * - `maxAttempts: 1`: retries belong to the retry decorator, not to the backend.
 */
export function createS3Client(sdk: S3Sdk, config: S3ClientConfig): S3Client {
  const agent = { keepAlive: true, maxSockets: config.connections };
  const client = new sdk.S3Client({
    region: config.region,
    ...(config.endpoint === undefined ? {} : { endpoint: config.endpoint }),
    forcePathStyle: config.pathStyle,
    ...(config.credentials === undefined ? {} : { credentials: { ...config.credentials } }),
    ...(config.profile === undefined ? {} : { profile: config.profile }),
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    maxAttempts: 1,
    requestHandler: {
      connectionTimeout: CONNECT_TIMEOUT_MS,
      socketTimeout: SOCKET_TIMEOUT_MS,
      httpAgent: agent,
      httpsAgent:
        config.caBundle === undefined ? agent : { ...agent, ca: [...defaultCertificates(), config.caBundle] },
    },
  });
  client.middlewareStack.add(
    (next, context) => async (args) => {
      if (context.commandName === 'DeleteObjectsCommand') {
        const request = args.request as { headers?: Record<string, string>; body?: unknown };
        const body = request.body;
        if (request.headers && (typeof body === 'string' || body instanceof Uint8Array)) {
          request.headers['content-md5'] = createHash('md5').update(body).digest('base64');
        }
      }
      return next(args);
    },
    { step: 'build', name: 'forgeDeleteObjectsContentMd5', override: true },
  );
  return client;
}

function defaultCertificates(): readonly string[] {
  // 'default' includes NODE_EXTRA_CA_CERTS, which a plain `ca` option would drop.
  return typeof tls.getCACertificates === 'function'
    ? tls.getCACertificates('default')
    : tls.rootCertificates;
}

/**
 * Reads the PEM file `AWS_CA_BUNDLE` names (as the AWS CLI does), for https endpoints only: a
 * plain-http endpoint never reads it, so a stale or machine-wide setting cannot break it.
 */
export async function readCaBundle(
  path: string | undefined,
  endpoint: string | undefined,
): Promise<string | undefined> {
  if (path === undefined || path === '' || endpoint?.startsWith('http://')) return undefined;
  try {
    return await readFile(path, 'utf8');
  } catch (e) {
    throw new ForgeError(ForgeErrorCodes.FORGE_USAGE, `cannot read the CA bundle AWS_CA_BUNDLE=${path}`, {
      hint: 'point AWS_CA_BUNDLE at a readable PEM file, or unset it',
      cause: e,
    });
  }
}
