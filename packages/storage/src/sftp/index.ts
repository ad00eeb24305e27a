import type { StorageBackend } from '@backupforge/common';
import type { OpenBackendOptions } from '../open-backend.ts';
import { parseSftpLocation } from './location.ts';
import { parseSftpSettings } from './settings.ts';
import { createSftpBackend } from './sftp-backend.ts';

export type { KnownHostsEntry } from './known-hosts.ts';
export { fingerprint, parseKnownHosts } from './known-hosts.ts';
export type { SftpLocation } from './location.ts';
export { formatSftpLocation, parseSftpLocation, SFTP_LOCATION_FORMS } from './location.ts';
export type { SftpSettings } from './settings.ts';
export { parseSftpSettings, SFTP_SETTING_KEYS } from './settings.ts';
export type { SftpBackendOptions } from './sftp-backend.ts';
export { createSftpBackend } from './sftp-backend.ts';

/**
 * Opens the SFTP backend for the part of a repository location after `sftp:` (see
 * {@link parseSftpLocation}), with the `sftp.*` settings of `options.settings`. Connects lazily,
 * on the first call.
 */
export async function openSftpLocation(rest: string, options: OpenBackendOptions): Promise<StorageBackend> {
  const location = parseSftpLocation(rest);
  const settings = parseSftpSettings(options.settings);
  return createSftpBackend({
    host: location.host,
    port: location.port,
    ...(location.user !== undefined && { user: location.user }),
    path: location.path,
    ...(settings.identity !== undefined && { identity: settings.identity }),
    ...(settings.knownHosts !== undefined && { knownHosts: settings.knownHosts }),
    ...(settings.connections !== undefined && { connections: settings.connections }),
    ...(settings.timeoutMs !== undefined && { timeoutMs: settings.timeoutMs }),
    ...(options.insecureHostKey !== undefined && { insecureHostKey: options.insecureHostKey }),
    ...(options.onWarning !== undefined && { onWarning: options.onWarning }),
    ...(options.env !== undefined && { env: options.env }),
  });
}
