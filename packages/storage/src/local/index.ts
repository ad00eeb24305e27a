export type { LocalBackendOptions } from './local-backend.ts';
export { createLocalBackend } from './local-backend.ts';
