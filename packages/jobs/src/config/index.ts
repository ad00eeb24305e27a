export { parseDurationMs } from './duration.ts';
export { configCandidates, findConfigFile } from './find.ts';
export {
  type ConfigOptions,
  DEFAULT_HOOK_TIMEOUT_MS,
  DEFAULT_NOTIFY_ON,
  DEFAULT_TEST_RESTORE_SAMPLE,
  loadConfig,
  parseConfig,
} from './parse.ts';
export { cronProblem, isValidTimeZone, nextRuns } from './schedule.ts';
export { describeSecretRef, type ResolveSecretOptions, resolveSecret } from './secrets.ts';
