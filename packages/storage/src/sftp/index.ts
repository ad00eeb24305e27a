import type { StorageBackend } from '@backupforge/common';
import { ForgeError, ForgeErrorCodes } from '@backupforge/common';
import type { OpenBackendOptions } from '../open-backend.ts';

/** Opens the SFTP backend for the part of a repository location after 'sftp:'. Placeholder until it lands. */
export async function openSftpLocation(_rest: string, _options: OpenBackendOptions): Promise<StorageBackend> {
  throw new ForgeError(ForgeErrorCodes.FORGE_USAGE, 'the SFTP backend is not available yet');
}
