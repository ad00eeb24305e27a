export type { FsRestoreTargetOptions, RestoreWarning } from './fs-restore-target.ts';
export { createFsRestoreTarget } from './fs-restore-target.ts';
export type { FsSourceOptions } from './fs-source.ts';
export { createFsSource } from './fs-source.ts';
export type { PathMatcherOptions } from './path-matcher.ts';
export { createPathMatcher } from './path-matcher.ts';
export type { StdinSourceOptions } from './stdin-source.ts';
export { createStdinSource } from './stdin-source.ts';
