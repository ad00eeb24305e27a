import type { StorageBackend } from '@backupforge/common';
import { ForgeError, ForgeErrorCodes } from '@backupforge/common';
import type { OpenBackendOptions } from '../open-backend.ts';
import type { S3Credentials } from './client.ts';
import { parseS3Location, parseS3Settings } from './location.ts';
import type { S3BackendOptions } from './s3-backend.ts';
import { createS3Backend } from './s3-backend.ts';

export type { S3Credentials } from './client.ts';
export type { S3Location, S3Settings } from './location.ts';
export { parseS3Location, parseS3Settings, S3_LOCATION_FORMS, S3_SETTING_KEYS } from './location.ts';
export type { S3BackendOptions } from './s3-backend.ts';
export { createS3Backend } from './s3-backend.ts';

/**
 * Opens the S3 backend for the part of a repository location after `s3:` (see
 * {@link parseS3Location} for the forms). Nothing is contacted and the AWS SDK is not loaded
 * until the first call on the backend.
 *
 * - settings (`options.settings`): `s3.region`, `s3.storage-class`, `s3.path-style`,
 *   `s3.connections`, `s3.part-size` (MiB), `s3.list-page-size`; other `s3.*` keys are a
 *   `FORGE_USAGE` error;
 * - region: `s3.region`, else the region of an AWS host name, else `AWS_REGION` /
 *   `AWS_DEFAULT_REGION`, else `us-east-1`;
 * - credentials: `AWS_ACCESS_KEY_ID` + `AWS_SECRET_ACCESS_KEY` (+ `AWS_SESSION_TOKEN`) from
 *   `options.env ?? process.env`, else the SDK's default chain (`AWS_PROFILE`, ~/.aws, SSO, IMDS…);
 * - `AWS_CA_BUNDLE`: extra CA certificates for https endpoints (ignored for http).
 *
 * ```ts
 * const backend = await openS3Location('http://127.0.0.1:9000/backups/laptop', { settings: { 's3.connections': '4' } });
 * ```
 */
export async function openS3Location(rest: string, options: OpenBackendOptions): Promise<StorageBackend> {
  return createS3Backend(resolveS3BackendOptions(rest, options));
}

/**
 * What {@link openS3Location} passes to {@link createS3Backend}: the location parsed, settings
 * validated, region and credentials resolved from `options.env`. Warnings go to `options.onWarning`.
 */
export function resolveS3BackendOptions(rest: string, options: OpenBackendOptions): S3BackendOptions {
  const parsed = parseS3Location(rest);
  const settings = parseS3Settings(options.settings);
  const env = options.env ?? process.env;
  if (parsed.warning !== undefined) options.onWarning?.(parsed.warning);
  const region =
    settings.region ??
    parsed.region ??
    nonEmpty(env.AWS_REGION) ??
    nonEmpty(env.AWS_DEFAULT_REGION) ??
    'us-east-1';
  const storageClass = settings.storageClass;
  if (storageClass !== undefined && /^(GLACIER|DEEP_ARCHIVE)$/i.test(storageClass)) {
    options.onWarning?.(
      `s3.storage-class=${storageClass} applies to data packs only; restoring from them needs an S3 restore first`,
    );
  }
  const credentials = credentialsFrom(env);
  const profile = credentials === undefined ? nonEmpty(env.AWS_PROFILE) : undefined;
  const caBundlePath = nonEmpty(env.AWS_CA_BUNDLE);
  return {
    bucket: parsed.bucket,
    prefix: parsed.prefix,
    ...(parsed.endpoint === undefined ? {} : { endpoint: parsed.endpoint }),
    region,
    pathStyle: settings.pathStyle ?? parsed.pathStyle,
    ...(credentials === undefined ? {} : { credentials }),
    ...(profile === undefined ? {} : { profile }),
    ...(storageClass === undefined ? {} : { storageClass }),
    connections: settings.connections,
    partSize: settings.partSize,
    listPageSize: settings.listPageSize,
    ...(caBundlePath === undefined ? {} : { caBundlePath }),
    location: parsed.location,
  };
}

function credentialsFrom(env: NodeJS.ProcessEnv): S3Credentials | undefined {
  const accessKeyId = nonEmpty(env.AWS_ACCESS_KEY_ID);
  const secretAccessKey = nonEmpty(env.AWS_SECRET_ACCESS_KEY);
  if (accessKeyId === undefined && secretAccessKey === undefined) return undefined;
  if (accessKeyId === undefined || secretAccessKey === undefined) {
    const missing = accessKeyId === undefined ? 'AWS_ACCESS_KEY_ID' : 'AWS_SECRET_ACCESS_KEY';
    const set = accessKeyId === undefined ? 'AWS_SECRET_ACCESS_KEY' : 'AWS_ACCESS_KEY_ID';
    throw new ForgeError(ForgeErrorCodes.FORGE_USAGE, `${set} is set but ${missing} is not`, {
      hint: 'set both, or neither to use an AWS profile',
    });
  }
  const sessionToken = nonEmpty(env.AWS_SESSION_TOKEN);
  return { accessKeyId, secretAccessKey, ...(sessionToken === undefined ? {} : { sessionToken }) };
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value.trim() === '' ? undefined : value.trim();
}
