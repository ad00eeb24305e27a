export type { BackupOptions, BackupResult } from './backup.ts';
export { backup } from './backup.ts';
export type { DiffChange, DiffItem, WalkItem } from './browse.ts';
export { diffSnapshots, findNode, findSnapshot, readFileContent, splitPath, walkSnapshot } from './browse.ts';
export type { CheckFinding, CheckOptions, CheckResult, FindingKind } from './check.ts';
export { checkRepository, parseReadDataSubset } from './check.ts';
export { createChunker } from './chunker/index.ts';
export type { CompressionAlgorithm, CompressionSettings } from './compression.ts';
export type { CopiedSnapshot, CopyChunking, CopyOptions, CopyResult, SkippedSnapshot } from './copy.ts';
export { copySnapshots } from './copy.ts';
export type { KdfParams } from './crypto/key-file.ts';
export { DEFAULT_KDF, KDF_LIMITS } from './crypto/key-file.ts';
export type { ForgetGroupResult, ForgetOptions, ForgetResult } from './forget.ts';
export { forget } from './forget.ts';
export type { ChunkerConfig, RepositoryConfig } from './format/config.ts';
export { DEFAULT_CHUNKER, DEFAULT_PACK_SIZE, FORMAT_VERSION } from './format/config.ts';
export type { Tree, TreeNode } from './format/tree.ts';
export { metadataFromNode } from './format/tree.ts';
export { CRASH_POINTS } from './internal/crash.ts';
export type { LockInfo } from './lock.ts';
export { isStale, listLocks, RepositoryLock } from './lock.ts';
export type { PruneOptions, PrunePlan, PruneResult } from './prune.ts';
export { prune, STALE_TEMPORARY_MS } from './prune.ts';
export type {
  RepairedSnapshot,
  RepairIndexOptions,
  RepairIndexResult,
  RepairSnapshotsOptions,
} from './repair.ts';
export { repairIndex, repairSnapshots } from './repair.ts';
export type { InitOptions, OpenOptions } from './repository.ts';
export { Repository } from './repository.ts';
export type { RestoreError, RestoreOptions, RestoreResult } from './restore.ts';
export { restore } from './restore.ts';
export type {
  Duration,
  GroupByField,
  KeptSnapshot,
  RetentionPolicy,
  RetentionResult,
  SnapshotGroup,
} from './retention/index.ts';
export {
  applyPolicy,
  DEFAULT_GROUP_BY,
  describeGroup,
  describePolicy,
  groupSnapshots,
  isEmptyPolicy,
  parseDuration,
  parseGroupBy,
  validatePolicy,
} from './retention/index.ts';
export type { SnapshotFilter } from './snapshot-filter.ts';
export { findParentSnapshot, matchesFilter, resolveSnapshotRef } from './snapshot-filter.ts';
export type { RepositoryStats } from './stats.ts';
export { repositoryStats } from './stats.ts';
export { ENGINE_VERSION, PROGRAM_VERSION } from './version.ts';
