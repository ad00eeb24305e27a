// Test vectors of docs/design/repository-format.md §13. Anything persisted is pinned here:
// a change that breaks one of these breaks every existing repository.
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { aadOf, open, seal } from '../crypto/aead.ts';
import { blobId } from '../crypto/master-key.ts';
import { blobAad, openBlob, sealBlob } from './blob-codec.ts';
import { encodeConfig, newConfig } from './config.ts';
import { PackBuilder, parsePackHeader } from './pack.ts';

const K_ENC = Buffer.alloc(32, 0x02);
const K_MAC = Buffer.alloc(32, 0x01);
const NONCE = Buffer.alloc(12, 0x03);

describe('format test vectors', () => {
  it('blob id = HMAC-SHA256(K_mac, plaintext)', () => {
    expect(blobId(K_MAC, Buffer.from('hello')).toString('hex')).toBe(
      '3a4d75699f355339725ecf666241ddd9c5ca105542c40a7f5607efc7ece5f67e',
    );
  });

  it('blob AAD layout', () => {
    const id = Buffer.alloc(32, 0xab);
    const aad = blobAad('tree', 'zstd', id, 0x01020304);
    expect(aad.toString('hex')).toBe(
      `${Buffer.from('bf1:blob').toString('hex')}0101${'ab'.repeat(32)}04030201`,
    );
  });

  it('sealed value = nonce || ciphertext || tag (AES-256-GCM)', () => {
    const sealed = Buffer.from(
      seal(K_ENC, Buffer.from('forge'), aadOf('bf1:index', Buffer.from([1, 1])), NONCE),
    );
    expect(sealed.length).toBe(5 + 28);
    expect(sealed.subarray(0, 12).equals(NONCE)).toBe(true);
    expect(sealed.toString('hex')).toMatchInlineSnapshot(
      `"030303030303030303030303a392894e723b5db4ef5512f88caed6e7a768056eae"`,
    );
    expect(open(K_ENC, sealed, aadOf('bf1:index', Buffer.from([1, 1]))).toString()).toBe('forge');
    expect(() => open(K_ENC, sealed, aadOf('bf1:snapshot', Buffer.from([1, 1])))).toThrow(/authentication/);
  });

  it('a pack round-trips and every single-bit flip is detected', () => {
    const blobs = [Buffer.from('a'.repeat(300)), Buffer.from('random-ish 0123456789'), Buffer.alloc(0)].map(
      (data, i) =>
        sealBlob(
          K_ENC,
          { id: blobId(K_MAC, data), type: i === 2 ? 'tree' : 'data', data },
          { algorithm: 'zstd', level: 3 },
        ),
    );
    const b = new PackBuilder();
    for (const s of blobs) b.add(s);
    const pack = b.finish(K_ENC);
    expect(pack.id).toBe(createHash('sha256').update(pack.bytes).digest('hex'));
    expect(pack.entries.map((e) => [e.type, e.compression, e.rawLength])).toEqual([
      ['data', 'zstd', 300],
      ['data', 'none', 21],
      ['tree', 'none', 0],
    ]);
    const readAll = (bytes: Buffer) => {
      const hlen = bytes.readUInt32LE(bytes.length - 4);
      if (hlen + 4 > bytes.length) throw new Error('bad length');
      const header = open(
        K_ENC,
        bytes.subarray(bytes.length - 4 - hlen, bytes.length - 4),
        aadOf('bf1:pack-header'),
      );
      const entries = parsePackHeader(header, bytes.length - 4 - hlen);
      return entries.map((e) =>
        Buffer.from(
          openBlob(
            { encKey: K_ENC, macKey: K_MAC },
            Buffer.from(e.id, 'hex'),
            e,
            bytes.subarray(e.offset, e.offset + e.length),
          ),
        ),
      );
    };
    expect(readAll(Buffer.from(pack.bytes)).map((x) => x.toString())).toEqual([
      'a'.repeat(300),
      'random-ish 0123456789',
      '',
    ]);
    // Every bit of the pack matters: flipping any one makes reading fail (never wrong data).
    for (let bit = 0; bit < pack.bytes.length * 8; bit++) {
      const bad = Buffer.from(pack.bytes);
      bad[bit >> 3]! ^= 1 << (bit & 7);
      expect(() => readAll(bad), `bit ${bit}`).toThrow();
    }
  });

  it('config starts with magic and a plaintext version', () => {
    const c = encodeConfig(K_ENC, newConfig({}));
    expect(c.subarray(0, 8).toString('ascii')).toBe('BFRGCFG1');
    expect(c.readUInt32LE(8)).toBe(1);
  });
});
