import { createHmac, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  checkHostKey,
  fingerprint,
  hostKeyAlgorithms,
  hostMatches,
  keyTypeOf,
  knownHostsName,
  knownKeyTypes,
  parseKnownHosts,
} from './known-hosts.ts';

/** An SSH wire-format key blob of `type` with random key bytes (enough for matching logic). */
function blob(type: string): Buffer {
  const name = Buffer.from(type);
  const len = Buffer.alloc(4);
  len.writeUInt32BE(name.length);
  return Buffer.concat([len, name, Buffer.from([0, 0, 0, 32]), randomBytes(32)]);
}

const b64 = (key: Buffer) => key.toString('base64');

function hashed(name: string): string {
  const salt = randomBytes(20);
  return `|1|${salt.toString('base64')}|${createHmac('sha1', salt).update(name).digest('base64')}`;
}

describe('known_hosts', () => {
  it('computes the SHA256 fingerprint ssh-keygen -l prints', () => {
    const key = Buffer.from('AAAAC3NzaC1lZDI1NTE5AAAAIB9C8zZS97J+Y4RmO7MtPhRkzc4Grp8FJeqdZazI4pVx', 'base64');
    expect(keyTypeOf(key)).toBe('ssh-ed25519');
    expect(fingerprint(key)).toBe('SHA256:7otGmT+C+m8Ymh7fMOGFqW40lw5DvanzuSxzEeNWyPI');
  });

  it('looks hosts up as OpenSSH does: plain on port 22, [host]:port otherwise, lowercase', () => {
    expect(knownHostsName('NAS.local', 22)).toBe('nas.local');
    expect(knownHostsName('nas.local', 2222)).toBe('[nas.local]:2222');
    expect(knownHostsName('::1', 2222)).toBe('[::1]:2222');
  });

  it.each([
    ['nas', 'nas', true],
    ['nas', '[nas]:2222', false],
    ['[nas]:2222', '[nas]:2222', true],
    ['[nas]:2222', 'nas', false],
    ['other,NAS,192.168.1.5', 'nas', true],
    ['*.example.com', 'backup.example.com', true],
    ['*.example.com', 'example.com', false],
    ['192.168.1.?', '192.168.1.7', true],
    ['192.168.1.?', '192.168.1.17', false],
    ['!bad.example.com,*.example.com', 'bad.example.com', false],
    ['!bad.example.com,*.example.com', 'good.example.com', true],
    ['[*.example.com]:*', '[a.example.com]:2222', true],
    ['a.b', 'axb', false],
  ])('pattern %j matches %j: %s', (pattern, name, expected) => {
    expect(hostMatches(pattern, name)).toBe(expected);
  });

  it('matches hashed |1|salt|hash entries', () => {
    expect(hostMatches(hashed('[nas]:2222'), '[nas]:2222')).toBe(true);
    expect(hostMatches(hashed('[nas]:2222'), 'nas')).toBe(false);
    expect(hostMatches('|1|garbage', 'nas')).toBe(false);
  });

  it('skips comments, unknown markers and malformed lines', () => {
    const key = blob('ssh-ed25519');
    const entries = parseKnownHosts(
      [
        '# a comment',
        '',
        `@bogus nas ssh-ed25519 ${b64(key)}`,
        'nas ssh-ed25519',
        'nas ssh-ed25519 not*base64',
        `nas ssh-rsa ${b64(key)}`, // type does not match the blob
        `  nas   ssh-ed25519   ${b64(key)}   comment here`,
      ].join('\n'),
      'kh',
    );
    expect(entries).toHaveLength(1);
    expect(entries[0]).toMatchObject({
      marker: undefined,
      hosts: 'nas',
      keyType: 'ssh-ed25519',
      source: 'kh:7',
    });
  });

  describe('checkHostKey', () => {
    const ed = blob('ssh-ed25519');
    const ecdsa = blob('ecdsa-sha2-nistp256');
    const rsa = blob('ssh-rsa');

    it('accepts any listed key of the host, with several key types listed', () => {
      const entries = parseKnownHosts(
        `nas ssh-rsa ${b64(rsa)}\nnas ecdsa-sha2-nistp256 ${b64(ecdsa)}\n${hashed('nas')} ssh-ed25519 ${b64(ed)}\n`,
        'kh',
      );
      for (const key of [ed, ecdsa, rsa]) expect(checkHostKey(entries, 'nas', key).status).toBe('known');
      expect(knownKeyTypes(entries, 'nas')).toEqual(['ssh-rsa', 'ecdsa-sha2-nistp256', 'ssh-ed25519']);
    });

    it('reports a different key of the same type as changed, naming the line', () => {
      const entries = parseKnownHosts(
        `other ssh-ed25519 ${b64(ed)}\n[nas]:2222 ssh-ed25519 ${b64(blob('ssh-ed25519'))}\n`,
        'kh',
      );
      const verdict = checkHostKey(entries, '[nas]:2222', ed);
      expect(verdict).toMatchObject({ status: 'changed', entry: { source: 'kh:2' } });
    });

    it('reports a key of a type not listed as unknown, with the listed types', () => {
      const entries = parseKnownHosts(`nas ssh-ed25519 ${b64(ed)}\n`, 'kh');
      expect(checkHostKey(entries, 'nas', ecdsa)).toEqual({
        status: 'unknown',
        otherTypes: ['ssh-ed25519'],
        certAuthorityOnly: false,
      });
      expect(checkHostKey(entries, 'elsewhere', ed)).toEqual({
        status: 'unknown',
        otherTypes: [],
        certAuthorityOnly: false,
      });
    });

    it('rejects a @revoked key even when it is also listed, and ignores @cert-authority', () => {
      const entries = parseKnownHosts(
        `nas ssh-ed25519 ${b64(ed)}\n@revoked * ssh-ed25519 ${b64(ed)}\n@cert-authority *.lan ecdsa-sha2-nistp256 ${b64(ecdsa)}\n`,
        'kh',
      );
      expect(checkHostKey(entries, 'nas', ed)).toMatchObject({
        status: 'revoked',
        entry: { source: 'kh:2' },
      });
      expect(checkHostKey(entries, 'box.lan', ecdsa)).toEqual({
        status: 'unknown',
        otherTypes: [],
        certAuthorityOnly: true,
      });
    });

    it('honours negated patterns', () => {
      const entries = parseKnownHosts(`!evil.lan,*.lan ssh-ed25519 ${b64(ed)}\n`, 'kh');
      expect(checkHostKey(entries, 'nas.lan', ed).status).toBe('known');
      expect(checkHostKey(entries, 'evil.lan', ed).status).toBe('unknown');
    });
  });

  it('offers the known host key algorithms first', () => {
    const defaults = ['ssh-ed25519', 'ecdsa-sha2-nistp256', 'rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'];
    expect(hostKeyAlgorithms(['ssh-rsa'], defaults)).toEqual([
      'rsa-sha2-512',
      'rsa-sha2-256',
      'ssh-rsa',
      'ssh-ed25519',
      'ecdsa-sha2-nistp256',
    ]);
    expect(hostKeyAlgorithms(['ecdsa-sha2-nistp256', 'weird-type'], defaults)[0]).toBe('ecdsa-sha2-nistp256');
    expect(hostKeyAlgorithms([], defaults)).toEqual(defaults);
  });
});
