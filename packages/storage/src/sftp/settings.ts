import { ForgeError, ForgeErrorCodes } from '@backupforge/common';

/** The `-o sftp.*` settings, parsed. */
export interface SftpSettings {
  /** `sftp.identity`: the private key file to log in with (instead of ~/.ssh/id_*). */
  readonly identity?: string;
  /** `sftp.known-hosts`: the known_hosts file to check host keys against. */
  readonly knownHosts?: string;
  /** `sftp.connections`: parallel SFTP requests for large transfers. */
  readonly connections?: number;
  /** `sftp.timeout`: connect timeout, and how long a request may go unanswered, in ms. */
  readonly timeoutMs?: number;
}

/** Every setting the SFTP backend understands. */
export const SFTP_SETTING_KEYS = [
  'sftp.identity',
  'sftp.known-hosts',
  'sftp.connections',
  'sftp.timeout',
] as const;

const MAX_CONNECTIONS = 64;
const MAX_TIMEOUT_MS = 3_600_000;

/**
 * Picks the `sftp.*` keys out of `settings` (other backends' keys are ignored) and validates them.
 * An unknown `sftp.*` key or a bad value is `FORGE_USAGE` naming what is accepted.
 */
export function parseSftpSettings(settings: Readonly<Record<string, string>> | undefined): SftpSettings {
  const out: { -readonly [K in keyof SftpSettings]: SftpSettings[K] } = {};
  for (const [key, raw] of Object.entries(settings ?? {})) {
    if (!key.toLowerCase().startsWith('sftp.')) continue;
    const value = String(raw).trim();
    switch (key) {
      case 'sftp.identity':
        out.identity = nonEmpty(key, value, 'a path to a private key file');
        break;
      case 'sftp.known-hosts':
        out.knownHosts = nonEmpty(key, value, 'a path to a known_hosts file');
        break;
      case 'sftp.connections': {
        const n = /^\d+$/.test(value) ? Number(value) : Number.NaN;
        if (!(n >= 1 && n <= MAX_CONNECTIONS)) {
          throw bad(key, value, `a whole number from 1 to ${MAX_CONNECTIONS}`);
        }
        out.connections = n;
        break;
      }
      case 'sftp.timeout':
        out.timeoutMs = parseDuration(key, value);
        break;
      default:
        throw new ForgeError(ForgeErrorCodes.FORGE_USAGE, `unknown SFTP setting '${key}'`, {
          hint: `the SFTP backend understands ${SFTP_SETTING_KEYS.join(', ')}`,
          details: { key, known: [...SFTP_SETTING_KEYS] },
        });
    }
  }
  return out;
}

/** `30` (seconds), `30s`, `1500ms`, `2m`. */
function parseDuration(key: string, value: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(value);
  const unit = m?.[2] ?? 's';
  const ms = m ? Number(m[1]) * (unit === 'ms' ? 1 : unit === 's' ? 1000 : 60_000) : Number.NaN;
  if (!(ms >= 1 && ms <= MAX_TIMEOUT_MS)) {
    throw bad(key, value, "a duration up to 1 hour: seconds ('30'), or with a unit ('30s', '1500ms', '2m')");
  }
  return Math.round(ms);
}

function nonEmpty(key: string, value: string, what: string): string {
  if (value === '') throw bad(key, value, what);
  return value;
}

function bad(key: string, value: string, expected: string): ForgeError {
  return new ForgeError(
    ForgeErrorCodes.FORGE_USAGE,
    `invalid value '${value}' for ${key}: expected ${expected}`,
    {
      details: { key, value },
    },
  );
}
