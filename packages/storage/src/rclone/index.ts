import type { StorageBackend } from '@backupforge/common';
import { ForgeError, ForgeErrorCodes } from '@backupforge/common';
import type { OpenBackendOptions } from '../open-backend.ts';

/** Opens the rclone backend for the part of a repository location after 'rclone:'. Placeholder until it lands. */
export async function openRcloneLocation(
  _rest: string,
  _options: OpenBackendOptions,
): Promise<StorageBackend> {
  throw new ForgeError(ForgeErrorCodes.FORGE_USAGE, 'the rclone backend is not available yet');
}
