export { alignedBuffer, DIRECT_ALIGN } from './aligned.ts';
export type { ForgeErrorCode, ForgeErrorOptions } from './errors.ts';
export {
  ForgeError,
  ForgeErrorCodes,
  InternalError,
  isForgeError,
  TRANSIENT_NETWORK_CODES,
  toForgeError,
} from './errors.ts';
export type { ChunkId, PackId, SnapshotId } from './ids.ts';
export { isHexId, shortId } from './ids.ts';
export type { Phase, ProgressEvent, Reporter } from './progress.ts';
export { silentReporter } from './progress.ts';
export type { LocalFileWriting, RestoreFileWriter, RestoreTarget } from './restore.ts';
export type { BackupJob, Snapshot, SnapshotRecord, SnapshotSummary } from './snapshot.ts';
export type {
  BackupSource,
  ContentReader,
  FileMetadata,
  NodeType,
  SourceEntry,
  SourceEvent,
  SourceWarning,
} from './source.ts';
export type {
  BackendProperties,
  ByteRange,
  ObjectHandle,
  ObjectInfo,
  ObjectType,
  ObjectUpload,
  StorageBackend,
  TemporarySweep,
} from './storage.ts';
export { OBJECT_DIRS, OBJECT_TYPES, objectKey } from './storage.ts';
