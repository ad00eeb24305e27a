export type {
  BackendProperties,
  ByteRange,
  ObjectHandle,
  ObjectInfo,
  ObjectType,
  StorageBackend,
} from '@backupforge/common';
export type { LocalBackendOptions } from './local/local-backend.ts';
export type { OpenBackendOptions } from './open-backend.ts';
export { openBackend } from './open-backend.ts';
