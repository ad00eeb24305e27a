import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

/** One key line of an OpenSSH `known_hosts` file. */
export interface KnownHostsEntry {
  /** `@revoked` or `@cert-authority`, when the line has a marker. */
  readonly marker: 'revoked' | 'cert-authority' | undefined;
  /** The host patterns: `host,alias`, `[host]:port`, `*.example.com`, `!bad`, or a hashed `|1|salt|hash`. */
  readonly hosts: string;
  /** The key type from the key blob itself (`ssh-ed25519`, `ecdsa-sha2-nistp256`, `ssh-rsa`…). */
  readonly keyType: string;
  /** The SSH wire-format public key blob. */
  readonly key: Buffer;
  /** Where the line is, for messages: `file:line`. */
  readonly source: string;
}

/** What known_hosts says about the key a server presented. */
export type HostKeyVerdict =
  | { readonly status: 'known'; readonly entry: KnownHostsEntry }
  | { readonly status: 'revoked'; readonly entry: KnownHostsEntry }
  /** known_hosts holds a different key of the same type for this host. */
  | { readonly status: 'changed'; readonly entry: KnownHostsEntry }
  /** No key of this type is known for the host; `otherTypes` lists the types that are. */
  | {
      readonly status: 'unknown';
      readonly otherTypes: readonly string[];
      /** The host is only covered by `@cert-authority` lines, which are not supported. */
      readonly certAuthorityOnly: boolean;
    };

/**
 * Parses the text of a known_hosts file. Comments, blank lines and malformed lines are skipped
 * (like OpenSSH does); `name` is used in each entry's `source`.
 */
export function parseKnownHosts(text: string, name: string): KnownHostsEntry[] {
  const out: KnownHostsEntry[] = [];
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === '' || line.startsWith('#')) continue;
    const fields = line.split(/\s+/);
    let marker: KnownHostsEntry['marker'];
    if (fields[0]!.startsWith('@')) {
      const m = fields.shift()!;
      if (m === '@revoked') marker = 'revoked';
      else if (m === '@cert-authority') marker = 'cert-authority';
      else continue; // an unknown marker: OpenSSH ignores the line too
    }
    const [hosts, type, b64] = fields;
    if (hosts === undefined || type === undefined || b64 === undefined) continue;
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) continue;
    const key = Buffer.from(b64, 'base64');
    const keyType = keyTypeOf(key);
    if (keyType === undefined || keyType !== type) continue;
    out.push({ marker, hosts, keyType, key, source: `${name}:${i + 1}` });
  }
  return out;
}

/** The name OpenSSH looks a host up by: `host` on port 22, `[host]:port` otherwise. Lowercase. */
export function knownHostsName(host: string, port: number): string {
  const h = host.toLowerCase();
  return port === 22 ? h : `[${h}]:${port}`;
}

/**
 * Checks `key` (an SSH wire-format public key blob) against the entries for `name` (see
 * {@link knownHostsName}), with OpenSSH's rules: a matching `@revoked` key is rejected whatever
 * else is listed, a listed key of the same type and bytes is accepted, a different key of the same
 * type means the key CHANGED. `@cert-authority` lines are not used (host certificates are not
 * supported).
 */
export function checkHostKey(entries: readonly KnownHostsEntry[], name: string, key: Buffer): HostKeyVerdict {
  const type = keyTypeOf(key);
  const forHost = entries.filter((e) => e.marker === 'revoked' || hostMatches(e.hosts, name));
  const revoked = forHost.find((e) => e.marker === 'revoked' && e.key.equals(key));
  if (revoked) return { status: 'revoked', entry: revoked };
  const plain = forHost.filter((e) => e.marker === undefined);
  const same = plain.find((e) => e.key.equals(key));
  if (same) return { status: 'known', entry: same };
  const changed = plain.find((e) => e.keyType === type);
  if (changed) return { status: 'changed', entry: changed };
  return {
    status: 'unknown',
    otherTypes: [...new Set(plain.map((e) => e.keyType))],
    certAuthorityOnly: plain.length === 0 && forHost.some((e) => e.marker === 'cert-authority'),
  };
}

/** The key types known_hosts lists for `name` (plain entries only), in file order. */
export function knownKeyTypes(entries: readonly KnownHostsEntry[], name: string): string[] {
  const types = entries
    .filter((e) => e.marker === undefined && hostMatches(e.hosts, name))
    .map((e) => e.keyType);
  return [...new Set(types)];
}

/** Whether a known_hosts host field matches `name`: hashed (`|1|salt|hash`) or a pattern list. */
export function hostMatches(hosts: string, name: string): boolean {
  if (hosts.startsWith('|1|')) {
    const [, , salt, hash] = hosts.split('|');
    if (salt === undefined || hash === undefined) return false;
    const want = Buffer.from(hash, 'base64');
    const got = createHmac('sha1', Buffer.from(salt, 'base64')).update(name).digest();
    return want.length === got.length && timingSafeEqual(want, got);
  }
  let matched = false;
  for (const raw of hosts.split(',')) {
    const negated = raw.startsWith('!');
    const pattern = (negated ? raw.slice(1) : raw).toLowerCase();
    if (pattern === '' || !globMatches(pattern, name)) continue;
    if (negated) return false; // a negated match excludes the line whatever else matches
    matched = true;
  }
  return matched;
}

/** OpenSSH-style wildcards: `*` any run of characters, `?` exactly one. */
function globMatches(pattern: string, name: string): boolean {
  if (!pattern.includes('*') && !pattern.includes('?')) return pattern === name;
  const re = pattern
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.');
  return new RegExp(`^${re}$`, 's').test(name);
}

/** The type name at the start of an SSH public key blob, or `undefined` when malformed. */
export function keyTypeOf(key: Buffer): string | undefined {
  if (key.length < 4) return undefined;
  const len = key.readUInt32BE(0);
  if (len === 0 || len > 64 || 4 + len > key.length) return undefined;
  const type = key.toString('latin1', 4, 4 + len);
  return /^[A-Za-z0-9@._-]+$/.test(type) ? type : undefined;
}

/** The fingerprint `ssh-keygen -l` prints: `SHA256:` and the unpadded base64 of the blob's SHA-256. */
export function fingerprint(key: Buffer): string {
  return `SHA256:${createHash('sha256').update(key).digest('base64').replace(/=+$/, '')}`;
}

/**
 * The host key algorithms to offer for a host whose known_hosts entries have `types`: those first
 * (so a server with several host keys presents one we know, as OpenSSH does), then the defaults.
 */
export function hostKeyAlgorithms(types: readonly string[], defaults: readonly string[]): string[] {
  const preferred = types.flatMap((t) =>
    t === 'ssh-rsa' ? ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'] : [t],
  );
  const supported = preferred.filter((a) => defaults.includes(a));
  return [...new Set([...supported, ...defaults])];
}
