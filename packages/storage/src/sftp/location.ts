import { posix } from 'node:path';
import { ForgeError, ForgeErrorCodes } from '@backupforge/common';

/** Where an SFTP repository lives, as parsed from the part of a location after `sftp:`. */
export interface SftpLocation {
  /** The login name, or `undefined` when the location names none (the local user is used). */
  readonly user: string | undefined;
  /** Host name or IP address; IPv6 addresses without brackets. */
  readonly host: string;
  /** TCP port, 22 unless given. */
  readonly port: number;
  /**
   * The repository directory: absolute (`/srv/backup`), or relative to the login directory
   * (`backup/repo`). Normalised, without a trailing slash.
   */
  readonly path: string;
}

export const SFTP_LOCATION_FORMS =
  "'sftp:user@host[:port]/abs/path', 'sftp:user@host:/abs/path', 'sftp:user@host:relative/path' " +
  "or 'sftp://user@host[:port]/abs/path' (with '/~/relative/path' for paths under the login directory); " +
  "the user is optional and IPv6 addresses go in brackets ('[::1]')";

const DEFAULT_PORT = 22;
const HOSTNAME = /^[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?$/;
const IPV6 = /^[0-9A-Fa-f:.]+(?:%[A-Za-z0-9_.-]+)?$/;

/**
 * Parses the part of a repository location after `sftp:`. Accepted forms:
 *
 * | form | path |
 * |---|---|
 * | `user@host/srv/backup`, `user@host:2222/srv/backup` | `/srv/backup` (absolute) |
 * | `user@host:/srv/backup` (restic) | `/srv/backup` |
 * | `user@host:backup/repo`, `user@host:~/backup/repo` (restic) | `backup/repo` (under the login directory) |
 * | `//user@host:2222/srv/backup` | `/srv/backup` |
 * | `//user@host:2222/~/backup/repo` | `backup/repo` |
 *
 * `user@` is optional everywhere; IPv6 addresses go in brackets: `[::1]:2222/srv/backup`. After a
 * colon, digits followed by `/` (or nothing) are a port: write `host:./2024/repo` for a relative
 * directory named like a number. Anything else is `FORGE_USAGE` naming the accepted forms.
 */
export function parseSftpLocation(rest: string): SftpLocation {
  if (typeof rest !== 'string' || rest.trim() === '') {
    throw usage("'sftp:' needs a host and a path", rest);
  }
  if (/[\x00-\x1f\x7f]/.test(rest)) throw usage('the location contains control characters', rest);
  return rest.startsWith('//') ? parseUrlForm(rest) : parseScpForm(rest);
}

/** `//[user@]host[:port]/path`: the path is absolute unless it starts with `/~/`. */
function parseUrlForm(rest: string): SftpLocation {
  const body = rest.slice(2);
  const slash = body.indexOf('/');
  const authority = slash === -1 ? body : body.slice(0, slash);
  const rawPath = slash === -1 ? '' : body.slice(slash);
  const at = authority.lastIndexOf('@');
  const user = at === -1 ? undefined : decode(authority.slice(0, at), rest);
  if (user === '') throw usage("empty user name before '@'", rest);
  if (user?.includes(':')) {
    throw usage('passwords in locations are not supported: use an SSH key or agent', '//<redacted>');
  }
  // A zone id in a URL is escaped: [fe80::1%25eth0].
  const { host, after } = splitHost(authority.slice(at + 1).replace(/%25/g, '%'), rest);
  let port = DEFAULT_PORT;
  if (after !== '') {
    if (!after.startsWith(':')) throw usage(`unexpected '${after}' after the host`, rest);
    port = parsePort(after.slice(1), rest);
  }
  const decoded = decode(rawPath, rest);
  let path: string;
  if (decoded === '/~' || decoded.startsWith('/~/')) {
    path = relativePath(decoded.slice(3), rest);
  } else {
    path = absolutePath(decoded, rest);
  }
  return { user, host, port, path };
}

/** `[user@]host[:port]/abs`, `[user@]host:/abs`, `[user@]host:relative`. */
function parseScpForm(rest: string): SftpLocation {
  const { user, hostPart } = splitUser(rest, rest);
  const { host, after } = splitHost(hostPart, rest);
  if (after === '') throw usage('no repository path after the host', rest);
  if (after.startsWith('/')) return { user, host, port: DEFAULT_PORT, path: absolutePath(after, rest) };
  if (!after.startsWith(':')) throw usage(`unexpected '${after}' after the host`, rest);
  const colonRest = after.slice(1);
  const portMatch = /^(\d+)(\/.*)?$/s.exec(colonRest);
  if (portMatch) {
    const port = parsePort(portMatch[1]!, rest);
    if (portMatch[2] === undefined) throw usage(`no repository path after the port ${port}`, rest);
    return { user, host, port, path: absolutePath(portMatch[2], rest) };
  }
  if (colonRest.startsWith('/'))
    return { user, host, port: DEFAULT_PORT, path: absolutePath(colonRest, rest) };
  const relative = colonRest === '~' ? '' : colonRest.startsWith('~/') ? colonRest.slice(2) : colonRest;
  return { user, host, port: DEFAULT_PORT, path: relativePath(relative, rest) };
}

/** Splits `user@` off: the last `@` before the host (user names may contain `@`, hosts may not). */
function splitUser(s: string, rest: string): { user: string | undefined; hostPart: string } {
  const hostEnd = s.search(/[:/[]/);
  const head = hostEnd === -1 ? s : s.slice(0, hostEnd);
  const at = head.lastIndexOf('@');
  if (at === -1) return { user: undefined, hostPart: s };
  const user = s.slice(0, at);
  if (user === '') throw usage("empty user name before '@'", rest);
  return { user, hostPart: s.slice(at + 1) };
}

function splitHost(s: string, rest: string): { host: string; after: string } {
  if (s.startsWith('[')) {
    const close = s.indexOf(']');
    if (close === -1) throw usage("an IPv6 address is missing its closing ']'", rest);
    const host = s.slice(1, close);
    if (!host.includes(':') || !IPV6.test(host)) throw usage(`'${host}' is not an IPv6 address`, rest);
    return { host, after: s.slice(close + 1) };
  }
  const end = s.search(/[:/]/);
  const host = end === -1 ? s : s.slice(0, end);
  if (host === '') {
    throw usage(s.startsWith('::') ? 'IPv6 addresses must be written in brackets' : 'no host name', rest);
  }
  if (!HOSTNAME.test(host)) throw usage(`'${host}' is not a valid host name`, rest);
  const after = end === -1 ? '' : s.slice(end);
  // `::1:2222/x` or `fe80::1/x`: an unbracketed IPv6 address.
  if (/^:[0-9A-Fa-f]*:/.test(after)) throw usage('IPv6 addresses must be written in brackets', rest);
  return { host, after };
}

function parsePort(s: string, rest: string): number {
  const port = /^\d{1,5}$/.test(s) ? Number(s) : Number.NaN;
  if (!(port >= 1 && port <= 65535)) throw usage(`'${s}' is not a TCP port (1-65535)`, rest);
  return port;
}

function absolutePath(p: string, rest: string): string {
  const path = stripSlash(posix.normalize(p));
  if (!path.startsWith('/')) throw usage('expected an absolute path', rest);
  return path;
}

function relativePath(p: string, rest: string): string {
  if (p.startsWith('/')) throw usage('expected a path relative to the login directory', rest);
  const path = stripSlash(posix.normalize(p === '' ? '.' : p));
  if (path === '.' || path === '') {
    throw usage('the repository cannot be the login directory itself: name a directory inside it', rest);
  }
  return path;
}

function stripSlash(p: string): string {
  return p.length > 1 && p.endsWith('/') ? p.slice(0, -1) : p;
}

function decode(s: string, rest: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    throw usage('invalid %-escape', rest);
  }
}

function usage(problem: string, rest: string): ForgeError {
  return new ForgeError(ForgeErrorCodes.FORGE_USAGE, `invalid SFTP location 'sftp:${rest}': ${problem}`, {
    hint: `write ${SFTP_LOCATION_FORMS}`,
    details: { location: `sftp:${rest}` },
  });
}

/** The canonical, secret-free location string for `loc` (the user always spelled out). */
export function formatSftpLocation(loc: SftpLocation & { readonly user: string }): string {
  const host = loc.host.includes(':') ? `[${loc.host}]` : loc.host;
  const port = loc.port === DEFAULT_PORT ? '' : `:${loc.port}`;
  if (loc.path.startsWith('/')) return `sftp:${loc.user}@${host}${port}${loc.path}`;
  if (port === '') return `sftp:${loc.user}@${host}:${loc.path}`;
  return `sftp://${loc.user}@${host}${port}/~/${loc.path}`;
}
