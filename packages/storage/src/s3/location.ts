import { ForgeError, ForgeErrorCodes } from '@backupforge/common';

/** The location forms `s3:` accepts, for usage errors. */
export const S3_LOCATION_FORMS =
  "'s3:https://host[:port]/bucket[/prefix]', 's3:http://host[:port]/bucket[/prefix]' (an S3-compatible " +
  "service) or 's3:bucket[/prefix]' (AWS S3, endpoint from the region)";

/** What a repository location after `s3:` names. Holds no secrets. */
export interface S3Location {
  /**
   * `https://host[:port]` or `http://host[:port]` for an S3-compatible service, `undefined` for
   * AWS S3 (the SDK derives the endpoint from the region).
   */
  readonly endpoint: string | undefined;
  readonly bucket: string;
  /** Key prefix of the repository without leading or trailing `/`; `''` for the bucket root. */
  readonly prefix: string;
  /** Whether this endpoint is addressed path-style by default (custom endpoints: yes; AWS: no). */
  readonly pathStyle: boolean;
  /** The region an AWS host name implies (`s3.eu-west-1.amazonaws.com`), if any. */
  readonly region: string | undefined;
  /** The canonical display form, e.g. `s3:http://127.0.0.1:9000/bucket/prefix`. */
  readonly location: string;
  /** Set when the location used a deprecated form that still works. */
  readonly warning?: string;
}

/** Settings of the S3 backend, parsed from `s3.*` keys. */
export interface S3Settings {
  readonly region?: string;
  readonly storageClass?: string;
  readonly pathStyle?: boolean;
  readonly connections: number;
  /** Multipart threshold and part size, in bytes. */
  readonly partSize: number;
  readonly listPageSize: number;
}

const MIB = 1024 * 1024;
export const DEFAULT_CONNECTIONS = 8;
export const DEFAULT_PART_SIZE_MIB = 16;
export const DEFAULT_LIST_PAGE_SIZE = 1000;
/** S3's limits: parts are 5 MiB to 5 GiB (except the last), at most 10,000 per upload. */
export const MIN_PART_SIZE = 5 * MIB;
export const MAX_PART_SIZE = 5 * 1024 * MIB;
export const MAX_PARTS = 10_000;

/** The `s3.*` setting keys and what each takes, for usage errors. */
export const S3_SETTING_KEYS: Readonly<Record<string, string>> = {
  's3.region': 'a region name, e.g. eu-west-1',
  's3.storage-class': 'a storage class, e.g. STANDARD_IA',
  's3.path-style': 'true or false',
  's3.connections': 'concurrent requests, 1 to 128, default 8',
  's3.part-size': `multipart threshold and part size in MiB, 5 to 5120, default ${DEFAULT_PART_SIZE_MIB}`,
  's3.list-page-size': 'objects per list request, 1 to 1000, default 1000',
};

// AWS bucket naming rules (general purpose buckets).
const AWS_BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
// S3-compatible services are more lenient (Ceph and Swift allow upper case and '_').
const CUSTOM_BUCKET = /^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$/;
const AWS_HOST = /^(?:[a-z0-9-]+\.)*amazonaws\.com(?:\.cn)?$/i;
const AWS_REGION_HOST = /^s3[.-](?:dualstack\.)?([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$/i;

function usage(message: string, hint?: string): ForgeError {
  return new ForgeError(ForgeErrorCodes.FORGE_USAGE, message, {
    hint: `${hint === undefined ? '' : `${hint}; `}write the location as ${S3_LOCATION_FORMS}`,
  });
}

/**
 * Parses the part of a repository location after `s3:`.
 *
 * - `https://host[:port]/bucket[/prefix]`, `http://…`: an S3-compatible service (MinIO, Ceph,
 *   Swift, B2, Wasabi…), addressed path-style unless the host is on `amazonaws.com`;
 * - `bucket[/prefix]`: AWS S3, with the endpoint derived from the region;
 * - `s3.amazonaws.com/bucket[/prefix]` (restic's old form): accepted with a warning.
 *
 * Credentials in the location (`https://key:secret@host/…`), query strings and `.`/`..`
 * segments are rejected with `FORGE_USAGE`; the message never repeats the location then.
 *
 * ```ts
 * parseS3Location('http://127.0.0.1:9000/backups/laptop');
 * // { endpoint: 'http://127.0.0.1:9000', bucket: 'backups', prefix: 'laptop', pathStyle: true, … }
 * ```
 */
export function parseS3Location(rest: string): S3Location {
  if (typeof rest !== 'string' || rest.trim() === '') {
    throw usage("'s3:' needs a bucket");
  }
  if (rest !== rest.trim() || /[\s\\]/.test(rest)) {
    throw usage(`the S3 location '${sanitized(rest)}' contains white space or backslashes`);
  }
  const url = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([^/?#]*)(.*)$/s.exec(rest);
  if (url !== null) {
    const scheme = url[1]!.toLowerCase();
    if (scheme !== 'http' && scheme !== 'https') {
      throw usage(`unsupported scheme '${scheme}://' in an S3 location`);
    }
    return parseEndpointForm(scheme, url[2]!, url[3]!, undefined);
  }
  if (rest.includes('@')) throw credentialsInLocation();
  const slash = rest.indexOf('/');
  const first = slash === -1 ? rest : rest.slice(0, slash);
  const path = slash === -1 ? '' : rest.slice(slash);
  if (AWS_HOST.test(first)) {
    // restic's `s3:s3.amazonaws.com/bucket`: a host without scheme, always https.
    return parseEndpointForm(
      'https',
      first,
      path,
      `the S3 location form 's3:${first}/…' is deprecated; write 's3:https://${first}/…'`,
    );
  }
  if (first.includes(':')) {
    throw usage(
      `'${sanitized(first)}' in the S3 location looks like a host and port, but no scheme is given`,
      `write 's3:https://${sanitized(first)}/bucket[/prefix]' (or http://); a plain 's3:bucket[/prefix]' means AWS S3`,
    );
  }
  if (!AWS_BUCKET.test(first) || first.includes('..')) {
    throw usage(
      `'${sanitized(first)}' is not a valid AWS S3 bucket name (3 to 63 lower-case letters, digits, '.' and '-')`,
    );
  }
  const prefix = parsePrefix(path);
  return {
    endpoint: undefined,
    bucket: first,
    prefix,
    pathStyle: false,
    region: undefined,
    location: displayLocation(undefined, first, prefix),
  };
}

function parseEndpointForm(
  scheme: 'http' | 'https',
  authority: string,
  path: string,
  warning: string | undefined,
): S3Location {
  if (authority.includes('@')) throw credentialsInLocation();
  if (authority === '') throw usage('the S3 location has no host');
  if (/[?#]/.test(path)) throw usage('an S3 location may not contain a query string or fragment');
  let host: string;
  try {
    host = new URL(`${scheme}://${authority}`).host;
  } catch {
    throw usage(`'${sanitized(authority)}' is not a valid host[:port] in an S3 location`);
  }
  const endpoint = `${scheme}://${host}`;
  const segments = path.split('/').slice(1);
  const bucketSegment = segments[0] ?? '';
  if (bucketSegment === '') {
    throw usage(`the S3 location '${endpoint}' names no bucket`, `write 's3:${endpoint}/bucket[/prefix]'`);
  }
  const bucket = decodeSegment(bucketSegment);
  if (!CUSTOM_BUCKET.test(bucket)) {
    throw usage(
      `'${sanitized(bucket)}' is not a valid bucket name (letters, digits, '.', '-' and '_', at most 255)`,
    );
  }
  const prefix = parsePrefix(path.slice(1 + bucketSegment.length));
  const aws = AWS_HOST.test(new URL(endpoint).hostname);
  const regionMatch = AWS_REGION_HOST.exec(new URL(endpoint).hostname);
  const region = regionMatch?.[1] === 'external-1' ? 'us-east-1' : regionMatch?.[1];
  return {
    endpoint,
    bucket,
    prefix,
    // Virtual-hosted style for AWS, except dotted bucket names (TLS wildcard certificates).
    pathStyle: !aws || bucket.includes('.'),
    region,
    location: displayLocation(endpoint, bucket, prefix),
    ...(warning === undefined ? {} : { warning }),
  };
}

/** `/a/b/` → `a/b`. Rejects empty inner segments and `.`/`..`. */
function parsePrefix(path: string): string {
  if (path === '' || path === '/') return '';
  const trimmed = path.replace(/^\//, '').replace(/\/+$/, '');
  const segments = trimmed.split('/').map(decodeSegment);
  for (const segment of segments) {
    if (segment === '' || segment === '.' || segment === '..') {
      throw usage(
        `the S3 location prefix '${sanitized(trimmed)}' has an empty, '.' or '..' segment`,
        "write the prefix as 'dir/subdir', without '//', '.' or '..'",
      );
    }
  }
  return segments.join('/');
}

function decodeSegment(segment: string): string {
  let decoded: string;
  try {
    decoded = decodeURIComponent(segment);
  } catch {
    throw usage(`'${sanitized(segment)}' in the S3 location is not valid percent-encoding`);
  }
  if (decoded.includes('/')) throw usage(`'${sanitized(segment)}' in the S3 location encodes a '/'`);
  return decoded;
}

/** The canonical `s3:` display form of a location. */
export function displayLocation(endpoint: string | undefined, bucket: string, prefix: string): string {
  const path = prefix === '' ? bucket : `${bucket}/${prefix}`;
  return endpoint === undefined ? `s3:${path}` : `s3:${endpoint}/${path}`;
}

function credentialsInLocation(): ForgeError {
  // Deliberately does not repeat the location: it holds a secret.
  return usage(
    'the S3 location contains credentials (user:password@); they do not belong in the location',
    'remove them from the location and set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY instead',
  );
}

/** Keeps control characters out of messages. Only used for parts known to hold no secret. */
function sanitized(text: string): string {
  return text.replace(/[\u0000-\u001f\u007f]/g, '?').slice(0, 200);
}

/**
 * Parses the `s3.*` keys of `settings` (other backends' keys are ignored). Unknown `s3.*` keys
 * and bad values reject with `FORGE_USAGE` naming the known keys.
 */
export function parseS3Settings(settings: Readonly<Record<string, string>> | undefined): S3Settings {
  const known = Object.keys(S3_SETTING_KEYS);
  const values: Record<string, string> = {};
  for (const [key, value] of Object.entries(settings ?? {})) {
    const lower = key.toLowerCase();
    if (!lower.startsWith('s3.')) continue;
    if (!known.includes(lower)) {
      throw new ForgeError(ForgeErrorCodes.FORGE_USAGE, `unknown S3 setting '${sanitized(key)}'`, {
        hint: `the S3 settings are ${known.map((k) => `${k} (${S3_SETTING_KEYS[k]})`).join(', ')}`,
        details: { key },
      });
    }
    values[lower] = String(value).trim();
  }
  const region = values['s3.region'];
  if (region !== undefined && !/^[a-z0-9][a-z0-9-]{0,62}$/i.test(region)) {
    throw badValue('s3.region', region);
  }
  const storageClass = values['s3.storage-class'];
  if (storageClass !== undefined && !/^[A-Za-z0-9_-]{1,64}$/.test(storageClass)) {
    throw badValue('s3.storage-class', storageClass);
  }
  let pathStyle: boolean | undefined;
  const pathStyleText = values['s3.path-style']?.toLowerCase();
  if (pathStyleText !== undefined) {
    if (pathStyleText === 'true' || pathStyleText === '1') pathStyle = true;
    else if (pathStyleText === 'false' || pathStyleText === '0') pathStyle = false;
    else throw badValue('s3.path-style', pathStyleText);
  }
  return {
    ...(region === undefined ? {} : { region }),
    ...(storageClass === undefined ? {} : { storageClass }),
    ...(pathStyle === undefined ? {} : { pathStyle }),
    connections: integerSetting(values, 's3.connections', 1, 128, DEFAULT_CONNECTIONS),
    partSize: integerSetting(values, 's3.part-size', 5, 5120, DEFAULT_PART_SIZE_MIB) * MIB,
    listPageSize: integerSetting(values, 's3.list-page-size', 1, 1000, DEFAULT_LIST_PAGE_SIZE),
  };
}

function integerSetting(
  values: Record<string, string>,
  key: string,
  min: number,
  max: number,
  fallback: number,
): number {
  const text = values[key];
  if (text === undefined) return fallback;
  const n = /^\d+$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) throw badValue(key, text);
  return n;
}

function badValue(key: string, value: string): ForgeError {
  return new ForgeError(
    ForgeErrorCodes.FORGE_USAGE,
    `invalid value '${sanitized(value)}' for the S3 setting ${key}: expected ${S3_SETTING_KEYS[key]}`,
    { details: { key } },
  );
}
