import { AsyncLocalStorage } from 'node:async_hooks';
import { randomBytes } from 'node:crypto';
import { ForgeError } from '@backupforge/common';
import type { TimeInput } from './types.ts';

const RFC3339 = /^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:?\d{2})?$/i;

/**
 * Milliseconds since the epoch. Strings are RFC 3339 / ISO 8601 (any number of fraction digits;
 * digits past milliseconds are dropped, so the engine's nanosecond times work).
 */
export function toMs(t: TimeInput, what = 'time'): number {
  let ms: number;
  if (t instanceof Date) ms = t.getTime();
  else if (typeof t === 'number') ms = t;
  else if (typeof t === 'string') {
    const m = RFC3339.exec(t.trim());
    if (m) {
      const frac = (m[3] ?? '').slice(0, 3).padEnd(3, '0');
      let zone = (m[4] ?? 'Z').toUpperCase();
      if (/^[+-]\d{4}$/.test(zone)) zone = `${zone.slice(0, 3)}:${zone.slice(3)}`;
      ms = Date.parse(`${m[1]}T${m[2]}.${frac}${zone}`);
    } else ms = Date.parse(t);
  } else ms = Number.NaN;
  if (!Number.isFinite(ms)) {
    throw new ForgeError('FORGE_USAGE', `invalid ${what}: ${String(t)}`, {
      hint: 'give a Date, milliseconds since the epoch, or an RFC 3339 time',
    });
  }
  return Math.trunc(ms);
}

export function toMsOrNull(t: TimeInput | null | undefined, what?: string): number | null {
  return t === null || t === undefined ? null : toMs(t, what);
}

export function dateOrNull(ms: number | string | null | undefined): Date | null {
  return ms === null || ms === undefined ? null : new Date(Number(ms));
}

export function numOrNull(n: number | string | bigint | null | undefined): number | null {
  return n === null || n === undefined ? null : Number(n);
}

let lastMs = 0;
let seq = 0;

/**
 * A run id: 12 hex digits of milliseconds, 4 of a per-process sequence, 10 random. Ids made by
 * one process sort in creation order; the store only relies on that to break ties.
 */
export function newRunId(now = Date.now()): string {
  if (now === lastMs) seq = (seq + 1) & 0xffff;
  else {
    lastMs = now;
    seq = 0;
  }
  return `${now.toString(16).padStart(12, '0')}${seq.toString(16).padStart(4, '0')}${randomBytes(5).toString('hex')}`;
}

export function* chunks<T>(items: readonly T[], size: number): Generator<T[]> {
  for (let i = 0; i < items.length; i += size) yield items.slice(i, i + size);
}

export function requireText(value: unknown, what: string): string {
  if (typeof value !== 'string' || value.length === 0) {
    throw new ForgeError('FORGE_USAGE', `${what} must be a non-empty string`);
  }
  return value;
}

export function clampLimit(limit: number | undefined, dflt: number, max: number): number {
  if (limit === undefined) return dflt;
  if (!Number.isInteger(limit) || limit < 1) {
    throw new ForgeError('FORGE_USAGE', `limit must be a positive integer, got ${String(limit)}`);
  }
  return Math.min(limit, max);
}

/** Parses JSON text stored by the store; a damaged value reads as the fallback. */
export function parseJson<T>(text: string | null, fallback: T): T {
  if (text === null) return fallback;
  try {
    return JSON.parse(text) as T;
  } catch {
    return fallback;
  }
}

/** Only A–Z, so SQLite's `lower()` and this agree. */
export function foldAscii(s: string): string {
  return s.replace(/[A-Z]/g, (c) => c.toLowerCase());
}

const held = new AsyncLocalStorage<Set<string>>();
const tails = new Map<string, Promise<unknown>>();

/**
 * Runs `fn` while holding this process's lock on `key` (a database file), re-entrant within one
 * async call chain. better-sqlite3 waits for a busy database synchronously, so two stores on the
 * same file in one process would block the thread while the other holds a transaction across an
 * `await` — a self-deadlock that ends in "database is locked". Taking turns here avoids that;
 * SQLite's own locks still order other processes.
 */
export async function withProcessLock<T>(key: string, fn: () => Promise<T>): Promise<T> {
  const mine = held.getStore();
  if (mine?.has(key)) return fn();
  const before = tails.get(key) ?? Promise.resolve();
  let release!: () => void;
  const turn = new Promise<void>((r) => {
    release = r;
  });
  const tail = before.then(() => turn);
  tails.set(key, tail);
  await before;
  try {
    return await held.run(new Set([...(mine ?? []), key]), fn);
  } finally {
    release();
    if (tails.get(key) === tail) tails.delete(key);
  }
}
