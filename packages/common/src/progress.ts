import type { ForgeErrorCode } from './errors.ts';

export type Phase = 'backup' | 'restore' | 'check' | 'scan' | 'copy';

/**
 * Events a long operation reports. The CLI renders them on a TTY, prints them as JSON lines
 * under `--json`, and stays quiet otherwise; the server forwards them to the dashboard.
 */
export type ProgressEvent =
  | {
      readonly type: 'start';
      readonly phase: Phase;
      readonly totalFiles?: number;
      readonly totalBytes?: number;
    }
  | {
      readonly type: 'totals';
      readonly phase: Phase;
      readonly totalFiles: number;
      readonly totalBytes: number;
    }
  | {
      readonly type: 'progress';
      readonly phase: Phase;
      readonly filesDone: number;
      readonly bytesDone: number;
      readonly currentPath?: string;
    }
  | {
      readonly type: 'warning';
      readonly phase: Phase;
      readonly path?: string;
      readonly code: ForgeErrorCode;
      readonly message: string;
    }
  | { readonly type: 'done'; readonly phase: Phase };

export type Reporter = (event: ProgressEvent) => void;

/** A reporter that drops everything. */
export const silentReporter: Reporter = () => {};
