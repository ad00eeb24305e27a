import { describe, expect, it } from 'vitest';
import { createKeyFile, DEFAULT_KDF, deriveKeyNative, deriveKeyWasm, type KdfParams } from './key-file.ts';

const salt = Buffer.alloc(16, 7).toString('base64');

function params(memoryKiB: number, iterations: number, parallelism: number): KdfParams {
  return { algorithm: 'argon2id', memoryKiB, iterations, parallelism, salt };
}

// Computed by the reference implementation (Debian's `argon2` CLI, 0~20171227):
// `echo -n "correct horse" | argon2 "$(printf '\x07%.0s' {1..16})" -id -t 1 -k 8192 -p 1 -l 32 -r`
const REFERENCE = {
  password: 'correct horse',
  kdf: params(8192, 1, 1),
  key: '535955e2e0c81e5649e5066231cf4deeb51d1f7bfc7b106bf67fcab2b7b369e3',
};

const [major = 0, minor = 0] = process.versions.node.split('.').map(Number);
const hasNative = major > 24 || (major === 24 && minor >= 7);

describe('key derivation', () => {
  it.runIf(hasNative)('uses Node’s own Argon2 on Node ≥ 24.7', () => {
    expect(deriveKeyNative('x', params(8192, 1, 1))).toBeInstanceOf(Promise);
  });

  it.runIf(hasNative)(
    'gives the same key natively and in WebAssembly, so either opens a key file made by the other',
    async () => {
      const cases: [string, KdfParams][] = [
        ['correct-horse-battery-staple', params(65536, 3, 1)],
        ['the default', params(DEFAULT_KDF.memoryKiB, DEFAULT_KDF.iterations, DEFAULT_KDF.parallelism)],
        ['pässwörd ✓ 🔑', params(8192, 2, 2)],
        ['p', params(8192, 1, 4)],
        [REFERENCE.password, REFERENCE.kdf],
      ];
      for (const [password, kdf] of cases) {
        const native = Buffer.from(await deriveKeyNative(password, kdf)!);
        const wasm = Buffer.from(await deriveKeyWasm(password, kdf));
        expect(native.length).toBe(32);
        expect(native.toString('hex'), `${password} ${JSON.stringify(kdf)}`).toBe(wasm.toString('hex'));
      }
    },
  );

  it('matches the reference implementation', async () => {
    expect(Buffer.from(await deriveKeyWasm(REFERENCE.password, REFERENCE.kdf)).toString('hex')).toBe(
      REFERENCE.key,
    );
    const native = deriveKeyNative(REFERENCE.password, REFERENCE.kdf);
    if (native) expect(Buffer.from(await native).toString('hex')).toBe(REFERENCE.key);
  });

  it('different passwords and salts give different keys', async () => {
    const a = Buffer.from(await deriveKeyWasm('one', params(8192, 1, 1)));
    const b = Buffer.from(await deriveKeyWasm('two', params(8192, 1, 1)));
    const c = Buffer.from(
      await deriveKeyWasm('one', { ...params(8192, 1, 1), salt: Buffer.alloc(16, 8).toString('base64') }),
    );
    expect(a.equals(b)).toBe(false);
    expect(a.equals(c)).toBe(false);
  });

  it('refuses an empty password with its own code', async () => {
    await expect(
      createKeyFile(Buffer.alloc(64), '', { kdf: { memoryKiB: 8192, iterations: 1 } }),
    ).rejects.toMatchObject({
      code: 'FORGE_PASSWORD_REQUIRED',
    });
  });

  it.runIf(hasNative)('reports bad parameters as a key derivation failure', async () => {
    const bad = { ...params(8192, 1, 1), salt: Buffer.alloc(4).toString('base64') };
    await expect(deriveKeyNative('x', bad)!).rejects.toThrow(/key derivation failed/);
  });
});
