export { type Instant, isoWeek, parseInstant, zonedFields } from './calendar.ts';
export {
  type Duration,
  durationBefore,
  formatDuration,
  isZeroDuration,
  parseDuration,
  subtractDuration,
} from './duration.ts';
export {
  DEFAULT_GROUP_BY,
  describeGroup,
  type GroupByField,
  groupSnapshots,
  parseGroupBy,
  type SnapshotGroup,
} from './group.ts';
export {
  type ApplyPolicyOptions,
  applyPolicy,
  describePolicy,
  isEmptyPolicy,
  type KeptSnapshot,
  type RemovedSnapshot,
  type ResolvedPolicy,
  type RetentionCounters,
  type RetentionPolicy,
  type RetentionResult,
  type ValidatePolicyOptions,
  validatePolicy,
} from './policy.ts';
