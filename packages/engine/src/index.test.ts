import { expect, it } from 'vitest';
import pkg from '../package.json' with { type: 'json' };
import { ENGINE_VERSION } from './version.ts';

it('public API surface (changes here are API changes: add a changeset)', async () => {
  expect(Object.keys(await import('./index.ts')).sort()).toMatchInlineSnapshot(`
    [
      "CRASH_POINTS",
      "DEFAULT_CHUNKER",
      "DEFAULT_GROUP_BY",
      "DEFAULT_KDF",
      "DEFAULT_PACK_SIZE",
      "ENGINE_VERSION",
      "FORMAT_VERSION",
      "KDF_LIMITS",
      "PROGRAM_VERSION",
      "Repository",
      "RepositoryLock",
      "STALE_TEMPORARY_MS",
      "applyPolicy",
      "backup",
      "checkRepository",
      "copySnapshots",
      "createChunker",
      "describeGroup",
      "describePolicy",
      "diffSnapshots",
      "findNode",
      "findParentSnapshot",
      "findSnapshot",
      "forget",
      "groupSnapshots",
      "isEmptyPolicy",
      "isStale",
      "listLocks",
      "matchesFilter",
      "metadataFromNode",
      "parseDuration",
      "parseGroupBy",
      "parseReadDataSubset",
      "prune",
      "readFileContent",
      "repairIndex",
      "repairSnapshots",
      "repositoryStats",
      "resolveSnapshotRef",
      "restore",
      "splitPath",
      "validatePolicy",
      "walkSnapshot",
    ]
  `);
});

it('ENGINE_VERSION follows package.json', () => {
  expect(ENGINE_VERSION).toBe(pkg.version);
});
