import { describe, expect, it } from 'vitest';
import { NONCE_LENGTH, open, seal } from './aead.ts';

describe('seal nonces', () => {
  it('gives every sealed value its own random nonce, across refills of the nonce block', () => {
    const key = new Uint8Array(32).fill(7);
    const aad = Buffer.from('aad');
    const seen = new Set<string>();
    for (let i = 0; i < 2000; i++) {
      const s = seal(key, Buffer.from(`value ${i}`), aad);
      seen.add(Buffer.from(s.subarray(0, NONCE_LENGTH)).toString('hex'));
      if (i % 397 === 0) expect(open(key, s, aad).toString()).toBe(`value ${i}`);
    }
    expect(seen.size).toBe(2000);
    // Not a counter: consecutive nonces share no long prefix.
    const [a, b] = [...seen];
    expect(a!.slice(0, 8)).not.toBe(b!.slice(0, 8));
  });
});
