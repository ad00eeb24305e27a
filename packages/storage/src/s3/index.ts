import type { StorageBackend } from '@backupforge/common';
import { ForgeError, ForgeErrorCodes } from '@backupforge/common';
import type { OpenBackendOptions } from '../open-backend.ts';

/** Opens the S3 backend for the part of a repository location after 's3:'. Placeholder until it lands. */
export async function openS3Location(_rest: string, _options: OpenBackendOptions): Promise<StorageBackend> {
  throw new ForgeError(ForgeErrorCodes.FORGE_USAGE, 'the S3 backend is not available yet');
}
