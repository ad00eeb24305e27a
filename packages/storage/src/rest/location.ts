import { ForgeError, ForgeErrorCodes } from '@backupforge/common';

const FORMS = "'rest:http://host[:port]/path/' or 'rest:https://user:password@host[:port]/path/'";

/** A parsed `rest:` location. */
export interface RestLocation {
  /** The repository URL: http(s), no user info, no query, path ending in '/'. */
  readonly url: URL;
  readonly username?: string;
  readonly password?: string;
  /** For messages: `rest:<url>`, with the user name if the location had one, never the password. */
  readonly location: string;
}

/**
 * Parses the part of a repository location after `rest:` (`http(s)://[user[:pass]@]host[:port]/path/`).
 * Credentials come from the URL's user info, else from `env` (`FORGE_REST_USERNAME`,
 * `FORGE_REST_PASSWORD`). Percent-escapes in the user info are decoded. Throws `FORGE_USAGE`.
 *
 * ```ts
 * parseRestLocation('https://alice:s3cret@backup.example.com/alice/').location
 * // 'rest:https://alice@backup.example.com/alice/'
 * ```
 */
export function parseRestLocation(rest: string, env: NodeJS.ProcessEnv = {}): RestLocation {
  if (!/^https?:\/\//i.test(rest)) {
    throw new ForgeError(
      ForgeErrorCodes.FORGE_USAGE,
      `invalid REST location 'rest:${redact(rest)}': expected ${FORMS}`,
    );
  }
  let url: URL;
  try {
    url = new URL(rest);
  } catch (e) {
    throw new ForgeError(
      ForgeErrorCodes.FORGE_USAGE,
      `invalid REST location 'rest:${redact(rest)}': not a valid URL; expected ${FORMS}`,
      { cause: e },
    );
  }
  if (url.hostname === '') {
    throw new ForgeError(ForgeErrorCodes.FORGE_USAGE, `the REST location 'rest:${redact(rest)}' has no host`);
  }
  if (url.search !== '' || url.hash !== '') {
    throw new ForgeError(
      ForgeErrorCodes.FORGE_USAGE,
      `the REST location 'rest:${redact(rest)}' must not have a query or fragment: expected ${FORMS}`,
    );
  }
  const urlUser = url.username === '' ? undefined : decode(url.username);
  const urlPassword = url.password === '' ? undefined : decode(url.password);
  const username = urlUser ?? nonEmpty(env.FORGE_REST_USERNAME);
  const password = urlPassword ?? nonEmpty(env.FORGE_REST_PASSWORD);
  if (password !== undefined && username === undefined) {
    throw new ForgeError(ForgeErrorCodes.FORGE_USAGE, 'a REST password was given without a user name', {
      hint: "put the user name in the URL ('https://user@host/path/') or in FORGE_REST_USERNAME",
    });
  }
  url.username = '';
  url.password = '';
  if (!url.pathname.endsWith('/')) url.pathname += '/';
  const shownUser = urlUser === undefined ? '' : `${encodeURIComponent(urlUser)}@`;
  return {
    url,
    ...(username === undefined ? {} : { username }),
    ...(password === undefined ? {} : { password }),
    location: `rest:${url.protocol}//${shownUser}${url.host}${url.pathname}`,
  };
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}

function decode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/** Hides a password in a location that failed to parse, for the error message. */
function redact(rest: string): string {
  return rest.replace(/^([a-z]+:\/\/[^/@:]*):[^/@]*@/i, '$1:***@');
}
