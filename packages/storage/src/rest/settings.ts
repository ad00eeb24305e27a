import { ForgeError, ForgeErrorCodes } from '@backupforge/common';

/**
 * The settings of one backend namespace (`rest.*`, `rclone.*`) from `OpenBackendOptions.settings`.
 * Keys of other namespaces are left to their backends; an unknown key in `namespace` is a usage
 * error naming the known ones.
 */
export function namespaceSettings(
  settings: Readonly<Record<string, string>> | undefined,
  namespace: string,
  known: readonly string[],
): Map<string, string> {
  const out = new Map<string, string>();
  for (const [key, value] of Object.entries(settings ?? {})) {
    if (!key.startsWith(`${namespace}.`)) continue;
    if (!known.includes(key)) {
      throw new ForgeError(
        ForgeErrorCodes.FORGE_USAGE,
        `unknown setting '${key}' for the ${namespace} backend: known settings are ${known.join(', ')}`,
        { details: { key, known } },
      );
    }
    out.set(key, value);
  }
  return out;
}

/** Parses a whole number in `[1, max]`, e.g. `rest.connections=8`. */
export function intSetting(key: string, value: string, max: number): number {
  const n = /^\s*\d+\s*$/.test(value) ? Number(value) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < 1 || n > max) {
    throw new ForgeError(
      ForgeErrorCodes.FORGE_USAGE,
      `invalid value '${value}' for ${key}: expected a whole number from 1 to ${max}`,
    );
  }
  return n;
}

const DURATION_UNITS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Parses a duration such as `90s`, `5m`, `1500ms` or plain seconds (`120`) into milliseconds; `0` disables. */
export function durationSetting(key: string, value: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(value);
  if (match === null) {
    throw new ForgeError(
      ForgeErrorCodes.FORGE_USAGE,
      `invalid duration '${value}' for ${key}: expected e.g. '90s', '5m' or a number of seconds`,
    );
  }
  return Math.round(Number(match[1]) * DURATION_UNITS[match[2] ?? 's']!);
}

/**
 * Splits a command-line fragment into words like a POSIX shell would for plain words, '…' and
 * "…" quoting and backslash escapes (no variables, globs or substitutions).
 */
export function splitWords(key: string, value: string): string[] {
  const words: string[] = [];
  let word = '';
  let inWord = false;
  let quote: '"' | "'" | undefined;
  for (let i = 0; i < value.length; i++) {
    const c = value[i]!;
    if (quote === "'") {
      if (c === "'") quote = undefined;
      else word += c;
    } else if (
      c === '\\' &&
      i + 1 < value.length &&
      (quote === undefined || '"\\$`'.includes(value[i + 1]!))
    ) {
      word += value[++i];
      inWord = true;
    } else if (quote === '"') {
      if (c === '"') quote = undefined;
      else word += c;
    } else if (c === '"' || c === "'") {
      quote = c;
      inWord = true;
    } else if (/\s/.test(c)) {
      if (inWord) words.push(word);
      word = '';
      inWord = false;
    } else {
      word += c;
      inWord = true;
    }
  }
  if (quote !== undefined) {
    throw new ForgeError(ForgeErrorCodes.FORGE_USAGE, `unbalanced ${quote} quote in ${key}: ${value}`);
  }
  if (inWord) words.push(word);
  return words;
}
