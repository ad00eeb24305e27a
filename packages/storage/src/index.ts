export type {
  BackendProperties,
  ByteRange,
  ObjectHandle,
  ObjectInfo,
  ObjectType,
  StorageBackend,
} from '@backupforge/common';
export type { ComposedBackend } from './decorators/index.ts';
export type { LocalBackendOptions } from './local/local-backend.ts';
export type { OpenBackendOptions, RepositoryBackendOptions } from './open-backend.ts';
export { isLocalLocation, openBackend, openRepositoryBackend } from './open-backend.ts';
