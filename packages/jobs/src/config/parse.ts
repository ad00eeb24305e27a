import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, isAbsolute, resolve } from 'node:path';
import { ForgeError, toForgeError } from '@backupforge/common';
import { parseReadDataSubset, parseDuration as parseRetentionDuration } from '@backupforge/engine';
import { parse as parseToml, TomlError } from 'smol-toml';
import type {
  BackupJobConfig,
  ForgeConfig,
  HooksConfig,
  JobConfig,
  MissedRunPolicy,
  NotifierConfig,
  NotifyEvent,
  RepositoryConfig,
  RetentionConfig,
  ScheduleConfig,
  SecretRef,
  TestRestoreJobConfig,
} from '../types.ts';
import { parseDurationMs } from './duration.ts';
import { locateKeys, type Position, type SourceLocator } from './locate.ts';
import { cronProblem, isValidTimeZone, knownTimeZones } from './schedule.ts';
import { closest } from './suggest.ts';

/** Options of {@link parseConfig} and {@link loadConfig}. */
export interface ConfigOptions {
  /** Gets each warning (e.g. a plain-text password), as `file:line:col: message`. */
  readonly onWarning?: (message: string) => void;
  /** Environment for `~` expansion (HOME); default `process.env`. */
  readonly env?: Readonly<Record<string, string | undefined>>;
}

/** Hooks run at most this long unless `timeout` says otherwise. */
export const DEFAULT_HOOK_TIMEOUT_MS = 5 * 60_000;
/** Files a test-restore job compares unless `sample` says otherwise. */
export const DEFAULT_TEST_RESTORE_SAMPLE = 20;
/** Events a notifier gets unless `on` says otherwise. */
export const DEFAULT_NOTIFY_ON: readonly NotifyEvent[] = ['failure', 'warning'];

type Raw = Record<string, unknown>;
type Path = readonly string[];

// ---------------------------------------------------------------------------------------------
// keys

const TOP_KEYS = ['database', 'log_dir', 'defaults', 'repositories', 'jobs', 'notifiers'] as const;
const REPO_KEYS = [
  'location',
  'password',
  'password_file',
  'password_env',
  'password_command',
  'options',
  'env',
  'limit_upload',
  'limit_download',
] as const;
const FS_JOB_KEYS = [
  'type',
  'repository',
  'paths',
  'exclude',
  'exclude_if_present',
  'one_file_system',
  'tags',
  'host',
  'schedule',
  'retention',
  'prune',
  'check',
  'hooks',
  'notify',
] as const;
const TEST_RESTORE_KEYS = [
  'type',
  'repository',
  'schedule',
  'hooks',
  'notify',
  'sample',
  'tags',
  'host',
] as const;
const DEFAULT_KEYS = FS_JOB_KEYS.filter((k) => k !== 'type' && k !== 'paths');
const RETENTION_COUNTS = {
  keep_last: 'keepLast',
  keep_hourly: 'keepHourly',
  keep_daily: 'keepDaily',
  keep_weekly: 'keepWeekly',
  keep_monthly: 'keepMonthly',
  keep_yearly: 'keepYearly',
} as const;
const RETENTION_KEYS = [...Object.keys(RETENTION_COUNTS), 'keep_within', 'keep_tags'];
const HOOK_KEYS = ['before', 'after', 'on_error', 'timeout'] as const;
const SCHEDULE_KEYS = ['cron', 'timezone', 'missed'] as const;
const CHECK_KEYS = ['read_data_subset'] as const;
const SECRET_KINDS = ['env', 'file', 'command'] as const;
const NOTIFIER_TYPES = ['webhook', 'ntfy', 'healthchecks', 'email'] as const;
const NOTIFIER_KEYS: Record<(typeof NOTIFIER_TYPES)[number], readonly string[]> = {
  webhook: ['type', 'on', 'url', 'headers'],
  ntfy: ['type', 'on', 'url', 'token', 'token_file', 'token_env', 'token_command', 'priority'],
  healthchecks: ['type', 'on', 'url'],
  email: [
    'type',
    'on',
    'host',
    'port',
    'secure',
    'user',
    'password',
    'password_file',
    'password_env',
    'password_command',
    'from',
    'to',
  ],
};
const NOTIFY_EVENTS: readonly NotifyEvent[] = ['start', 'success', 'warning', 'failure'];
const MISSED: readonly MissedRunPolicy[] = ['skip', 'run-once'];
const JOB_TYPES = ['fs', 'test-restore'] as const;

/** Job names become file names (logs, locks): letters, digits, `.`, `_`, `-`; no leading dot. */
const JOB_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const BARE_KEY = /^[A-Za-z0-9_-]+$/;

// ---------------------------------------------------------------------------------------------
// problems

/** `jobs.home.paths`, quoting segments that are not bare TOML keys. */
function keyPath(path: Path): string {
  return path.map((p) => (BARE_KEY.test(p) ? p : JSON.stringify(p))).join('.');
}

function tableLabel(path: Path): string {
  return path.length === 0 ? 'the top level' : `[${keyPath(path)}]`;
}

function listOf(names: readonly string[]): string {
  return names.length === 0 ? 'none' : names.join(', ');
}

class Collector {
  readonly #items: { pos: Position | undefined; text: string; seq: number }[] = [];

  readonly file: string;
  readonly locator: SourceLocator;
  readonly onWarning: ((message: string) => void) | undefined;

  constructor(file: string, locator: SourceLocator, onWarning: ((message: string) => void) | undefined) {
    this.file = file;
    this.locator = locator;
    this.onWarning = onWarning;
  }

  get count(): number {
    return this.#items.length;
  }

  /** Records a problem at the position of `path`. */
  error(path: Path, message: string): void {
    this.#items.push({ pos: this.locator.find(path), text: message, seq: this.#items.length });
  }

  warn(path: Path, message: string): void {
    this.onWarning?.(this.format(this.locator.find(path), message));
  }

  format(pos: Position | undefined, message: string): string {
    return pos ? `${this.file}:${pos.line}:${pos.column}: ${message}` : `${this.file}: ${message}`;
  }

  /** The problems, in document order. */
  lines(): string[] {
    return [...this.#items]
      .sort(
        (a, b) =>
          (a.pos?.line ?? Number.MAX_SAFE_INTEGER) - (b.pos?.line ?? Number.MAX_SAFE_INTEGER) ||
          (a.pos?.column ?? 0) - (b.pos?.column ?? 0) ||
          a.seq - b.seq,
      )
      .map((p) => this.format(p.pos, p.text));
  }
}

function invalidConfig(file: string, problems: string[]): ForgeError {
  return new ForgeError('FORGE_USAGE', problems.join('\n'), {
    hint: `fix ${problems.length === 1 ? 'this problem' : `these ${problems.length} problems`} in ${file} (the format is described in docs/config.md)`,
    details: { file, problems },
  });
}

// ---------------------------------------------------------------------------------------------
// value readers: each reports a problem and returns undefined when the value does not fit

function isTable(v: unknown): v is Raw {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

function typeName(v: unknown): string {
  if (typeof v === 'string') return 'a string';
  if (typeof v === 'number') return Number.isInteger(v) ? 'a number' : 'a decimal number';
  if (typeof v === 'boolean') return 'a boolean';
  if (typeof v === 'bigint') return 'a number';
  if (Array.isArray(v)) return 'a list';
  if (v instanceof Date) return 'a date';
  if (isTable(v)) return 'a table';
  return typeof v;
}

function wrongType(c: Collector, path: Path, expected: string, v: unknown): undefined {
  c.error(path, `${keyPath(path)}: expected ${expected}, got ${typeName(v)}`);
  return undefined;
}

function readString(c: Collector, path: Path, v: unknown): string | undefined {
  if (typeof v !== 'string') return wrongType(c, path, 'a string', v);
  if (v.trim() === '') {
    c.error(path, `${keyPath(path)}: must not be empty`);
    return undefined;
  }
  return v;
}

function readBool(c: Collector, path: Path, v: unknown): boolean | undefined {
  if (typeof v !== 'boolean') return wrongType(c, path, 'true or false', v);
  return v;
}

function readInt(
  c: Collector,
  path: Path,
  v: unknown,
  range: { min: number; max?: number; what: string },
): number | undefined {
  if (
    typeof v !== 'number' ||
    !Number.isSafeInteger(v) ||
    v < range.min ||
    (range.max !== undefined && v > range.max)
  ) {
    const got = typeof v === 'number' ? String(v) : typeName(v);
    c.error(path, `${keyPath(path)}: expected ${range.what}, got ${got}`);
    return undefined;
  }
  return v;
}

function readStringList(
  c: Collector,
  path: Path,
  v: unknown,
  opts: { nonEmpty?: boolean } = {},
): string[] | undefined {
  if (!Array.isArray(v)) return wrongType(c, path, 'a list of strings', v);
  const out: string[] = [];
  let ok = true;
  v.forEach((item: unknown, i) => {
    if (typeof item !== 'string') {
      c.error(
        [...path, String(i)],
        `${keyPath(path)}: expected a list of strings, but item ${i + 1} is ${typeName(item)}`,
      );
      ok = false;
    } else if (item.trim() === '') {
      c.error([...path, String(i)], `${keyPath(path)}: item ${i + 1} is an empty string`);
      ok = false;
    } else out.push(item);
  });
  if (ok && opts.nonEmpty && out.length === 0) {
    c.error(path, `${keyPath(path)}: the list is empty; give at least one entry`);
    return undefined;
  }
  return ok ? out : undefined;
}

function readTable(c: Collector, path: Path, v: unknown): Raw | undefined {
  if (!isTable(v)) return wrongType(c, path, `a table ([${keyPath(path)}] or { … })`, v);
  return v;
}

/**
 * Reports keys of `t` that are not in `allowed` (`explain` may give a specific reason for a key);
 * false when there were any.
 */
function checkKeys(
  c: Collector,
  path: Path,
  t: Raw,
  allowed: readonly string[],
  explain?: (key: string) => string | undefined,
): boolean {
  let ok = true;
  for (const key of Object.keys(t)) {
    if (allowed.includes(key)) continue;
    ok = false;
    const special = explain?.(key);
    if (special !== undefined) {
      c.error([...path, key], special);
      continue;
    }
    const guess = closest(key, allowed);
    const where = path.length === 0 ? 'unknown top-level key' : 'unknown key';
    const inTable = path.length === 0 ? '' : ` in ${tableLabel(path)}`;
    const hint = guess !== undefined ? ` (did you mean "${guess}"?)` : ` (allowed: ${allowed.join(', ')})`;
    c.error([...path, key], `${where} "${key}"${inTable}${hint}`);
  }
  return ok;
}

function missing(c: Collector, path: Path, key: string, what: string): undefined {
  c.error(path, `${tableLabel(path)} is missing "${key}" (${what})`);
  return undefined;
}

function has(t: Raw, key: string): boolean {
  return Object.hasOwn(t, key) && t[key] !== undefined;
}

/** Copies `o` without its undefined properties (so results compare cleanly). */
function compact<T extends object>(o: T): T {
  for (const k of Object.keys(o) as (keyof T)[]) if (o[k] === undefined) delete o[k];
  return o;
}

// ---------------------------------------------------------------------------------------------
// paths and secrets

interface Env {
  readonly baseDir: string;
  readonly home: string;
}

/** `~/x` → home, relative → against the config file's directory, absolute unchanged. */
function expandPath(p: string, env: Env): string {
  if (p === '~') return env.home;
  if (p.startsWith('~/')) return resolve(env.home, p.slice(2));
  return isAbsolute(p) ? p : resolve(env.baseDir, p);
}

/** Remote locations stay as written; a local path is expanded like other paths. */
function expandLocation(loc: string, env: Env): string {
  if (/^(s3|sftp|rclone|rest|memory):/.test(loc)) return loc;
  if (loc.startsWith('local:')) return `local:${expandPath(loc.slice('local:'.length), env)}`;
  return expandPath(loc, env);
}

/**
 * A secret given as a table `{ env = "VAR" }` / `{ file = "…" }` / `{ command = "…" }`, or as a
 * plain string (accepted; `warnPlain` says whether that deserves a warning).
 */
function readSecretValue(
  c: Collector,
  path: Path,
  v: unknown,
  env: Env,
  warnPlain: string | undefined,
): SecretRef | undefined {
  if (typeof v === 'string') {
    if (warnPlain !== undefined) c.warn(path, warnPlain);
    return { kind: 'value', value: v };
  }
  if (!isTable(v)) {
    return wrongType(
      c,
      path,
      'a string or a table { env = "VAR" }, { file = "/path" } or { command = "…" }',
      v,
    );
  }
  checkKeys(c, path, v, SECRET_KINDS);
  const kinds = SECRET_KINDS.filter((k) => has(v, k));
  if (kinds.length !== 1) {
    c.error(
      path,
      `${keyPath(path)}: give exactly one of env, file or command${kinds.length > 1 ? ` (got ${kinds.join(' and ')})` : ''}`,
    );
    return undefined;
  }
  const kind = kinds[0]!;
  const s = readString(c, [...path, kind], v[kind]);
  if (s === undefined) return undefined;
  return secretOf(c, [...path, kind], kind, s, env);
}

function secretOf(
  c: Collector,
  path: Path,
  kind: 'env' | 'file' | 'command',
  s: string,
  env: Env,
): SecretRef | undefined {
  switch (kind) {
    case 'env':
      if (!ENV_NAME.test(s)) {
        c.error(path, `${keyPath(path)}: "${s}" is not an environment variable name (letters, digits and _)`);
        return undefined;
      }
      return { kind: 'env', name: s };
    case 'file':
      return { kind: 'file', path: expandPath(s, env) };
    case 'command':
      return { kind: 'command', command: s };
  }
}

/**
 * The secret named by `<base>_file`, `<base>_env`, `<base>_command` or (warns) plain `<base>` in
 * table `t`; at most one may be set.
 */
function readSecretKeys(
  c: Collector,
  path: Path,
  t: Raw,
  base: string,
  env: Env,
): { ref?: SecretRef; given: boolean; ok: boolean } {
  const keys = [`${base}_file`, `${base}_env`, `${base}_command`, base].filter((k) => has(t, k));
  if (keys.length === 0) return { given: false, ok: true };
  if (keys.length > 1) {
    c.error([...path, keys[1]!], `${tableLabel(path)}: set only one of ${keys.join(', ')}`);
    return { given: true, ok: false };
  }
  const key = keys[0]!;
  const s = readString(c, [...path, key], t[key]);
  if (s === undefined) return { given: true, ok: false };
  if (key === base) {
    c.warn(
      [...path, key],
      `plain-text ${base} in ${tableLabel(path)}; prefer ${base}_file, ${base}_env or ${base}_command so the secret is not stored in forge.toml`,
    );
    return { ref: { kind: 'value', value: s }, given: true, ok: true };
  }
  const kind = key.slice(base.length + 1) as 'file' | 'env' | 'command';
  const ref = secretOf(c, [...path, key], kind, s, env);
  return ref ? { ref, given: true, ok: true } : { given: true, ok: false };
}

function readHttpUrl(c: Collector, path: Path, v: unknown): string | undefined {
  const s = readString(c, path, v);
  if (s === undefined) return undefined;
  let url: URL | undefined;
  try {
    url = new URL(s);
  } catch {
    url = undefined;
  }
  // The URL may hold a token (webhooks, ping URLs): say what is wrong without repeating it.
  if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:') || url.hostname === '') {
    c.error(path, `${keyPath(path)}: not a valid URL; expected one starting with https:// (or http://)`);
    return undefined;
  }
  return s;
}

// ---------------------------------------------------------------------------------------------
// sections

function readRepositories(c: Collector, v: unknown, env: Env): Map<string, RepositoryConfig> {
  const out = new Map<string, RepositoryConfig>();
  const all = readTable(c, ['repositories'], v);
  if (!all) return out;
  for (const [name, value] of Object.entries(all)) {
    const path = ['repositories', name];
    const t = readTable(c, path, value);
    if (!t) continue;
    checkKeys(c, path, t, REPO_KEYS);
    const locRaw = has(t, 'location')
      ? readString(c, [...path, 'location'], t.location)
      : missing(c, path, 'location', 'where the repository is, e.g. "/srv/backup" or "s3:bucket/prefix"');
    const pw = readSecretKeys(c, path, t, 'password', env);
    if (!pw.given) {
      missing(
        c,
        path,
        'password_file',
        'or password_env / password_command: how to get the repository password',
      );
    }
    const options: Record<string, string> = {};
    if (has(t, 'options')) {
      const o = readTable(c, [...path, 'options'], t.options);
      for (const [k, ov] of Object.entries(o ?? {})) {
        if (typeof ov === 'string' || typeof ov === 'number' || typeof ov === 'boolean')
          options[k] = String(ov);
        else wrongType(c, [...path, 'options', k], 'a string, number or boolean', ov);
      }
    }
    const secrets: Record<string, SecretRef> = {};
    if (has(t, 'env')) {
      const e = readTable(c, [...path, 'env'], t.env);
      for (const [k, ev] of Object.entries(e ?? {})) {
        const p = [...path, 'env', k];
        if (!ENV_NAME.test(k)) {
          c.error(p, `${keyPath(p)}: "${k}" is not an environment variable name (letters, digits and _)`);
          continue;
        }
        const ref = readSecretValue(
          c,
          p,
          ev,
          env,
          `plain-text value for ${k} in [${keyPath([...path, 'env'])}]; prefer { env = "…" }, { file = "…" } or { command = "…" }`,
        );
        if (ref) secrets[k] = ref;
      }
    }
    const limit = (key: string) =>
      has(t, key)
        ? readInt(c, [...path, key], t[key], { min: 1, what: 'a whole number of KiB/s greater than 0' })
        : undefined;
    const limitUploadKiB = limit('limit_upload');
    const limitDownloadKiB = limit('limit_download');
    out.set(
      name,
      compact({
        name,
        location: locRaw === undefined ? '' : expandLocation(locRaw, env),
        password: pw.ref ?? { kind: 'value', value: '' },
        options,
        env: secrets,
        limitUploadKiB,
        limitDownloadKiB,
      }),
    );
  }
  return out;
}

function readNotifiers(c: Collector, v: unknown, env: Env): Map<string, NotifierConfig> {
  const out = new Map<string, NotifierConfig>();
  const all = readTable(c, ['notifiers'], v);
  if (!all) return out;
  for (const [name, value] of Object.entries(all)) {
    const path = ['notifiers', name];
    const t = readTable(c, path, value);
    if (!t) continue;
    if (!has(t, 'type')) {
      missing(c, path, 'type', `one of ${NOTIFIER_TYPES.join(', ')}`);
      continue;
    }
    const type = t.type;
    if (typeof type !== 'string' || !(NOTIFIER_TYPES as readonly string[]).includes(type)) {
      const guess = typeof type === 'string' ? closest(type, NOTIFIER_TYPES) : undefined;
      c.error(
        [...path, 'type'],
        `${keyPath([...path, 'type'])}: expected one of ${NOTIFIER_TYPES.join(', ')}, got ${typeof type === 'string' ? `"${type}"` : typeName(type)}${guess ? ` (did you mean "${guess}"?)` : ''}`,
      );
      continue;
    }
    const nt = type as (typeof NOTIFIER_TYPES)[number];
    checkKeys(c, path, t, NOTIFIER_KEYS[nt], (key) =>
      Object.values(NOTIFIER_KEYS).some((keys) => keys.includes(key))
        ? `key "${key}" is not used by ${nt} notifiers in ${tableLabel(path)} (allowed: ${NOTIFIER_KEYS[nt].join(', ')})`
        : undefined,
    );
    let on: NotifyEvent[] = [...DEFAULT_NOTIFY_ON];
    if (has(t, 'on')) {
      const list = readStringList(c, [...path, 'on'], t.on);
      if (list) {
        on = [];
        list.forEach((ev, i) => {
          if ((NOTIFY_EVENTS as readonly string[]).includes(ev)) {
            if (!on.includes(ev as NotifyEvent)) on.push(ev as NotifyEvent);
          } else {
            const guess = closest(ev, NOTIFY_EVENTS);
            c.error(
              [...path, 'on', String(i)],
              `${keyPath([...path, 'on'])}: unknown event "${ev}"${guess ? ` (did you mean "${guess}"?)` : ''}; events are ${NOTIFY_EVENTS.join(', ')}`,
            );
          }
        });
      }
    }
    const url = () =>
      has(t, 'url') ? readHttpUrl(c, [...path, 'url'], t.url) : missing(c, path, 'url', `the ${nt} URL`);
    switch (nt) {
      case 'webhook': {
        const u = url();
        const headers: Record<string, SecretRef> = {};
        if (has(t, 'headers')) {
          const h = readTable(c, [...path, 'headers'], t.headers);
          for (const [k, hv] of Object.entries(h ?? {})) {
            const sensitive = /auth|token|secret|key|pass|cookie/i.test(k);
            const ref = readSecretValue(
              c,
              [...path, 'headers', k],
              hv,
              env,
              sensitive
                ? `plain-text value for header ${k} in [${keyPath(path)}]; prefer { env = "…" }, { file = "…" } or { command = "…" }`
                : undefined,
            );
            if (ref) headers[k] = ref;
          }
        }
        out.set(name, { type: 'webhook', name, on, url: u ?? '', headers });
        break;
      }
      case 'ntfy': {
        const u = url();
        const token = readSecretKeys(c, path, t, 'token', env).ref;
        const priority = has(t, 'priority')
          ? readInt(c, [...path, 'priority'], t.priority, { min: 1, max: 5, what: 'a priority from 1 to 5' })
          : undefined;
        out.set(name, compact({ type: 'ntfy', name, on, url: u ?? '', token, priority }));
        break;
      }
      case 'healthchecks': {
        const u = url();
        out.set(name, { type: 'healthchecks', name, on, url: u ?? '' });
        break;
      }
      case 'email': {
        const host = has(t, 'host')
          ? readString(c, [...path, 'host'], t.host)
          : missing(c, path, 'host', 'the SMTP server');
        const secureRaw = has(t, 'secure') ? readBool(c, [...path, 'secure'], t.secure) : undefined;
        const portRaw = has(t, 'port')
          ? readInt(c, [...path, 'port'], t.port, {
              min: 1,
              max: 65535,
              what: 'a port number from 1 to 65535',
            })
          : undefined;
        const secure = secureRaw ?? portRaw === 465;
        const port = portRaw ?? (secure ? 465 : 587);
        const user = has(t, 'user') ? readString(c, [...path, 'user'], t.user) : undefined;
        const password = readSecretKeys(c, path, t, 'password', env);
        if (password.given && !has(t, 'user')) {
          missing(c, path, 'user', 'the SMTP login that the password belongs to');
        }
        const from = has(t, 'from')
          ? readAddress(c, [...path, 'from'], t.from)
          : missing(c, path, 'from', 'the sender address');
        let to: string[] | undefined;
        if (!has(t, 'to')) missing(c, path, 'to', 'the recipient address or list of addresses');
        else if (typeof t.to === 'string') {
          const a = readAddress(c, [...path, 'to'], t.to);
          to = a === undefined ? undefined : [a];
        } else {
          const list = readStringList(c, [...path, 'to'], t.to, { nonEmpty: true });
          if (list) {
            to = [];
            list.forEach((a, i) => {
              const ok = readAddress(
                c,
                [...path, 'to', String(i)],
                a,
                `${keyPath([...path, 'to'])}: item ${i + 1}`,
              );
              if (ok !== undefined) to?.push(ok);
            });
          }
        }
        out.set(
          name,
          compact({
            type: 'email',
            name,
            on,
            host: host ?? '',
            port,
            secure,
            user,
            password: password.ref,
            from: from ?? '',
            to: to ?? [],
          }),
        );
        break;
      }
    }
  }
  return out;
}

function readAddress(c: Collector, path: Path, v: unknown, label = keyPath(path)): string | undefined {
  const s = readString(c, path, v);
  if (s === undefined) return undefined;
  const addr = /<([^<>]+)>\s*$/.exec(s)?.[1] ?? s;
  if (!/^[^\s@<>]+@[^\s@<>]+$/.test(addr.trim())) {
    c.error(
      path,
      `${label}: "${s}" is not an email address (like backup@example.com or "Backups <backup@example.com>")`,
    );
    return undefined;
  }
  return s;
}

/** What [defaults] contributes, already validated. */
interface Defaults {
  repository?: string;
  /** `repository` was written (even if invalid, so jobs need not complain again). */
  repositorySet?: boolean;
  host?: string;
  tags?: string[];
  exclude?: string[];
  excludeIfPresent?: string[];
  oneFileSystem?: boolean;
  retention?: RetentionConfig;
  prune?: boolean;
  /** null: `check = false`. */
  check?: { readDataSubset?: string } | null;
  notify?: string[];
  hooks?: { before?: string; after?: string; onError?: string; timeoutMs?: number };
  timezone?: string;
  missed?: MissedRunPolicy;
}

interface Names {
  readonly repositories: readonly string[];
  readonly notifiers: readonly string[];
}

/** The keys jobs and [defaults] share, read from `t` (a job or [defaults]). */
function readJobFields(c: Collector, path: Path, t: Raw, names: Names, who: string): Defaults {
  const d: Defaults = {};
  if (has(t, 'repository')) {
    d.repositorySet = true;
    const r = readString(c, [...path, 'repository'], t.repository);
    if (r !== undefined) {
      if (!names.repositories.includes(r)) {
        const guess = closest(r, names.repositories);
        c.error(
          [...path, 'repository'],
          `${who} uses repository '${r}' which is not defined; defined: ${listOf(names.repositories)}${guess ? ` (did you mean '${guess}'?)` : ''}`,
        );
      } else d.repository = r;
    }
  }
  if (has(t, 'host')) d.host = readString(c, [...path, 'host'], t.host);
  if (has(t, 'tags')) {
    const tags = readStringList(c, [...path, 'tags'], t.tags);
    tags?.forEach((tag, i) => {
      if (tag.includes(','))
        c.error(
          [...path, 'tags', String(i)],
          `${keyPath([...path, 'tags'])}: tag "${tag}" must not contain a comma`,
        );
    });
    d.tags = tags;
  }
  if (has(t, 'exclude')) d.exclude = readStringList(c, [...path, 'exclude'], t.exclude);
  if (has(t, 'exclude_if_present')) {
    d.excludeIfPresent = readStringList(c, [...path, 'exclude_if_present'], t.exclude_if_present);
  }
  if (has(t, 'one_file_system'))
    d.oneFileSystem = readBool(c, [...path, 'one_file_system'], t.one_file_system);
  if (has(t, 'retention')) d.retention = readRetention(c, [...path, 'retention'], t.retention);
  if (has(t, 'prune')) d.prune = readBool(c, [...path, 'prune'], t.prune);
  if (has(t, 'check')) d.check = readCheck(c, [...path, 'check'], t.check);
  if (has(t, 'notify')) {
    const list = readStringList(c, [...path, 'notify'], t.notify);
    if (list) {
      d.notify = [];
      list.forEach((n, i) => {
        if (!names.notifiers.includes(n)) {
          const guess = closest(n, names.notifiers);
          c.error(
            [...path, 'notify', String(i)],
            `${who} notifies '${n}' which is not defined; defined: ${listOf(names.notifiers)}${guess ? ` (did you mean '${guess}'?)` : ''}`,
          );
        } else if (!d.notify?.includes(n)) d.notify?.push(n);
      });
    }
  }
  if (has(t, 'hooks')) d.hooks = readHooks(c, [...path, 'hooks'], t.hooks);
  return d;
}

function readRetention(c: Collector, path: Path, v: unknown): RetentionConfig | undefined {
  const t = readTable(c, path, v);
  if (!t) return undefined;
  const known = checkKeys(c, path, t, RETENTION_KEYS, (key) =>
    /^keep_within_/.test(key)
      ? `${keyPath([...path, key])} is not supported in forge.toml; use keep_within, or keep_hourly … keep_yearly`
      : undefined,
  );
  const r: Record<string, unknown> = {};
  let ok = true;
  let keeps = false;
  for (const [key, field] of Object.entries(RETENTION_COUNTS)) {
    if (!has(t, key)) continue;
    const n = readInt(c, [...path, key], t[key], {
      min: -1,
      what: 'a whole number of snapshots ≥ 0, or -1 for unlimited',
    });
    if (n === undefined) ok = false;
    else {
      r[field] = n;
      if (n !== 0) keeps = true;
    }
  }
  if (has(t, 'keep_within')) {
    const s = readString(c, [...path, 'keep_within'], t.keep_within);
    if (s === undefined) ok = false;
    else {
      try {
        const d = parseRetentionDuration(s);
        r.keepWithin = s.trim();
        if (d.years || d.months || d.days || d.hours) keeps = true;
      } catch (e) {
        ok = false;
        const err = e as ForgeError;
        c.error(
          [...path, 'keep_within'],
          `${keyPath([...path, 'keep_within'])}: ${err.message}; ${err.hint ?? ''}`,
        );
      }
    }
  }
  if (has(t, 'keep_tags')) {
    const tags = readStringList(c, [...path, 'keep_tags'], t.keep_tags);
    if (tags === undefined) ok = false;
    else {
      r.keepTags = tags;
      if (tags.length > 0) keeps = true;
    }
  }
  if (ok && known && !keeps) {
    c.error(
      path,
      `${tableLabel(path)} keeps nothing specific, so forget would refuse to run; set a rule such as keep_daily = 7, or remove the table`,
    );
    return undefined;
  }
  return ok ? (r as RetentionConfig) : undefined;
}

function readCheck(c: Collector, path: Path, v: unknown): { readDataSubset?: string } | null | undefined {
  if (typeof v === 'boolean') return v ? {} : null;
  if (!isTable(v)) return wrongType(c, path, 'true, false or a table { read_data_subset = "5%" }', v);
  checkKeys(c, path, v, CHECK_KEYS);
  if (!has(v, 'read_data_subset')) return {};
  const p = [...path, 'read_data_subset'];
  const s = readString(c, p, v.read_data_subset);
  if (s === undefined) return undefined;
  try {
    parseReadDataSubset(s);
  } catch {
    c.error(p, `${keyPath(p)}: "${s}" is not a subset; use a percentage like "5%" or a part like "2/5"`);
    return undefined;
  }
  return { readDataSubset: s };
}

function readHooks(c: Collector, path: Path, v: unknown): Defaults['hooks'] {
  const t = readTable(c, path, v);
  if (!t) return undefined;
  checkKeys(c, path, t, HOOK_KEYS);
  const h: NonNullable<Defaults['hooks']> = {};
  if (has(t, 'before')) h.before = readString(c, [...path, 'before'], t.before);
  if (has(t, 'after')) h.after = readString(c, [...path, 'after'], t.after);
  if (has(t, 'on_error')) h.onError = readString(c, [...path, 'on_error'], t.on_error);
  if (has(t, 'timeout')) h.timeoutMs = readDuration(c, [...path, 'timeout'], t.timeout);
  return compact(h);
}

function readDuration(c: Collector, path: Path, v: unknown): number | undefined {
  if (typeof v !== 'string') return wrongType(c, path, 'a duration string like "30s" or "5m"', v);
  try {
    return parseDurationMs(v);
  } catch (e) {
    const err = e as ForgeError;
    c.error(path, `${keyPath(path)}: ${err.message}; ${err.hint ?? ''}`);
    return undefined;
  }
}

function readTimeZone(c: Collector, path: Path, v: unknown): string | undefined {
  const s = readString(c, path, v);
  if (s === undefined) return undefined;
  if (!isValidTimeZone(s)) {
    const guess = closest(s, knownTimeZones());
    c.error(
      path,
      `${keyPath(path)}: unknown time zone "${s}"${guess ? ` (did you mean "${guess}"?)` : ''}; use an IANA name such as "Europe/Berlin" or "UTC"`,
    );
    return undefined;
  }
  return s;
}

function readMissed(c: Collector, path: Path, v: unknown): MissedRunPolicy | undefined {
  if (typeof v === 'string' && (MISSED as readonly string[]).includes(v)) return v as MissedRunPolicy;
  const guess = typeof v === 'string' ? closest(v, MISSED) : undefined;
  c.error(
    path,
    `${keyPath(path)}: expected "skip" or "run-once", got ${typeof v === 'string' ? `"${v}"` : typeName(v)}${guess ? ` (did you mean "${guess}"?)` : ''}`,
  );
  return undefined;
}

function readDefaults(c: Collector, v: unknown, names: Names): Defaults {
  const path = ['defaults'];
  const t = readTable(c, path, v);
  if (!t) return {};
  checkKeys(c, path, t, DEFAULT_KEYS, (key) =>
    key === 'type' || key === 'paths'
      ? `"${key}" cannot have a default; set it in each [jobs.NAME]`
      : undefined,
  );
  const d = readJobFields(c, path, t, names, '[defaults]');
  if (has(t, 'schedule')) {
    const sp = [...path, 'schedule'];
    if (typeof t.schedule === 'string') {
      c.error(
        sp,
        `${keyPath(sp)}: a default cron expression would run every job at once; set schedule in each job, and only timezone / missed here`,
      );
    } else {
      const s = readTable(c, sp, t.schedule);
      if (s) {
        checkKeys(c, sp, s, ['timezone', 'missed'], (key) =>
          key === 'cron'
            ? `${keyPath([...sp, 'cron'])}: a default cron expression would run every job at once; set schedule in each job`
            : undefined,
        );
        if (has(s, 'timezone')) d.timezone = readTimeZone(c, [...sp, 'timezone'], s.timezone);
        if (has(s, 'missed')) d.missed = readMissed(c, [...sp, 'missed'], s.missed);
      }
    }
  }
  return d;
}

function readSchedule(c: Collector, path: Path, v: unknown, d: Defaults): ScheduleConfig | undefined {
  let cron: string | undefined;
  let cronPath: Path = path;
  let timezone = d.timezone;
  let missed = d.missed ?? 'run-once';
  let ok = true;
  if (typeof v === 'string') {
    cron = readString(c, path, v);
  } else {
    const t = readTable(c, path, v);
    if (!t) return undefined;
    checkKeys(c, path, t, SCHEDULE_KEYS);
    cronPath = [...path, 'cron'];
    cron = has(t, 'cron')
      ? readString(c, cronPath, t.cron)
      : missing(c, path, 'cron', 'a cron expression such as "0 3 * * *"');
    if (has(t, 'timezone')) {
      timezone = readTimeZone(c, [...path, 'timezone'], t.timezone);
      if (timezone === undefined) ok = false;
    }
    if (has(t, 'missed')) {
      const m = readMissed(c, [...path, 'missed'], t.missed);
      if (m === undefined) ok = false;
      else missed = m;
    }
  }
  if (cron === undefined) return undefined;
  const problem = cronProblem(cron, ok ? timezone : undefined);
  if (problem !== undefined) {
    c.error(cronPath, `${keyPath(cronPath)}: ${problem}`);
    return undefined;
  }
  return ok ? compact({ cron: cron.trim(), timezone, missed }) : undefined;
}

function mergeHooks(d: Defaults['hooks'], own: Defaults['hooks']): HooksConfig | undefined {
  const h = { ...d, ...own };
  if (h.before === undefined && h.after === undefined && h.onError === undefined) return undefined;
  return compact({
    before: h.before,
    after: h.after,
    onError: h.onError,
    timeoutMs: h.timeoutMs ?? DEFAULT_HOOK_TIMEOUT_MS,
  });
}

function readJobs(
  c: Collector,
  v: unknown,
  env: Env,
  names: Names,
  defaults: Defaults,
): Map<string, JobConfig> {
  const out = new Map<string, JobConfig>();
  const all = readTable(c, ['jobs'], v);
  if (!all) return out;
  for (const [name, value] of Object.entries(all)) {
    const path = ['jobs', name];
    if (!JOB_NAME.test(name)) {
      c.error(
        path,
        `job name "${name}" cannot be used as a file name; use 1-64 letters, digits, ".", "_" or "-", starting with a letter or digit`,
      );
    }
    const t = readTable(c, path, value);
    if (!t) continue;
    let type: (typeof JOB_TYPES)[number] = 'fs';
    if (has(t, 'type')) {
      if (typeof t.type === 'string' && (JOB_TYPES as readonly string[]).includes(t.type)) {
        type = t.type as (typeof JOB_TYPES)[number];
      } else {
        const guess = typeof t.type === 'string' ? closest(t.type, JOB_TYPES) : undefined;
        c.error(
          [...path, 'type'],
          `${keyPath([...path, 'type'])}: expected "fs" or "test-restore", got ${typeof t.type === 'string' ? `"${t.type}"` : typeName(t.type)}${guess ? ` (did you mean "${guess}"?)` : ''}`,
        );
        continue;
      }
    }
    const allowed: readonly string[] = type === 'fs' ? FS_JOB_KEYS : TEST_RESTORE_KEYS;
    checkKeys(c, path, t, allowed, (key) =>
      (FS_JOB_KEYS as readonly string[]).includes(key) ||
      (TEST_RESTORE_KEYS as readonly string[]).includes(key)
        ? `key "${key}" is not used by ${type} jobs in ${tableLabel(path)}`
        : undefined,
    );
    const who = `job ${name}`;
    const own = readJobFields(c, path, t, names, who);
    let repository = own.repository ?? defaults.repository;
    if (repository === undefined && !own.repositorySet && !defaults.repositorySet) {
      if (names.repositories.length === 1) repository = names.repositories[0];
      else {
        c.error(
          path,
          `${tableLabel(path)} has no repository; set repository = "…" here or in [defaults] (defined: ${listOf(names.repositories)})`,
        );
      }
    }
    const schedule = has(t, 'schedule')
      ? readSchedule(c, [...path, 'schedule'], t.schedule, defaults)
      : undefined;
    const hooks = mergeHooks(defaults.hooks, own.hooks);
    const notify = own.notify ?? defaults.notify ?? [];
    const tags = own.tags ?? defaults.tags ?? [];
    const host = own.host ?? defaults.host;
    const common = { name, repository: repository ?? '', schedule, hooks, notify };
    if (type === 'test-restore') {
      let sample: number | 'all' = DEFAULT_TEST_RESTORE_SAMPLE;
      if (has(t, 'sample')) {
        if (t.sample === 'all') sample = 'all';
        else {
          const n = readInt(c, [...path, 'sample'], t.sample, {
            min: 1,
            what: 'a number of files greater than 0, or "all"',
          });
          if (n !== undefined) sample = n;
        }
      }
      const job: TestRestoreJobConfig = compact({ type: 'test-restore', ...common, sample, tags, host });
      out.set(name, job);
      continue;
    }
    let paths: string[] = [];
    if (!has(t, 'paths')) missing(c, path, 'paths', 'the files and directories to back up');
    else
      paths = (readStringList(c, [...path, 'paths'], t.paths, { nonEmpty: true }) ?? []).map((p) =>
        expandPath(p, env),
      );
    const retention = own.retention ?? (has(t, 'retention') ? undefined : defaults.retention);
    const check = own.check !== undefined ? own.check : has(t, 'check') ? undefined : defaults.check;
    const job: BackupJobConfig = compact({
      type: 'fs',
      ...common,
      paths,
      exclude: own.exclude ?? defaults.exclude ?? [],
      excludeIfPresent: own.excludeIfPresent ?? defaults.excludeIfPresent ?? [],
      oneFileSystem: own.oneFileSystem ?? defaults.oneFileSystem ?? false,
      tags,
      host,
      retention,
      prune: own.prune ?? defaults.prune ?? retention !== undefined,
      check: check ?? undefined,
    });
    out.set(name, job);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// entry points

/**
 * Parses and validates the text of a `forge.toml` (`file` names it in messages and anchors
 * relative paths). Throws one ForgeError FORGE_USAGE listing every problem found, one
 * `file:line:col: message` line each (also in `details.problems`).
 */
export function parseConfig(text: string, file: string, opts: ConfigOptions = {}): ForgeConfig {
  const env: Env = {
    baseDir: dirname(resolve(file)),
    home: (opts.env ?? process.env).HOME || homedir(),
  };
  let raw: Raw;
  try {
    raw = parseToml(text, { unsafeKeyBehaviour: 'throw' }) as Raw;
  } catch (e) {
    if (e instanceof TomlError) {
      const reason = e.message.replace(/^Invalid TOML document:\s*/, '').split('\n')[0] ?? e.message;
      throw invalidConfig(file, [`${file}:${e.line}:${e.column}: invalid TOML: ${reason}`]);
    }
    throw e;
  }
  const c = new Collector(file, locateKeys(text), opts.onWarning);
  checkKeys(c, [], raw, TOP_KEYS);

  const names: Names = {
    repositories: isTable(raw.repositories) ? Object.keys(raw.repositories) : [],
    notifiers: isTable(raw.notifiers) ? Object.keys(raw.notifiers) : [],
  };
  const repositories = has(raw, 'repositories')
    ? readRepositories(c, raw.repositories, env)
    : new Map<string, RepositoryConfig>();
  const notifiers = has(raw, 'notifiers')
    ? readNotifiers(c, raw.notifiers, env)
    : new Map<string, NotifierConfig>();
  const defaults = has(raw, 'defaults') ? readDefaults(c, raw.defaults, names) : {};
  const jobs = has(raw, 'jobs') ? readJobs(c, raw.jobs, env, names, defaults) : new Map<string, JobConfig>();

  let database: string | undefined;
  if (has(raw, 'database')) {
    const s = readString(c, ['database'], raw.database);
    if (s !== undefined) {
      if (s.startsWith('sqlite:')) {
        const p = s.slice('sqlite:'.length);
        if (p === '')
          c.error(
            ['database'],
            'database: "sqlite:" needs a path, e.g. "sqlite:/var/lib/backupforge/forge.db"',
          );
        else database = p === ':memory:' ? s : `sqlite:${expandPath(p, env)}`;
      } else if (/^postgres(ql)?:\/\/./.test(s)) {
        database = s;
      } else {
        // May hold a password: do not repeat it.
        c.error(['database'], 'database: expected "sqlite:/path/to/forge.db" or "postgres://user@host/db"');
      }
    }
  }
  const logDirRaw = has(raw, 'log_dir') ? readString(c, ['log_dir'], raw.log_dir) : undefined;

  if (c.count > 0) throw invalidConfig(file, c.lines());
  return compact({
    file: resolve(file),
    repositories,
    jobs,
    notifiers,
    database,
    logDir: logDirRaw === undefined ? undefined : expandPath(logDirRaw, env),
  });
}

/** Reads and parses a `forge.toml` (see {@link parseConfig}); a missing file is FORGE_USAGE. */
export async function loadConfig(path: string, opts: ConfigOptions = {}): Promise<ForgeConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    if ((e as { code?: unknown }).code === 'ENOENT') {
      throw new ForgeError('FORGE_USAGE', `config file ${path} does not exist`, {
        hint: 'create it (see docs/config.md) or point --config / $FORGE_CONFIG at the right file',
        cause: e,
      });
    }
    throw toForgeError(e, `cannot read config file ${path}`);
  }
  return parseConfig(text, path, opts);
}
