import type { StorageBackend } from '@backupforge/common';
import { ForgeError, ForgeErrorCodes } from '@backupforge/common';
import type { OpenBackendOptions } from '../open-backend.ts';

/** Opens the REST backend for the part of a repository location after 'rest:'. Placeholder until it lands. */
export async function openRestLocation(_rest: string, _options: OpenBackendOptions): Promise<StorageBackend> {
  throw new ForgeError(ForgeErrorCodes.FORGE_USAGE, 'the REST backend is not available yet');
}
