import type { ProgressEvent, Reporter } from '@backupforge/common';
import type { GlobalOptions, Io } from './context.ts';
import { formatBytes, formatDuration } from './format.ts';

/**
 * Everything a command prints goes through here, so the three audiences get what they need:
 * a person at a terminal (progress line, summary), cron (nothing but errors and warnings,
 * unless --verbose), and scripts (--json: one JSON object per line on stdout).
 */
export class Output {
  readonly #io: Io;
  readonly #opts: GlobalOptions;
  #progressShown = false;

  constructor(io: Io, opts: GlobalOptions) {
    this.#io = io;
    this.#opts = opts;
  }

  get json(): boolean {
    return this.#opts.json === true;
  }

  /** True when chatter (summaries, notes) should be printed for a person. */
  get chatty(): boolean {
    if (this.#opts.quiet || this.json) return false;
    return this.#opts.verbose === true || this.#io.stdout.isTTY === true;
  }

  /** Writes one JSON line to stdout (only in --json mode). */
  emit(obj: Record<string, unknown>): void {
    if (this.json) this.#io.stdout.write(`${JSON.stringify(obj, jsonReplacer)}\n`);
  }

  /** The product of a listing command: always printed (in human mode). */
  line(text: string): void {
    this.#clearProgress();
    this.#io.stdout.write(`${text}\n`);
  }

  /** A summary or status line for a person; silent under cron and --json. */
  info(text: string): void {
    if (!this.chatty) return;
    this.#clearProgress();
    this.#io.stdout.write(`${text}\n`);
  }

  /** Side remarks on stderr (e.g. "created a new repository"); silent under cron and --json. */
  note(text: string): void {
    if (this.json) {
      this.emit({ message_type: 'note', message: text });
      return;
    }
    if (this.#opts.quiet || !(this.#opts.verbose || this.#io.stderr.isTTY)) return;
    this.#clearProgress();
    this.#io.stderr.write(`${text}\n`);
  }

  /** Warnings always reach stderr (and stdout as JSON with --json). */
  warn(text: string, extra: Record<string, unknown> = {}): void {
    this.emit({ message_type: 'warning', message: text, ...extra });
    this.#clearProgress();
    this.#io.stderr.write(`warning: ${text}\n`);
  }

  error(text: string, extra: Record<string, unknown> = {}): void {
    this.emit({ message_type: 'error', message: text, ...extra });
    this.#clearProgress();
    this.#io.stderr.write(`error: ${text}\n`);
  }

  #clearProgress(): void {
    if (this.#progressShown) {
      this.#io.stderr.write('\r\x1b[K');
      this.#progressShown = false;
    }
  }

  /** A reporter for engine operations: a live line on a terminal, JSON lines, or nothing. */
  reporter(): Reporter {
    const start = Date.now();
    let totals: { files: number; bytes: number } | undefined;
    let lastJson = 0;
    const tty = this.#io.stderr.isTTY === true && !this.#opts.quiet && !this.json;
    return (ev: ProgressEvent) => {
      switch (ev.type) {
        case 'warning':
          this.warn(ev.message, { code: ev.code, ...(ev.path ? { path: ev.path } : {}) });
          return;
        case 'totals':
          totals = { files: ev.totalFiles, bytes: ev.totalBytes };
          return;
        case 'progress': {
          const elapsed = Date.now() - start;
          const rate = elapsed > 0 ? (ev.bytesDone / elapsed) * 1000 : 0;
          if (this.json) {
            const now = Date.now();
            if (now - lastJson < 1000) return;
            lastJson = now;
            this.emit({
              message_type: 'status',
              phase: ev.phase,
              seconds_elapsed: Math.round(elapsed / 1000),
              files_done: ev.filesDone,
              bytes_done: ev.bytesDone,
              ...(totals
                ? {
                    total_files: totals.files,
                    total_bytes: totals.bytes,
                    percent_done: totals.bytes ? ev.bytesDone / totals.bytes : 0,
                  }
                : {}),
            });
            return;
          }
          if (!tty) return;
          let eta = '';
          if (totals && totals.bytes > 0 && rate > 0) {
            const pct = Math.min(100, (ev.bytesDone / totals.bytes) * 100);
            eta = ` ${pct.toFixed(1)}%  ETA ${formatDuration(((totals.bytes - ev.bytesDone) / rate) * 1000)}`;
          }
          const files = totals ? `${ev.filesDone}/${totals.files}` : `${ev.filesDone}`;
          const bytes = totals
            ? `${formatBytes(ev.bytesDone)}/${formatBytes(totals.bytes)}`
            : formatBytes(ev.bytesDone);
          let line = `[${formatDuration(elapsed)}] ${files} files, ${bytes}, ${formatBytes(rate)}/s${eta}`;
          const width = this.#io.stderr.columns || 80; // a pty without a size reports 0
          if (ev.currentPath && line.length + 3 < width) {
            const room = width - line.length - 3;
            const p = ev.currentPath.length > room ? `…${ev.currentPath.slice(-(room - 1))}` : ev.currentPath;
            line += `  ${p}`;
          }
          this.#io.stderr.write(`\r\x1b[K${line.slice(0, width - 1)}`);
          this.#progressShown = true;
          return;
        }
        case 'done':
          this.#clearProgress();
          return;
        default:
          return;
      }
    };
  }
}

function jsonReplacer(_k: string, v: unknown): unknown {
  return typeof v === 'bigint' ? v.toString() : v;
}
