export type { GlobalOptions, Io } from './context.ts';
export { defaultRepositoryPath, processIo } from './context.ts';
export { ExitCode, exitCodeFor } from './exit-codes.ts';
export type { RunOptions } from './program.ts';
export { runCli } from './program.ts';
