import { constants, zstdCompressSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { compress, decompress, unzstdContextKept, zstdContextKept } from './compression.ts';
import { prng, text } from './testing/memory-fixtures.ts';

const params = (level: number) => ({
  params: { [constants.ZSTD_c_compressionLevel]: level, [constants.ZSTD_c_checksumFlag]: 0 },
});

describe('zstd on a kept context', () => {
  it('makes the bytes zstdCompressSync makes, frame after frame, whatever the sizes in between', () => {
    const inputs: Uint8Array[] = [];
    for (const n of [300, 1000, 4096, 70_000, 1024 * 1024, 3 * 1024 * 1024 + 17, 200, 128 * 1024])
      inputs.push(Buffer.concat([text(n), prng(n >>> 4, n)]).subarray(0, n));
    inputs.push(new Uint8Array(2 * 1024 * 1024)); // zeros: a tiny frame for a large input
    for (const level of [3, 1, 19]) {
      for (const data of [...inputs, ...inputs.reverse()]) {
        const c = compress(data, { algorithm: 'zstd', level });
        expect(c.algorithm).toBe('zstd');
        expect(Buffer.from(c.data).equals(zstdCompressSync(data, params(level)))).toBe(true);
        expect(Buffer.from(decompress(c.data, 'zstd', data.length)).equals(Buffer.from(data))).toBe(true);
      }
      // On this Node the context is kept (a fallback would be correct, but slower: say so);
      // high levels get a fresh one per blob (their contexts are tens of MiB).
      expect(zstdContextKept(level)).toBe(level <= 9);
    }
  });

  it('still stores incompressible data raw, and the context stays usable after it', () => {
    const random = prng(256 * 1024, 7);
    expect(compress(random, { algorithm: 'zstd' }).algorithm).toBe('none');
    const t = text(50_000);
    const c = compress(t, { algorithm: 'zstd' });
    expect(Buffer.from(c.data).equals(zstdCompressSync(t, params(3)))).toBe(true);
    expect(zstdContextKept(3)).toBe(true);
  });

  it('decompresses on a kept context, and a bad frame costs that context, not the next blob', () => {
    const a = text(300_000);
    const b = Buffer.concat([text(5000), prng(100, 3)]);
    const ca = compress(a, { algorithm: 'zstd' }).data;
    const cb = compress(b, { algorithm: 'zstd' }).data;
    const ok = () => {
      expect(Buffer.from(decompress(ca, 'zstd', a.length)).equals(a)).toBe(true);
      expect(Buffer.from(decompress(cb, 'zstd', b.length)).equals(b)).toBe(true);
      expect(unzstdContextKept()).toBe(true);
    };
    ok();
    const bad: [string, () => unknown][] = [
      ['truncated', () => decompress(ca.subarray(0, ca.length - 7), 'zstd', a.length)],
      ['longer than recorded', () => decompress(ca, 'zstd', a.length - 1)],
      ['shorter than recorded', () => decompress(ca, 'zstd', a.length + 1)],
      ['garbage', () => decompress(prng(1000, 9), 'zstd', 5000)],
      [
        'two frames, second cut',
        () => decompress(Buffer.concat([cb, ca.subarray(0, 50)]), 'zstd', b.length + 10),
      ],
    ];
    for (const [what, f] of bad) {
      expect(f, what).toThrow(expect.objectContaining({ code: 'FORGE_INTEGRITY' }));
      ok();
    }
  });

  it('compresses into a reused buffer when asked, with the same bytes', () => {
    const a = text(200_000);
    const b = Buffer.concat([text(50_000), prng(1000, 5)]);
    const fresh = compress(a, { algorithm: 'zstd' }).data;
    const ra = compress(a, { algorithm: 'zstd' }, { scratch: true }).data;
    expect(Buffer.from(ra).equals(Buffer.from(fresh))).toBe(true);
    const rb = compress(b, { algorithm: 'zstd' }, { scratch: true }).data;
    expect(rb.buffer).toBe(ra.buffer); // the same buffer again: valid until the next call only
    expect(Buffer.from(decompress(rb, 'zstd', b.length)).equals(b)).toBe(true);
    // Without `scratch`, every result has its own buffer.
    expect(compress(a, { algorithm: 'zstd' }).data.buffer).not.toBe(fresh.buffer);
  });

  it('decompresses straight into a given buffer of the right length, and nowhere else', () => {
    const a = text(300_000);
    const ca = compress(a, { algorithm: 'zstd' }).data;
    const run = new Uint8Array(a.length + 100).fill(7);
    const into = run.subarray(50, 50 + a.length);
    const got = decompress(ca, 'zstd', a.length, into);
    expect(got).toBe(into); // no new buffer, no copy
    expect(Buffer.from(into).equals(a)).toBe(true);
    expect(
      run.subarray(0, 50).every((x) => x === 7) && run.subarray(50 + a.length).every((x) => x === 7),
    ).toBe(true);
    // A buffer of another length is not used; neither is one for data stored raw.
    const other = new Uint8Array(a.length + 1);
    const elsewhere = decompress(ca, 'zstd', a.length, other);
    expect(elsewhere).not.toBe(other);
    expect(Buffer.from(elsewhere).equals(a)).toBe(true);
    const raw = prng(1000, 4);
    expect(decompress(raw, 'none', raw.length, new Uint8Array(raw.length))).toBe(raw);
    // A bad frame still fails, whatever it left in the buffer.
    expect(() => decompress(ca.subarray(0, ca.length - 7), 'zstd', a.length, into)).toThrow(
      expect.objectContaining({ code: 'FORGE_INTEGRITY' }),
    );
    expect(() => decompress(ca, 'zstd', a.length - 1, into.subarray(1))).toThrow(
      expect.objectContaining({ code: 'FORGE_INTEGRITY' }),
    );
  });
});
