import type { StorageBackend } from '@backupforge/common';
import { ForgeError, ForgeErrorCodes } from '@backupforge/common';
import type { OpenBackendOptions } from '../open-backend.ts';
import { createRestProtocolBackend } from '../rest/protocol.ts';
import { durationSetting, intSetting, namespaceSettings, splitWords } from '../rest/settings.ts';
import { createRcloneTransport } from './rclone-transport.ts';

/** Settings of the `rclone:` backend (`-o key=value`). */
export const RCLONE_SETTINGS = [
  'rclone.program',
  'rclone.args',
  'rclone.connections',
  'rclone.timeout',
] as const;

const DEFAULT_CONNECTIONS = 5;
const DEFAULT_TIMEOUT_MS = 300_000;

export interface RcloneBackendOptions {
  /** What rclone should serve: `remote:path`, a connection string (`:sftp,host=h:path`) or a local path. */
  readonly remote: string;
  /** The rclone executable, looked up in PATH unless it is a path. Default `rclone`. */
  readonly program?: string;
  /** Extra arguments after `serve restic --stdio` (e.g. `['--config', '/etc/rclone.conf']`). */
  readonly args?: readonly string[];
  /** Most concurrent requests (HTTP/2 streams). Default 5. */
  readonly connections?: number;
  /** The child's environment (RCLONE_CONFIG_*, …). Default `process.env`; AWS_CA_BUNDLE is always removed. */
  readonly env?: NodeJS.ProcessEnv;
  /** A request fails (retryably) when rclone sends nothing for this long. Default 300 s; 0 = never. */
  readonly timeoutMs?: number;
}

/**
 * A backend on any rclone remote: runs `rclone serve restic --stdio [args] <remote>` on first use
 * and speaks restic's REST protocol with it over HTTP/2 on the child's stdin/stdout (no port is
 * opened). If rclone dies, calls fail with a retryable `FORGE_IO` quoting its last stderr line
 * and the next call starts it again; `close()` stops it. `properties()` is
 * `{ atomicReplace: false, connections }` (see docs/backends/rclone.md).
 *
 * ```ts
 * const backend = createRcloneBackend({ remote: 'b2:bucket/backup' });
 * await backend.create();
 * ```
 */
export function createRcloneBackend(options: RcloneBackendOptions): StorageBackend {
  const remote = options.remote;
  if (typeof remote !== 'string' || remote.trim() === '') {
    throw new ForgeError(
      ForgeErrorCodes.FORGE_USAGE,
      "the rclone backend needs a remote, as in 'rclone:remote:path'",
    );
  }
  if (remote.startsWith('-') || /[\0\r\n]/.test(remote)) {
    throw new ForgeError(ForgeErrorCodes.FORGE_USAGE, `invalid rclone remote '${redactRemote(remote)}'`, {
      hint: "give 'remote:path', a connection string or a path (write './-name' for a local path starting with '-')",
    });
  }
  const connections = options.connections ?? DEFAULT_CONNECTIONS;
  if (!Number.isSafeInteger(connections) || connections < 1) {
    throw new ForgeError(ForgeErrorCodes.FORGE_USAGE, `invalid rclone connection count ${connections}`);
  }
  const env = { ...(options.env ?? process.env) };
  // rclone 1.60 fails on S3 remotes with 'LoadCustomCABundleError … unsupported transport' when set.
  delete env.AWS_CA_BUNDLE;
  const location = `rclone:${redactRemote(remote)}`;
  const transport = createRcloneTransport({
    program: options.program ?? 'rclone',
    args: ['serve', 'restic', '--stdio', ...(options.args ?? []), remote],
    env,
    timeoutMs: options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
  });
  return createRestProtocolBackend({
    transport,
    location,
    connections,
    authHint:
      "rclone refused access: check the remote's credentials ('rclone config') and any --user/--pass in rclone.args",
  });
}

/**
 * Opens the rclone backend for the part of a repository location after 'rclone:'. Settings:
 * `rclone.program`, `rclone.args` (split like a shell would), `rclone.connections`, `rclone.timeout`.
 */
export async function openRcloneLocation(rest: string, options: OpenBackendOptions): Promise<StorageBackend> {
  const settings = namespaceSettings(options.settings, 'rclone', RCLONE_SETTINGS);
  const program = settings.get('rclone.program');
  if (program !== undefined && program.trim() === '') {
    throw new ForgeError(ForgeErrorCodes.FORGE_USAGE, 'rclone.program is empty');
  }
  const args = settings.get('rclone.args');
  const connections = settings.get('rclone.connections');
  const timeout = settings.get('rclone.timeout');
  return createRcloneBackend({
    remote: rest,
    ...(program === undefined ? {} : { program }),
    ...(args === undefined ? {} : { args: splitWords('rclone.args', args) }),
    ...(connections === undefined ? {} : { connections: intSetting('rclone.connections', connections, 128) }),
    ...(timeout === undefined ? {} : { timeoutMs: durationSetting('rclone.timeout', timeout) }),
    ...(options.env === undefined ? {} : { env: options.env }),
  });
}

const SECRET_KEY = /pass|secret|token|key|auth|cred|sig|session|cookie|bearer|private/i;

/**
 * Hides secret-looking parameters of an rclone connection string
 * (`:s3,access_key_id=AK,secret_access_key=SK:bucket` → `…,secret_access_key=***:bucket`).
 */
export function redactRemote(remote: string): string {
  return remote.replace(
    /,(\s*)([A-Za-z0-9_-]+)(\s*=\s*)("(?:[^"]|"")*"|'(?:[^']|'')*'|[^,:]*)/g,
    (whole, space: string, key: string, eq: string) =>
      SECRET_KEY.test(key) ? `,${space}${key}${eq}***` : whole,
  );
}
