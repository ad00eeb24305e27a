/** Recorded in snapshots. Kept in step with package.json by a test. */
export const ENGINE_VERSION = '0.1.0';
export const PROGRAM_VERSION = `forge ${ENGINE_VERSION}`;
