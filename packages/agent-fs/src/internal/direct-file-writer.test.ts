import { constants, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DirectFileWriter } from './direct-file-writer.ts';

const dir = mkdtempSync(join(tmpdir(), 'forge-direct-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;

function bytes(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  let x = seed;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = (x >>> 16) | 1; // never zero: zero runs are the writes the caller skips
  }
  return b;
}

/** Writes `pieces` (offset, data) through a DirectFileWriter and returns what the file holds. */
async function writeThrough(name: string, size: number, pieces: [number, Uint8Array][]) {
  const path = join(dir, name);
  const w = await DirectFileWriter.create(path, FLAGS, 0o600);
  // The test machines' /tmp (ext4) allows O_DIRECT: a refusal here would leave the path untested.
  expect(w, 'O_DIRECT refused in the temporary directory').toBeDefined();
  for (const [offset, data] of pieces) await w!.write(data, offset);
  await w!.finish(size);
  await w!.close();
  return { path, got: readFileSync(path) };
}

describe('DirectFileWriter', () => {
  it('writes unaligned runs, short skipped zero runs and holes exactly, cut to the size', async () => {
    const size = 9 * 1024 * 1024 + 333;
    const want = new Uint8Array(size);
    const pieces: [number, Uint8Array][] = [];
    // Runs of odd sizes, some zero stretches skipped (as the restore target skips all-zero runs):
    // one short (written as zeros), one of 3 MiB (left as a hole), and a zero tail.
    const plan = [
      [0, 1_000_003],
      [1_000_003, 2_500_001],
      [3_500_004 + 10_000, 777_777], // 10 kB skipped
      [4_287_781 + 3 * 1024 * 1024, 1_234_567], // 3 MiB hole
      [8_668_076, 200_000],
    ];
    for (const [at, n] of plan) {
      const d = bytes(n!, at!);
      want.set(d, at);
      pieces.push([at!, d]);
    }
    const { path, got } = await writeThrough('runs.bin', size, pieces);
    expect(got.length).toBe(size);
    expect(Buffer.compare(got, want)).toBe(0);
    const st = statSync(path);
    expect(st.blocks * 512).toBeLessThan(size - 2 * 1024 * 1024); // the 3 MiB hole stayed a hole
  });

  it('a write behind what it gathered switches the rest to ordinary writes, bytes intact', async () => {
    const size = 3 * 1024 * 1024 + 5;
    const a = bytes(2 * 1024 * 1024 + 1, 1);
    const b = bytes(1024 * 1024 + 4, 2);
    const again = bytes(4096, 3);
    const want = new Uint8Array(size);
    want.set(a, 0);
    want.set(b, a.length);
    want.set(again, 100); // rewritten behind: not how a restore writes, but it must still be right
    const { got } = await writeThrough('back.bin', size, [
      [0, a],
      [a.length, b],
      [100, again],
    ]);
    expect(got.length).toBe(size);
    expect(Buffer.compare(got, want)).toBe(0);
  });

  it('an existing path is an error (O_EXCL), nothing replaced', async () => {
    const path = join(dir, 'runs.bin');
    const before = statSync(path).size;
    await expect(DirectFileWriter.create(path, FLAGS, 0o600)).rejects.toMatchObject({ code: 'EEXIST' });
    expect(statSync(path).size).toBe(before);
  });
});
