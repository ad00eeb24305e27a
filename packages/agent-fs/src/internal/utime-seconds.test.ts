import { stat, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { splitDeviceNumber } from './device-number.ts';
import { removeTempDirs, tempDir } from './test-support.ts';
import { nsToUtimeSeconds } from './utime-seconds.ts';

afterEach(removeTempDirs);

describe('nsToUtimeSeconds', () => {
  it('round-trips through utimes exactly to the microsecond, for many values', async () => {
    const f = join(await tempDir(), 'f');
    await writeFile(f, '');
    const samples = [
      0n,
      1n,
      999n,
      1_000_000_000n,
      1_577_934_245_123_456_789n,
      1_700_000_000_999_999_999n,
      1_700_000_000_000_000_999n,
      4_102_444_800_000_001_000n,
      -1n,
      -1_500_000_000n,
      -86_400_000_000_001n,
    ];
    for (let i = 0; i < 200; i++) samples.push(1_600_000_000_000_000_000n + BigInt(i) * 7_919_999_999n);
    for (const ns of samples) {
      await utimes(f, nsToUtimeSeconds(ns), nsToUtimeSeconds(ns));
      const st = await stat(f, { bigint: true });
      const floorUs = (v: bigint) => (v >= 0n ? v / 1000n : -((-v + 999n) / 1000n));
      expect(floorUs(st.mtimeNs), String(ns)).toBe(floorUs(ns));
    }
  });
});

describe('splitDeviceNumber', () => {
  it('decodes Linux dev_t values', () => {
    expect(splitDeviceNumber(0x103)).toEqual({ major: 1n, minor: 3n });
    expect(splitDeviceNumber(0x801)).toEqual({ major: 8n, minor: 1n });
    // major 259, minor 65536 (large encoding)
    const dev = ((259n & 0xfffn) << 8n) | ((65536n & 0xffn) | ((65536n & ~0xffn) << 12n));
    expect(splitDeviceNumber(dev)).toEqual({ major: 259n, minor: 65536n });
  });
});
