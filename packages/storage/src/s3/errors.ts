import { ForgeError, ForgeErrorCodes, TRANSIENT_NETWORK_CODES } from '@backupforge/common';

/** Where an S3 call failed, for messages: `<location>: cannot <op> <key>: <reason>`. */
export interface S3ErrorContext {
  /** The backend's display location, e.g. `s3:http://127.0.0.1:9000/bucket/prefix`. */
  readonly location: string;
  /** What was being done: `save`, `load`, `stat`, `list`, `remove`, `create bucket for`… */
  readonly op: string;
  /** The object key relative to the location (`data/ab/abcd…`), or the listed directory. */
  readonly key?: string;
}

/** The fields of an SDK (smithy) service exception or a Node network error that matter here. */
interface SdkErrorLike {
  name?: unknown;
  code?: unknown;
  Code?: unknown;
  message?: unknown;
  $fault?: unknown;
  $retryable?: unknown;
  $metadata?: { httpStatusCode?: unknown; requestId?: unknown; extendedRequestId?: unknown };
}

const AUTH_HINT =
  'check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary credentials), ' +
  'and that they may access this bucket';
const AUTH_NAMES = new Set([
  'InvalidAccessKeyId',
  'SignatureDoesNotMatch',
  'AccessDenied',
  'AllAccessDisabled',
  'AccountProblem',
  'InvalidSecurity',
  'ExpiredToken',
  'InvalidToken',
  'TokenRefreshRequired',
  'CredentialsProviderError',
  'InvalidClientTokenId',
  'UnrecognizedClientException',
]);
const THROTTLE_NAMES = new Set([
  'SlowDown',
  'Throttling',
  'ThrottlingException',
  'ThrottledException',
  'RequestThrottled',
  'RequestThrottledException',
  'TooManyRequestsException',
  'RequestLimitExceeded',
  'ProvisionedThroughputExceededException',
  'BandwidthLimitExceeded',
  'EC2ThrottledException',
  'TransactionInProgressException',
  'PriorRequestNotComplete',
]);
const TRANSIENT_NAMES = new Set([
  'TimeoutError',
  'RequestTimeout',
  'RequestTimeoutException',
  'InternalError',
  'ServiceUnavailable',
  'OperationAborted',
  // The bytes arrived corrupted (Content-MD5 or SigV4 payload hash mismatch): send them again.
  'BadDigest',
  'XAmzContentSHA256Mismatch',
  'IncompleteBody',
]);
const TRANSIENT_ERRNO = TRANSIENT_NETWORK_CODES;
const TRANSIENT_MESSAGE =
  /socket hang up|ECONNRESET|ECONNREFUSED|ETIMEDOUT|EPIPE|premature close|aborted|timed out/i;

const NO_BUCKET_HINT = 'check the bucket name and region, or create it with `forge init`';

/** The HTTP status of an SDK error, if it came from a response. */
export function httpStatusOf(e: unknown): number | undefined {
  const status = (e as SdkErrorLike | undefined)?.$metadata?.httpStatusCode;
  return typeof status === 'number' ? status : undefined;
}

/** The S3 error code (`NoSuchKey`, `SlowDown`…) or, for network errors, the errno code. */
export function errorNameOf(e: unknown): string | undefined {
  if (!e || typeof e !== 'object') return undefined;
  const err = e as SdkErrorLike;
  if (typeof err.Code === 'string') return err.Code;
  if (typeof err.name === 'string' && err.name !== 'Error') return err.name;
  return undefined;
}

/**
 * Turns anything an S3 call threw into a `ForgeError` naming the location, the operation and
 * the key. Credentials problems are `FORGE_AUTH`, a missing bucket `FORGE_REPO_NOT_FOUND`,
 * a missing object `FORGE_NOT_FOUND`, 416 `FORGE_RANGE`; throttling, 5xx, timeouts and
 * connection failures are `FORGE_IO` with `retryable: true`. Other 4xx are permanent `FORGE_IO`.
 */
export function s3Error(e: unknown, ctx: S3ErrorContext): ForgeError {
  if (e instanceof ForgeError) return e;
  const err = (e && typeof e === 'object' ? e : {}) as SdkErrorLike;
  const status = httpStatusOf(e);
  const name = errorNameOf(e);
  const errno = typeof err.code === 'string' ? err.code : undefined;
  const rawMessage = typeof err.message === 'string' ? err.message : String(e);
  // The SDK says 'UnknownError' when the response had no body (HEAD requests).
  const message = rawMessage === 'UnknownError' || rawMessage === '' ? undefined : rawMessage;
  const what = `${ctx.location}: cannot ${ctx.op}${ctx.key === undefined ? '' : ` ${ctx.key}`}`;
  const reason = [
    name && name !== 'Unknown' ? name : undefined,
    status !== undefined ? `HTTP ${status}` : undefined,
    errno && errno !== name ? errno : undefined,
  ]
    .filter((x) => x !== undefined)
    .join(', ');
  const text = `${what}: ${[reason ? `${reason}` : undefined, message].filter(Boolean).join(': ') || 'unknown error'}`;
  const details: Record<string, unknown> = {
    location: ctx.location,
    op: ctx.op,
    ...(ctx.key === undefined ? {} : { key: ctx.key }),
    ...(status === undefined ? {} : { status }),
    ...(name === undefined ? {} : { s3Code: name }),
    ...(typeof err.$metadata?.requestId === 'string' ? { requestId: err.$metadata.requestId } : {}),
  };
  const make = (code: keyof typeof ForgeErrorCodes, options: { retryable?: boolean; hint?: string } = {}) =>
    new ForgeError(ForgeErrorCodes[code], text, { ...options, details, cause: e });

  if (name === 'NoSuchBucket') return make('FORGE_REPO_NOT_FOUND', { hint: NO_BUCKET_HINT });
  if (name === 'NoSuchKey' || name === 'NotFound' || (status === 404 && name !== 'NoSuchUpload')) {
    return make('FORGE_NOT_FOUND');
  }
  if (name === 'InvalidRange' || status === 416) return make('FORGE_RANGE');
  if (name === 'RequestTimeTooSkewed') {
    return make('FORGE_AUTH', { hint: "this machine's clock is off: sync it (NTP) and try again" });
  }
  if (
    name === 'AuthorizationHeaderMalformed' ||
    name === 'PermanentRedirect' ||
    name === 'IllegalLocationConstraintException' ||
    status === 301
  ) {
    return make('FORGE_USAGE', {
      hint: 'the bucket is in another region or needs another endpoint: set -o s3.region=<region> (or AWS_REGION)',
    });
  }
  if (name !== undefined && AUTH_NAMES.has(name)) return make('FORGE_AUTH', { hint: AUTH_HINT });
  if (status === 403) return make('FORGE_AUTH', { hint: AUTH_HINT });
  if (name === 'InvalidStorageClass') {
    return make('FORGE_USAGE', {
      hint: 'choose a storage class this service supports with -o s3.storage-class',
    });
  }
  if (name === 'EntityTooSmall' || name === 'EntityTooLarge' || name === 'InvalidPart') {
    return make('FORGE_USAGE', { hint: 'choose another -o s3.part-size (5 to 5120 MiB)' });
  }
  const throttled =
    (name !== undefined && THROTTLE_NAMES.has(name)) ||
    status === 429 ||
    (typeof err.$retryable === 'object' && err.$retryable !== null);
  if (throttled || (status !== undefined && status >= 500 && status !== 501)) {
    return make('FORGE_IO', { retryable: true });
  }
  if (status === 501) {
    return make('FORGE_IO', {
      hint: 'the S3 service does not implement this request; please report it with the service name',
    });
  }
  if (name !== undefined && TRANSIENT_NAMES.has(name)) return make('FORGE_IO', { retryable: true });
  if (status === undefined) {
    // No response: a network failure, or a bug.
    if ((errno && TRANSIENT_ERRNO.has(errno)) || TRANSIENT_MESSAGE.test(rawMessage)) {
      return make('FORGE_IO', { retryable: true });
    }
    if (e instanceof TypeError || e instanceof RangeError || e instanceof ReferenceError) {
      return new ForgeError(ForgeErrorCodes.FORGE_INTERNAL, text, {
        details,
        cause: e,
        hint: 'this is a bug in BackupForge; please report it with the output of --debug',
      });
    }
    if (errno === 'ENOTFOUND') return make('FORGE_IO', { hint: 'check the host name of the endpoint' });
    if (errno !== undefined && /CERT|SSL|TLS|SELF_SIGNED|ALTNAME/.test(errno)) {
      return make('FORGE_IO', {
        hint: "the server's TLS certificate is not trusted: point AWS_CA_BUNDLE or NODE_EXTRA_CA_CERTS at its CA",
      });
    }
    return make('FORGE_IO');
  }
  return make('FORGE_IO');
}
